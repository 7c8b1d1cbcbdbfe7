"""Helpers shared by several test modules: the repository root, random layers and data,
a GLB read, and the whole `System` run in the Amaranth simulator.

Fixtures live in ``conftest.py``; no test module imports another.
"""

import pathlib

import numpy as np
from amaranth import ResetInserter, Signal
from amaranth.sim import Simulator

from ommatidia.explore.rtl import random_layer as explore_random_layer
from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.mapper import Mapping
from ommatidia.hw.system import STATUS_BUSY, STATUS_DONE, System
from ommatidia.hw.top import COUNTERS
from ommatidia.sim.array_model import random_values
from ommatidia.sim.golden import layer_ofmap

ROOT = pathlib.Path(__file__).resolve().parent.parent

SYSTEM_LIMIT = 100_000


def random_layer(cfg, rng):
    """A layer whose R x E set fits the array, with p and q that fit the spads."""
    pe = cfg.pe
    layer = explore_random_layer(cfg, rng)
    R, U = layer.R, layer.U
    q_max = min(layer.C, pe.ifmap_spad_depth // R, pe.ifmap_spad_depth // U)
    q = int(rng.integers(1, q_max + 1))
    p_max = min(layer.M, pe.psum_spad_depth, pe.filter_spad_depth // (q * R))
    p = int(rng.integers(1, p_max + 1))
    return layer, p, q


def random_data(cfg, rng, layer):
    """Random (ifmap, weights) of ``layer``: a random share of zero activations, sometimes
    only values at the ends of the ranges."""
    zero_fraction = float(rng.uniform(0, 0.9))
    extreme = bool(rng.random() < 0.4)
    ifmap = random_values(rng, cfg.pe.act_bits, (layer.N, layer.C, layer.H, layer.W),
                          zero_fraction, extreme)
    weights = random_values(rng, cfg.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S),
                            0.1, extreme)
    return ifmap, weights


async def read_word(ctx, port, addr, rng=None, idle=0):
    """Read GLB word ``addr`` through a `GLBReadSignature` ``port``, after random idle
    cycles (a share ``idle`` drawn from ``rng``)."""
    while idle and rng.random() < idle:
        await ctx.tick()
    ctx.set(port.addr.valid, 1)
    ctx.set(port.addr.payload, addr)
    await ctx.tick().until(port.addr.ready)
    ctx.set(port.addr.valid, 0)
    assert ctx.get(port.valid), "no read response one cycle after the grant"
    return ctx.get(port.data)


def simulate_system(cfg, words: dict, reads, *, stall_rate=0, stall_seed=1, runs=1,
                    probe=None, trace=None, reset_when=None):
    """Load ``words`` into a `System`'s DRAM (its memory, not the host port, which the
    board link tests drive), run ``runs`` times; returns
    [(status, counters, {addr: word of ``reads``})]. ``words`` may be a list: an image
    loaded before each run (one run each). With ``probe`` (the `System` -> signals), ``trace`` gets
    their values on every cycle the accelerator is busy. With ``reset_when`` (the
    `System` -> signals, and n) the first run is cut by a reset of the whole `System`
    (its DRAM keeps its words) on the n-th cycle those signals are all high, and started
    again; the reset must happen."""
    dut = System(cfg, 4096)
    rst = Signal()
    top = dut if reset_when is None else ResetInserter(rst)(dut)
    cut = [] if reset_when is None else reset_when[0](dut)
    out = []
    images = words if isinstance(words, list) else [words] + [{}] * (runs - 1)

    async def tb(ctx):
        high = 0
        for image in images:
            for addr, word in image.items():
                ctx.set(dut.dram.data[addr], word)
            ctx.set(dut.stall_rate, stall_rate)
            ctx.set(dut.stall_seed, stall_seed)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 0
            while ctx.get(dut.status) & STATUS_BUSY:
                if cut and high < reset_when[1] and all(ctx.get(s) for s in cut):
                    high += 1
                    if high == reset_when[1]:
                        ctx.set(rst, 1)
                        await ctx.tick()
                        ctx.set(rst, 0)
                        ctx.set(dut.start, 1)
                        await ctx.tick()
                        ctx.set(dut.start, 0)
                await ctx.tick()
                cycles += 1
                assert cycles < SYSTEM_LIMIT, "the accelerator did not finish"
            counters = {name: ctx.get(dut.counters[i]) for i, name in enumerate(COUNTERS)}
            mem = {addr: ctx.get(dut.dram.data[addr]) for addr in reads}
            out.append((ctx.get(dut.status), counters, mem))
        assert not cut or high == reset_when[1], \
            f"the reset signals were all high on {high} cycles, not {reset_when[1]}"

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    if probe is not None:
        signals = probe(dut)

        async def watch(ctx):
            async for _, _, busy, *values in ctx.tick().sample(dut._accel.busy, *signals):
                if busy:
                    trace.append(values)
        sim.add_process(watch)
    sim.run()
    return out


def _mapped_program(cfg, seed, layer, mapping):
    """``layer`` compiled on ``cfg`` with ``mapping``: random 8-bit data (ifmaps of a
    random zero share), a bias, ReLU and a shift of 2."""
    rng = np.random.default_rng(seed)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), rng.uniform(0, 0.9))
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.1)
    return compile_layer(cfg, layer, x, w, bias=rng.integers(-3000, 3000, layer.M),
                         relu=True, shift=2, mapping=mapping)


