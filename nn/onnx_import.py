"""Import a float CNN from ONNX into a `ommatidia.nn.net.FloatNet`.

The graph must be one chain from one data input (N, C, H, W), or (N, K) for a
network of FC layers only, to one output, of these operators (default domain):

- ``Conv`` (weights and optional bias constant; any ``group``, run as one
  accelerator layer per group; any ``strides``, ``pads`` and kernel R x S;
  ``auto_pad`` NOTSET, VALID, SAME_UPPER or SAME_LOWER; no dilation) starts a
  CONV layer. Symmetric pads are the accelerator's P; the rest is padded on the
  host. Unequal strides run at their greatest common divisor and the host keeps
  every other row or column;
- ``Gemm`` (``transA`` 0, any ``transB``, ``alpha``, ``beta``) or ``MatMul``
  with a constant right operand, after ``Flatten`` (axis 1) or ``Reshape`` to
  (N, -1): an FC layer, a CONV layer with ``H = R``, ``W = S`` whose weights are
  the FC rows in Flatten's (C, H, W) order;
- ``Add`` of a constant of M values and ``BatchNormalization`` (inference
  mode) right after a Conv, Gemm or MatMul fold into its weights and bias;
- ``Relu`` goes to the accelerator's output stage when it commutes with what
  the host does after the layer, else to the host; ``LeakyRelu`` runs on the
  host (the accelerator's output stage is then linear);
- ``MaxPool``, ``AveragePool`` (any kernel, strides, pads, ``ceil_mode``,
  ``count_include_pad``), ``GlobalAveragePool``, ``GlobalMaxPool`` and
  ``ReduceMean`` over H and W run on the host (`ommatidia.nn.hostops`);
- ``Dropout`` and ``Identity`` are removed; a ``Softmax`` or ``LogSoftmax``
  whose output is the graph's is dropped (the argmax is the same);
- ``QuantizeLinear`` then ``DequantizeLinear`` on the data give the
  activation's scale (the input's, or the output of the layer they follow)
  that `ommatidia.nn.quant.quantize` uses instead of calibrating; on constants
  (quantized weights) they are evaluated;
- ``Pad`` with zeros on H and W before a Conv adds to its pads;
- ``Constant``, ``Shape`` of the data (batch size 1) and every node whose inputs
  are all constants (the weights' QuantizeLinear, a Pad's computed pads) are
  evaluated (onnx's reference evaluator).

Anything else raises ValueError naming the operator, the node (its name, or
``#index`` when it has none) and its index in the graph.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ommatidia.gen.arith import out_size

from .hostops import HostOp
from .net import FloatLayer, FloatNet

__all__ = ["SUPPORTED_OPS", "from_onnx"]

SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "Add", "BatchNormalization", "Relu", "LeakyRelu",
                 "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean",
                 "Flatten", "Reshape", "Dropout", "Identity", "Softmax", "LogSoftmax",
                 "QuantizeLinear", "DequantizeLinear", "Pad", "Constant", "Shape")

_QTYPES = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767), 6: (-2**31, 2**31 - 1)}
"""Integer range of each ONNX tensor type a QuantizeLinear may produce (uint8, int8,
uint16, int16, int32)."""


class _Builder:
    """The layers seen so far, the pending one, the constants, and the current tensor: its
    name, its shape and whether it is flattened."""

    def __init__(self, shape: tuple[int, int, int], flat: bool, consts: dict, cur: str,
                 output: str):
        self.layers: list[FloatLayer] = []
        self.pending: dict | None = None
        self.shape = shape
        self.flat = flat
        self.consts = consts
        self.cur = cur
        self.output = output
        self.input_quant = None
        self.quant_of: dict = {}
        self.pre_pad = (0, 0, 0, 0)
        self.opsets: list = []

    def finish(self) -> None:
        if self.pending is not None:
            p = self.pending
            self.layers.append(FloatLayer(
                p["w"], p["b"], stride=p["stride"], padding=p["padding"], relu=p["relu"],
                pool=p["pool"], groups=p["groups"], host_pad=p["host_pad"],
                subsample=p["subsample"], host=tuple(p["host"]), out_quant=p["out_quant"]))
            self.pending = None

    def start(self, w: np.ndarray, b: np.ndarray, *, strides=(1, 1), pads=(0, 0, 0, 0),
              groups: int = 1) -> None:
        self.finish()
        m, c, r, s = w.shape
        cur_c, h, wd = self.shape
        if c * groups != cur_c:
            per = f" per group x {groups} groups" if groups > 1 else ""
            raise _reject(f"weights have {c} input channels{per}, the tensor has "
                          f"{cur_c}")
        if m % groups:
            raise _reject(f"{m} filters are not a multiple of group = {groups}")
        u = math.gcd(*strides)
        p = min(pads)
        host_pad = tuple(v - p for v in pads)
        try:
            e = out_size(h + host_pad[0] + host_pad[2], r, u, p)
            f = out_size(wd + host_pad[1] + host_pad[3], s, u, p)
        except ValueError as exc:
            raise _reject(str(exc)) from None
        sub = (strides[0] // u, strides[1] // u)
        self.pending = {"w": w, "b": b, "stride": u, "padding": p, "relu": False, "pool": 1,
                        "groups": groups, "host_pad": host_pad, "subsample": sub, "host": [],
                        "linear": True, "out_quant": None}
        self.shape = (m, -(-e // sub[0]), -(-f // sub[1]))

    def need_pending(self) -> dict:
        if self.pending is None:
            raise _reject("must follow a Conv, Gemm or MatMul")
        return self.pending

    def host_op(self, op: HostOp) -> None:
        """Append ``op`` to the pending layer's host work."""
        p = self.need_pending()
        try:
            self.shape = op.shape(self.shape)
        except ValueError as exc:
            raise _reject(f"{exc} (tensor {self.shape[1]}x{self.shape[2]})") from None
        p["host"].append(op)


