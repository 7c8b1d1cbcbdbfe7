"""A whole network on the accelerator: float CNN, quantization, integer inference, file format.

A network is a chain of CONV layers (FC layers are CONV layers with H = R,
W = S), each followed on the accelerator by its output stage (bias, ReLU,
shift right with round-half-up, saturation to ``act_bits``) and on the host
by an optional non-overlapping max-pooling. The last layer ends at 1 x 1 and
its M outputs are the class scores.

- `FloatNet` / `FloatLayer`: the float network (training, ONNX import).
- `quantize` turns it into a `QNet` of `QLayer`: ``weight_bits`` weights with a
  scale per layer, ``act_bits`` activations, biases in psum units and a right
  shift per layer, so that each layer is exactly
  `ommatidia.sim.golden.conv2d` with the preset's widths, which the
  hardware reproduces bit for bit.
- `infer` runs a `QNet` layer by layer through a ``conv`` callable (the
  golden model by default, the generated Verilog when the runner plugs in).
- `save` / `load`: the ``.npz`` format of docs/model_format.md.
- `train_digits`: a small CNN trained in numpy on scikit-learn's 8 x 8
  handwritten digits, quantized for the ``small`` preset.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ommatidia.sim import golden

from .config import SMALL, ArrayConfig, preset

__all__ = [
    "FloatLayer", "FloatNet", "QLayer", "QNet", "quantize", "quantize_input", "golden_conv",
    "max_pool", "infer", "save", "load", "digits_data", "digits_net", "train", "train_digits",
    "FORMAT", "FORMAT_VERSION", "DIGITS_INPUT_SCALE", "DIGITS_EPOCHS",
]

FORMAT = "ommatidia-qnet"
FORMAT_VERSION = 1


def _check_int(owner: str, name: str, value, lo: int, hi: int | None = None) -> None:
    """`ommatidia.gen.config.check_int` that also takes numpy integers (from .npz files)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}.{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{owner}.{name} must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name} must be at most {hi}, not {value}")


