"""The compiler: a CONV or FC layer to a program for the accelerator.

`compile_layer` maps the layer (`ommatidia.gen.mapper.search`, ranked by the
analytical model through `ModelCost`), builds its rounds
(`ommatidia.gen.rounds.build_rounds`) and assembles the DRAM image
(`ommatidia.gen.program.assemble`). The layers of the compiler depend one way:
mapper <- program <- model <- compiler.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import ArrayConfig
from .mapper import Mapping, search
from .model import predict
from .packing import raw_ifmap
from .program import LayerProgram, assemble, check_inputs
from .rounds import build_rounds

__all__ = ["ModelCost", "plan_layer", "compile_layer"]


class ModelCost:
    """The cost of a mapping from the analytical model (`ommatidia.gen.model`), the ifmaps
    stored as ``ifmap_coding`` says: the mapper's `ommatidia.gen.mapper.Cost`. Whole
    layers are timed on ``ifmap`` when given (its zeros decide the RLC ``DMA_IN``
    cycles and words), else on all-ones data (no zeros: the slowest RLC); a pass's
    cycles do not depend on the data."""

    def __init__(self, cfg: ArrayConfig, layer, ifmap_coding: str = "rlc", ifmap=None):
        self.cfg, self.layer, self.ifmap_coding = cfg, layer, ifmap_coding
        self.ifmap = ifmap
        self._rounds = {}  # (layer, mapping, accumulate) -> rounds: `whole` then `rounds`

    def _built(self, layer, m: Mapping, accumulate: bool = False) -> list:
        """`build_rounds` of ``m``, once per mapping (it raises ValueError afresh)."""
        key = (layer, m, accumulate)
        got = self._rounds.get(key)
        if got is None:
            got = self._rounds[key] = build_rounds(self.cfg, layer, m, accumulate=accumulate)
        return got

    def _program(self, layer, m: Mapping, accumulate: bool = False) -> LayerProgram:
        x = self.ifmap if self.ifmap is not None and layer == self.layer else \
            np.ones((layer.N, layer.C, layer.H, layer.W), dtype=np.int64)
        w = np.ones((layer.M, layer.C, layer.R, layer.S), dtype=np.int64)
        rounds = self._built(layer, m, accumulate)
        return assemble(self.cfg, layer, m, rounds, x, w, ifmap_coding=self.ifmap_coding)

    def rounds(self, m: Mapping) -> list:
        return self._built(self.layer, m)

    def whole(self, m: Mapping) -> tuple[int, int]:
        """(cycles, DRAM words, program words counted) of the whole program of ``m``;
        (inf, inf) when it does not compile."""
        try:
            pr = predict(self._program(self.layer, m), values=False)
        except ValueError:
            return float("inf"), float("inf")
        c = pr.counters
        return pr.cycles, c["dram_words_read"] + c["dram_words_written"] + c["program_words"]

    def pass_floor(self, m: Mapping) -> int:
        """Cycles `pass_cycles` is never below: the PE with the probe's first channel and
        filter group issues its ``F * S * q * p`` operations one a cycle (0 where
        `pass_cycles` may give 0)."""
        layer = self.layer
        es = max(s for _, s in m.strips)
        if es != layer.E and (es - 1) * layer.U + layer.R - 2 * layer.P < 1:
            return 0
        return layer.F * layer.S * min(m.q, layer.C) * min(m.p, layer.M)

    def pass_cycles(self, m: Mapping) -> int:
        """Cycles of a ``PASS`` of ``m`` (its widest strip, filters loaded, adding to the
        psums of the step before, as most steps do), from the model run on a one-pass
        program."""
        cfg, layer = self.cfg, self.layer
        es = max(s for _, s in m.strips)
        H = layer.H if es == layer.E else (es - 1) * layer.U + layer.R - 2 * layer.P
        if H < 1:
            return self.pass_cycles(dataclasses.replace(m, strips=((0, layer.E),))) \
                if layer.E <= cfg.cols else 0
        units = m.stack if len(m.segments) == 1 else 1
        probe = dataclasses.replace(layer, N=1, H=H, C=min(layer.C, m.q * units),
                                    M=min(layer.M, m.p * m.blocks))
        one = Mapping(m.p, m.q, ((0, es),), m.segments, m.stack, m.blocks, 1,
                      -(-probe.M // m.p), -(-probe.C // m.q), m.filters_down)
        # the data never changes a pass's cycles: no need to compute on it
        passes = [c for op, c in predict(self._program(probe, one, accumulate=True),
                                         values=False).commands if op == "PASS"]
        return max(passes) if passes else 0


def plan_layer(cfg: ArrayConfig, layer, *, p: int | None = None, q: int | None = None,
               ifmap_coding: str = "rlc", ifmap=None):
    """The best `Mapping` of ``layer`` on ``cfg`` by the model, its ifmap stored as
    ``ifmap_coding`` says, and its compiled rounds; the whole layers the model times are
    run on ``ifmap`` when given (`ModelCost`).

    Raises ValueError naming the limit when no mapping fits.
    """
    return search(cfg, layer, ModelCost(cfg, layer, ifmap_coding, ifmap), p=p, q=q,
                  ifmap_coding=ifmap_coding)


def compile_layer(cfg: ArrayConfig, layer, ifmap, weights, *, bias=None, relu: bool = False,
                  shift: int = 0, p: int | None = None, q: int | None = None,
                  mapping=None, ifmap_coding: str = "rlc") -> LayerProgram:
    """The program and DRAM image of ``layer`` (a `ConvLayer`) on ``cfg``, mapped by
    `plan_layer` (``p`` and ``q`` fixed if given) or by ``mapping``.

    ``ifmap_coding`` says how the input ifmap is stored in DRAM: ``"rlc"`` (RLC-coded,
    as the layer before's ``DMA_OUT`` writes it) or ``"raw"`` (packed in activation
    slots like the filters, for an input the host writes, such as a network's first
    layer); without `ArrayConfig.rlc_codec` it is raw either way.

    Raises ValueError, naming the limit, when the data does not fit the
    preset's bit widths, ``ifmap_coding`` is neither, or no mapping fits the array,
    the PEs and the GLB.
    """
    raw_ifmap(cfg, ifmap_coding)
    ifmap, weights, bias = check_inputs(cfg, layer, ifmap, weights, bias, shift)
    if mapping is None:
        mapping, rounds = plan_layer(cfg, layer, p=p, q=q, ifmap_coding=ifmap_coding,
                                     ifmap=ifmap)
    else:
        rounds = build_rounds(cfg, layer, mapping)
    return assemble(cfg, layer, mapping, rounds, ifmap, weights, bias=bias, relu=relu,
                    shift=shift, ifmap_coding=ifmap_coding)
