"""RLC encoder and decoder in the Amaranth simulator against the reference codec.

Every stream test runs streams back to back under random idle (inputs) and
back-pressure (outputs); the encoder must produce the reference words bit for
bit, the decoder the values, faults and word counts of `decode_stream`.
"""

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ommatidia.gen.config import RLCFormat
from ommatidia.gen.rlc import RLCFault, decode_stream, encode, encode_pairs
from ommatidia.hw.rlc import RLCDecoder, RLCEncoder, rlc_word_layout
from ommatidia.sim.rlc_cases import corrupt_streams, random_values, stream_cases

FORMATS = {
    "eyeriss": RLCFormat(),
    "tiny": RLCFormat(run_bits=5, level_bits=8, pairs_per_word=3, word_bits=64),
    "small": RLCFormat(run_bits=2, level_bits=4, pairs_per_word=2, word_bits=16),
    "one-pair": RLCFormat(run_bits=3, level_bits=6, pairs_per_word=1, word_bits=12),
}
MAX_WAIT = 40


def simulate_encoder(fmt, cases, *, seed, idle, stall, values=1):
    """Feed ``cases`` to an RLCEncoder, ``values`` a transfer (the slots of the last
    transfer past the stream random); return (words per case, cycles per case)."""
    dut = RLCEncoder(fmt, count_bits=12, values=values)
    rng = random.Random(seed)
    out, cycles = [], []
    width, lo = values, -(1 << (fmt.level_bits - 1))

    async def bench(ctx):
        for values in cases:
            ctx.set(dut.start.valid, 1)
            ctx.set(dut.start.payload, len(values))
            await ctx.tick().until(dut.start.ready)
            ctx.set(dut.start.valid, 0)
            idx, holding, words, count = 0, False, [], 0
            while True:
                if not holding and idx < len(values) and rng.random() >= idle:
                    holding = True
                ctx.set(dut.i.valid, holding)
                if holding and width == 1:
                    ctx.set(dut.i.payload, int(values[idx]))
                elif holding:
                    chunk = [int(v) for v in values[idx:idx + width]]
                    ctx.set(dut.i.payload, chunk + [rng.randrange(lo, -lo)
                                                    for _ in range(width - len(chunk))])
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                i_fire = holding and ctx.get(dut.i.ready)
                o_fire = ready and ctx.get(dut.o.valid)
                word = ctx.get(dut.o.payload.as_value()) if o_fire else None
                await ctx.tick()
                count += 1
                assert count < 10 * len(values) + 200, "encoder hangs"
                if i_fire:
                    idx, holding = min(idx + width, len(values)), False
                if o_fire:
                    words.append(word)
                    if word >> (fmt.word_bits - 1):
                        break
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            assert idx == len(values), f"encoder ended its stream after {idx} of {len(values)}"
            out.append(words)
            cycles.append(count)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, cycles


