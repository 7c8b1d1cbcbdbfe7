"""The analytical performance model (`gen.model`) against the compiler, the golden model,
its cycle-level reference and the Verilog.

The fast tests need no simulator: the decoded program gives back the registers and
tag tables `compile_layer` set; the data-dependent counters equal what the layer and
its golden ofmap imply; the pass recurrences agree with the cycle-level reference of
the same rules. The Verilog test runs random layers on `tiny` and bounds the cycle
error at 2 % with every other counter exact.
"""

import copy
import dataclasses

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import EYERISS, ICEBREAKER, SMALL, TINY
from ommatidia.gen.energy import EYERISS_COST
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.mapper import Mapping
from ommatidia.gen.model import decode, pass_registers, predict, predict_words, rlc_words
from ommatidia.gen.program import pack_command
from ommatidia.hw.glb import glb_words
from ommatidia.hw.top import REGISTERS
from ommatidia.gen.rlc import encode
from ommatidia.sim.array_model import layer_gated_macs, random_values
from ommatidia.sim.golden import layer_ofmap

from helpers import beside_program, part_staged_program, split_program

EXACT = ("macs", "mac_cycles", "gated_macs", "glb_reads", "glb_writes", "dram_words_read",
         "dram_words_written", "program_words")


def random_layer(rng, cfg, width=14) -> ConvLayer:
    """R != S, stride 1..4, padding 0..2, C and M rarely multiples of p and q."""
    while True:
        R, S = (int(x) for x in rng.integers(1, cfg.pe.max_filter_width + 1, 2))
        U, P = int(rng.integers(1, 5)), int(rng.integers(0, 3))
        H = int(rng.integers(max(1, R - 2 * P), R - 2 * P + U * cfg.cols + 1))
        W = int(rng.integers(max(1, S - 2 * P), width + 1))
        if H + 2 * P >= R and W + 2 * P >= S and H >= 1 and W >= 1:
            return ConvLayer(N=int(rng.integers(1, 3)), C=int(rng.integers(1, 6)),
                             M=int(rng.integers(1, 10)), H=H, W=W, R=R, S=S, U=U, P=P)


