"""The row-stationary mapper: a CONV or FC layer as PE sets, passes and GLB rounds.

Eyeriss's mapper (Sze et al., survey section V; docs/architecture.md) starts
from the logical PE set of a layer, ``R`` filter rows by ``E`` ofmap rows,
and fits it to the physical array:

- *folding*: a set wider than the array is cut into strips of ofmap rows
  (``E = 55`` on 14 columns: 14 + 14 + 14 + 13); a set taller than the array
  into segments of filter rows (``R = 27`` on 14 rows: 14 + 13) whose psums
  add up in the GLB like those of channel groups;
- *replication*: pieces shorter than the array are stacked in one column on
  other channel groups, the psums flowing up through all of them (``3 x 13``
  four times on 12 rows); strips narrower than the array sit side by side on
  other filter groups;
- ``p`` filters and ``q`` channels per PE within the spads;
- *rounds*: when the layer does not fit the GLB, the passes run in rounds of
  images, strips and filter groups, each loading its ifmaps and filters from
  DRAM (channel by channel group when even one round's inputs do not fit, the
  psums staying in the GLB) and writing its ofmap out.

Among the mappings that fit (spads, GLB, tag tables, multicast IDs) `search`
keeps, of those within `NEAR_TIE` of the fewest cycles, the one with the fewest DRAM
words: a quick formula (`estimate`) shortlists them, a cost model it is given (`Cost`;
the compiler's is the analytical model, `ommatidia.gen.compiler.ModelCost`) times one
pass of each on the array to rank the shortlist, and times the best whole (the six
best for small layers, under `FULL_MODEL_CYCLES`; for the others the best three when
they are within `JUDGE_MARGIN` of each other), which has the last word. The mapper
builds no programs itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ommatidia.hw.engines import tag_depth
from ommatidia.hw.glb import filter_glb_words, glb_words
from ommatidia.hw.pe import PERun

from .config import ArrayConfig
from .packing import RegionWords, elements_per_word, raw_ifmap

__all__ = ["Mapping", "Piece", "Step", "Cost", "split", "groups_of", "search", "candidates",
           "estimate", "check_fits"]


def split(total: int, most: int) -> tuple[tuple[int, int], ...]:
    """``total`` cut into the fewest near-equal parts of at most ``most``: (start, size)."""
    parts = -(-total // most)
    size, extra = divmod(total, parts)
    out, start = [], 0
    for k in range(parts):
        n = size + (k < extra)
        out.append((start, n))
        start += n
    return tuple(out)


@dataclass(frozen=True)
class Piece:
    """A part of a logical PE set in one pass: the channel group starting at channel
    ``cg``, filter rows ``r0 .. r0+rows-1``."""

    cg: int
    r0: int
    rows: int


@dataclass(frozen=True)
class Step:
    """The pieces stacked in each column block of one pass, top (GON side) first."""

    pieces: tuple


@dataclass(frozen=True)
class Mapping:
    """A mapping of a layer on an array.

    ``strips`` and ``segments`` are the (start, size) folds of the ofmap rows
    and filter rows; ``stack`` pieces share a column (replication on channels),
    ``blocks`` column blocks sit side by side (replication on filters); rounds
    hold ``n_chunk`` images and ``m_chunk`` filter groups, loading ``c_chunk``
    channel groups at a time. ``filters_down``: the filter sender serves the PE rows
    from the top (GON side) down, not from the bottom row up (`search` times both
    orders for PEs that wait for all their filters, `PEConfig.stream_filters` off).
    """

    p: int
    q: int
    strips: tuple
    segments: tuple
    stack: int
    blocks: int
    n_chunk: int
    m_chunk: int
    c_chunk: int
    filters_down: bool = False

    def steps(self, layer) -> list[list[Step]]:
        """The steps of each channel chunk: its (channel group, segment) pieces, stacked
        ``stack`` high as long as they fit the rows and share ``q``."""
        groups = groups_of(layer.C, self.q)
        size = dict(groups)
        out = []
        for g0 in range(0, len(groups), self.c_chunk):
            units = [Piece(c0, r0, rows) for c0, _ in groups[g0:g0 + self.c_chunk]
                     for r0, rows in self.segments]
            steps, cur = [], []
            for u in units:
                if cur and (len(cur) == self.stack or size[u.cg] != size[cur[0].cg]):
                    steps.append(Step(tuple(cur)))
                    cur = []
                cur.append(u)
            steps.append(Step(tuple(cur)))
            out.append(steps)
        return out

    def describe(self, layer) -> dict:
        steps = self.steps(layer)
        return {
            "pe_set": [layer.R, layer.E],
            "strips": [s for _, s in self.strips], "segments": [s for _, s in self.segments],
            "replication": {"channels": self.stack, "filters": self.blocks},
            "pe_set_on_array": [sum(s for _, s in self.segments[:1]) * self.stack,
                                self.strips[0][1] * self.blocks],
            "p": self.p, "q": self.q,
            "rounds": {"images": self.n_chunk, "filter_groups": self.m_chunk,
                       "channel_groups_per_load": self.c_chunk},
            "steps_per_filter_group": sum(len(s) for s in steps),
            "filter_rows": "top down" if self.filters_down else "bottom up",
        }


def _steps(C: int, q: int, segments: int, stack: int, c_chunk: int) -> int:
    """Steps per filter group of `Mapping.steps`, counted without building them."""
    groups = -(-C // q)
    short = C % q != 0

    def chunk(k, with_short):
        full = (k - with_short) * segments
        return -(-full // stack) + (-(-segments // stack) if with_short else 0)
    whole, rest = divmod(groups, c_chunk)
    if rest:
        return whole * chunk(c_chunk, False) + chunk(rest, short)
    return (whole - 1) * chunk(c_chunk, False) + chunk(c_chunk, short)


def groups_of(total: int, size: int) -> list[tuple[int, int]]:
    """``total`` cut into groups of ``size`` (the last may be short): (start, size)."""
    return [(k, min(size, total - k)) for k in range(0, total, size)]


def _pq_options(cfg: ArrayConfig, layer) -> list[tuple[int, int]]:
    width = layer.W + 2 * layer.P
    out = []
    for p in range(1, min(layer.M, cfg.pe.psum_spad_depth) + 1):
        for q in range(1, layer.C + 1):
            try:
                PERun(S=layer.S, W=width, U=layer.U, p=p, q=q).check(cfg.pe)
            except ValueError:
                break  # every limit only tightens as q grows: no larger q fits either
            out.append((p, q))
    return out


def _glb_need(cfg, layer, m: Mapping) -> int:
    """GLB words of the largest round of ``m`` (of its filters those not staged through the
    filter GLB, `_staged`)."""
    size = RegionWords(cfg, layer)
    es = max(s for _, s in m.strips)
    psums = m.n_chunk * m.m_chunk * size.psum(es, m.p)
    filters = m.m_chunk * m.c_chunk * size.filter(m.p, m.q)
    ifmaps = m.n_chunk * m.c_chunk * size.ifmap(es, m.q)
    per_pass = m.blocks * m.stack
    staged = int(_staged(cfg, len(m.segments), m.blocks, m.stack, size.filter(m.p, m.q)))
    return psums + ifmaps + -(-filters * (per_pass - staged) // per_pass)


def _staged(cfg, segments, blocks, stack, filter_w):
    """How many of a pass's filter regions (``blocks`` by ``stack`` of ``filter_w`` words)
    go through half the filter GLB, loaded in the background during the pass before
    (`ommatidia.gen.rounds._stage_filters`: as many as fit a half; none where R is split
    into segments); the others are loaded into the GLB in the foreground."""
    fit = filter_glb_words(cfg) // 2 // np.maximum(filter_w, 1)
    return np.where(segments == 1, np.minimum(blocks * stack, fit), 0)


def _fits(cfg, layer, m: Mapping) -> str | None:
    """Why ``m``'s largest round does not fit the GLB, or None."""
    need = _glb_need(cfg, layer, m)
    return f"the GLB needs {need} words, it has {glb_words(cfg)}" \
        if need > glb_words(cfg) else None


