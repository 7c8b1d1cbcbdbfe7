"""The quantized network: quantization, integer inference, the model file.

- `quantize` turns a `ommatidia.nn.net.FloatNet` into a `QNet` of `QLayer`:
  ``weight_bits`` weights with a scale per layer, ``act_bits`` activations,
  biases in psum units and a right shift per layer, so that each layer is
  exactly `ommatidia.sim.golden.conv2d` with the preset's widths, which the
  hardware reproduces bit for bit.
- `infer` runs a `QNet` layer by layer through a ``conv`` callable (the
  golden model by default, the generated Verilog when the runner plugs in).
- `save` / `load`: the ``.npz`` format of docs/model_format.md.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ommatidia.gen.arith import out_size, saturate
from ommatidia.gen.config import SMALL, ArrayConfig, check_int, preset
from ommatidia.gen.layer import ConvLayer
from ommatidia.sim import golden

from .net import (FloatNet, as_images, chain_shapes, conv_float, frozen_array, max_pool,
                  normalise_layers)

__all__ = ["QLayer", "QNet", "quantize", "quantize_input", "golden_conv", "infer", "save",
           "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "ommatidia-qnet"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class QLayer:
    """One quantized CONV layer, as the accelerator runs it.

    Parameters
    ----------
    weights : (M, C, R, S) integers
        Filter weights, ``weight_bits`` signed (checked by `QNet`).
    bias : (M,) integers
        Bias in psum units, added to the psums before ReLU.
    stride, padding : int
        U and P.
    relu : bool
        ReLU in the output stage.
    shift : int
        Arithmetic right shift with round-half-up after ReLU, before
        saturation to ``act_bits``.
    pool : int
        Host max-pooling ``pool`` x ``pool`` with stride ``pool`` after the
        layer (1: none).
    weight_scale : float
        Real value of one weight LSB; the layer's output LSB is
        ``input scale * weight_scale * 2**shift``.
    """

    weights: np.ndarray
    bias: np.ndarray
    stride: int = 1
    padding: int = 0
    relu: bool = False
    shift: int = 0
    pool: int = 1
    weight_scale: float = 1.0

    def __post_init__(self):
        own = "QLayer"
        w = np.asarray(self.weights)
        if w.ndim != 4 or 0 in w.shape:
            raise ValueError(f"{own}.weights must be a non-empty (M, C, R, S) array, "
                             f"not shape {w.shape}")
        if not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"{own}.weights must hold integers, not {w.dtype}")
        b = np.asarray(self.bias)
        if b.shape != (w.shape[0],):
            raise ValueError(f"{own}.bias must have shape ({w.shape[0]},), not {b.shape}")
        if not np.issubdtype(b.dtype, np.integer):
            raise ValueError(f"{own}.bias must hold integers, not {b.dtype}")
        check_int(own, "stride", self.stride, 1, integral=True)
        check_int(own, "padding", self.padding, 0, integral=True)
        check_int(own, "shift", self.shift, 0, 62, integral=True)
        check_int(own, "pool", self.pool, 1, integral=True)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ValueError(f"{own}.relu must be a bool, not {self.relu!r}")
        if isinstance(self.weight_scale, bool) or \
                not isinstance(self.weight_scale, (int, float, np.floating)) or \
                not (math.isfinite(self.weight_scale) and self.weight_scale > 0):
            raise ValueError(f"{own}.weight_scale must be a positive finite number, "
                             f"not {self.weight_scale!r}")
        object.__setattr__(self, "weights", frozen_array(w.astype(np.int64)))
        object.__setattr__(self, "bias", frozen_array(b.astype(np.int64)))
        object.__setattr__(self, "relu", bool(self.relu))
        object.__setattr__(self, "weight_scale", float(self.weight_scale))
        for name in ("stride", "padding", "shift", "pool"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def psum_bound(self, act_bits: int) -> int:
        """Largest |psum + bias| any ``act_bits`` input can produce: no wrap below it."""
        per_filter = np.abs(self.weights).reshape(self.weights.shape[0], -1).sum(axis=1)
        return int((per_filter * (1 << (act_bits - 1)) + np.abs(self.bias)).max())


@dataclass(frozen=True, eq=False)
class QNet:
    """A quantized network for the accelerator preset ``preset``.

    Checks that every weight fits ``weight_bits``, every bias ``psum_bits``,
    that the layers chain from ``input_shape`` to 1 x 1 class scores, and that
    each layer's logical PE set (R rows x E columns) fits the preset's array
    without folding, with S, the padded width and U within the PE's limits.
    ``input_scale`` is the real value of one input LSB: an image ``x`` enters
    as ``round(x / input_scale)`` saturated to ``act_bits``. ``info`` holds
    JSON metadata (accuracies, training settings).
    """

    layers: tuple
    input_shape: tuple
    input_scale: float
    preset: str = "small"
    act_bits: int = 8
    weight_bits: int = 8
    psum_bits: int = 24
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        own = "QNet"
        normalise_layers(self, own, QLayer)
        try:
            cfg = preset(self.preset)
        except ValueError as exc:
            raise ValueError(f"{own}.preset: {exc}") from None
        for name in ("act_bits", "weight_bits", "psum_bits"):
            value = getattr(self, name)
            want = getattr(cfg.pe, name)
            if value != want:
                raise ValueError(f"{own}.{name} = {value!r} differs from preset "
                                 f"{self.preset!r}'s {name} = {want}")
        if isinstance(self.input_scale, bool) or \
                not isinstance(self.input_scale, (int, float, np.floating)) or \
                not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"{own}.input_scale must be a positive finite number, "
                             f"not {self.input_scale!r}")
        object.__setattr__(self, "input_scale", float(self.input_scale))
        try:
            ok = isinstance(self.info, dict) and json.loads(json.dumps(self.info)) is not None
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{own}.info must be a JSON-serialisable dict, not {self.info!r}")
        shapes = chain_shapes(own, self.layers, self.input_shape)
        wlim = 1 << (self.weight_bits - 1)
        plim = 1 << (self.psum_bits - 1)
        for i, layer in enumerate(self.layers):
            where = f"{own}.layers[{i}]"
            lo, hi = int(layer.weights.min()), int(layer.weights.max())
            if lo < -wlim or hi >= wlim:
                raise ValueError(f"{where}.weights must be within {-wlim}..{wlim - 1} "
                                 f"(weight_bits = {self.weight_bits}), found {lo}..{hi}")
            lo, hi = int(layer.bias.min()), int(layer.bias.max())
            if lo < -plim or hi >= plim:
                raise ValueError(f"{where}.bias must be within {-plim}..{plim - 1} "
                                 f"(psum_bits = {self.psum_bits}), found {lo}..{hi}")
            if layer.shift >= self.psum_bits:
                raise ValueError(f"{where}.shift must be below psum_bits = {self.psum_bits}, "
                                 f"not {layer.shift}")
            _check_fits(where, cfg, layer, shapes[i])

    @property
    def config(self) -> ArrayConfig:
        return preset(self.preset)

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """Input (C, H, W) of each layer, then the output (M, 1, 1)."""
        return chain_shapes("QNet", self.layers, self.input_shape)

    @property
    def out_scales(self) -> list[float]:
        """Real value of one output LSB of each layer."""
        scales, s = [], self.input_scale
        for layer in self.layers:
            s = s * layer.weight_scale * 2.0 ** layer.shift
            scales.append(s)
        return scales

    def conv_layers(self, n: int = 1) -> list:
        """Shape of each layer on ``n`` images as an `ommatidia.gen.layer.ConvLayer`."""
        out = []
        for layer, (c, h, w) in zip(self.layers, self.shapes):
            m, _, r, s = layer.weights.shape
            out.append(ConvLayer(N=n, C=c, M=m, H=h, W=w, R=r, S=s, U=layer.stride,
                                 P=layer.padding))
        return out


def _check_fits(where: str, cfg: ArrayConfig, layer: QLayer, in_shape) -> None:
    """Raise unless the layer's R x E PE set and rows fit ``cfg`` without folding."""
    _, h, w = in_shape
    _, _, r, s = layer.weights.shape
    e = out_size(h, r, layer.stride, layer.padding)
    width = w + 2 * layer.padding
    pe = cfg.pe
    checks = [
        (r <= cfg.rows, f"has R = {r} filter rows; the PE set needs R <= rows = {cfg.rows}"),
        (e <= cfg.cols, f"has E = {e} ofmap rows; the PE set needs E <= cols = {cfg.cols}"),
        (s <= pe.max_filter_width, f"has S = {s}; the PE needs S <= max_filter_width = "
                                   f"{pe.max_filter_width}"),
        (width <= pe.max_ifmap_width, f"has a padded ifmap width W + 2P = {width}; the PE "
                                      f"needs at most max_ifmap_width = {pe.max_ifmap_width}"),
        (layer.stride <= pe.ifmap_spad_depth,
         f"has stride U = {layer.stride}; the PE's ifmap ring needs U <= ifmap_spad_depth = "
         f"{pe.ifmap_spad_depth} (one channel per PE)"),
    ]
    for ok, text in checks:
        if not ok:
            raise ValueError(f"{where} {text} (preset {cfg.name!r}, no folding)")


