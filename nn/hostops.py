"""The operators a network runs on the host between accelerator layers.

The accelerator computes CONV layers with symmetric zero padding P, one stride U
and its output stage (bias, ReLU, shift, saturation). What it cannot express runs
on the host, in float for `ommatidia.nn.net.FloatNet` and on the integer
activations for `ommatidia.nn.quant.QNet` (same scale in and out):

- `pad`: zero padding beyond the symmetric P (asymmetric or non-square pads),
  before the layer;
- `subsample`: the rows and columns of a stride the accelerator's one U cannot
  give (unequal strides), after the layer;
- `HostOp`: after the layer, in order: ``max_pool`` and ``avg_pool`` with any
  kernel, stride, pads and ceil mode (``GlobalAveragePool`` is an ``avg_pool``
  over the whole map), ``relu`` and ``leaky_relu`` (when they do not follow the
  CONV directly, or are leaky).

Integer rounding is round half up: ``avg_pool`` gives ``floor(sum / count + 1/2)``
and ``leaky_relu`` ``floor(alpha * x + 1/2)`` on negative ``x``, both exact on
int64 (the leaky product in float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ommatidia.gen.config import check_int

__all__ = ["HostOp", "KINDS", "pad", "subsample", "pool_size", "apply_ops", "ops_shape"]

KINDS = ("max_pool", "avg_pool", "relu", "leaky_relu")


def _pair(owner: str, name: str, value, low: int) -> tuple[int, ...]:
    value = tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else value
    if not isinstance(value, tuple):
        raise ValueError(f"{owner}.{name} must be a tuple, not {value!r}")
    for k, v in enumerate(value):
        check_int(owner, f"{name}[{k}]", v, low, integral=True)
    return value


@dataclass(frozen=True)
class HostOp:
    """One host operator on (N, C, H, W): ``kind`` in `KINDS`.

    Pools take ``kernel`` (kh, kw), ``stride`` (sh, sw), ``pads`` (top, left,
    bottom, right), ``ceil_mode`` and, for ``avg_pool``, ``count_include_pad``
    (ONNX's attributes, dilation 1). ``leaky_relu`` takes ``alpha``.
    """

    kind: str
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = False
    alpha: float = 0.0

    def __post_init__(self):
        own = "HostOp"
        if self.kind not in KINDS:
            raise ValueError(f"{own}.kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for name, n, low in (("kernel", 2, 1), ("stride", 2, 1), ("pads", 4, 0)):
            v = _pair(own, name, getattr(self, name), low)
            if len(v) != n:
                raise ValueError(f"{own}.{name} must have {n} values, not {v!r}")
            object.__setattr__(self, name, v)
        if self.pads[0] >= self.kernel[0] or self.pads[2] >= self.kernel[0] or \
                self.pads[1] >= self.kernel[1] or self.pads[3] >= self.kernel[1]:
            raise ValueError(f"{own}.pads = {self.pads} must each be below the kernel "
                             f"{self.kernel}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or \
                not 0 <= self.alpha <= 1:
            raise ValueError(f"{own}.alpha must be a number in 0..1, not {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "ceil_mode", bool(self.ceil_mode))
        object.__setattr__(self, "count_include_pad", bool(self.count_include_pad))

    def as_dict(self) -> dict:
        """The operator as JSON (docs/model_format.md)."""
        return {"kind": self.kind, "kernel": list(self.kernel), "stride": list(self.stride),
                "pads": list(self.pads), "ceil_mode": self.ceil_mode,
                "count_include_pad": self.count_include_pad, "alpha": self.alpha}

    def describe(self) -> str:
        """A short text for the run's output: ``avg_pool 3x3 /2 pads (1, 1, 1, 1)``."""
        if self.kind == "relu":
            return "relu"
        if self.kind == "leaky_relu":
            return f"leaky_relu {self.alpha:g}"
        text = f"{self.kind} {self.kernel[0]}x{self.kernel[1]} /{self.stride[0]}"
        if self.stride[1] != self.stride[0]:
            text += f",{self.stride[1]}"
        if any(self.pads):
            text += f" pads {self.pads}"
        return text + (" ceil" if self.ceil_mode else "")

    def shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Output (C, H, W) of an input (C, H, W)."""
        if self.kind in ("relu", "leaky_relu"):
            return shape
        c, h, w = shape
        return (c, pool_size(h, self.kernel[0], self.stride[0], self.pads[0], self.pads[2],
                             self.ceil_mode),
                pool_size(w, self.kernel[1], self.stride[1], self.pads[1], self.pads[3],
                          self.ceil_mode))


def pool_size(size: int, k: int, s: int, before: int, after: int, ceil: bool) -> int:
    """Output extent of a pooling (ONNX and PyTorch: in ceil mode the last window must
    start inside the input or the leading pads); raises if the kernel does not fit."""
    span = size + before + after - k
    if span < 0:
        raise ValueError(f"pooling kernel {k} does not fit an input of {size} with pads "
                         f"{before}, {after}")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + before:
        out -= 1
    return out


def pad(x: np.ndarray, pads) -> np.ndarray:
    """``x`` (N, C, H, W) with zeros: ``pads`` = (top, left, bottom, right)."""
    t, l, b, r = pads
    if not (t or l or b or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def subsample(x: np.ndarray, steps) -> np.ndarray:
    """Every ``steps[0]``-th row and ``steps[1]``-th column of ``x``, from the first."""
    return x if tuple(steps) == (1, 1) else x[:, :, ::steps[0], ::steps[1]]


def _pool(op: HostOp, x: np.ndarray, integer: bool) -> np.ndarray:
    n, c, h, w = x.shape
    _, e, f = op.shape((c, h, w))
    (kh, kw), (sh, sw), (t, l, _, _) = op.kernel, op.stride, op.pads
    hp, wp = (e - 1) * sh + kh, (f - 1) * sw + kw
    fill = np.iinfo(np.int64).min if integer else -np.inf
    is_max = op.kind == "max_pool"
    buf = np.full((n, c, hp, wp), fill if is_max else 0, dtype=np.int64 if integer else float)
    hh, ww = min(h, hp - t), min(w, wp - l)
    buf[:, :, t:t + hh, l:l + ww] = x[:, :, :hh, :ww]
    win = np.lib.stride_tricks.sliding_window_view(buf, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    if is_max:
        return win.max(axis=(4, 5))
    total = win.sum(axis=(4, 5))
    mask = np.zeros((hp, wp), dtype=np.int64)
    if op.count_include_pad:
        b, r = op.pads[2], op.pads[3]
        mask[:min(hp, t + h + b), :min(wp, l + w + r)] = 1
    else:
        mask[t:t + hh, l:l + ww] = 1
    count = np.lib.stride_tricks.sliding_window_view(mask, (kh, kw))[::sh, ::sw].sum(axis=(2, 3))
    if integer:
        return (2 * total + count) // (2 * count)
    return total / count


def apply_ops(ops, x: np.ndarray, integer: bool) -> np.ndarray:
    """``ops`` applied in order to ``x``: int64 with round half up if ``integer``, else
    float."""
    for op in ops:
        if op.kind == "relu":
            x = np.maximum(x, 0)
        elif op.kind == "leaky_relu":
            if integer:
                x = np.where(x < 0, np.floor(op.alpha * x + 0.5).astype(np.int64), x)
            else:
                x = np.where(x < 0, op.alpha * x, x)
        else:
            x = _pool(op, x, integer)
    return x


def ops_shape(ops, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (C, H, W) after ``ops`` of an input (C, H, W)."""
    for op in ops:
        shape = op.shape(shape)
    return shape
