"""Import a float CNN from ONNX into a `ommatidia.nn.net.FloatNet`.

The graph must be one chain from one data input (N, C, H, W), or (N, K) for a
network of FC layers only, to one output, of these operators (default domain):

- ``Conv`` (weights and optional bias as initializers or ``Constant`` nodes;
  ``group`` 1, no dilation, equal strides and equal pads on all sides,
  ``auto_pad`` NOTSET or VALID) starts a CONV layer;
- ``Add`` of a constant of M values right after a Conv, Gemm or MatMul adds
  to its bias;
- ``Relu`` and ``MaxPool`` (square kernel k, strides k, no pads, floor mode)
  end the layer, in either order (they commute);
- ``Flatten`` (axis 1) or ``Reshape`` to (N, -1) before an FC layer;
- ``Gemm`` (``transA`` 0, any ``transB``, ``alpha``, ``beta``) or ``MatMul``
  with a constant right operand: an FC layer, turned into a CONV layer with
  ``H = R``, ``W = S`` whose weights are the FC rows in Flatten's (C, H, W)
  order.

Anything else raises ValueError naming the operator (and the attribute).
"""

from __future__ import annotations

import os

import numpy as np

from ommatidia.gen.arith import out_size

from .net import FloatLayer, FloatNet

__all__ = ["SUPPORTED_OPS", "from_onnx"]

SUPPORTED_OPS = ("Conv", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "Add",
                 "Constant")


class _Builder:
    """The layers seen so far, the pending one, the constants, and the current tensor: its
    name, its shape and whether it is flattened."""

    def __init__(self, shape: tuple[int, int, int], flat: bool, consts: dict, cur: str):
        self.layers: list[FloatLayer] = []
        self.pending: dict | None = None
        self.shape = shape
        self.flat = flat
        self.consts = consts
        self.cur = cur

    def finish(self) -> None:
        if self.pending is not None:
            p = self.pending
            self.layers.append(FloatLayer(p["w"], p["b"], stride=p["stride"],
                                          padding=p["padding"], relu=p["relu"], pool=p["pool"]))
            self.pending = None

    def start(self, w: np.ndarray, b: np.ndarray, stride: int, padding: int, op: str) -> None:
        self.finish()
        m, c, r, s = w.shape
        cur_c, h, wd = self.shape
        if c != cur_c:
            raise ValueError(f"from_onnx: {op} weights have {c} input channels, "
                             f"the tensor has {cur_c}")
        try:
            e = out_size(h, r, stride, padding)
            f = out_size(wd, s, stride, padding)
        except ValueError as exc:
            raise ValueError(f"from_onnx: {op}: {exc}") from None
        self.pending = {"w": w, "b": b, "stride": stride, "padding": padding, "relu": False,
                        "pool": 1, "linear": True}
        self.shape = (m, e, f)

    def need_pending(self, op: str) -> dict:
        if self.pending is None:
            raise ValueError(f"from_onnx: {op} must follow a Conv, Gemm or MatMul")
        return self.pending


def _attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _reject(node, what: str):
    return ValueError(f"from_onnx: {node.op_type} node {node.name!r}: {what}")


def _allow_only(node, attrs: dict, allowed) -> None:
    extra = sorted(set(attrs) - set(allowed))
    if extra:
        raise _reject(node, f"attribute {extra[0]} is not supported")


def _same(node, name: str, values, n: int) -> int:
    values = list(values)
    if len(values) != n or len(set(values)) != 1:
        raise _reject(node, f"{name} = {values} must be {n} equal values")
    return int(values[0])


def _bias_vector(node, c: np.ndarray, m: int, rank: int) -> np.ndarray:
    """``c`` as M per-output values, if it broadcasts that way onto a rank-``rank`` output."""
    c = np.asarray(c, dtype=np.float64)
    shape = (1,) * (rank - c.ndim) + c.shape if c.ndim <= rank else c.shape
    if shape == (1,) * rank:
        return np.full(m, float(c.reshape(-1)[0]))
    if shape == (1, m) + (1,) * (rank - 2):
        return c.reshape(m)
    raise _reject(node, f"bias of shape {c.shape} is not one value per output channel ({m}) "
                        f"of the rank-{rank} tensor")


def _load(model):
    """``model`` as an ``onnx.ModelProto``, read from bytes or a path if need be."""
    import onnx
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    if not isinstance(model, onnx.ModelProto):
        raise ValueError(f"from_onnx: expected an onnx.ModelProto, bytes or a path, "
                         f"not {type(model).__name__}")
    return model


