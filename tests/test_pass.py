"""Whole passes in hardware: GLB + address generators + GON receiver + PE array (+ DMA).

A testbench plays the controller only. The rounds, GLB layout, descriptors
and tag tables are the compiler's (`ommatidia.gen.rounds.build_rounds`, for
the mapper's mapping or a fixed one). For each load of a round the testbench
fills the GLB with the filters and padded ifmaps through the host write port
(packed in slots by `ommatidia.gen.packing.pack_slots`), or through the DMA
from the DRAM image `ommatidia.gen.compiler.compile_layer` emits (ifmaps
RLC-coded); for each pass it writes the tag tables and descriptors, holds the
array configuration and run, pulses ``start`` and waits for ``busy`` to fall.
The senders, the psum sender reading the previous channel group's psums back
from the GLB, and the GON receiver writing them are hardware. After every pass
the testbench reads that pass's psum regions back and checks them bit-exact
against `conv2d_psums` over the channels and filter rows done so far; at the
end the MAC counters.
"""

import dataclasses
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.sim import Simulator

from ommatidia.gen.compiler import compile_layer, plan_layer
from ommatidia.gen.config import SMALL, TINY
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.mapper import Mapping, groups_of
from ommatidia.gen.packing import elements_per_word, pack_slots, word_count
from ommatidia.gen.rounds import build_rounds
from ommatidia.gen.rlc import decode
from ommatidia.hw.array import COUNTERS, GIN_KINDS
from ommatidia.hw.engines import PassEngine
from ommatidia.sim.array_model import layer_gated_macs, random_values
from ommatidia.sim.golden import conv2d, conv2d_psums
from ommatidia.sim.streams import StreamSender

from helpers import random_data, random_layer, read_word

TIMEOUT = 20000
SHIFT = 4
BIAS = [-300, 7000]


