"""The digits CNN: training, quantization, integer inference, the model file.

Integer inference is checked bit for bit against a plain loop nest written
here (CONV, bias, ReLU, round-half-up shift, saturation, max-pooling, argmax),
independent of the golden model it runs on. Training is checked by finite
differences and by accuracy on the held-out split (tests train 5 epochs
instead of the default 30, about 0.5 s).
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from ommatidia.gen.config import SMALL, config_fields, configure
from ommatidia.nn import net, quant
from ommatidia.nn.digits import digits_data, train_digits
from ommatidia.nn.net import FloatLayer, FloatNet
from ommatidia.nn.quant import QLayer, QNet
from ommatidia.sim import golden

TEST_EPOCHS = 5


def loop_layer(x, w, b, U, P, psum_bits, relu, shift, act_bits):
    """One quantized layer as a loop nest over Python integers."""
    n, c, h, wd = x.shape
    m, _, r, s = w.shape
    e, f = (h + 2 * P - r) // U + 1, (wd + 2 * P - s) // U + 1
    out = np.zeros((n, m, e, f), dtype=np.int64)
    mod, lo, hi = 1 << psum_bits, -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    for ni in range(n):
        for mi in range(m):
            for ei in range(e):
                for fi in range(f):
                    acc = int(b[mi])
                    for ci in range(c):
                        for i in range(r):
                            for j in range(s):
                                yy, xx = ei * U + i - P, fi * U + j - P
                                if 0 <= yy < h and 0 <= xx < wd:
                                    acc += int(x[ni, ci, yy, xx]) * int(w[mi, ci, i, j])
                    acc = (acc + mod // 2) % mod - mod // 2
                    if relu:
                        acc = max(acc, 0)
                    if shift:
                        acc = (acc + (1 << (shift - 1))) // (1 << shift)
                    out[ni, mi, ei, fi] = min(max(acc, lo), hi)
    return out


def loop_pool(x, k):
    n, c, h, w = x.shape
    out = np.zeros((n, c, h // k, w // k), dtype=x.dtype)
    for ni in range(n):
        for ci in range(c):
            for i in range(h // k):
                for j in range(w // k):
                    out[ni, ci, i, j] = max(int(x[ni, ci, i * k + a, j * k + bb])
                                            for a in range(k) for bb in range(k))
    return out


def loop_network(qnet, x):
    """(predictions, per-layer outputs before pooling) by the loop nest."""
    outs = []
    for layer in qnet.layers:
        y = loop_layer(x, layer.weights, layer.bias, layer.stride, layer.padding,
                       qnet.psum_bits, layer.relu, layer.shift, qnet.act_bits)
        outs.append(y)
        x = loop_pool(y, layer.pool) if layer.pool > 1 else y
    scores = x.reshape(x.shape[0], -1)
    preds = [max(range(scores.shape[1]), key=lambda k: (scores[i, k], -k))
             for i in range(scores.shape[0])]
    return np.array(preds), outs


def random_qnet(rng, spec, in_shape):
    """A QNet for SMALL with random int8 weights, biases and shifts; ``spec`` lists
    (M, R, S, U, P, relu, pool) per layer."""
    layers, c = [], in_shape[0]
    for m, r, s, u, p, relu, pool in spec:
        w = rng.integers(-128, 128, (m, c, r, s))
        w[rng.random(w.shape) < 0.2] = 0
        layers.append(QLayer(w, rng.integers(-4000, 4000, m), stride=u, padding=p, relu=relu,
                             shift=int(rng.integers(4, 10)), pool=pool))
        c = m
    return QNet(tuple(layers), in_shape, 1.0)


SPECS = {
    "pad_pool_fc": ([(3, 3, 3, 1, 1, True, 2), (4, 3, 3, 1, 0, False, 1)], (2, 7, 7)),
    "stride2_rect": ([(4, 2, 3, 2, 1, True, 1), (3, 3, 2, 1, 0, True, 1),
                      (5, 3, 3, 1, 0, False, 1)], (1, 9, 8)),
}


@pytest.mark.parametrize("name", SPECS)
def test_golden_inference_equals_loop_reference(name, seed):
    rng = np.random.default_rng(seed)
    spec, shape = SPECS[name]
    qnet = random_qnet(rng, spec, shape)
    images = rng.integers(-128, 128, (5, *shape))
    images[rng.random(images.shape) < 0.3] = 0
    preds, ofmaps = quant.infer(qnet, images)
    want_preds, want = loop_network(qnet, images)
    for i, (got, ref) in enumerate(zip(ofmaps, want)):
        np.testing.assert_array_equal(got, ref, err_msg=f"layer {i}")
    np.testing.assert_array_equal(preds, want_preds)


def test_saturation_and_wrap_reach_the_reference(seed):
    """Large weights and zero shift: the outputs saturate, the loop reference agrees."""
    rng = np.random.default_rng(seed)
    w = rng.integers(100, 128, (2, 1, 3, 3))
    w[1] *= -1
    layers = (QLayer(w, np.array([0, 5]), relu=False, shift=0),
              QLayer(rng.integers(-128, 128, (3, 2, 6, 6)), rng.integers(-99, 99, 3), shift=3))
    qnet = QNet(layers, (1, 8, 8), 1.0)
    images = rng.integers(0, 128, (3, 1, 8, 8))
    _, ofmaps = quant.infer(qnet, images)
    _, want = loop_network(qnet, images)
    assert (ofmaps[0][:, 0] == 127).all() and (ofmaps[0][:, 1] == -128).all()
    for got, ref in zip(ofmaps, want):
        np.testing.assert_array_equal(got, ref)


@pytest.fixture(scope="module")
def digits():
    return digits_data()


@pytest.fixture(scope="module")
def trained():
    return train_digits(seed=0, epochs=TEST_EPOCHS)


def test_digits_split(digits):
    xtr, ytr, xte, yte = digits
    assert len(ytr) + len(yte) == 1797
    assert xtr.shape[1:] == (1, 8, 8) and xtr.min() == 0 and xtr.max() == 16
    counts_te, counts_all = np.bincount(yte), np.bincount(np.concatenate([ytr, yte]))
    assert np.all(np.abs(counts_te - 0.2 * counts_all) <= 0.5)
    again = digits_data()
    np.testing.assert_array_equal(again[3], yte)
    np.testing.assert_array_equal(again[2], xte)


def test_accuracy_floor(seed, digits):
    """A quickly trained model classifies the held-out digits, float and quantized."""
    fnet, qnet, report = train_digits(seed=seed % (1 << 31), epochs=TEST_EPOCHS)
    _, _, xte, yte = digits
    float_acc = float((fnet.forward(xte).argmax(axis=1) == yte).mean())
    preds, _ = quant.infer(qnet, xte)
    quant_acc = float((preds == yte).mean())
    print(f"{TEST_EPOCHS} epochs: float {float_acc:.4f}, quantized {quant_acc:.4f}")
    assert float_acc >= 0.85 and quant_acc >= 0.85
    assert abs(float_acc - quant_acc) <= 0.03
    assert report["float_accuracy"] == float_acc
    assert report["quantized_accuracy"] == quant_acc
    assert qnet.info == report


def test_digits_network_fits_small_without_folding(trained):
    """The structure of the issue, and each layer accepted by the RS schedule on SMALL."""
    from ommatidia.sim.array_model import RSSchedule
    _, qnet, _ = trained
    shapes = [l.weights.shape for l in qnet.layers]
    assert shapes == [(8, 1, 3, 3), (16, 8, 3, 3), (10, 16, 3, 3)]
    assert [(l.padding, l.stride, l.relu, l.pool) for l in qnet.layers] == \
        [(0, 1, True, 2), (1, 1, True, 1), (0, 1, False, 1)]
    assert qnet.shapes == [(1, 8, 8), (8, 3, 3), (16, 3, 3), (10, 1, 1)]
    assert (qnet.preset, qnet.act_bits, qnet.weight_bits, qnet.psum_bits) == ("small", 8, 8, 24)
    for layer, conv in zip(qnet.layers, qnet.conv_layers(2)):
        assert conv.R <= SMALL.rows and conv.E <= SMALL.cols
        ifmap = np.zeros((conv.N, conv.C, conv.H, conv.W), dtype=np.int64)
        RSSchedule(SMALL, conv, ifmap, layer.weights, p=1, q=1)
        assert layer.psum_bound(8) < 1 << 23


def test_input_quantization_is_exact(trained, digits):
    _, qnet, _ = trained
    xte = digits[2]
    np.testing.assert_array_equal(quant.quantize_input(qnet, xte), 7 * xte.astype(np.int64))


def test_quantized_weights_round_the_float_weights(trained):
    """Each int weight is the float weight at the layer's scale, rounded; the scales chain."""
    fnet, qnet, _ = trained
    s_in = qnet.input_scale
    for i, (fl, ql) in enumerate(zip(fnet.layers, qnet.layers)):
        s = ql.weight_scale
        assert np.all(np.abs(ql.weights * s - fl.weights) <= s / 2 * (1 + 1e-9)), i
        assert 64 <= np.abs(ql.weights).max() <= 127, i
        assert np.all(np.abs(ql.bias * s * s_in - fl.bias) <= s * s_in / 2 * (1 + 1e-9)), i
        s_in *= s * 2.0 ** ql.shift
        assert math.isclose(s_in, qnet.out_scales[i], rel_tol=1e-12)


