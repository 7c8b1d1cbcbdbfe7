"""Stimulus for one PE run, in stream order, with the golden psums it must produce."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ommatidia.gen.config import PEConfig

from .golden import row_conv1d, row_zero_macs

__all__ = ["PECase", "random_pe_case"]


@dataclass
class PECase:
    """A `PERun` with its data: ifmap rows (q, W), filter rows (p, q, S), psums in (p, F)."""

    run: object
    ifmap: np.ndarray
    filters: np.ndarray
    psum_in: np.ndarray | None
    psum_bits: int

    def filter_stream(self) -> list[int]:
        """Filter weights tap-major: for s, for c, for k."""
        return [int(v) for v in self.filters.transpose(2, 1, 0).reshape(-1)]

    def ifmap_stream(self) -> list[int]:
        """Activations column-major: for x, for c."""
        return [int(v) for v in self.ifmap.T.reshape(-1)]

    def psum_in_stream(self) -> list[int]:
        return [] if self.psum_in is None else [int(v) for v in self.psum_in.T.reshape(-1)]

    def expected(self) -> np.ndarray:
        """Golden psums out in stream order (for f, for k)."""
        out = row_conv1d(self.ifmap, self.filters, stride=self.run.U, psum_in=self.psum_in,
                         psum_bits=self.psum_bits)
        return out.T.reshape(-1)

    def expected_gated(self) -> int:
        return row_zero_macs(self.ifmap, self.run.p, self.run.S, self.run.U)


def _values(rng, bits, shape, zero_fraction, extreme):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if extreme:
        v = rng.choice(np.array([lo, hi, lo + 1, hi - 1]), size=shape)
    else:
        v = rng.integers(lo, hi + 1, size=shape)
    if zero_fraction:
        v = np.where(rng.random(shape) < zero_fraction, 0, v)
    return v.astype(np.int64)


def random_pe_case(cfg: PEConfig, rng: np.random.Generator, *, max_width: int | None = None,
                   zero_fraction: float | None = None, load_filter: bool = True,
                   filters: np.ndarray | None = None) -> PECase:
    """A random valid `PERun` within ``cfg``'s limits, with random data.

    ``filters`` reuses given filter rows (then ``load_filter`` may be False).
    """
    from ommatidia.hw.pe import PERun
    while True:
        if filters is not None:
            p, q, S = filters.shape
        else:
            S = int(rng.integers(1, cfg.max_filter_width + 1))
            q = int(rng.integers(1, cfg.ifmap_spad_depth // S + 1))
            p = int(rng.integers(1, min(cfg.psum_spad_depth, cfg.filter_spad_depth // (q * S)) + 1))
        ring = cfg.ifmap_spad_depth // q
        # U up to S + 2: strides past the filter row skip columns (1x1 stride-2 layers).
        U = int(rng.integers(1, min(ring, S + 2) + 1))
        top = min(cfg.max_ifmap_width, max_width or cfg.max_ifmap_width)
        if top < S:
            continue
        W = int(rng.integers(S, top + 1))
        run = PERun(S=S, W=W, U=U, p=p, q=q, load_filter=load_filter,
                    accumulate=bool(rng.integers(0, 2)))
        run.check(cfg)
        break
    zf = float(rng.choice([0.0, 0.3, 0.7])) if zero_fraction is None else zero_fraction
    extreme = bool(rng.random() < 0.25)
    ifmap = _values(rng, cfg.act_bits, (q, W), zf, extreme)
    if filters is None:
        filters = _values(rng, cfg.weight_bits, (p, q, S), 0.1, extreme)
    psum_in = _values(rng, cfg.psum_bits, (p, run.F), 0.0, extreme) if run.accumulate else None
    return PECase(run, ifmap, filters, psum_in, cfg.psum_bits)
