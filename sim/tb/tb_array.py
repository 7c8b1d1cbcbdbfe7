"""cocotb testbench of the generated PE array Verilog: a CONV layer, row-stationary, bit-exact.

The layer runs as the passes of `ommatidia.sim.array_model.RSSchedule`, with
the configuration (GIN IDs, psum routes, PE enables) of `gen.multicast.plan_for`.
A controller sends each pass's run and waits until the array is idle; the
filter, ifmap and psum senders and the GON drain run concurrently with random
idle and back-pressure. The psums of a channel group go back in through the
psum GIN for the next group. Each pass's psums, the layer's psums and the
MAC counters are checked against the golden model.

Environment: OMMATIDIA_PRESET, OMMATIDIA_SEED.
"""

import os
import random

import cocotb
import numpy as np
from amaranth import signed
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ommatidia.gen.config import preset
from ommatidia.gen.layer import ConvLayer
from ommatidia.hw.array import COUNTERS
from ommatidia.hw.noc import gin_packet_layout, gon_packet_layout
from ommatidia.hw.pe import pe_run_layout
from ommatidia.sim.array_model import RSSchedule, layer_gated_macs, random_values
from ommatidia.sim.golden import conv2d_psums
from ommatidia.sim.tb.streams import StreamSink, StreamSource


class TB:
    """Clock, reset, configuration and the five streams of a `PEArray`."""

    def __init__(self, dut, sched: RSSchedule, seed: int, idle: float, stall: float):
        self.dut, self.sched = dut, sched
        self.cfg = sched.cfg
        pe, noc = self.cfg.pe, self.cfg.noc
        self.layouts = {
            kind: gin_packet_layout(signed(bits), noc.row_id_bits, noc.col_id_bits)
            for kind, bits in (("filter", pe.weight_bits), ("ifmap", pe.act_bits),
                               ("psum", pe.psum_bits))}
        self.layouts["gon"] = gon_packet_layout(signed(pe.psum_bits), self.cfg.rows,
                                                self.cfg.cols)
        rng = random.Random(seed)
        clk = dut.clk
        self.run = StreamSource(dut, "run", clk)
        self.sources = {kind: StreamSource(dut, kind, clk, random.Random(rng.random()), idle)
                        for kind in ("filter", "ifmap", "psum")}
        self.gon = StreamSink(dut, "gon", clk, random.Random(rng.random()), stall)
        cocotb.start_soon(Clock(clk, 10, unit="ns").start())

    async def reset(self):
        for name, value in self.sched.config().items():
            getattr(self.dut, name).value = value
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def pack(self, kind, items):
        layout = self.layouts[kind]
        return [layout.const({"data": d, "row": r, "col": c}).as_bits() for d, r, c in items]

    async def execute(self):
        """Run every pass; return (psums (N, M, E, F), psums per pass, cycles)."""
        sched, layer = self.sched, self.sched.layer
        psums = np.zeros((layer.N, layer.M, layer.E, layer.F), dtype=np.int64)
        results = {}

        async def feed(kind, packets_of):
            for ps in sched.passes:
                await self.sources[kind].send(self.pack(kind, packets_of(ps)))

        async def feed_psum():
            for ps in sched.passes:
                if ps.run.accumulate:
                    while ps.previous not in results:
                        await FallingEdge(self.dut.clk)
                    items = sched.psum_packets(ps, psums)
                    await self.sources["psum"].send(self.pack("psum", items))

        async def drain():
            layout = self.layouts["gon"]
            for ps in sched.passes:
                raw = await self.gon.recv(sched.gon_count(ps))
                items = [(v.data, v.row, v.col) for v in map(layout.from_bits, raw)]
                results[ps.index] = sched.scatter(ps, items, psums)

        tasks = [cocotb.start_soon(feed("filter", sched.filter_packets)),
                 cocotb.start_soon(feed("ifmap", sched.ifmap_packets)),
                 cocotb.start_soon(feed_psum()), cocotb.start_soon(drain())]
        run_layout = pe_run_layout(self.cfg.pe)
        start = cocotb.utils.get_sim_time("ns")
        for ps in sched.passes:
            await self.run.send([run_layout.const(ps.run.fields(self.cfg.pe)).as_bits()])
            await ReadOnly()
            while int(self.dut.busy.value):
                await FallingEdge(self.dut.clk)
                await ReadOnly()
        for task in tasks:
            await task
        await ClockCycles(self.dut.clk, 2)
        cycles = int((cocotb.utils.get_sim_time("ns") - start) // 10)
        return psums, results, cycles


@cocotb.test()
async def conv_layer(dut):
    """Stride 1, padding 1, C = 3 in channel groups of 2 (the second accumulates through the
    psum GIN), M = 3 in filter groups of 2, two images, 40 % zero activations."""
    seed = int(os.environ["OMMATIDIA_SEED"])
    dut._log.info(f"OMMATIDIA_SEED={seed}")
    cfg = preset(os.environ["OMMATIDIA_PRESET"])
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=2, C=3, M=3, H=4, W=5, R=3, S=3, U=1, P=1)
    ifmap = random_values(rng, cfg.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), 0.4,
                          bool(rng.random() < 0.5))
    weights = random_values(rng, cfg.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
    sched = RSSchedule(cfg, layer, ifmap, weights, p=2, q=2, origin=(0, cfg.cols - layer.E))
    tb = TB(dut, sched, seed, idle=0.2, stall=0.3)
    await tb.reset()
    psums, results, cycles = await tb.execute()
    for ps in sched.passes:
        assert np.array_equal(results[ps.index], sched.golden(ps)), f"pass {ps}"
    want = conv2d_psums(ifmap, weights, stride=layer.U, padding=layer.P,
                        psum_bits=cfg.pe.psum_bits)
    assert np.array_equal(psums, want)
    counters = {name: int(getattr(dut, name).value) for name in COUNTERS}
    assert counters["mac_cycles"] + counters["gated_macs"] == layer.macs
    assert counters["gated_macs"] == layer_gated_macs(layer, ifmap)
    dut._log.info(f"{len(sched.passes)} passes, {layer.macs} MACs in {cycles} cycles; "
                  f"counters {counters}")
