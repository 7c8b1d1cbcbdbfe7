"""Row-stationary passes of a CONV layer on one PE set: stimulus and golden results.

A reference schedule, simpler than the mapper's (`ommatidia.gen.mapper`): a
layer whose logical PE set fits the array (``R <= rows``, ``E <= cols``) is
computed as passes, one per (filter group of ``p``, channel group of ``q``,
image n), in that loop order
(image innermost, so consecutive passes reuse the filters: ``load_filter`` is
set only on the first image). Logical PE (i, e) of the set does filter row i
on padded ifmap row ``e*U + i`` and produces ofmap row e; psums go up the
columns and leave the top row through the GON. Channel groups after the first
take the psums of the previous group back through the psum GIN
(``accumulate``). The packet orders are those `ommatidia.hw.array` requires
(filters row by row, ifmaps column-interleaved, psums output-interleaved), with
the tags of `ommatidia.gen.multicast.plan_for`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ommatidia.gen.config import ArrayConfig
from ommatidia.gen.multicast import PESet, plan_for

from ommatidia.gen.layer import ConvLayer

from .golden import conv2d_psums

__all__ = ["RSPass", "RSSchedule", "layer_gated_macs", "random_values", "model_data"]


def random_values(rng: np.random.Generator, bits: int, shape, zero_fraction: float = 0.0,
                  extreme: bool = False) -> np.ndarray:
    """Random signed ``bits``-bit integers, a ``zero_fraction`` of them zero; ``extreme``
    draws only from the ends of the range (-2**(bits-1), +1, and 2**(bits-1) - 1, -1)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if extreme:
        v = rng.choice(np.array([lo, lo + 1, hi - 1, hi]), size=shape)
    else:
        v = rng.integers(lo, hi + 1, size=shape)
    return np.where(rng.random(shape) < zero_fraction, 0, v).astype(np.int64)


def model_data(cfg, layer: ConvLayer, zeros: float, seed: int) -> tuple:
    """The random ``(ifmap, weights)`` a layer is modelled on by ``ommatidia map`` and
    ``ommatidia sweep``: at most 8-bit values, a ``zeros`` share of zero activations
    (what the RLC sizes and the gating depend on), from ``seed``."""
    rng = np.random.default_rng(seed)
    x = random_values(rng, min(8, cfg.pe.act_bits), (layer.N, layer.C, layer.H, layer.W), zeros)
    w = random_values(rng, min(8, cfg.pe.weight_bits), (layer.M, layer.C, layer.R, layer.S))
    return x, w


def layer_gated_macs(layer: ConvLayer, ifmap) -> int:
    """MACs whose activation is zero (padding included): what zero gating skips."""
    x = np.pad(np.asarray(ifmap), ((0, 0), (0, 0), (layer.P, layer.P), (layer.P, layer.P)))
    zeros = 0
    for e in range(layer.E):
        for f in range(layer.F):
            window = x[:, :, e * layer.U:e * layer.U + layer.R, f * layer.U:f * layer.U + layer.S]
            zeros += int(np.count_nonzero(window == 0))
    return zeros * layer.M


@dataclass(frozen=True)
class RSPass:
    """One pass: image ``n``, filters ``m0 .. m0+p-1``, channels ``c0 .. c0+q-1``.

    ``previous`` is the index of the pass whose psums this one accumulates
    (same image and filters, previous channel group), or None.
    """

    index: int
    n: int
    m0: int
    p: int
    c0: int
    q: int
    run: object
    previous: int | None