def estimate(cfg: ArrayConfig, layer, m: Mapping, pass_cycles=None, *,
             ifmap_coding: str = "rlc") -> tuple[int, int]:
    """Rough (cycles, DRAM words) of a mapping, to rank candidates (`_costs`): per pass
    the slowest of PE compute, ifmap and psum delivery (ifmap packets of
    `NoCConfig.ifmap_gin_values` activations) and the filter load (packets of
    `NoCConfig.filter_gin_values` weights; beside the MACs with `PEConfig.stream_filters`,
    before them otherwise), or ``pass_cycles``, the
    model's time of a pass with its filter load from the cost model (a pass without, at
    batch > 1, scaled as the quick formula scales it); DMA one ifmap RLC pair (a value,
    on all-nonzero data), or one raw word with ``ifmap_coding`` ``"raw"``, and one raw
    filter word a cycle."""
    fields = _shape_fields(cfg, layer, m.p, m.q, m.strips, m.segments, m.stack, m.blocks)
    arrays = {k: np.array([v], dtype=np.int64) for k, v in fields.items()}
    if pass_cycles is not None:
        arrays["rest"] = pass_cycles * arrays["rest"] // arrays["first"]
        arrays["first"] = np.full_like(arrays["first"], pass_cycles)
    chunks = (np.array([x]) for x in (m.n_chunk, m.m_chunk, m.c_chunk))
    cycles, dram = _costs(cfg, layer, _summed(cfg, layer, arrays), *chunks,
                          raw=raw_ifmap(cfg, ifmap_coding))
    return int(cycles[0]), int(dram[0])


