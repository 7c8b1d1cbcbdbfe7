"""The PE array in the Amaranth simulator: row-stationary CONV layers against the golden model.

Each layer runs as passes (`ommatidia.sim.array_model.RSSchedule`) on a PE set
placed on the tiny 3x4 array with the IDs of `gen.multicast.plan_for`. A
controller process sends each pass's run and waits for the array to be idle;
the filter, ifmap and psum GIN senders and the GON drain are separate
processes with random idle and back-pressure. The psums of a channel group go
back into the array through the psum GIN for the next group, as in Eyeriss.
Every pass's GON psums are checked bit-exact against `conv2d_psums` over the
channels done so far, and the layer's against the whole `conv2d_psums`.
"""

import dataclasses
import gc
import random
import sys
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ommatidia.gen.config import SMALL, TINY
from ommatidia.gen.layer import ConvLayer
from ommatidia.hw.array import COUNTERS, PEArray
from ommatidia.sim.array_model import RSSchedule, layer_gated_macs, random_values
from ommatidia.sim.golden import conv2d_psums
from ommatidia.sim.streams import StreamReceiver, StreamSender

from helpers import random_data, random_layer


class Deadlock(AssertionError):
    """No stream moved and no MAC was done for `QUIET` cycles."""


QUIET = 300


