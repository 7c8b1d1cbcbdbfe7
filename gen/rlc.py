"""Software RLC codec, bit for bit what `ommatidia.hw.rlc` does, and its ratio maths.

The compiler builds DRAM images with it; `ommatidia.sim` checks the hardware against it.

`encode` produces the canonical code of `ommatidia.hw.rlc` (the module
docstring there defines the format and which streams are accepted).
`decode_stream` runs the decoder's rules word by word and reports what the
hardware decoder would do with a stream, malformed or not: the values it
emits, the fault it raises, how many words it consumes and whether it ends or
waits for more words. `decode` is the strict form: it returns the ``n`` values
of a well-formed stream and raises `RLCDecodeError` for anything else,
including a stream cut short and words left over after the term word.

Compression figures: raw size is ``level_bits`` per value (the values travel
uncoded at the level width); coded size is ``word_bits`` per word. The entropy
bound of the same zero/non-zero statistics treats values as independent, zero
with the observed probability ``p``, and the non-zero ones as uniform over the
``2**level_bits - 1`` non-zero codes: ``H(p) + (1 - p) log2(2**L - 1)`` bits
per value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ommatidia.gen.config import RLCFormat
from ommatidia.hw.rlc import RLCFault

__all__ = [
    "RLCFault", "RLCDecodeError", "DecodeResult", "check_values", "encode_pairs",
    "encode_runs", "pack", "pack_runs", "unpack", "encode", "decode_stream", "decode",
    "check_result", "coded_bits", "entropy_bits", "compression",
]


class RLCDecodeError(ValueError):
    """A malformed coded stream; ``fault`` is the `RLCFault` (None for trailing words)."""

    def __init__(self, message: str, fault: RLCFault | None):
        super().__init__(message)
        self.fault = fault


def check_values(values, fmt: RLCFormat) -> np.ndarray:
    """``values`` flattened to int64, checked to fit signed ``level_bits``."""
    a = np.asarray(values)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"RLC values must be integers, not {a.dtype}")
    a = a.astype(np.int64).reshape(-1)
    lo, hi = -(1 << (fmt.level_bits - 1)), (1 << (fmt.level_bits - 1)) - 1
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)][0]
        raise ValueError(f"value {bad} does not fit level_bits = {fmt.level_bits} "
                         f"(signed range {lo}..{hi})")
    return a


def encode_pairs(values, fmt: RLCFormat) -> list[tuple[int, int]]:
    """The canonical ``(run, level)`` pairs of ``values``: each non-zero value after its
    zeros, a run of ``max_run`` zeros taking the next zero as its level (a pair of
    ``max_run + 1`` zeros), trailing zeros as a run and a zero level."""
    runs, levels = encode_runs(values, fmt)
    return list(zip(runs.tolist(), levels.tolist()))


def encode_runs(values, fmt: RLCFormat) -> tuple[np.ndarray, np.ndarray]:
    """`encode_pairs` as two int64 arrays, the runs and the levels."""
    a = check_values(values, fmt)
    step = fmt.max_run + 1
    nz = np.flatnonzero(a)
    gaps = np.diff(nz, prepend=-1) - 1          # the zeros before each non-zero value
    tail = len(a) - 1 - (int(nz[-1]) if len(nz) else -1)
    full, rem = np.divmod(gaps, step)
    tail_full, tail_rem = divmod(tail, step)
    ends = np.cumsum(full + 1) - 1              # each non-zero value's pair
    total = int(ends[-1]) + 1 if len(ends) else 0
    runs = np.full(total + tail_full + (tail_rem > 0), fmt.max_run, dtype=np.int64)
    levels = np.zeros(len(runs), dtype=np.int64)
    runs[ends], levels[ends] = rem, a[nz]
    if tail_rem:
        runs[-1] = tail_rem - 1
    return runs, levels


def pack(pairs, fmt: RLCFormat) -> list[int]:
    """Pack pairs into words, term bit on the last; no pairs gives one term-only word."""
    r, pb, P = fmt.run_bits, fmt.pair_bits, fmt.pairs_per_word
    lmask = (1 << fmt.level_bits) - 1
    a = np.array(pairs) if len(pairs) and fmt.word_bits <= 64 else None
    if a is not None and a.dtype.kind == "i" and a.shape == (len(pairs), 2):  # in uint64
        bad = np.flatnonzero((a[:, 0] < 0) | (a[:, 0] > fmt.max_run))
        if len(bad):
            raise ValueError(f"run {pairs[bad[0]][0]} does not fit run_bits = {fmt.run_bits}")
        return _pack_words(a[:, 0], a[:, 1], fmt)
    words = []
    for start in range(0, max(len(pairs), 1), P):
        w = 0
        for k, (run, level) in enumerate(pairs[start:start + P]):
            if not 0 <= run <= fmt.max_run:
                raise ValueError(f"run {run} does not fit run_bits = {fmt.run_bits}")
            w |= (run | (level & lmask) << r) << (k * pb)
        words.append(w)
    words[-1] |= 1 << (fmt.word_bits - 1)
    return words


def pack_runs(runs: np.ndarray, levels: np.ndarray, fmt: RLCFormat) -> list[int]:
    """`pack` of the pairs `encode_runs` gives (runs within ``max_run``)."""
    if len(runs) and fmt.word_bits <= 64:
        return _pack_words(runs, levels, fmt)
    return pack(list(zip(runs.tolist(), levels.tolist())), fmt)


def _pack_words(runs: np.ndarray, levels: np.ndarray, fmt: RLCFormat) -> list[int]:
    """`pack` of at least one pair of int64 runs and levels, words of at most 64 bits."""
    r, pb, P = fmt.run_bits, fmt.pair_bits, fmt.pairs_per_word
    lmask = (1 << fmt.level_bits) - 1
    u = (runs | (levels & lmask) << r).astype(np.uint64) \
        << (np.arange(len(runs), dtype=np.uint64) % np.uint64(P) * np.uint64(pb))
    words = np.bitwise_or.reduceat(u, np.arange(0, len(runs), P)).tolist()
    words[-1] |= 1 << (fmt.word_bits - 1)
    return words


def unpack(word: int, fmt: RLCFormat) -> tuple[list[tuple[int, int]], int, int]:
    """``(pairs, reserved, term)`` of one word, levels sign-extended."""
    r, l, pb = fmt.run_bits, fmt.level_bits, fmt.pair_bits
    pairs = []
    for k in range(fmt.pairs_per_word):
        p = word >> (k * pb)
        level = (p >> r) & ((1 << l) - 1)
        pairs.append((p & fmt.max_run, level - (1 << l) if level >> (l - 1) else level))
    used = fmt.pairs_per_word * pb
    reserved = (word >> used) & ((1 << (fmt.word_bits - 1 - used)) - 1)
    return pairs, reserved, (word >> (fmt.word_bits - 1)) & 1


def encode(values, fmt: RLCFormat = RLCFormat()) -> list[int]:
    """Canonical RLC words of ``values`` (any integer array fitting ``level_bits``)."""
    return pack_runs(*encode_runs(values, fmt), fmt)


@dataclass
class DecodeResult:
    """What the hardware decoder does with a stream.

    ``values``: emitted values (at most ``n``); ``fault``: first fault;
    ``fault_word``: index of the word where it was seen; ``words_used``: words
    consumed (including those drained after a fault); ``done``: the decoder
    went idle (else it is still waiting for words).
    """

    values: np.ndarray
    fault: RLCFault
    fault_word: int | None
    words_used: int
    done: bool


def decode_stream(words, n: int, fmt: RLCFormat = RLCFormat()) -> DecodeResult:
    """Run the decoder's rules on ``words`` for a stream of ``n`` values."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    P = fmt.pairs_per_word
    out: list[int] = []
    left = int(n)
    fault, fault_word = RLCFault.NONE, None
    words = [int(w) for w in words]
    idx = 0

    def result(done):
        return DecodeResult(np.array(out, dtype=np.int64), fault, fault_word, idx, done)

    while idx < len(words):
        pairs, reserved, term = unpack(words[idx], fmt)
        wi, idx = idx, idx + 1
        k = 0
        drain = False
        while True:
            if left == 0:
                if not term:
                    fault, drain = RLCFault.NO_TERM, True
                elif reserved or any(pairs[j] != (0, 0) for j in range(k, P)):
                    fault = RLCFault.SLOT
                break
            run, level = pairs[k]
            if run >= left:
                fault, drain = RLCFault.OVERRUN, not term
                break
            out.extend([0] * run + [level])
            left -= run + 1
            k += 1
            if k == P and left:
                if term:
                    fault = RLCFault.EARLY_TERM
                elif reserved:
                    fault, drain = RLCFault.SLOT, True
                break
        if fault != RLCFault.NONE:
            fault_word = wi
            while drain and idx < len(words):
                drain = not unpack(words[idx], fmt)[2]
                idx += 1
            return result(done=not drain)
        if left == 0:
            return result(done=True)
    return result(done=False)