def random_program(rng, cfg, zeros=None, width=14, ifmap_coding="rlc"):
    """A compiled random layer with data, ifmap zeros 0 or 50 %, random output stage."""
    while True:
        layer = random_layer(rng, cfg, width)
        pe = cfg.pe
        z = float(rng.choice([0.0, 0.5])) if zeros is None else zeros
        x = random_values(rng, pe.act_bits, (layer.N, layer.C, layer.H, layer.W), z)
        w = random_values(rng, pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
        bias = rng.integers(-(1 << 10), 1 << 10, layer.M) if rng.integers(2) else None
        try:
            return compile_layer(cfg, layer, x, w, bias=bias, relu=bool(rng.integers(2)),
                                 shift=int(rng.integers(0, 6)), ifmap_coding=ifmap_coding)
        except ValueError:
            continue


def ofmap_words(prog) -> int:
    """RLC words of every ofmap region, from the golden ofmap."""
    out = layer_ofmap(prog)
    total = 0
    for r in prog.outputs:
        region = out[r.n, r.m0:r.m0 + r.p, r.e0:r.e0 + r.rows]
        total += len(encode(region.transpose(1, 2, 0).reshape(-1), prog.cfg.rlc))
    return total


def test_decode_gives_back_the_registers(seed):
    """Every PASS sees the run, descriptors, array configuration and tag tables that
    `compile_layer` planned for it."""
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        prog = random_program(rng, cfg)
        specs = [ps for rnd in prog.rounds for load in rnd.loads for ps in load.passes]
        seen = pass_registers(cfg, prog.words)
        assert len(seen) == len(specs) == prog.passes
        cmds = decode(cfg, prog.words)
        assert cmds[-1].op == "DONE" and sum(c.words for c in cmds) == prog.program_words
        for k, (ps, regs) in enumerate(zip(specs, seen)):
            assert regs["run"] == ps.run.fields(cfg.pe), f"pass {k}"
            assert regs["gon_desc"] == ps.descs["gon"], f"pass {k}"
            for e, kind in enumerate(("filter", "ifmap", "psum")):
                assert regs[f"{kind}_desc"] == ps.descs[kind], f"pass {k} {kind}"
                for index, (row, col, offset) in enumerate(ps.descs["tags"][kind]):
                    assert regs["tags"][e][index] == {"row": row, "col": col,
                                                      "offset": offset}, f"pass {k} {kind}"
            for name, value in ps.config.items():
                flat = regs[name]
                while isinstance(flat, list) and flat and isinstance(flat[0], list):
                    flat = [x for line in flat for x in line]
                width = {"up": 1, "enable": 1}.get(name)
                if width is None:
                    width = cfg.noc.row_id_bits if name.endswith("row_id") else \
                        cfg.noc.col_id_bits
                packed = sum(v << (width * j) for j, v in enumerate(flat))
                assert packed == value, f"pass {k} {name}"


def test_program_writes_only_what_changes(seed):
    """No ``TAG`` writes the entry its table holds and no ``SET`` of a pass register the
    value it holds (the program's own earlier writes), and a layer whose passes differ
    only in their filter groups' psum places and their strips writes its tags before its
    first pass only."""
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        prog = random_program(rng, cfg)
        held, first = {}, None
        for k, cmd in enumerate(decode(cfg, prog.words)):
            if cmd.op == "TAG":
                key = ("tag", cmd.value["engine"], cmd.value["index"])
                value = cmd.value["entry"]
            elif cmd.op == "SET" and cmd.reg not in ("dma_in", "dma_out"):
                key, value = cmd.reg, cmd.value
            else:
                if cmd.op == "PASS" and first is None:
                    first = k
                continue
            assert held.get(key) != value, f"command {k} writes {key} again"
            held[key] = value
    layer = ConvLayer(N=1, C=2, M=6, H=5, W=5, R=3, S=3, U=1, P=1)
    prog = compile_layer(TINY, layer, np.ones((1, 2, 5, 5), dtype=np.int64),
                         np.ones((6, 2, 3, 3), dtype=np.int64), p=2, q=2)
    cmds = decode(TINY, prog.words)
    passes = [k for k, c in enumerate(cmds) if c.op == "PASS"]
    assert len(passes) == 6     # 3 filter groups x 2 strips
    assert all(c.op != "TAG" for c in cmds[passes[0]:])


def test_counters_follow_from_the_layer(seed):
    """MACs, zero-gated MACs, ofmap RLC words and program words equal what the layer, its
    data and the golden ofmap imply; a one-round layer reads each input region once."""
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        for _ in range(3):
            prog = random_program(rng, cfg)
            pred = predict(prog)
            layer = prog.layer
            c = pred.counters
            assert c["macs"] == layer.macs
            assert c["gated_macs"] == layer_gated_macs(layer, prog.ifmap)
            assert c["mac_cycles"] == c["macs"] - c["gated_macs"]
            assert c["dram_words_written"] == ofmap_words(prog)
            assert c["program_words"] == prog.program_words
            if len(prog.rounds) == 1 and len(prog.rounds[0].loads) == 1:
                assert c["dram_words_read"] == sum(r["words"] for r in prog.inputs.values())
            assert pred.exact and pred.cycles == c["cycles"] == sum(x for _, x in pred.commands)
            assert pred.passes == prog.passes


def test_accesses_energy_and_utilization(seed):
    """Energy weighs the accesses with Eyeriss's costs; MACs and utilization follow the
    counters; without the data the timing is the same and zeros are not counted."""
    rng = np.random.default_rng(seed)
    prog = random_program(rng, TINY, zeros=0.5)
    pred = predict(prog)
    a, c = pred.accesses, pred.counters
    assert set(a) == set(EYERISS_COST)
    assert pred.energy["total"] == pytest.approx(sum(a[k] * EYERISS_COST[k] for k in a))
    assert a["mac"] == c["mac_cycles"] < c["macs"]
    words = c["dram_words_read"] + c["dram_words_written"]
    assert a["dram"] == words * TINY.dram_bits // TINY.pe.act_bits
    assert pred.pe_utilization == pytest.approx(c["macs"] / (TINY.rows * TINY.cols * c["cycles"]))
    blind = predict(prog, values=False)
    assert blind.cycles == pred.cycles and blind.counters["macs"] == c["macs"]
    assert blind.counters["gated_macs"] == 0 and not blind.exact
    assert blind.accesses["spad"] - a["spad"] == c["gated_macs"] > 0
    assert blind.counters["dram_words_written"] >= c["dram_words_written"]


def test_spad_accesses_counted_by_hand():
    """A one-pass layer whose spad accesses are counted by hand from the PE's order
    (f, s, c, k): 3 PEs (filter rows 0-2, ofmap row 0), F = 3, S = 3, q = 2, p = 2."""
    layer = ConvLayer(N=1, C=2, M=2, H=3, W=5, R=3, S=3, U=1, P=0)
    x = np.ones((1, 2, 3, 5), dtype=np.int64)
    x[0, 0, 0, 3] = x[0, 0, 2, 0] = x[0, 1, 0, 2] = x[0, 1, 1, 4] = 0
    prog = compile_layer(TINY, layer, x, np.ones((2, 2, 3, 3), dtype=np.int64))
    (spec,) = [s for r in prog.rounds for load in r.loads for s in load.passes]
    assert (spec.run.S, spec.run.W, spec.run.p, spec.run.q) == (3, 5, 2, 2)
    # Zero activations by the taps that read them (column x is read by min(x+1, 5-x, 3)
    # taps), each skipping the filter read of both filters.
    gated = (2 + 1 + 3 + 1) * 2
    ifmap_reads = 3 * 3 * 2
    filter_reads = 36
    psum_reads = psum_writes = 36 - 3 * 2
    loads = 5 * 2 + 2 * 2 * 3
    pred = predict(prog)
    assert pred.counters["gated_macs"] == gated
    assert pred.accesses["spad"] == (
        3 * (ifmap_reads + filter_reads + psum_reads + psum_writes + loads) - gated)


def test_rlc_words_match_the_encoder(seed):
    """`rlc_words` counts the words `gen.rlc.encode` makes, runs longer than the longest
    a pair holds and trailing zeros included."""
    rng = np.random.default_rng(seed)
    fmt = TINY.rlc
    cases = [[], [0], [5], [0] * 31, [0] * 32, [0] * 33, [0] * 70 + [1], [1] + [0] * 64]
    for _ in range(200):
        n = int(rng.integers(1, 120))
        v = np.where(rng.random(n) < rng.random(), 0, rng.integers(-128, 128, n))
        cases.append(v.tolist())
    for v in cases:
        assert rlc_words(v, fmt) == len(encode(v, fmt)), v


def test_recurrences_match_the_cycle_reference(seed):
    """The per-output recurrences time every pass like the cycle-level reference of the same
    RTL rules (or hand it to the reference, `Unordered`): every counter equal, stalls
    included, and the arbiter state handed to the next layer the same."""
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        _recurrences_equal_the_reference(rng, cfg, 4)


def _recurrences_equal_the_reference(rng, cfg, layers: int) -> None:
    """``layers`` random layers on ``cfg`` one after another, each timed by the model and by
    the cycle reference from the arbiter state the reference left: every counter and the
    state handed on equal."""
    state = None
    for _ in range(layers):
        prog = random_program(rng, cfg)
        fast = predict(prog, state=state)
        ref = predict(prog, reference=True, state=state)
        state = ref.state
        assert ref.fallback_passes == ref.passes
        assert fast.counters == ref.counters, f"{prog.layer}: {fast.cycles} vs {ref.cycles}"
        assert fast.state == ref.state


@pytest.mark.parametrize("cfg, layer", [
    (TINY, ConvLayer(N=1, C=8, M=8, H=8, W=8, R=1, S=1, U=2, P=0)),
    (TINY, ConvLayer(N=1, C=5, M=6, H=9, W=9, R=1, S=1, U=3, P=0)),
    (EYERISS, ConvLayer(N=1, C=16, M=16, H=16, W=16, R=1, S=1, U=2, P=0)),
])
def test_recurrences_match_the_reference_with_strides_past_the_filter(cfg, layer, seed):
    """1x1 layers of stride 2 and 3 (the PEs' windows skip columns, U > S): the
    recurrences time every pass like the cycle-level reference, every counter equal."""
    rng = np.random.default_rng(seed)
    x = random_values(rng, cfg.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), 0.3)
    w = random_values(rng, cfg.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
    prog = compile_layer(cfg, layer, x, w)
    fast, ref = predict(prog), predict(prog, reference=True)
    assert fast.counters == ref.counters, f"{layer}: {fast.cycles} vs {ref.cycles}"


def test_recurrences_match_the_reference_with_wide_packets(seed):
    """With 2-8 weights a filter packet (`NoCConfig.filter_gin_values`) and 1-2 psums a
    psum GIN and a GON packet (`psum_gin_values`, `gon_values`) the recurrences still
    time every pass like the cycle-level reference, every counter equal."""
    rng = np.random.default_rng(seed)
    for base, values, psum, gon in ((TINY, 8, 2, 2), (SMALL, 2, 2, 2), (SMALL, 4, 1, 1),
                                    (TINY, 1, 1, 2)):
        cfg = dataclasses.replace(base, noc=dataclasses.replace(
            base.noc, filter_gin_values=values, psum_gin_values=psum, gon_values=gon))
        prog = random_program(rng, cfg)
        fast, ref = predict(prog), predict(prog, reference=True)
        assert fast.counters == ref.counters, f"{prog.layer}: {fast.cycles} vs {ref.cycles}"
        assert fast.state == ref.state


def with_ifmap_packets(base, name, values):
    """``base`` with ifmap GIN packets of up to ``values`` activations
    (`NoCConfig.ifmap_gin_values`)."""
    return dataclasses.replace(base, name=name, noc=dataclasses.replace(
        base.noc, ifmap_gin_values=values))


def test_recurrences_match_the_reference_with_ifmap_packets(seed):
    """With 2-8 activations an ifmap packet (one column's channels), beside wide filter and
    psum packets, the recurrences time every pass like the cycle-level reference, every
    counter equal."""
    rng = np.random.default_rng(seed)
    wide = dataclasses.replace(TINY, noc=dataclasses.replace(
        TINY.noc, filter_gin_values=8, psum_gin_values=2, gon_values=2))
    for cfg in (with_ifmap_packets(TINY, "tiny", 4), with_ifmap_packets(SMALL, "small", 2),
                with_ifmap_packets(wide, "tiny", 8)):
        _recurrences_equal_the_reference(rng, cfg, 2)
        for q in (4, 3):
            prog = columns_program(cfg, seed, q)
            fast, ref = predict(prog), predict(prog, reference=True)
            assert fast.counters == ref.counters, f"q = {q}: {fast.cycles} vs {ref.cycles}"


def with_lanes(base, name, lanes, values=None):
    """``base`` with PEs of ``lanes`` MAC lanes (`PEConfig.lanes`) and, given, filter packets
    of ``values`` weights."""
    return dataclasses.replace(
        base, name=name, pe=dataclasses.replace(base.pe, lanes=lanes),
        noc=dataclasses.replace(base.noc, filter_gin_values=values or base.noc.filter_gin_values))


def test_recurrences_match_the_reference_with_lanes(seed):
    """PEs of 2 or 4 MAC lanes (runs of p a multiple of lanes in groups, others one filter
    an operation): the recurrences time every pass like the cycle-level reference."""
    rng = np.random.default_rng(seed)
    for base, lanes, values in ((TINY, 2, 2), (TINY, 4, None), (SMALL, 4, 4)):
        _recurrences_equal_the_reference(rng, with_lanes(base, base.name, lanes, values), 3)


def with_gon_queue(base, name, depth, values):
    """``base`` with a queue of ``depth`` GON packets after each top PE
    (`NoCConfig.gon_queue`), ``values`` psums a GON and a psum GIN packet."""
    return dataclasses.replace(base, name=name, noc=dataclasses.replace(
        base.noc, gon_queue=depth, gon_values=values, psum_gin_values=values))


def test_recurrences_match_the_reference_with_a_gon_queue(seed):
    """With a queue of 1-3 GON packets after each top PE and 1 or 2 psums a packet, the
    recurrences time every pass exactly like the cycle-level reference, every counter
    (stalls included) equal."""
    rng = np.random.default_rng(seed)
    for base, depth, values in ((TINY, 2, 2), (SMALL, 3, 2), (TINY, 1, 1), (SMALL, 2, 1)):
        cfg = with_gon_queue(base, base.name, depth, values)
        prog = random_program(rng, cfg)
        fast, ref = predict(prog), predict(prog, reference=True)
        assert fast.cycles == ref.cycles, f"{prog.layer} on {cfg.noc}"
        assert fast.counters == ref.counters, f"{prog.layer} on {cfg.noc}"


def with_bank_reads(base, name):
    """``base`` with a GLB read port per bank (`ArrayConfig.glb_bank_reads`)."""
    return dataclasses.replace(base, name=name, glb_bank_reads=True)


def test_recurrences_match_the_reference_with_bank_reads(seed):
    """With a GLB read port per bank, the recurrences time every pass exactly like the
    cycle-level reference (every counter and the per-bank arbiter state handed on equal),
    on the GON and psum GIN queues of `eyeriss` too and beside a filter GLB (its own
    read port)."""
    rng = np.random.default_rng(seed)
    for base in (TINY, SMALL, with_psum_gin_queue(TINY, "tiny", 4, 2, 4),
                 dataclasses.replace(TINY, glb_banks=2),
                 dataclasses.replace(TINY, filter_glb_bytes=512)):
        _recurrences_equal_the_reference(rng, with_bank_reads(base, base.name), 3)


def test_one_bank_reads_like_one_port(seed):
    """A GLB of one bank with a read port per bank is the GLB with one read port: the
    same cycles and counters, in the recurrences and in the cycle-level reference."""
    rng = np.random.default_rng(seed)
    one = dataclasses.replace(TINY, glb_banks=1)
    for _ in range(3):
        prog = random_program(rng, one)
        banked = dataclasses.replace(prog, cfg=with_bank_reads(one, "tiny"))
        for reference in (False, True):
            want = predict(prog, reference=reference)
            got = predict(banked, reference=reference)
            assert got.counters == want.counters, f"{prog.layer}: {got.cycles} vs {want.cycles}"
            assert got.state[0] == (want.state[0],) and got.state[1:] == want.state[1:]


def test_the_cycle_order_port_times_passes_like_the_reference(seed, monkeypatch):
    """The recurrences with the GLB port granted in cycle order (`gen.model.causal`): on
    `tiny` and `small` (one read port for the three senders, so they contend for it from
    the first cycle) and on `eyeriss`'s queues with a read port per bank, a pass either
    waits on a bound (`Unordered`, then the rounds of `pass_timing`) or is timed exactly
    like the cycle-level reference, its grants the round-robin replay of its requests;
    most are timed."""
    from ommatidia.gen.model import machine
    from ommatidia.gen.model.memo import unmemoized
    from ommatidia.gen.model.reference import reference_pass
    from ommatidia.gen.model.timing import Unordered, _agrees, _Round
    passes = []
    timing = machine.pass_timing

    def capture(cfg, regs, streams, rr, *rest):
        passes.append((cfg, copy.deepcopy(regs), copy.deepcopy(streams), rr))
        return timing(cfg, regs, streams, rr, *rest)

    monkeypatch.setattr(machine, "pass_timing", capture)
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL, with_bank_reads(with_psum_gin_queue(TINY, "tiny", 8, 2, 8), "tiny")):
        with unmemoized():
            predict(random_program(rng, cfg))
    timed = 0
    for cfg, regs, streams, rr in passes:
        try:
            got, port = _Round(cfg, regs, streams, rr, None, True).time()
        except Unordered:
            continue
        assert _agrees(cfg, port, rr)
        assert got == reference_pass(cfg, regs, streams, rr)
        timed += 1
    assert timed * 2 > len(passes), f"{timed} of {len(passes)} passes timed"