def beside_program(cfg, seed, N=2):
    """A layer on ``cfg`` (`tiny` with ``glb_bank_reads``: 4 banks of 256 GLB words) of
    one round an image, each of four filter groups of 2 whose psum regions of 120 GLB
    words sit at 0, 120, 240 and 360: the region at 0 goes out beside the pass of the one
    at 360 (banks 0 and 1), and the last one (at 360) beside the next image's first pass
    (writing the one at 0)."""
    return _mapped_program(cfg, seed, ConvLayer(N=N, C=2, M=8, H=4, W=30, R=3, S=3, U=1, P=1),
                           Mapping(p=2, q=2, strips=((0, 4),), segments=((0, 3),), stack=1,
                                   blocks=1, n_chunk=1, m_chunk=4, c_chunk=1))


def split_program(cfg, seed, N=2):
    """A layer on ``cfg`` (`tiny` with ``glb_bank_reads``) of one round an image, each of
    three filter groups of 4 (one a pass) whose psums and loads fit the GLB only packed:
    the last group's psum region sits at the GLB's end above the loads
    (`ommatidia.gen.banks.split_layout`), so it drains beside the next image's first pass."""
    return _mapped_program(cfg, seed, ConvLayer(N=N, C=1, M=12, H=4, W=24, R=3, S=3, U=1, P=1),
                           Mapping(p=4, q=1, strips=((0, 4),), segments=((0, 3),), stack=1,
                                   blocks=1, n_chunk=1, m_chunk=3, c_chunk=1))


def assert_same_under_dram_stalls(cfg, prog, counters, mem, seed, *, probe=None, trace=None):
    """With DRAM stalls on both ports (40 %) ``prog`` ends done with the same ofmap
    regions ``mem`` and the same ``counters``, in more cycles (``probe`` and ``trace`` as
    `simulate_system` takes them)."""
    (status, stalled, smem), = simulate_system(cfg, prog.words, region_addrs(prog),
                                               stall_rate=102, stall_seed=seed % 65521 + 1,
                                               probe=probe, trace=trace)
    assert status == STATUS_DONE and smem == mem
    assert stalled["cycles"] > counters["cycles"]
    assert stalled | {"cycles": 0} == counters | {"cycles": 0}


def region_addrs(prog):
    """DRAM addresses of the ofmap regions of a `LayerProgram`."""
    return [a for r in prog.outputs for a in range(r.dram, r.dram + r.words)]


def assert_golden_ofmap(prog, mem):
    """The ofmap regions read back, ``mem``, are ``prog``'s golden ofmap."""
    ofmap = prog.ofmap(lambda a, n: [mem[a + k] for k in range(n)])[0]
    assert np.array_equal(ofmap, layer_ofmap(prog))


def run_layer_golden(cfg, prog, *, both=None):
    """Runs ``prog``'s layer once on the `System` and asserts it ends done with the golden
    ofmap. Returns its counters, the ofmap regions' DRAM words and, with ``both`` (the
    accelerator's engine -> two of its signals), the cycles both were high (else None)."""
    trace = []
    probe = None if both is None else (lambda dut: list(both(dut._accel.engine)))
    (status, counters, mem), = simulate_system(cfg, prog.words, region_addrs(prog),
                                               probe=probe, trace=trace)
    assert status == STATUS_DONE
    assert_golden_ofmap(prog, mem)
    beside = None if both is None else sum(1 for a, b in trace if a and b)
    return counters, mem, beside



def part_staged_program(cfg, seed):
    """A layer of two filter groups side by side (as AlexNet CONV1 on `eyeriss`), 2 filters
    and 2 channels a PE, compiled on ``cfg``: on `tiny` with a 16-word filter GLB the two
    regions of a pass (5 + 5 words) do not fit half of it, so each pass stages the first
    and reads the other from the GLB; the short channel group's (3 + 3) stage whole."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=3, M=4, H=4, W=7, R=3, S=3, U=1, P=1)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.3)
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.1)
    mapping = Mapping(p=2, q=2, strips=((0, 2), (2, 2)), segments=((0, 3),), stack=1,
                      blocks=2, n_chunk=1, m_chunk=2, c_chunk=1)
    return compile_layer(cfg, layer, x, w, bias=rng.integers(-3000, 3000, layer.M),
                         relu=True, shift=2, mapping=mapping)