class _NodeError(ValueError):
    """What is wrong with the node being imported; `from_onnx` names the node."""


def _label(node, index: int) -> str:
    """``Conv node '/c/Conv' (#3)``, or ``Conv node #3`` when the node has no name."""
    return f"{node.op_type} node {node.name!r} (#{index})" if node.name else \
        f"{node.op_type} node #{index}"


def _reject(what: str) -> _NodeError:
    return _NodeError(what)


def _attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _allow_only(attrs: dict, allowed) -> None:
    extra = sorted(set(attrs) - set(allowed))
    if extra:
        raise _reject(f"attribute {extra[0]} is not supported")


def _ints(name: str, values, n: int, low: int) -> tuple[int, ...]:
    values = [int(v) for v in values]
    if len(values) != n or min(values) < low:
        raise _reject(f"{name} = {values} must be {n} values of at least {low}")
    return tuple(values)


def _bias_vector(c: np.ndarray, m: int, rank: int) -> np.ndarray:
    """``c`` as M per-output values, if it broadcasts that way onto a rank-``rank`` output."""
    c = np.asarray(c, dtype=np.float64)
    shape = (1,) * (rank - c.ndim) + c.shape if c.ndim <= rank else c.shape
    if shape == (1,) * rank:
        return np.full(m, float(c.reshape(-1)[0]))
    if shape == (1, m) + (1,) * (rank - 2):
        return c.reshape(m)
    raise _reject(f"bias of shape {c.shape} is not one value per output channel ({m}) "
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


def _const(b: _Builder, name: str) -> np.ndarray:
    if name not in b.consts:
        raise _reject(f"input {name!r} must be a constant (initializer or Constant)")
    return np.asarray(b.consts[name], dtype=np.float64)


# --- operators --------------------------------------------------------------------------------

def _same_pads(a: dict, size: tuple, kernel: tuple, strides: tuple) -> tuple:
    """The pads (top, left, bottom, right) of ``auto_pad``."""
    mode = a.get("auto_pad", "NOTSET")
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise _reject(f"auto_pad = {mode} is not supported")
    total = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(size, kernel, strides)]
    low = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]
    return (low[0], low[1], total[0] - low[0], total[1] - low[1])


