"""Stimulus for the RLC codec tests: edge cases, random streams, corrupted streams."""

from __future__ import annotations

import numpy as np

from ommatidia.gen.config import RLCFormat
from ommatidia.gen.rlc import encode

__all__ = ["random_values", "edge_cases", "stream_cases", "corrupt_streams"]


def random_values(rng: np.random.Generator, fmt: RLCFormat, n: int, zeros: float) -> np.ndarray:
    """``n`` random ``level_bits`` values, each zero with probability ``zeros``."""
    lo, hi = -(1 << (fmt.level_bits - 1)), 1 << (fmt.level_bits - 1)
    v = rng.integers(lo, hi, size=n)
    v[rng.random(n) < zeros] = 0
    return v.astype(np.int64)


def edge_cases(fmt: RLCFormat) -> list[np.ndarray]:
    """n = 0 and 1, extreme levels, no zeros, all zeros, runs of max_run + 0, 1, 2 and
    2 max_run + 2 zeros alone, before a value and between values, trailing zeros."""
    m = fmt.max_run
    top = (1 << (fmt.level_bits - 1)) - 1
    cases = [[], [0], [top], [-top - 1], [0] * 50, list(range(1, 8))]
    for z in (m, m + 1, m + 2, 2 * m + 2):
        cases += [[0] * z, [0] * z + [5], [3] + [0] * z + [-2] + [0] * z]
    cases.append([1, 2, 3, 0, 0])
    return [np.array(c, dtype=np.int64) for c in cases]


def stream_cases(fmt: RLCFormat, seed: int, count: int = 10, max_n: int = 60):
    """`edge_cases` plus ``count`` random streams of 0, 50, 90, 97 or 100 % zeros."""
    rng = np.random.default_rng(seed)
    cases = edge_cases(fmt)
    for _ in range(count):
        cases.append(random_values(rng, fmt, int(rng.integers(0, max_n)),
                                   float(rng.choice([0.0, 0.5, 0.9, 0.97, 1.0]))))
    return cases


def corrupt_streams(fmt: RLCFormat, seed: int, count: int = 30, max_n: int = 25):
    """``(words, n)`` streams, most malformed: bit flips, a dropped word, a wrong n, an
    extra word."""
    rng = np.random.default_rng(seed)
    streams = []
    for values in stream_cases(fmt, seed, count=count, max_n=max_n):
        words = encode(values, fmt)
        n = len(values)
        kind = rng.integers(0, 5)
        if kind <= 1:
            for _ in range(int(rng.integers(1, 3))):
                i = int(rng.integers(0, len(words)))
                words[i] ^= 1 << int(rng.integers(0, fmt.word_bits))
        elif kind == 2 and len(words) > 1:
            del words[int(rng.integers(0, len(words) - 1))]
        elif kind == 3:
            n = max(0, n + int(rng.choice([-2, -1, 1, 2])))
        else:
            top = 1 << (fmt.word_bits - 1)
            words.append(int(rng.integers(0, 1 << min(fmt.word_bits, 63))) | top)
        streams.append((words, n))
    return streams