def simulate_decoder(fmt, streams, *, seed, idle, stall, pairs=False):
    """Feed ``(words, n)`` streams to an RLCDecoder (emitting pairs with ``pairs``, a
    word's pairs a transfer with ``pairs="words"``).

    Returns per stream a dict: values (pairs expanded), fault, words_used, done (went
    idle; else still waiting for words after all were offered), cycles (start to idle),
    transfers on ``o``.
    """
    dut = RLCDecoder(fmt, count_bits=12, pairs=bool(pairs), words=pairs == "words")
    layout = rlc_word_layout(fmt)
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for words, n in streams:
            ctx.set(dut.start.valid, 1)
            ctx.set(dut.start.payload, n)
            await ctx.tick().until(dut.start.ready)
            ctx.set(dut.start.valid, 0)
            idx, holding, values, count, quiet, transfers = 0, False, [], 0, 0, 0
            done, fault_word = False, None
            while True:
                if fault_word is None and ctx.get(dut.error):
                    fault_word = idx - 1
                if not ctx.get(dut.busy):
                    done = True
                    break
                if not holding and idx < len(words) and rng.random() >= idle:
                    holding = True
                ctx.set(dut.i.valid, holding)
                if holding:
                    ctx.set(dut.i.payload, layout.from_bits(words[idx]))
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                i_fire = holding and ctx.get(dut.i.ready)
                o_fire = ready and ctx.get(dut.o.valid)
                out = ctx.get(dut.o.payload) if o_fire else None
                assert not (ctx.get(dut.error) and ctx.get(dut.o.valid)), "value after a fault"
                await ctx.tick()
                count += 1
                if i_fire:
                    idx, holding = idx + 1, False
                if o_fire:
                    group = [out.pairs[k] for k in range(out.first, out.end)] \
                        if pairs == "words" else [out] if pairs else []
                    values += [v for g in group for v in [0] * g.run + [g.level]] \
                        if pairs else [out]
                    transfers += 1
                    assert len(values) <= n, f"decoder emitted more than n = {n} values"
                quiet = 0 if (i_fire or o_fire or idx < len(words)) else quiet + 1
                if quiet > MAX_WAIT:
                    break
                assert count < 10 * (n + len(words)) + 200, "decoder hangs"
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            results.append({
                "values": values, "fault": RLCFault(ctx.get(dut.fault)),
                "error": bool(ctx.get(dut.error)), "fault_word": fault_word,
                "words_used": idx, "done": done,
                "cycles": count, "waiting": bool(ctx.get(dut.i.ready)),
                "transfers": transfers,
            })

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check_decoded(fmt, streams, results):
    for i, ((words, n), got) in enumerate(zip(streams, results)):
        exp = decode_stream(words, n, fmt)
        shown = ", ".join(hex(w) for w in words[:6]) + (", ..." if len(words) > 6 else "")
        where = f"stream {i} (n = {n}, {len(words)} words: {shown})"
        assert got["values"] == exp.values.tolist(), f"{where}: values differ"
        assert got["fault"] == exp.fault, f"{where}: fault {got['fault']!r}, expected {exp.fault!r}"
        assert got["error"] == (exp.fault != RLCFault.NONE), where
        assert got["fault_word"] == exp.fault_word, f"{where}: fault word"
        assert got["words_used"] == exp.words_used, f"{where}: words used"
        assert got["done"] == exp.done, f"{where}: done"
        if not got["done"]:
            assert got["waiting"], f"{where}: busy but not waiting for a word"


@pytest.mark.parametrize("name", list(FORMATS))
def test_encoder_matches_reference_with_backpressure(name, seed):
    fmt = FORMATS[name]
    cases = stream_cases(fmt, seed)
    words, _ = simulate_encoder(fmt, cases, seed=seed, idle=0.3, stall=0.4)
    for values, got in zip(cases, words):
        assert got == encode(values, fmt), f"values {values.tolist()}"


@pytest.mark.parametrize("name", ["eyeriss", "tiny", "small"])
def test_two_value_encoder_matches_reference_with_backpressure(name, seed):
    """Two values a transfer (`ArrayConfig.dma_out_values`): the edge cases (n = 0 and 1,
    runs of max_run + 0..2 zeros, trailing zeros), random streams of odd and even lengths
    and long zero runs, under idle and back-pressure: the reference words bit for bit."""
    fmt = FORMATS[name]
    cases = stream_cases(fmt, seed, count=30, max_n=90)
    rng = np.random.default_rng(seed)
    for n in (2, 3, 2 * fmt.max_run + 3, 5 * fmt.max_run + 4):
        cases.append(random_values(rng, fmt, n, 0.97))
        cases.append(np.array([0] * (n - 1) + [7], dtype=np.int64))
    words, _ = simulate_encoder(fmt, cases, seed=seed, idle=0.3, stall=0.4, values=2)
    for values, got in zip(cases, words):
        assert got == encode(values, fmt), f"values {values.tolist()}"