def decode(words, n: int, fmt: RLCFormat = RLCFormat()) -> np.ndarray:
    """The ``n`` values of a well-formed stream; raises `RLCDecodeError` otherwise."""
    words = [int(w) for w in words]
    limit = 1 << fmt.word_bits
    for i, w in enumerate(words):
        if not 0 <= w < limit:
            raise ValueError(f"word {i} = {w:#x} is not an unsigned {fmt.word_bits}-bit word")
    res = decode_stream(words, n, fmt)
    return check_result(res, len(words), n)


_FAULT_TEXT = {
    RLCFault.OVERRUN: "a run goes past the {n} values of the stream",
    RLCFault.NO_TERM: "the word that completes the {n} values has no term bit",
    RLCFault.EARLY_TERM: "a term word ends the stream before {n} values",
    RLCFault.SLOT: "a pair slot after the last value, or a reserved bit, is not zero",
}


def check_result(res: DecodeResult, num_words: int, n: int) -> np.ndarray:
    """The values of ``res`` if it decoded ``num_words`` words cleanly, else raise."""
    if res.fault != RLCFault.NONE:
        raise RLCDecodeError(f"malformed RLC stream: {_FAULT_TEXT[res.fault].format(n=n)} "
                             f"(fault {res.fault.name} at word {res.fault_word})", res.fault)
    if not res.done:
        raise RLCDecodeError(f"malformed RLC stream: it ends after {num_words} words and "
                             f"{len(res.values)} of {n} values without a term word",
                             RLCFault.NO_TERM)
    if res.words_used < num_words:
        raise RLCDecodeError(f"malformed RLC stream: {num_words - res.words_used} words "
                             f"follow the term word (word {res.words_used - 1})", None)
    return res.values


