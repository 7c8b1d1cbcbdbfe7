"""The GLB banks a program's regions and passes touch, for the compiler's rule that a
``DMA_OUT`` drains beside a ``PASS`` only on banks the pass neither reads nor writes
(docs/program.md, "The background ``DMA_OUT``"; each bank's reads are granted
round-robin, `ArrayConfig.glb_bank_reads`)."""

from __future__ import annotations

from .mapper import groups_of
from .packing import RegionWords

__all__ = ["glb_banks", "pass_banks", "split_layout", "split_load_layout"]


def glb_banks(cfg, lo: int, hi: int) -> set:
    """The GLB banks of GLB words ``lo .. hi - 1`` (words past the GLB, in the filter GLB,
    are read on a port of their own)."""
    from ommatidia.hw.glb import glb_words
    hi = min(hi, glb_words(cfg))
    return set(range(lo // cfg.glb_bank_words, (hi - 1) // cfg.glb_bank_words + 1)) \
        if lo < hi else set()


def pass_banks(cfg, layer, mapping, rnd, load, ps, memo: dict | None = None) -> set:
    """The GLB banks a pass may read or write: its psum regions, and every ifmap region
    and its filter groups' filter regions in the GLB of its load. ``memo`` (a dict, for
    passes of one program) keeps a load's ifmap banks and each filter group's filter
    banks, the same for all its passes."""
    size, cgroups = RegionWords(cfg, layer), dict(groups_of(layer.C, mapping.q))
    es = rnd.strip[1]
    out = set()
    for m0, p in ps.blocks:
        lo = rnd.psums[ps.n, m0]
        out |= glb_banks(cfg, lo, lo + size.psum(es, p))
    got = None if memo is None else memo.get(id(load))
    if got is None or got[0] is not load or got[1] != es:
        p_of, ifmaps, filters = dict(rnd.mgroups), set(), {}
        for (_, cg), lo in load.ifmaps.items():
            ifmaps |= glb_banks(cfg, lo, lo + size.ifmap(es, cgroups[cg]))
        for (m0, cg), lo in load.filters.items():
            filters.setdefault(m0, set()).update(
                glb_banks(cfg, lo, lo + size.filter(p_of[m0], cgroups[cg])))
        got = (load, es, ifmaps, filters)
        if memo is not None:
            memo[id(load)] = got
    out |= got[2]
    for m0 in {m0 for m0, _ in ps.blocks}:
        out |= got[3].get(m0, set())
    return out


def split_layout(cfg, layer, mgs, blocks, es, psums, sizes, packed: bool):
    """With a read port per GLB bank, more than one block of filter groups and loads
    (``sizes``: filter and ifmap sizes per channel chunk) that fit only ``packed`` (not
    at bank boundaries): the psum bases with the last block's regions at the GLB's end
    above the loads, that block's filters just below them, so the next round's first
    pass reads no bank of theirs and one drains beside it (`ommatidia.gen.program`).
    None unless every load fits so, the other filters and the ifmaps a bank below."""
    from ommatidia.hw.glb import glb_words
    if not cfg.glb_bank_reads or len(blocks) < 2 or not packed:
        return None
    region = RegionWords(cfg, layer)
    last = {m0 for m0, _ in blocks[-1]}
    size = {key: region.psum(es, dict(mgs)[key[1]]) for key in psums}
    high = sum(w for key, w in size.items() if key[1] in last)
    at, lo, out = 0, glb_words(cfg) - high, {}
    for key in psums:
        if key[1] not in last:
            out[key], at = at, at + size[key]
    for key in psums:
        if key[1] in last:
            out[key], lo = lo, lo + size[key]
    split = {"psums": out, "low": at, "high": glb_words(cfg) - high, "last": last}
    bank = split["high"] // cfg.glb_bank_words
    for fsize, isize in sizes:
        below = at + sum(isize.values()) + sum(w for key, w in fsize.items()
                                                if key[0] not in last)
        if split_load_layout(cfg, split, fsize, isize)[2] > split["high"] \
                or (below - 1) // cfg.glb_bank_words >= bank:
            return None
    return split


def split_load_layout(cfg, split, fsize: dict, isize: dict):
    """A load's filter and ifmap GLB bases and its end in a `split_layout` round: the
    other blocks' filters, the ifmaps, then the last block's filters, from the low
    psums' end up."""
    at, fbase, ibase = split["low"], {}, {}
    for key, size in fsize.items():
        if key[0] not in split["last"]:
            fbase[key], at = at, at + size
    for key, size in isize.items():
        ibase[key], at = at, at + size
    for key, size in fsize.items():
        if key[0] in split["last"]:
            fbase[key], at = at, at + size
    return fbase, ibase, at