class RSSchedule:
    """The passes of ``layer`` on one PE set at ``origin``, with their packets and golden psums.

    Parameters
    ----------
    cfg : ArrayConfig
    layer : ConvLayer
    ifmap : (N, C, H, W) integers
    weights : (M, C, R, S) integers
    p, q : int
        Filters and channels per pass (the last group may be smaller);
        `ommatidia.hw.pe.PERun.check` validates them.
    origin : (row, column)
        Physical PE of logical PE (0, 0).
    """

    def __init__(self, cfg: ArrayConfig, layer: ConvLayer, ifmap, weights, *, p: int, q: int,
                 origin: tuple[int, int] = (0, 0)):
        from ommatidia.hw.pe import PERun
        self.cfg, self.layer = cfg, layer
        self.ifmap = np.asarray(ifmap, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.int64)
        if self.ifmap.shape != (layer.N, layer.C, layer.H, layer.W):
            raise ValueError(f"ifmap shape {self.ifmap.shape} does not match {layer}")
        if self.weights.shape != (layer.M, layer.C, layer.R, layer.S):
            raise ValueError(f"weights shape {self.weights.shape} does not match {layer}")
        if layer.R > cfg.rows - origin[0] or layer.E > cfg.cols - origin[1]:
            raise ValueError(f"the {layer.R}x{layer.E} PE set at {origin} does not fit the "
                             f"{cfg.rows}x{cfg.cols} array")
        P = layer.P
        self.padded = np.pad(self.ifmap, ((0, 0), (0, 0), (P, P), (P, P)))
        self.width = layer.W + 2 * P
        self.pe_set = PESet(layer.R, layer.E, origin, stride=layer.U)
        self.plan = plan_for(cfg, [self.pe_set])
        self.passes = []
        for m0 in range(0, layer.M, p):
            for c0 in range(0, layer.C, q):
                for n in range(layer.N):
                    pp, qq = min(p, layer.M - m0), min(q, layer.C - c0)
                    run = PERun(S=layer.S, W=self.width, U=layer.U, p=pp, q=qq,
                                load_filter=n == 0, accumulate=c0 > 0)
                    run.check(cfg.pe)
                    previous = None
                    if c0 > 0:
                        previous = next(x.index for x in self.passes
                                        if (x.n, x.m0, x.c0) == (n, m0, c0 - q))
                    self.passes.append(RSPass(len(self.passes), n, m0, pp, c0, qq, run, previous))

    def pes(self) -> list:
        """Physical PEs of the set."""
        return [self.pe_set.pe(i, e) for i in range(self.layer.R) for e in range(self.layer.E)]

    def _grid(self, bits) -> int:
        return sum(int(bool(bits[r][c])) << (r * self.cfg.cols + c)
                   for r in range(self.cfg.rows) for c in range(self.cfg.cols))

    def config(self) -> dict:
        """Values of the `PEArray` configuration inputs, as integers."""
        on = [[0] * self.cfg.cols for _ in range(self.cfg.rows)]
        for r, c in self.pes():
            on[r][c] = 1
        values = {"up": self._grid(self.plan.up), "enable": self._grid(on)}
        for kind in ("filter", "ifmap", "psum"):
            row, col = self.plan.gin(kind).packed()
            values[f"{kind}_row_id"], values[f"{kind}_col_id"] = row, col
        return values

    def filter_packets(self, ps: RSPass) -> list[tuple[int, int, int]]:
        """(data, row tag, col tag) of the filter GIN: row by row, each tap-major (s, c, k)."""
        if not ps.run.load_filter:
            return []
        tags = self.plan.filter.tags
        w = self.weights[ps.m0:ps.m0 + ps.p, ps.c0:ps.c0 + ps.q]
        out = []
        for i in range(self.layer.R):
            values = w[:, :, i, :].transpose(2, 1, 0).reshape(-1)
            for rt, ct in tags[("filter", 0, i)]:
                out += [(int(v), rt, ct) for v in values]
        return out

    def ifmap_rows(self) -> list[int]:
        """Padded ifmap rows the set reads."""
        return sorted({self.pe_set.ifmap_row(i, e) for i in range(self.layer.R)
                       for e in range(self.layer.E)})

    def ifmap_packets(self, ps: RSPass) -> list[tuple[int, int, int]]:
        """Ifmap GIN packets, column-interleaved: for x, for row h, for tag, for channel c."""
        tags = self.plan.ifmap.tags
        x = self.padded[ps.n, ps.c0:ps.c0 + ps.q]
        rows = self.ifmap_rows()
        return [(int(x[c, h, col]), rt, ct) for col in range(self.width) for h in rows
                for rt, ct in tags[("ifmap", 0, h)] for c in range(ps.q)]

    def psum_packets(self, ps: RSPass, psums) -> list[tuple[int, int, int]]:
        """Psum GIN packets from ``psums`` (N, M, E, F), output-interleaved: for f, for e, for k."""
        if not ps.run.accumulate:
            return []
        tags = self.plan.psum.tags
        return [(int(psums[ps.n, ps.m0 + k, e, f]), rt, ct)
                for f in range(self.layer.F) for e in range(self.layer.E)
                for rt, ct in tags[("psum", 0, e)] for k in range(ps.p)]

    def gon_count(self, ps: RSPass) -> int:
        """Psums a pass sends to the GON."""
        return self.layer.E * self.layer.F * ps.p

    def outputs(self) -> dict:
        """GON source PE -> ofmap row e."""
        return {pe: row for pe, (_, row) in self.plan.outputs.items()}

    def golden(self, ps: RSPass) -> np.ndarray:
        """Psums (p, E, F) after pass ``ps``: filters of the pass over channels ``0 .. c0+q-1``."""
        top = ps.c0 + ps.q
        out = conv2d_psums(self.ifmap[ps.n:ps.n + 1, :top],
                           self.weights[ps.m0:ps.m0 + ps.p, :top], stride=self.layer.U,
                           padding=self.layer.P, psum_bits=self.cfg.pe.psum_bits)
        return out[0]

    def scatter(self, ps: RSPass, items, psums) -> np.ndarray:
        """Put the GON ``items`` (data, row, col) of ``ps`` into ``psums`` (N, M, E, F).

        Each output PE sends ``p*F`` psums in the order (f, k). Returns the
        pass's psums (p, E, F); raises AssertionError on a psum from a PE that
        is not an output or a wrong count.
        """
        outputs = self.outputs()
        per_pe = {pe: [] for pe in outputs}
        for value, r, c in items:
            assert (r, c) in per_pe, f"pass {ps.index}: psum {value} from PE ({r}, {c}), " \
                                     f"not an output PE {sorted(outputs)}"
            per_pe[r, c].append(value)
        got = np.zeros((ps.p, self.layer.E, self.layer.F), dtype=np.int64)
        for pe, values in per_pe.items():
            assert len(values) == ps.p * self.layer.F, \
                f"pass {ps.index}: PE {pe} sent {len(values)} psums, not {ps.p * self.layer.F}"
            got[:, outputs[pe], :] = np.array(values, dtype=np.int64).reshape(
                self.layer.F, ps.p).T
        psums[ps.n, ps.m0:ps.m0 + ps.p] = got
        return got
