"""A CONV layer as a program for `ommatidia.hw.top.Accelerator` and its DRAM image.

`compile_layer` maps the layer on one PE set at the array's corner (the
layer's ``R x E`` logical set must fit; folding is the mapper's job), picks
``p`` filters and ``q`` channels per pass, lays out the GLB
(`ommatidia.gen.passes.PassImage`) and emits the DRAM image:

- word 0 on: the program (docs/program.md);
- then the filters (raw) and the padded ifmaps (RLC-coded), which the
  program's ``DMA_IN`` commands copy into the GLB;
- then one region per (image, filter group) where ``DMA_OUT`` writes the
  ofmap, RLC-coded, in the psum layout ``[e][f][k]``.

`LayerProgram.ofmap` turns the DRAM words of those regions back into the
(N, M, E, F) ofmap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth import Const
from amaranth.lib import data

from .config import ArrayConfig

__all__ = ["OutputStage", "OutputRegion", "LayerProgram", "compile_layer", "choose_pq",
           "pack_command"]


@dataclass(frozen=True)
class OutputStage:
    """Output stage of a layer (DESIGN.md section 3): per-filter bias, ReLU, shift."""

    bias: tuple = ()
    relu: bool = False
    shift: int = 0


@dataclass(frozen=True)
class OutputRegion:
    """Where ``DMA_OUT`` writes the ofmap of image ``n``, filters ``m0 .. m0+p-1``."""

    n: int
    m0: int
    p: int
    dram: int
    words: int


def _bits(value) -> int:
    return Const.cast(value).value


def pack_command(opcode: int, low: int = 0) -> int:
    """A command word: ``opcode`` in bits 63..56, ``low`` in bits 55..0."""
    if not 0 <= low < 1 << 56:
        raise ValueError(f"command operand {low:#x} does not fit 56 bits")
    return opcode << 56 | low


def _set(reg: int, value: int, width: int) -> list[int]:
    from ommatidia.hw.top import Opcode
    words = -(-width // 64)
    return [pack_command(Opcode.SET, words << 8 | reg)] + \
        [(value >> (64 * k)) & ((1 << 64) - 1) for k in range(words)]


def choose_pq(cfg: ArrayConfig, layer) -> tuple[int, int]:
    """Filters ``p`` and channels ``q`` per pass: the fewest passes the PE spads allow
    (ties: more filters, so the ifmap is read fewer times). Raises ValueError naming
    the spad when not even ``p = q = 1`` fits."""
    from ommatidia.hw.pe import PERun
    width = layer.W + 2 * layer.P
    best, error = None, None
    for p in range(1, min(layer.M, cfg.pe.psum_spad_depth) + 1):
        for q in range(1, layer.C + 1):
            try:
                PERun(S=layer.S, W=width, U=layer.U, p=p, q=q).check(cfg.pe)
            except ValueError as exc:
                error = error or exc
                continue
            key = (-(-layer.M // p) * -(-layer.C // q), -p)
            if best is None or key < best[0]:
                best = (key, p, q)
    if best is None:
        raise ValueError(f"layer {layer} does not fit a PE: {error}")
    return best[1], best[2]


@dataclass
class LayerProgram:
    """The DRAM image of one layer and what is needed to read its result back."""

    cfg: ArrayConfig
    layer: object
    sched: object
    stage: OutputStage
    words: dict
    program_words: int
    outputs: list = field(default_factory=list)
    ifmap_values: int = 0
    ifmap_rlc_words: int = 0

    @property
    def dram_words(self) -> int:
        """DRAM words the image spans, ofmap regions included."""
        return max(r.dram + r.words for r in self.outputs)

    def ofmap(self, read) -> tuple[np.ndarray, int]:
        """The (N, M, E, F) ofmap from ``read(addr, n) -> list of words``, and the RLC
        words it took. Raises ValueError when a region's stream is malformed."""
        from ommatidia.sim.rlc import decode
        layer, fmt = self.layer, self.cfg.rlc
        out = np.zeros((layer.N, layer.M, layer.E, layer.F), dtype=np.int64)
        coded = 0
        for r in self.outputs:
            words = read(r.dram, r.words)
            end = next((k for k, w in enumerate(words) if w >> (fmt.word_bits - 1)), None)
            if end is None:
                raise ValueError(f"ofmap region of image {r.n}, filters {r.m0}..{r.m0 + r.p - 1}"
                                 f" has no term word in its {r.words} words")
            values = decode(words[:end + 1], layer.E * layer.F * r.p, fmt)
            out[r.n, r.m0:r.m0 + r.p] = np.asarray(values).reshape(
                layer.E, layer.F, r.p).transpose(2, 0, 1)
            coded += end + 1
        return out, coded

    def golden(self) -> np.ndarray:
        """The ofmap the golden model gives for this layer and output stage."""
        from ommatidia.sim.golden import conv2d
        s, layer = self.sched, self.layer
        bias = np.array(self.stage.bias, dtype=np.int64) if self.stage.bias else None
        return conv2d(s.ifmap, s.weights, bias, stride=layer.U, padding=layer.P,
                      psum_bits=self.cfg.pe.psum_bits, relu=self.stage.relu,
                      shift=self.stage.shift, act_bits=self.cfg.pe.act_bits)