def test_encoder_values_must_fit_a_word():
    """At most a word's pairs a transfer, so a transfer completes a word at most."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="values must be an integer from 1 to "
                                             "pairs_per_word = 1, not 2"):
            RLCEncoder(FORMATS["one-pair"], values=2)
        with pytest.raises(ValueError, match="pairs_per_word = 3, not 4"):
            RLCEncoder(FORMATS["eyeriss"], values=4)
        gc.collect()


@pytest.mark.parametrize("name", ["eyeriss", "small"])
def test_throughput_two_values_per_cycle(name, seed):
    """Two values a transfer, without idle or back-pressure: ``n`` values take
    ``ceil(n / 2)`` transfers, one a cycle after the start handshake, and the term word is
    taken the cycle after the last, or the one after that when the last transfer
    completes a word and starts the term word (its two values make two pairs, after a
    number of pairs one more than a multiple of ``pairs_per_word``); ``n = 0`` one cycle."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(seed)
    cases = [random_values(rng, fmt, n, z) for n in (299, 300, 301, 302)
             for z in (0.0, 0.5, 0.9, 1.0)] + [np.zeros(0, dtype=np.int64)]
    cases += [np.arange(1, n + 1) for n in range(1, 8)]
    words, cycles = simulate_encoder(fmt, cases, seed=seed, idle=0, stall=0, values=2)
    P = fmt.pairs_per_word
    for values, got, c in zip(cases, words, cycles):
        n = len(values)
        assert got == encode(values, fmt)
        pairs = encode_pairs(values, fmt)
        ends = np.cumsum([run + 1 for run, _ in pairs])
        two = n % 2 == 0 and len(pairs) >= 2 and ends[-2] == n - 1
        extra = int(two and len(pairs) % P == 1)
        assert c == -(-n // 2) + 1 + extra, f"n = {n}, {len(pairs)} pairs"


@pytest.mark.parametrize("pairs", [False, True, "words"], ids=["values", "pairs", "words"])
@pytest.mark.parametrize("name", list(FORMATS))
def test_decoder_matches_reference_with_backpressure(name, pairs, seed):
    fmt = FORMATS[name]
    cases = stream_cases(fmt, seed)
    streams = [(encode(v, fmt), len(v)) for v in cases]
    results = simulate_decoder(fmt, streams, seed=seed, idle=0.4, stall=0.3, pairs=pairs)
    check_decoded(fmt, streams, results)
    for values, got in zip(cases, results):
        assert got["values"] == values.tolist() and got["fault"] == RLCFault.NONE


@pytest.mark.parametrize("name", ["eyeriss", "one-pair"])
def test_throughput_one_value_per_cycle(name, seed):
    """Without idle or back-pressure, after the start handshake: the encoder takes n values and
    its last word leaves within n + 1 cycles; the decoder emits n values and goes idle within
    n + 2 (one cycle to load the first word, one to check the term word)."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(seed)
    cases = [random_values(rng, fmt, 300, z) for z in (0.0, 0.5, 0.9, 1.0)]
    _, enc_cycles = simulate_encoder(fmt, cases, seed=seed, idle=0, stall=0)
    streams = [(encode(v, fmt), len(v)) for v in cases]
    results = simulate_decoder(fmt, streams, seed=seed, idle=0, stall=0)
    check_decoded(fmt, streams, results)
    for values, ec, res in zip(cases, enc_cycles, results):
        assert ec <= len(values) + 1, f"encoder took {ec} cycles for {len(values)} values"
        assert res["cycles"] <= len(values) + 2, (
            f"decoder took {res['cycles']} cycles for {len(values)} values")


@pytest.mark.parametrize("name", ["eyeriss", "one-pair"])
def test_throughput_one_pair_per_cycle(name, seed):
    """Emitting pairs, without idle or back-pressure: a stream of ``k`` canonical pairs
    takes exactly ``k + 2`` cycles after the start handshake, ``k`` transfers."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(seed)
    cases = [random_values(rng, fmt, 300, z) for z in (0.0, 0.5, 0.9, 1.0)]
    streams = [(encode(v, fmt), len(v)) for v in cases]
    results = simulate_decoder(fmt, streams, seed=seed, idle=0, stall=0, pairs=True)
    check_decoded(fmt, streams, results)
    for values, res in zip(cases, results):
        k = len(encode_pairs(values, fmt))
        assert (res["transfers"], res["cycles"]) == (k, k + 2), f"{len(values)} values"


@pytest.mark.parametrize("name", ["eyeriss", "small"])
def test_throughput_one_word_per_cycle(name, seed):
    """Emitting a word's pairs a transfer, without idle or back-pressure: a canonical
    stream of ``k`` pairs (``ceil(k / pairs_per_word)`` words hold them) takes a cycle a
    word and 2."""
    fmt = FORMATS[name]
    rng = np.random.default_rng(seed)
    cases = [random_values(rng, fmt, 300, z) for z in (0.0, 0.5, 0.9, 1.0)]
    streams = [(encode(v, fmt), len(v)) for v in cases]
    results = simulate_decoder(fmt, streams, seed=seed, idle=0, stall=0, pairs="words")
    check_decoded(fmt, streams, results)
    for values, res in zip(cases, results):
        words = -(-len(encode_pairs(values, fmt)) // fmt.pairs_per_word)
        assert (res["transfers"], res["cycles"]) == (words, words + 2), f"{len(values)} values"


# Malformed streams, one per fault. FMT: pairs of (run 2 bits, level 4 bits), two per
# 16-bit word, reserved bits 12..14, term bit 15.
FMT = FORMATS["small"]
TERM = 1 << 15


def w(*pairs, term=False, reserved=0):
    word = 0
    for k, (run, level) in enumerate(pairs):
        word |= (run | (level & 15) << 2) << (6 * k)
    return word | reserved << 12 | (TERM if term else 0)


GOOD = ([w((0, 3), (1, -2)), w((3, 0), term=True)], 7)   # 3, 0, -2, 0, 0, 0, 0


def run_both(fmt, streams, **kw):
    """Decode ``streams`` emitting values, pairs and a word's pairs a transfer; each as
    the model says, with the same values, faults and words used (the cycles aside);
    returns the first."""
    results = [simulate_decoder(fmt, streams, pairs=pairs, **kw)
               for pairs in (False, True, "words")]
    for got in results:
        check_decoded(fmt, streams, got)
    drop = ("cycles", "transfers")
    for other in results[1:]:
        assert [{k: v for k, v in r.items() if k not in drop} for r in results[0]] == \
            [{k: v for k, v in r.items() if k not in drop} for r in other]
    return results[0]


def run_bad_then_good(bad):
    """Decode ``bad`` then the good stream, both modes; return the bad one's result."""
    results = run_both(FMT, [bad, GOOD], seed=1, idle=0.2, stall=0.2)
    assert results[1]["values"] == [3, 0, -2, 0, 0, 0, 0] and not results[1]["error"]
    return results[0]


def test_good_stream_decodes():
    assert decode_stream(*GOOD, FMT).values.tolist() == [3, 0, -2, 0, 0, 0, 0]


def test_bad_run_past_n():
    # n = 4: (0,3) then (3,5) would make 1 + 4 = 5 values.
    res = run_bad_then_good(([w((0, 3), (3, 5)), w(term=True)], 4))
    assert res["fault"] == RLCFault.OVERRUN and res["values"] == [3]
    assert res["done"] and res["words_used"] == 2   # drained to the term word


def test_bad_no_term_word():
    # n = 2 made by the first word, which lacks the term bit; the next word ends the drain.
    res = run_bad_then_good(([w((0, 1), (0, 2)), w((0, 7), term=True)], 2))
    assert res["fault"] == RLCFault.NO_TERM and res["values"] == [1, 2]
    assert res["done"] and res["words_used"] == 2


def test_bad_stream_cut_short():
    # The term word is missing: the decoder waits for it; a new start recovers.
    res = run_bad_then_good(([w((0, 1), (0, 2))], 5))
    assert not res["done"] and res["values"] == [1, 2] and res["fault"] == RLCFault.NONE


def test_bad_early_term_word():
    # n = 5 but the term word ends after 3 values.
    res = run_bad_then_good(([w((0, 1), (1, 2), term=True)], 5))
    assert res["fault"] == RLCFault.EARLY_TERM and res["values"] == [1, 0, 2]
    assert res["done"] and res["words_used"] == 1


def test_bad_unused_slot_not_zero():
    # n = 1: slot 1 after the last value holds (0, 4).
    res = run_bad_then_good(([w((0, 1), (0, 4), term=True)], 1))
    assert res["fault"] == RLCFault.SLOT and res["values"] == [1]
    assert res["done"] and res["words_used"] == 1


def test_bad_reserved_bits():
    res = run_bad_then_good(([w((0, 1), (0, 2), reserved=2), w((0, 3), term=True)], 3))
    assert res["fault"] == RLCFault.SLOT and res["values"] == [1, 2]
    assert res["done"] and res["words_used"] == 2


def test_start_aborts_a_stream_in_progress():
    """A start while a stream is half decoded abandons it; the next stream decodes."""
    streams = [([w((0, 1), (0, 2))], 6), ([w((0, 1))], 6), GOOD]
    results = run_both(FMT, streams, seed=3, idle=0, stall=0)
    assert [r["done"] for r in results] == [False, False, True]
    assert results[2]["values"] == [3, 0, -2, 0, 0, 0, 0]


@pytest.mark.parametrize("name", ["small", "one-pair"])
def test_corrupted_streams_match_model(name, seed):
    """Random bit flips, dropped and extra words, wrong n: the decoder does what the model says."""
    fmt = FORMATS[name]
    streams = corrupt_streams(fmt, seed)
    results = run_both(fmt, streams, seed=seed, idle=0.2, stall=0.2)
    faults = {r["fault"] for r in results}
    assert len(faults) >= 3, f"the corruptions exercised only {faults}"
