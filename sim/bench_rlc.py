"""RLC compression ratio against the entropy bound, for random activations of given sparsity.

``python -m ommatidia.sim.bench_rlc [--n N] [--zeros 0,0.5,0.9,1] [--format R,L,P,W] [--seed S]``

Each row encodes ``N`` independent values, zero with the given probability and
otherwise uniform over the non-zero ``level_bits`` codes, with the reference
codec (bit-exact with the hardware). Ratio = raw bits / coded bits, raw being
``level_bits`` per value. Bound = raw bits / entropy bits, the entropy of
values with the observed zero fraction ``p``:
``H(p) + (1 - p) log2(2**level_bits - 1)`` bits a value. Overhead = coded
bits / entropy bits - 1 (infinite when every value is zero: the bound is 0 bits).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from ommatidia.gen.config import RLCFormat

from ommatidia.gen.rlc import compression

from .rlc_cases import random_values

__all__ = ["measure", "main"]


def measure(fmt: RLCFormat, zeros: list[float], n: int, seed: int) -> list[dict]:
    """`compression` figures of ``n`` random values for each zero probability in ``zeros``."""
    rng = np.random.default_rng(seed)
    rows = []
    for z in zeros:
        values = random_values(rng, fmt, n, z)
        rows.append({"target": z, **compression(values, fmt)})
    return rows


def _fmt_ratio(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ommatidia.sim.bench_rlc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=96_000, help="values per row (default 96000)")
    parser.add_argument("--zeros", default="0,0.5,0.9,1",
                        help="zero probabilities, comma-separated (default 0,0.5,0.9,1)")
    parser.add_argument("--format", default="5,16,3,64", help="R,L,P,W (default 5,16,3,64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fmt = RLCFormat.parse(args.format)
    zeros = [float(z) for z in args.zeros.split(",")]
    if args.n < 1 or any(not 0 <= z <= 1 for z in zeros):
        parser.error("--n must be positive and --zeros fractions from 0 to 1")
    rows = measure(fmt, zeros, args.n, args.seed)
    print(f"RLC format R,L,P,W = {args.format}; {args.n} values a row, seed {args.seed}; "
          f"raw = {fmt.level_bits} bits a value")
    head = (f"{'zeros':>6} {'words':>7} {'bits/value':>10} {'entropy':>8} "
            f"{'ratio':>6} {'bound':>6} {'overhead':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        n = r["values"]
        over = "inf" if math.isinf(r["overhead"]) else f"{100 * r['overhead']:.1f} %"
        print(f"{100 * r['zeros']:5.1f}% {r['coded_bits'] // fmt.word_bits:7d} "
              f"{r['coded_bits'] / n:10.3f} {r['entropy_bits'] / n:8.3f} "
              f"{_fmt_ratio(r['ratio']):>6} {_fmt_ratio(r['bound']):>6} {over:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
