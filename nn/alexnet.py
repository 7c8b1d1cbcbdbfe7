"""AlexNet's layers in the shapes Eyeriss ran them, and Eyeriss's published figures.

The shapes are those of Krizhevsky et al. as Chen et al. (JSSC 2017, Table V)
map them: batch N = 1, CONV2, CONV4 and CONV5 split in two groups as in the
original network (so C is half the previous layer's filters), FC6-FC8 as CONV
layers with ``R = H``, ``S = W`` (`ommatidia.gen.layer.fc_layer`).
"""

from __future__ import annotations

from ommatidia.gen.layer import ConvLayer, fc_layer

__all__ = ["ALEXNET", "EYERISS_ALEXNET", "EYERISS_MAC_UTILIZATION", "eyeriss_figures"]

ALEXNET = {
    "CONV1": ConvLayer(N=1, C=3, M=96, H=227, W=227, R=11, S=11, U=4, P=0),
    "CONV2": ConvLayer(N=1, C=48, M=256, H=27, W=27, R=5, S=5, U=1, P=2),
    "CONV3": ConvLayer(N=1, C=256, M=384, H=13, W=13, R=3, S=3, U=1, P=1),
    "CONV4": ConvLayer(N=1, C=192, M=384, H=13, W=13, R=3, S=3, U=1, P=1),
    "CONV5": ConvLayer(N=1, C=192, M=256, H=13, W=13, R=3, S=3, U=1, P=1),
    "FC6": fc_layer(1, 256, 4096, 6, 6),
    "FC7": fc_layer(1, 4096, 4096),
    "FC8": fc_layer(1, 4096, 1000),
}
"""AlexNet CONV1-CONV5 and FC6-FC8, batch 1."""

EYERISS_ALEXNET = {
    # layer: (MACs, active PEs of 168, DRAM traffic in 10^6 bytes), batch 4
    "CONV1": (422e6, 154, 5.0),
    "CONV2": (896e6, 135, 4.0),
    "CONV3": (598e6, 156, 3.0),
    "CONV4": (449e6, 156, 2.1),
    "CONV5": (299e6, 156, 1.3),
}
"""Eyeriss's AlexNet figures (JSSC 2017; batch 4): MACs, active PEs and DRAM traffic
(16-bit values) per layer. They add up to the totals in docs/architecture.md: 2663 M
MACs, 15.4 MB, 0.0029 DRAM accesses per MAC."""

EYERISS_MAC_UTILIZATION = 23.1 / 33.6
"""Eyeriss's measured throughput over CONV1-5 (23.1 GMAC/s) over its peak (33.6 GMAC/s)."""


def eyeriss_figures(name: str) -> dict:
    """Eyeriss's active PEs and DRAM values per MAC for an AlexNet CONV layer."""
    macs, active, mb = EYERISS_ALEXNET[name]
    return {"active_pes": active, "active_fraction": active / 168,
            "dram_values_per_mac": mb * 1e6 / 2 / macs}