def with_psum_gin_queue(base, name, depth, values, gon_queue=0):
    """``base`` with a queue of ``depth`` psum GIN packets in front of each PE
    (`NoCConfig.psum_gin_queue`) of ``values`` psums, as many a GON packet, and a GON
    queue of ``gon_queue``."""
    return dataclasses.replace(base, name=name, noc=dataclasses.replace(
        base.noc, psum_gin_queue=depth, psum_gin_values=values, gon_values=values,
        gon_queue=gon_queue))


def test_recurrences_match_the_reference_with_a_psum_gin_queue(seed):
    """With a queue of 1, 3, 4 or 8 psum GIN packets of 2 psums in front of each PE
    (with and without a GON queue), the recurrences time every pass exactly like the
    cycle-level reference, every counter (stalls included) equal."""
    rng = np.random.default_rng(seed)
    for base, depth, values, gon_queue in ((TINY, 1, 2, 0), (SMALL, 4, 2, 2), (TINY, 8, 2, 8),
                                           (SMALL, 3, 2, 0)):
        cfg = with_psum_gin_queue(base, base.name, depth, values, gon_queue)
        prog = random_program(rng, cfg)
        fast, ref = predict(prog), predict(prog, reference=True)
        assert fast.cycles == ref.cycles, f"{prog.layer} on {cfg.noc}"
        assert fast.counters == ref.counters, f"{prog.layer} on {cfg.noc}"


