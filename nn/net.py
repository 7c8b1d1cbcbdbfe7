"""The float network: a chain of CONV layers, its forward pass and its training in numpy.

A network is a chain of CONV layers (FC layers are CONV layers with H = R,
W = S), each followed on the accelerator by its output stage (bias, ReLU,
shift right with round-half-up, saturation to ``act_bits``) and on the host
by an optional non-overlapping max-pooling. The last layer ends at 1 x 1 and
its M outputs are the class scores.

- `FloatNet` / `FloatLayer`: the float network, as training
  (`ommatidia.nn.digits`) or ONNX import (`ommatidia.nn.onnx_import`) make it
  and `ommatidia.nn.quant.quantize` takes it.
- `train`: Adam on softmax cross-entropy, in numpy.
- `chain_shapes`, `as_images`, `max_pool`, `host_after`, `group_slices`: the checks
  and the host work (`ommatidia.nn.hostops`) the float and the quantized network share.

A layer may also carry what the accelerator cannot express: ``groups`` (a grouped
or depthwise CONV, run as one accelerator layer per group), ``host_pad`` (zeros
added on the host beyond P, for asymmetric pads), ``subsample`` (rows and columns
dropped on the host, for unequal strides) and ``host`` (`ommatidia.nn.hostops.HostOp`
after the layer and its pooling).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ommatidia.gen.arith import out_size
from ommatidia.gen.config import check_int

from .hostops import HostOp, apply_ops, ops_shape, pad, subsample

__all__ = ["FloatLayer", "FloatNet", "train", "max_pool", "chain_shapes", "as_images",
           "conv_float", "host_after", "group_slices", "check_host_fields", "is_plain",
           "host_work"]


def frozen_array(a: np.ndarray) -> np.ndarray:
    """A read-only copy of ``a``, so a frozen layer's arrays cannot change under it."""
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def chain_shapes(owner: str, layers, input_shape) -> list[tuple[int, int, int]]:
    """Input shape (C, H, W) of every layer and the network's output shape, checked."""
    if not isinstance(input_shape, tuple) or len(input_shape) != 3:
        raise ValueError(f"{owner}.input_shape must be a (C, H, W) tuple, not {input_shape!r}")
    for k, v in zip("CHW", input_shape):
        check_int(owner, f"input_shape.{k}", v, 1, integral=True)
    if not isinstance(layers, tuple) or not layers:
        raise ValueError(f"{owner}.layers must be a non-empty tuple of layers, not {layers!r}")
    shapes = [input_shape]
    for i, layer in enumerate(layers):
        c, h, w = shapes[-1]
        m, c2, r, s = layer.weights.shape
        where = f"{owner}.layers[{i}]"
        g = layer.groups
        if c2 * g != c:
            per = f" per group x {g} groups" if g > 1 else ""
            raise ValueError(f"{where}.weights have C = {c2} channels{per} but the layer's "
                             f"input has C = {c}")
        if m % g:
            raise ValueError(f"{where}.weights have M = {m} filters, not a multiple of "
                             f"groups = {g}")
        t, left, b, right = layer.host_pad
        try:
            e = out_size(h + t + b, r, layer.stride, layer.padding)
            f = out_size(w + left + right, s, layer.stride, layer.padding)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc} (input {c}x{h}x{w})") from None
        e, f = -(-e // layer.subsample[0]), -(-f // layer.subsample[1])
        if layer.pool > min(e, f):
            raise ValueError(f"{where}.pool = {layer.pool} must be at most the ofmap size "
                             f"min(E, F) = {min(e, f)}")
        try:
            shapes.append(ops_shape(layer.host, (m, e // layer.pool, f // layer.pool)))
        except ValueError as exc:
            raise ValueError(f"{where}.host: {exc}") from None
    if shapes[-1][1:] != (1, 1):
        raise ValueError(f"{owner}: the last layer must end at 1 x 1 (class scores), "
                         f"not {shapes[-1][1]} x {shapes[-1][2]}")
    return shapes


def normalise_layers(obj, owner: str, kind) -> None:
    """Lists to tuples in ``layers`` and ``input_shape``; every layer of type ``kind``."""
    if isinstance(obj.layers, list):
        object.__setattr__(obj, "layers", tuple(obj.layers))
    if isinstance(obj.input_shape, list):
        object.__setattr__(obj, "input_shape", tuple(obj.input_shape))
    for i, layer in enumerate(obj.layers if isinstance(obj.layers, tuple) else ()):
        if not isinstance(layer, kind):
            raise ValueError(f"{owner}.layers[{i}] must be a {kind.__name__}, not {layer!r}")


def check_host_fields(owner: str, layer) -> None:
    """Validate and normalise ``groups``, ``host_pad``, ``subsample`` and ``host`` of a
    float or quantized layer (frozen: set through ``object.__setattr__``)."""
    check_int(owner, "groups", layer.groups, 1, integral=True)
    object.__setattr__(layer, "groups", int(layer.groups))
    for name, n, low in (("host_pad", 4, 0), ("subsample", 2, 1)):
        v = getattr(layer, name)
        if not isinstance(v, (tuple, list)) or len(v) != n:
            raise ValueError(f"{owner}.{name} must be a tuple of {n} integers, not {v!r}")
        for k, x in enumerate(v):
            check_int(owner, f"{name}[{k}]", x, low, integral=True)
        object.__setattr__(layer, name, tuple(int(x) for x in v))
    ops = tuple(layer.host) if isinstance(layer.host, (tuple, list)) else None
    if ops is None or not all(isinstance(op, HostOp) for op in ops):
        raise ValueError(f"{owner}.host must be a tuple of HostOp, not {layer.host!r}")
    object.__setattr__(layer, "host", ops)


def check_quant(owner: str, name: str, value) -> None:
    """``value`` must be None or (scale > 0, largest code >= 1)."""
    ok = value is None or (isinstance(value, tuple) and len(value) == 2 and
                           isinstance(value[0], float) and math.isfinite(value[0]) and
                           value[0] > 0 and isinstance(value[1], int) and value[1] >= 1)
    if not ok:
        raise ValueError(f"{owner}.{name} must be None or (scale, largest code), a positive "
                         f"float and a positive int, not {value!r}")


def is_plain(layer) -> bool:
    """Whether ``layer`` has nothing but the accelerator's CONV and a ``pool``."""
    return layer.groups == 1 and not any(layer.host_pad) and \
        layer.subsample == (1, 1) and not layer.host


def host_work(layer) -> list[str]:
    """What runs on the host for ``layer`` beyond its ``pool``, in words (none for a plain
    layer): what ``ommatidia net run`` and ``net import`` print."""
    out = []
    if layer.groups > 1:
        out.append(f"{layer.groups} groups, one accelerator layer each")
    if any(layer.host_pad):
        out.append(f"zero padding {layer.host_pad} (top, left, bottom, right) beyond P = "
                   f"{layer.padding}")
    if layer.subsample != (1, 1):
        out.append(f"every {layer.subsample[0]}th row and {layer.subsample[1]}th column of the "
                   f"stride-{layer.stride} output")
    if layer.pool > 1 and not is_plain(layer):
        out.append(f"max_pool {layer.pool}x{layer.pool} /{layer.pool}")
    out.extend(op.describe() for op in layer.host)
    return out


def group_slices(layer) -> list[tuple[slice, slice]]:
    """(input channels, filters) of each group of ``layer``: one accelerator layer each."""
    m, cg = layer.weights.shape[:2]
    mg = m // layer.groups
    return [(slice(g * cg, (g + 1) * cg), slice(g * mg, (g + 1) * mg))
            for g in range(layer.groups)]


def host_after(layer, y: np.ndarray, integer: bool) -> np.ndarray:
    """What the host does to a layer's accelerator output ``y``: subsampling, ``pool``,
    then the `HostOp` of ``layer.host``."""
    return apply_ops(layer.host, max_pool(subsample(y, layer.subsample), layer.pool), integer)


def max_pool(x, k: int) -> np.ndarray:
    """Non-overlapping ``k`` x ``k`` max-pooling of (N, C, H, W), stride ``k``, floor mode."""
    x = np.asarray(x)
    if k == 1:
        return x
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    return x[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k).max(axis=(3, 5))


def as_images(owner: str, images, input_shape) -> np.ndarray:
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


@dataclass(frozen=True, eq=False)
class FloatLayer:
    """A float CONV layer: weights (M, C / groups, R, S), bias (M,), stride U, padding P,
    ReLU, pool, the host fields of the module docstring, and ``out_quant``, the
    quantization of its output when the model gives one (QuantizeLinear): (scale,
    largest code from the zero point), else None (calibration finds it)."""

    weights: np.ndarray
    bias: np.ndarray
    stride: int = 1
    padding: int = 0
    relu: bool = False
    pool: int = 1
    groups: int = 1
    host_pad: tuple = (0, 0, 0, 0)
    subsample: tuple = (1, 1)
    host: tuple = ()
    out_quant: tuple | None = None

    def __post_init__(self):
        own = "FloatLayer"
        check_host_fields(own, self)
        check_quant(own, "out_quant", self.out_quant)
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 4 or 0 in w.shape:
            raise ValueError(f"{own}.weights must be a non-empty (M, C, R, S) array, "
                             f"not shape {w.shape}")
        b = np.asarray(self.bias, dtype=np.float64)
        if b.shape != (w.shape[0],):
            raise ValueError(f"{own}.bias must have shape ({w.shape[0]},), not {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"{own}.weights and bias must be finite")
        check_int(own, "stride", self.stride, 1, integral=True)
        check_int(own, "padding", self.padding, 0, integral=True)
        check_int(own, "pool", self.pool, 1, integral=True)
        if not isinstance(self.relu, (bool, np.bool_)):
            raise ValueError(f"{own}.relu must be a bool, not {self.relu!r}")
        object.__setattr__(self, "weights", frozen_array(w))
        object.__setattr__(self, "bias", frozen_array(b))
        object.__setattr__(self, "relu", bool(self.relu))
        for name in ("stride", "padding", "pool"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def accelerated(self, x: np.ndarray) -> np.ndarray:
        """Float output of the accelerator's part: host padding, convolution per group,
        bias, ReLU."""
        x = pad(x, self.host_pad)
        y = np.concatenate([conv_float(x[:, cs], self.weights[ms], self.bias[ms],
                                       self.stride, self.padding)
                            for cs, ms in group_slices(self)], axis=1)
        return np.maximum(y, 0.0) if self.relu else y

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Float output (N, M, E', F'): `accelerated` then `host_after`."""
        return host_after(self, self.accelerated(x), integer=False)


@dataclass(frozen=True, eq=False)
class FloatNet:
    """A chain of `FloatLayer` on (C, H, W) inputs ending in M class scores; ``input_quant``
    is the input's quantization (scale, largest code) when the model gives one
    (QuantizeLinear)."""

    layers: tuple
    input_shape: tuple
    input_quant: tuple | None = None

    def __post_init__(self):
        normalise_layers(self, "FloatNet", FloatLayer)
        chain_shapes("FloatNet", self.layers, self.input_shape)
        check_quant("FloatNet", "input_quant", self.input_quant)

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """Input (C, H, W) of each layer, then the output (M, 1, 1)."""
        return chain_shapes("FloatNet", self.layers, self.input_shape)

    def forward(self, images) -> np.ndarray:
        """Class scores (N, M) of ``images``."""
        x = as_images("FloatNet.forward", images, self.input_shape).astype(np.float64)
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


def conv_float(x, w, b, u, p) -> np.ndarray:
    """Float CONV layer (N, M, E, F) of ``x`` with weights ``w``, bias ``b``, stride U,
    padding P."""
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
    for i, layer in enumerate(net.layers):
        if not is_plain(layer):
            raise ValueError(f"train: layers[{i}] has groups, host padding, subsampling or "
                             f"host operators, which training does not support")
    x = as_images("train", x, net.input_shape).astype(np.float64)
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
