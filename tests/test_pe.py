"""PE in the Amaranth simulator against the golden row convolution."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from ommatidia.gen.config import EYERISS, PRESETS, TINY
from ommatidia.hw.pe import PE, PERun
from ommatidia.sim.pe_model import PECase, random_pe_case
from ommatidia.sim.streams import StreamReceiver, StreamSender


def packets(weights: list, values: int, rng: random.Random | None) -> list:
    """``weights`` as filter packets of 1..``values`` weights each (random sizes, so the
    spad's write pointer takes every bank alignment; all full but the last without
    ``rng``)."""
    out, k = [], 0
    while k < len(weights):
        n = min(rng.randint(1, values) if rng else values, len(weights) - k)
        out.append({"n": n, "values": weights[k:k + n] + [0] * (values - n)})
        k += n
    return out


def column_packets(case: PECase, values: int, rng: random.Random | None) -> list:
    """``case``'s ifmap stream as packets of 1..``values`` activations of one column each
    (random sizes, so the spad's write address takes every bank alignment; full
    without ``rng``)."""
    stream, q = [int(v) for v in case.ifmap_stream()], case.run.q
    return [p for x in range(0, len(stream), q) for p in packets(stream[x:x + q], values, rng)]


def simulate(pe: PE, cases: list[PECase], *, seed: int, idle: float, stall: float,
             values: int = 1, whole: bool = False, ifmap_values: int = 1,
             max_cycles: int = 100_000):
    """Run ``cases`` back to back; return (psums per case, cycles, counters). With
    ``values`` > 1 the filters go in packets of up to that many weights (all full but
    the last with ``whole``); with ``ifmap_values`` > 1 the ifmaps in packets of up to
    that many of one column (full with ``whole``). A PE (or a stream) that hangs fails
    after ``max_cycles``."""
    rng = random.Random(seed)
    cfg = pe.cfg
    sim = Simulator(pe)
    sim.add_clock(1e-8)
    results = []
    state = {"cycles": 0}

    async def control(ctx):
        for case in cases:
            await StreamSender(pe.run).send(ctx, case.run.fields(cfg))
            while ctx.get(pe.busy) or not ctx.get(pe.run.ready):
                await ctx.tick()
        state["counters"] = {n: ctx.get(getattr(pe, n))
                             for n in ("mac_cycles", "gated_macs", "stall_cycles")}

    async def feed_filter(ctx):
        tx = StreamSender(pe.filter, random.Random(rng.random()), idle)
        for case in cases:
            if case.run.load_filter:
                weights = [int(w) for w in case.filter_stream()]
                if values == 1:
                    await tx.send_all(ctx, weights)
                else:
                    await tx.send_all(ctx, packets(weights, values, None if whole
                                                   else random.Random(rng.random())))

    async def feed_ifmap(ctx):
        tx = StreamSender(pe.ifmap, random.Random(rng.random()), idle)
        for case in cases:
            if ifmap_values == 1:
                await tx.send_all(ctx, case.ifmap_stream())
            else:
                await tx.send_all(ctx, column_packets(case, ifmap_values, None if whole
                                                      else random.Random(rng.random())))

    async def feed_psum(ctx):
        tx = StreamSender(pe.psum_in, random.Random(rng.random()), idle)
        for case in cases:
            await tx.send_all(ctx, case.psum_in_stream())

    async def drain(ctx):
        rx = StreamReceiver(pe.psum_out, random.Random(rng.random()), stall)
        for case in cases:
            results.append(await rx.recv_n(ctx, case.run.F * case.run.p))

    async def clock(ctx):
        async for _ in ctx.tick():
            state["cycles"] += 1
            assert state["cycles"] < max_cycles, f"not done after {max_cycles} cycles"

    sim.add_testbench(control)
    for tb in (feed_filter, feed_ifmap, feed_psum, drain):
        sim.add_testbench(tb)
    sim.add_process(clock)
    sim.run()
    return results, state["cycles"], state["counters"]


def check(cases, results):
    for i, (case, got) in enumerate(zip(cases, results)):
        exp = case.expected()
        assert np.array_equal(np.array(got, dtype=np.int64), exp), (
            f"case {i} {case.run}: got {got} expected {exp.tolist()}")


@pytest.mark.parametrize("preset", ["tiny", "small", "eyeriss"])
def test_pe_random_runs_with_backpressure(preset, seed):
    cfg = PRESETS[preset].pe
    rng = np.random.default_rng(seed)
    cases = [random_pe_case(cfg, rng, max_width=24) for _ in range(6)]
    # Row stationarity: a run that keeps the previous filter rows.
    cases.append(random_pe_case(cfg, rng, max_width=24, load_filter=False,
                                filters=cases[-1].filters))
    results, _, counters = simulate(PE(cfg), cases, seed=seed, idle=0.3, stall=0.3)
    check(cases, results)
    assert counters["gated_macs"] == sum(c.expected_gated() for c in cases)
    assert counters["mac_cycles"] + counters["gated_macs"] == sum(c.run.macs for c in cases)


@pytest.mark.parametrize("preset, values", [("tiny", 2), ("tiny", 8), ("eyeriss", 4)])
def test_pe_wide_filter_packets(preset, values, seed):
    """Filters in packets of 1..``values`` weights (every bank alignment), random
    back-pressure: the psums of the golden row convolution, row stationarity kept."""
    cfg = PRESETS[preset].pe
    rng = np.random.default_rng(seed)
    cases = [random_pe_case(cfg, rng, max_width=16) for _ in range(4)]
    cases.append(random_pe_case(cfg, rng, max_width=16, load_filter=False,
                                filters=cases[-1].filters))
    results, _, counters = simulate(PE(cfg, values), cases, seed=seed, idle=0.3, stall=0.3,
                                    values=values)
    check(cases, results)
    assert counters["mac_cycles"] + counters["gated_macs"] == sum(c.run.macs for c in cases)


@pytest.mark.parametrize("preset, values", [("tiny", 2), ("tiny", 4), ("eyeriss", 4)])
def test_pe_wide_ifmap_packets(preset, values, seed):
    """Ifmaps in packets of 1..``values`` activations of one column (every bank alignment
    of the ring), wide filter packets beside them, random back-pressure: the psums of
    the golden row convolution, every MAC counted."""
    cfg = PRESETS[preset].pe
    rng = np.random.default_rng(seed)
    cases = [random_pe_case(cfg, rng, max_width=16) for _ in range(5)]
    cases.append(random_pe_case(cfg, rng, max_width=16, load_filter=False,
                                filters=cases[-1].filters))
    results, _, counters = simulate(PE(cfg, 2, values), cases, seed=seed, idle=0.3,
                                    stall=0.3, values=2, ifmap_values=values)
    check(cases, results)
    assert counters["gated_macs"] == sum(c.expected_gated() for c in cases)
    assert counters["mac_cycles"] + counters["gated_macs"] == sum(c.run.macs for c in cases)


def test_pe_loads_a_wide_packet_a_cycle(seed):
    """Full packets of 4 weights with streams that keep up: the filter load takes a
    quarter of the weights' cycles."""
    cfg = EYERISS.pe
    rng = np.random.default_rng(seed)
    run = PERun(S=3, W=32, U=1, p=16, q=4, accumulate=True)
    case = _full_range_case(cfg, rng, run)
    results, cycles, counters = simulate(PE(cfg, 4), [case], seed=seed, idle=0, stall=0,
                                         values=4, whole=True)
    check([case], results)
    load = run.p * run.q * run.S
    print(f"{run.macs} MACs + {load} weights in {cycles} cycles")
    assert cycles <= run.macs + load // 4 + 16, (cycles, run.macs)