def test_columns_free_before_the_gon_takes_the_psums():
    """A column retires at the last issue of its tap, not when the GON has taken the
    output's psums: here (one row of four one-PE chains, two ifmap multicast groups,
    U < S) the next column of one group waits on a chain whose psums queue behind the
    other group's at the GON. Timing the retirement at the GON grants predicted 225
    cycles a pass against the reference's 244."""
    layer = ConvLayer(N=1, C=2, M=8, H=11, W=13, R=1, S=4, U=3, P=0)
    rng = np.random.default_rng(0)
    x = random_values(rng, TINY.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), 0.0)
    w = random_values(rng, TINY.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
    mapping = Mapping(p=4, q=2, strips=((0, 2), (2, 2)), segments=((0, 1),), stack=1,
                      blocks=2, n_chunk=1, m_chunk=2, c_chunk=1)
    prog = compile_layer(TINY, layer, x, w, mapping=mapping)
    for state in (None, (4, (2, 0, 0), 1)):
        fast = predict(prog, state=state)
        ref = predict(prog, reference=True, state=state)
        assert fast.commands == ref.commands and fast.state == ref.state
        assert fast.counters == ref.counters


def test_bad_programs_raise():
    """An unknown opcode, or a SET of a register that does not exist, stops the
    controller with error: the model raises. A lone ``DONE`` is asked for at cycle 0, comes
    at 1, is in the FIFO's output register at 3 and runs then: 4 cycles."""
    with pytest.raises(ValueError, match="opcode 9"):
        predict_words(TINY, {0: pack_command(9)})
    with pytest.raises(ValueError, match="register 99"):
        predict_words(TINY, {0: pack_command(1, 1 << 8 | 99)})
    pred = predict_words(TINY, {0: pack_command(7)})
    assert pred.cycles == 4 and pred.counters["program_words"] == 1
    enable = REGISTERS.index("enable")
    with pytest.raises(ValueError, match="PASS with S, W, F, U, p, q, ring = 0 in the run"):
        predict_words(TINY, {0: pack_command(1, 1 << 8 | enable), 1: 1,
                             2: pack_command(5), 3: pack_command(7)})


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_model_against_the_verilog(seed, system_build):
    """Four random layers on `tiny` (ifmap zeros 0 and 50 %): predicted cycles within 2 %
    of the Verilog's cycle counter, MACs, gated MACs, GLB and DRAM words and program
    words exact. The layers run one after another in one simulation, so each starts
    from the arbiter state the one before left (after the reset for the first)."""
    from ommatidia.sim.accelerator import run_layers
    rng = np.random.default_rng(seed)
    progs = [random_program(rng, TINY, zeros=z, width=10) for z in (0.0, 0.5, 0.0, 0.5)]
    compare(progs, run_layers(TINY, progs, build_dir=system_build), tolerance=0.02)


def compare(progs, runs, tolerance):
    """Each run bit-exact, the model's cycles within ``tolerance`` of the RTL's, and the
    `EXACT` counters equal; the model carries the arbiter state from layer to layer."""
    state = None
    for prog, run in zip(progs, runs):
        assert run.status == 2 and run.bit_exact
        pred = predict(prog, state=state)
        state = pred.state
        rtl = run.counters
        err = (pred.cycles - rtl["cycles"]) / rtl["cycles"]
        print(f"{prog.layer}: RTL {rtl['cycles']} cycles, model {pred.cycles} ({err:+.2%})")
        assert abs(err) <= tolerance, f"{prog.layer}: model {pred.cycles}, RTL {rtl['cycles']}"
        for name in EXACT:
            assert pred.counters[name] == rtl[name], f"{prog.layer}: {name}"


def test_recurrences_match_the_reference_with_filter_rows_top_down(seed):
    """Random layers on `tiny` and `small` mapped with the filter sender serving the PE
    rows top down (`Mapping.filters_down`): the recurrences time them like the cycle
    reference, every counter and the state handed on equal."""
    from ommatidia.gen.compiler import plan_layer
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        state = None
        for _ in range(3):
            layer = random_layer(rng, cfg, 14)
            x = random_values(rng, cfg.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), 0.5)
            w = random_values(rng, cfg.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
            try:
                m, _ = plan_layer(cfg, layer, ifmap=x)
                prog = compile_layer(cfg, layer, x, w, mapping=dataclasses.replace(
                    m, filters_down=True))
            except ValueError:
                continue
            fast = predict(prog, state=state)
            ref = predict(prog, reference=True, state=state)
            state = ref.state
            assert fast.counters == ref.counters, f"{layer}: {fast.cycles} vs {ref.cycles}"
            assert fast.state == ref.state


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_model_with_filter_rows_top_down(seed, system_build):
    """A layer on `tiny` in both filter row orders (`Mapping.filters_down`), one after the
    other in one simulation: both bit-exact with the model's cycles and counters equal to
    the Verilog's; the order the mapper picks (top down here) takes fewer RTL cycles."""
    from ommatidia.gen.compiler import plan_layer
    from ommatidia.sim.accelerator import run_layers
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=8, M=8, H=8, W=8, R=3, S=3, U=1, P=1)
    x = random_values(rng, TINY.pe.act_bits, (1, 8, 8, 8), 0.5)
    w = random_values(rng, TINY.pe.weight_bits, (8, 8, 3, 3))
    m, _ = plan_layer(TINY, layer, ifmap=x)
    assert m.filters_down
    progs = [compile_layer(TINY, layer, x, w, mapping=dataclasses.replace(m, filters_down=d))
             for d in (False, True)]
    runs = run_layers(TINY, progs, build_dir=system_build)
    compare(progs, runs, tolerance=0)
    assert runs[1].counters["cycles"] < runs[0].counters["cycles"]


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_model_with_raw_input_layers(seed, system_build):
    """Layers whose ifmap the host writes raw (``ifmap_coding="raw"``, a network's first
    layer) on `tiny` with the RLC codec, no zeros and 50 %: every ifmap ``DMA_IN`` raw,
    the ofmaps bit-exact and the model's cycles and counters equal to the Verilog's."""
    from ommatidia.sim.accelerator import run_layers
    rng = np.random.default_rng(seed)
    progs = [random_program(rng, TINY, zeros=z, width=10, ifmap_coding="raw")
             for z in (0.0, 0.5)]
    for prog in progs:
        assert not any(r["rlc"] for r in prog.inputs.values())
    compare(progs, run_layers(TINY, progs, build_dir=system_build), tolerance=0)


