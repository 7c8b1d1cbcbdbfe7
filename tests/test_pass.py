"""Whole passes in hardware: GLB + address generators + GON receiver + PE array (+ DMA).

A testbench plays the host only: it preloads the GLB with the layer's filters
and padded ifmaps (`ommatidia.gen.passes.PassImage`) through the host write
port, or through the DMA from a DRAM image with RLC-coded ifmaps, and for each pass of an
`RSSchedule` writes the tag tables and descriptors, holds the array
configuration and run, pulses ``start`` and waits for ``busy`` to fall. The
senders, the psum sender reading the previous channel group's psums back from
the GLB, and the GON receiver writing them are hardware. After every pass the
testbench reads that pass's psum region back and checks it bit-exact against
`conv2d_psums` over the channels done so far; at the end the MAC counters.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from ommatidia.gen.config import SMALL, TINY
from ommatidia.gen.passes import PassImage
from ommatidia.hw.array import COUNTERS, GIN_KINDS
from ommatidia.hw.engines import PassEngine
from ommatidia.sim.array_model import ConvLayer, RSSchedule, layer_gated_macs, random_values
from ommatidia.sim.golden import conv2d, conv2d_psums
from ommatidia.sim.rlc import decode
from ommatidia.sim.streams import StreamSender

from test_array import describe, random_layer, random_schedule

TIMEOUT = 20000
OUT_STAGE = {"shift": 4, "relu": 1}
BIAS = [-300, 7000]


async def write_words(ctx, dut, words: dict):
    tx, every_byte = StreamSender(dut.host_write), (1 << len(dut.host_write.payload.mask)) - 1
    for addr, value in words.items():
        await tx.send(ctx, {"addr": addr, "data": value, "mask": every_byte})


async def read_words(ctx, dut, addrs) -> dict:
    port, out = dut.host_read, {}
    for addr in addrs:
        ctx.set(port.addr.valid, 1)
        ctx.set(port.addr.payload, addr)
        await ctx.tick().until(port.addr.ready)
        ctx.set(port.addr.valid, 0)
        assert ctx.get(port.valid)
        out[addr] = ctx.get(port.data)
    return out


def run_layer(sched: RSSchedule, dma_seed=None):
    """All passes of ``sched`` on a `PassEngine`; returns (per-pass psums, final psums,
    counters, cycles per pass). The GLB is loaded by the host port, or with ``dma_seed``
    by the DMA from a DRAM image (ifmaps RLC-coded) with random DRAM stalls."""
    cfg, layer = sched.cfg, sched.layer
    image = PassImage(sched)
    dut = PassEngine(cfg)
    results, cycles, state = {}, [], {}

    async def load_by_dma(ctx):
        dram, cmds = image.dram()
        assert any(c["rlc"] for c in cmds) and any(not c["rlc"] for c in cmds)
        state["dram_words"] = len(dram)
        pending, rng = [], random.Random(dma_seed)

        async def memory(ctx):
            while "loaded" not in state:
                take = rng.random() >= 0.3
                offer = bool(pending) and rng.random() >= 0.3
                ctx.set(dut.dram_addr.ready, take)
                ctx.set(dut.dram_data.valid, offer)
                if offer:
                    ctx.set(dut.dram_data.payload, dram[pending[0]])
                _, _, av, addr, dr = await ctx.tick().sample(
                    dut.dram_addr.valid, dut.dram_addr.payload, dut.dram_data.ready)
                if offer and dr:
                    pending.pop(0)
                if take and av:
                    pending.append(addr)
        state["memory"] = memory
        tx = StreamSender(dut.dma_cmd)
        for cmd in cmds:
            await tx.send(ctx, cmd)
            await ctx.tick()
            n = 0
            while ctx.get(dut.dma_busy):
                await ctx.tick()
                n += 1
                assert n < TIMEOUT, f"DMA still busy after {TIMEOUT} cycles on {cmd}"
            assert not ctx.get(dut.dma_error), cmd
        state["loaded"] = True

    async def unload_by_dma(ctx):
        rng, out = random.Random(dma_seed), {}
        for n in range(layer.N):
            for m0 in sorted({ps.m0 for ps in sched.passes}):
                p = min(sched.passes[0].p, layer.M - m0)
                words = image.psum_words(n, m0, p)
                for k in range(p):
                    await StreamSender(dut.bias_w).send(ctx, {"index": k, "value": BIAS[m0 + k]})
                await StreamSender(dut.dma_out_cmd).send(ctx, {
                    "glb": words.start, "dram": 4096 * (n + 1) + m0, "n": layer.E * layer.F * p,
                    "rlc": 1, "stage": {**OUT_STAGE, "p": p}})
                got, cycles = {}, 0
                while True:
                    ready = rng.random() >= 0.3
                    ctx.set(dut.dram_w.ready, ready)
                    _, _, valid, w, busy = await ctx.tick().sample(
                        dut.dram_w.valid, dut.dram_w.payload, dut.dma_out_busy)
                    if ready and valid:
                        got[w.addr] = w.data
                    cycles += 1
                    assert cycles < TIMEOUT
                    if not busy and not valid:
                        break
                base = 4096 * (n + 1) + m0
                assert sorted(got) == list(range(base, base + len(got)))
                assert ctx.get(dut.dma_out_words) == len(got)
                out[n, m0, p] = [got[a] for a in sorted(got)]
        return out

    async def host(ctx):
        for name, value in sched.config().items():
            ctx.set(getattr(dut, name).as_value(), value)
        if dma_seed is None:
            await write_words(ctx, dut, image.image())
        else:
            await load_by_dma(ctx)
        for ps in sched.passes:
            prog = image.program(ps)
            tx = StreamSender(dut.tag_w)
            for n, kind in enumerate(GIN_KINDS):
                for j, (row, col, offset) in enumerate(prog["tags"][kind]):
                    await tx.send(ctx, {"engine": n, "index": j,
                                        "entry": {"row": row, "col": col, "offset": offset}})
                ctx.set(getattr(dut, f"{kind}_desc"), prog[kind])
            ctx.set(dut.gon_desc, prog["gon"])
            ctx.set(dut.run, prog["run"])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick()
            n = 1
            while ctx.get(dut.busy):
                await ctx.tick()
                n += 1
                assert n < TIMEOUT, f"pass {ps.index} still busy after {TIMEOUT} cycles"
            cycles.append(n)
            words = await read_words(ctx, dut, image.psum_words(ps.n, ps.m0, ps.p))
            results[ps.index] = image.unpack_psums(ps.n, ps.m0, ps.p, words)
        final = np.zeros((layer.N, layer.M, layer.E, layer.F), dtype=np.int64)
        for n in range(layer.N):
            for m0 in sorted({ps.m0 for ps in sched.passes}):
                p = min(sched.passes[0].p, layer.M - m0)
                words = await read_words(ctx, dut, image.psum_words(n, m0, p))
                final[n, m0:m0 + p] = image.unpack_psums(n, m0, p, words)
        state["final"] = final
        if dma_seed is not None:
            state["out"] = await unload_by_dma(ctx)
        state["counters"] = {name: ctx.get(getattr(dut, name)) for name in COUNTERS}

    async def memory(ctx):
        await ctx.tick()
        if "memory" in state:
            await state["memory"](ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(memory)
    sim.run()
    if dma_seed is not None:
        return results, state["final"], state["counters"], cycles, state["out"]
    return results, state["final"], state["counters"], cycles


def check(sched, results, final, counters):
    layer = sched.layer
    for ps in sched.passes:
        want = sched.golden(ps)
        assert np.array_equal(results[ps.index], want), (
            f"pass {ps} psums:\n{results[ps.index]}\nwant\n{want}")
    want = conv2d_psums(sched.ifmap, sched.weights, stride=layer.U, padding=layer.P,
                        psum_bits=sched.cfg.pe.psum_bits)
    assert np.array_equal(final, want)
    assert counters["mac_cycles"] + counters["gated_macs"] == layer.macs
    assert counters["gated_macs"] == layer_gated_macs(layer, sched.ifmap)


@pytest.mark.parametrize("trial", range(3))
def test_random_layers(trial, seed):
    """Random small layers of tests/test_array.py, all passes driven by the engines."""
    rng = np.random.default_rng([seed, trial])
    layer, p, q = random_layer(TINY, rng)
    sched = random_schedule(TINY, rng, layer, p, q)
    print(describe(sched))
    results, final, counters, cycles = run_layer(sched)
    print(f"cycles per pass {cycles}, {layer.macs} MACs, counters {counters}")
    check(sched, results, final, counters)


def test_channel_groups_accumulate_in_the_glb(seed):
    """C = 5 in groups of q = 2, two images, two filter groups: each group's psums stay in
    the GLB and come back through the psum GIN for the next group."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=2, C=5, M=3, H=6, W=7, R=3, S=3, U=1, P=0)
    ifmap = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.3, True)
    weights = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.0, True)
    sched = RSSchedule(TINY, layer, ifmap, weights, p=2, q=2)
    assert sum(ps.run.accumulate for ps in sched.passes) == 8
    results, final, counters, cycles = run_layer(sched)
    print(f"cycles per pass {cycles}, {layer.macs} MACs, counters {counters}")
    check(sched, results, final, counters)


