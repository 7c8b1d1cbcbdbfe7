"""Rounds: a mapping (`ommatidia.gen.mapper`) laid out on the array and the GLB.

`build_rounds` splits a layer into rounds (images x ofmap strip x filter groups held in
the GLB at once), each round into channel chunks whose filters and ifmap rows a
``DMA_IN`` loads (a `Load`), and each chunk into passes (`PassSpec`): the registers,
sender descriptors and tag tables of one ``PASS``. `ommatidia.gen.program.assemble`
emits them as a program (docs/program.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import ArrayConfig
from .banks import split_layout, split_load_layout
from .mapper import groups_of
from .packing import RegionWords, elements_per_word

__all__ = ["PassSpec", "Load", "Round", "build_rounds"]

@dataclass(frozen=True)
class PassSpec:
    """One ``PASS``: image ``n``, the filter groups ``blocks`` (m0, p) side by side, the
    `ommatidia.gen.mapper.Step` stacked in each, and everything the program sets for it;
    ``loads``, the filter regions (m0, cg) it needs loaded into the filter GLB."""

    n: int
    blocks: tuple
    step: object
    config: dict
    descs: dict
    run: object
    loads: tuple = ()


@dataclass(frozen=True)
class Load:
    """A channel chunk of a round: GLB word base of each filter region (m0, cg) and ifmap
    region (n, cg), and the passes that run on them. ``staged``: its filters go through
    the filter GLB pass by pass (`_stage_filters`; those that do not fit half of it,
    at GLB words below `glb_words`, into the GLB)."""

    filters: dict
    ifmaps: dict
    passes: tuple
    staged: bool = False


@dataclass(frozen=True)
class Round:
    """Images, ofmap strip (e0, rows) and filter groups (m0, p) whose psums stay in the
    GLB (word base per (n, m0)) while the loads of their channel chunks run; the GLB
    words its psums and largest load take."""

    images: range
    strip: tuple
    mgroups: tuple
    psums: dict
    loads: tuple
    glb_words: int


def _blocks(mgs, blocks: int, psum_elems, per_psum: int) -> list[tuple]:
    """Filter groups side by side: up to ``blocks`` consecutive groups of equal ``p`` whose
    psum regions are whole words (the GON receiver writes them as one region)."""
    out, cur = [], []
    for m0, p in mgs:
        joinable = cur and len(cur) < blocks and cur[0][1] == p and psum_elems(p) % per_psum == 0
        if cur and not joinable:
            out.append(tuple(cur))
            cur = []
        cur.append((m0, p))
    out.append(tuple(cur))
    return out


def _grid(cfg, bits) -> int:
    return sum(int(bool(bits[r][c])) << (r * cfg.cols + c)
               for r in range(cfg.rows) for c in range(cfg.cols))


_MOST_PLANS = 4096
"""Plans and PE set rows a process keeps (the mapper's probes and whole layers and the
final program share steps)."""


def _pass_plan(cfg, layer, step, nblocks: int, es: int):
    """PE sets of a step repeated in ``nblocks`` column blocks, their multicast plan and
    array configuration (`_plan`, kept per process)."""
    return _plan(cfg, layer.U, step, nblocks, es)


@functools.lru_cache(maxsize=_MOST_PLANS)
def _plan(cfg, U: int, step, nblocks: int, es: int):
    """`_pass_plan` worked out (``U``: the layer's stride)."""
    from .multicast import PESet, plan_for
    sets, owner = [], []
    cgs = sorted({pc.cg for pc in step.pieces})
    for j in range(nblocks):
        row = 0
        for t, pc in enumerate(step.pieces):
            sets.append(PESet(pc.rows, es, (row, j * es), stride=U,
                              filters=j * len(cgs) + cgs.index(pc.cg), channels=pc.cg,
                              first_row=pc.r0, psum_from_below=t < len(step.pieces) - 1))
            owner.append((j, pc))
            row += pc.rows
    plan = plan_for(cfg, sets)
    on = [[0] * cfg.cols for _ in range(cfg.rows)]
    for s in sets:
        for i in range(s.rows):
            for e in range(s.cols):
                r, c = s.pe(i, e)
                on[r][c] = 1
    config = {"up": _grid(cfg, plan.up), "enable": _grid(cfg, on)}
    for kind in ("filter", "ifmap", "psum"):
        config[f"{kind}_row_id"], config[f"{kind}_col_id"] = plan.gin(kind).packed()
    for pe, (k, e) in plan.outputs.items():
        if pe[1] != owner[k][0] * es + e:
            raise ValueError(f"output PE {pe} of set {k} is not column {owner[k][0] * es + e}")
    return plan, sets, owner, config


@functools.lru_cache(maxsize=_MOST_PLANS)
def _set_rows(s) -> tuple:
    """The filter rows and the distinct ifmap rows a `PESet`'s PEs hold (kept per set)."""
    return ([s.filter_row(i) for i in range(s.rows)],
            sorted({s.ifmap_row(i, e) for i in range(s.rows) for e in range(s.cols)}))


def _pass_descs(cfg, layer, plan, sets, owner, run, n, blocks, load, psums, hs, down,
                memo=None):
    """Descriptors and tag tables of a pass; a sender's base plus a tag's offset is the
    absolute GLB element of the tag's region: a sender's base is its lowest tag offset and
    its tag entries count their offsets from it, so passes that read regions laid out
    alike at other GLB places (other filter groups' psums, the other filter GLB half,
    other images' ifmaps) have the same tag tables, which the program does not write
    again. The filter tags go from the bottom PE row up (the bottom row starts each
    output's psum chain, so it starts its MACs first), or with ``down``
    (`Mapping.filters_down`) from the top row down, and the ifmap tags ifmap row by
    ifmap row across the stacked sets (each column of the stream serves first the rows
    every set's first PE columns need). PEs that compute while their filters load
    (`PEConfig.stream_filters`) get the filter packets interleaved: ``filter_gin_values``
    weights of each tag in turn, so every PE row starts its first output early
    (docs/preload.md).

    ``memo`` (a dict, one `build_rounds` call's) keeps each sender's tag table per
    plan, tag keys in order and offsets relative to the base: passes with their regions
    laid out alike share one (list, not to be changed)."""
    from ommatidia.hw.engines import tag_depth
    per = elements_per_word(cfg)
    S, F, width = layer.S, layer.F, layer.W + 2 * layer.P
    p, q = run.p, run.q
    memo = {} if memo is None else memo

    def tags(kind, keyed):
        """The sender's base (`_relative`) and tag entries."""
        table = plan.gin(kind).tags
        fans = [table[key] for key, _ in keyed]
        base = min((offset for (_, offset), fan in zip(keyed, fans) if fan), default=0)
        key = (id(plan), kind, tuple((k, offset - base) for k, offset in keyed))
        entries = memo.get(key)
        if entries is None:
            entries = memo[key] = [(rt, ct, offset - base)
                                   for (_, offset), fan in zip(keyed, fans) for rt, ct in fan]
        if len(entries) > tag_depth(cfg):
            raise ValueError(f"{kind} needs {len(entries)} tags, the table holds "
                             f"{tag_depth(cfg)}")
        return base, entries

    fkeys, ikeys, pkeys = {}, {}, []
    for k, s in enumerate(sets):
        j, pc = owner[k]
        m0 = blocks[j][0]
        fbase = load.filters[m0, pc.cg] * per["filter"]
        ibase = load.ifmaps[n, pc.cg] * per["ifmap"]
        frows, irows = _set_rows(s)
        for r in frows:
            fkeys[("filter", s.filters, r)] = fbase + r * p * q * S
        for h in irows:
            ikeys[("ifmap", s.channels, h)] = ibase + h * q
        if not s.psum_from_below:
            for e in range(s.cols):
                pkeys.append((("psum", k, e), psums[n, m0] * per["psum"] + e * F * p))
    (fbase, ftags), (ibase, itags), (pbase, ptags) = (
        tags(kind, keyed) for kind, keyed in
        (("filter", sorted(fkeys.items(), reverse=not down)),
         ("ifmap", sorted(ikeys.items(), key=lambda kv: (kv[0][2], kv[0][1]))),
         ("psum", pkeys)))
    none = {"base": 0, "count": [0, 0, 0], "stride": [0, 0, 0], "repeat": 1, "tags": 1}
    es = sets[0].cols
    return {
        "filter": _filter_desc(cfg, fbase, len(ftags), p * q * S) if run.load_filter else none,
        "ifmap": {"base": ibase, "count": [width, len(itags), q], "stride": [hs * q, 0, 1],
                  "repeat": q, "tags": len(itags)},
        "psum": {"base": pbase, "count": [F, len(ptags), p], "stride": [p, 0, 1], "repeat": p,
                 "tags": len(ptags)} if run.accumulate else none,
        "gon": {"base": psums[n, blocks[0][0]] * per["psum"], "col0": 0, "stride": F * p,
                "count": es * F * p * len(blocks)},
        "tags": {"filter": ftags if run.load_filter else [], "ifmap": itags,
                 "psum": ptags if run.accumulate else []},
    }


def _filter_desc(cfg, base: int, tags: int, weights: int) -> dict:
    """The filter sender's descriptor: each tag's ``weights`` in turn, or with
    `PEConfig.stream_filters` (and ``weights`` a multiple of a packet's ``V``) ``V`` of
    each tag in turn, when packets carry several weights and that gives each PE row at
    least half a weight a cycle. A rule of thumb from two measurements (docs/preload.md):
    on `eyeriss` (8 weights a packet, 9-16 tags) it gains CONV2-5 1-4 %, on `tiny` (one a
    packet, 2-3 tags) it cost layers 1-8 %: a row after row stream lets the bottom rows,
    which start the psum chains, start sooner."""
    V = cfg.noc.filter_gin_values
    if cfg.pe.stream_filters and V > 1 and 1 < tags <= 2 * V and weights % V == 0:
        return {"base": base, "count": [weights // V, tags, V], "stride": [V, 0, 1],
                "repeat": V, "tags": tags}
    return {"base": base, "count": [tags, 1, weights], "stride": [0, 0, 1],
            "repeat": weights, "tags": tags}


def _load_layout(cfg, top: int, fsize: dict, isize: dict, spread: bool):
    """GLB word bases of a load's filter and ifmap regions (sizes ``fsize``, ``isize``)
    above the psums' ``top`` words, and the words used; ``spread`` starts the filters
    and the ifmaps each at a bank boundary, so the three senders read different banks
    (`ArrayConfig.glb_bank_reads`) at the cost of at most two banks' padding."""
    def start(at):
        return -(-at // cfg.glb_bank_words) * cfg.glb_bank_words if spread else at
    at, fbase, ibase = start(top), {}, {}
    for key, size in fsize.items():
        fbase[key] = at
        at += size
    at = start(at) if fsize else at
    for key, size in isize.items():
        ibase[key] = at
        at += size
    return fbase, ibase, at


def _stage_filters(cfg, layer, mgs, blocks, steps, cgroups, prev):
    """The filter GLB places of a load's filter regions, staged pass by pass: each pass
    that loads filters (an image's first) gets its regions (m0, cg) in one half of the
    filter GLB, the next such pass in the other half, unless they are the previous such
    pass's (kept where they are). A pass whose regions take more than a half stages the
    first ones that fit it (AlexNet CONV1 on `eyeriss`: one of its two 363-word regions
    in a 512-word half) and reads the others from the GLB, loaded in the foreground with
    the load. Returns (GLB word of each staged region, the regions each (filter group
    block, step) loads, the last pass's (regions, half, places)), or None when no filter
    can be staged: no filter GLB, no pass's first region fits a half, or a region serves
    two passes (R split into segments)."""
    from ommatidia.hw.glb import filter_glb_words, glb_words
    size, fw = RegionWords(cfg, layer), filter_glb_words(cfg)
    if not fw:
        return None
    p_of = dict(mgs)
    sets = [tuple((m0, cg) for m0, _ in blk for cg in sorted({pc.cg for pc in st.pieces}))
            for blk in blocks for st in steps]

    def words(key):
        return size.filter(p_of[key[0]], cgroups[key[1]])
    every = [k for keys in sets for k in keys]
    if len(every) != len(set(every)):
        return None
    sets = [_fitting(keys, words, fw // 2) for keys in sets]
    if not any(sets):
        return None
    fbase, loads = {}, []
    for keys in sets:
        if prev is not None and prev[0] == keys:
            fbase.update(prev[2])
            loads.append(())
            continue
        half = 1 - prev[1] if prev is not None else 0
        at = glb_words(cfg) + half * (fw // 2)
        for key in keys:
            fbase[key] = at
            at += words(key)
        prev = (keys, half, {k: fbase[k] for k in keys})
        loads.append(keys)
    return fbase, loads, prev


def _fitting(keys, words, most: int) -> tuple:
    """The leading ``keys`` whose ``words`` add up to at most ``most``."""
    out, total = [], 0
    for key in keys:
        total += words(key)
        if total > most:
            break
        out.append(key)
    return tuple(out)


def build_rounds(cfg: ArrayConfig, layer, mapping, *, accumulate: bool = False) -> list[Round]:
    """The rounds, GLB layout and passes of ``mapping`` (data independent); with
    ``accumulate`` every pass adds to the psums in the GLB, the first step too (the
    mapper's probes time a pass as the later steps of a filter group run it).

    Raises ValueError when a round does not fit the GLB or a pass's deliveries do not
    fit the tag tables or multicast IDs.
    """
    from ommatidia.hw.glb import glb_words
    from ommatidia.hw.pe import PERun
    size = RegionWords(cfg, layer)
    prev = None     # the last staged pass's filter regions, half, places
    S, F, U, R = layer.S, layer.F, layer.U, layer.R
    width = layer.W + 2 * layer.P
    cgroups = dict(groups_of(layer.C, mapping.q))
    mgroups = groups_of(layer.M, mapping.p)
    chunks = mapping.steps(layer)
    plans, memo = {}, {}    # `_pass_plan` per step; `_pass_descs`'s tag tables
    rounds = []
    for n0 in range(0, layer.N, mapping.n_chunk):
        images = range(n0, min(layer.N, n0 + mapping.n_chunk))
        for e0, es in mapping.strips:
            hs = (es - 1) * U + R
            for g0 in range(0, len(mgroups), mapping.m_chunk):
                mgs = tuple(mgroups[g0:g0 + mapping.m_chunk])
                top, psums = 0, {}
                for n in images:
                    for m0, p in mgs:
                        psums[n, m0] = top
                        top += size.psum(es, p)
                blocks = _blocks(mgs, mapping.blocks, lambda p: es * F * p,
                                 size.per["psum"])
                sizes = []
                for steps in chunks:
                    cgs = sorted({pc.cg for st in steps for pc in st.pieces})
                    sizes.append((
                        {(m0, cg): size.filter(p, cgroups[cg]) for m0, p in mgs for cg in cgs},
                        {(n, cg): size.ifmap(es, cgroups[cg]) for n in images for cg in cgs}))
                packed = any(_load_layout(cfg, top, f, i, True)[2] > glb_words(cfg)
                             for f, i in sizes)
                split = split_layout(cfg, layer, mgs, blocks, es, psums, sizes, packed)
                if split is not None:
                    psums = split["psums"]
                loads, used = [], top
                for ci, steps in enumerate(chunks):
                    cgs = sorted({pc.cg for st in steps for pc in st.pieces})
                    isize = {(n, cg): size.ifmap(es, cgroups[cg]) for n in images for cg in cgs}
                    staged = _stage_filters(cfg, layer, mgs, blocks, steps, cgroups, prev)
                    fsize = {(m0, cg): size.filter(p, cgroups[cg])
                             for m0, p in mgs for cg in cgs}
                    if staged is not None:
                        fstaged, staging, prev = staged
                        fsize = {k: v for k, v in fsize.items() if k not in fstaged}
                    else:
                        prev, staging = None, [()] * (len(blocks) * len(steps))
                    fbase, ibase, at = _load_layout(cfg, top, fsize, isize, cfg.glb_bank_reads)
                    if at > glb_words(cfg) and cfg.glb_bank_reads:
                        fbase, ibase, at = _load_layout(cfg, top, fsize, isize, False)
                    if split is not None:
                        fbase, ibase, at = split_load_layout(cfg, split, fsize, isize)
                    if staged is not None:
                        fbase = {**fbase, **fstaged}
                    if at > glb_words(cfg):
                        raise ValueError(f"a round needs {at} GLB words, the GLB has "
                                         f"{glb_words(cfg)}")
                    used = max(used, at)
                    load = Load(fbase, ibase, ())
                    passes = []
                    for bi, blk in enumerate(blocks):
                        for si, st in enumerate(steps):
                            key = (st, len(blk), es)
                            if key not in plans:
                                plans[key] = _pass_plan(cfg, layer, st, len(blk), es)
                            plan, sets, owner, config = plans[key]
                            q = cgroups[st.pieces[0].cg]
                            for ni, n in enumerate(images):
                                run = PERun(S=S, W=width, U=U, p=blk[0][1], q=q,
                                            load_filter=ni == 0,
                                            accumulate=accumulate or ci > 0 or si > 0)
                                run.check(cfg.pe)
                                descs = _pass_descs(cfg, layer, plan, sets, owner, run, n, blk,
                                                    load, psums, hs, mapping.filters_down,
                                                    memo)
                                passes.append(PassSpec(n, blk, st, config, descs, run,
                                                       staging[bi * len(steps) + si]
                                                       if ni == 0 else ()))
                    loads.append(Load(fbase, ibase, tuple(passes), staged is not None))
                rounds.append(Round(images, (e0, es), mgs, psums, tuple(loads), used))
    return rounds