@pytest.mark.verilog
def test_model_without_the_rlc_codec(seed, tmp_path):
    """`tiny` without the RLC codec (`ArrayConfig.rlc_codec`, the iCEBreaker's DMA):
    ifmaps load raw and ofmaps come back packed; the model predicts the Verilog's
    cycles and counters exactly, and the ofmaps are bit-exact."""
    from ommatidia.sim.accelerator import run_layers
    cfg = dataclasses.replace(TINY, name="tiny_raw", rlc_codec=False)
    rng = np.random.default_rng(seed)
    progs = [random_program(rng, cfg, zeros=z, width=8) for z in (0.0, 0.5)]
    compare(progs, run_layers(cfg, progs, build_dir=tmp_path), tolerance=0)


@pytest.mark.verilog
def test_model_with_ifmap_packets(seed, build_dir):
    """`tiny` with ifmap GIN packets of up to 4 activations of a column
    (`NoCConfig.ifmap_gin_values`), a filter GIN of a whole GLB word, 8 weights a packet
    (`filter_gin_values`), and 2 psums a psum GIN and a GON packet (`psum_gin_values`,
    `gon_values`): two layers of columns of 4 and 3 activations and two random layers
    bit-exact, the model's cycles and every counter equal to the Verilog's. (With 8
    weights a filter packet, seed 2759991367 once timed a layer of 877 RTL cycles at 871:
    a GLB port fixed point the recurrences never reached, now timed by the cycle-level
    reference.)"""
    cfg = with_ifmap_packets(dataclasses.replace(TINY, noc=dataclasses.replace(
        TINY.noc, filter_gin_values=8, gon_values=2, psum_gin_values=2)), "tiny_ifmap", 4)
    compare_exactly(cfg, seed, build_dir, *(columns_program(cfg, seed, q) for q in (4, 3)))