def _full_range_case(cfg, rng, run: PERun) -> PECase:
    """A case of ``run`` with ifmaps, filters and psums in (if ``accumulate``) over their
    full ranges (``cfg``'s widths), all random."""
    def draw(bits, shape):
        return rng.integers(-2**(bits - 1), 2**(bits - 1), size=shape)
    ifmap = draw(cfg.act_bits, (run.q, run.W))
    filters = draw(cfg.weight_bits, (run.p, run.q, run.S))
    psum_in = draw(cfg.psum_bits, (run.p, run.F)) if run.accumulate else None
    return PECase(run, ifmap, filters, psum_in, cfg.psum_bits)


@pytest.mark.parametrize("preset, values, ifmap_values, shape", [
    ("eyeriss", 8, 4, dict(S=1, W=8, U=2, p=1, q=4)),
    ("eyeriss", 8, 4, dict(S=1, W=16, U=2, p=16, q=4, accumulate=True)),
    ("eyeriss", 8, 4, dict(S=1, W=10, U=3, p=3, q=4, accumulate=True)),
    ("eyeriss", 8, 2, dict(S=2, W=11, U=3, p=2, q=3)),
    ("eyeriss", 1, 1, dict(S=1, W=9, U=2, p=2, q=2, accumulate=True)),
    ("tiny", 1, 1, dict(S=1, W=8, U=2, p=2, q=2)),
    ("tiny", 1, 1, dict(S=1, W=9, U=3, p=2, q=4, accumulate=True)),
    ("tiny", 2, 4, dict(S=1, W=8, U=2, p=1, q=4)),
    ("tiny", 1, 1, dict(S=2, W=12, U=4, p=1, q=3)),
])
def test_pe_stride_longer_than_the_filter_row(preset, values, ifmap_values, shape, seed):
    """U > S (1x1 stride-2 convolutions): the windows skip columns, the last ones
    trailing the last window; the run ends, the next run after it too, bit-exact, every
    MAC counted, with and without back-pressure."""
    cfg = PRESETS[preset].pe
    rng = np.random.default_rng(seed)
    run = PERun(**shape)
    cases = [_full_range_case(cfg, rng, run), random_pe_case(cfg, rng, max_width=12)]
    for idle in (0.0, 0.3):
        results, _, counters = simulate(PE(cfg, values, ifmap_values), cases, seed=seed,
                                        idle=idle, stall=idle, values=values,
                                        ifmap_values=ifmap_values, max_cycles=5_000)
        check(cases, results)
        assert counters["mac_cycles"] + counters["gated_macs"] == sum(c.run.macs for c in cases)