def _frozen_array(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def _chain(owner: str, layers, input_shape) -> list[tuple[int, int, int]]:
    """Input shape (C, H, W) of every layer and the network's output shape, checked."""
    if not isinstance(input_shape, tuple) or len(input_shape) != 3:
        raise ValueError(f"{owner}.input_shape must be a (C, H, W) tuple, not {input_shape!r}")
    for k, v in zip("CHW", input_shape):
        _check_int(owner, f"input_shape.{k}", v, 1)
    if not isinstance(layers, tuple) or not layers:
        raise ValueError(f"{owner}.layers must be a non-empty tuple of layers, not {layers!r}")
    shapes = [input_shape]
    for i, layer in enumerate(layers):
        c, h, w = shapes[-1]
        m, c2, r, s = layer.weights.shape
        where = f"{owner}.layers[{i}]"
        if c2 != c:
            raise ValueError(f"{where}.weights have C = {c2} channels but the layer's input "
                             f"has C = {c}")
        try:
            e = golden.out_size(h, r, layer.stride, layer.padding)
            f = golden.out_size(w, s, layer.stride, layer.padding)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc} (input {c}x{h}x{w})") from None
        if layer.pool > min(e, f):
            raise ValueError(f"{where}.pool = {layer.pool} must be at most the ofmap size "
                             f"min(E, F) = {min(e, f)}")
        shapes.append((m, e // layer.pool, f // layer.pool))
    if shapes[-1][1:] != (1, 1):
        raise ValueError(f"{owner}: the last layer must end at 1 x 1 (class scores), "
                         f"not {shapes[-1][1]} x {shapes[-1][2]}")
    return shapes


def _normalise(obj, owner: str, kind) -> None:
    """Lists to tuples in ``layers`` and ``input_shape``; every layer of type ``kind``."""
    if isinstance(obj.layers, list):
        object.__setattr__(obj, "layers", tuple(obj.layers))
    if isinstance(obj.input_shape, list):
        object.__setattr__(obj, "input_shape", tuple(obj.input_shape))
    for i, layer in enumerate(obj.layers if isinstance(obj.layers, tuple) else ()):
        if not isinstance(layer, kind):
            raise ValueError(f"{owner}.layers[{i}] must be a {kind.__name__}, not {layer!r}")


def max_pool(x, k: int) -> np.ndarray:
    """Non-overlapping ``k`` x ``k`` max-pooling of (N, C, H, W), stride ``k``, floor mode."""
    x = np.asarray(x)
    if k == 1:
        return x
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    return x[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k).max(axis=(3, 5))


def _images(owner: str, images, input_shape) -> np.ndarray:
    """Images as (N, C, H, W): accepts that, (N, H, W) when C = 1, or flat (N, C*H*W)."""
    x = np.asarray(images)
    n = x.shape[0] if x.ndim else 0
    if x.ndim >= 2 and x.shape[1:] != input_shape and \
            math.prod(x.shape[1:]) == math.prod(input_shape):
        x = x.reshape(n, *input_shape)
    if x.ndim != 4 or x.shape[1:] != input_shape:
        raise ValueError(f"{owner}: images must have shape (N, {', '.join(map(str, input_shape))}) "
                         f"or (N, {math.prod(input_shape)}), not {x.shape}")
    return x


# ---------------------------------------------------------------------------------------------
# The float network

@dataclass(frozen=True, eq=False)
class FloatLayer:
    """A float CONV layer: weights (M, C, R, S), bias (M,), stride U, padding P, ReLU, pool."""

    weights: np.ndarray
    bias: np.ndarray
    stride: int = 1
    padding: int = 0
    relu: bool = False
    pool: int = 1

    def __post_init__(self):
        own = "FloatLayer"
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 4 or 0 in w.shape:
            raise ValueError(f"{own}.weights must be a non-empty (M, C, R, S) array, "
                             f"not shape {w.shape}")
        b = np.asarray(self.bias, dtype=np.float64)
        if b.shape != (w.shape[0],):
            raise ValueError(f"{own}.bias must have shape ({w.shape[0]},), not {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"{own}.weights and bias must be finite")
        _check_int(own, "stride", self.stride, 1)
        _check_int(own, "padding", self.padding, 0)
        _check_int(own, "pool", self.pool, 1)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ValueError(f"{own}.relu must be a bool, not {self.relu!r}")
        object.__setattr__(self, "weights", _frozen_array(w))
        object.__setattr__(self, "bias", _frozen_array(b))
        object.__setattr__(self, "relu", bool(self.relu))
        for name in ("stride", "padding", "pool"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float output (N, M, E', F'): convolution, bias, ReLU, max-pooling."""
        y = _conv_float(x, self.weights, self.bias, self.stride, self.padding)
        if self.relu:
            y = np.maximum(y, 0.0)
        return max_pool(y, self.pool)


@dataclass(frozen=True, eq=False)
class FloatNet:
    """A chain of `FloatLayer` on (C, H, W) inputs ending in M class scores."""

    layers: tuple
    input_shape: tuple

    def __post_init__(self):
        _normalise(self, "FloatNet", FloatLayer)
        _chain("FloatNet", self.layers, self.input_shape)

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """Input (C, H, W) of each layer, then the output (M, 1, 1)."""
        return _chain("FloatNet", self.layers, self.input_shape)

    def forward(self, images) -> np.ndarray:
        """Class scores (N, M) of ``images``."""
        x = _images("FloatNet.forward", images, self.input_shape).astype(np.float64)
        for layer in self.layers:
            x = layer.forward(x)
        return x.reshape(x.shape[0], -1)

    def predict(self, images) -> np.ndarray:
        return self.forward(images).argmax(axis=1)


def _windows(x: np.ndarray, r: int, s: int, u: int, p: int) -> np.ndarray:
    """Receptive fields (N, E, F, C, R, S) of a CONV layer."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    v = np.lib.stride_tricks.sliding_window_view(xp, (r, s), axis=(2, 3))[:, :, ::u, ::u]
    return v.transpose(0, 2, 3, 1, 4, 5)


def _conv_float(x, w, b, u, p) -> np.ndarray:
    m = w.shape[0]
    cols = _windows(x, w.shape[2], w.shape[3], u, p)
    n, e, f = cols.shape[:3]
    y = cols.reshape(n, e, f, -1) @ w.reshape(m, -1).T + b
    return y.transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------
# Training (numpy, Adam, softmax cross-entropy)

def _forward_train(net: FloatNet, x: np.ndarray):
    caches = []
    for layer in net.layers:
        w = layer.weights
        cols = _windows(x, w.shape[2], w.shape[3], layer.stride, layer.padding)
        n, e, f = cols.shape[:3]
        cols = cols.reshape(n, e, f, -1)
        z = cols @ w.reshape(w.shape[0], -1).T + layer.bias
        a = np.maximum(z, 0.0) if layer.relu else z
        k = layer.pool
        if k > 1:
            eo, fo = e // k, f // k
            blocks = a[:, :eo * k, :fo * k].reshape(n, eo, k, fo, k, -1).transpose(0, 1, 3, 5, 2, 4)
            blocks = blocks.reshape(n, eo, fo, -1, k * k)
            arg = blocks.argmax(axis=-1)
            out = np.take_along_axis(blocks, arg[..., None], -1)[..., 0]
        else:
            arg, out = None, a
        caches.append((x.shape, cols, z, arg))
        x = out.transpose(0, 3, 1, 2)
    return x.reshape(x.shape[0], -1), caches


def _backward(net: FloatNet, caches, dlogits: np.ndarray):
    grads = [None] * len(net.layers)
    d = dlogits.reshape(dlogits.shape[0], 1, 1, -1)
    for i in reversed(range(len(net.layers))):
        layer = net.layers[i]
        xshape, cols, z, arg = caches[i]
        n, e, f, _ = z.shape
        k = layer.pool
        if k > 1:
            eo, fo = e // k, f // k
            m = z.shape[-1]
            onehot = (np.arange(k * k) == arg[..., None]) * d[..., None]
            da = np.zeros_like(z)
            da[:, :eo * k, :fo * k] = onehot.reshape(n, eo, fo, m, k, k) \
                .transpose(0, 1, 4, 2, 5, 3).reshape(n, eo * k, fo * k, m)
        else:
            da = d
        dz = da * (z > 0) if layer.relu else da
        w = layer.weights
        m, c, r, s = w.shape
        dw = np.einsum("nefk,nefm->mk", cols, dz).reshape(w.shape)
        db = dz.sum(axis=(0, 1, 2))
        grads[i] = (dw, db)
        if i == 0:
            break
        dcols = (dz @ w.reshape(m, -1)).reshape(n, e, f, c, r, s)
        u, p = layer.stride, layer.padding
        _, _, h, wd = xshape
        dxp = np.zeros((n, c, h + 2 * p, wd + 2 * p))
        for ri in range(r):
            for si in range(s):
                dxp[:, :, ri:ri + u * (e - 1) + 1:u, si:si + u * (f - 1) + 1:u] += \
                    dcols[..., ri, si].transpose(0, 3, 1, 2)
        d = dxp[:, :, p:p + h, p:p + wd].transpose(0, 2, 3, 1)
    return grads


def train(net: FloatNet, x, y, *, epochs: int, batch: int = 32, lr: float = 0.01,
          weight_decay: float = 1e-4, seed: int = 0) -> FloatNet:
    """Train ``net`` on images ``x`` with labels ``y`` by Adam on softmax cross-entropy."""
    x = _images("train", x, net.input_shape).astype(np.float64)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    params = [[np.array(l.weights), np.array(l.bias)] for l in net.layers]
    mom = [[np.zeros_like(a) for a in pair] for pair in params]
    vel = [[np.zeros_like(a) for a in pair] for pair in params]
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            cur = dataclasses.replace(net, layers=tuple(
                dataclasses.replace(l, weights=w, bias=b)
                for l, (w, b) in zip(net.layers, params)))
            logits, caches = _forward_train(cur, x[idx])
            prob = np.exp(logits - logits.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
            prob[np.arange(len(idx)), y[idx]] -= 1.0
            grads = _backward(cur, caches, prob / len(idx))
            t += 1
            for pair, gpair, mpair, vpair in zip(params, grads, mom, vel):
                for j, (a, g) in enumerate(zip(pair, gpair)):
                    if j == 0:
                        g = g + weight_decay * a
                    mpair[j] = b1 * mpair[j] + (1 - b1) * g
                    vpair[j] = b2 * vpair[j] + (1 - b2) * g * g
                    mhat = mpair[j] / (1 - b1 ** t)
                    vhat = vpair[j] / (1 - b2 ** t)
                    pair[j] = a - lr * mhat / (np.sqrt(vhat) + eps)
    return dataclasses.replace(net, layers=tuple(
        dataclasses.replace(l, weights=w, bias=b) for l, (w, b) in zip(net.layers, params)))


# ---------------------------------------------------------------------------------------------
# The quantized network

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
        _check_int(own, "stride", self.stride, 1)
        _check_int(own, "padding", self.padding, 0)
        _check_int(own, "shift", self.shift, 0, 62)
        _check_int(own, "pool", self.pool, 1)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ValueError(f"{own}.relu must be a bool, not {self.relu!r}")
        if isinstance(self.weight_scale, bool) or \
                not isinstance(self.weight_scale, (int, float, np.floating)) or \
                not (math.isfinite(self.weight_scale) and self.weight_scale > 0):
            raise ValueError(f"{own}.weight_scale must be a positive finite number, "
                             f"not {self.weight_scale!r}")
        object.__setattr__(self, "weights", _frozen_array(w.astype(np.int64)))
        object.__setattr__(self, "bias", _frozen_array(b.astype(np.int64)))
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
        _normalise(self, own, QLayer)
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
        shapes = _chain(own, self.layers, self.input_shape)
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
        return _chain("QNet", self.layers, self.input_shape)

    @property
    def out_scales(self) -> list[float]:
        """Real value of one output LSB of each layer."""
        scales, s = [], self.input_scale
        for layer in self.layers:
            s = s * layer.weight_scale * 2.0 ** layer.shift
            scales.append(s)
        return scales

    def conv_layers(self, n: int = 1) -> list:
        """Shape of each layer on ``n`` images as an `ommatidia.sim.array_model.ConvLayer`."""
        from ommatidia.sim.array_model import ConvLayer
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
    e = golden.out_size(h, r, layer.stride, layer.padding)
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
    x = _images("quantize", calib, net.input_shape).astype(np.float64)
    s_in = float(input_scale) if input_scale is not None else float(np.abs(x).max()) / amax
    if not s_in > 0:
        raise ValueError(f"quantize: input_scale must be positive, not {s_in}")
    first_scale = s_in
    layers = []
    for i, fl in enumerate(net.layers):
        y = _conv_float(x, fl.weights, fl.bias, fl.stride, fl.padding)
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
    x = _images("quantize_input", images, qnet.input_shape).astype(np.float64)
    return golden.saturate(np.round(x / qnet.input_scale), qnet.act_bits)


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
    _check_int("infer", "batch", step, 1)
    shapes = qnet.shapes
    lo, hi = -(1 << (qnet.act_bits - 1)), (1 << (qnet.act_bits - 1)) - 1
    ofmaps = []
    for i, layer in enumerate(qnet.layers):
        m, _, r, s = layer.weights.shape
        _, h, w = shapes[i]
        want = (m, golden.out_size(h, r, layer.stride, layer.padding),
                golden.out_size(w, s, layer.stride, layer.padding))
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


# ---------------------------------------------------------------------------------------------
# The handwritten digits

DIGITS_HELD_OUT = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_INPUT_SCALE = 1 / 7
"""Pixels 0..16 enter as 7 * pixel, 0..112: exact in 8 bits."""


def digits_data(split_seed: int = DIGITS_SPLIT_SEED, held_out: float = DIGITS_HELD_OUT):
    """scikit-learn's 8 x 8 digits (pixels 0..16), split per class with a fixed seed.

    Returns ``(x_train, y_train, x_held_out, y_held_out)``, images (N, 1, 8, 8).
    """
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.images.astype(np.float64).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(split_seed)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        test[idx[:round(held_out * len(idx))]] = True
    return x[~test], y[~test], x[test], y[test]


def digits_net(seed: int = 0, c1: int = 8, c2: int = 16) -> FloatNet:
    """The digits CNN, He-initialised: CONV 3x3 (1->c1) ReLU pool 2; CONV 3x3 pad 1 (c1->c2)
    ReLU; FC (c2*3*3 -> 10) as a 3x3 CONV."""
    rng = np.random.default_rng(seed)

    def he(m, c, r, s):
        return rng.normal(0.0, math.sqrt(2.0 / (c * r * s)), (m, c, r, s))
    return FloatNet((
        FloatLayer(he(c1, 1, 3, 3), np.zeros(c1), relu=True, pool=2),
        FloatLayer(he(c2, c1, 3, 3), np.zeros(c2), padding=1, relu=True),
        FloatLayer(he(10, c2, 3, 3), np.zeros(10)),
    ), (1, 8, 8))


def _pixel_units(net: FloatNet, divisor: float) -> FloatNet:
    """The same network taking inputs ``divisor`` times larger (first weights divided)."""
    first = net.layers[0]
    return dataclasses.replace(net, layers=(
        dataclasses.replace(first, weights=first.weights / divisor), *net.layers[1:]))


DIGITS_EPOCHS = 30


def train_digits(seed: int = 0, epochs: int = DIGITS_EPOCHS, cfg: ArrayConfig | str = SMALL,
                 c1: int = 8, c2: int = 16, lr: float = 0.01, batch: int = 32):
    """Train, quantize and evaluate the digits CNN; returns (float_net, qnet, report).

    Trains on pixels / 16 and folds the 1/16 into the first layer, so the
    float network takes raw pixels like the quantized one. Accuracies are on
    the held-out split; the report also goes into ``qnet.info``.
    """
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = digits_data()
    net = train(digits_net(seed, c1, c2), xtr / 16.0, ytr, epochs=epochs, batch=batch, lr=lr,
                seed=seed)
    net = _pixel_units(net, 16.0)
    t_train = time.perf_counter() - t0
    float_pred = net.predict(xte)
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    qnet = quantize(net, xtr, cfg, input_scale=DIGITS_INPUT_SCALE)
    q_pred, _ = infer(qnet, xte)
    import sklearn
    report = {
        "dataset": "sklearn.datasets.load_digits", "sklearn": sklearn.__version__,
        "seed": seed, "split_seed": DIGITS_SPLIT_SEED, "epochs": epochs, "lr": lr,
        "batch": batch, "train_images": int(len(ytr)), "held_out_images": int(len(yte)),
        "train_float_accuracy": float((net.predict(xtr) == ytr).mean()),
        "float_accuracy": float((float_pred == yte).mean()),
        "quantized_accuracy": float((q_pred == yte).mean()),
        "agreement": float((q_pred == float_pred).mean()),
        "train_seconds": round(t_train, 3),
        "seconds": round(time.perf_counter() - t0, 3),
        "preset": cfg.name,
        "layers": [{"shape": list(l.weights.shape), "stride": l.stride, "padding": l.padding,
                    "relu": l.relu, "pool": l.pool, "shift": l.shift,
                    "weight_scale": l.weight_scale, "out_scale": s,
                    "psum_bound": l.psum_bound(cfg.pe.act_bits)}
                   for l, s in zip(qnet.layers, qnet.out_scales)],
    }
    qnet = dataclasses.replace(qnet, info=report)
    return net, qnet, report