# ---------------------------------------------------------------------------------------------
# Quantization

def quantize(net: FloatNet, calib, cfg: ArrayConfig | str = SMALL,
             input_scale: float | None = None, info: dict | None = None) -> QNet:
    """Quantize ``net`` for ``cfg``'s bit widths, calibrating activations on images ``calib``.

    Activations are symmetric with one scale per layer output, chosen so the
    largest calibration value maps to ``2**(act_bits-1) - 1`` (the input's
    scale is ``input_scale``, or the same rule on ``calib``). Each layer then
    takes the largest shift ``k`` for which its weights still fit
    ``weight_bits`` at scale ``s_out / (s_in * 2**k)``, so the weights absorb
    the non-power-of-two part of the rescaling; the bias is rounded to psum
    units ``s_in * s_w``. Raises ValueError when some input could overflow a
    layer's ``psum_bits``.
    """
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    amax = (1 << (cfg.pe.act_bits - 1)) - 1
    wmax = (1 << (cfg.pe.weight_bits - 1)) - 1
    x = as_images("quantize", calib, net.input_shape).astype(np.float64)
    s_in = float(input_scale) if input_scale is not None else float(np.abs(x).max()) / amax
    if not s_in > 0:
        raise ValueError(f"quantize: input_scale must be positive, not {s_in}")
    first_scale = s_in
    layers = []
    for i, fl in enumerate(net.layers):
        y = conv_float(x, fl.weights, fl.bias, fl.stride, fl.padding)
        if fl.relu:
            y = np.maximum(y, 0.0)
        s_out = max(float(np.abs(y).max()), 1e-12) / amax
        w_abs = max(float(np.abs(fl.weights).max()), 1e-12)
        k = math.floor(math.log2(s_out * wmax / (s_in * w_abs)))
        if k < 0:
            k = 0
            s_out = s_in * w_abs / wmax
        s_w = s_out / (s_in * 2.0 ** k)
        w_int = np.clip(np.round(fl.weights / s_w), -wmax - 1, wmax).astype(np.int64)
        b_int = np.round(fl.bias / (s_in * s_w)).astype(np.int64)
        layer = QLayer(w_int, b_int, stride=fl.stride, padding=fl.padding, relu=fl.relu,
                       shift=k, pool=fl.pool, weight_scale=s_w)
        bound = layer.psum_bound(cfg.pe.act_bits)
        if bound >= 1 << (cfg.pe.psum_bits - 1):
            raise ValueError(f"quantize: layer {i} can reach |psum| = {bound}, beyond "
                             f"psum_bits = {cfg.pe.psum_bits}")
        layers.append(layer)
        x = max_pool(y, fl.pool)
        s_in = s_in * s_w * 2.0 ** k
    pe = cfg.pe
    return QNet(tuple(layers), net.input_shape, first_scale, preset=cfg.name,
                act_bits=pe.act_bits, weight_bits=pe.weight_bits,
                psum_bits=pe.psum_bits, info=dict(info or {}))


