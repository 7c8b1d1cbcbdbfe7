"""The networks a sweep runs: their accelerator layers by name.

``alexnet`` is `ommatidia.nn.alexnet.ALEXNET` (CONV1-5, FC6-8, batch 1); ``digits`` the
digits CNN of `ommatidia.nn.digits.digits_net` (its shapes: the weights do not matter to
the model); any other name is a model file (``.npz``, `ommatidia.nn.quant.load`), whose
layers run as the accelerator runs them (host padding included, one accelerator layer
per group of a grouped layer).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from ommatidia.gen.layer import ConvLayer

__all__ = ["NetLayer", "NETWORKS", "network_layers"]

NETWORKS = ("alexnet", "digits")
"""The networks known by name; anything else is a model file."""


@dataclass(frozen=True)
class NetLayer:
    """One layer of a network: its name, its accelerator layer (`ConvLayer`, batch 1) and
    how many times the accelerator runs it (``groups``: one run per group)."""

    name: str
    layer: ConvLayer
    groups: int = 1


def _shapes(layers, shapes) -> list[NetLayer]:
    """The accelerator layers of `ommatidia.nn.net` or `ommatidia.nn.quant` layers on their
    input ``shapes`` (C, H, W), named ``layer0``, ``layer1``, ..."""
    out = []
    for i, (layer, (_, h, w)) in enumerate(zip(layers, shapes)):
        m, c, r, s = layer.weights.shape
        top, left, bottom, right = layer.host_pad
        out.append(NetLayer(f"layer{i}", ConvLayer(
            N=1, C=int(c), M=int(m) // layer.groups, H=h + top + bottom, W=w + left + right,
            R=int(r), S=int(s), U=layer.stride, P=layer.padding), layer.groups))
    return out


def network_layers(spec: str) -> tuple[str, list[NetLayer]]:
    """(network name, its layers) of ``spec``: ``alexnet``, ``digits`` or a model file.

    Raises ValueError naming the file when it does not exist or is not a model file.
    """
    if spec == "alexnet":
        from ommatidia.nn.alexnet import ALEXNET
        return spec, [NetLayer(name, layer) for name, layer in ALEXNET.items()]
    if spec == "digits":
        from ommatidia.nn.digits import digits_net
        net = digits_net()
        return spec, _shapes(net.layers, net.shapes)
    path = pathlib.Path(spec)
    if not path.is_file():
        raise ValueError(f"--network {spec}: neither {' nor '.join(NETWORKS)} nor a model "
                         f"file (.npz)")
    from ommatidia.nn.quant import load
    try:
        qnet = load(path)
    except (OSError, KeyError, EOFError, ValueError) as exc:  # numpy's own, or load's
        raise ValueError(f"--network {spec} is not a model file: {exc}") from None
    return path.stem, _shapes(qnet.layers, qnet.shapes)