def test_quantized_scores_track_the_float_scores(trained, digits):
    """Dequantized last-layer outputs stay close to the float class scores."""
    fnet, qnet, _ = trained
    xte = digits[2]
    _, ofmaps = quant.infer(qnet, xte)
    deq = ofmaps[-1].reshape(len(xte), -1) * qnet.out_scales[-1]
    ref = fnet.forward(xte)
    err = np.abs(deq - ref).max() / np.abs(ref).max()
    print(f"max score error {err:.4f} of the largest score")
    assert err < 0.1


def test_training_is_deterministic():
    a, _, ra = train_digits(seed=3, epochs=1)
    b, _, rb = train_digits(seed=3, epochs=1)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.weights, lb.weights)
    assert ra["quantized_accuracy"] == rb["quantized_accuracy"]


def test_gradients_match_finite_differences(seed):
    """Training's backward pass (stride, padding, ReLU, pooling) by central differences."""
    rng = np.random.default_rng(seed)
    fnet = FloatNet((
        FloatLayer(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding=1, relu=True,
                   pool=2),
        FloatLayer(rng.normal(size=(4, 3, 2, 2)), rng.normal(size=4), stride=2, relu=True),
        FloatLayer(rng.normal(size=(5, 4, 2, 2)), rng.normal(size=5)),
    ), (2, 9, 9))
    x = rng.normal(size=(3, 2, 9, 9))
    y = rng.integers(0, 5, 3)

    def loss(n):
        z = n.forward(x)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(3), y] - np.log(np.exp(z).sum(axis=1))).mean())

    logits, caches = net._forward_train(fnet, x)
    np.testing.assert_allclose(logits, fnet.forward(x), rtol=1e-12, atol=1e-12)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(3), y] -= 1
    grads = net._backward(fnet, caches, p / 3)
    eps = 1e-6
    for li, layer in enumerate(fnet.layers):
        for which in (0, 1):
            arr = layer.weights if which == 0 else layer.bias
            for _ in range(4):
                idx = tuple(rng.integers(0, d) for d in arr.shape)
                num = []
                for sign in (1, -1):
                    a = np.array(arr)
                    a[idx] += sign * eps
                    new = dataclasses.replace(layer, **{"weights" if which == 0 else "bias": a})
                    num.append(loss(dataclasses.replace(
                        fnet, layers=fnet.layers[:li] + (new,) + fnet.layers[li + 1:])))
                numeric = (num[0] - num[1]) / (2 * eps)
                assert abs(grads[li][which][idx] - numeric) <= 1e-5 + 1e-4 * abs(numeric), \
                    (li, which, idx)


