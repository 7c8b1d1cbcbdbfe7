"""A CONV layer as a program for `ommatidia.hw.top.Accelerator` and its DRAM image.

`ommatidia.gen.rounds.build_rounds` turns a mapping (`ommatidia.gen.mapper`) into rounds
(GLB layout, passes, descriptors and tag tables) and `assemble` emits the DRAM image
(`ommatidia.gen.compiler.compile_layer` does both, mapping the layer first):

- word 0 on: the program (docs/program.md);
- then the filters (raw) and the padded ifmap rows of each strip (RLC-coded, or
  packed raw with ``ifmap_coding="raw"``), each region stored once, which the
  program's ``DMA_IN`` commands copy into the GLB at the start of each round (or
  channel chunk of a round);
- then one region per (image, filter group, strip) where ``DMA_OUT`` writes
  the ofmap, RLC-coded, in the psum layout ``[e][f][k]``.

Without `ArrayConfig.rlc_codec` the ifmap rows are packed raw like the filters
(as ``ifmap_coding="raw"`` packs them with it) and the ofmap regions hold
activations packed in activation slots.

`LayerProgram.ofmap` turns the DRAM words of those regions back into the
(N, M, E, F) ofmap.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from amaranth import Shape
from amaranth.lib import data

from ommatidia.hw.glb import glb_words as glb_words_of

from .config import ArrayConfig
from .banks import glb_banks, pass_banks
from .mapper import groups_of
from .packing import (RegionWords, elements_per_word, pack_slots, raw_ifmap, unpack_slots,
                      word_count)
from .rounds import PassSpec

__all__ = ["OutputStage", "OutputRegion", "LayerProgram", "check_inputs", "assemble",
           "pack_command"]


@dataclass(frozen=True)
class OutputStage:
    """Output stage of a layer (docs/architecture.md, "Numbers"): per-filter bias, ReLU, shift."""

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
    e0: int = 0
    rows: int = 0


def pack_command(opcode: int, low: int = 0) -> int:
    """A command word: ``opcode`` in bits 63..56, ``low`` in bits 55..0."""
    if not 0 <= low < 1 << 56:
        raise ValueError(f"command operand {low:#x} does not fit 56 bits")
    return opcode << 56 | low


def _packer(shape):
    """A function packing a value of ``shape`` (an int, or dicts and lists for layouts) into
    its bits as Amaranth lays them out (first field lowest); the fast path of
    ``Layout.const`` for the many descriptors of a program."""
    if isinstance(shape, data.StructLayout):
        fields = [(name, f.offset, (1 << f.width) - 1, _packer(f.shape)) for name, f in shape]
        names = {name for name, *_ in fields}

        def pack(value):
            unknown = set(value) - names
            if unknown:
                raise ValueError(f"{sorted(unknown)} are not fields of {shape}")
            return sum((fn(value[name]) & mask) << off
                       for name, off, mask, fn in fields if name in value)
        return pack
    if isinstance(shape, data.ArrayLayout):
        width = Shape.cast(shape.elem_shape).width
        mask, fn = (1 << width) - 1, _packer(shape.elem_shape)
        return lambda value: sum((fn(v) & mask) << (k * width) for k, v in enumerate(value))
    s = Shape.cast(shape)
    lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed \
        else (0, (1 << s.width) - 1)
    mask = (1 << s.width) - 1

    def scalar(value):
        value = int(value)
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit {s}")
        return value & mask
    return scalar


def _set(reg: int, value: int, width: int) -> list[int]:
    from ommatidia.hw.top import Opcode
    return [pack_command(Opcode.SET, -(-width // 64) << 8 | reg)] + _value_words(value, width)


def _value_words(value: int, width: int) -> list[int]:
    """``value`` (``width`` bits) as the 64-bit words a ``SET`` carries, lowest first."""
    return [(value >> k) & ((1 << 64) - 1) for k in range(0, width, 64)]


@dataclass
class LayerProgram:
    """The DRAM image of one layer and what is needed to read its result back.

    ``inputs`` maps each filter region ``("filter", m0, c0)`` and ifmap region
    ``("ifmap", n, c0, h0, rows)`` to its DRAM place (``dram``, ``words``) and
    `DMAIn` fields (``n`` values, ``rlc``); ``ifmap_rlc_words`` counts the ifmap
    regions' words, RLC-coded or raw as ``ifmap_coding`` asked
    (`ommatidia.gen.packing.raw_ifmap`).
    """

    cfg: ArrayConfig
    layer: object
    mapping: object
    rounds: list
    ifmap: np.ndarray
    weights: np.ndarray
    stage: OutputStage
    words: dict
    program_words: int
    outputs: list = field(default_factory=list)
    ifmap_values: int = 0
    ifmap_rlc_words: int = 0
    inputs: dict = field(default_factory=dict)
    ifmap_coding: str = "rlc"

    @property
    def passes(self) -> int:
        return sum(len(ld.passes) for r in self.rounds for ld in r.loads)

    @property
    def dram_words(self) -> int:
        """DRAM words the image spans, ofmap regions included."""
        return max(r.dram + r.words for r in self.outputs)

    def ofmap(self, read) -> tuple[np.ndarray, int]:
        """The (N, M, E, F) ofmap from ``read(addr, n) -> list of words``, and the RLC
        words it took (the packed words without `ArrayConfig.rlc_codec`). Raises
        ValueError when a region's stream is malformed."""
        from ommatidia.gen.rlc import decode
        layer, fmt = self.layer, self.cfg.rlc
        out = np.zeros((layer.N, layer.M, layer.E, layer.F), dtype=np.int64)
        coded = 0
        for r in self.outputs:
            words = read(r.dram, r.words)
            if not self.cfg.rlc_codec:
                n = r.rows * layer.F * r.p
                values = unpack_slots(self.cfg, words, n)
                out[r.n, r.m0:r.m0 + r.p, r.e0:r.e0 + r.rows] = values.reshape(
                    r.rows, layer.F, r.p).transpose(2, 0, 1)
                coded += len(words)
                continue
            end = next((k for k, w in enumerate(words) if w >> (fmt.word_bits - 1)), None)
            if end is None:
                raise ValueError(f"ofmap region of image {r.n}, filters {r.m0}..{r.m0 + r.p - 1}"
                                 f" has no term word in its {r.words} words")
            values = decode(words[:end + 1], r.rows * layer.F * r.p, fmt)
            out[r.n, r.m0:r.m0 + r.p, r.e0:r.e0 + r.rows] = np.asarray(values).reshape(
                r.rows, layer.F, r.p).transpose(2, 0, 1)
            coded += end + 1
        return out, coded