def columns_program(cfg, seed, q):
    """A layer run with ``q`` channels a PE (columns of ``q`` activations: with 3, some
    split at GLB word boundaries), ifmap zeros 50 %."""
    rng = np.random.default_rng(seed + q)
    layer = ConvLayer(N=1, C=2 * q, M=3, H=5, W=8, R=3, S=3, U=1, P=1)
    x = random_values(rng, cfg.pe.act_bits, (1, layer.C, 5, 8), 0.5)
    w = random_values(rng, cfg.pe.weight_bits, (3, layer.C, 3, 3))
    return compile_layer(cfg, layer, x, w, relu=True, shift=3, p=2, q=q)


@pytest.mark.verilog
def test_model_with_lanes(seed, build_dir):
    """`tiny` with PEs of 4 MAC lanes (filter packets of one weight, a filter spad bank a
    lane): three random layers (p a multiple of 4 or not) bit-exact, the model's cycles
    and every counter equal to the Verilog's."""
    compare_exactly(with_lanes(TINY, "tiny_lanes", 4), seed, build_dir)


@pytest.mark.verilog
def test_model_on_the_icebreaker_preset(seed, tmp_path):
    """The `icebreaker` preset (one PE of 4 MAC lanes, one-entry tag tables, no RLC codec,
    16-bit psums) with counters, which the preset leaves out and the comparison reads:
    a layer of p = 4 (the lanes in groups), then random layers, bit-exact, the model's
    cycles and every counter equal to the Verilog's."""
    cfg = dataclasses.replace(ICEBREAKER, name="icebreaker_counted", counter_bits=32,
                              pe=dataclasses.replace(ICEBREAKER.pe, counter_bits=24))
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=2, M=4, H=5, W=5, R=3, S=3, U=1, P=0)
    x = random_values(rng, cfg.pe.act_bits, (1, 2, 5, 5), 0.5)
    w = random_values(rng, cfg.pe.weight_bits, (4, 2, 3, 3))
    progs = [compile_layer(cfg, layer, x, w, bias=[300, -200, 5, 0], relu=True, shift=3, p=4)]
    while len(progs) < 4:
        R, S, U, P = (int(v) for v in rng.integers(1, (4, 4, 3, 2)))
        layer = ConvLayer(N=int(rng.integers(1, 3)), C=int(rng.integers(1, 4)),
                          M=int(rng.integers(1, 9)), H=int(rng.integers(R, R + 4)),
                          W=int(rng.integers(S, 7)), R=R, S=S, U=U, P=P)
        x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.5)
        w = random_values(rng, 8, (layer.M, layer.C, R, S))
        try:
            progs.append(compile_layer(cfg, layer, x, w, relu=True, shift=int(rng.integers(6))))
        except ValueError:  # its DRAM image is larger than the 512 words
            continue
    compare_programs(cfg, progs, tmp_path)