def test_conv_callable_batches_and_progress(trained, digits, seed):
    _, qnet, _ = trained
    rng = np.random.default_rng(seed)
    images = digits[2][rng.choice(len(digits[2]), 7, replace=False)]
    ref_preds, ref = quant.infer(qnet, images)
    calls, ticks = [], []
    golden = quant.golden_conv(qnet)

    def conv(i, layer, x):
        assert layer is qnet.layers[i]
        calls.append((i, x.shape))
        return golden(i, layer, x)

    preds, ofmaps = quant.infer(qnet, images, conv=conv, batch=3,
                              progress=lambda *a: ticks.append(a))
    np.testing.assert_array_equal(preds, ref_preds)
    for a, b in zip(ofmaps, ref):
        np.testing.assert_array_equal(a, b)
    assert ticks == [(i, d, 7) for i in range(3) for d in (3, 6, 7)]
    assert calls == [(0, (3, 1, 8, 8)), (0, (3, 1, 8, 8)), (0, (1, 1, 8, 8)),
                     (1, (3, 8, 3, 3)), (1, (3, 8, 3, 3)), (1, (1, 8, 3, 3)),
                     (2, (3, 16, 3, 3)), (2, (3, 16, 3, 3)), (2, (1, 16, 3, 3))]

    def off_by_one(i, layer, x):
        y = golden(i, layer, x)
        return np.minimum(y + 1, 127) if i == 1 else y

    _, bad = quant.infer(qnet, images, conv=off_by_one)
    np.testing.assert_array_equal(bad[0], ref[0])
    assert not np.array_equal(bad[1], ref[1])

    with pytest.raises(ValueError, match="layer 0 returned shape"):
        quant.infer(qnet, images, conv=lambda i, l, x: golden(i, l, x)[:, :, :5])
    with pytest.raises(ValueError, match="layer 0 returned float64"):
        quant.infer(qnet, images, conv=lambda i, l, x: golden(i, l, x).astype(float))
    with pytest.raises(ValueError, match="outside act_bits = 8"):
        quant.infer(qnet, images, conv=lambda i, l, x: golden(i, l, x) + 200)


