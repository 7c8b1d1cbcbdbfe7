"""The mapper's choice for a layer and the analytical model's prediction, as one record.

`layer_prediction` compiles a layer on given data (`ommatidia.gen.compiler`),
runs the analytical model on its program (`ommatidia.gen.model.predict`) and
weighs the accesses with Eyeriss's cost table (`ommatidia.gen.energy`): what
``ommatidia map`` prints.
"""

from __future__ import annotations

import dataclasses

from .compiler import compile_layer
from .energy import energy
from .model import SYSTEM_DRAM, DramTiming, predict

__all__ = ["layer_prediction", "MAX_PASSES", "fewest_passes", "check_scale"]

MAX_PASSES = 1024
"""Most passes `fewest_passes` may count for `layer_prediction`: the model interprets
every pass, and planning, assembling and interpreting a pass take milliseconds each (a
layer at this bound takes about a minute; the actual pass counts run up to some
40 times the bound, as AlexNet FC7's 17248 passes for a bound of 377 on ``eyeriss``)."""


def fewest_passes(cfg, layer) -> tuple[int, int, int]:
    """A lower bound on the passes of any mapping of ``layer`` on ``cfg``, as (images,
    channel groups, filter groups): a pass works on one image, at most ``q`` channels per
    PE row (``q * S`` within the ifmap and filter spads) on each of ``rows`` rows, and at
    most ``p`` filters per PE (the psum spad) on each of ``cols`` columns."""
    pe = cfg.pe
    q = max(1, min(layer.C, pe.ifmap_spad_depth // layer.S, pe.filter_spad_depth // layer.S))
    p = max(1, min(layer.M, pe.psum_spad_depth, pe.filter_spad_depth // layer.S))
    return layer.N, -(-layer.C // (q * cfg.rows)), -(-layer.M // (p * cfg.cols))


def check_scale(cfg, layer) -> None:
    """Raise ValueError, naming the bound, when `fewest_passes` exceeds `MAX_PASSES`."""
    n, cgroups, mgroups = fewest_passes(cfg, layer)
    if n * cgroups * mgroups > MAX_PASSES:
        raise ValueError(
            f"{layer} needs at least {n * cgroups * mgroups} passes on {cfg.name} ({n} "
            f"image(s) x {cgroups} channel group(s) x {mgroups} filter group(s)), more than the "
            f"{MAX_PASSES} the model interprets in about a minute; model a part of it (fewer "
            f"images N, channels C or filters M: its passes repeat)")


def layer_prediction(cfg, layer, ifmap, weights, *, p: int | None = None, q: int | None = None,
                     data: dict | None = None, dram: DramTiming = SYSTEM_DRAM,
                     ifmap_coding: str = "rlc") -> dict:
    """The mapping of ``layer`` on ``cfg`` (``p`` and ``q`` fixed if given, the ifmap stored
    as ``ifmap_coding`` says), its rounds and the model's cycles, PE utilization, accesses
    and energy, on ``ifmap`` and ``weights``.

    ``data`` (what the data is, e.g. its fraction of zeros and its seed) is copied into
    the record before the model's figures; ``dram`` is the DRAM timing the model assumes
    (`ommatidia.gen.model.DramTiming`, the System's by default). Raises ValueError when
    the layer does not compile (`ommatidia.gen.compiler.compile_layer`) or would take
    more than about a minute (`fewest_passes` above `MAX_PASSES`).
    """
    check_scale(cfg, layer)
    prog = compile_layer(cfg, layer, ifmap, weights, p=p, q=q, ifmap_coding=ifmap_coding)
    model = predict(prog, dram=dram)
    return {
        "preset": cfg.name, "array": [cfg.rows, cfg.cols],
        "layer": dataclasses.asdict(layer), "E": layer.E, "F": layer.F,
        "macs": layer.macs, "mapping": prog.mapping.describe(layer), "passes": prog.passes,
        "rounds": len(prog.rounds),
        "glb_words_used": max(r.glb_words for r in prog.rounds),
        "program_words": prog.program_words, "ifmap_coding": ifmap_coding,
        **(data or {}),
        "model": {"cycles": model.cycles, "pe_utilization": model.pe_utilization,
                  "accesses": model.accesses, "energy": energy(model.accesses)},
    }