def _data_input(g, consts: dict, input_shape):
    """The graph's one data input and its (C, H, W) shape; whether it is flat (N, K)."""
    inputs = [v for v in g.input if v.name not in consts]
    if len(inputs) != 1:
        raise ValueError(f"from_onnx: the graph must have one data input, not "
                         f"{[v.name for v in inputs]}")
    if len(g.output) != 1:
        raise ValueError(f"from_onnx: the graph must have one output, not "
                         f"{[v.name for v in g.output]}")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) not in (2, 4):
        raise ValueError(f"from_onnx: the input must be (N, C, H, W) or (N, K), "
                         f"not {len(dims)}-D")
    flat = len(dims) == 2
    if input_shape is None:
        if None in dims[1:] or 0 in dims[1:]:
            raise ValueError(f"from_onnx: the input's dimensions {dims} are not fixed; "
                             f"give input_shape=(C, H, W)")
        input_shape = tuple(dims[1:]) + ((1, 1) if flat else ())
    return inputs[0].name, tuple(int(v) for v in input_shape), flat


def _const(b: _Builder, node, name: str) -> np.ndarray:
    if name not in b.consts:
        raise _reject(node, f"input {name!r} must be a constant (initializer or Constant)")
    return np.asarray(b.consts[name], dtype=np.float64)


def _conv(b: _Builder, node, a: dict) -> None:
    if b.flat:
        raise _reject(node, "a Conv cannot follow Flatten, Reshape or an FC layer")
    _allow_only(node, a, ("kernel_shape", "strides", "pads", "dilations", "group",
                          "auto_pad"))
    w = _const(b, node, node.input[1])
    if w.ndim != 4:
        raise _reject(node, f"weights must be (M, C, R, S), not shape {w.shape}")
    if a.get("group", 1) != 1:
        raise _reject(node, f"group = {a['group']} is not supported (only 1)")
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        raise _reject(node, f"dilations = {list(a['dilations'])} are not supported")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _reject(node, f"auto_pad = {a['auto_pad']} is not supported")
    if "kernel_shape" in a and list(a["kernel_shape"]) != list(w.shape[2:]):
        raise _reject(node, f"kernel_shape = {list(a['kernel_shape'])} differs from "
                            f"the weights' {list(w.shape[2:])}")
    stride = _same(node, "strides", a.get("strides", [1, 1]), 2)
    pads = a.get("pads", [0, 0, 0, 0])
    padding = _same(node, "pads", pads, 4)
    if a.get("auto_pad", "NOTSET") == "VALID" and padding:
        raise _reject(node, "auto_pad = VALID with non-zero pads")
    bias = np.zeros(w.shape[0])
    if len(node.input) > 2 and node.input[2]:
        bias = _const(b, node, node.input[2])
        if bias.shape != (w.shape[0],):
            raise _reject(node, f"bias must have shape ({w.shape[0]},), "
                                f"not {bias.shape}")
    b.start(w, bias, stride, padding, "Conv")


def _fc(b: _Builder, node, a: dict) -> None:
    """Gemm or MatMul: an FC layer as a CONV layer over the flattened (C, H, W) tensor."""
    op = node.op_type
    if not b.flat:
        raise _reject(node, "needs a 2-D input: Flatten the (N, C, H, W) tensor first")
    wgt = _const(b, node, node.input[1])
    if wgt.ndim != 2:
        raise _reject(node, f"weights must be 2-D, not shape {wgt.shape}")
    if op == "Gemm":
        _allow_only(node, a, ("alpha", "beta", "transA", "transB"))
        if a.get("transA", 0):
            raise _reject(node, "transA = 1 is not supported")
        wgt = wgt if a.get("transB", 0) else wgt.T
        wgt = wgt * a.get("alpha", 1.0)
        m = wgt.shape[0]
        bias = (a.get("beta", 1.0) * _bias_vector(node, _const(b, node, node.input[2]), m, 2)
                if len(node.input) > 2 and node.input[2] else np.zeros(m))
    else:
        _allow_only(node, a, ())
        wgt = wgt.T
        bias = np.zeros(wgt.shape[0])
    c, h, wd = b.shape
    if wgt.shape[1] != c * h * wd:
        raise _reject(node, f"weights take {wgt.shape[1]} inputs, the flattened tensor "
                            f"has {c * h * wd} ({c}x{h}x{wd})")
    b.start(wgt.reshape(wgt.shape[0], c, h, wd), bias, 1, 0, op)


def _add(b: _Builder, node, a: dict) -> None:
    _allow_only(node, a, ())
    p = b.need_pending("Add")
    if not p["linear"]:
        raise _reject(node, "a bias Add must come before Relu and MaxPool")
    other = [x for x in node.input if x != b.cur]
    if len(other) != 1:
        raise _reject(node, "needs one constant operand")
    p["b"] = p["b"] + _bias_vector(node, _const(b, node, other[0]), p["w"].shape[0],
                                   2 if b.flat else 4)


