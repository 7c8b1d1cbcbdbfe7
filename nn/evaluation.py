"""A quantized network on labelled images, layer by layer, against the golden model.

`evaluate` runs a `ommatidia.nn.quant.QNet` through a ``conv`` callable (the
golden model, or the generated Verilog through
`ommatidia.sim.accelerator.hardware_conv`) and through the golden model, and
gives the accuracy and, per layer, whether its ofmaps are bit-exact, the
hardware's figures summed over its runs and the statistics of its input
(`ommatidia.nn.report.net_layer_stats`): what ``ommatidia net run`` prints and
reports.
"""

from __future__ import annotations

import numpy as np

from .quant import infer
from .report import net_layer_stats

__all__ = ["HARDWARE_TOTALS", "evaluate"]

HARDWARE_TOTALS = ("cycles", "macs", "gated_macs", "dram_words_read", "dram_words_written")
"""The counters of a layer's hardware runs that `evaluate` sums."""


def evaluate(qnet, images, labels, *, conv=None, start=None, progress=None,
             images_per_run: int = 16) -> dict:
    """``qnet`` on ``images`` through ``conv`` (default: the golden model), checked
    against the golden model.

    ``conv`` from `ommatidia.sim.accelerator.hardware_conv` (its ``reports``) adds
    the summed `HARDWARE_TOTALS`, ``pe_utilization``, ``gated_fraction`` and the mean
    ``rlc_ratio`` of each layer's runs. ``start()`` is called when the golden
    reference is done, before the run through ``conv``; ``progress`` goes to
    `ommatidia.nn.quant.infer`. The input statistics are of runs of ``images_per_run``
    images. Returns
    ``accuracy``, ``golden_accuracy``, ``predictions`` and ``layers`` (per layer
    ``layer``, ``bit_exact``, the hardware's figures and the statistics).
    """
    ref_preds, ref = infer(qnet, images)
    stats = net_layer_stats(qnet, images, ref, images_per_run)
    if start is not None:
        start()
    preds, ofmaps = infer(qnet, images, conv=conv, progress=progress)
    pes = qnet.config.rows * qnet.config.cols
    layers = []
    for i, (a, b) in enumerate(zip(ofmaps, ref)):
        row = {"layer": i, "bit_exact": bool(np.array_equal(a, b))}
        if conv is not None:
            reps = conv.reports[i]
            total = {k: sum(r[k] for r in reps) for k in HARDWARE_TOTALS}
            row.update(total, pe_utilization=total["macs"] / (pes * total["cycles"])
                       if total["cycles"] else 0.0,
                       gated_fraction=total["gated_macs"] / total["macs"] if total["macs"] else 0.0,
                       rlc_ratio=float(np.mean([r["rlc_ratio"] for r in reps])))
        row.update(stats[i])
        layers.append(row)
    if labels is None:
        accuracy = golden_accuracy = None
    else:
        accuracy = float((preds == labels).mean())
        golden_accuracy = float((ref_preds == labels).mean())
    return {"accuracy": accuracy, "golden_accuracy": golden_accuracy,
            "golden_predictions": ref_preds, "predictions": preds, "layers": layers}
