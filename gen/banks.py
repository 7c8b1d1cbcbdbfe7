"""The GLB banks a program's regions and passes touch, for the compiler's rule that a
``DMA_OUT`` drains beside a ``PASS`` only on banks the pass neither reads nor writes
(docs/program.md, "The background ``DMA_OUT``"; each bank's reads are granted
round-robin, `ArrayConfig.glb_bank_reads`)."""

from __future__ import annotations

from .mapper import groups_of
from .packing import elements_per_word, word_count

__all__ = ["glb_banks", "pass_banks"]


def glb_banks(cfg, lo: int, hi: int) -> set:
    """The GLB banks of GLB words ``lo .. hi - 1`` (words past the GLB, in the filter GLB,
    are read on a port of their own)."""
    from ommatidia.hw.glb import glb_words
    hi = min(hi, glb_words(cfg))
    return set(range(lo // cfg.glb_bank_words, (hi - 1) // cfg.glb_bank_words + 1)) \
        if lo < hi else set()


def pass_banks(cfg, layer, mapping, rnd, load, ps) -> set:
    """The GLB banks a pass may read or write: its psum regions, and every ifmap region
    and filter region in the GLB of its load."""
    per, cgroups = elements_per_word(cfg), dict(groups_of(layer.C, mapping.q))
    es, p_of = rnd.strip[1], dict(rnd.mgroups)
    hs, width = (es - 1) * layer.U + layer.R, layer.W + 2 * layer.P
    out = set()
    for m0, p in ps.blocks:
        lo = rnd.psums[ps.n, m0]
        out |= glb_banks(cfg, lo, lo + word_count(es * layer.F * p, per["psum"]))
    for (_, cg), lo in load.ifmaps.items():
        out |= glb_banks(cfg, lo, lo + word_count(width * hs * cgroups[cg], per["ifmap"]))
    for (m0, cg), lo in load.filters.items():
        words = word_count(layer.R * layer.S * p_of[m0] * cgroups[cg], per["filter"])
        out |= glb_banks(cfg, lo, lo + words)
    return out