def simulate(sched: RSSchedule, *, seed: int, idle: float, stall: float, psum_order=None):
    """Run every pass of ``sched`` on a `PEArray`, each once the one before is done and
    its psums are all out of the GON, as the pass engine runs them (a `GonQueue` may still
    hold a pass's psums when its PEs are no longer ``busy``).

    Returns (psums (N, M, E, F), per-pass psums, counters, cycles).
    ``psum_order`` may reorder the psum GIN packets of a pass (for the
    deadlock test). Raises `Deadlock` when nothing moves for `QUIET` cycles.
    """
    cfg, layer = sched.cfg, sched.layer
    dut = PEArray(cfg)
    rng = random.Random(seed)
    psums = np.zeros((layer.N, layer.M, layer.E, layer.F), dtype=np.int64)
    results = {}
    state = {"cycles": 0, "moved": 0}

    def packet(item):
        return {"data": item[0], "row": item[1], "col": item[2]}

    async def control(ctx):
        for name, value in sched.config().items():
            ctx.set(getattr(dut, name).as_value(), value)
        for ps in sched.passes:
            await StreamSender(dut.run).send(ctx, ps.run.fields(cfg.pe))
            state["moved"] = state["cycles"]
            while ctx.get(dut.busy) or ps.index not in results:
                await ctx.tick()
        while len(results) < len(sched.passes):
            await ctx.tick()
        await ctx.tick().repeat(2)
        state["counters"] = {name: ctx.get(getattr(dut, name)) for name in COUNTERS}

    def feeder(kind, packets_of):
        async def feed(ctx):
            tx = StreamSender(getattr(dut, kind), random.Random(rng.random()), idle)
            for ps in sched.passes:
                for item in packets_of(ps):
                    await tx.send(ctx, packet(item))
                    state["moved"] = state["cycles"]
        return feed

    async def feed_psum(ctx):
        tx = StreamSender(dut.psum, random.Random(rng.random()), idle)
        for ps in sched.passes:
            if not ps.run.accumulate:
                continue
            while ps.previous not in results:
                await ctx.tick()
            items = sched.psum_packets(ps, psums)
            if psum_order is not None:
                items = psum_order(sched, ps, psums)
            for item in items:
                await tx.send(ctx, packet(item))
                state["moved"] = state["cycles"]

    async def drain(ctx):
        rx = StreamReceiver(dut.gon, random.Random(rng.random()), stall)
        for ps in sched.passes:
            items = []
            for _ in range(sched.gon_count(ps)):
                v = await rx.recv(ctx)
                items.append((v.data, v.row, v.col))
                state["moved"] = state["cycles"]
            results[ps.index] = sched.scatter(ps, items, psums)

    async def clock(ctx):
        work = 0
        async for _, _, macs, gated in ctx.tick().sample(dut.mac_cycles, dut.gated_macs):
            state["cycles"] += 1
            now = macs + gated
            if now != work:
                work, state["moved"] = now, state["cycles"]
            if state["cycles"] - state["moved"] > QUIET:
                raise Deadlock(f"nothing moved for {QUIET} cycles at cycle {state['cycles']}; "
                               f"passes done: {sorted(results)}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    sim.add_testbench(feeder("filter", sched.filter_packets))
    sim.add_testbench(feeder("ifmap", sched.ifmap_packets))
    sim.add_testbench(feed_psum)
    sim.add_testbench(drain)
    sim.add_process(clock)
    sim.run()
    return psums, results, state["counters"], state["cycles"]


def random_schedule(cfg, rng, layer, p, q):
    ifmap, weights = random_data(cfg, rng, layer)
    origin = (int(rng.integers(0, cfg.rows - layer.R + 1)),
              int(rng.integers(0, cfg.cols - layer.E + 1)))
    return RSSchedule(cfg, layer, ifmap, weights, p=p, q=q, origin=origin)


def check_layer(sched, psums, results, counters):
    layer, cfg = sched.layer, sched.cfg
    for ps in sched.passes:
        want = sched.golden(ps)
        assert np.array_equal(results[ps.index], want), (
            f"pass {ps} psums:\n{results[ps.index]}\nwant\n{want}")
    want = conv2d_psums(sched.ifmap, sched.weights, stride=layer.U, padding=layer.P,
                        psum_bits=cfg.pe.psum_bits)
    assert np.array_equal(psums, want)
    assert counters["mac_cycles"] + counters["gated_macs"] == layer.macs
    assert counters["gated_macs"] == layer_gated_macs(layer, sched.ifmap)


def describe(sched):
    return (f"{sched.layer} p={sched.passes[0].p} q={sched.passes[0].q} "
            f"origin={sched.pe_set.origin}: {len(sched.passes)} passes")


@pytest.mark.parametrize("trial", range(4))
def test_random_layers(trial, seed):
    """Random small CONV layers on the tiny array, bit-exact, with idle and back-pressure."""
    rng = np.random.default_rng([seed, trial])
    cfg = TINY
    layer, p, q = random_layer(cfg, rng)
    sched = random_schedule(cfg, rng, layer, p, q)
    idle, stall = (float(rng.choice([0.0, 0.2, 0.5])) for _ in range(2))
    print(f"{describe(sched)}; idle {idle}, stall {stall}")
    psums, results, counters, cycles = simulate(sched, seed=seed, idle=idle, stall=stall)
    print(f"{cycles} cycles, {layer.macs} MACs, counters {counters}")
    check_layer(sched, psums, results, counters)


def test_random_layer_with_a_gon_queue(seed):
    """A random layer on the tiny array with a queue of 2 GON packets after each top PE
    (`NoCConfig.gon_queue`), under idle and heavy GON back-pressure: bit-exact."""
    rng = np.random.default_rng(seed)
    cfg = dataclasses.replace(TINY, noc=dataclasses.replace(TINY.noc, gon_queue=2))
    layer, p, q = random_layer(cfg, rng)
    sched = random_schedule(cfg, rng, layer, p, q)
    print(describe(sched))
    psums, results, counters, cycles = simulate(sched, seed=seed, idle=0.2, stall=0.7)
    check_layer(sched, psums, results, counters)


def test_channel_groups_accumulate_through_psum_gin(seed):
    """C = 5 in groups of q = 2 on a 3x4 set, two images, two filter groups: the psums of
    each channel group come back through the psum GIN for the next."""
    rng = np.random.default_rng(seed)
    cfg = TINY
    layer = ConvLayer(N=2, C=5, M=3, H=6, W=7, R=3, S=3, U=1, P=0)
    assert (layer.E, layer.F) == (4, 5)
    ifmap = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.3, True)
    weights = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.0, True)
    sched = RSSchedule(cfg, layer, ifmap, weights, p=2, q=2)
    assert sum(ps.run.accumulate for ps in sched.passes) == 2 * 2 * 2
    assert sum(ps.run.load_filter for ps in sched.passes) == 2 * 3
    print(describe(sched))
    psums, results, counters, cycles = simulate(sched, seed=seed, idle=0.2, stall=0.3)
    print(f"{cycles} cycles, {layer.macs} MACs, counters {counters}")
    check_layer(sched, psums, results, counters)


