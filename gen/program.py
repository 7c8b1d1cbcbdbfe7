"""A CONV layer as a program for `ommatidia.hw.top.Accelerator` and its DRAM image.

`build_rounds` turns a mapping (`ommatidia.gen.mapper`) into rounds (GLB layout,
passes, descriptors and tag tables) and `assemble` emits the DRAM image
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

from .config import ArrayConfig
from .banks import glb_banks, pass_banks, split_layout, split_load_layout
from .mapper import groups_of
from .packing import elements_per_word, pack_slots, raw_ifmap, unpack_slots, word_count

__all__ = ["OutputStage", "OutputRegion", "PassSpec", "Load", "Round", "LayerProgram",
           "build_rounds", "check_inputs", "assemble", "pack_command"]


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

        def pack(value):
            unknown = set(value) - {name for name, *_ in fields}
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

    def scalar(value):
        value = int(value)
        lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed \
            else (0, (1 << s.width) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit {s}")
        return value & ((1 << s.width) - 1)
    return scalar


def _set(reg: int, value: int, width: int) -> list[int]:
    from ommatidia.hw.top import Opcode
    words = -(-width // 64)
    return [pack_command(Opcode.SET, words << 8 | reg)] + \
        [(value >> (64 * k)) & ((1 << 64) - 1) for k in range(words)]


@dataclass(frozen=True)
class PassSpec:
    """One ``PASS``: image ``n``, the filter groups ``blocks`` (m0, p) side by side, the
    `ommatidia.gen.mapper.Step` stacked in each, and everything the program sets for it;
    ``loads``, the filter regions (m0, cg) it needs loaded into the filter GLB."""

    n: int
    blocks: tuple
    step: object
    config: dict
    descs: dict
    run: object
    loads: tuple = ()


@dataclass(frozen=True)
class Load:
    """A channel chunk of a round: GLB word base of each filter region (m0, cg) and ifmap
    region (n, cg), and the passes that run on them. ``staged``: its filters go through
    the filter GLB pass by pass (`_stage_filters`), not into the GLB."""

    filters: dict
    ifmaps: dict
    passes: tuple
    staged: bool = False


@dataclass(frozen=True)
class Round:
    """Images, ofmap strip (e0, rows) and filter groups (m0, p) whose psums stay in the
    GLB (word base per (n, m0)) while the loads of their channel chunks run; the GLB
    words its psums and largest load take."""

    images: range
    strip: tuple
    mgroups: tuple
    psums: dict
    loads: tuple
    glb_words: int


def _blocks(mgs, blocks: int, psum_elems, per_psum: int) -> list[tuple]:
    """Filter groups side by side: up to ``blocks`` consecutive groups of equal ``p`` whose
    psum regions are whole words (the GON receiver writes them as one region)."""
    out, cur = [], []
    for m0, p in mgs:
        joinable = cur and len(cur) < blocks and cur[0][1] == p and psum_elems(p) % per_psum == 0
        if cur and not joinable:
            out.append(tuple(cur))
            cur = []
        cur.append((m0, p))
    out.append(tuple(cur))
    return out


def _grid(cfg, bits) -> int:
    return sum(int(bool(bits[r][c])) << (r * cfg.cols + c)
               for r in range(cfg.rows) for c in range(cfg.cols))


def _pass_plan(cfg, layer, step, nblocks: int, es: int):
    """PE sets of a step repeated in ``nblocks`` column blocks, their multicast plan and
    array configuration."""
    from .multicast import PESet, plan_for
    sets, owner = [], []
    cgs = sorted({pc.cg for pc in step.pieces})
    for j in range(nblocks):
        row = 0
        for t, pc in enumerate(step.pieces):
            sets.append(PESet(pc.rows, es, (row, j * es), stride=layer.U,
                              filters=j * len(cgs) + cgs.index(pc.cg), channels=pc.cg,
                              first_row=pc.r0, psum_from_below=t < len(step.pieces) - 1))
            owner.append((j, pc))
            row += pc.rows
    plan = plan_for(cfg, sets)
    on = [[0] * cfg.cols for _ in range(cfg.rows)]
    for s in sets:
        for i in range(s.rows):
            for e in range(s.cols):
                r, c = s.pe(i, e)
                on[r][c] = 1
    config = {"up": _grid(cfg, plan.up), "enable": _grid(cfg, on)}
    for kind in ("filter", "ifmap", "psum"):
        config[f"{kind}_row_id"], config[f"{kind}_col_id"] = plan.gin(kind).packed()
    for pe, (k, e) in plan.outputs.items():
        if pe[1] != owner[k][0] * es + e:
            raise ValueError(f"output PE {pe} of set {k} is not column {owner[k][0] * es + e}")
    return plan, sets, owner, config


def _pass_descs(cfg, layer, plan, sets, owner, run, n, blocks, load, psums, hs):
    """Descriptors and tag tables of a pass; a sender's base plus a tag's offset is the
    absolute GLB element of the tag's region (`_relative`). The filter tags go from the
    bottom PE row up (the bottom row starts each output's psum chain, so it starts its
    MACs first) and the ifmap tags ifmap row by ifmap row across the stacked sets (each
    column of the stream serves first the rows every set's first PE columns need)."""
    from ommatidia.hw.engines import tag_depth
    per = elements_per_word(cfg)
    S, F, width = layer.S, layer.F, layer.W + 2 * layer.P
    p, q = run.p, run.q

    def tags(kind, keyed):
        entries = [(rt, ct, offset) for key, offset in keyed
                   for rt, ct in plan.gin(kind).tags[key]]
        if len(entries) > tag_depth(cfg):
            raise ValueError(f"{kind} needs {len(entries)} tags, the table holds "
                             f"{tag_depth(cfg)}")
        return entries

    fkeys, ikeys, pkeys = {}, {}, []
    for k, s in enumerate(sets):
        j, pc = owner[k]
        m0 = blocks[j][0]
        for i in range(s.rows):
            r = s.filter_row(i)
            fkeys[("filter", s.filters, r)] = load.filters[m0, pc.cg] * per["filter"] \
                + r * p * q * S
            for e in range(s.cols):
                h = s.ifmap_row(i, e)
                ikeys[("ifmap", s.channels, h)] = load.ifmaps[n, pc.cg] * per["ifmap"] + h * q
        if not s.psum_from_below:
            for e in range(s.cols):
                pkeys.append((("psum", k, e), psums[n, m0] * per["psum"] + e * F * p))
    (fbase, ftags), (ibase, itags), (pbase, ptags) = (
        _relative(tags(kind, keyed)) for kind, keyed in
        (("filter", sorted(fkeys.items(), reverse=True)),
         ("ifmap", sorted(ikeys.items(), key=lambda kv: (kv[0][2], kv[0][1]))),
         ("psum", pkeys)))
    none = {"base": 0, "count": [0, 0, 0], "stride": [0, 0, 0], "repeat": 1, "tags": 1}
    es = sets[0].cols
    return {
        "filter": {"base": fbase, "count": [len(ftags), 1, p * q * S], "stride": [0, 0, 1],
                   "repeat": p * q * S, "tags": len(ftags)} if run.load_filter else none,
        "ifmap": {"base": ibase, "count": [width, len(itags), q], "stride": [hs * q, 0, 1],
                  "repeat": q, "tags": len(itags)},
        "psum": {"base": pbase, "count": [F, len(ptags), p], "stride": [p, 0, 1], "repeat": p,
                 "tags": len(ptags)} if run.accumulate else none,
        "gon": {"base": psums[n, blocks[0][0]] * per["psum"], "col0": 0, "stride": F * p,
                "count": es * F * p * len(blocks)},
        "tags": {"filter": ftags if run.load_filter else [], "ifmap": itags,
                 "psum": ptags if run.accumulate else []},
    }


def _relative(entries: list) -> tuple[int, list]:
    """A sender's base (its lowest tag offset) and its tag entries with offsets counted
    from it: passes that read regions laid out alike at other GLB places (other filter
    groups' psums, the other filter GLB half, other images' ifmaps) then have the same
    tag tables, which the program does not write again."""
    base = min((offset for _, _, offset in entries), default=0)
    return base, [(row, col, offset - base) for row, col, offset in entries]


def _load_layout(cfg, top: int, fsize: dict, isize: dict, spread: bool):
    """GLB word bases of a load's filter and ifmap regions (sizes ``fsize``, ``isize``)
    above the psums' ``top`` words, and the words used; ``spread`` starts the filters
    and the ifmaps each at a bank boundary, so the three senders read different banks
    (`ArrayConfig.glb_bank_reads`) at the cost of at most two banks' padding."""
    def start(at):
        return -(-at // cfg.glb_bank_words) * cfg.glb_bank_words if spread else at
    at, fbase, ibase = start(top), {}, {}
    for key, size in fsize.items():
        fbase[key] = at
        at += size
    at = start(at) if fsize else at
    for key, size in isize.items():
        ibase[key] = at
        at += size
    return fbase, ibase, at


def _stage_filters(cfg, layer, mgs, blocks, steps, cgroups, prev):
    """The filter GLB places of a load's filter regions, staged pass by pass: each pass
    that loads filters (an image's first) gets its regions (m0, cg) in one half of the
    filter GLB, the next such pass in the other half, unless they are the previous such
    pass's (kept where they are). Returns (GLB word of each region, the regions each
    (filter group block, step) loads, the last pass's (regions, half, places)), or None
    when the load's filters cannot be staged: no filter GLB, a pass's regions take more
    than a half, or a region serves two passes (R split into segments)."""
    from ommatidia.hw.glb import filter_glb_words, glb_words
    per, fw = elements_per_word(cfg), filter_glb_words(cfg)
    if not fw:
        return None
    p_of = dict(mgs)
    sets = [tuple((m0, cg) for m0, _ in blk for cg in sorted({pc.cg for pc in st.pieces}))
            for blk in blocks for st in steps]

    def words(key):
        return word_count(layer.R * layer.S * p_of[key[0]] * cgroups[key[1]], per["filter"])
    every = [k for keys in sets for k in keys]
    if len(every) != len(set(every)) or any(sum(map(words, keys)) > fw // 2 for keys in sets):
        return None
    fbase, loads = {}, []
    for keys in sets:
        if prev is not None and prev[0] == keys:
            fbase.update(prev[2])
            loads.append(())
            continue
        half = 1 - prev[1] if prev is not None else 0
        at = glb_words(cfg) + half * (fw // 2)
        for key in keys:
            fbase[key] = at
            at += words(key)
        prev = (keys, half, {k: fbase[k] for k in keys})
        loads.append(keys)
    return fbase, loads, prev


def build_rounds(cfg: ArrayConfig, layer, mapping, *, accumulate: bool = False) -> list[Round]:
    """The rounds, GLB layout and passes of ``mapping`` (data independent); with
    ``accumulate`` every pass adds to the psums in the GLB, the first step too (the
    mapper's probes time a pass as the later steps of a filter group run it).

    Raises ValueError when a round does not fit the GLB or a pass's deliveries do not
    fit the tag tables or multicast IDs.
    """
    from ommatidia.hw.glb import glb_words
    from ommatidia.hw.pe import PERun
    per = elements_per_word(cfg)
    prev = None     # the last staged pass's filter regions, half, places
    S, F, U, R = layer.S, layer.F, layer.U, layer.R
    width = layer.W + 2 * layer.P
    cgroups = dict(groups_of(layer.C, mapping.q))
    mgroups = groups_of(layer.M, mapping.p)
    chunks = mapping.steps(layer)
    plans = {}
    rounds = []
    for n0 in range(0, layer.N, mapping.n_chunk):
        images = range(n0, min(layer.N, n0 + mapping.n_chunk))
        for e0, es in mapping.strips:
            hs = (es - 1) * U + R
            for g0 in range(0, len(mgroups), mapping.m_chunk):
                mgs = tuple(mgroups[g0:g0 + mapping.m_chunk])
                top, psums = 0, {}
                for n in images:
                    for m0, p in mgs:
                        psums[n, m0] = top
                        top += word_count(es * F * p, per["psum"])
                blocks = _blocks(mgs, mapping.blocks, lambda p: es * F * p, per["psum"])
                sizes = []
                for steps in chunks:
                    cgs = sorted({pc.cg for st in steps for pc in st.pieces})
                    sizes.append((
                        {(m0, cg): word_count(R * S * p * cgroups[cg], per["filter"])
                         for m0, p in mgs for cg in cgs},
                        {(n, cg): word_count(width * hs * cgroups[cg], per["ifmap"])
                         for n in images for cg in cgs}))
                packed = any(_load_layout(cfg, top, f, i, True)[2] > glb_words(cfg)
                             for f, i in sizes)
                split = split_layout(cfg, layer, mgs, blocks, es, psums, sizes, packed)
                if split is not None:
                    psums = split["psums"]
                loads, used = [], top
                for ci, steps in enumerate(chunks):
                    cgs = sorted({pc.cg for st in steps for pc in st.pieces})
                    isize = {(n, cg): word_count(width * hs * cgroups[cg], per["ifmap"])
                             for n in images for cg in cgs}
                    staged = _stage_filters(cfg, layer, mgs, blocks, steps, cgroups, prev)
                    if staged is not None:
                        fsize, (fstaged, staging, prev) = {}, staged
                    else:
                        prev, staging = None, [()] * (len(blocks) * len(steps))
                        fsize = {(m0, cg): word_count(R * S * p * cgroups[cg], per["filter"])
                                 for m0, p in mgs for cg in cgs}
                    fbase, ibase, at = _load_layout(cfg, top, fsize, isize, cfg.glb_bank_reads)
                    if at > glb_words(cfg) and cfg.glb_bank_reads:
                        fbase, ibase, at = _load_layout(cfg, top, fsize, isize, False)
                    if split is not None:
                        fbase, ibase, at = split_load_layout(cfg, split, fsize, isize)
                    if staged is not None:
                        fbase = fstaged
                    if at > glb_words(cfg):
                        raise ValueError(f"a round needs {at} GLB words, the GLB has "
                                         f"{glb_words(cfg)}")
                    used = max(used, at)
                    load = Load(fbase, ibase, ())
                    passes = []
                    for bi, blk in enumerate(blocks):
                        for si, st in enumerate(steps):
                            key = (st, len(blk), es)
                            if key not in plans:
                                plans[key] = _pass_plan(cfg, layer, st, len(blk), es)
                            plan, sets, owner, config = plans[key]
                            q = cgroups[st.pieces[0].cg]
                            for ni, n in enumerate(images):
                                run = PERun(S=S, W=width, U=U, p=blk[0][1], q=q,
                                            load_filter=ni == 0,
                                            accumulate=accumulate or ci > 0 or si > 0)
                                run.check(cfg.pe)
                                descs = _pass_descs(cfg, layer, plan, sets, owner, run, n, blk,
                                                    load, psums, hs)
                                passes.append(PassSpec(n, blk, st, config, descs, run,
                                                       staging[bi * len(steps) + si]
                                                       if ni == 0 else ()))
                    loads.append(Load(fbase, ibase, tuple(passes), staged is not None))
                rounds.append(Round(images, (e0, es), mgs, psums, tuple(loads), used))
    return rounds


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
        self.words, self.where = {}, {}
        self.values = self.coded = 0

    def _put(self, key, data, n, rlc):
        if key not in self.where:
            top = len(self.words)
            self.words.update({top + k: w for k, w in enumerate(data)})
            self.where[key] = {"dram": top, "words": len(data), "n": n, "rlc": rlc}
        return self.where[key]

    def filters(self, m0, p, c0, q):
        key = ("filter", m0, c0)
        if key not in self.where:
            w = self.weights[m0:m0 + p, c0:c0 + q]
            self._put(key, pack_slots(self.cfg, "filter", w.transpose(2, 3, 1, 0).reshape(-1)),
                      w.size, 0)
        return self.where[key]

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


def _changes(cfg, ps: PassSpec, current: dict, held: dict) -> tuple[list, list]:
    """The registers (name, value) and tag entries (engine, index, entry) of pass ``ps``
    that differ from what the program last wrote (``current``, ``held``; updated): tag
    table entries and registers hold across passes."""
    regs = [(name, value) for name, value in ps.config.items()]
    regs += [(f"{kind}_desc", ps.descs[kind]) for kind in ("filter", "ifmap", "psum")]
    regs += [("gon_desc", ps.descs["gon"]), ("run", ps.run.fields(cfg.pe))]
    regs = [(name, value) for name, value in regs if current.get(name) != value]
    current.update(regs)
    tags = [(engine, index, entry) for engine, kind in enumerate(("filter", "ifmap", "psum"))
            for index, entry in enumerate(ps.descs["tags"][kind])
            if held.get((engine, index)) != entry]
    held.update(((engine, index), entry) for engine, index, entry in tags)
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

    def put(name, value):
        if name in ("dma_in", "dma_out"):
            _check_dram(cfg, value["dram"] + value.get("words", 0))
        bits = value if isinstance(value, int) else packers[name](value)
        return _set(reg[name], bits, widths[name])

    per = elements_per_word(cfg)

    def glb_words(where) -> int:
        """The GLB words a ``DMA_IN`` of ``where`` writes."""
        return -(-where["n"] // per["ifmap"]) if where["rlc"] and cfg.rlc_codec \
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
        filters = first.get((r, li), []) if load.staged else \
            [(inputs.filters(m0, dict(rnd.mgroups)[m0], cg, cgroups[cg]), glb)
             for (m0, cg), glb in load.filters.items()]
        return filters + [(inputs.ifmaps(n, cg, cgroups[cg], h0, hs), glb)
                          for (n, cg), glb in load.ifmaps.items()]

    prog, current = [], {}
    pack_tag = _packer(tag_write_layout(cfg))
    outs = _Outputs(cfg, layer, stage, data_base + len(inputs.words), put,
                    _packer(bias_write_layout(cfg)))
    tag_words = {}
    held = {}   # (engine, index) -> the tag entry the program last wrote there
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
                regs, tags = _changes(cfg, ps, current, held)
                for engine, index, entry in tags:
                    word = tag_words.get((engine, index, entry))
                    if word is None:  # passes repeat their tags: pack each once
                        row, col, offset = entry
                        word = tag_words[engine, index, entry] = pack_command(
                            Opcode.TAG, pack_tag({"engine": engine, "index": index, "entry": {
                                "row": row, "col": col, "offset": offset}}))
                    prog.append(word)
                for name, value in regs:
                    prog += put(name, value)
                for where, glb in before.get((r, li, j), []):
                    prog += dma_in(where, glb, background=True)
                if pending:  # a final region's DMA_OUT beside this pass, on other banks
                    mine = pass_banks(cfg, layer, mapping, rnd, load, ps)
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
                            rounds[r + 1].loads[0].passes[0]) \
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
        self.put, self.pack_bias, self.op = put, pack_bias, Opcode
        self.regions = []
        self.drain = None   # {"at": its command word, "lo", "hi", "beside", "passed", "bias"}

    def words(self, rnd, o) -> tuple:
        """The GLB words (first, past the last) of region ``o`` = (n, m0, p) of ``rnd``."""
        lo = rnd.psums[o[0], o[1]]
        n_out = rnd.strip[1] * self.layer.F * o[2]
        return lo, lo + word_count(n_out, elements_per_word(self.cfg)["psum"])

    def banks(self, rnd, o) -> set:
        return glb_banks(self.cfg, *self.words(rnd, o))

    def emit(self, prog: list, rnd, o, beside: bool) -> None:
        """The ``BIAS`` writes, ``SET dma_out`` and background ``DMA_OUT`` of region ``o``;
        with ``beside`` (bit 1) the next ``PASS`` does not wait for it."""
        cfg, stage, (n, m0, p) = self.cfg, self.stage, o
        e0, es = rnd.strip
        n_out = es * self.layer.F * p
        words = (-(-n_out // cfg.rlc.pairs_per_word) + 1 if cfg.rlc_codec
                 else max(1, -(-n_out // elements_per_word(cfg)["ifmap"])))
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
    words = {len(prog) + a: w for a, w in inputs.words.items()}
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