class _Inputs:
    """The filter and ifmap regions in DRAM, each stored once (filters raw, ifmaps
    RLC-coded, or packed raw when ``raw``), with the `DMAIn` command that loads each
    into the GLB."""

    def __init__(self, cfg, layer, ifmap, weights, raw: bool):
        self.cfg, self.layer, self.raw = cfg, layer, raw
        self.per = elements_per_word(cfg)
        P = layer.P
        self.padded = np.pad(ifmap, ((0, 0), (0, 0), (P, P), (P, P)))
        self.weights = weights
        self.words, self.where = [], {}  # the regions' words, from DRAM word 0 on
        self.tiles = {}  # (p, q) -> `_tiles`
        self.values = self.coded = 0

    def _put(self, key, data, n, rlc):
        if key not in self.where:
            top = len(self.words)
            self.words.extend(data)
            self.where[key] = {"dram": top, "words": len(data), "n": n, "rlc": rlc}
        return self.where[key]

    def filters(self, m0, p, c0, q):
        key = ("filter", m0, c0)
        if key not in self.where:
            w = self.weights[m0:m0 + p, c0:c0 + q]
            tiles = self._tiles(p, q) if m0 % p == 0 and c0 % q == 0 else None
            if tiles is not None and m0 // p < len(tiles) and c0 // q < tiles.shape[1]:
                data = tiles[m0 // p, c0 // q].tolist()
            else:
                data = pack_slots(self.cfg, "filter", w.transpose(2, 3, 1, 0).reshape(-1))
            self._put(key, data, w.size, 0)
        return self.where[key]

    def _tiles(self, p, q):
        """The packed words (`pack_slots`) of every whole region of ``p`` filters by ``q``
        channels starting at a multiple of them, packed at once (None past 64-bit DRAM
        words)."""
        got = self.tiles.get((p, q))
        if got is None and self.cfg.dram_bits <= 64:
            M, C, R, S = self.weights.shape
            mg, cg = M // p, C // q
            w = self.weights[:mg * p, :cg * q].reshape(mg, p, cg, q, R, S)
            w = w.transpose(0, 2, 4, 5, 3, 1).reshape(mg, cg, -1)
            per = self.per["filter"]
            slot = self.cfg.dram_bits // per
            n = word_count(w.shape[2], per)
            if slot in (8, 16, 32) and slot * per == 64 and np.little_endian:
                # the slots of a word are its bytes, lowest first
                slots = np.zeros((mg, cg, n * per), dtype=f"<u{slot // 8}")
                slots[:, :, :w.shape[2]] = w
                got = slots.view(np.uint64)
            else:
                slots = np.zeros((mg, cg, n * per), dtype=np.uint64)
                slots[:, :, :w.shape[2]] = w.astype(np.uint64) & np.uint64((1 << slot) - 1)
                shifts = np.arange(per, dtype=np.uint64) * np.uint64(slot)
                got = np.bitwise_or.reduce(slots.reshape(mg, cg, n, per) << shifts, axis=3)
            self.tiles[p, q] = got
        return got

    def ifmaps(self, n, c0, q, h0, rows):
        from ommatidia.gen.rlc import encode
        key = ("ifmap", n, c0, h0, rows)
        if key not in self.where:
            x = self.padded[n, c0:c0 + q, h0:h0 + rows, :]
            values = x.transpose(2, 1, 0).reshape(-1)
            if self.raw:
                self._put(key, pack_slots(self.cfg, "ifmap", values), len(values), 0)
            else:
                self._put(key, encode(values, self.cfg.rlc), len(values), 1)
            data = self.where[key]
            self.values += len(values)
            self.coded += data["words"]
        return self.where[key]


def _changes(cfg, ps: PassSpec, current: dict, held: dict, last: dict) -> tuple[list, list]:
    """The registers (name, value) and tag entries (engine, index, entry) of pass ``ps``
    that differ from what the program last wrote (``current``, ``held``; updated): tag
    table entries and registers hold across passes. ``last`` (updated): per engine the
    tag table list it was last compared with; the same list again holds no change
    (`ommatidia.gen.rounds.build_rounds` shares a list between passes alike)."""
    regs = [(name, value) for name, value in ps.config.items()]
    regs += [(f"{kind}_desc", ps.descs[kind]) for kind in ("filter", "ifmap", "psum")]
    regs += [("gon_desc", ps.descs["gon"]), ("run", ps.run.fields(cfg.pe))]
    regs = [(name, value) for name, value in regs if current.get(name) != value]
    current.update(regs)
    tags = []
    for engine, kind in enumerate(("filter", "ifmap", "psum")):
        table = ps.descs["tags"][kind]
        if last.get(engine) is table:
            continue
        last[engine] = table
        new = [(engine, index, entry) for index, entry in enumerate(table)
               if held.get((engine, index)) != entry]
        held.update(((engine, index), entry) for engine, index, entry in new)
        tags += new
    return regs, tags


def _emit(cfg, layer, mapping, rounds, stage, inputs, data_base):
    """The program for ``rounds``, with the input regions at ``data_base`` on and the
    ofmap regions after them; returns (program, outputs)."""
    from ommatidia.hw.dma import bias_write_layout
    from ommatidia.hw.engines import tag_write_layout
    from ommatidia.hw.top import REGISTERS, Opcode, register_shapes, _width
    shapes = register_shapes(cfg)
    reg = {name: i for i, name in enumerate(REGISTERS)}
    cgroups = dict(groups_of(layer.C, mapping.q))

    packers = {name: _packer(shape) for name, shape in shapes.items()}
    widths = {name: _width(shape) for name, shape in shapes.items()}
    heads = {name: _set(reg[name], 0, widths[name])[0] for name in shapes}

    def put(name, value):
        """The ``SET`` of register ``name`` to ``value`` (`_set`)."""
        if name in ("dma_in", "dma_out"):
            _check_dram(cfg, value["dram"] + value.get("words", 0))
        bits = value if isinstance(value, int) else packers[name](value)
        return [heads[name]] + _value_words(bits, widths[name])

    per = elements_per_word(cfg)

    def glb_words(where) -> int:
        """The GLB words a ``DMA_IN`` of ``where`` writes."""
        return word_count(where["n"], per["ifmap"]) if where["rlc"] and cfg.rlc_codec \
            else where["words"]

    def dma_in(where, glb, background=False):
        """A ``DMA_IN`` of ``where`` to GLB word ``glb``, after the last ``DMA_OUT`` if it
        may still read the words it writes (`_Outputs.guard`)."""
        outs.guard(prog, glb, glb + glb_words(where))
        return put("dma_in", {**where, "dram": data_base + where["dram"], "glb": glb}) \
            + [pack_command(Opcode.DMA_IN, int(background))]

    def merged(regions) -> list:
        """(region, GLB word) pairs, one per run of regions next to each other in DRAM
        and in the GLB."""
        out = []
        for where, glb in regions:
            if out and out[-1][0]["dram"] + out[-1][0]["words"] == where["dram"] \
                    and out[-1][1] + out[-1][0]["words"] == glb:
                last, at = out[-1]
                out[-1] = ({**last, "words": last["words"] + where["words"],
                            "n": last["n"] + where["n"]}, at)
            else:
                out.append((where, glb))
        return out

    # Staged filters (`_stage_filters`) are stored in DRAM in the order the passes load
    # them, and each pass's load in the background before the pass before it (the
    # layer's first in the foreground with its load).
    passes = [(r, li, j) for r, rnd in enumerate(rounds) for li, ld in enumerate(rnd.loads)
              for j in range(len(ld.passes))]
    before, first = {}, {}
    for i, (r, li, j) in enumerate(passes):
        rnd, load = rounds[r], rounds[r].loads[li]
        regions = merged([(inputs.filters(m0, dict(rnd.mgroups)[m0], cg, cgroups[cg]),
                           load.filters[m0, cg]) for m0, cg in load.passes[j].loads])
        if regions:
            if i:
                before.setdefault(passes[i - 1], []).extend(regions)
            else:
                first[r, li] = regions

    def loads(r, li) -> list:
        """The foreground ``DMA_IN``\\ s of a channel chunk of a round: (region, GLB word)."""
        rnd, load = rounds[r], rounds[r].loads[li]
        e0, es = rnd.strip
        h0, hs = e0 * U, (es - 1) * U + R
        filters = first.get((r, li), []) if load.staged else []
        filters += [(inputs.filters(m0, dict(rnd.mgroups)[m0], cg, cgroups[cg]), glb)
                    for (m0, cg), glb in load.filters.items() if glb < glb_size]
        return filters + [(inputs.ifmaps(n, cg, cgroups[cg], h0, hs), glb)
                          for (n, cg), glb in load.ifmaps.items()]

    prog, current = [], {}
    glb_size = glb_words_of(cfg)
    pack_tag = _packer(tag_write_layout(cfg))
    outs = _Outputs(cfg, layer, stage, data_base + len(inputs.words), put,
                    _packer(bias_write_layout(cfg)))
    held = {}   # (engine, index) -> the tag entry the program last wrote there
    last = {}   # engine -> the tag table `_changes` last compared with it
    banks = {}  # `pass_banks`'s memo
    U, R, F = layer.U, layer.R, layer.F
    ahead = 0   # the round's first DMA_INs already emitted beside the last one's DMA_OUTs
    for r, rnd in enumerate(rounds):
        es = rnd.strip[1]
        final = _final_regions(rnd) if cfg.glb_bank_reads else {}
        pending = []    # regions whose psums are final, not yet sent out
        for li, load in enumerate(rnd.loads):
            for where, glb in loads(r, li)[ahead if li == 0 else 0:]:
                prog += dma_in(where, glb)
            for j, ps in enumerate(load.passes):
                regs, tags = _changes(cfg, ps, current, held, last)
                for engine, index, (row, col, offset) in tags:
                    prog.append(pack_command(Opcode.TAG, pack_tag({
                        "engine": engine, "index": index,
                        "entry": {"row": row, "col": col, "offset": offset}})))
                for name, value in regs:
                    prog += put(name, value)
                for where, glb in before.get((r, li, j), []):
                    prog += dma_in(where, glb, background=True)
                if pending:  # a final region's DMA_OUT beside this pass, on other banks
                    mine = pass_banks(cfg, layer, mapping, rnd, load, ps, banks)
                    o = next((o for o in pending if not outs.banks(rnd, o) & mine), None)
                    if o is not None:
                        pending.remove(o)
                        outs.emit(prog, rnd, o, beside=True)
                outs.passed()
                prog.append(pack_command(Opcode.PASS))
                if li == len(rnd.loads) - 1:
                    pending += final.get(j, [])
        # The rest go out highest in the GLB first, so the last DMA_OUT, which drains
        # beside the next round's loads, reads the words they are least likely to
        # overwrite; but one on banks the next round's first pass leaves goes last, beside
        # that pass too.
        rest = sorted(pending if final else [(n, m0, p) for n in rnd.images
                                             for m0, p in rnd.mgroups],
                      key=lambda o: -rnd.psums[o[0], o[1]])
        nxt = loads(r + 1, 0) if r + 1 < len(rounds) else []
        after = pass_banks(cfg, layer, mapping, rounds[r + 1], rounds[r + 1].loads[0],
                            rounds[r + 1].loads[0].passes[0], banks) \
            if final and r + 1 < len(rounds) and rounds[r + 1].loads[0].passes else None
        free = [o for o in rest if after is not None and not outs.banks(rnd, o) & after]
        if free and free[-1] != rest[-1]:   # the last one beside the next round's pass
            rest.remove(free[-1])
            rest.append(free[-1])
        ahead = 0
        for j, o in enumerate(rest):
            outs.emit(prog, rnd, o, beside=j == len(rest) - 1 and after is not None
                      and not outs.banks(rnd, o) & after)
            # The next round's first DMA_INs run while it drains, as many as take about
            # as long, none writing psums this or a later DMA_OUT reads.
            later = [outs.words(rnd, o2) for o2 in rest[j:]]
            budget = es * F * o[2] + 8
            while ahead < len(nxt) and budget > 0 and not any(
                    lo < nxt[ahead][1] + glb_words(nxt[ahead][0]) and nxt[ahead][1] < hi
                    for lo, hi in later):
                where, glb = nxt[ahead]
                prog += dma_in(where, glb)
                budget -= (where["n"] if where["rlc"] and cfg.rlc_codec else where["words"]) + 7
                ahead += 1
    prog.append(pack_command(Opcode.DONE))
    return prog, sorted(outs.regions, key=lambda o: (o.n, o.m0, o.e0))


def _final_regions(rnd) -> dict:
    """Index of a pass in the round's last channel chunk -> the psum regions (n, m0, p)
    it makes final (their last pass)."""
    last = {}
    for j, ps in enumerate(rnd.loads[-1].passes):
        for m0, p in ps.blocks:
            last[ps.n, m0, p] = j
    out = {}
    for o, j in last.items():
        out.setdefault(j, []).append(o)
    return out


class _Outputs:
    """The ``DMA_OUT``\\ s of `_emit`: each region's DRAM place in the order they are
    emitted, and the last one while it may still drain (what a ``DMA_IN`` must not
    overwrite; with bit 1 set, the pass after it runs beside it)."""

    def __init__(self, cfg, layer, stage, top: int, put, pack_bias):
        from ommatidia.hw.top import Opcode
        self.cfg, self.layer, self.stage, self.top = cfg, layer, stage, top
        self.size = RegionWords(cfg, layer)
        self.put, self.pack_bias, self.op = put, pack_bias, Opcode
        self.regions = []
        self.drain = None   # {"at": its command word, "lo", "hi", "beside", "passed", "bias"}

    def words(self, rnd, o) -> tuple:
        """The GLB words (first, past the last) of region ``o`` = (n, m0, p) of ``rnd``."""
        lo = rnd.psums[o[0], o[1]]
        return lo, lo + self.size.psum(rnd.strip[1], o[2])

    def banks(self, rnd, o) -> set:
        return glb_banks(self.cfg, *self.words(rnd, o))

    def emit(self, prog: list, rnd, o, beside: bool) -> None:
        """The ``BIAS`` writes, ``SET dma_out`` and background ``DMA_OUT`` of region ``o``;
        with ``beside`` (bit 1) the next ``PASS`` does not wait for it."""
        cfg, stage, (n, m0, p) = self.cfg, self.stage, o
        e0, es = rnd.strip
        n_out = es * self.layer.F * p
        words = (word_count(n_out, cfg.rlc.pairs_per_word) + 1 if cfg.rlc_codec
                 else max(1, word_count(n_out, self.size.per["ifmap"])))
        self.regions.append(OutputRegion(n, m0, p, self.top, words, e0, es))
        bias = [int(stage.bias[m0 + k]) if stage.bias else 0 for k in range(p)]
        for k, b in enumerate(bias):
            prog.append(pack_command(self.op.BIAS, self.pack_bias({"index": k, "value": b})))
        prog += self.put("dma_out", {"glb": rnd.psums[n, m0], "dram": self.top, "n": n_out,
                                     "rlc": 1, "stage": {"shift": stage.shift,
                                                         "relu": int(stage.relu), "p": p}})
        self.top += words
        _check_dram(cfg, self.top)
        lo, hi = self.words(rnd, o)
        self.drain = {"at": len(prog), "lo": lo, "hi": hi, "beside": beside, "passed": False,
                      "bias": bias[0]}
        prog.append(pack_command(self.op.DMA_OUT, 1 | int(beside) << 1))

    def passed(self) -> None:
        """A ``PASS`` comes next: the last ``DMA_OUT`` has drained before it starts, or,
        with bit 1, before the ``PASS`` after it."""
        d = self.drain
        if d is not None and (not d["beside"] or d["passed"]):
            self.drain = None
        elif d is not None:
            d["passed"] = True

    def guard(self, prog: list, lo: int, hi: int) -> None:
        """Before a ``DMA_IN`` writing GLB words ``lo .. hi - 1``: if the last ``DMA_OUT``
        may still read them, it goes back to the foreground, or, once a pass ran beside
        it, a ``BIAS`` rewriting its first entry waits for it."""
        d = self.drain
        if d is None or not (lo < d["hi"] and d["lo"] < hi):
            return
        if d["passed"]:
            prog.append(pack_command(self.op.BIAS, self.pack_bias({"index": 0,
                                                                   "value": d["bias"]})))
        else:
            prog[d["at"]] = pack_command(self.op.DMA_OUT)
        self.drain = None


def check_inputs(cfg: ArrayConfig, layer, ifmap, weights, bias=None, shift: int = 0):
    """``(ifmap, weights, bias)`` as int64 arrays, checked against ``layer``'s shapes and
    ``cfg``'s bit widths; ValueError naming the tensor and the limit otherwise."""
    ifmap, weights = np.asarray(ifmap), np.asarray(weights)
    if ifmap.shape != (layer.N, layer.C, layer.H, layer.W):
        raise ValueError(f"ifmap shape {ifmap.shape} does not match {layer}")
    if weights.shape != (layer.M, layer.C, layer.R, layer.S):
        raise ValueError(f"weights shape {weights.shape} does not match {layer}")
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
    return ifmap.astype(np.int64), weights.astype(np.int64), bias


def assemble(cfg: ArrayConfig, layer, mapping, rounds, ifmap, weights, *, bias=None,
             relu: bool = False, shift: int = 0, ifmap_coding: str = "rlc") -> LayerProgram:
    """The program and DRAM image of ``layer`` under ``mapping`` and its ``rounds``
    (`build_rounds`), for inputs that passed `check_inputs`, the ifmap stored as
    ``ifmap_coding`` says (`ommatidia.gen.packing.IFMAP_CODINGS`)."""
    stage = OutputStage(tuple(int(b) for b in bias) if bias is not None else (), bool(relu),
                        shift)
    inputs = _Inputs(cfg, layer, ifmap, weights, raw_ifmap(cfg, ifmap_coding))
    prog, outputs = _emit(cfg, layer, mapping, rounds, stage, inputs, 0)
    base = len(prog)
    # the ofmap regions follow the input regions, more of which were known at the end
    out = base + len(inputs.words) - min(r.dram for r in outputs)
    if out + max(r.dram + r.words for r in outputs) <= 1 << cfg.dram_addr_bits:
        _relocate(cfg, prog, base, out)
        outputs = [replace(r, dram=out + r.dram) for r in outputs]
    else:  # emitted again at its place, to fail as that emission does
        prog, outputs = _emit(cfg, layer, mapping, rounds, stage, inputs, base)
    words = dict(enumerate(inputs.words, len(prog)))
    words.update(enumerate(prog))
    regions = {key: {**w, "dram": len(prog) + w["dram"]} for key, w in inputs.where.items()}
    _check_dram(cfg, max(r.dram + r.words for r in outputs))
    return LayerProgram(cfg, layer, mapping, rounds, ifmap, weights, stage, words, len(prog),
                        outputs, inputs.values, inputs.coded, regions, ifmap_coding)


def _relocate(cfg, prog: list, base: int, out: int) -> None:
    """Move the DRAM addresses of a program emitted with its data at word 0 (`_emit`) in
    place: its ``DMA_IN`` addresses up by ``base``, its ``DMA_OUT`` ones by ``out``. Its length
    does not depend on where the data sits, so it is emitted once, not once more to learn
    its length."""
    from ommatidia.hw.top import REGISTERS, Opcode, register_shapes
    shapes = register_shapes(cfg)
    shift = {REGISTERS.index(name): by << dict(shapes[name])["dram"].offset
             for name, by in (("dma_in", base), ("dma_out", out))}
    mask = (1 << 64) - 1
    i = 0
    while i < len(prog):
        w = prog[i]
        if w >> 56 != Opcode.SET:
            i += 1
            continue
        n, reg = (w >> 8) & 0xFF, w & 0xFF
        if reg in shift:
            value = sum(prog[i + 1 + k] << (64 * k) for k in range(n)) + shift[reg]
            prog[i + 1:i + 1 + n] = [(value >> (64 * k)) & mask for k in range(n)]
        i += 1 + n


def _check_dram(cfg, end: int) -> None:
    """ValueError unless DRAM words below ``end`` are addressable."""
    if end > 1 << cfg.dram_addr_bits:
        raise ValueError(f"the layer's DRAM image needs at least {end} words, more than the "
                         f"{1 << cfg.dram_addr_bits} that ArrayConfig.dram_addr_bits = "
                         f"{cfg.dram_addr_bits} addresses")


def _check_range(name: str, x, bits: int) -> None:
    if not np.issubdtype(np.asarray(x).dtype, np.integer):
        raise ValueError(f"{name} must hold integers, not {np.asarray(x).dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{name} values {x.min()}..{x.max()} do not fit {bits}-bit signed "
                         f"({lo}..{hi})")