PASS_SETS = (16, 16)
"""Cycles and program words of the ``SET`` commands of a pass beside its tags: the
filter, ifmap and psum descriptors (3 operand words each), the GON descriptor and the
run (1 each), a command word and its operands one a cycle from the program prefetch."""

DMA_COMMAND = 8
"""Cycles of a ``DMA_IN`` beside its values: its ``SET dma_in`` (2 operand words, 3
cycles) and 5 of its own (AlexNet CONV3 on `eyeriss`: 8.05 a command)."""

DMA_OUT_COMMAND = 10
"""Cycles of a ``DMA_OUT`` beside its psums, `ArrayConfig.dma_out_values` a cycle: its
``SET dma_out`` (3) and 7 of its own."""


def _shape_fields(cfg: ArrayConfig, layer, p, q, strips, segments, stack, blocks):
    """What `_costs` needs of a PE-set shape: per strip size (at most two, widest first)
    its count, width ``e``, ifmap rows, the quick formula's pass cycles with and without
    the filter load and the pass's tags; the GLB words of one region of each kind."""
    region = RegionWords(cfg, layer)
    U, R, S, F = layer.U, layer.R, layer.S, layer.F
    width = layer.W + 2 * layer.P
    seg_rows = max(s for _, s in segments)
    slack = cfg.pe.ifmap_spad_depth // q >= S + U
    sizes = sorted({s for _, s in strips}, reverse=True)
    kinds = [(sum(1 for _, s in strips if s == e), e) for e in sizes] + [(0, 1)] * (2 - len(sizes))
    cnt, es, hs, first, rest, tags = ([] for _ in range(6))
    group = cfg.pe.lanes if p % cfg.pe.lanes == 0 else 1
    for count, e in kinds:
        compute = F * ((S * q - 1) * p // group + p)
        ifmap = width * ((e - 1) * U + seg_rows) * stack * -(-q // cfg.noc.ifmap_gin_values)
        psum = F * e * blocks * p
        filt = -(-seg_rows * stack * blocks * S * p * q // cfg.noc.filter_gin_values)
        busy = max(compute, ifmap, psum) if slack else compute + ifmap
        cnt.append(count)
        es.append(e)
        hs.append((e - 1) * U + R)
        first.append(max(busy, filt) + 40 if cfg.pe.stream_filters else busy + 40 + filt)
        rest.append(busy + 40)
        tags.append(stack * ((e - 1) * U + seg_rows) + e * blocks)
    fields = {"p": p, "q": q, "stack": stack, "blocks": blocks, "segments": len(segments),
              "mgroups": -(-layer.M // p), "cnt": cnt, "e": es, "hs": hs, "first": first,
              "rest": rest, "tags": tags, "ftags": seg_rows * stack * blocks,
              "psum_w": region.psum(sizes[0], p), "filter_w": region.filter(p, q),
              "ifmap_w": region.ifmap(sizes[0], q)}
    return fields


def _summed(cfg, layer, f: dict) -> dict:
    """``f`` (`_shape_fields` as arrays, one row per shape) with its per-strip-size fields
    summed over the strips: what `_costs` needs of a shape as one number each (``beside``:
    the cycles of a region's ``DMA_OUT`` a pass hides, `ArrayConfig.dma_out_values`
    psums a cycle)."""
    cnt = f["cnt"]
    out = {k: f[k] for k in ("p", "q", "stack", "blocks", "segments", "mgroups", "ftags",
                             "filter_w")}
    out["nstrips"] = cnt.sum(axis=1)
    for k in ("first", "rest", "tags", "hs"):
        out[k] = (cnt * f[k]).sum(axis=1)
    drain = -(-f["e"] * layer.F * f["p"][:, None] // cfg.dma_out_values)
    out["beside"] = (cnt * np.minimum(drain, f["rest"])).sum(axis=1)
    return out


def _costs(cfg: ArrayConfig, layer, f: dict, n, m, c, raw: bool = False):
    """(cycles, DRAM words) of the mappings of shapes ``f`` (`_summed`, as arrays
    with one row per mapping) and round sizes ``n``, ``m``, ``c``: the passes (each filter
    group's steps, its filter groups side by side where their psum regions allow, the
    first image of a round loading the filters), their ``SET``, ``TAG`` and ``BIAS``
    commands (a ``TAG`` and a ``BIAS`` one cycle each from the program prefetch), the DMA
    of every round (ifmap RLC pairs into the GLB one a cycle, a pair per value on
    all-nonzero data, or with ``raw`` packed ifmap words one a cycle; raw filter words one
    a cycle, none where they are staged through the filter GLB behind the passes, the
    ofmap psums `ArrayConfig.dma_out_values` a cycle, with `ArrayConfig.glb_bank_reads`
    those of all but two regions a round beside a pass each) and the program words, on
    all-nonzero data."""
    per = elements_per_word(cfg)
    N, C, M, E, F = layer.N, layer.C, layer.M, layer.E, layer.F
    width = layer.W + 2 * layer.P
    q, blocks, mgroups = f["q"], f["blocks"], f["mgroups"]
    short = (M % f["p"] != 0).astype(np.int64)
    cgroups = -(-C // q)
    steps = _steps_of(C, q, f["segments"], f["stack"], c)
    nrounds, mrounds = -(-N // n), -(-mgroups // m)
    last = mgroups - (mrounds - 1) * m
    joined = (mrounds - 1) * -(-m // blocks) + -(-last // blocks) \
        + short * (-(-(last - 1) // blocks) + 1 - -(-last // blocks))
    bgroups = np.where(blocks > 1, joined, mgroups)
    nstrips = f["nstrips"]
    runs = bgroups * steps
    loaded, unloaded = runs * nrounds, runs * (N - nrounds)
    pass_cycles = loaded * f["first"] + unloaded * f["rest"]
    tags = loaded * (f["tags"] + f["ftags"] * nstrips) + unloaded * f["tags"]
    passes = runs * nstrips * N
    sets_cycles, sets_words = PASS_SETS
    regions_f = nstrips * nrounds * mgroups * cgroups
    regions_i = mrounds * N * cgroups * nstrips
    ifmap_values = mrounds * N * C * width * f["hs"]
    filter_words = nstrips * nrounds * mgroups * cgroups * f["filter_w"]
    per_pass = blocks * f["stack"]
    shown = per_pass - _staged(cfg, f["segments"], blocks, f["stack"], f["filter_w"])
    psums = N * M * E * F
    outs = N * mgroups * nstrips
    raw = raw or not cfg.rlc_codec
    ifmap_words = ifmap_values // (per["ifmap"] if raw else cfg.rlc.pairs_per_word) + regions_i
    out_words = psums // (cfg.rlc.pairs_per_word if cfg.rlc_codec else per["ifmap"]) + outs
    ifmap_cycles = ifmap_words if raw else ifmap_values
    cycles = pass_cycles + tags + sets_cycles * passes \
        + ifmap_cycles + filter_words * shown // per_pass \
        + DMA_COMMAND * (regions_f * shown // per_pass + regions_i) \
        + -(-psums // cfg.dma_out_values) + DMA_OUT_COMMAND * outs + N * M * nstrips
    if cfg.glb_bank_reads:  # all but two regions a round drain beside a pass each
        beside = np.maximum(np.minimum(n, N) * np.minimum(m, mgroups) - 2, 0)
        cycles = cycles - f["beside"] * beside * nrounds * mrounds
    program = tags + (sets_words + 1) * passes + 4 * (regions_f + regions_i + outs) \
        + N * M * nstrips
    return cycles, filter_words + ifmap_words + out_words + program


def candidates(cfg: ArrayConfig, layer, *, ifmap_coding: str = "rlc"):
    """Every mapping whose spads, largest GLB round and tag tables (counted one tag per
    delivery) fit, best estimate first (the ifmaps stored as ``ifmap_coding`` says)."""
    ranked = _ranked(cfg, layer, raw=raw_ifmap(cfg, ifmap_coding))
    return [ranked.mapping(k) for k in ranked.order()]


def _ranked(cfg: ArrayConfig, layer, only_p: int | None = None,
            only_q: int | None = None, raw: bool = False) -> _Ranked:
    """`candidates` (those with ``p`` = ``only_p`` and ``q`` = ``only_q`` if given) in the
    same order (`estimate`, then larger ``p`` and ``q``, then enumeration order), worked
    out on arrays: one row per PE-set shape and round size.

    Filter groups sit side by side only where every strip's psum region is whole GLB
    words (`ommatidia.gen.program` joins them only then)."""
    rows, cols, depth = cfg.rows, cfg.cols, tag_depth(cfg)
    per = elements_per_word(cfg)
    N, C, M, U, F = layer.N, layer.C, layer.M, layer.U, layer.F
    segments = split(layer.R, rows)
    seg_rows = max(s for _, s in segments)
    shapes, fields, chunk_arrays, chunks_of = [], [], [], {}
    foldings = {split(layer.E, w) for w in range(1, min(layer.E, cols) + 1)}
    pq = [(p, q) for p, q in _pq_options(cfg, layer)
          if (only_p is None or p == only_p) and (only_q is None or q == only_q)]
    for strips in foldings:
        es = max(s for _, s in strips)
        piece_rows = (es - 1) * U + seg_rows
        for p, q in pq:
            cgroups, mgroups = -(-C // q), -(-M // p)
            most = min(cgroups * len(segments), rows // seg_rows, depth // piece_rows)
            for stack in sorted({1, most}) if most else ():
                widest = min(mgroups, cols // es, depth // es, depth // (stack * seg_rows))
                if any(s * F * p % per["psum"] for _, s in strips):
                    widest = 1
                for blocks in sorted({1, widest}):
                    key = (mgroups, cgroups, blocks, stack // np.gcd(stack, len(segments)))
                    chunks = chunks_of.get(key)
                    if chunks is None:
                        chunks = chunks_of[key] = _chunks(N, mgroups, cgroups, *key[2:])
                    shapes.append((p, q, strips, segments, stack, blocks))
                    fields.append(_shape_fields(cfg, layer, p, q, strips, segments, stack,
                                                blocks))
                    chunk_arrays.append(chunks)
    if not shapes:
        empty = np.zeros(0, dtype=np.int64)
        return _Ranked([], empty, np.zeros((0, 3), dtype=np.int64), empty, (empty,) * 4)
    counts = np.array([len(ch) for ch in chunk_arrays])
    shape = np.repeat(np.arange(len(shapes)), counts)
    f = {k: np.array([x[k] for x in fields], dtype=np.int64) for k in fields[0]}
    n, m, c = np.concatenate(chunk_arrays).T
    per_pass = (f["blocks"] * f["stack"])[shape]
    shown = per_pass - _staged(cfg, f["segments"], f["blocks"], f["stack"], f["filter_w"])[shape]
    need = n * m * f["psum_w"][shape] + c * n * f["ifmap_w"][shape] \
        + -(-c * m * f["filter_w"][shape] * shown // per_pass)
    index = np.flatnonzero(need <= glb_words(cfg))
    n, m, c, shape = n[index], m[index], c[index], shape[index]
    f = {k: v[shape] for k, v in _summed(cfg, layer, f).items()}
    cycles, dram = _costs(cfg, layer, f, n, m, c, raw)
    return _Ranked(shapes, shape, np.stack([n, m, c], axis=1), cycles,
                   (-f["q"], -f["p"], dram, cycles))


@dataclass(frozen=True)
class _Ranked:
    """`candidates` in enumeration order (rows of the same PE-set shape together), as the
    PE-set shape (`Mapping` fields ``p`` .. ``blocks``) of each, its round sizes, its
    estimated cycles and its rank keys (`np.lexsort`'s, the last first), making
    `Mapping` objects only of those asked for and sorting only what is asked for."""

    shapes: list
    shape: np.ndarray
    chunks: np.ndarray
    cycles: np.ndarray
    keys: tuple

    def __len__(self) -> int:
        return len(self.shape)

    def mapping(self, row: int) -> Mapping:
        return Mapping(*self.shapes[self.shape[row]], *(int(x) for x in self.chunks[row]))

    def _sorted(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (ascending) best first: ties in enumeration order (lexsort is stable)."""
        return rows[np.lexsort(tuple(k[rows] for k in self.keys))]

    def order(self, most: int | None = None) -> list[int]:
        """The rows best first (the best ``most``): all rows within the ``most``-th fewest
        cycles, cycles being the first key, sorted."""
        rows = np.arange(len(self))
        if most is not None and most < len(rows):
            rows = np.flatnonzero(self.cycles <= np.partition(self.cycles, most - 1)[most - 1])
        return self._sorted(rows)[:most].tolist()

    def firsts(self) -> list[int]:
        """The best row of each PE-set shape, best first: of its rows (``p`` and ``q``
        alike) the first with its fewest cycles and, of those, its fewest DRAM words."""
        if not len(self):
            return []
        cycles, dram = self.keys[3], self.keys[2]
        starts = np.flatnonzero(np.diff(self.shape, prepend=-1))
        group = np.cumsum(np.diff(self.shape, prepend=-1) != 0) - 1
        fewest = cycles == np.minimum.reduceat(cycles, starts)[group]
        least = np.minimum.reduceat(np.where(fewest, dram, np.iinfo(np.int64).max), starts)
        rows = np.flatnonzero(fewest & (dram == least[group]))
        rows = rows[np.diff(group[rows], prepend=-1) != 0]
        return self._sorted(rows).tolist()


def _steps_of(C: int, q, segments, stack, c_chunk):
    """`_steps` on arrays of ``q``, ``segments``, ``stack`` and ``c_chunk``."""
    groups = -(-C // q)
    short = (C % q != 0).astype(np.int64)

    def chunk(k, with_short):
        return -(-((k - with_short) * segments) // stack) \
            + np.where(with_short != 0, -(-segments // stack), 0)
    whole, rest = np.divmod(groups, c_chunk)
    zero = np.zeros_like(short)
    return np.where(rest != 0, whole * chunk(c_chunk, zero) + chunk(rest, short),
                    (whole - 1) * chunk(c_chunk, zero) + chunk(c_chunk, short))


@functools.lru_cache(maxsize=4096)
def _sizes(total: int, multiple: int = 1) -> tuple[int, ...]:
    """Round sizes worth trying for ``total`` groups, largest first: for each number of
    rounds the even size (``ceil(total / rounds)``; a larger one takes as many rounds and
    more GLB) and the next multiple of ``multiple`` (whole stacks or blocks), at most
    ``total``."""
    even, k = set(), 1
    while k <= total:
        size = -(-total // k)
        even.add(size)
        k = -(-total // (size - 1)) if size > 1 else total + 1
    out = even | {min(total, -(-s // multiple) * multiple) for s in even}
    return tuple(sorted(out, reverse=True))


def _chunks(n: int, mgroups: int, cgroups: int, blocks: int = 1,
            stack: int = 1) -> np.ndarray:
    """Round sizes to try, largest first: images, filter groups (whole column blocks, or
    all of them) and channel groups per load (whole stacks of pieces) in every count of
    rounds; one row each, in the order of `itertools.product`."""
    ms = [s for s in _sizes(mgroups, blocks) if s % blocks == 0 or s == mgroups]
    axes = [np.array(x, dtype=np.int64) for x in (_sizes(n), ms, _sizes(cgroups, stack))]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


class Cost(Protocol):
    """What the search asks of a cost model (`ommatidia.gen.compiler.ModelCost`)."""

    def pass_cycles(self, m: Mapping) -> int:
        """Cycles of a ``PASS`` of ``m`` (filters loaded, adding to psums); ValueError when
        ``m`` does not compile."""

    def pass_floor(self, m: Mapping) -> int:
        """(Optional) cycles ``pass_cycles(m)`` is never below, found without timing."""

    def whole(self, m: Mapping) -> tuple[int, int]:
        """(cycles, DRAM words) of the whole layer under ``m``; inf when it does not compile."""

    def rounds(self, m: Mapping) -> list:
        """The compiled rounds of ``m``; ValueError when ``m`` does not compile."""


def search(cfg: ArrayConfig, layer, cost: Cost, *, p: int | None = None,
           q: int | None = None, ifmap_coding: str = "rlc"):
    """The best `Mapping` of ``layer`` on ``cfg`` that compiles, ranked by ``cost``, and
    its compiled rounds; the estimates count the ifmaps stored as ``ifmap_coding`` says
    (`ommatidia.gen.packing.IFMAP_CODINGS`), as ``cost`` must.

    The candidates are ranked by `estimate`; the best few PE-set shapes are timed by
    ``cost.pass_cycles`` (with PEs that wait for all their filters, in both filter row
    orders, `Mapping.filters_down`), and the best of them (for small layers the six best
    of each order) whole by ``cost.whole``, which has the last word: of those within
    `NEAR_TIE` of the fewest cycles, the fewest DRAM words (`near_tie_order`).
    Raises ValueError naming the limit when no mapping fits.
    """
    raw = raw_ifmap(cfg, ifmap_coding)
    _check_widths(cfg, layer)
    width = layer.W + 2 * layer.P
    if p is not None or q is not None:
        if p is not None and not 1 <= p <= layer.M:
            raise ValueError(f"p = {p} filters per pass must be in 1..M = {layer.M}")
        if q is not None and not 1 <= q <= layer.C:
            raise ValueError(f"q = {q} channels per pass must be in 1..C = {layer.C}")
        PERun(S=layer.S, W=width, U=layer.U, p=p or 1, q=q or 1).check(cfg.pe)
    if not _pq_options(cfg, layer):
        PERun(S=layer.S, W=width, U=layer.U, p=1, q=1).check(cfg.pe)
    options = _ranked(cfg, layer, p, q, raw)
    if not len(options):
        raise ValueError(f"no mapping of {layer} fits: with p = {p or 1}, q = {q or 1} and one "
                         f"image, filter group and channel group per round "
                         f"{_fits(cfg, layer, _smallest(cfg, layer, p or 1, q or 1))}")
    probes = _Probes(cfg, layer, cost, _shortlist(options), ifmap_coding)
    ranked = probes.ranked()
    judged = 0
    if ranked:
        best = ranked[0][0][0]
        if best < FULL_MODEL_CYCLES:    # the six best of each filter row order
            firsts, seen = [], {False: 0, True: 0}
            for k, (_, m) in enumerate(ranked):
                if seen[m.filters_down] < 6:
                    firsts.append(k)
                    seen[m.filters_down] += 1
            chosen = set(firsts)
            ranked = [ranked[k] for k in firsts] + \
                [r for k, r in enumerate(ranked) if k not in chosen]
            judged = len(firsts)
        else:
            near = sum(1 for (c, _), _ in ranked[:JUDGED] if c <= best * (1 + JUDGE_MARGIN))
            judged = near if near > 1 else 0
        ranked = near_tie_order([(cost.whole(m), m) for _, m in ranked[:judged]]) \
            + ranked[judged:]
    error, k = None, 0
    while True:
        if k == 1 and probes.skipped:  # the best failed: every shape ranked, as if all probed
            ranked = ranked[:judged] + probes.ranked(everything=True)[judged:]
        tail = [(None, options.mapping(i)) for i in options.order(64)]
        if k == len(ranked) + len(tail):
            break
        m = (ranked + tail)[k][1]
        k += 1
        try:
            return m, cost.rounds(m)
        except ValueError as exc:
            error = error or exc
    raise ValueError(f"no mapping of {layer} compiles; the best one failed with: "
                     f"{probes.error or error}")


class _Probes:
    """The shortlisted shapes' estimates with the cost model's pass cycles, best first;
    a shape whose estimate with its `Cost.pass_floor` (cycles no pass of it can beat)
    is beyond `JUDGE_MARGIN` of the best estimate so far, when at least
    `FULL_MODEL_CYCLES`, is not probed (AlexNet CONV1 on `eyeriss`: 2 of 8): it can be
    neither the best nor a near tie, so `search` picks as it would have (the skipped
    ones are probed, and ranked in their place, if the best does not compile)."""

    def __init__(self, cfg, layer, cost, shortlist: list, ifmap_coding: str):
        self.cfg, self.layer, self.cost, self.coding = cfg, layer, cost, ifmap_coding
        self.got, self.errors = {}, {}
        floor = getattr(cost, "pass_floor", None)
        order = list(range(len(shortlist)))
        bounds = {}
        if floor is not None:
            bounds = {i: self._estimate(m, floor(m)) for i, m in enumerate(shortlist)}
            order.sort(key=lambda i: bounds[i])
        self.skipped = []
        for i in order:
            best = min((c for c, _ in self.got.values()), default=None)
            if bounds and best is not None and best[0] >= FULL_MODEL_CYCLES \
                    and bounds[i][0] > best[0] * (1 + JUDGE_MARGIN):
                self.skipped = [(j, shortlist[j]) for j in order[order.index(i):]]
                break
            self._probe(i, shortlist[i])

    def _estimate(self, m: Mapping, pass_cycles: int) -> tuple[int, int]:
        return estimate(self.cfg, self.layer, m, pass_cycles, ifmap_coding=self.coding)

    def _probe(self, i: int, m: Mapping) -> None:
        """Time shape ``i`` (keys ``(i, 0)``) and, for PEs that wait for all their
        filters, the same with the filter rows served top down (``(i, 1)``): which row
        should start first depends on the layer (docs/performance.md, filter row order)."""
        orders = (m,) if self.cfg.pe.stream_filters else \
            (m, replace(m, filters_down=True))
        for k, mk in enumerate(orders):
            try:
                self.got[i, k] = (self._estimate(mk, self.cost.pass_cycles(mk)), mk)
            except ValueError as exc:
                self.errors[i, k] = exc

    @property
    def error(self):
        """The first probe's error in shortlist order (None if none failed)."""
        return self.errors[min(self.errors)] if self.errors else None

    def ranked(self, everything: bool = False) -> list:
        """(estimate, mapping) of the probed shapes (all of them when ``everything``),
        best first, ties in shortlist order (the estimate is too rough to call a near tie
        on cycles: `search` leaves that to the cost model's whole layers)."""
        if everything:
            for i, m in self.skipped:
                self._probe(i, m)
            self.skipped = []
        return [self.got[i] for i in sorted(self.got, key=lambda i: (self.got[i][0], i))]


NEAR_TIE = 0.02
"""Mappings within this fraction of the fewest cycles count as tied on cycles, and the
one with the fewest DRAM words (program words counted) goes first: 2 % of cycles is
about what the data and the arbiters move a layer by, while DRAM words differ by tens of
percent between such mappings (AlexNet CONV2 on `eyeriss` at batch 1, the bench's data:
8 filters a pass on 7-row strips side by side take 1.6 % fewer cycles than 16 on strips
of 14 and 13 rows, and read and write 58 % more DRAM words)."""


def near_tie_order(ranked: list) -> list:
    """``(cycles, DRAM words), mapping`` pairs best first: repeatedly, of those left within
    `NEAR_TIE` of the fewest cycles, the fewest DRAM words (then the fewest cycles, then
    the order given)."""
    left = sorted(range(len(ranked)), key=lambda i: (ranked[i][0][0], i))
    out = []
    while left:
        bound = ranked[left[0]][0][0] * (1 + NEAR_TIE)
        pick = min((i for i in left if ranked[i][0][0] <= bound),
                   key=lambda i: (ranked[i][0][1], ranked[i][0][0], i))
        left.remove(pick)
        out.append(ranked[pick])
    return out


FULL_MODEL_CYCLES = 200_000
"""Layers estimated faster than this have their six best mappings compiled and timed
whole by the cost model (DMA and round overheads, which the estimate counts from the
program's shape alone, weigh most in small layers, and those time fast)."""

JUDGED, JUDGE_MARGIN = 3, NEAR_TIE + 0.03
"""Larger layers have their best mappings (at most `JUDGED`) estimated within
`JUDGE_MARGIN` of the best timed whole by the cost model, which picks among them
(`NEAR_TIE`, and 3 % for the estimate's error: with the probes' pass cycles it is
within 1.5 % of the model on AlexNet CONV3-5, 2.5 % on CONV2 with 16 filters a pass; a
whole CONV layer takes the model 1-3 s of CPU, so only near ties are judged)."""


PLAIN_MARGIN = 1.5
"""The shortlist keeps shapes without replication estimated at most this many times the
best: the estimate overrates them against stacked ones (AlexNet CONV3 on `eyeriss`: 1.8
times the best for 16 filters and 4 channels per PE without replication, 2.2 times by
the model), and probing each takes the model a pass."""


def _shortlist(options: _Ranked, most: int = 6, per_family: int = 2) -> list:
    """The best-estimated round sizes of the ``most`` best-estimated PE-set shapes, at most
    ``per_family`` of those differing only in ``p``, and of the best two without
    replication estimated within `PLAIN_MARGIN` of the best (the estimate cannot see NoC
    contention)."""
    firsts = options.firsts()
    shapes = [options.mapping(k) for k in firsts]
    bound = PLAIN_MARGIN * options.cycles[firsts[0]]
    plain = [m for k, m in zip(firsts, shapes) if m.stack == 1 and m.blocks == 1
             and options.cycles[k] <= bound]
    out, families = [], {}
    for m in shapes:
        key = (m.q, m.strips, m.stack, m.blocks)
        if families.get(key, 0) < per_family:
            families[key] = families.get(key, 0) + 1
            out.append(m)
            if len(out) == most:
                break
    return out + [m for m in plain[:2] if m not in out]


def _check_widths(cfg: ArrayConfig, layer) -> None:
    if layer.S > cfg.pe.max_filter_width:
        raise ValueError(f"filter width S = {layer.S} exceeds the PE's max_filter_width = "
                         f"{cfg.pe.max_filter_width}")
    width = layer.W + 2 * layer.P
    if width > cfg.pe.max_ifmap_width:
        raise ValueError(f"padded ifmap width W + 2P = {width} exceeds the PE's "
                         f"max_ifmap_width = {cfg.pe.max_ifmap_width}")


def check_fits(cfg: ArrayConfig, layer) -> None:
    """Raise ValueError naming the limit unless ``layer``'s smallest mapping (one filter,
    one channel, one image per round, R and E folded onto the array) fits the PE and the
    GLB: the limits `search` starts from, without its search."""
    _check_widths(cfg, layer)
    PERun(S=layer.S, W=layer.W + 2 * layer.P, U=layer.U, p=1, q=1).check(cfg.pe)
    why = _fits(cfg, layer, _smallest(cfg, layer, 1, 1))
    if why:
        raise ValueError(f"with one filter, channel and image per round {why}")


def _smallest(cfg, layer, p: int, q: int) -> Mapping:
    return Mapping(p, q, split(layer.E, 1), split(layer.R, cfg.rows), 1, 1, 1, 1, 1)
