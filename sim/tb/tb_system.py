"""cocotb testbench of the generated `ommatidia.hw.system.System`: whole layers in the simulator.

For each job of the JSON file named by OMMATIDIA_JOBS it loads the DRAM
image (through the host port, a word a cycle, or with ``"host": "bulk"`` in one cycle
by the harness's ``$readmemh``), sets the DRAM stall rate and seed, pulses
``start`` and waits for ``done`` checking the status only every 256 cycles
(the layer runs with no Python in the per-cycle loop), then reads the
counters and the requested DRAM regions back (the same two ways); a job with
``progress`` logs the cycle count every that many cycles; one with ``verify_load``
reads the loaded words back both ways before it starts. A job with ``reset_after``
first runs that many cycles, holds reset for 4 cycles and starts again from a
fresh load. Results go to OMMATIDIA_RESULTS as JSON; checking them is the
caller's job (`ommatidia.sim.accelerator`). The design runs inside
`ommatidia.sim.harness` (reset registered); with `HARNESS_CLOCK_ENV` set (by
`ommatidia.sim.runner.run_cocotb`) the harness makes the clock and the testbench only
waits on it; with `HARNESS_MEMORY_ENV` set, the harness loads and dumps the DRAM in
bulk (`ommatidia.sim.harness.wrap` ``memory``).
"""

import json
import os
import pathlib
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, Timer

from ommatidia.hw.system import STATUS_BUSY
from ommatidia.sim.harness import HOST_DUMP_FILE, HOST_LOAD_FILE, RESET_LATENCY, memh, read_memh
from ommatidia.sim.runner import HARNESS_CLOCK_ENV, HARNESS_MEMORY_ENV

POLL = 256
HARNESS_CLOCK = os.environ.get(HARNESS_CLOCK_ENV)
"""The period of the clock the harness makes (`ommatidia.sim.harness`), or None: the
testbench makes a 10 ns clock."""
PERIOD_PS = 1000 * int(HARNESS_CLOCK or 10)
BULK = HARNESS_MEMORY_ENV in os.environ
"""The harness has the ``host_*`` ports that load and dump the DRAM in bulk."""