def test_save_load_round_trip(trained, digits, tmp_path):
    _, qnet, report = trained
    path = tmp_path / "new" / "digits.npz"
    assert quant.save(qnet, path) == str(path)
    back = quant.load(path)
    for a, b in zip(qnet.layers, back.layers):
        for f in dataclasses.fields(QLayer):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if isinstance(va, np.ndarray):
                np.testing.assert_array_equal(va, vb)
            else:
                assert va == vb, f.name
    for name in ("input_shape", "input_scale", "preset", "act_bits", "weight_bits", "psum_bits"):
        assert getattr(back, name) == getattr(qnet, name), name
    assert back.info == json.loads(json.dumps(report))
    xte = digits[2][:50]
    np.testing.assert_array_equal(quant.infer(back, xte)[0], quant.infer(qnet, xte)[0])
    with np.load(path, allow_pickle=False) as z:
        assert z["layer0.weights"].dtype == np.int8
        assert z["layer1.bias"].dtype == np.int32
        assert json.loads(str(z["meta"]))["format"] == "ommatidia-qnet"


def test_the_file_records_the_configuration(trained, tmp_path):
    """A model quantized for a configuration that is no preset loads with it; a version 2
    file (no ``config``) loads with the preset it names."""
    _, qnet, _ = trained
    cfg = configure("small", None, ["cols=5", "pe.ifmap_spad_depth=16"])
    custom = dataclasses.replace(qnet, config=cfg, preset=cfg.name)
    back = quant.load(quant.save(custom, tmp_path / "custom.npz"))
    assert back.config == cfg and back.preset == cfg.name and cfg.name.startswith("small-")
    good = quant.save(qnet, tmp_path / "good.npz")
    meta = json.loads(str(np.load(good)["meta"]))
    assert meta["version"] == 3 and meta["config"] == json.loads(json.dumps(
        config_fields(SMALL)))
    del meta["config"]
    old = rewrite(good, tmp_path / "v2.npz", meta=np.array(json.dumps({**meta, "version": 2})))
    assert quant.load(old).config == SMALL


def rewrite(src, dst, **changes):
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for k, v in changes.items():
        key = k.replace("__", ".")
        if v is None:
            del data[key]
        else:
            data[key] = v
    with open(dst, "wb") as f:
        np.savez(f, **data)
    return dst