def test_psums_wrap_over_fifteen_groups_in_the_glb(seed):
    """C = 60 in 15 groups of q = 4, values near -128: the psums wrap around 24 bits while
    they go GLB -> psum GIN -> array -> GON -> GLB fifteen times (32-bit slots)."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=60, M=2, H=4, W=4, R=3, S=3)
    ifmap = rng.choice([-128, -127], size=(1, 60, 4, 4))
    weights = rng.choice([-128, -127], size=(2, 60, 3, 3))
    sched = RSSchedule(TINY, layer, ifmap, weights, p=2, q=4)
    results, final, counters, cycles = run_layer(sched)
    print(f"cycles per pass {cycles}")
    check(sched, results, final, counters)
    assert (conv2d_psums(ifmap, weights, psum_bits=64) >= 1 << 23).all() and (final < 0).all()


def test_small_preset_stride2_set(seed):
    """A 3x7 set with stride 2 at row 3 of the 6x7 `small` array: merged ifmap bands, tag
    tables with one entry per (row, tag) and their offsets; bit-exact."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=2, M=2, H=15, W=9, R=3, S=3, U=2, P=0)
    ifmap = random_values(rng, 8, (1, 2, 15, 9), 0.3, False)
    weights = random_values(rng, 8, (2, 2, 3, 3), 0.0, False)
    sched = RSSchedule(SMALL, layer, ifmap, weights, p=2, q=1, origin=(3, 0))
    image = PassImage(sched)
    prog = image.program(sched.passes[0])
    assert len(prog["tags"]["ifmap"]) >= len(sched.ifmap_rows()) == 15
    results, final, counters, cycles = run_layer(sched)
    print(f"cycles per pass {cycles}, {layer.macs} MACs")
    check(sched, results, final, counters)