def quantize_input(qnet: QNet, images) -> np.ndarray:
    """Integer input activations: ``round(images / input_scale)`` saturated to ``act_bits``."""
    x = as_images("quantize_input", images, qnet.input_shape).astype(np.float64)
    return saturate(np.round(x / qnet.input_scale), qnet.act_bits)


# ---------------------------------------------------------------------------------------------
# Integer inference

Conv = Callable[[int, QLayer, np.ndarray], np.ndarray]


def golden_conv(qnet: QNet) -> Conv:
    """The ``conv`` callable of the golden model: `ommatidia.sim.golden.conv2d` with the widths."""
    def conv(index: int, layer: QLayer, x: np.ndarray) -> np.ndarray:
        return golden.conv2d(x, layer.weights, layer.bias, stride=layer.stride,
                             padding=layer.padding, psum_bits=qnet.psum_bits, relu=layer.relu,
                             shift=layer.shift, act_bits=qnet.act_bits)
    return conv


def infer(qnet: QNet, images, conv: Conv | None = None,
          progress: Callable[[int, int, int], None] | None = None,
          batch: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``qnet`` on ``images`` layer by layer; returns (predictions, ofmaps).

    ``conv(layer_index, layer, x)`` computes one layer with its output stage
    on the int ifmap ``x`` (n, C, H, W) and returns the int ofmap
    (n, M, E, F); it defaults to `golden_conv`. Layers run one after the
    other over all images, ``batch`` images per call (default: all), and
    ``progress(layer_index, images_done, images_total)`` is called after each
    call. Host max-pooling follows a layer that has ``pool > 1``.
    ``ofmaps[i]`` is layer i's output as ``conv`` returned it (before
    pooling); predictions are the argmax of the last layer's M outputs.
    """
    conv = conv or golden_conv(qnet)
    x = quantize_input(qnet, images)
    n = x.shape[0]
    step = max(n, 1) if batch is None else batch
    check_int("infer", "batch", step, 1, integral=True)
    shapes = qnet.shapes
    lo, hi = -(1 << (qnet.act_bits - 1)), (1 << (qnet.act_bits - 1)) - 1
    ofmaps = []
    for i, layer in enumerate(qnet.layers):
        m, _, r, s = layer.weights.shape
        _, h, w = shapes[i]
        want = (m, out_size(h, r, layer.stride, layer.padding),
                out_size(w, s, layer.stride, layer.padding))
        parts = []
        for start in range(0, n, step):
            xb = x[start:start + step]
            y = np.asarray(conv(i, layer, xb.copy()))
            if y.shape != (len(xb), *want):
                raise ValueError(f"infer: conv for layer {i} returned shape {y.shape}, "
                                 f"expected {(len(xb), *want)}")
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"infer: conv for layer {i} returned {y.dtype}, not integers")
            if y.size and (y.min() < lo or y.max() > hi):
                raise ValueError(f"infer: conv for layer {i} returned values "
                                 f"{y.min()}..{y.max()} outside act_bits = {qnet.act_bits}")
            parts.append(y.astype(np.int64))
            if progress is not None:
                progress(i, min(start + step, n), n)
        y = np.concatenate(parts) if parts else np.zeros((0, *want), dtype=np.int64)
        ofmaps.append(y)
        x = max_pool(y, layer.pool)
    return x.reshape(n, -1).argmax(axis=1), ofmaps


# ---------------------------------------------------------------------------------------------
# File format (docs/model_format.md)

_LAYER_KEYS = ("weights", "bias", "stride", "padding", "relu", "shift", "pool", "weight_scale")


def _int_dtype(bits: int):
    for dt in (np.int8, np.int16, np.int32):
        if bits <= np.iinfo(dt).bits:
            return dt
    return np.int64


def save(qnet: QNet, path) -> str:
    """Write ``qnet`` to ``path`` (.npz, no pickles, folders created); returns the path."""
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "preset": qnet.preset,
            "act_bits": qnet.act_bits, "weight_bits": qnet.weight_bits,
            "psum_bits": qnet.psum_bits, "input_shape": list(qnet.input_shape),
            "input_scale": qnet.input_scale, "layers": len(qnet.layers), "info": qnet.info}
    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    for i, l in enumerate(qnet.layers):
        arrays.update({
            f"layer{i}.weights": l.weights.astype(_int_dtype(qnet.weight_bits)),
            f"layer{i}.bias": l.bias.astype(_int_dtype(qnet.psum_bits)),
            f"layer{i}.stride": np.int64(l.stride), f"layer{i}.padding": np.int64(l.padding),
            f"layer{i}.relu": np.bool_(l.relu), f"layer{i}.shift": np.int64(l.shift),
            f"layer{i}.pool": np.int64(l.pool),
            f"layer{i}.weight_scale": np.float64(l.weight_scale),
        })
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load(path) -> QNet:
    """Read a `QNet` written by `save`; raises ValueError on a malformed or invalid file."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if "meta" not in data:
        raise ValueError(f"{path}: not an {FORMAT} file (no 'meta' entry)")
    meta = json.loads(str(data.pop("meta")))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {meta.get('format')!r}, not {FORMAT!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: version {meta.get('version')!r} is not supported "
                         f"(this reader knows version {FORMAT_VERSION})")
    n = meta["layers"]
    expected = {f"layer{i}.{k}" for i in range(n) for k in _LAYER_KEYS}
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise ValueError(f"{path}: entries missing {missing}, unexpected {extra}")
    layers = []
    for i in range(n):
        g = {k: data[f"layer{i}.{k}"] for k in _LAYER_KEYS}
        for k in ("stride", "padding", "relu", "shift", "pool", "weight_scale"):
            if g[k].shape != ():
                raise ValueError(f"{path}: layer{i}.{k} must be a scalar, not shape {g[k].shape}")
        if g["relu"].dtype != np.bool_:
            raise ValueError(f"{path}: layer{i}.relu must be a bool, not {g['relu'].dtype}")
        layers.append(QLayer(g["weights"], g["bias"], stride=int(g["stride"]),
                             padding=int(g["padding"]), relu=bool(g["relu"]),
                             shift=int(g["shift"]), pool=int(g["pool"]),
                             weight_scale=float(g["weight_scale"])))
    return QNet(tuple(layers), tuple(meta["input_shape"]), meta["input_scale"],
                preset=meta["preset"], act_bits=meta["act_bits"],
                weight_bits=meta["weight_bits"], psum_bits=meta["psum_bits"], info=meta["info"])
