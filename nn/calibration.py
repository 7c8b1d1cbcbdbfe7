"""Quantizing an imported float network on calibration images.

`calibrate` quantizes a `ommatidia.nn.net.FloatNet` (from
`ommatidia.nn.onnx_import.from_onnx`) for a preset with
`ommatidia.nn.quant.quantize`. Without calibration images it uses the digits
training split and records the float and quantized accuracy on the held-out
digits in the network's ``info``: what ``ommatidia net import`` does.
"""

from __future__ import annotations

import dataclasses

from .digits import DIGITS_INPUT_SCALE, digits_data
from .quant import QNet, infer, quantize

__all__ = ["calibrate"]


def calibrate(fnet, cfg, images=None, *, input_scale: float | None = None,
              info: dict | None = None) -> QNet:
    """``fnet`` quantized for ``cfg`` (an `ommatidia.gen.config.ArrayConfig` or a preset
    name) on ``images`` (N, C, H, W), with ``info`` in the network's ``info``.

    ``images`` None takes the digits training split at `DIGITS_INPUT_SCALE` (unless
    ``input_scale`` is given) and adds ``float_accuracy`` and ``quantized_accuracy``, on
    the held-out digits, to ``info``. Otherwise the input scale is ``input_scale`` or
    found from ``images``.
    """
    if images is None:
        calib, _, held_out, labels = digits_data()
        scale = DIGITS_INPUT_SCALE if input_scale is None else input_scale
    else:
        calib, held_out, labels = images, None, None
        scale = input_scale
    qnet = quantize(fnet, calib, cfg, input_scale=scale, info=info)
    if labels is not None:
        fa = float((fnet.predict(held_out) == labels).mean())
        qa = float((infer(qnet, held_out)[0] == labels).mean())
        qnet = dataclasses.replace(qnet, info={**qnet.info, "float_accuracy": fa,
                                               "quantized_accuracy": qa})
    return qnet