def test_layer_too_big_for_the_glb():
    """A 3x3 layer takes 2 filter words (9 bytes), 2 ifmap words, 1 psum word; 200 channels
    of 6x30 ifmaps (36000 bytes) do not fit the tiny 8 KiB GLB."""
    sched = RSSchedule(TINY, ConvLayer(N=1, C=1, M=1, H=3, W=3, R=3, S=3),
                       np.zeros((1, 1, 3, 3), int), np.zeros((1, 1, 3, 3), int), p=1, q=1)
    assert PassImage(sched).words == 2 + 2 + 1
    layer = ConvLayer(N=1, C=200, M=1, H=6, W=30, R=3, S=3)
    sched = RSSchedule(TINY, layer, np.zeros((1, 200, 6, 30), int),
                       np.zeros((1, 200, 3, 3), int), p=1, q=4)
    with pytest.raises(ValueError, match="GLB words, the GLB has 1024"):
        PassImage(sched)


@pytest.mark.verilog
def test_generate_pass_and_glb_tops(tmp_path):
    """`ommatidia generate --top pass` / `--top glb` write Verilog with the host ports that
    `verilator --lint-only` accepts."""
    from ommatidia.gen.cli import main
    for top, ports in (("pass", ("host_write__payload", "host_read__addr__valid", "tag_w__valid",
                                 "ifmap_desc", "gon_desc", "run", "start", "busy", "mac_cycles")),
                       ("glb", ("read__0__addr__payload", "read__3__data", "write__1__ready"))):
        assert main(["generate", "--preset", "tiny", "--top", top, "-o", str(tmp_path),
                     "--lint"]) == 0
        text = (tmp_path / f"ommatidia_{top}.v").read_text()
        for port in ports:
            assert f" {port};" in text or f" {port}," in text, (top, port)


def test_layer_through_dma_in_and_out(seed):
    """The GLB is filled by the DMA from DRAM (filters raw, padded ifmaps RLC-coded, random
    DRAM stalls), every pass runs (bit-exact psums and counters), then the DMA takes each
    psum region out through the output stage (a bias per filter, ReLU, rounding shift,
    saturation) and the RLC encoder: the DRAM words decode to the golden ofmap."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=2, C=3, M=2, H=4, W=6, R=3, S=3, U=1, P=1)
    ifmap = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.6, False)
    weights = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.0, True)
    sched = RSSchedule(TINY, layer, ifmap, weights, p=2, q=2, origin=(0, 0))
    results, final, counters, cycles, out = run_layer(sched, dma_seed=seed)
    print(f"cycles per pass {cycles}")
    check(sched, results, final, counters)
    golden = conv2d(ifmap, weights, BIAS[:layer.M], stride=1, padding=1, psum_bits=24,
                    relu=True, shift=OUT_STAGE["shift"], act_bits=8)
    for (n, m0, p), words in out.items():
        want = golden[n, m0:m0 + p].transpose(1, 2, 0).reshape(-1)
        assert np.array_equal(decode(words, len(want), TINY.rlc), want), (n, m0)