class TB:
    def __init__(self, dut):
        self.dut = dut
        if HARNESS_CLOCK is None:
            cocotb.start_soon(Clock(dut.clk, PERIOD_PS, unit="ps").start())
        dut.mem_w__valid.value = 0
        dut.mem_raddr__valid.value = 0
        dut.mem_rdata__ready.value = 0
        dut.start.value = 0
        dut.stall_rate.value = 0
        dut.stall_seed.value = 0
        if BULK:
            dut.host_load.value = 0
            dut.host_dump.value = 0

    async def reset(self, cycles=2):
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, RESET_LATENCY)  # the harness registers rst

    async def load(self, words, bulk=False):
        """DRAM writes through ``mem_w``, always ready while the accelerator is idle; with
        ``bulk``, all of them at once by the harness (`HOST_LOAD_FILE`)."""
        dut = self.dut
        await FallingEdge(dut.clk)
        if bulk:
            pathlib.Path(HOST_LOAD_FILE).write_text(memh(words))
            await self.pulse(dut.host_load)
            return
        for addr, word in words:
            dut.mem_w__payload.value = (word << 32) | addr
            dut.mem_w__valid.value = 1
            await FallingEdge(dut.clk)
        dut.mem_w__valid.value = 0

    async def pulse(self, port):
        """``port`` high for a cycle from a falling edge: the harness acts on its rising edge."""
        port.value = 1
        await FallingEdge(self.dut.clk)
        port.value = 0

    async def read(self, addr, n, bulk=False):
        """``n`` DRAM words from ``addr`` through ``mem_raddr``/``mem_rdata``; with
        ``bulk``, dumped at once by the harness (`HOST_DUMP_FILE`)."""
        dut, out = self.dut, []
        await FallingEdge(dut.clk)
        if bulk and n:
            dut.host_dump_first.value = addr
            dut.host_dump_last.value = addr + n - 1
            await self.pulse(dut.host_dump)
            return read_memh(pathlib.Path(HOST_DUMP_FILE).read_text())
        dut.mem_rdata__ready.value = 1
        for a in range(addr, addr + n):
            dut.mem_raddr__payload.value = a
            dut.mem_raddr__valid.value = 1
            await ReadOnly()
            assert dut.mem_raddr__ready.value == 1
            await FallingEdge(dut.clk)
            dut.mem_raddr__valid.value = 0
            await ReadOnly()
            assert dut.mem_rdata__valid.value == 1
            out.append(int(dut.mem_rdata__payload.value))
            await FallingEdge(dut.clk)
        dut.mem_rdata__ready.value = 0
        return out

    async def loaded(self, words):
        """The DRAM at the addresses of ``words``, read through the host port and (with the
        harness's ``host_*`` ports) dumped in bulk: {"port": [...], "bulk": [...] or None}."""
        first, last = min(a for a, _ in words), max(a for a, _ in words)
        out = {}
        for way in ("port", "bulk"):
            if way == "bulk" and not BULK:
                out[way] = None
                continue
            span = await self.read(first, last - first + 1, way == "bulk")
            out[way] = [span[a - first] for a, _ in sorted(words)]
        return out

    async def run(self, stall_rate, stall_seed, limit, stop_after=None, progress=0):
        """Start and wait for the end; returns (cycles waited, status).

        Logs the cycle count and the simulation rate every ``progress`` cycles (0: never).
        """
        dut = self.dut
        start, next_report = time.monotonic(), progress or None
        await FallingEdge(dut.clk)
        dut.stall_rate.value = stall_rate
        dut.stall_seed.value = stall_seed
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        cycles = 1
        # From a falling edge, the first wait ends a quarter period after the rising
        # edge that completes it, and every later one a whole number of periods on:
        # away from both edges, whatever the simulator's order of same-time events.
        shift = -PERIOD_PS // 4
        while True:
            step = POLL if stop_after is None else min(POLL, stop_after - cycles)
            await Timer(step * PERIOD_PS + shift, unit="ps")
            shift = 0
            cycles += step
            await ReadOnly()
            status = int(dut.status.value)
            if not status & STATUS_BUSY or cycles == stop_after:
                return cycles, status
            if next_report is not None and cycles >= next_report:
                rate = cycles / max(time.monotonic() - start, 1e-9)
                dut._log.info(f"{cycles:,} cycles, {rate:,.0f} cycles/s")
                next_report += progress
            assert cycles < limit, f"no done after {cycles} cycles"

    def counters(self, names):
        value = int(self.dut.counters.value)
        return {name: (value >> (64 * i)) & ((1 << 64) - 1) for i, name in enumerate(names)}


@cocotb.test()
async def layers(dut):
    """Every job of OMMATIDIA_JOBS, one after another, without rebuilding."""
    from ommatidia.hw.top import COUNTERS
    with open(os.environ["OMMATIDIA_JOBS"]) as fp:
        jobs = json.load(fp)
    tb = TB(dut)
    await tb.reset()
    results = []
    for job in jobs:
        words = [(int(a), int(w, 16)) for a, w in job["words"]]
        bulk = job.get("host", "port") == "bulk"
        assert BULK or not bulk, "a bulk load needs the harness's host_* ports"
        wall, cpu = time.monotonic(), time.process_time()
        interrupted = None
        if job.get("reset_after"):
            await tb.load(words, bulk)
            waited, status = await tb.run(job["stall_rate"], job["stall_seed"], job["limit"],
                                          stop_after=job["reset_after"])
            interrupted = {"cycles": waited, "status": status}
            await tb.reset(4)
        await tb.load(words, bulk)
        loaded = await tb.loaded(words) if job.get("verify_load") else None
        run_cpu, run_wall = time.process_time(), time.monotonic()
        waited, status = await tb.run(job["stall_rate"], job["stall_seed"], job["limit"],
                                      progress=job.get("progress", 0))
        run_cpu, run_wall = time.process_time() - run_cpu, time.monotonic() - run_wall
        regions = [await tb.read(a, n, bulk) for a, n in job["read"]]
        results.append({"status": status, "counters": tb.counters(COUNTERS),
                        "regions": regions, "interrupted": interrupted, "loaded": loaded,
                        "wall_s": time.monotonic() - wall,
                        "cpu_s": time.process_time() - cpu, "run_cpu_s": run_cpu,
                        "run_wall_s": run_wall})
        dut._log.info(f"job {len(results)}/{len(jobs)}: status {status}, "
                      f"{results[-1]['counters']['cycles']} cycles")
    with open(os.environ["OMMATIDIA_RESULTS"], "w") as fp:
        json.dump(results, fp)
