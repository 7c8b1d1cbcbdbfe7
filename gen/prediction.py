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
from .model import predict

__all__ = ["layer_prediction"]


def layer_prediction(cfg, layer, ifmap, weights, *, p: int | None = None, q: int | None = None,
                     data: dict | None = None) -> dict:
    """The mapping of ``layer`` on ``cfg`` (``p`` and ``q`` fixed if given), its rounds and
    the model's cycles, PE utilization, accesses and energy, on ``ifmap`` and ``weights``.

    ``data`` (what the data is, e.g. its fraction of zeros and its seed) is copied into
    the record before the model's figures. Raises ValueError when the layer does not
    compile (`ommatidia.gen.compiler.compile_layer`).
    """
    prog = compile_layer(cfg, layer, ifmap, weights, p=p, q=q)
    model = predict(prog)
    return {
        "preset": cfg.name, "array": [cfg.rows, cfg.cols],
        "layer": dataclasses.asdict(layer), "E": layer.E, "F": layer.F,
        "macs": layer.macs, "mapping": prog.mapping.describe(layer), "passes": prog.passes,
        "rounds": len(prog.rounds),
        "glb_words_used": max(r.glb_words for r in prog.rounds),
        "program_words": prog.program_words,
        **(data or {}),
        "model": {"cycles": model.cycles, "pe_utilization": model.pe_utilization,
                  "accesses": model.accesses, "energy": energy(model.accesses)},
    }
