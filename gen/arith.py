"""The arithmetic of the accelerator: psum wrap-around, saturation, output sizes, the
output stage.

Psums are signed ``psum_bits`` integers and accumulate modulo ``2**psum_bits``,
in hardware and in every model alike (docs/architecture.md, "Numbers"). The
output stage applies, in this order: bias, ReLU, arithmetic shift right with
round-half-up, saturation to ``act_bits``. The compiler, the analytical model
and the golden model (`ommatidia.sim.golden`) all use these definitions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wrap", "saturate", "out_size", "output_stage", "int_matmul"]


def wrap(x, bits: int) -> np.ndarray:
    """Reduce integers to signed ``bits``-bit two's complement (modulo ``2**bits``)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    u = x.view(np.uint64) & np.uint64((1 << bits) - 1)
    sign = np.uint64(1 << (bits - 1))
    return ((u ^ sign).astype(np.int64) - np.int64(1 << (bits - 1))).astype(np.int64,
                                                                            copy=False)


def int_matmul(a: np.ndarray, b: np.ndarray, a_bits: int, b_bits: int) -> np.ndarray:
    """``a @ b`` of signed ``a_bits``- and ``b_bits``-bit integers, exact, as int64: in
    float32 or float64 (BLAS, several times faster than int64) when every sum of
    products is an integer that format holds exactly (at most ``K * 2**(a_bits +
    b_bits - 2)`` in magnitude, ``K`` terms), else in int64."""
    bound = a.shape[-1] << max(a_bits + b_bits - 2, 0)
    for dtype, mantissa in ((np.float32, 24), (np.float64, 53)):
        if bound <= 1 << mantissa:
            return np.matmul(a.astype(dtype), b.astype(dtype)).astype(np.int64)
    return np.matmul(a, b)


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
