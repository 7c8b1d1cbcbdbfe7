"""ONNX import: graphs built here with onnx.helper, evaluated by a numpy interpreter written here.

The interpreter follows the ONNX operator definitions with plain loops; it is
itself checked against onnx's ReferenceEvaluator. The imported `FloatNet` must
compute what the interpreter computes, and an imported digits-shaped network
must quantize for the small preset and run.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ommatidia.gen.config import SMALL
from ommatidia.nn import digits, quant
from ommatidia.nn.onnx_import import from_onnx

OPSET = 17


# --- the independent interpreter ---------------------------------------------------------------

def np_conv(x, w, b, strides, pads):
    n, c, h, wd = x.shape
    m, _, r, s = w.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    e = (xp.shape[2] - r) // strides[0] + 1
    f = (xp.shape[3] - s) // strides[1] + 1
    out = np.zeros((n, m, e, f))
    for i in range(e):
        for j in range(f):
            win = xp[:, :, i * strides[0]:i * strides[0] + r, j * strides[1]:j * strides[1] + s]
            for k in range(m):
                out[:, k, i, j] = (win * w[k]).sum(axis=(1, 2, 3)) + (b[k] if b is not None else 0)
    return out


def np_maxpool(x, kernel, strides):
    n, c, h, w = x.shape
    e, f = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
    out = np.empty((n, c, e, f))
    for i in range(e):
        for j in range(f):
            out[:, :, i, j] = x[:, :, i * strides[0]:i * strides[0] + kernel[0],
                                j * strides[1]:j * strides[1] + kernel[1]].max(axis=(2, 3))
    return out


def evaluate(model, x):
    """Run ``model`` on ``x`` in float64, following the ONNX operator definitions."""
    g = model.graph
    env = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    env[g.input[0].name] = np.asarray(x, dtype=np.float64)
    for node in g.node:
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        ins = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            y = numpy_helper.to_array(a["value"]).astype(np.float64)
        elif op == "Conv":
            y = np_conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                        a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]))
        elif op == "Relu":
            y = np.maximum(ins[0], 0)
        elif op == "MaxPool":
            y = np_maxpool(ins[0], a["kernel_shape"], a.get("strides", [1, 1]))
        elif op == "Flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)
        elif op == "Reshape":
            shape = [ins[0].shape[i] if v == 0 else int(v) for i, v in enumerate(ins[1])]
            y = ins[0].reshape(shape)
        elif op == "Gemm":
            A, B = ins[0], ins[1]
            if a.get("transB", 0):
                B = B.T
            y = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2:
                y = y + a.get("beta", 1.0) * ins[2]
        elif op == "MatMul":
            y = ins[0] @ ins[1]
        elif op == "Add":
            y = ins[0] + ins[1]
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = y
    return env[g.output[0].name]


# --- models ------------------------------------------------------------------------------------

def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def make_model(nodes, inits, in_shape, out_shape, extra_nodes=()):
    graph = helper.make_graph(
        [*extra_nodes, *nodes], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def digits_model(rng):
    """The digits structure: Conv-Relu-MaxPool, Conv(pad 1)-Relu, Flatten, Gemm (transB)."""
    inits = [init("w1", rng.normal(0, 0.3, (8, 1, 3, 3))), init("b1", rng.normal(0, 0.1, 8)),
             init("w2", rng.normal(0, 0.2, (16, 8, 3, 3))), init("b2", rng.normal(0, 0.1, 16)),
             init("w3", rng.normal(0, 0.1, (10, 144))), init("b3", rng.normal(0, 0.1, 10))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    return make_model(nodes, inits, ["N", 1, 8, 8], ["N", 10])


def varied_model(rng):
    """Stride 2, a 3x2 kernel, no Conv bias but an Add, MaxPool before Relu, Reshape from a
    Constant, Gemm with alpha/beta and transB 0, a hidden FC with ReLU, MatMul + Add."""
    inits = [init("w1", rng.normal(0, 0.3, (4, 2, 3, 2))),
             init("a1", rng.normal(0, 0.1, (1, 4, 1, 1))),
             init("w2", rng.normal(0, 0.2, (16, 12))), init("b2", rng.normal(0, 0.1, (1, 12))),
             init("w3", rng.normal(0, 0.3, (12, 5))), init("b3", rng.normal(0, 0.1, 5))]
    shape = helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(
        np.array([0, -1], dtype=np.int64), "shape"))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a1", "c1"], ["d1"]),
        helper.make_node("MaxPool", ["d1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["p1"], ["r1"]),
        helper.make_node("Reshape", ["r1", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g2"], alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g2"], ["r2"]),
        helper.make_node("MatMul", ["r2", "w3"], ["m3"]),
        helper.make_node("Add", ["m3", "b3"], ["y"]),
    ]
    return make_model(nodes, inits, ["N", 2, 9, 9], ["N", 5], extra_nodes=[shape])


MODELS = {"digits": (digits_model, (1, 8, 8)), "varied": (varied_model, (2, 9, 9))}


@pytest.mark.parametrize("name", MODELS)
def test_interpreter_agrees_with_onnx_reference(name, seed):
    rng = np.random.default_rng(seed)
    build, shape = MODELS[name]
    model = build(rng)
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(evaluate(model, x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_import_computes_the_graph(name, seed):
    rng = np.random.default_rng(seed)
    build, shape = MODELS[name]
    model = build(rng)
    fnet = from_onnx(model)
    assert fnet.input_shape == shape
    x = rng.normal(size=(4, *shape))
    np.testing.assert_allclose(fnet.forward(x), evaluate(model, x), rtol=1e-10, atol=1e-12)


def test_import_structure_of_the_varied_model(seed):
    """MaxPool runs on the host; the Relu after it still goes to the output stage (they
    commute)."""
    fnet = from_onnx(varied_model(np.random.default_rng(seed)))
    got = [(l.weights.shape, l.stride, l.padding, l.relu, [op.describe() for op in l.host])
           for l in fnet.layers]
    assert got == [((4, 2, 3, 2), 2, 1, True, ["max_pool 2x2 /2"]),
                   ((12, 4, 2, 2), 1, 0, True, []), ((5, 12, 1, 1), 1, 0, False, [])]


def test_import_from_path_and_bytes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    model = digits_model(rng)
    path = tmp_path / "digits.onnx"
    onnx.save(model, path)
    x = rng.normal(size=(2, 1, 8, 8))
    want = evaluate(model, x)
    for source in (str(path), path, model.SerializeToString()):
        np.testing.assert_allclose(from_onnx(source).forward(x), want, rtol=1e-10, atol=1e-12)


def test_imported_digits_model_quantizes_for_small(seed):
    """The imported float network goes through the same quantization and integer inference.

    Calibrated on the images it runs (no saturation), the dequantized scores
    stay within 10 % of the largest score (6 % worst over 1200 seeds)."""
    rng = np.random.default_rng(seed)
    model = digits_model(rng)
    fnet = from_onnx(model)
    x = rng.integers(0, 17, (32, 1, 8, 8)).astype(float)
    qnet = quant.quantize(fnet, x, SMALL)
    assert qnet.preset == "small" and len(qnet.layers) == 3
    preds, ofmaps = quant.infer(qnet, x)
    want = evaluate(model, x)
    deq = ofmaps[-1].reshape(32, -1) * qnet.out_scales[-1]
    err = np.abs(deq - want).max() / np.abs(want).max()
    print(f"max score error {err:.4f} of the largest score")
    assert err < 0.1
    assert (preds == want.argmax(axis=1)).mean() >= 0.75


def digits_nodes_with(index, node):
    """The digits model with node ``index`` replaced by ``node``."""
    model = digits_model(np.random.default_rng(0))
    nodes = list(model.graph.node)
    nodes[index] = node
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


@pytest.mark.parametrize("index, node, words", [
    (1, helper.make_node("Sigmoid", ["c1"], ["r1"], name="act"),
     r"Sigmoid node 'act' \(#1\): unsupported op 'Sigmoid'"),
    (1, helper.make_node("Sigmoid", ["c1"], ["r1"]), r"Sigmoid node #1: unsupported op"),
    (0, helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], group=1, dilations=[2, 2]),
     r"Conv node #0: dilations = \[2, 2\] are not supported"),
    (0, helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[0, 1]),
     r"Conv node #0: strides = \[0, 1\] must be 2 values of at least 1"),
    (2, helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         dilations=[2, 2]), r"MaxPool node #2: dilations"),
    (2, helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[7, 7]),
     r"MaxPool node #2: pooling kernel 7 does not fit an input of 6"),
    (2, helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], pads=[2, 0, 0, 0]),
     r"AveragePool node #2: HostOp.pads = \(2, 0, 0, 0\) must each be below the kernel"),
    (6, helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transA=1, transB=1),
     r"Gemm node #6: transA = 1 is not supported"),
    (5, helper.make_node("Flatten", ["r2"], ["f"], axis=2), r"Flatten node #5: axis = 2"),
    (3, helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=3),
     r"Conv node #3: weights have 8 input channels per group x 3 groups, the tensor has 8"),
    (1, helper.make_node("Relu", ["x"], ["r1"]), "Relu node #1: the graph must be a chain"),
    (1, helper.make_node("Transpose", ["c1"], ["r1"], perm=[0, 2, 3, 1]),
     "Transpose node #1: unsupported op 'Transpose'"),
    (1, helper.make_node("Softmax", ["c1"], ["r1"], axis=1),
     "Softmax node #1: only a Softmax over the class scores at the end of the graph"),
    (1, helper.make_node("LeakyRelu", ["c1"], ["r1"], alpha=2.0),
     r"LeakyRelu node #1: alpha = 2.0 is not supported \(only 0..1\)"),
])
def test_unsupported_graphs_are_rejected(index, node, words):
    with pytest.raises(ValueError, match=words):
        from_onnx(digits_nodes_with(index, node))


def test_batch_norm_after_relu_is_rejected():
    model = digits_model(np.random.default_rng(0))
    nodes = list(model.graph.node)
    nodes[2].input[0] = "bn"
    nodes.insert(2, helper.make_node("BatchNormalization", ["r1", "s", "b", "mu", "var"], ["bn"]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(init(k, np.ones(8)) for k in ("s", "b", "mu", "var"))
    with pytest.raises(ValueError, match=r"BatchNormalization node #2: must follow a Conv, "
                                         r"Gemm or MatMul directly"):
        from_onnx(model)


def test_trailing_softmax_is_dropped(seed):
    rng = np.random.default_rng(seed)
    model = digits_model(rng)
    x = rng.normal(size=(4, 1, 8, 8))
    want = evaluate(model, x)
    model.graph.node[-1].output[0] = "logits"
    model.graph.node.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    np.testing.assert_allclose(from_onnx(model).forward(x), want, rtol=1e-10, atol=1e-12)


def test_symbolic_input_needs_a_shape(seed):
    model = digits_model(np.random.default_rng(seed))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param = "H"
    with pytest.raises(ValueError, match="give input_shape"):
        from_onnx(model)
    x = np.random.default_rng(seed).normal(size=(2, 1, 8, 8))
    np.testing.assert_allclose(from_onnx(model, input_shape=(1, 8, 8)).forward(x),
                               evaluate(model, x), rtol=1e-10, atol=1e-12)


def test_trained_digits_network_through_onnx():
    """A trained digits CNN written as ONNX here imports, quantizes and classifies as before."""
    fnet, qnet, _ = digits.train_digits(seed=1, epochs=3)
    l1, l2, l3 = fnet.layers
    inits = [init("w1", l1.weights), init("b1", l1.bias), init("w2", l2.weights),
             init("b2", l2.bias), init("w3", l3.weights.reshape(10, -1).T), init("b3", l3.bias)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("MaxPool", ["c1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["p1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("MatMul", ["f", "w3"], ["m"]),
        helper.make_node("Add", ["m", "b3"], ["y"]),
    ]
    model = make_model(nodes, inits, ["N", 1, 8, 8], ["N", 10])
    xtr, _, xte, yte = digits.digits_data()
    imported = from_onnx(model)
    np.testing.assert_allclose(imported.forward(xte), fnet.forward(xte), rtol=1e-5, atol=1e-4)
    q2 = quant.quantize(imported, xtr, SMALL, input_scale=digits.DIGITS_INPUT_SCALE)
    preds, _ = quant.infer(q2, xte)
    want, _ = quant.infer(qnet, xte)
    assert (preds == want).mean() >= 0.99
    assert (preds == yte).mean() >= 0.85