def test_pe_one_mac_per_cycle(seed):
    """A long row with streams that keep up: cycles <= MACs + a small constant."""
    cfg = EYERISS.pe
    rng = np.random.default_rng(seed)
    run = PERun(S=3, W=cfg.max_ifmap_width, U=1, p=4, q=4, accumulate=True)
    case = _full_range_case(cfg, rng, run)
    results, cycles, counters = simulate(PE(cfg), [case], seed=seed, idle=0, stall=0)
    check([case], results)
    load = run.p * run.q * run.S
    print(f"{run.macs} MACs + {load} filter loads in {cycles} cycles")
    assert cycles <= run.macs + load + 16, (cycles, run.macs)
    assert counters["stall_cycles"] <= 16


@pytest.mark.parametrize("lanes, p", [(1, 2), (2, 4)])
def test_pe_zero_gating_counts_zero_activations(seed, lanes, p):
    """A zero-heavy row: exact result; a zero ifmap value skips every lane's MAC, so the
    gated MACs equal the zero activations met times p."""
    cfg = TINY.pe if lanes == 1 else _lanes_cfg(lanes)
    rng = np.random.default_rng(seed)
    run = PERun(S=3, W=30, U=2, p=p, q=2)
    ifmap = np.where(rng.random((run.q, run.W)) < 0.8, 0, rng.integers(-128, 128, (run.q, run.W)))
    filters = rng.integers(-128, 128, size=(run.p, run.q, run.S))
    case = PECase(run, ifmap, filters, None, cfg.psum_bits)
    pe, values = (PE(cfg), {}) if lanes == 1 else (PE(cfg, 2), {"values": 2})
    results, _, counters = simulate(pe, [case], seed=seed, idle=0.2, stall=0.2, **values)
    check([case], results)
    zeros_met = sum(int(ifmap[c, f * run.U + s] == 0)
                    for f in range(run.F) for s in range(run.S) for c in range(run.q)) * run.p
    assert zeros_met > 0
    assert counters["gated_macs"] == zeros_met
    assert counters["mac_cycles"] == run.macs - zeros_met