def _window(a: dict, kernel, size) -> tuple[tuple, tuple]:
    """Strides and pads (top, left, bottom, right) of a Conv or pooling node."""
    strides = _ints("strides", a.get("strides", [1, 1]), 2, 1)
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        raise _reject(f"dilations = {list(a['dilations'])} are not supported")
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        if any(a.get("pads", [0])):
            raise _reject(f"auto_pad = {a['auto_pad']} with pads")
        return strides, _same_pads(a, size, kernel, strides)
    pads = _ints("pads", a.get("pads", [0, 0, 0, 0]), 4, 0)
    return strides, (pads[0], pads[1], pads[2], pads[3])


def _conv(b: _Builder, node, a: dict) -> None:
    if b.flat:
        raise _reject("a Conv cannot follow Flatten, Reshape or an FC layer")
    _allow_only(a, ("kernel_shape", "strides", "pads", "dilations", "group",
                          "auto_pad"))
    w = _const(b, node.input[1])
    if w.ndim != 4:
        raise _reject(f"weights must be (M, C, R, S), not shape {w.shape}")
    if "kernel_shape" in a and list(a["kernel_shape"]) != list(w.shape[2:]):
        raise _reject(f"kernel_shape = {list(a['kernel_shape'])} differs from "
                      f"the weights' {list(w.shape[2:])}")
    strides, pads = _window(a, w.shape[2:], b.shape[1:])
    pads = tuple(x + y for x, y in zip(pads, b.pre_pad))
    b.pre_pad = (0, 0, 0, 0)
    bias = np.zeros(w.shape[0])
    if len(node.input) > 2 and node.input[2]:
        bias = _const(b, node.input[2])
        if bias.shape != (w.shape[0],):
            raise _reject(f"bias must have shape ({w.shape[0]},), not {bias.shape}")
    b.start(w, bias, strides=strides, pads=pads, groups=int(a.get("group", 1)))


def _fc(b: _Builder, node, a: dict) -> None:
    """Gemm or MatMul: an FC layer as a CONV layer over the flattened (C, H, W) tensor."""
    op = node.op_type
    if not b.flat:
        raise _reject("needs a 2-D input: Flatten the (N, C, H, W) tensor first")
    wgt = _const(b, node.input[1])
    if wgt.ndim != 2:
        raise _reject(f"weights must be 2-D, not shape {wgt.shape}")
    if op == "Gemm":
        _allow_only(a, ("alpha", "beta", "transA", "transB"))
        if a.get("transA", 0):
            raise _reject("transA = 1 is not supported")
        wgt = wgt if a.get("transB", 0) else wgt.T
        wgt = wgt * a.get("alpha", 1.0)
        m = wgt.shape[0]
        bias = (a.get("beta", 1.0) * _bias_vector(_const(b, node.input[2]), m, 2)
                if len(node.input) > 2 and node.input[2] else np.zeros(m))
    else:
        _allow_only(a, ())
        wgt = wgt.T
        bias = np.zeros(wgt.shape[0])
    c, h, wd = b.shape
    if wgt.shape[1] != c * h * wd:
        raise _reject(f"weights take {wgt.shape[1]} inputs, the flattened tensor "
                      f"has {c * h * wd} ({c}x{h}x{wd})")
    b.start(wgt.reshape(wgt.shape[0], c, h, wd), bias)


def _linear_pending(b: _Builder) -> dict:
    p = b.need_pending()
    if not p["linear"]:
        raise _reject("must follow a Conv, Gemm or MatMul directly (before any "
                      "activation or pooling)")
    return p


def _add(b: _Builder, node, a: dict) -> None:
    _allow_only(a, ())
    p = _linear_pending(b)
    other = [x for x in node.input if x != b.cur]
    if len(other) != 1:
        raise _reject("needs one constant operand")
    p["b"] = p["b"] + _bias_vector(_const(b, other[0]), p["w"].shape[0],
                                   2 if b.flat else 4)