def _relu(b: _Builder, node, a: dict) -> None:
    _allow_only(node, a, ())
    p = b.need_pending("Relu")
    p["relu"], p["linear"] = True, False


def _max_pool(b: _Builder, node, a: dict) -> None:
    p = b.need_pending("MaxPool")
    _allow_only(node, a, ("kernel_shape", "strides", "pads", "dilations", "ceil_mode",
                          "auto_pad", "storage_order"))
    if b.flat:
        raise _reject(node, "cannot pool a flattened tensor")
    if p["pool"] != 1:
        raise _reject(node, "only one MaxPool per layer is supported")
    k = _same(node, "kernel_shape", a.get("kernel_shape", []), 2)
    if _same(node, "strides", a.get("strides", [1, 1]), 2) != k:
        raise _reject(node, f"strides = {list(a.get('strides', [1, 1]))} must equal "
                            f"the kernel {k} (non-overlapping pooling)")
    if any(a.get("pads", [0, 0, 0, 0])) or a.get("ceil_mode", 0) or \
            list(a.get("dilations", [1, 1])) != [1, 1] or \
            a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _reject(node, "pads, ceil_mode, dilations and auto_pad are not supported")
    m, e, f = b.shape
    if k > min(e, f):
        raise _reject(node, f"kernel {k} is larger than the {e}x{f} tensor")
    p["pool"], p["linear"] = k, False
    b.shape = (m, e // k, f // k)


def _flatten(b: _Builder, node, a: dict) -> None:
    _allow_only(node, a, ("axis",))
    if a.get("axis", 1) != 1:
        raise _reject(node, f"axis = {a['axis']} is not supported (only 1)")
    b.flat = True


def _reshape(b: _Builder, node, a: dict) -> None:
    _allow_only(node, a, ("allowzero",))
    shape = [int(v) for v in _const(b, node, node.input[1]).reshape(-1)]
    size = b.shape[0] * b.shape[1] * b.shape[2]
    if len(shape) != 2 or shape[1] not in (-1, size) or shape[0] == -1 and shape[1] == -1:
        raise _reject(node, f"only a flatten to (N, -1) or (N, {size}) is supported, "
                            f"not {shape}")
    b.flat = True


_HANDLERS = {"Conv": _conv, "Gemm": _fc, "MatMul": _fc, "Add": _add, "Relu": _relu,
             "MaxPool": _max_pool, "Flatten": _flatten, "Reshape": _reshape}
"""The handler of each operator of a chain node; ``Constant`` is read before the chain."""


def _node(b: _Builder, node) -> None:
    """Check one node against the chain and apply it to ``b``."""
    from onnx import numpy_helper
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in SUPPORTED_OPS:
        raise ValueError(f"from_onnx: unsupported op {op!r} (node {node.name!r}, domain "
                         f"{node.domain or 'ai.onnx'!r}); supported: "
                         f"{', '.join(SUPPORTED_OPS)}")
    a = _attrs(node)
    if op == "Constant":
        if set(a) != {"value"}:
            raise _reject(node, f"only the 'value' attribute is supported, not {sorted(a)}")
        b.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        return
    data = [x for x in node.input if x and x not in b.consts]
    if data != [b.cur]:
        raise _reject(node, f"the graph must be a chain: expected the input {b.cur!r}, "
                            f"got {list(node.input)}")
    if op != "Add" and node.input[0] != b.cur:
        raise _reject(node, f"the data tensor {b.cur!r} must be the first input")
    outputs = [x for x in node.output if x]
    if op == "MaxPool" and len(outputs) > 1:
        raise _reject(node, "the Indices output is not supported")
    _HANDLERS[op](b, node, a)
    if p := b.pending:
        p["linear"] = p["linear"] and op in ("Conv", "Gemm", "MatMul", "Add")
    b.cur = outputs[0]


def from_onnx(model, input_shape: tuple[int, ...] | None = None) -> FloatNet:
    """The `FloatNet` of an ONNX model (a ``ModelProto``, its bytes or a file path).

    ``input_shape`` (C, H, W) is needed only when the graph input's dimensions
    are not all fixed (the batch dimension may be symbolic).
    """
    from onnx import numpy_helper

    g = _load(model).graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    cur, input_shape, flat = _data_input(g, consts, input_shape)
    b = _Builder(input_shape, flat, consts, cur)
    for node in g.node:
        _node(b, node)
    if b.cur != g.output[0].name:
        raise ValueError(f"from_onnx: the graph output {g.output[0].name!r} is not the end "
                         f"of the chain {b.cur!r}")
    b.finish()
    if not b.layers:
        raise ValueError("from_onnx: the graph has no Conv, Gemm or MatMul")
    return FloatNet(tuple(b.layers), input_shape)
