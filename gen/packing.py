"""Data types packed into DRAM and GLB words: how many elements a word holds, and the
slot packing of filters and raw activations (lowest slot first).

Shared by the mapper (GLB footprints), the program (DRAM images) and the model.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["IFMAP_CODINGS", "word_count", "elements_per_word", "RegionWords", "pack_slots",
           "unpack_slots", "raw_ifmap"]

IFMAP_CODINGS = ("rlc", "raw")
"""How a layer's input ifmap is stored in DRAM: RLC-coded (as the ``DMA_OUT`` of the
layer before writes it) or packed raw in activation slots (an input the host writes,
such as a network's first layer, whose values are seldom zero)."""


def word_count(n: int, per_word: int) -> int:
    """Words that hold ``n`` elements, ``per_word`` to a word."""
    return -(-n // per_word)


def elements_per_word(cfg) -> dict:
    """Elements of each data type (filter, ifmap, psum) in one DRAM/GLB word."""
    return dict(_elements_per_word(cfg))


@functools.lru_cache(maxsize=64)
def _elements_per_word(cfg) -> dict:
    from ommatidia.hw.engines import data_bits
    from ommatidia.hw.glb import slot_bits
    return {k: cfg.dram_bits // slot_bits(b, cfg.dram_bits) for k, b in data_bits(cfg).items()}


class RegionWords:
    """GLB words of a layer's regions, the one place their sizes are worked out (mapper
    footprints, round layout, GLB banks, ``DMA_OUT`` ranges): a psum region holds an
    ofmap strip of ``es`` rows of ``p`` filters, a filter region ``p`` filters of ``q``
    channels, an ifmap region the ``(es - 1) U + R`` padded rows such a strip reads of
    ``q`` channels."""

    def __init__(self, cfg, layer):
        self.layer, self.per = layer, elements_per_word(cfg)

    def psum(self, es: int, p: int) -> int:
        return word_count(es * self.layer.F * p, self.per["psum"])

    def filter(self, p: int, q: int) -> int:
        return word_count(self.layer.R * self.layer.S * p * q, self.per["filter"])

    def ifmap(self, es: int, q: int) -> int:
        layer = self.layer
        rows = (es - 1) * layer.U + layer.R
        return word_count((layer.W + 2 * layer.P) * rows * q, self.per["ifmap"])


def raw_ifmap(cfg, ifmap_coding: str) -> bool:
    """Whether the ifmap regions are packed raw: ``ifmap_coding`` is ``"raw"`` or the array
    has no RLC codec (`ArrayConfig.rlc_codec`). ValueError unless ``ifmap_coding`` is one
    of `IFMAP_CODINGS`."""
    if not isinstance(ifmap_coding, str) or ifmap_coding not in IFMAP_CODINGS:
        raise ValueError(f"ifmap_coding must be one of {', '.join(map(repr, IFMAP_CODINGS))},"
                         f" not {ifmap_coding!r}")
    return ifmap_coding == "raw" or not cfg.rlc_codec


def pack_slots(cfg, kind: str, values) -> list:
    """``values`` packed into the ``kind`` slots of DRAM words, lowest slot first: filters,
    raw ifmaps (`raw_ifmap`), and without `ArrayConfig.rlc_codec` the ofmaps `DMAOut`
    writes."""
    per = elements_per_word(cfg)[kind]
    slot = cfg.dram_bits // per
    if cfg.dram_bits > 64:
        values = [int(v) & ((1 << slot) - 1) for v in values]
        return [sum(v << (slot * j) for j, v in enumerate(values[w * per:(w + 1) * per]))
                for w in range(word_count(len(values), per))]
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    n = word_count(len(v), per)
    slots = np.zeros(n * per, dtype=np.uint64)
    slots[:len(v)] = v.astype(np.uint64) & np.uint64((1 << slot) - 1)
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(slot))[None, :]
    return np.bitwise_or.reduce(slots.reshape(n, per) << shifts, axis=1).tolist()


def unpack_slots(cfg, words, n: int) -> np.ndarray:
    """``n`` signed activations packed in the activation slots of ``words``."""
    per = elements_per_word(cfg)["ifmap"]
    slot = cfg.dram_bits // per
    if len(words) * per < n:
        raise ValueError(f"{len(words)} packed words hold fewer than {n} values")
    raw = np.array([(int(words[j // per]) >> (slot * (j % per))) & ((1 << slot) - 1)
                    for j in range(n)], dtype=np.int64)
    return np.where(raw >= 1 << (slot - 1), raw - (1 << slot), raw)