def _emit(cfg, sched, image, stage, data_base, inputs, cmds):
    """The program and the data words, with the data (``inputs`` and their DMA ``cmds``,
    `PassImage.dram`) placed from ``data_base``."""
    from ommatidia.hw.dma import bias_write_layout
    from ommatidia.hw.engines import tag_write_layout
    from ommatidia.hw.top import REGISTERS, Opcode, register_shapes, _width
    shapes = register_shapes(cfg)
    reg = {name: i for i, name in enumerate(REGISTERS)}
    layer = sched.layer

    def put(name, value):
        shape = shapes[name]
        bits = value if isinstance(value, int) else _bits(data.Layout.cast(shape).const(value))
        return _set(reg[name], bits, _width(shape))

    prog = []
    for name, value in sched.config().items():
        prog += put(name, value)
    words = {data_base + a: w for a, w in inputs.items()}
    for cmd in cmds:
        prog += put("dma_in", {**cmd, "dram": data_base + cmd["dram"]})
        prog.append(pack_command(Opcode.DMA_IN))
    top = data_base + len(inputs)
    outputs = []
    last = {}
    for ps in sched.passes:
        last[ps.n, ps.m0] = ps.index
    tag_layout, bias_layout = tag_write_layout(cfg), bias_write_layout(cfg)
    for ps in sched.passes:
        spec = image.program(ps)
        for engine, kind in enumerate(("filter", "ifmap", "psum")):
            for index, (row, col, offset) in enumerate(spec["tags"][kind]):
                entry = tag_layout.const({"engine": engine, "index": index,
                                          "entry": {"row": row, "col": col, "offset": offset}})
                prog.append(pack_command(Opcode.TAG, _bits(entry)))
            prog += put(f"{kind}_desc", spec[kind])
        prog += put("gon_desc", spec["gon"])
        prog += put("run", spec["run"])
        prog.append(pack_command(Opcode.PASS))
        if last[ps.n, ps.m0] != ps.index:
            continue
        n_out = layer.E * layer.F * ps.p
        for k in range(ps.p):
            b = int(stage.bias[ps.m0 + k]) if stage.bias else 0
            entry = bias_layout.const({"index": k, "value": b})
            prog.append(pack_command(Opcode.BIAS, _bits(entry)))
        region = OutputRegion(ps.n, ps.m0, ps.p, top, -(-n_out // cfg.rlc.pairs_per_word) + 1)
        outputs.append(region)
        top += region.words
        prog += put("dma_out", {"glb": image.base["psum", ps.n, ps.m0], "dram": region.dram,
                                "n": n_out, "rlc": 1,
                                "stage": {"shift": stage.shift, "relu": int(stage.relu),
                                          "p": ps.p}})
        prog.append(pack_command(Opcode.DMA_OUT))
    prog.append(pack_command(Opcode.DONE))
    values = sum(c["n"] for c in cmds if c["rlc"])
    coded = sum(c["words"] for c in cmds if c["rlc"])
    return prog, words, outputs, values, coded


def compile_layer(cfg: ArrayConfig, layer, ifmap, weights, *, bias=None, relu: bool = False,
                  shift: int = 0, p: int | None = None, q: int | None = None) -> LayerProgram:
    """The program and DRAM image of ``layer`` (a `ConvLayer`) on ``cfg``.

    Raises ValueError, naming the limit, when the data does not fit the
    preset's bit widths or the layer does not fit the array, a PE or the GLB.
    """
    from ommatidia.gen.passes import PassImage
    from ommatidia.sim.array_model import RSSchedule

    ifmap, weights = np.asarray(ifmap), np.asarray(weights)
    for name, x, bits in (("ifmap", ifmap, cfg.pe.act_bits),
                          ("weights", weights, cfg.pe.weight_bits)):
        _check_range(name, x, bits)
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (layer.M,):
            raise ValueError(f"bias must have shape ({layer.M},), not {bias.shape}")
        _check_range("bias", bias, cfg.pe.psum_bits)
    shift_limit = (1 << (cfg.pe.psum_bits - 1).bit_length()) - 1
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= shift_limit:
        raise ValueError(f"shift must be an integer in 0..{shift_limit}, not {shift!r}")
    if layer.R > cfg.rows or layer.E > cfg.cols:
        raise ValueError(f"the layer's {layer.R}x{layer.E} logical PE set (R filter rows x E "
                         f"ofmap rows) does not fit the {cfg.rows}x{cfg.cols} array "
                         f"(folding is not supported yet)")
    if p is None or q is None:
        p0, q0 = choose_pq(cfg, layer)
        p, q = p or p0, q or q0
    sched = RSSchedule(cfg, layer, ifmap, weights, p=p, q=q)
    image = PassImage(sched)
    stage = OutputStage(tuple(int(b) for b in bias) if bias is not None else (), bool(relu),
                        shift)
    inputs, cmds = image.dram()
    prog, _, _, _, _ = _emit(cfg, sched, image, stage, 0, inputs, cmds)
    prog, words, outputs, values, coded = _emit(cfg, sched, image, stage, len(prog), inputs,
                                                cmds)
    words.update(enumerate(prog))
    return LayerProgram(cfg, layer, sched, stage, words, len(prog), outputs, values, coded)


def _check_range(name: str, x, bits: int) -> None:
    if not np.issubdtype(np.asarray(x).dtype, np.integer):
        raise ValueError(f"{name} must hold integers, not {np.asarray(x).dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{name} values {x.min()}..{x.max()} do not fit {bits}-bit signed "
                         f"({lo}..{hi})")