def _batch_norm(b: _Builder, node, a: dict) -> None:
    """Fold y = (x - mean) * scale / sqrt(var + eps) + B into the layer's weights, bias."""
    _allow_only(a, ("epsilon", "momentum", "training_mode", "spatial"))
    if a.get("training_mode", 0) or not a.get("spatial", 1):
        raise _reject("training_mode and spatial = 0 are not supported")
    p = _linear_pending(b)
    m = p["w"].shape[0]
    scale, shift, mean, var = (_const(b, x) for x in node.input[1:5])
    if any(v.shape != (m,) for v in (scale, shift, mean, var)):
        raise _reject(f"scale, B, mean and var must have shape ({m},)")
    k = scale / np.sqrt(var + a.get("epsilon", 1e-5))
    p["w"] = p["w"] * k.reshape(m, 1, 1, 1)
    p["b"] = (p["b"] - mean) * k + shift


def _relu(b: _Builder, node, a: dict) -> None:
    _allow_only(a, ())
    p = b.need_pending()
    if any(op.kind in ("avg_pool", "leaky_relu") for op in p["host"]):
        b.host_op(HostOp("relu"))
    else:
        p["relu"] = True


def _leaky_relu(b: _Builder, node, a: dict) -> None:
    _allow_only(a, ("alpha",))
    p = b.need_pending()
    alpha = float(a.get("alpha", 0.01))
    if not 0 <= alpha <= 1:
        raise _reject(f"alpha = {alpha} is not supported (only 0..1)")
    if p["relu"] and not p["host"] or alpha == 0:
        _relu(b, node, {})
    else:
        b.host_op(HostOp("leaky_relu", alpha=alpha))


def _pool(b: _Builder, node, a: dict) -> None:
    op = node.op_type
    if b.flat:
        raise _reject("cannot pool a flattened tensor")
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        _allow_only(a, ())
        b.host_op(HostOp("avg_pool" if op == "GlobalAveragePool" else "max_pool",
                         kernel=b.shape[1:]))
        return
    _allow_only(a, ("kernel_shape", "strides", "pads", "dilations", "ceil_mode",
                          "auto_pad", "storage_order", "count_include_pad"))
    kernel = _ints("kernel_shape", a.get("kernel_shape", []), 2, 1)
    strides, pads = _window(a, kernel, b.shape[1:])
    ceil, include = bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0))
    try:
        host = HostOp("max_pool" if op == "MaxPool" else "avg_pool", kernel=kernel,
                      stride=strides, pads=pads, ceil_mode=ceil, count_include_pad=include)
    except ValueError as exc:
        raise _reject(str(exc)) from None
    b.host_op(host)


def _reduce_mean(b: _Builder, node, a: dict) -> None:
    """``ReduceMean`` over H and W (how some exporters write a global average pooling)."""
    _allow_only(a, ("axes", "keepdims", "noop_with_empty_axes"))
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _const(b, node.input[1]).astype(int).reshape(-1)
    if b.flat or axes is None or sorted(int(x) % 4 for x in axes) != [2, 3]:
        raise _reject(f"only a mean over H and W (axes 2, 3) is supported, not {axes}")
    if b.flat:
        raise _reject("cannot pool a flattened tensor")
    b.host_op(HostOp("avg_pool", kernel=b.shape[1:]))
    if not a.get("keepdims", 1):
        b.flat = True


def _flatten(b: _Builder, node, a: dict) -> None:
    _allow_only(a, ("axis",))
    if a.get("axis", 1) != 1:
        raise _reject(f"axis = {a['axis']} is not supported (only 1)")
    b.flat = True


def _reshape(b: _Builder, node, a: dict) -> None:
    _allow_only(a, ("allowzero",))
    shape = [int(v) for v in _const(b, node.input[1]).reshape(-1)]
    size = b.shape[0] * b.shape[1] * b.shape[2]
    if len(shape) != 2 or shape[1] not in (-1, size) or shape[0] == -1 and shape[1] == -1:
        raise _reject(f"only a flatten to (N, -1) or (N, {size}) is supported, "
                      f"not {shape}")
    b.flat = True


def _removed(b: _Builder, node, a: dict) -> None:
    """Dropout (inference: the identity) and Identity."""
    if node.op_type == "Dropout":
        _allow_only(a, ("seed", "ratio", "is_test"))
        if len(node.input) > 2 and node.input[2] and \
                _const(b, node.input[2]).reshape(-1)[0]:
            raise _reject("training_mode = true is not supported")
    else:
        _allow_only(a, ())


