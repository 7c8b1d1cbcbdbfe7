"""Numpy golden model of what the accelerator computes, bit for bit.

Tensors use PyTorch's layouts: ifmap (N, C, H, W), weights (M, C, R, S),
bias (M,), ofmap (N, M, E, F). Psums are signed ``psum_bits`` integers and
accumulate modulo ``2**psum_bits`` (`ommatidia.gen.arith`). The output stage
applies, in this order: bias, ReLU, arithmetic shift right with round-half-up,
saturation to ``act_bits``.
"""

from __future__ import annotations

import numpy as np

from ommatidia.gen.arith import out_size, output_stage, saturate, wrap

__all__ = [
    "wrap", "saturate", "out_size", "conv2d_psums", "output_stage", "conv2d", "fc",
    "row_conv1d", "row_zero_macs", "layer_ofmap",
]


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


def layer_ofmap(prog) -> np.ndarray:
    """The ofmap of a compiled layer (`ommatidia.gen.program.LayerProgram`): its ifmap,
    weights and output stage through `conv2d` with the configuration's widths."""
    layer, stage, pe = prog.layer, prog.stage, prog.cfg.pe
    bias = np.array(stage.bias, dtype=np.int64) if stage.bias else None
    return conv2d(prog.ifmap, prog.weights, bias, stride=layer.U, padding=layer.P,
                  psum_bits=pe.psum_bits, relu=stage.relu, shift=stage.shift,
                  act_bits=pe.act_bits)