@pytest.mark.verilog
def test_model_with_psum_gin_and_gon_queues(seed, build_dir):
    """`tiny` with a queue of 5 psum GIN packets in front of each PE
    (`NoCConfig.psum_gin_queue`; 2 by default), a queue of 2 GON packets after each top
    PE (`NoCConfig.gon_queue`) and 2 psums a psum GIN and a GON packet: the ofmaps
    bit-exact, the model's cycles and every counter (stalls included) equal to the
    Verilog's. The first layer's psum sender (two R segments, two strips) runs ahead of
    the PEs into the queues."""
    cfg = with_psum_gin_queue(TINY, "tiny_queues", 5, 2, gon_queue=2)
    layer = ConvLayer(N=1, C=1, M=9, H=5, W=3, R=5, S=2, U=1, P=2)
    rng = np.random.default_rng(0)
    x = random_values(rng, TINY.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), 0.0)
    w = random_values(rng, TINY.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
    mapping = Mapping(p=6, q=1, strips=((0, 3), (3, 2)), segments=((0, 3), (3, 2)), stack=1,
                      blocks=1, n_chunk=1, m_chunk=2, c_chunk=1)
    first = compile_layer(cfg, layer, x, w, mapping=mapping)
    compare_exactly(cfg, seed, build_dir, first)


@pytest.mark.verilog
def test_model_with_bank_reads(seed, build_dir):
    """`tiny` with a GLB read port per bank (`ArrayConfig.glb_bank_reads`): the first
    layer laid out as for one read port (its senders share banks, granted round-robin in
    each), the others with filters and ifmaps at bank boundaries (senders on different
    banks granted in one cycle), the second with three ``DMA_OUT``\\ s beside passes on
    other banks (`helpers.beside_program`), the third with its last psum region at the
    GLB's end (`helpers.split_program`): the ofmaps bit-exact, the model's cycles and
    every counter equal to the Verilog's."""
    cfg = with_bank_reads(TINY, "tiny_banks")
    rng = np.random.default_rng(seed + 1)
    first = dataclasses.replace(random_program(rng, TINY, zeros=0.0, width=10), cfg=cfg)
    beside = beside_program(cfg, seed)
    assert [c.value for c in decode(cfg, beside.words) if c.op == "DMA_OUT"].count(3) == 3
    compare_exactly(cfg, seed, build_dir, first, beside, split_program(cfg, seed))


def compare_exactly(cfg, seed, build_dir, first=None, *more):
    """``first`` (or a random layer), ``more`` and two random layers on ``cfg`` (ifmap
    zeros 0, 50 and 0 %) in one Verilator simulation: bit-exact, the model's cycles and
    every counter equal to the RTL's."""
    rng = np.random.default_rng(seed)
    if first is None:
        first = random_program(rng, cfg, zeros=0.0, width=10)
    progs = [first, *more] + [random_program(rng, cfg, zeros=z, width=10) for z in (0.5, 0.0)]
    compare_programs(cfg, progs, build_dir)


def compare_programs(cfg, progs, build_dir):
    """``progs`` on ``cfg`` in one Verilator simulation: bit-exact, the model's cycles and
    every counter equal to the RTL's."""
    from ommatidia.sim.accelerator import run_layers
    runs = run_layers(cfg, progs, build_dir=build_dir)
    compare(progs, runs, tolerance=0)
    state = None
    for prog, run in zip(progs, runs):
        pred = predict(prog, state=state)
        state = pred.state
        assert pred.counters == {k: run.counters[k] for k in pred.counters}, prog.layer


@pytest.mark.verilog
@pytest.mark.parametrize("bank_reads, values", [(False, 1), (True, 1), (True, 16)],
                         ids=["one_port", "banks", "wide"])
def test_model_with_a_filter_glb(seed, build_dir, bank_reads, values):
    """`tiny` with a filter GLB of 64 words (`ArrayConfig.filter_glb_bytes`), with one
    GLB read port or one per bank (`ArrayConfig.glb_bank_reads`: the filter GLB's read
    port then its own), and with 16 weights a filter GIN packet (filter GLB words of two
    GLB words; filters in the GLB go 8 a packet): a layer of six loads whose filters fit
    half of it, each load's filters loaded by a background ``DMA_IN`` beside the passes
    of the one before, then two random layers: the ofmaps bit-exact, the model's cycles
    and every counter equal to the Verilog's."""
    name = {1: "tiny_fglb_banks" if bank_reads else "tiny_fglb", 16: "tiny_fglb_wide"}
    cfg = dataclasses.replace(TINY, name=name[values], filter_glb_bytes=512,
                              glb_bank_reads=bank_reads,
                              noc=dataclasses.replace(TINY.noc, filter_gin_values=values))
    layer = ConvLayer(N=1, C=3, M=5, H=4, W=7, R=3, S=3, U=1, P=1)
    rng = np.random.default_rng(seed)
    x = random_values(rng, TINY.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), 0.5)
    w = random_values(rng, TINY.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
    mapping = Mapping(p=2, q=2, strips=((0, 4),), segments=((0, 3),), stack=1,
                      blocks=1, n_chunk=1, m_chunk=1, c_chunk=1)
    first = compile_layer(cfg, layer, x, w, mapping=mapping)
    assert sum(1 for c in decode(cfg, first.words) if c.op == "DMA_IN" and c.value) == 5
    compare_exactly(cfg, seed, build_dir, first)



def test_recurrences_match_the_reference_with_streaming_filters(seed):
    """PEs that compute while their filters load (`PEConfig.stream_filters`), 1 and 2
    lanes, filter packets of 1-8 weights: the recurrences time every pass like the
    cycle-level reference, every counter (stalls included) and the state handed on
    equal."""
    rng = np.random.default_rng(seed)
    for base, lanes, values in ((TINY, 1, 1), (SMALL, 1, 8), (TINY, 2, 2), (SMALL, 2, 1)):
        cfg = dataclasses.replace(
            base, pe=dataclasses.replace(base.pe, stream_filters=True, lanes=lanes),
            noc=dataclasses.replace(base.noc, filter_gin_values=values))
        _recurrences_equal_the_reference(rng, cfg, 2)


@pytest.mark.verilog
def test_model_with_eyeriss_features(seed, build_dir):
    """`tiny` with `eyeriss`'s features: PEs computing while their filters load
    (`PEConfig.stream_filters`), 8 weights a filter packet (the filter tags' packets
    interleaved), 4 activations an ifmap packet, 2 psums a psum GIN and a GON packet, a
    GLB read port per bank, the RLC ``DMA_IN`` a coded word a cycle
    (`ArrayConfig.rlc_decode_words`), a ``DMA_OUT`` of a GLB word of two psums a cycle
    (`ArrayConfig.dma_out_values`), and a filter GLB of 16 words. In one simulation: two
    filter groups side by side whose pass filters do not fit half the filter GLB, so each
    pass stages one region through it and reads the other from the GLB
    (`helpers.part_staged_program`, as AlexNet CONV1 on `eyeriss`); three ``DMA_OUT``\\ s
    beside passes (`helpers.beside_program`); the last psum region at the GLB's end
    (`helpers.split_program`); two random layers: bit-exact, the model's cycles and every
    counter (stalls included) equal to the Verilog's."""
    cfg = dataclasses.replace(
        with_bank_reads(TINY, "tiny_eyeriss_features"), filter_glb_bytes=128,
        rlc_decode_words=True, dma_out_values=2,
        pe=dataclasses.replace(TINY.pe, stream_filters=True),
        noc=dataclasses.replace(TINY.noc, filter_gin_values=8, ifmap_gin_values=4,
                                gon_values=2, psum_gin_values=2))
    staged = part_staged_program(cfg, seed)
    fglb = glb_words(cfg)
    assert sorted(a >= fglb for a in staged.rounds[0].loads[0].filters.values()) == [False, True]
    beside = beside_program(cfg, seed)
    assert [c.value for c in decode(cfg, beside.words) if c.op == "DMA_OUT"].count(3) == 3
    compare_exactly(cfg, seed, build_dir, staged, beside, split_program(cfg, seed))
