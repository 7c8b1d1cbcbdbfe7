"""The handwritten digits: scikit-learn's 8 x 8 digits, a small CNN, its training.

`train_digits` trains the CNN in numpy (`ommatidia.nn.net.train`) and
quantizes it for the ``small`` preset (`ommatidia.nn.quant.quantize`);
docs/model_format.md gives its measured accuracies.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ommatidia.gen.config import SMALL, ArrayConfig, preset

from .net import FloatLayer, FloatNet, train
from .quant import infer, quantize

__all__ = ["digits_data", "digits_net", "train_digits", "DIGITS_INPUT_SCALE", "DIGITS_EPOCHS"]

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