@pytest.mark.parametrize("kwargs, message", [
    (dict(S=6, W=10), "max_filter_width"),
    (dict(S=3, W=2), "shorter than the filter row"),
    (dict(S=3, W=10, p=9), "psum_spad_depth"),
    (dict(S=3, W=10, p=5, q=4), "filter_spad_depth"),
    (dict(S=5, W=10, q=3), "ifmap_spad_depth"),
    (dict(S=3, W=10, q=4, U=4), "columns"),
    (dict(S=3, W=40), "max_ifmap_width"),
    (dict(S=0, W=10), "positive"),
])
def test_pe_run_rejects_what_does_not_fit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PERun(**kwargs).check(TINY.pe)


def test_psum_in_is_added_at_the_last_tap():
    """A PE adds the psum from below after its own MACs for that output: with no psum
    arriving it still does every operation of output 0 but those of its last tap
    (``(S*q - 1)*p``), then waits; the psum it then gets is added to the sum."""
    cfg = TINY.pe
    run = PERun(S=3, W=6, U=1, p=2, q=2, load_filter=True, accumulate=True)
    pe = PE(cfg)
    sim = Simulator(pe)
    sim.add_clock(1e-8)
    seen = {}

    async def control(ctx):
        await StreamSender(pe.run).send(ctx, run.fields(cfg))

    async def feed_filter(ctx):
        await StreamSender(pe.filter).send_all(ctx, [1] * (run.p * run.q * run.S))

    async def feed_ifmap(ctx):
        await StreamSender(pe.ifmap).send_all(ctx, [1] * (run.W * run.q))

    async def feed_psum(ctx):
        for _ in range(60):
            await ctx.tick()
        seen["before"] = ctx.get(pe.mac_cycles)
        seen["out_before"] = ctx.get(pe.psum_out.valid)
        await StreamSender(pe.psum_in).send_all(ctx, [100, 200] * run.F)

    async def drain(ctx):
        seen["out"] = await StreamReceiver(pe.psum_out).recv_n(ctx, run.F * run.p)

    for tb in (control, feed_filter, feed_ifmap, feed_psum, drain):
        sim.add_testbench(tb)
    sim.run()
    assert seen["before"] == (run.S * run.q - 1) * run.p
    assert seen["out_before"] == 0
    macs = run.S * run.q
    assert seen["out"] == [100 + macs, 200 + macs] * run.F


def _lanes_cfg(lanes: int, lut_mul_lanes: int = 0):
    return dataclasses.replace(TINY.pe, lanes=lanes, lut_mul_lanes=lut_mul_lanes)


def _grouped_case(cfg, rng, lanes: int, **kwargs) -> PECase:
    """A random case whose ``p`` is a multiple of ``lanes`` (so the lanes work in groups)."""
    while True:
        case = random_pe_case(cfg, rng, max_width=16, **kwargs)
        if case.run.p % lanes == 0:
            return case


@pytest.mark.parametrize("lanes, values, lut_mul_lanes",
                         [(2, 2, 0), (4, 4, 2), (2, 8, 0), (4, 1, 0), (4, 2, 1)])
def test_pe_lanes_random_runs(lanes, values, lut_mul_lanes, seed):
    """A PE of 2 or 4 MAC lanes (some multiplying by shift and add), filter packets of up
    to 1-8 weights (fewer than the lanes too: the spad has a bank a lane), random runs (p
    a multiple of lanes or not) and back-pressure: the golden psums, every MAC and gated
    MAC counted."""
    _check_grouped_runs(_lanes_cfg(lanes, lut_mul_lanes), lanes, values, seed, grouped=4,
                        idle=0.3)


def _check_grouped_runs(cfg, lanes, values, seed, *, grouped: int, idle: float):
    """``grouped`` runs of p a multiple of ``lanes``, 6 - ``grouped`` random ones and one
    keeping the last filters, streams idle ``idle`` of the time and back-pressure: the
    golden psums, every MAC and gated MAC counted."""
    rng = np.random.default_rng(seed)
    cases = [_grouped_case(cfg, rng, lanes) for _ in range(grouped)]
    cases += [random_pe_case(cfg, rng, max_width=16) for _ in range(6 - grouped)]
    cases.append(random_pe_case(cfg, rng, max_width=16, load_filter=False,
                                filters=cases[-1].filters))
    results, _, counters = simulate(PE(cfg, values), cases, seed=seed, idle=idle, stall=0.3,
                                    values=values)
    check(cases, results)
    assert counters["gated_macs"] == sum(c.expected_gated() for c in cases)
    assert counters["mac_cycles"] + counters["gated_macs"] == sum(c.run.macs for c in cases)