def test_psums_wrap_over_many_channel_groups(seed):
    """C = 60 in 15 groups of q = 4, activations and weights near -128: each output sums 540
    products of about 2**14, so the psums wrap around 24 bits on their way through the
    psum GIN, and the wrapped values match the golden model."""
    rng = np.random.default_rng(seed)
    cfg = TINY
    layer = ConvLayer(N=1, C=60, M=2, H=4, W=4, R=3, S=3)
    ifmap = rng.choice([-128, -127], size=(1, 60, 4, 4))
    weights = rng.choice([-128, -127], size=(2, 60, 3, 3))
    sched = RSSchedule(cfg, layer, ifmap, weights, p=2, q=4)
    assert len(sched.passes) == 15
    psums, results, counters, cycles = simulate(sched, seed=seed, idle=0.1, stall=0.2)
    print(f"{cycles} cycles, {layer.macs} MACs")
    check_layer(sched, psums, results, counters)
    exact = conv2d_psums(ifmap, weights, psum_bits=64)
    assert (exact >= 1 << 23).all() and (psums < 0).all()


def test_counters_of_a_stride2_padded_layer(seed):
    """Stride 2 with padding: MACs done + gated = N*M*C*E*F*R*S, gated = zero activations met
    (padding included), and the sums are what the PEs count."""
    rng = np.random.default_rng(seed)
    cfg = TINY
    layer = ConvLayer(N=1, C=2, M=2, H=7, W=7, R=3, S=3, U=2, P=1)
    assert (layer.E, layer.F) == (4, 4)
    ifmap = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.5, False)
    weights = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.0, False)
    sched = RSSchedule(cfg, layer, ifmap, weights, p=2, q=2)
    psums, results, counters, _ = simulate(sched, seed=seed, idle=0.0, stall=0.0)
    check_layer(sched, psums, results, counters)
    assert counters["mac_cycles"] + counters["gated_macs"] == 1 * 2 * 2 * 4 * 4 * 3 * 3
    assert counters["gated_macs"] > 0


def test_small_preset_stride2_set(seed):
    """A 3x7 set with stride 2 on the 6x7 `small` array: rows i and i + 2 share ifmap rows,
    so the planner merges their bands; bit-exact."""
    rng = np.random.default_rng(seed)
    cfg = SMALL
    layer = ConvLayer(N=1, C=2, M=2, H=15, W=9, R=3, S=3, U=2, P=0)
    assert (layer.E, layer.F) == (7, 4)
    ifmap = random_values(rng, 8, (1, 2, 15, 9), 0.3, False)
    weights = random_values(rng, 8, (2, 2, 3, 3), 0.0, False)
    sched = RSSchedule(cfg, layer, ifmap, weights, p=2, q=2, origin=(3, 0))
    psums, results, counters, cycles = simulate(sched, seed=seed, idle=0.2, stall=0.3)
    print(f"{cycles} cycles, {layer.macs} MACs")
    check_layer(sched, psums, results, counters)


