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

from ommatidia.gen.arith import output_stage, saturate
from ommatidia.gen.config import (SMALL, ArrayConfig, check_int, config_fields,
                                   config_from_fields, preset)
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.mapper import check_fits
from ommatidia.sim import golden

from .hostops import HostOp, pad
from .net import (FloatNet, as_images, chain_shapes, check_host_fields, frozen_array,
                  group_slices, host_after, normalise_layers)

__all__ = ["QLayer", "QNet", "quantize", "quantize_input", "golden_conv", "infer", "save",
           "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "ommatidia-qnet"
FORMAT_VERSION = 3


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
    groups, host_pad, subsample, host
        Grouped CONV (one accelerator layer per group) and the host's work
        (`ommatidia.nn.net`, `ommatidia.nn.hostops`), on the integer activations.
    """

    weights: np.ndarray
    bias: np.ndarray
    stride: int = 1
    padding: int = 0
    relu: bool = False
    shift: int = 0
    pool: int = 1
    weight_scale: float = 1.0
    groups: int = 1
    host_pad: tuple = (0, 0, 0, 0)
    subsample: tuple = (1, 1)
    host: tuple = ()

    def __post_init__(self):
        own = "QLayer"
        check_host_fields(own, self)
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

    def accelerator_layers(self) -> list[tuple[slice, "QLayer"]]:
        """(input channels, the layer of one group) of each group: what the accelerator
        runs, in order; the layer itself when ``groups`` is 1 and nothing runs on the
        host."""
        if self.groups == 1:
            return [(slice(None), self)]
        return [(cs, QLayer(self.weights[ms], self.bias[ms], stride=self.stride,
                            padding=self.padding, relu=self.relu, shift=self.shift,
                            weight_scale=self.weight_scale))
                for cs, ms in group_slices(self)]

    def psum_bound(self, act_bits: int) -> int:
        """Largest |psum + bias| any ``act_bits`` input can produce: no wrap below it."""
        per_filter = np.abs(self.weights).reshape(self.weights.shape[0], -1).sum(axis=1)
        return int((per_filter * (1 << (act_bits - 1)) + np.abs(self.bias)).max())


@dataclass(frozen=True, eq=False)
class QNet:
    """A quantized network for the accelerator configuration ``config`` (an
    `ommatidia.gen.config.ArrayConfig`; None: the preset named ``preset``, by default
    ``small``). ``preset`` becomes the configuration's name (given with ``config``, it
    must be that name).

    Checks that the widths are the configuration's, every weight fits ``weight_bits``,
    every bias ``psum_bits``, that the layers chain from ``input_shape`` to 1 x 1 class
    scores, and that each layer (each group of it) has a mapping on the configuration
    (`ommatidia.gen.mapper.check_fits`: S, the padded width and U within the
    PE's limits, the smallest round within the GLB; R and E fold onto the array).
    ``input_scale`` is the real value of one input LSB: an image ``x`` enters
    as ``round(x / input_scale)`` saturated to ``act_bits``. ``info`` holds
    JSON metadata (accuracies, training settings).
    """

    layers: tuple
    input_shape: tuple
    input_scale: float
    preset: str | None = None
    act_bits: int = 8
    weight_bits: int = 8
    psum_bits: int = 24
    info: dict = field(default_factory=dict)
    config: ArrayConfig | None = None

    def __post_init__(self):
        own = "QNet"
        normalise_layers(self, own, QLayer)
        cfg = self.config
        if cfg is None:
            try:
                cfg = preset("small" if self.preset is None else self.preset)
            except ValueError as exc:
                raise ValueError(f"{own}.preset: {exc}") from None
        elif not isinstance(cfg, ArrayConfig):
            raise ValueError(f"{own}.config must be an ArrayConfig, not {cfg!r}")
        elif self.preset is not None and self.preset != cfg.name:
            raise ValueError(f"{own}.preset = {self.preset!r} differs from the name of its "
                             f"config, {cfg.name!r}")
        object.__setattr__(self, "config", cfg)
        object.__setattr__(self, "preset", cfg.name)
        for name in ("act_bits", "weight_bits", "psum_bits"):
            value = getattr(self, name)
            want = getattr(cfg.pe, name)
            if value != want:
                raise ValueError(f"{own}.{name} = {value!r} differs from preset "
                                 f"{cfg.name!r}, whose {name} is {want}")
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
        chain_shapes(own, self.layers, self.input_shape)
        wlim = 1 << (self.weight_bits - 1)
        plim = 1 << (self.psum_bits - 1)
        convs = self.conv_layers(1)
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
            try:
                check_fits(cfg, convs[i])
            except ValueError as exc:
                raise ValueError(f"{where} does not fit preset {cfg.name!r}: {exc}") from None

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
        """Shape of each layer (of one of its groups) on ``n`` images, as the accelerator
        runs it (host padding included), as an `ommatidia.gen.layer.ConvLayer`."""
        out = []
        for layer, (_, h, w) in zip(self.layers, self.shapes):
            m, c, r, s = layer.weights.shape
            t, left, b, right = layer.host_pad
            out.append(ConvLayer(N=n, C=c, M=m // layer.groups, H=h + t + b,
                                 W=w + left + right, R=r, S=s, U=layer.stride,
                                 P=layer.padding))
        return out


# ---------------------------------------------------------------------------------------------
# Quantization

def model_scale(quant, amax: int) -> float:
    """The activation scale of a model's QuantizeLinear ``quant`` = (scale, largest code
    from the zero point) on ``act_bits`` = log2(amax + 1) + 1 bits: its scale, times the
    power of two that brings its largest code within ``amax`` (so the model's grid is
    kept whenever the preset is at least as wide)."""
    scale, top = quant
    return float(scale) * 2.0 ** max(0, math.ceil(math.log2(top / amax)))


def _layer_psums(layer: QLayer, x: np.ndarray) -> np.ndarray:
    """Exact psums plus bias (no wrap) of ``layer`` on the int input ``x``, host padding
    included."""
    x = pad(x, layer.host_pad)
    parts = [golden.conv2d_psums(x[:, cs], g.weights, stride=g.stride, padding=g.padding,
                                 psum_bits=64) + g.bias.reshape(1, -1, 1, 1)
             for cs, g in layer.accelerator_layers()]
    return np.concatenate(parts, axis=1)


def quantize(net: FloatNet, calib, cfg: ArrayConfig | str = SMALL,
             input_scale: float | None = None, info: dict | None = None) -> QNet:
    """Quantize ``net`` for ``cfg``'s bit widths, calibrating activations on images ``calib``.

    Activations are symmetric with one scale per layer output, chosen so the
    largest calibration value maps to ``2**(act_bits-1) - 1``, unless the model
    gives it (``out_quant``, `model_scale`); the input's scale is ``input_scale``,
    else the model's (``net.input_quant``), else the same rule on ``calib``. Each
    layer then takes the largest shift ``k`` for which its weights still fit
    ``weight_bits`` at scale ``s_out / (s_in * 2**k)``, so the weights absorb the
    non-power-of-two part of the rescaling; the bias is rounded to psum units
    ``s_in * s_w``. The psums are checked on ``calib`` through the integer
    network: while a layer's largest |psum + bias| there is beyond ``psum_bits``,
    ``k`` is lowered (the weights halve, the output scale stays); at ``k = 0`` it
    raises ValueError. ``info["psums"]`` gives per layer that largest value on the
    calibration images, the worst case over all inputs (`QLayer.psum_bound`) and the
    limit.
    """
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    pe = cfg.pe
    amax = (1 << (pe.act_bits - 1)) - 1
    wmax = (1 << (pe.weight_bits - 1)) - 1
    limit = (1 << (pe.psum_bits - 1)) - 1
    x = as_images("quantize", calib, net.input_shape).astype(np.float64)
    if input_scale is not None:
        s_in = float(input_scale)
    elif net.input_quant is not None:
        s_in = model_scale(net.input_quant, amax)
    else:
        s_in = float(np.abs(x).max()) / amax
    if not s_in > 0:
        raise ValueError(f"quantize: input_scale must be positive, not {s_in}")
    first_scale = s_in
    x_int = saturate(np.round(x / s_in), pe.act_bits)
    layers, psums = [], []
    for i, fl in enumerate(net.layers):
        y = fl.accelerated(x)
        if fl.out_quant is not None:
            s_out = model_scale(fl.out_quant, amax)
        else:
            s_out = max(float(np.abs(y).max()), 1e-12) / amax
        w_abs = max(float(np.abs(fl.weights).max()), 1e-12)
        k = math.floor(math.log2(s_out * wmax / (s_in * w_abs)))
        if k < 0:
            k = 0
            s_out = s_in * w_abs / wmax
        while True:
            s_w = s_out / (s_in * 2.0 ** k)
            w_int = np.clip(np.round(fl.weights / s_w), -wmax - 1, wmax).astype(np.int64)
            b_int = np.round(fl.bias / (s_in * s_w)).astype(np.int64)
            layer = QLayer(w_int, b_int, stride=fl.stride, padding=fl.padding, relu=fl.relu,
                           shift=k, pool=fl.pool, weight_scale=s_w, groups=fl.groups,
                           host_pad=fl.host_pad, subsample=fl.subsample, host=fl.host)
            p = _layer_psums(layer, x_int)
            reached = int(np.abs(p).max()) if p.size else 0
            if reached <= limit:
                break
            if k == 0:
                raise ValueError(f"quantize: layer {i} reaches |psum| = {reached} on the "
                                 f"calibration images, beyond psum_bits = {pe.psum_bits} "
                                 f"(at most {limit}), even with shift 0")
            k -= 1
        psums.append({"layer": i, "calibration": reached,
                      "worst_case": layer.psum_bound(pe.act_bits), "limit": limit})
        layers.append(layer)
        x = host_after(fl, y, integer=False)
        x_int = host_after(layer, output_stage(p, relu=layer.relu, shift=k,
                                               act_bits=pe.act_bits), integer=True)
        s_in = s_in * s_w * 2.0 ** k
    return QNet(tuple(layers), net.input_shape, first_scale, config=cfg,
                act_bits=pe.act_bits, weight_bits=pe.weight_bits,
                psum_bits=pe.psum_bits, info={**(info or {}), "psums": psums})


def quantize_input(qnet: QNet, images) -> np.ndarray:
    """Integer input activations: ``round(images / input_scale)`` saturated to ``act_bits``."""
    x = as_images("quantize_input", images, qnet.input_shape).astype(np.float64)
    return saturate(np.round(x / qnet.input_scale), qnet.act_bits)


# ---------------------------------------------------------------------------------------------
# Integer inference

Conv = Callable[[int, QLayer, np.ndarray], np.ndarray]


def golden_conv(qnet: QNet) -> Conv:
    """The ``conv`` callable of the golden model: `ommatidia.sim.golden.conv2d` with the widths,
    once per group."""
    def conv(index: int, layer: QLayer, x: np.ndarray) -> np.ndarray:
        return np.concatenate([
            golden.conv2d(x[:, cs], g.weights, g.bias, stride=g.stride, padding=g.padding,
                          psum_bits=qnet.psum_bits, relu=g.relu, shift=g.shift,
                          act_bits=qnet.act_bits)
            for cs, g in layer.accelerator_layers()], axis=1)
    return conv


def infer(qnet: QNet, images, conv: Conv | None = None,
          progress: Callable[[int, int, int], None] | None = None,
          batch: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``qnet`` on ``images`` layer by layer; returns (predictions, ofmaps).

    ``conv(layer_index, layer, x)`` computes one layer with its output stage
    on the int ifmap ``x`` (n, C, H, W), host padding included, every group of
    a grouped layer (`QLayer.accelerator_layers`), and returns the int ofmap
    (n, M, E, F); it defaults to `golden_conv`. Layers run one after the
    other over all images, ``batch`` images per call (default: all), and
    ``progress(layer_index, images_done, images_total)`` is called after each
    call. The host pads the input before a layer and runs
    `ommatidia.nn.net.host_after` after it (subsampling, ``pool``, host
    operators). ``ofmaps[i]`` is layer i's output as ``conv`` returned it
    (before the host's work); predictions are the argmax of the last layer's M
    outputs.
    """
    conv = conv or golden_conv(qnet)
    x = quantize_input(qnet, images)
    n = x.shape[0]
    step = max(n, 1) if batch is None else batch
    check_int("infer", "batch", step, 1, integral=True)
    lo, hi = -(1 << (qnet.act_bits - 1)), (1 << (qnet.act_bits - 1)) - 1
    ofmaps = []
    for i, (layer, shape) in enumerate(zip(qnet.layers, qnet.conv_layers(1))):
        want = (shape.M * layer.groups, shape.E, shape.F)
        x = pad(x, layer.host_pad)
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
        x = host_after(layer, y, integer=True)
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
            "config": config_fields(qnet.config),
            "act_bits": qnet.act_bits, "weight_bits": qnet.weight_bits,
            "psum_bits": qnet.psum_bits, "input_shape": list(qnet.input_shape),
            "input_scale": qnet.input_scale, "layers": len(qnet.layers), "info": qnet.info,
            "host": [{"groups": l.groups, "host_pad": list(l.host_pad),
                      "subsample": list(l.subsample), "ops": [op.as_dict() for op in l.host]}
                     for l in qnet.layers]}
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