def test_load_rejects_bad_files(trained, tmp_path):
    _, qnet, _ = trained
    good = quant.save(qnet, tmp_path / "good.npz")
    w = np.array(qnet.layers[1].weights, dtype=np.int16)
    w[0, 0, 0, 0] = 200
    with pytest.raises(ValueError, match=r"layers\[1\]\.weights must be within -128\.\.127"):
        quant.load(rewrite(good, tmp_path / "w.npz", layer1__weights=w))
    meta = json.loads(str(np.load(good)["meta"]))
    with pytest.raises(ValueError, match="version 4 is not supported"):
        quant.load(rewrite(good, tmp_path / "v.npz", meta=np.array(json.dumps({**meta,
                                                                             "version": 4}))))
    with pytest.raises(ValueError, match="meta 'config': ArrayConfig.rows must be at least 1"):
        bad = {**meta, "config": {**meta["config"], "rows": 0}}
        quant.load(rewrite(good, tmp_path / "c.npz", meta=np.array(json.dumps(bad))))
    with pytest.raises(ValueError, match="QNet.preset = 'small' differs from the name of its "
                                         "config, 'mine'"):
        bad = {**meta, "config": {**meta["config"], "name": "mine"}}
        quant.load(rewrite(good, tmp_path / "n.npz", meta=np.array(json.dumps(bad))))
    with pytest.raises(ValueError, match="psum_bits = 16 differs from preset 'small'"):
        quant.load(rewrite(good, tmp_path / "p.npz", meta=np.array(json.dumps({**meta,
                                                                             "psum_bits": 16}))))
    with pytest.raises(ValueError, match=r"missing \['layer2.shift'\]"):
        quant.load(rewrite(good, tmp_path / "m.npz", layer2__shift=None))
    with pytest.raises(ValueError, match="QLayer.shift must be at least 0"):
        quant.load(rewrite(good, tmp_path / "s.npz", layer0__shift=np.int64(-1)))


W33 = np.zeros((2, 1, 3, 3), dtype=np.int64)


@pytest.mark.parametrize("kwargs, words", [
    ({"stride": 0}, "QLayer.stride must be at least 1, not 0"),
    ({"padding": -1}, "QLayer.padding must be at least 0, not -1"),
    ({"shift": -2}, "QLayer.shift must be at least 0, not -2"),
    ({"pool": 0}, "QLayer.pool must be at least 1, not 0"),
    ({"relu": 1}, "QLayer.relu must be a bool"),
    ({"weight_scale": 0.0}, "QLayer.weight_scale must be a positive finite number"),
    ({"weights": W33.astype(float)}, "QLayer.weights must hold integers"),
    ({"weights": W33[0]}, r"QLayer.weights must be a non-empty \(M, C, R, S\) array"),
    ({"bias": np.zeros(3, dtype=np.int64)}, r"QLayer.bias must have shape \(2,\)"),
])
def test_qlayer_rejects(kwargs, words):
    args = {"weights": W33, "bias": np.zeros(2, dtype=np.int64), **kwargs}
    with pytest.raises(ValueError, match=words):
        QLayer(**args)


def fc(m, c, h, w):
    return QLayer(np.ones((m, c, h, w), dtype=np.int64), np.zeros(m, dtype=np.int64))


