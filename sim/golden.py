"""Numpy golden model of what the accelerator computes, bit for bit.

Tensors use PyTorch's layouts: ifmap (N, C, H, W), weights (M, C, R, S),
bias (M,), ofmap (N, M, E, F). Psums are signed ``psum_bits`` integers and
accumulate modulo ``2**psum_bits`` (DESIGN.md section 3). The output stage
applies, in this order: bias, ReLU, arithmetic shift right with round-half-up,
saturation to ``act_bits``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "wrap", "saturate", "out_size", "conv2d_psums", "output_stage", "conv2d", "fc",
    "row_conv1d", "row_zero_macs",
]


def wrap(x, bits: int) -> np.ndarray:
    """Reduce integers to signed ``bits``-bit two's complement (modulo ``2**bits``)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    u = x.view(np.uint64) & np.uint64((1 << bits) - 1)
    sign = np.uint64(1 << (bits - 1))
    return ((u ^ sign).astype(np.int64) - np.int64(1 << (bits - 1))).astype(np.int64)


def saturate(x, bits: int) -> np.ndarray:
    """Clamp to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output extent ``(size + 2P - kernel) // U + 1``; raises if it is not positive."""
    if stride < 1:
        raise ValueError(f"stride U must be at least 1, not {stride}")
    if padding < 0:
        raise ValueError(f"padding P must be at least 0, not {padding}")
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"filter of {kernel} does not fit an input of {size} "
                         f"with padding {padding}")
    return span // stride + 1


def _as_int(name: str, x, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, not {a.dtype}")
    return a.astype(np.int64)


def conv2d_psums(ifmap, weights, *, stride: int = 1, padding: int = 0,
                 psum_bits: int = 32) -> np.ndarray:
    """Raw CONV psums (N, M, E, F), accumulated modulo ``2**psum_bits``."""
    x = _as_int("ifmap", ifmap, 4)
    w = _as_int("weights", weights, 4)
    n, c, h, wd = x.shape
    m, c2, r, s = w.shape
    if c != c2:
        raise ValueError(f"ifmap has C = {c} channels but weights have C = {c2}")
    e = out_size(h, r, stride, padding)
    f = out_size(wd, s, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.zeros((n, m, e, f), dtype=np.int64)
    for i in range(r):
        for j in range(s):
            win = xp[:, :, i:i + stride * (e - 1) + 1:stride, j:j + stride * (f - 1) + 1:stride]
            out += np.einsum("nchw,mc->nmhw", win, w[:, :, i, j])
            out = wrap(out, psum_bits)
    return out


def output_stage(psums, *, bias=None, relu: bool = False, shift: int = 0,
                 act_bits: int | None = None, psum_bits: int = 32) -> np.ndarray:
    """Bias, ReLU, shift right with round-half-up, saturation, in that order.

    Bias is added in psum arithmetic (modulo ``2**psum_bits``); saturation only
    applies when ``act_bits`` is given. With no options the psums pass unchanged.
    """
    y = np.asarray(psums, dtype=np.int64)
    if bias is not None:
        b = np.asarray(bias, dtype=np.int64)
        if b.shape != (y.shape[1],):
            raise ValueError(f"bias must have shape ({y.shape[1]},), not {b.shape}")
        y = wrap(y + b.reshape(1, -1, *([1] * (y.ndim - 2))), psum_bits)
    if relu:
        y = np.maximum(y, 0)
    if shift < 0:
        raise ValueError(f"shift must be at least 0, not {shift}")
    if shift:
        y = (y + (1 << (shift - 1))) >> shift
    if act_bits is not None:
        y = saturate(y, act_bits)
    return y


def conv2d(ifmap, weights, bias=None, *, stride: int = 1, padding: int = 0,
           psum_bits: int = 32, relu: bool = False, shift: int = 0,
           act_bits: int | None = None) -> np.ndarray:
    """A CONV layer: psums then the output stage."""
    psums = conv2d_psums(ifmap, weights, stride=stride, padding=padding, psum_bits=psum_bits)
    return output_stage(psums, bias=bias, relu=relu, shift=shift, act_bits=act_bits,
                        psum_bits=psum_bits)


def fc(x, weights, bias=None, **kwargs) -> np.ndarray:
    """An FC layer as a CONV layer with H = R, W = S.

    ``x`` is (N, C, H, W) or (N, K); ``weights`` is (M, C, H, W) or (M, K).
    Returns (N, M).
    """
    x = np.asarray(x)
    w = np.asarray(weights)
    if x.ndim == 2:
        x = x.reshape(x.shape[0], x.shape[1], 1, 1)
    if w.ndim == 2:
        w = w.reshape(w.shape[0], w.shape[1], 1, 1)
    if x.shape[1:] != w.shape[1:]:
        raise ValueError(f"FC input {x.shape[1:]} does not match weights {w.shape[1:]}")
    return conv2d(x, w, bias, **kwargs).reshape(x.shape[0], w.shape[0])


def row_conv1d(ifmap_rows, filter_rows, *, stride: int = 1, psum_in=None,
               psum_bits: int = 32) -> np.ndarray:
    """The 1-D convolution one PE computes on ``q`` channels for ``p`` filters.

    ``ifmap_rows`` is (q, W), ``filter_rows`` (p, q, S), ``psum_in`` (p, F) or
    None. Returns (p, F) with ``F = (W - S) // U + 1``:
    ``out[k, f] = psum_in[k, f] + sum_{c, s} filter[k, c, s] * ifmap[c, f*U + s]``.
    """
    x = _as_int("ifmap_rows", ifmap_rows, 2)
    w = _as_int("filter_rows", filter_rows, 3)
    q, width = x.shape
    p, q2, s = w.shape
    if q != q2:
        raise ValueError(f"ifmap rows have q = {q} channels but filter rows have q = {q2}")
    f = out_size(width, s, stride, 0)
    out = np.zeros((p, f), dtype=np.int64)
    if psum_in is not None:
        pin = _as_int("psum_in", psum_in, 2)
        if pin.shape != (p, f):
            raise ValueError(f"psum_in must have shape {(p, f)}, not {pin.shape}")
        out += pin
    for j in range(s):
        win = x[:, j:j + stride * (f - 1) + 1:stride]
        out = wrap(out + w[:, :, j] @ win, psum_bits)
    return wrap(out, psum_bits)


def row_zero_macs(ifmap_rows, p: int, S: int, stride: int = 1) -> int:
    """MACs a PE gates in `row_conv1d`: each (filter, output, tap) meeting a zero activation."""
    x = _as_int("ifmap_rows", ifmap_rows, 2)
    f = out_size(x.shape[1], S, stride, 0)
    zeros = 0
    for j in range(S):
        zeros += int(np.count_nonzero(x[:, j:j + stride * (f - 1) + 1:stride] == 0))
    return p * zeros