def _host_fields(entry: dict) -> dict:
    """The `QLayer` keyword arguments of a layer's ``host`` entry in the meta JSON."""
    try:
        return {"groups": entry.get("groups", 1),
                "host_pad": tuple(entry.get("host_pad", (0, 0, 0, 0))),
                "subsample": tuple(entry.get("subsample", (1, 1))),
                "host": tuple(HostOp(**op) for op in entry.get("ops", ()))}
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"malformed host entry {entry!r}: {exc}") from None


def load(path) -> QNet:
    """Read a `QNet` written by `save`; raises ValueError on a malformed or invalid file."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if "meta" not in data:
        raise ValueError(f"{path}: not an {FORMAT} file (no 'meta' entry)")
    meta = json.loads(str(data.pop("meta")))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {meta.get('format')!r}, not {FORMAT!r}")
    if meta.get("version") not in (1, 2, FORMAT_VERSION):
        raise ValueError(f"{path}: version {meta.get('version')!r} is not supported "
                         f"(this reader knows versions 1 to {FORMAT_VERSION})")
    n = meta["layers"]
    host = meta.get("host", [{}] * n) if meta["version"] > 1 else [{}] * n
    if not isinstance(host, list) or len(host) != n:
        raise ValueError(f"{path}: meta 'host' must be a list of {n} entries")
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
                             weight_scale=float(g["weight_scale"]), **_host_fields(host[i])))
    return QNet(tuple(layers), tuple(meta["input_shape"]), meta["input_scale"],
                preset=meta["preset"], act_bits=meta["act_bits"],
                weight_bits=meta["weight_bits"], psum_bits=meta["psum_bits"], info=meta["info"],
                config=_config(path, meta))


def _config(path, meta: dict) -> ArrayConfig | None:
    """The configuration recorded in a version 3 file's ``meta`` (None before: the preset
    its name gives)."""
    if meta["version"] < 3:
        return None
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path}: meta 'config' must be the configuration's fields")
    try:
        return config_from_fields(meta["config"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: meta 'config': {exc}") from None