@pytest.mark.parametrize("layers, shape, words", [
    ((QLayer(np.full((2, 1, 3, 3), 128), np.zeros(2, int)), fc(3, 2, 6, 6)), (1, 8, 8),
     r"QNet.layers\[0\].weights must be within -128..127 \(weight_bits = 8\), found 128..128"),
    ((QLayer(W33, np.array([1 << 23, 0])), fc(3, 2, 6, 6)), (1, 8, 8),
     r"QNet.layers\[0\].bias must be within -8388608..8388607 \(psum_bits = 24\)"),
    ((QLayer(np.ones((1, 1, 1, 8), int), np.zeros(1, int)), fc(2, 1, 3, 1)), (1, 3, 8),
     r"QNet.layers\[0\] does not fit preset 'small': filter width S = 8 exceeds the PE's "
     r"max_filter_width = 7"),
    ((QLayer(np.ones((1, 1, 1, 3), int), np.zeros(1, int), stride=13), fc(2, 1, 1, 5)),
     (1, 1, 64), r"QNet.layers\[0\] does not fit preset 'small': PERun.U = 13 exceeds the "
                 r"ifmap spad's 12 columns"),
    ((QLayer(np.ones((1, 1, 1, 3), int), np.zeros(1, int), padding=1), fc(2, 1, 3, 64)),
     (1, 1, 64), r"padded ifmap width W \+ 2P = 66 exceeds the PE's max_ifmap_width = 64"),
    ((QLayer(W33, np.zeros(2, int)), fc(3, 3, 6, 6)), (1, 8, 8),
     r"QNet.layers\[1\].weights have C = 3 channels but the layer's input has C = 2"),
    ((QLayer(W33, np.zeros(2, int)),), (1, 8, 8), "the last layer must end at 1 x 1"),
    ((QLayer(W33, np.zeros(2, int), pool=7), fc(2, 2, 1, 1)), (1, 8, 8),
     r"QNet.layers\[0\].pool = 7 must be at most the ofmap size min\(E, F\) = 6"),
])
def test_qnet_rejects(layers, shape, words):
    with pytest.raises(ValueError, match=words):
        QNet(layers, shape, 1.0)


def test_qnet_takes_layers_the_mapper_folds():
    """R > rows and E > cols fold onto the array (the mapper's limits, not the PE set's)."""
    QNet((QLayer(np.ones((1, 1, 7, 1), int), np.zeros(1, int)), fc(2, 1, 2, 7)), (1, 8, 7),
         1.0)
    QNet((QLayer(W33, np.zeros(2, int)), fc(2, 2, 8, 7)), (1, 10, 9), 1.0)


def test_qnet_rejects_other_bits_and_presets():
    layers = (QLayer(W33, np.zeros(2, int)), fc(3, 2, 6, 6))
    QNet(layers, (1, 8, 8), 1.0)
    with pytest.raises(ValueError, match="act_bits = 16 differs from preset 'small'"):
        QNet(layers, (1, 8, 8), 1.0, act_bits=16)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        QNet(layers, (1, 8, 8), 1.0, preset="huge")
    with pytest.raises(ValueError, match="QNet.input_scale must be a positive finite number"):
        QNet(layers, (1, 8, 8), -1.0)


def test_quantize_checks_psums_on_the_calibration_images(seed):
    """A layer whose worst case exceeds 24-bit psums is kept when the calibration images
    stay within them, with a lower shift if need be; one they overflow even at shift 0
    is refused. ``info["psums"]`` reports both figures."""
    rng = np.random.default_rng(seed)
    big = FloatNet((FloatLayer(rng.uniform(-1, 1, (4, 256, 3, 3)), np.zeros(4), relu=True),
                    FloatLayer(rng.normal(size=(3, 4, 6, 6)), np.zeros(3))), (256, 8, 8))
    calib = rng.normal(size=(4, 256, 8, 8))
    qnet = quant.quantize(big, calib, SMALL)
    psums = qnet.info["psums"][0]
    print(psums)
    assert psums["worst_case"] > psums["limit"] == (1 << 23) - 1 >= psums["calibration"]
    _, ofmaps = quant.infer(qnet, calib)
    x = quant.quantize_input(qnet, calib)
    exact = golden.conv2d_psums(x, qnet.layers[0].weights, psum_bits=64)
    assert np.abs(exact + qnet.layers[0].bias.reshape(1, -1, 1, 1)).max() == \
        psums["calibration"]
    negative = FloatNet((FloatLayer(-np.ones((2, 256, 3, 3)), np.full(2, 1.0), relu=True),
                         FloatLayer(np.ones((3, 2, 6, 6)), np.zeros(3))), (256, 8, 8))
    with pytest.raises(ValueError, match=r"layer 0 reaches \|psum\| = \d+ on the calibration "
                                         r"images, beyond psum_bits = 24 \(at most 8388607\), "
                                         r"even with shift 0"):
        quant.quantize(negative, np.ones((2, 256, 8, 8)), SMALL)