def _softmax(b: _Builder, node, a: dict) -> None:
    _allow_only(a, ("axis",))
    if node.output[0] != b.output or a.get("axis", -1) not in ((1, -1) if b.flat else (1,)):
        raise _reject("only a Softmax over the class scores at the end of the graph "
                      "is supported (it is dropped: the argmax is the same)")


def _quantize(b: _Builder, node, a: dict) -> None:
    """QuantizeLinear on the data: the tensor's quantization, given to the layer it
    follows (or the input); DequantizeLinear after it: the identity."""
    _allow_only(a, ("axis", "saturate", "block_size", "output_dtype", "precision"))
    scale, zero, dtype = _qparams(b, node)
    if scale.size != 1:
        raise _reject("a per-channel scale on activations is not supported")
    s = float(scale.reshape(-1)[0])
    if node.op_type == "DequantizeLinear":
        if b.quant_of.get(b.cur) is None or abs(b.quant_of[b.cur][0] - s) > 1e-12 * s:
            raise _reject("a DequantizeLinear on the data must follow a "
                          "QuantizeLinear of the same scale")
        return
    lo, hi = _QTYPES[dtype]
    z = int(zero.reshape(-1)[0])
    quant = (s, max(hi - z, z - lo - 1))
    b.quant_of[node.output[0]] = quant
    if b.pending is None:
        b.input_quant = b.input_quant or quant
    elif b.pending["out_quant"] is None:
        b.pending["out_quant"] = quant


def _qparams(b: _Builder, node):
    """Scale, zero point and the integer type of a QuantizeLinear or DequantizeLinear."""
    scale = _const(b, node.input[1])
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in b.consts:
            raise _reject(f"input {node.input[2]!r} must be a constant")
        raw = np.asarray(b.consts[node.input[2]])
        dtype = {np.uint8: 2, np.int8: 3, np.uint16: 4, np.int16: 5, np.int32: 6}.get(
            raw.dtype.type)
        if dtype is None:
            raise _reject(f"zero point type {raw.dtype} is not supported")
        zero = raw.astype(np.int64)
    else:
        dtype, zero = 2, np.zeros(1, dtype=np.int64)
    if not (np.all(scale > 0) and np.all(np.isfinite(scale))):
        raise _reject("scale must be positive and finite")
    return scale, zero, dtype


def _evaluate(b: _Builder, node) -> list:
    """The outputs of ``node``, all of whose inputs are constants, by onnx's reference
    evaluator."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    inits = [numpy_helper.from_array(np.asarray(b.consts[x]), x) for x in dict.fromkeys(
        x for x in node.input if x)]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", [], outs, initializer=inits)
    error = None
    # onnx's evaluator lacks some old versions (DequantizeLinear before opset 19): then the
    # newest, the same operator on these inputs
    for opsets in (b.opsets, [helper.make_opsetid("", _newest_opset())]):
        try:
            return ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets)).run(None, {})
        except Exception as exc:  # the evaluator raises many types; name the node instead
            error = error or exc
    raise _reject(f"cannot evaluate it on its constant inputs: {error}")


def _newest_opset() -> int:
    """The newest opset of the installed onnx."""
    from onnx import defs
    return defs.onnx_opset_version()


def _pad(b: _Builder, node, a: dict) -> None:
    """A zero ``Pad`` of H and W, added to the next Conv's pads."""
    _allow_only(a, ("mode",))
    pads = [int(v) for v in _const(b, node.input[1]).reshape(-1)] if len(node.input) > 1 \
        else []
    value = _const(b, node.input[2]).reshape(-1) if len(node.input) > 2 and node.input[2] \
        else np.zeros(1)
    if len(node.input) > 3 and node.input[3]:
        raise _reject("the axes input is not supported")
    if b.flat or a.get("mode", "constant") != "constant" or value.size != 1 or value[0] or \
            len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
        raise _reject(f"only zero padding of H and W is supported (mode constant, value 0, "
                      f"pads >= 0), not mode {a.get('mode', 'constant')}, pads {pads}")
    p = b.pre_pad
    b.pre_pad = (p[0] + pads[2], p[1] + pads[3], p[2] + pads[6], p[3] + pads[7])


