"""Reference RLC codec: hand-worked words, an independent oracle, round trips, malformed input."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ommatidia.gen.config import RLCFormat
from ommatidia.gen.rlc import (
    RLCDecodeError, RLCFault, compression, decode, decode_stream, encode, entropy_bits,
)

EYERISS = RLCFormat()
TERM = 1 << 63


def pair(k, run, level):
    """Pair slot ``k`` of an Eyeriss word, written out by hand: 21 bits per pair."""
    return (run | (level & 0xFFFF) << 5) << (21 * k)


@pytest.mark.parametrize("values, words", [
    ([], [TERM]),
    ([0], [TERM]),                                     # (0, 0): one zero
    ([5], [TERM | pair(0, 0, 5)]),
    ([-1], [TERM | pair(0, 0, -1)]),
    ([-32768, 32767], [TERM | pair(0, 0, -32768) | pair(1, 0, 32767)]),
    ([0] * 31, [TERM | pair(0, 30, 0)]),
    ([0] * 32, [TERM | pair(0, 31, 0)]),
    ([0] * 33, [TERM | pair(0, 31, 0) | pair(1, 0, 0)]),
    ([0] * 34, [TERM | pair(0, 31, 0) | pair(1, 1, 0)]),
    ([0] * 31 + [9], [TERM | pair(0, 31, 9)]),
    ([0] * 32 + [9], [TERM | pair(0, 31, 0) | pair(1, 0, 9)]),
    ([7, 0, 0], [TERM | pair(0, 0, 7) | pair(1, 1, 0)]),
    ([1, 2, 3, 4], [pair(0, 0, 1) | pair(1, 0, 2) | pair(2, 0, 3), TERM | pair(0, 0, 4)]),
    ([1, 2, 3], [TERM | pair(0, 0, 1) | pair(1, 0, 2) | pair(2, 0, 3)]),
    ([0] * 96, [TERM | pair(0, 31, 0) | pair(1, 31, 0) | pair(2, 31, 0)]),
    ([0] * 97, [pair(0, 31, 0) | pair(1, 31, 0) | pair(2, 31, 0), TERM]),
])
def test_hand_worked_words(values, words):
    assert encode(values, EYERISS) == words
    assert decode(words, len(values), EYERISS).tolist() == values


def oracle(values, fmt):
    """Canonical code computed another way: zero runs by groupby, packing through bit strings."""
    m = fmt.max_run + 1
    pairs, pending = [], 0
    for is_zero, group in itertools.groupby((int(v) for v in values), key=lambda v: v == 0):
        group = list(group)
        if is_zero:
            pending = len(group)
            continue
        full, rest = divmod(pending, m)
        pairs += [(m - 1, 0)] * full + [(rest, group[0])] + [(0, v) for v in group[1:]]
        pending = 0
    full, rest = divmod(pending, m)
    pairs += [(m - 1, 0)] * full + ([(rest - 1, 0)] if rest else [])
    chunks = [pairs[i:i + fmt.pairs_per_word]
              for i in range(0, len(pairs), fmt.pairs_per_word)] or [[]]
    words = []
    for i, chunk in enumerate(chunks):
        bits = "".join(format(level & ((1 << fmt.level_bits) - 1), f"0{fmt.level_bits}b")
                       + format(run, f"0{fmt.run_bits}b") for run, level in reversed(chunk))
        term = "1" if i == len(chunks) - 1 else "0"
        words.append(int(term + bits.rjust(fmt.word_bits - 1, "0"), 2))
    return words


@st.composite
def formats(draw):
    r = draw(st.integers(1, 6))
    l = draw(st.integers(2, 17))
    p = draw(st.integers(1, 4))
    w = p * (r + l) + 1 + draw(st.integers(0, 3))
    return RLCFormat(run_bits=r, level_bits=l, pairs_per_word=p, word_bits=w)


@st.composite
def runs(draw, fmt):
    """Values built from zero runs around max_run and random non-zeros."""
    lo, hi = -(1 << (fmt.level_bits - 1)), (1 << (fmt.level_bits - 1)) - 1
    m = fmt.max_run
    out = []
    for _ in range(draw(st.integers(0, 8))):
        z = draw(st.one_of(st.sampled_from([0, 1, m - 1, m, m + 1, m + 2, 2 * m + 2]),
                           st.integers(0, 3 * m + 3)))
        out += [0] * max(z, 0)
        if draw(st.booleans()):
            out.append(draw(st.integers(lo, hi)))
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_round_trip_and_oracle(data):
    fmt = data.draw(formats())
    values = data.draw(runs(fmt))
    words = encode(values, fmt)
    assert words == oracle(values, fmt)
    assert decode(words, len(values), fmt).tolist() == values


EDGE = [[], [0], [1], [0] * 31, [0] * 32, [0] * 33, [0] * 200, list(range(1, 50)),
        [4] + [0] * 40, [0] * 31 + [3] + [0] * 32 + [-3] + [0] * 33]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-32768, 32767) | st.just(0) | st.just(0), max_size=150))
@example(EDGE[0])
@example(EDGE[1])
@example(EDGE[2])
@example(EDGE[3])
@example(EDGE[4])
@example(EDGE[5])
@example(EDGE[6])
@example(EDGE[7])
@example(EDGE[8])
@example(EDGE[9])
def test_round_trip_eyeriss(values):
    words = encode(np.array(values, dtype=np.int64), EYERISS)
    assert words == oracle(values, EYERISS)
    assert decode(words, len(values), EYERISS).tolist() == values
    assert all(0 <= w < 1 << 64 for w in words)
    assert [w >> 63 for w in words] == [0] * (len(words) - 1) + [1]


def test_term_only_word_is_zeros_or_nothing():
    # n is what tells an empty slot from a (0, 0) pair.
    assert decode([TERM], 0, EYERISS).tolist() == []
    assert decode([TERM], 1, EYERISS).tolist() == [0]
    assert decode([TERM], 3, EYERISS).tolist() == [0, 0, 0]


def test_equivalent_non_canonical_streams_decode():
    # (3, 0) then (0, 5): four zeros then 5; canonical would be (4, 5).
    words = [TERM | pair(0, 3, 0) | pair(1, 0, 5)]
    assert decode(words, 5, EYERISS).tolist() == [0, 0, 0, 0, 5]
    # (0, 0) slots inside a stream are zeros, not padding.
    words = [pair(0, 0, 0) | pair(1, 0, 0) | pair(2, 0, 0), TERM | pair(0, 0, 8)]
    assert decode(words, 4, EYERISS).tolist() == [0, 0, 0, 8]


@pytest.mark.parametrize("words, n, fault", [
    ([TERM | pair(0, 0, 3) | pair(1, 3, 5)], 4, RLCFault.OVERRUN),
    ([pair(0, 0, 1) | pair(1, 2, 2), TERM], 2, RLCFault.OVERRUN),
    ([pair(0, 0, 1) | pair(1, 0, 2) | pair(2, 0, 3), TERM], 2, RLCFault.NO_TERM),
    ([pair(0, 0, 1) | pair(1, 0, 2) | pair(2, 0, 3), TERM], 3, RLCFault.NO_TERM),
    ([pair(0, 0, 1)], 1, RLCFault.NO_TERM),
    ([pair(0, 0, 1) | pair(1, 0, 2) | pair(2, 0, 3)], 5, RLCFault.NO_TERM),  # cut short
    ([], 0, RLCFault.NO_TERM),
    ([TERM | pair(0, 0, 1) | pair(1, 1, 2)], 5, RLCFault.EARLY_TERM),
    ([TERM], 4, RLCFault.EARLY_TERM),   # three (0, 0) pairs: three zeros, not four
    ([TERM | pair(0, 0, 1) | pair(1, 0, 4)], 1, RLCFault.SLOT),
    ([TERM | pair(0, 2, 0)], 0, RLCFault.SLOT),
    ([TERM | pair(0, 0, 1) | pair(2, 1, 0)], 1, RLCFault.SLOT),
])
def test_malformed_streams_raise(words, n, fault):
    with pytest.raises(RLCDecodeError, match="malformed RLC stream") as info:
        decode(words, n, EYERISS)
    assert info.value.fault == fault


def test_trailing_words_raise():
    with pytest.raises(RLCDecodeError, match="follow the term word") as info:
        decode([TERM | pair(0, 0, 1), TERM], 1, EYERISS)
    assert info.value.fault is None


def test_reserved_bits_must_be_zero():
    fmt = RLCFormat(run_bits=2, level_bits=4, pairs_per_word=2, word_bits=16)
    assert decode([1 << 15 | 1 << 2], 1, fmt).tolist() == [1]
    with pytest.raises(RLCDecodeError) as info:
        decode([1 << 15 | 1 << 2 | 1 << 13], 1, fmt)
    assert info.value.fault == RLCFault.SLOT


def test_decode_stream_reports_drain_and_waiting():
    # OVERRUN in a non-term word: the next words are drained up to the term word.
    words = [pair(0, 5, 1), pair(0, 0, 1), TERM | pair(0, 0, 1), TERM]
    res = decode_stream(words, 3, EYERISS)
    assert (res.fault, res.fault_word, res.words_used, res.done) == (RLCFault.OVERRUN, 0, 3, True)
    assert res.values.tolist() == []
    # Cut short: no fault, waiting for more words.
    res = decode_stream([pair(0, 0, 1) | pair(1, 0, 2) | pair(2, 0, 3)], 5, EYERISS)
    assert (res.fault, res.words_used, res.done) == (RLCFault.NONE, 1, False)
    assert res.values.tolist() == [1, 2, 3]


def test_bad_values_rejected():
    with pytest.raises(ValueError, match="does not fit level_bits = 16"):
        encode([40000], EYERISS)
    with pytest.raises(ValueError, match="integers"):
        encode([0.5], EYERISS)
    with pytest.raises(ValueError, match="unsigned 64-bit word"):
        decode([1 << 64], 1, EYERISS)


def test_compression_figures():
    # 96 zeros fit one word: 96*16 raw bits in 64 coded bits; entropy bound 0.
    c = compression(np.zeros(96, dtype=np.int64), EYERISS)
    assert (c["raw_bits"], c["coded_bits"], c["ratio"]) == (1536, 64, 24.0)
    assert c["entropy_bits"] == 0 and c["bound"] == math.inf
    # Alternating zeros: H(0.5) = 1 bit a value, plus log2(2**16 - 1) bits for each non-zero.
    a = np.array([0, 7] * 30, dtype=np.int64)
    assert entropy_bits(a, EYERISS) == pytest.approx(60 * (1 + 0.5 * math.log2(65535)))
    # Pairs (1, 7), three to a word: 10 words.
    assert compression(a, EYERISS)["coded_bits"] == 10 * 64
