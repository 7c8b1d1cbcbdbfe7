"""The filter GLB: a memory of its own for the filters of a pass and of the next.

Eyeriss v1 keeps its filters apart from the ifmaps and psums (8 kB in two banks, one
preloaded for the next pass while the other feeds the current one). Here, with
``ArrayConfig.filter_glb_bytes`` > 0, `FilterGLB` holds `filter_glb_words` words of
``dram_bits`` at the GLB word addresses after the GLB's (`glb_words` on): `DMAIn` writes
it and only the filter sender reads it. A write never waits, and a read never meets
another, so a ``DMA_IN`` in the background fills one half while a pass reads the other.

With one GLB read port (``glb_bank_reads`` off) the filter sender's reads still take
their turn on it (its grant of a word from `glb_words` on is the filter GLB's read
enable, the GLB's ``valid`` the response's), so a pass's timing is the same wherever its
filters are; with a read arbiter per GLB bank the filter GLB's read port is its own and
grants each read as it comes. Filters that do not fit stay in the GLB.

Its words are `filter_glb_word` GLB words wide, so that one read holds a filter GIN
packet of ``noc.filter_gin_values`` weights (more than a GLB word's with 16-bit
weights on a 64-bit DRAM port): a write fills one GLB word of one (its byte mask moved
to that word's place), a read returns the whole word holding GLB word ``addr``.
"""

from __future__ import annotations

from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .glb import filter_glb_word, filter_glb_words, glb_write_layout

__all__ = ["FilterGLB", "filter_addr_bits"]


def filter_addr_bits(cfg: ArrayConfig) -> int:
    """Width of a filter GLB word address."""
    return max(1, (filter_glb_words(cfg) - 1).bit_length())


class FilterGLB(wiring.Component):
    """`filter_glb_words` GLB words in words of `filter_glb_word`, one write port (always
    ready) and one read port.

    Members
    -------
    write : In(stream of glb_write_layout(cfg, filter_addr_bits(cfg)))
        Written at once, the bytes whose ``mask`` bit is set of GLB word ``addr``.
    addr : In(filter_addr_bits(cfg))
    en : In(1)
        Reads the word holding GLB word ``addr``; ``data`` holds it from the next cycle
        (GLB word ``k`` of it in bits ``k * dram_bits`` on).
    data : Out(filter_glb_word(cfg) * cfg.dram_bits)
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"FilterGLB takes an ArrayConfig, not {cfg!r}")
        if not filter_glb_words(cfg):
            raise ValueError("FilterGLB needs ArrayConfig.filter_glb_bytes > 0")
        self._cfg = cfg
        super().__init__({
            "write": In(stream.Signature(glb_write_layout(cfg, filter_addr_bits(cfg)))),
            "addr": In(filter_addr_bits(cfg)),
            "en": In(1),
            "data": Out(filter_glb_word(cfg) * cfg.dram_bits),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        k = filter_glb_word(cfg)
        lw = (k - 1).bit_length()
        m.submodules.mem = mem = Memory(shape=unsigned(k * cfg.dram_bits),
                                        depth=filter_glb_words(cfg) // k, init=[])
        rport = mem.read_port()
        wport = mem.write_port(granularity=8)
        w = self.write
        mask = w.payload.mask & w.valid.replicate(len(w.payload.mask))
        m.d.comb += [
            w.ready.eq(1),
            wport.addr.eq(w.payload.addr[lw:]), wport.data.eq(w.payload.data.replicate(k)),
            wport.en.eq(mask << (w.payload.addr[:lw] * len(mask)) if lw else mask),
            rport.addr.eq(self.addr[lw:]), rport.en.eq(self.en), self.data.eq(rport.data),
        ]
        return m