_HANDLERS = {"Conv": _conv, "Gemm": _fc, "MatMul": _fc, "Add": _add,
             "BatchNormalization": _batch_norm, "Relu": _relu, "LeakyRelu": _leaky_relu,
             "MaxPool": _pool, "AveragePool": _pool, "GlobalAveragePool": _pool,
             "GlobalMaxPool": _pool, "ReduceMean": _reduce_mean, "Flatten": _flatten,
             "Reshape": _reshape, "Dropout": _removed, "Identity": _removed,
             "Softmax": _softmax, "LogSoftmax": _softmax, "QuantizeLinear": _quantize,
             "DequantizeLinear": _quantize, "Pad": _pad}
"""The handler of each operator of a chain node; ``Constant`` is read before the chain."""

_LINEAR = ("Conv", "Gemm", "MatMul", "Add", "BatchNormalization", "Dropout", "Identity")
"""Operators after which a bias Add or a BatchNormalization may still fold."""


def _node(b: _Builder, node) -> None:
    """Check one node against the chain and apply it to ``b``."""
    from onnx import numpy_helper
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in SUPPORTED_OPS and \
            not all(x in b.consts for x in node.input if x) and op != "Shape":
        raise _reject(f"unsupported op {op!r} (domain {node.domain or 'ai.onnx'!r}); "
                      f"supported: {', '.join(SUPPORTED_OPS)}")
    a = _attrs(node)
    if op == "Constant":
        if set(a) != {"value"}:
            raise _reject(f"only the 'value' attribute is supported, not {sorted(a)}")
        b.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        return
    if node.domain in ("", "ai.onnx") and node.input and \
            all(x in b.consts for x in node.input if x):
        for name, value in zip([o for o in node.output if o], _evaluate(b, node)):
            b.consts[name] = value
        return
    if op == "Shape" and list(node.input) == [b.cur]:
        b.consts[node.output[0]] = np.array((1, b.shape[0] * b.shape[1] * b.shape[2]) if b.flat
                                            else (1, *b.shape), dtype=np.int64)
        return
    data = [x for x in node.input if x and x not in b.consts]
    if data != [b.cur]:
        raise _reject(f"the graph must be a chain: expected the input {b.cur!r}, "
                      f"got {list(node.input)}")
    if op != "Add" and node.input[0] != b.cur:
        raise _reject(f"the data tensor {b.cur!r} must be the first input")
    outputs = [x for x in node.output if x]
    if op == "MaxPool" and len(outputs) > 1:
        raise _reject("the Indices output is not supported")
    if any(b.pre_pad) and op != "Conv":
        raise _reject("a Pad must be followed by a Conv")
    _HANDLERS[op](b, node, a)
    if p := b.pending:
        p["linear"] = p["linear"] and op in _LINEAR
    if op in ("Dropout", "Identity", "QuantizeLinear", "DequantizeLinear"):
        b.quant_of.setdefault(outputs[0], b.quant_of.get(b.cur))
    b.cur = outputs[0]


def from_onnx(model, input_shape: tuple[int, ...] | None = None) -> FloatNet:
    """The `FloatNet` of an ONNX model (a ``ModelProto``, its bytes or a file path).

    ``input_shape`` (C, H, W) is needed only when the graph input's dimensions
    are not all fixed (the batch dimension may be symbolic).
    """
    from onnx import numpy_helper

    model = _load(model)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    cur, input_shape, flat = _data_input(g, consts, input_shape)
    b = _Builder(input_shape, flat, consts, cur, g.output[0].name)
    b.opsets = list(model.opset_import)
    for index, node in enumerate(g.node):
        try:
            _node(b, node)
        except _NodeError as exc:
            raise ValueError(f"from_onnx: {_label(node, index)}: {exc}") from None
    if b.cur != g.output[0].name:
        raise ValueError(f"from_onnx: the graph output {g.output[0].name!r} is not the end "
                         f"of the chain {b.cur!r}")
    b.finish()
    if not b.layers:
        raise ValueError("from_onnx: the graph has no Conv, Gemm or MatMul")
    return FloatNet(tuple(b.layers), input_shape, input_quant=b.input_quant)
