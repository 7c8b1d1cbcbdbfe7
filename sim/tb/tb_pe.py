"""cocotb testbench of the generated PE Verilog against the golden row convolution.

Environment: OMMATIDIA_PRESET (preset name) or OMMATIDIA_CONFIG (JSON of the
configuration's fields, `ommatidia.gen.config.config_fields`), OMMATIDIA_SEED,
OMMATIDIA_CASES.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ommatidia.gen.config import config_from_fields, preset
from ommatidia.hw.pe import PERun, pe_run_layout
from ommatidia.sim.pe_model import PECase, random_pe_case
from ommatidia.sim.tb.streams import StreamSink, StreamSource, to_unsigned


def _packets(values: list[int], n: int, bits: int, group: int) -> list[int]:
    """``values`` as GIN packets of up to ``n`` values of one group of ``group``
    (`ommatidia.hw.noc.values_layout`: the count ``n``, then lane ``j`` the ``j``-th)."""
    if n == 1:
        return values
    count_bits = n.bit_length()
    packets = []
    for g in range(0, len(values), group):
        block = values[g:g + group]
        for i in range(0, len(block), n):
            chunk = block[i:i + n]
            word = len(chunk)
            for j, v in enumerate(chunk):
                word |= to_unsigned(v, bits) << (count_bits + j * bits)
            packets.append(word)
    return packets


class TB:
    """Clock, reset and the PE's five streams."""

    def __init__(self, dut, seed: int, idle: float, stall: float):
        self.dut = dut
        if "OMMATIDIA_CONFIG" in os.environ:
            array = config_from_fields(json.loads(os.environ["OMMATIDIA_CONFIG"]))
        else:
            array = preset(os.environ["OMMATIDIA_PRESET"])
        self.cfg = array.pe
        self.filter_values = array.noc.filter_gin_values
        self.ifmap_values = array.noc.ifmap_gin_values
        rng = random.Random(seed)
        clk = dut.clk
        self.run = StreamSource(dut, "run", clk)
        self.filter = StreamSource(dut, "filter", clk, random.Random(rng.random()), idle)
        self.ifmap = StreamSource(dut, "ifmap", clk, random.Random(rng.random()), idle)
        self.psum_in = StreamSource(dut, "psum_in", clk, random.Random(rng.random()), idle)
        self.psum_out = StreamSink(dut, "psum_out", clk, random.Random(rng.random()), stall,
                                   signed=True)
        cocotb.start_soon(Clock(clk, 10, unit="ns").start())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def filter_packets(self, weights: list[int]) -> list[int]:
        """``weights`` as filter GIN packets of up to `filter_values` weights."""
        return _packets(weights, self.filter_values, self.cfg.weight_bits, len(weights))

    def ifmap_packets(self, values: list[int], q: int) -> list[int]:
        """An ifmap stream as GIN packets of up to `ifmap_values` activations of one
        column (``q`` channels)."""
        return _packets(values, self.ifmap_values, self.cfg.act_bits, q)

    async def execute(self, cases: list[PECase]) -> tuple[list[list[int]], int]:
        """Run ``cases`` back to back; return the psums of each and the cycles taken."""
        layout = pe_run_layout(self.cfg)

        async def feed(source, streams):
            for values in streams:
                await source.send(values)

        filt = cocotb.start_soon(feed(self.filter, [self.filter_packets(c.filter_stream())
                                                    for c in cases if c.run.load_filter]))
        ifm = cocotb.start_soon(feed(self.ifmap, [self.ifmap_packets(c.ifmap_stream(), c.run.q)
                                                  for c in cases]))
        pin = cocotb.start_soon(feed(self.psum_in, [c.psum_in_stream() for c in cases]))
        results = []

        async def drain():
            for case in cases:
                results.append(await self.psum_out.recv(case.run.F * case.run.p))

        out = cocotb.start_soon(drain())
        start = cocotb.utils.get_sim_time("ns")
        for case in cases:
            await self.run.send([layout.const(case.run.fields(self.cfg)).as_bits()])
            await ReadOnly()
            while int(self.dut.busy.value):
                await FallingEdge(self.dut.clk)
                await ReadOnly()
        await out
        for task in (filt, ifm, pin):
            await task
        cycles = int((cocotb.utils.get_sim_time("ns") - start) // 10)
        return results, cycles

    def counter(self, name: str) -> int:
        return int(getattr(self.dut, name).value)


@cocotb.test()
async def random_runs(dut):
    """Random runs within the spad limits, random idle and back-pressure, bit-exact."""
    seed = int(os.environ["OMMATIDIA_SEED"])
    dut._log.info(f"OMMATIDIA_SEED={seed}")
    tb = TB(dut, seed, idle=0.3, stall=0.3)
    await tb.reset()
    rng = np.random.default_rng(seed)
    cases = [random_pe_case(tb.cfg, rng, max_width=20)
             for _ in range(int(os.environ.get("OMMATIDIA_CASES", "8")))]
    cases.append(random_pe_case(tb.cfg, rng, max_width=20, load_filter=False,
                                filters=cases[-1].filters))
    results, _ = await tb.execute(cases)
    for i, (case, got) in enumerate(zip(cases, results)):
        assert got == case.expected().tolist(), f"case {i} {case.run}: {got}"
    assert tb.counter("gated_macs") == sum(c.expected_gated() for c in cases)
    assert tb.counter("mac_cycles") + tb.counter("gated_macs") == sum(c.run.macs for c in cases)


@cocotb.test()
async def one_mac_per_cycle(dut):
    """A long row with streams that keep up: cycles <= MACs + filter load + a constant."""
    seed = int(os.environ["OMMATIDIA_SEED"])
    tb = TB(dut, seed, idle=0, stall=0)
    await tb.reset()
    cfg = tb.cfg
    rng = np.random.default_rng(seed)
    S = min(3, cfg.max_filter_width)
    q = min(2, cfg.ifmap_spad_depth // (S + 1))
    p = min(2, cfg.psum_spad_depth, cfg.filter_spad_depth // (q * S))
    run = PERun(S=S, W=cfg.max_ifmap_width, U=1, p=p, q=q)
    amax = 1 << (cfg.act_bits - 1)
    wmax = 1 << (cfg.weight_bits - 1)
    case = PECase(run, rng.integers(-amax, amax, (q, run.W)),
                  rng.integers(-wmax, wmax, (p, q, S)), None, cfg.psum_bits)
    results, cycles = await tb.execute([case])
    assert results[0] == case.expected().tolist()
    overhead = cycles - run.macs - p * q * S
    dut._log.info(f"{run.macs} MACs, {p * q * S} filter loads, {cycles} cycles")
    assert overhead <= 16, f"{cycles} cycles for {run.macs} MACs"