def coded_bits(values, fmt: RLCFormat = RLCFormat()) -> int:
    """Size of the canonical code of ``values`` in bits."""
    return len(encode(values, fmt)) * fmt.word_bits


def _h(p: float) -> float:
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def entropy_bits(values, fmt: RLCFormat = RLCFormat()) -> float:
    """Entropy bound in bits of i.i.d. values with the zero fraction of ``values``."""
    a = check_values(values, fmt)
    if not a.size:
        return 0.0
    p = float(np.count_nonzero(a == 0)) / a.size
    return a.size * (_h(p) + (1 - p) * math.log2((1 << fmt.level_bits) - 1))


def compression(values, fmt: RLCFormat = RLCFormat()) -> dict:
    """Raw bits, coded bits, entropy bits and the two ratios for ``values``."""
    a = check_values(values, fmt)
    raw = a.size * fmt.level_bits
    coded = coded_bits(a, fmt)
    ent = entropy_bits(a, fmt)
    return {
        "values": int(a.size), "zeros": float(np.count_nonzero(a == 0)) / max(a.size, 1),
        "raw_bits": raw, "coded_bits": coded, "entropy_bits": ent,
        "ratio": raw / coded, "bound": raw / ent if ent else math.inf,
        "overhead": coded / ent - 1 if ent else math.inf,
    }