def test_psum_order_matters(seed):
    """The psum GIN must send output-interleaved: the same layer deadlocks when the psums of
    ofmap row 0 all go first (PE (2, 1) fills its 4-column ifmap ring waiting for its
    psums, which stops the ifmap rows PE (2, 0) needs)."""
    rng = np.random.default_rng(seed)
    cfg = TINY
    layer = ConvLayer(N=1, C=6, M=1, H=4, W=10, R=3, S=3)
    ifmap = random_values(rng, 8, (1, 6, 4, 10), 0.0, False)
    weights = random_values(rng, 8, (1, 6, 3, 3), 0.0, False)
    sched = RSSchedule(cfg, layer, ifmap, weights, p=1, q=3)
    assert sched.passes[1].run.ring_columns(cfg.pe) == 4 < layer.W

    def row_major(sched, ps, psums):
        tags = sched.plan.psum.tags
        return [(int(psums[ps.n, ps.m0 + k, e, f]), rt, ct)
                for e in range(layer.E) for f in range(layer.F)
                for rt, ct in tags[("psum", 0, e)] for k in range(ps.p)]

    psums, results, counters, _ = simulate(sched, seed=seed, idle=0.0, stall=0.0)
    check_layer(sched, psums, results, counters)
    # The stuck testbenches are abandoned inside `ctx.tick().until()`; closing them
    # when they are collected reports an unraisable RuntimeError, expected here.
    hook, abandoned = sys.unraisablehook, []
    sys.unraisablehook = abandoned.append
    try:
        with pytest.raises(Deadlock, match="passes done: \\[0\\]"):
            simulate(sched, seed=seed, idle=0.0, stall=0.0, psum_order=row_major)
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert all("asynchronous generator" in str(u.exc_value) for u in abandoned), abandoned


def test_disabled_pes_stay_idle(seed):
    """A 1x2 set on the 3x4 array: the other PEs take no run and count nothing."""
    rng = np.random.default_rng(seed)
    cfg = TINY
    layer = ConvLayer(N=1, C=1, M=2, H=2, W=5, R=1, S=1)
    ifmap = random_values(rng, 8, (1, 1, 2, 5), 0.0, False)
    weights = random_values(rng, 8, (2, 1, 1, 1), 0.0, False)
    sched = RSSchedule(cfg, layer, ifmap, weights, p=2, q=1, origin=(1, 2))
    psums, results, counters, _ = simulate(sched, seed=seed, idle=0.1, stall=0.1)
    check_layer(sched, psums, results, counters)
    assert sched.pes() == [(1, 2), (1, 3)]
    assert sched.config()["enable"] == (1 << 6) | (1 << 7)


def test_array_rejects_a_non_array_config():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match="ArrayConfig"):
            PEArray(TINY.pe)
        gc.collect()


def test_schedule_rejects_a_set_that_does_not_fit():
    layer = ConvLayer(N=1, C=1, M=1, H=8, W=4, R=3, S=3)
    with pytest.raises(ValueError, match="does not fit"):
        RSSchedule(TINY, layer, np.zeros((1, 1, 8, 4), int), np.zeros((1, 1, 3, 3), int),
                   p=1, q=1)
    with pytest.raises(ValueError, match="ifmap_spad_depth"):
        RSSchedule(TINY, ConvLayer(N=1, C=5, M=1, H=3, W=4, R=3, S=3),
                   np.zeros((1, 5, 3, 4), int), np.zeros((1, 5, 3, 3), int), p=1, q=5)


def test_generate_array_top(tmp_path):
    """`ommatidia generate --top array` writes the tiny array with its ports."""
    from ommatidia.cli import main
    assert main(["generate", "--preset", "tiny", "--top", "array", "-o", str(tmp_path)]) == 0
    text = (tmp_path / "ommatidia_array.v").read_text()
    for port in ("filter__payload", "ifmap__valid", "psum__ready", "gon__payload",
                 "ifmap_col_id", "up", "enable", "run__payload", "busy", "mac_cycles"):
        assert f" {port};" in text or f" {port}," in text, port
