"""Make the small ONNX files of tests/test_onnx_torch.py with PyTorch's exporter.

Not run by the tests (PyTorch is not a dependency of the project). Run it in a
separate environment::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 onnx==1.23.2
    /tmp/torchvenv/bin/python tests/data/make_onnx.py

Each model has random weights (seed 0) and is exported in eval mode by the
TorchScript exporter (``dynamo=False``, opset 17) with a symbolic batch size, as
most exported models are; ``pads`` with batch size 1 (its Pad's pads are then
constants); ``reduce_mean`` uses the dynamo exporter (opset 18), which writes a
global average pooling as ``ReduceMean``.
"""

import pathlib

import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent


def fq(x, scale):
    """Fake quantization to int8 with zero point 0: QuantizeLinear + DequantizeLinear."""
    return torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)


class LeNet(nn.Module):
    """LeNet-5's structure on 28x28, narrowed: conv 5x5, ReLU, max-pool 2, twice; three FC."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(96, 16), nn.ReLU(),
                                        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Grouped(nn.Module):
    """Depthwise 3x3 with BatchNorm and ReLU6-free ReLU, pointwise 1x1, grouped 3x3 stride 2,
    AdaptiveAvgPool2d(1) (GlobalAveragePool), Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 1), nn.ReLU(),
            nn.Conv2d(8, 6, 3, stride=2, groups=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x):
        return self.body(x)


class Pads(nn.Module):
    """Non-square pads (1, 0), a 3x2 kernel with strides (2, 1), ZeroPad2d asymmetric padding,
    'same' padding of an even kernel, then MatMul after a Reshape."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0))
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.c2 = nn.Conv2d(4, 4, 3)
        self.c3 = nn.Conv2d(4, 3, 2, padding="same")
        self.w = nn.Parameter(torch.randn(3 * 5 * 6, 7) * 0.1)
        self.b = nn.Parameter(torch.randn(7) * 0.1)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(self.pad(x)))
        x = torch.relu(self.c3(x))
        return torch.matmul(x.reshape(x.shape[0], -1), self.w) + self.b


class Pools(nn.Module):
    """LeakyReLU, MaxPool 3 stride 2 pad 1, AvgPool 3 stride 2 pad 1 (without and with the
    pads counted), a ceil-mode MaxPool, Dropout, Identity, a final Softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, padding=1)
        self.c3 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 2 * 2, 5)
        self.drop, self.ident = nn.Dropout(0.3), nn.Identity()

    def forward(self, x):
        x = nn.functional.max_pool2d(nn.functional.leaky_relu(self.c1(x), 0.1), 3, 2, 1)
        x = nn.functional.avg_pool2d(torch.relu(self.c2(x)), 3, 2, 1, count_include_pad=False)
        x = nn.functional.avg_pool2d(self.ident(torch.relu(self.c3(x))), 2, 1, 1,
                                     count_include_pad=True)
        x = nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
        return torch.softmax(self.fc(self.drop(torch.flatten(x, 1))), dim=1)


class BatchNorm(nn.Module):
    """BatchNorm1d after a Linear (the exporter folds only Conv + BatchNorm2d)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.fc1, self.bn1 = nn.Linear(4 * 4 * 4, 12), nn.BatchNorm1d(12)
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x):
        x = torch.flatten(torch.relu(self.c(x)), 1)
        return self.fc2(torch.relu(self.bn1(self.fc1(x))))


class QDQ(nn.Module):
    """Fake-quantized to int8 (per-channel weights, per-tensor activations): the exporter
    writes QuantizeLinear and DequantizeLinear."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 3 * 3, 10)
        for name in ("c1", "c2", "fc"):
            w = getattr(self, name).weight.detach()
            self.register_buffer(f"{name}_scale",
                                 w.abs().reshape(w.shape[0], -1).amax(dim=1) / 127)

    def _w(self, name):
        scale = getattr(self, f"{name}_scale")
        return torch.fake_quantize_per_channel_affine(
            getattr(self, name).weight, scale, torch.zeros_like(scale, dtype=torch.int32), 0,
            -128, 127)

    def forward(self, x):
        x = fq(x, 1 / 7)
        x = fq(torch.relu(nn.functional.conv2d(x, self._w("c1"), self.c1.bias)), 0.05)
        x = nn.functional.max_pool2d(x, 2)
        x = fq(torch.relu(nn.functional.conv2d(x, self._w("c2"), self.c2.bias, padding=1)),
               0.04)
        return nn.functional.linear(torch.flatten(x, 1), self._w("fc"), self.fc.bias)


class ReduceMean(nn.Module):
    """A conv net ending in a global average pooling, as the dynamo exporter writes it."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 6, 3, padding=1), nn.Conv2d(6, 4, 3)

    def forward(self, x):
        x = self.c2(torch.relu(self.c1(x)))
        return nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)


MODELS = {
    "lenet": (LeNet, (1, 28, 28)),
    "grouped": (Grouped, (4, 8, 8)),
    "pads": (Pads, (2, 9, 7)),
    "pools": (Pools, (1, 12, 12)),
    "batchnorm": (BatchNorm, (3, 6, 6)),
    "qdq": (QDQ, (1, 8, 8)),
    "reduce_mean": (ReduceMean, (2, 6, 6)),
}


def main():
    for name, (cls, shape) in MODELS.items():
        torch.manual_seed(0)
        model = cls().eval()
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        x = torch.rand(1, *shape)
        path = HERE / f"{name}.onnx"
        dynamo = name == "reduce_mean"
        dynamic = None if dynamo or name == "pads" else {"x": {0: "N"}, "y": {0: "N"}}
        torch.onnx.export(model, (x,), path, dynamo=dynamo, opset_version=18 if dynamo else 17,
                          input_names=["x"], output_names=["y"], dynamic_axes=dynamic,
                          external_data=False)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