def reference_mapping(layer, p: int, q: int, stack: int = 1) -> Mapping:
    """The whole R x E PE set in one piece at PE (0, 0), one pass per (filter group,
    channel group, image) in that order, all in one round and one load; ``stack``
    channel groups share a column."""
    return Mapping(p, q, strips=((0, layer.E),), segments=((0, layer.R),), stack=stack,
                   blocks=1, n_chunk=layer.N, m_chunk=-(-layer.M // p),
                   c_chunk=-(-layer.C // q))


def all_passes(rounds) -> list:
    return [ps for rnd in rounds for load in rnd.loads for ps in load.passes]


def glb_image(cfg, layer, mapping, rnd, load, ifmap, weights) -> dict[int, int]:
    """Word address -> word of the filter (``[i][s][c][k]``) and padded ifmap
    (``[x][h][c]``) regions of ``load``, as `DMAIn` leaves them in the GLB."""
    P, U, R = layer.P, layer.U, layer.R
    e0, es = rnd.strip
    h0, hs = e0 * U, (es - 1) * U + R
    padded = np.pad(ifmap, ((0, 0), (0, 0), (P, P), (P, P)))
    p_of, q_of = dict(rnd.mgroups), dict(groups_of(layer.C, mapping.q))
    regions = []
    for (m0, cg), base in load.filters.items():
        w = weights[m0:m0 + p_of[m0], cg:cg + q_of[cg]]
        regions.append((base, pack_slots(cfg, "filter", w.transpose(2, 3, 1, 0).reshape(-1))))
    for (n, cg), base in load.ifmaps.items():
        x = padded[n, cg:cg + q_of[cg], h0:h0 + hs, :]
        regions.append((base, pack_slots(cfg, "ifmap", x.transpose(2, 1, 0).reshape(-1))))
    return {base + k: w for base, words in regions for k, w in enumerate(words)}


def dma_commands(program, rnd, load) -> list[dict]:
    """The `DMAIn` commands of ``load`` into the DRAM image of ``program``."""
    layer = program.layer
    e0, es = rnd.strip
    h0, hs = e0 * layer.U, (es - 1) * layer.U + layer.R
    return ([{**program.inputs["filter", m0, cg], "glb": glb}
             for (m0, cg), glb in load.filters.items()] +
            [{**program.inputs["ifmap", n, cg, h0, hs], "glb": glb}
             for (n, cg), glb in load.ifmaps.items()])


def psum_words(cfg, layer, rnd, n: int, m0: int, p: int) -> range:
    """GLB word addresses of the psum region of image ``n``, filter group ``m0``."""
    base = rnd.psums[n, m0]
    return range(base, base + word_count(rnd.strip[1] * layer.F * p,
                                         elements_per_word(cfg)["psum"]))


def unpack_psums(cfg, layer, rnd, p: int, words: dict) -> np.ndarray:
    """Psums (p, rows, F) of a psum region (``[e][f][k]`` in psum slots) from its ``words``."""
    per = elements_per_word(cfg)["psum"]
    slot, bits = cfg.dram_bits // per, cfg.pe.psum_bits
    rows, F = rnd.strip[1], layer.F
    values = [(words[a] >> (slot * j)) & ((1 << bits) - 1) for a in sorted(words)
              for j in range(per)]
    values = np.array(values[:rows * F * p], dtype=np.int64)
    values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values.reshape(rows, F, p).transpose(2, 0, 1)


@dataclass
class LayerRun:
    """What `run_layer` read back: each pass's psum regions (pass, round, m0, p, psums),
    the final psums (N, M, E, F), the counters, the cycles of each pass and, with the DMA,
    the DRAM words `DMAOut` wrote."""

    passes: list = field(default_factory=list)
    final: np.ndarray = None
    counters: dict = None
    cycles: list = field(default_factory=list)
    dram_out: dict = field(default_factory=dict)


async def write_words(ctx, dut, words: dict):
    tx, every_byte = StreamSender(dut.host_write), (1 << len(dut.host_write.payload.mask)) - 1
    for addr, value in words.items():
        await tx.send(ctx, {"addr": addr, "data": value, "mask": every_byte})


async def read_words(ctx, dut, addrs) -> dict:
    return {addr: await read_word(ctx, dut.host_read, addr) for addr in addrs}


def run_layer(cfg, layer, mapping, rounds, ifmap, weights, *, program=None, dma_seed=None
              ) -> LayerRun:
    """All passes of ``rounds`` on a `PassEngine`. Each load fills the GLB by the host
    port, or with ``dma_seed`` by the DMA from ``program``'s DRAM image (ifmaps
    RLC-coded) with random DRAM stalls; then each round's psums leave through the
    output stage and the RLC encoder to DRAM."""
    dut = PassEngine(cfg)
    out, state = LayerRun(), {}
    dram = program.words if program is not None else {}

    async def memory(ctx):
        pending, rng = [], random.Random(dma_seed)
        while dma_seed is not None and "done" not in state:
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

    async def load_by_dma(ctx, cmds):
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

    async def unload_by_dma(ctx, rnd, regions, rng):
        stage = program.stage
        for n in rnd.images:
            for m0, p in rnd.mgroups:
                region = next(regions)
                assert (region.n, region.m0, region.p, region.e0) == (n, m0, p, rnd.strip[0])
                for k in range(p):
                    await StreamSender(dut.bias_w).send(ctx, {"index": k,
                                                              "value": stage.bias[m0 + k]})
                await StreamSender(dut.dma_out_cmd).send(ctx, {
                    "glb": rnd.psums[n, m0], "dram": region.dram,
                    "n": rnd.strip[1] * layer.F * p, "rlc": 1,
                    "stage": {"shift": stage.shift, "relu": int(stage.relu), "p": p}})
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
                assert sorted(got) == list(range(region.dram, region.dram + len(got)))
                assert len(got) <= region.words
                assert ctx.get(dut.dma_out_words) == len(got)
                out.dram_out.update(got)

    async def run_pass(ctx, ps):
        for name, value in ps.config.items():
            ctx.set(getattr(dut, name).as_value(), value)
        tx = StreamSender(dut.tag_w)
        for engine, kind in enumerate(GIN_KINDS):
            for index, (row, col, offset) in enumerate(ps.descs["tags"][kind]):
                await tx.send(ctx, {"engine": engine, "index": index,
                                    "entry": {"row": row, "col": col, "offset": offset}})
            ctx.set(getattr(dut, f"{kind}_desc"), ps.descs[kind])
        ctx.set(dut.gon_desc, ps.descs["gon"])
        ctx.set(dut.run, ps.run.fields(cfg.pe))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick()
        n = 1
        while ctx.get(dut.busy):
            await ctx.tick()
            n += 1
            assert n < TIMEOUT, f"pass {ps.n} {ps.blocks} still busy after {TIMEOUT} cycles"
        out.cycles.append(n)

    async def host(ctx):
        out.final = np.zeros((layer.N, layer.M, layer.E, layer.F), dtype=np.int64)
        regions, rng = iter(program.outputs if program is not None else ()), \
            random.Random(dma_seed)
        for rnd in rounds:
            e0, es = rnd.strip
            for load in rnd.loads:
                if dma_seed is None:
                    await write_words(ctx, dut, glb_image(cfg, layer, mapping, rnd, load,
                                                          ifmap, weights))
                else:
                    await load_by_dma(ctx, dma_commands(program, rnd, load))
                for ps in load.passes:
                    await run_pass(ctx, ps)
                    for m0, p in ps.blocks:
                        words = await read_words(ctx, dut, psum_words(cfg, layer, rnd, ps.n,
                                                                      m0, p))
                        out.passes.append((ps, rnd, m0, p,
                                           unpack_psums(cfg, layer, rnd, p, words)))
            for n in rnd.images:
                for m0, p in rnd.mgroups:
                    words = await read_words(ctx, dut, psum_words(cfg, layer, rnd, n, m0, p))
                    out.final[n, m0:m0 + p, e0:e0 + es] = unpack_psums(cfg, layer, rnd, p,
                                                                        words)
            if dma_seed is not None:
                await unload_by_dma(ctx, rnd, regions, rng)
        out.counters = {name: ctx.get(getattr(dut, name)) for name in COUNTERS}
        state["done"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(memory)
    sim.run()
    return out


def check(cfg, layer, ifmap, weights, run: LayerRun):
    """Each pass's psums against `conv2d_psums` over the (channel, filter row) pairs done
    so far for its image, filters and strip; the final psums and the MAC counters."""
    done = {}
    for ps, rnd, m0, p, got in run.passes:
        e0, es = rnd.strip
        mask = done.setdefault((ps.n, m0, e0), np.zeros((layer.C, layer.R), dtype=np.int64))
        for pc in ps.step.pieces:
            mask[pc.cg:pc.cg + ps.run.q, pc.r0:pc.r0 + pc.rows] = 1
        want = conv2d_psums(ifmap[ps.n:ps.n + 1], weights[m0:m0 + p] * mask[:, :, None],
                            stride=layer.U, padding=layer.P,
                            psum_bits=cfg.pe.psum_bits)[0, :, e0:e0 + es]
        assert np.array_equal(got, want), (
            f"pass of image {ps.n}, filters {m0}.., {ps.step}, strip {rnd.strip} psums:\n"
            f"{got}\nwant\n{want}")
    want = conv2d_psums(ifmap, weights, stride=layer.U, padding=layer.P,
                        psum_bits=cfg.pe.psum_bits)
    assert np.array_equal(run.final, want)
    assert run.counters["mac_cycles"] + run.counters["gated_macs"] == layer.macs
    assert run.counters["gated_macs"] == layer_gated_macs(layer, ifmap)


@pytest.mark.parametrize("trial", range(3))
def test_random_layers(trial, seed):
    """Random small layers (`helpers.random_layer`) with the mapper's mapping for their
    ``p`` and ``q`` (stacked and side-by-side sets included), all passes driven by the
    engines."""
    rng = np.random.default_rng([seed, trial])
    layer, p, q = random_layer(TINY, rng)
    ifmap, weights = random_data(TINY, rng, layer)
    mapping, rounds = plan_layer(TINY, layer, p=p, q=q)
    print(f"{layer} p={p} q={q}: {mapping.describe(layer)}, {len(all_passes(rounds))} passes")
    run = run_layer(TINY, layer, mapping, rounds, ifmap, weights)
    print(f"cycles per pass {run.cycles}, {layer.macs} MACs, counters {run.counters}")
    check(TINY, layer, ifmap, weights, run)


def test_channel_groups_accumulate_in_the_glb(seed):
    """C = 5 in groups of q = 2, two images, two filter groups: each group's psums stay in
    the GLB and come back through the psum GIN for the next group."""
    layer = ConvLayer(N=2, C=5, M=3, H=6, W=7, R=3, S=3, U=1, P=0)
    assert _run_accumulating(TINY, layer, 2, 2, seed) == 8


def test_wide_psum_packets_accumulate_in_the_glb(seed):
    """The same with 2 psums a psum GIN and a GON packet (`NoCConfig.psum_gin_values`,
    `gon_values`): the ofmap bit-exact."""
    import dataclasses
    cfg = dataclasses.replace(TINY, noc=dataclasses.replace(TINY.noc, psum_gin_values=2,
                                                            gon_values=2))
    layer = ConvLayer(N=1, C=5, M=3, H=6, W=7, R=3, S=3, U=1, P=0)
    assert _run_accumulating(cfg, layer, 3, 2, seed) >= 2


def _run_accumulating(cfg, layer, p, q, seed) -> int:
    """``layer`` on ``cfg`` with the reference mapping (``p``, ``q``), random data of
    ``seed`` (30 % zeros in the ifmap), checked bit-exact; the passes that add psums."""
    rng = np.random.default_rng(seed)
    ifmap = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.3, True)
    weights = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.0, True)
    mapping = reference_mapping(layer, p, q)
    rounds = build_rounds(cfg, layer, mapping)
    run = run_layer(cfg, layer, mapping, rounds, ifmap, weights)
    print(f"cycles per pass {run.cycles}, {layer.macs} MACs, counters {run.counters}")
    check(cfg, layer, ifmap, weights, run)
    return sum(ps.run.accumulate for ps in all_passes(rounds))


def test_psums_wrap_over_fifteen_groups_in_the_glb(seed):
    """C = 60 in 15 groups of q = 4, values near -128: the psums wrap around 24 bits while
    they go GLB -> psum GIN -> array -> GON -> GLB fifteen times (32-bit slots)."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=60, M=2, H=4, W=4, R=3, S=3)
    ifmap = rng.choice([-128, -127], size=(1, 60, 4, 4))
    weights = rng.choice([-128, -127], size=(2, 60, 3, 3))
    mapping = reference_mapping(layer, 2, 4)
    rounds = build_rounds(TINY, layer, mapping)
    assert len(all_passes(rounds)) == 15
    run = run_layer(TINY, layer, mapping, rounds, ifmap, weights)
    print(f"cycles per pass {run.cycles}")
    check(TINY, layer, ifmap, weights, run)
    assert (conv2d_psums(ifmap, weights, psum_bits=64) >= 1 << 23).all() and (run.final < 0).all()


def test_small_preset_stride2_set(seed):
    """A 3x7 set with stride 2 on the 6x7 `small` array, two channel groups: merged ifmap
    bands, tag tables with one entry per (row, tag) and their offsets; bit-exact."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=2, M=2, H=15, W=9, R=3, S=3, U=2, P=0)
    ifmap = random_values(rng, 8, (1, 2, 15, 9), 0.3, False)
    weights = random_values(rng, 8, (2, 2, 3, 3), 0.0, False)
    mapping = reference_mapping(layer, 2, 1)
    rounds = build_rounds(SMALL, layer, mapping)
    assert len(all_passes(rounds)[0].descs["tags"]["ifmap"]) >= 15
    run = run_layer(SMALL, layer, mapping, rounds, ifmap, weights)
    print(f"cycles per pass {run.cycles}, {layer.macs} MACs")
    check(SMALL, layer, ifmap, weights, run)


def test_layer_too_big_for_the_glb():
    """A 3x3 layer takes 2 filter words (9 bytes), 2 ifmap words, 1 psum word; 200 channels
    of 6x30 ifmaps (36000 bytes) in one load do not fit the tiny 8 KiB GLB."""
    layer = ConvLayer(N=1, C=1, M=1, H=3, W=3, R=3, S=3)
    assert [r.glb_words for r in build_rounds(TINY, layer, reference_mapping(layer, 1, 1))] \
        == [2 + 2 + 1]
    layer = ConvLayer(N=1, C=200, M=1, H=6, W=30, R=3, S=3)
    with pytest.raises(ValueError, match="GLB words, the GLB has 1024"):
        build_rounds(TINY, layer, reference_mapping(layer, 1, 4))


@pytest.mark.verilog
def test_generate_pass_and_glb_tops(tmp_path):
    """`ommatidia generate --top pass` / `--top glb` write Verilog with the host ports that
    `verilator --lint-only` accepts."""
    from ommatidia.cli import main
    for top, ports in (("pass", ("host_write__payload", "host_read__addr__valid", "tag_w__valid",
                                 "ifmap_desc", "gon_desc", "run", "start", "busy", "mac_cycles")),
                       ("glb", ("read__0__addr__payload", "read__3__data", "write__1__ready"))):
        assert main(["generate", "--preset", "tiny", "--top", top, "-o", str(tmp_path),
                     "--lint"]) == 0
        text = (tmp_path / f"ommatidia_{top}.v").read_text()
        for port in ports:
            assert f" {port};" in text or f" {port}," in text, (top, port)


def test_layer_through_dma_in_and_out(seed):
    """The GLB is filled by the DMA from the compiled DRAM image (filters raw, padded
    ifmaps RLC-coded, random DRAM stalls), every pass runs (bit-exact psums and counters),
    then the DMA takes each psum region out through the output stage (a bias per filter,
    ReLU, rounding shift, saturation) and the RLC encoder: the DRAM words decode to the
    golden ofmap."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=2, C=3, M=2, H=4, W=6, R=3, S=3, U=1, P=1)
    ifmap = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.6, False)
    weights = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.0, True)
    program = compile_layer(TINY, layer, ifmap, weights, bias=BIAS[:layer.M], relu=True,
                            shift=SHIFT, mapping=reference_mapping(layer, 2, 2))
    cmds = [c for rnd in program.rounds for load in rnd.loads
            for c in dma_commands(program, rnd, load)]
    assert any(c["rlc"] for c in cmds) and any(not c["rlc"] for c in cmds)
    run = run_layer(TINY, layer, program.mapping, program.rounds, ifmap, weights,
                    program=program, dma_seed=seed)
    print(f"cycles per pass {run.cycles}")
    check(TINY, layer, ifmap, weights, run)
    golden = conv2d(ifmap, weights, BIAS[:layer.M], stride=1, padding=1, psum_bits=24,
                    relu=True, shift=SHIFT, act_bits=8)
    for r in program.outputs:
        words = [run.dram_out[a] for a in sorted(run.dram_out) if r.dram <= a < r.dram + r.words]
        want = golden[r.n, r.m0:r.m0 + r.p, r.e0:r.e0 + r.rows].transpose(1, 2, 0).reshape(-1)
        assert np.array_equal(decode(words, len(want), TINY.rlc), want), (r.n, r.m0)
    ofmap, _ = program.ofmap(lambda a, n: [run.dram_out.get(a + k, 0) for k in range(n)])
    assert np.array_equal(ofmap, golden)


def test_streaming_filters_in_whole_passes(seed):
    """`PEConfig.stream_filters` in the whole pass (filter multicast to PEs that compute
    while their rows' weights come): every pass's psums bit-exact, and the layer's passes
    take fewer cycles than with PEs that wait for every weight (the same rounds)."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=4, M=4, H=9, W=9, R=3, S=3, U=1, P=1)
    ifmap, weights = random_data(TINY, rng, layer)
    mapping, rounds = plan_layer(TINY, layer, p=2, q=2)
    cycles = {}
    for stream_filters in (False, True):
        cfg = dataclasses.replace(TINY, pe=dataclasses.replace(TINY.pe,
                                                               stream_filters=stream_filters))
        run = run_layer(cfg, layer, mapping, rounds, ifmap, weights)
        check(cfg, layer, ifmap, weights, run)
        cycles[stream_filters] = run.cycles
    print(f"cycles per pass {cycles[False]}, streaming {cycles[True]}")
    assert sum(cycles[True]) < sum(cycles[False])


@pytest.mark.parametrize("trial", range(2))
def test_streaming_filters_random_layers(trial, seed):
    """Random small layers on `tiny` with `PEConfig.stream_filters` and 8 weights a filter
    packet (the compiler then interleaves the filter tags' packets), all passes driven by
    the engines: bit-exact."""
    cfg = dataclasses.replace(TINY, pe=dataclasses.replace(TINY.pe, stream_filters=True),
                              noc=dataclasses.replace(TINY.noc, filter_gin_values=8))
    rng = np.random.default_rng([seed, trial])
    layer, p, q = random_layer(cfg, rng)
    ifmap, weights = random_data(cfg, rng, layer)
    mapping, rounds = plan_layer(cfg, layer, p=p, q=q)
    run = run_layer(cfg, layer, mapping, rounds, ifmap, weights)
    print(f"{layer} p={p} q={q}: cycles per pass {run.cycles}")
    check(cfg, layer, ifmap, weights, run)
