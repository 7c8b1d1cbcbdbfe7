// A plain C++ main for the System's harness (no cocotb, no VPI): one job, measured.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include "Vsystem_harness.h"
#include "verilated.h"

int main(int argc, char** argv) {
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vsystem_harness>(ctx.get());
    unsigned stall_rate = atoi(argv[1]), stall_seed = atoi(argv[2]);
    long limit = atol(argv[3]);
    auto tick = [&] { top->clk = 1; top->eval(); top->clk = 0; top->eval(); };
    top->clk = 0; top->rst = 1; top->host_load = 0; top->host_dump = 0;
    top->mem_w___05Fvalid = 0; top->mem_raddr___05Fvalid = 0; top->mem_rdata___05Fready = 0; top->start = 0;
    top->eval();
    tick(); tick();
    top->rst = 0; tick();  // the harness registers rst
    clock_t c0 = clock();
    top->host_load = 1; top->eval(); top->host_load = 0; top->eval();
    tick();
    top->stall_rate = stall_rate; top->stall_seed = stall_seed; top->start = 1;
    tick();
    top->start = 0;
    clock_t c1 = clock();
    long cycles = 1;
    while ((top->status & 1) && cycles < limit) { tick(); ++cycles; }
    clock_t c2 = clock();
    for (int k = 4; k + 1 < argc; k += 2) {
        top->host_dump_first = atoi(argv[k]);
        top->host_dump_last = atoi(argv[k]) + atoi(argv[k + 1]) - 1;
        top->host_dump = 1; top->eval(); top->host_dump = 0; top->eval();
        char name[64]; snprintf(name, sizeof name, "region_%d.hex", (k - 4) / 2);
        std::rename("host_dump.hex", name);
    }
    clock_t c3 = clock();
    printf("status %u waited %ld counters", (unsigned)top->status, cycles);
    for (int i = 0; i < (int)(sizeof(top->counters) / sizeof(top->counters[0])); ++i)
        printf(" %08x", (unsigned)top->counters[i]);
    printf("\nrun_cpu_s %.3f cpu_s %.3f\n", double(c2 - c1) / CLOCKS_PER_SEC,
           double(c3 - c0) / CLOCKS_PER_SEC);
    top->final();
    return 0;
}
