"""The model's RLC arithmetic on DRAM streams: word counts of the canonical code, a
vectorised decoder and the cycles `ommatidia.hw.dma.DMAIn` spends on each word (the
codec itself is `ommatidia.gen.rlc`)."""

from __future__ import annotations

import numpy as np

from ommatidia.gen.arith import wrap
from ommatidia.gen.rlc import decode as rlc_reference

__all__ = ["rlc_words", "rlc_decode", "rlc_steps", "rlc_out_times"]


def rlc_words(values, fmt) -> int:
    """Words of the canonical RLC code of ``values`` (what `ommatidia.hw.rlc.RLCEncoder`
    emits): a pair per non-zero value, per ``max_run + 1`` zeros of a run, and for the
    last value; ``pairs_per_word`` pairs a word; one word when empty."""
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        return 1
    z = np.concatenate(([0], (v == 0).astype(np.int8), [0]))
    d = np.diff(z)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    lengths = ends - starts
    span = fmt.max_run + 1
    pairs = int(np.count_nonzero(v))
    if v[-1] == 0:
        pairs += (int(lengths[-1]) - 1) // span + 1
        lengths = lengths[:-1]
    pairs += int(np.sum(lengths // span))
    return -(-pairs // fmt.pairs_per_word)


def rlc_decode(words: list, n: int, fmt) -> np.ndarray:
    """The ``n`` values of an RLC stream (vectorised; the reference decoder of
    `ommatidia.gen.rlc` for word widths above 64 bits and for malformed streams,
    which it reports)."""
    if fmt.word_bits > 64 or not words or n == 0:
        return np.asarray(rlc_reference(words, n, fmt), dtype=np.int64)
    w = np.array(words, dtype=np.uint64)
    k = np.arange(fmt.pairs_per_word, dtype=np.uint64) * np.uint64(fmt.pair_bits)
    runs = ((w[:, None] >> k) & np.uint64(fmt.max_run)).astype(np.int64).reshape(-1)
    levels = wrap(((w[:, None] >> (k + np.uint64(fmt.run_bits)))
                   & np.uint64((1 << fmt.level_bits) - 1)).astype(np.int64).reshape(-1),
                  fmt.level_bits)
    ends = np.cumsum(runs + 1)
    j = int(np.searchsorted(ends, n))
    if j >= len(ends) or ends[j] != n or j // fmt.pairs_per_word != len(words) - 1:
        return np.asarray(rlc_reference(words, n, fmt), dtype=np.int64)
    out = np.zeros(n, dtype=np.int64)
    out[ends[:j + 1] - 1] = levels[:j + 1]
    return out


def rlc_steps(words: list, n: int, fmt, per: int, whole: bool = False) -> np.ndarray:
    """Cycles `ommatidia.hw.dma.DMAIn` spends on each word of an RLC stream of ``n``
    values, ``per`` to a GLB word (none after the one in which the ``n``-th value is
    made): a pair a cycle, or a cycle per GLB word it completes when more
    (a word is written when its last slot is filled or with the ``n``-th value);
    ``whole`` (`ArrayConfig.rlc_decode_words`): a word a cycle, or a cycle per GLB word
    its pairs complete when more."""
    P = fmt.pairs_per_word
    if not words or n == 0:
        return np.zeros(len(words), dtype=np.int64)
    w = np.array(words, dtype=np.uint64 if fmt.word_bits <= 64 else object)
    k = np.arange(P) * fmt.pair_bits
    if w.dtype != object:
        k = k.astype(np.uint64)
    runs = ((w[:, None] >> k) & fmt.max_run).astype(np.int64).reshape(-1)
    ends = np.cumsum(runs + 1)
    j = min(int(np.searchsorted(ends, n)), len(ends) - 1)
    ends = ends[:j + 1]
    written = ends // per - np.concatenate(([0], ends[:-1])) // per
    if ends[-1] >= n:
        written[-1] += n % per != 0
    cost = written if whole else np.maximum(written, 1)
    cost = np.concatenate((cost, np.zeros(len(words) * P - len(cost), dtype=np.int64)))
    cost = cost.reshape(-1, P).sum(axis=1)
    if whole:
        cost[:-(-(j + 1) // P)] = np.maximum(cost[:-(-(j + 1) // P)], 1)
    return cost


def rlc_out_times(fmt, n: int, values_a_cycle: int, runs=None) -> np.ndarray:
    """The transfer (of ``values_a_cycle`` values each, from 0) after which an
    `ommatidia.hw.rlc.RLCEncoder` never stalled sends each word of the canonical code of
    ``n > 0`` values, whose pairs' ``runs`` are given (an array,
    `ommatidia.gen.rlc.encode_runs`; None: no value zero): a word after the transfer of
    its last pair's value; the term word a transfer later when the last transfer
    completes the word before it too (one word a cycle)."""
    ends = np.arange(n) if runs is None else np.cumsum(runs + 1) - 1
    P = fmt.pairs_per_word
    last = np.minimum(np.arange(P - 1, len(ends) + P - 1, P), len(ends) - 1)
    times = ends[last] // values_a_cycle
    if len(times) > 1 and times[-1] == times[-2]:
        times[-1] += 1
    return times
