"""The layer types the compiler maps: a CONV layer, and an FC layer as a CONV layer.

Shapes use PyTorch's layouts: ifmap (N, C, H, W), weights (M, C, R, S), ofmap
(N, M, E, F), with stride U and zero padding P.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arith import out_size

__all__ = ["ConvLayer", "fc_layer"]


@dataclass(frozen=True)
class ConvLayer:
    """Shape of a CONV layer: ifmap (N, C, H, W), weights (M, C, R, S), stride U, padding P."""

    N: int
    C: int
    M: int
    H: int
    W: int
    R: int
    S: int
    U: int = 1
    P: int = 0

    def __post_init__(self):
        for name in ("N", "C", "M", "H", "W", "R", "S", "U"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ConvLayer.{name} must be a positive integer, not {value!r}")
        if isinstance(self.P, bool) or not isinstance(self.P, int) or self.P < 0:
            raise ValueError(f"ConvLayer.P must be a non-negative integer, not {self.P!r}")
        out_size(self.H, self.R, self.U, self.P)
        out_size(self.W, self.S, self.U, self.P)

    @property
    def E(self) -> int:
        return out_size(self.H, self.R, self.U, self.P)

    @property
    def F(self) -> int:
        return out_size(self.W, self.S, self.U, self.P)

    @property
    def macs(self) -> int:
        """MACs of the layer, zero padding included: ``N*M*C*E*F*R*S``."""
        return self.N * self.M * self.C * self.E * self.F * self.R * self.S


def fc_layer(N: int, C: int, M: int, H: int = 1, W: int = 1):
    """A fully connected layer as a CONV layer: filters as large as the ifmap (``R = H``,
    ``S = W``), one output per filter (``E = F = 1``)."""
    return ConvLayer(N=N, C=C, M=M, H=H, W=W, R=H, S=W)