@pytest.mark.parametrize("lanes", [2, 4])
def test_pe_lanes_issue_lanes_macs_a_cycle(lanes, seed):
    """Streams that keep up, p a multiple of lanes: an output takes (S*q - 1)*p/lanes + p
    cycles (the last tap's p psums go out one a cycle), not S*q*p; after the filter load
    (a PE that waits for its weights; streaming PEs have their own tests)."""
    cfg = dataclasses.replace(EYERISS.pe, lanes=lanes, stream_filters=False)
    rng = np.random.default_rng(seed)
    run = PERun(S=3, W=64, U=1, p=8, q=4, accumulate=True)
    case = _full_range_case(cfg, rng, run)
    results, cycles, counters = simulate(PE(cfg, lanes), [case], seed=seed, idle=0, stall=0,
                                         values=lanes, whole=True)
    check([case], results)
    issues = run.F * ((run.S * run.q - 1) * run.p // lanes + run.p)
    load = run.p * run.q * run.S // lanes
    print(f"{run.macs} MACs in {issues} operations, {cycles} cycles with the filter load")
    assert issues + load <= cycles <= issues + load + 16, (cycles, issues, load)
    assert counters["mac_cycles"] + counters["gated_macs"] == run.macs


@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=3), "lanes must be a power of two"),
    (dict(lanes=32), "lanes"),
    (dict(lanes=16), "must divide psum_spad_depth"),
    (dict(lanes=2, lut_mul_lanes=3), "lut_mul_lanes must be at most 2"),
])
def test_pe_config_rejects_bad_lanes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY.pe, **kwargs)


def _stream_cfg(pe, **kwargs):
    return dataclasses.replace(pe, stream_filters=True, **kwargs)


@pytest.mark.parametrize("preset, lanes, values", [("tiny", 1, 1), ("tiny", 1, 4),
                                                   ("tiny", 2, 2), ("tiny", 4, 1),
                                                   ("eyeriss", 1, 8)])
def test_pe_streaming_filters_random_runs(preset, lanes, values, seed):
    """`PEConfig.stream_filters`: filters coming while the PE computes (slow, bursty, in
    packets of 1..``values``), 1-4 lanes, runs of p a multiple of lanes or not, row
    stationarity kept: the golden psums, every MAC and gated MAC counted."""
    _check_grouped_runs(_stream_cfg(PRESETS[preset].pe, lanes=lanes), lanes, values, seed,
                        grouped=3, idle=0.6)


@pytest.mark.parametrize("lanes", [1, 2])
def test_pe_streaming_filters_hide_the_load(lanes, seed):
    """Streams that keep up, ``lanes`` weights a packet: without streaming the run takes
    its p*q*S / lanes packet cycles and then its operations; with it, an operation issues
    the cycle after its weights, so the load costs only the pipeline's few cycles."""
    rng = np.random.default_rng(seed)
    run = PERun(S=3, W=32, U=1, p=8, q=4, accumulate=True)
    load = run.p * run.q * run.S // lanes
    issues = run.F * ((run.S * run.q - 1) * run.p // lanes + run.p)
    cycles = {}
    for stream_filters in (False, True):
        cfg = dataclasses.replace(EYERISS.pe, lanes=lanes, stream_filters=stream_filters)
        case = _full_range_case(cfg, rng, run)
        results, cycles[stream_filters], counters = simulate(
            PE(cfg, lanes), [case], seed=seed, idle=0, stall=0, values=lanes, whole=True)
        check([case], results)
        assert counters["mac_cycles"] + counters["gated_macs"] == run.macs
    print(f"{issues} operations, {load} filter packets: {cycles[False]} cycles, "
          f"{cycles[True]} streaming")
    assert cycles[False] >= issues + load
    assert cycles[True] <= max(issues, load) + 16


def test_pe_config_rejects_a_non_bool_stream_filters():
    with pytest.raises(ValueError, match="stream_filters must be a bool"):
        dataclasses.replace(TINY.pe, stream_filters=1)
