"""Pass engines: GLB address generators feeding the GINs, the GON receiver, and a pass.

A `SendEngine` streams one GIN's packets of a pass from the GLB: a nested loop
``for i0 < count[0], for i1 < count[1], for i2 < count[2]`` reads element
``base + i0*stride[0] + i1*stride[1] + i2*stride[2] + offset[t]`` and sends it
with tag ``t`` of a small tag table: entry ``t`` (row tag, column tag, address
offset) serves ``repeat`` consecutive packets, then ``t + 1``, cycling after
``tags`` entries. The offset lets one loop level walk the (row, tag) pairs of
a delivery list whose rows are not evenly spaced or are sent more than once.
A `GONReceiver` writes the GON's psums back at ``base + e*stride + count[e]``.
`PassEngine` composes the GLB, the three senders, the receiver, the
`PEArray` and the DMA engines of `ommatidia.hw.dma`;
`ommatidia.gen.rounds.build_rounds` computes the GLB layout, descriptors and tag tables.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .array import COUNTERS, GIN_KINDS, PEArray
from .dma import (DMAIn, DMAOut, bias_write_layout, dma_cmd_layout,
                  dma_out_cmd_layout, dram_write_layout)
from .filter_glb import FilterGLB, filter_addr_bits
from .glb import GLB, GLBReadSignature, elem_addr_bits, filter_glb_word, filter_glb_words, \
    glb_words, glb_write_layout, slot_bits
from .noc import gin_packet_layout, gon_packet_layout, values_layout
from .pe import pe_run_layout

__all__ = ["tag_depth", "tag_entry_layout", "tag_write_layout", "send_desc_layout",
           "recv_desc_layout", "SendEngine", "GONReceiver", "PassEngine", "data_bits",
           "gin_values"]


def tag_depth(cfg: ArrayConfig) -> int:
    """Entries of each sender's tag table (`ArrayConfig.tags`)."""
    return cfg.tags


def data_bits(cfg: ArrayConfig) -> dict:
    """Element width of each GIN kind."""
    return {"filter": cfg.pe.weight_bits, "ifmap": cfg.pe.act_bits, "psum": cfg.pe.psum_bits}


def gin_values(cfg: ArrayConfig) -> dict:
    """Values a packet of each GIN kind carries at most (`NoCConfig`)."""
    return {"filter": cfg.noc.filter_gin_values, "ifmap": cfg.noc.ifmap_gin_values,
            "psum": cfg.noc.psum_gin_values}


def tag_entry_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One tag table entry: row tag, column tag, element address offset."""
    return data.StructLayout({"row": unsigned(cfg.noc.row_id_bits),
                              "col": unsigned(cfg.noc.col_id_bits),
                              "offset": unsigned(elem_addr_bits(cfg))})


def tag_write_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A tag table write: entry ``index`` of the table of sender ``engine``
    (0 filter, 1 ifmap, 2 psum; `SendEngine` ignores ``engine``)."""
    return data.StructLayout({"engine": unsigned(2),
                              "index": unsigned((tag_depth(cfg) - 1).bit_length()),
                              "entry": tag_entry_layout(cfg)})


def send_desc_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A sender's descriptor: element base, three counts and strides, repeat, table length."""
    a = elem_addr_bits(cfg)
    return data.StructLayout({"base": unsigned(a),
                              "count": data.ArrayLayout(unsigned(a + 1), 3),
                              "stride": data.ArrayLayout(unsigned(a), 3),
                              "repeat": unsigned(a + 1),
                              "tags": unsigned(tag_depth(cfg).bit_length())})


def recv_desc_layout(cfg: ArrayConfig) -> data.StructLayout:
    """The GON receiver's descriptor: psum of column ``col`` number ``n`` goes to
    element ``base + (col - col0)*stride + n``; ``count`` psums in all."""
    a = elem_addr_bits(cfg)
    return data.StructLayout({"base": unsigned(a), "col0": range(cfg.cols),
                              "stride": unsigned(a), "count": unsigned(a + 1)})


class SendEngine(wiring.Component):
    """Nested-loop GLB reader sending tagged GIN packets of one kind.

    After a ``start`` pulse it walks the loops of ``desc`` (held during the
    run), keeping the last GLB word read: packets in that word go out one a
    cycle, and while one goes out the word of the next is read when it differs,
    so packets flow one a cycle across words unless the read port is contended
    (the first word of a run costs one cycle). A count of zero sends nothing.

    A packet carries one element, or with ``values`` > 1 (`values_layout`) up to
    ``values`` consecutive elements of the innermost loop when its stride is 1:
    as many as remain in the GLB word, in the innermost loop and under the tag
    (``repeat`` counts elements), so a packet never straddles a word or a tag. With
    ``wide`` = k > 1 (the filter sender beside a filter GLB of `filter_glb_word` k) the
    words from GLB word ``wide_from`` on are read k GLB words at a time (the filter
    GLB's words), so its packets there take up to ``values`` of k words' elements.
    ``busy`` is high from the cycle after ``start``
    until the last packet is taken.

    Members
    -------
    desc : In(send_desc_layout(cfg))
    tag_w : In(stream of tag_write_layout(cfg))
        Tag table writes, always accepted.
    start : In(1)
    busy : Out(1)
    glb : Out(GLBReadSignature(cfg, wide))
    o : Out(stream of gin_packet_layout(signed(bits), ...))
    """

    def __init__(self, cfg: ArrayConfig, bits: int, values: int = 1, wide: int = 1,
                 wide_from: int = 0):
        self._cfg = cfg
        self._bits = bits
        self._slot = slot_bits(bits, cfg.dram_bits)
        if values > wide * cfg.dram_bits // self._slot:
            raise ValueError(f"SendEngine values = {values} exceeds the "
                             f"{wide * cfg.dram_bits // self._slot} elements of {wide} GLB "
                             f"words")
        self._values, self._wide, self._wide_from = values, wide, wide_from
        super().__init__({
            "desc": In(send_desc_layout(cfg)),
            "tag_w": In(stream.Signature(tag_write_layout(cfg))),
            "start": In(1),
            "busy": Out(1),
            "glb": Out(GLBReadSignature(cfg, wide)),
            "o": Out(stream.Signature(gin_packet_layout(values_layout(signed(bits), values),
                                                        cfg.noc.row_id_bits,
                                                        cfg.noc.col_id_bits))),
        })

    def elaborate(self, platform):
        cfg, desc = self._cfg, self.desc
        a = elem_addr_bits(cfg)
        shift = (cfg.dram_bits // self._slot - 1).bit_length()
        m = Module()

        m.submodules.tags = table = Memory(shape=tag_entry_layout(cfg), depth=tag_depth(cfg),
                                           init=[])
        tw = table.write_port()
        m.d.comb += [tw.addr.eq(self.tag_w.payload.index), tw.data.eq(self.tag_w.payload.entry),
                     tw.en.eq(self.tag_w.valid), self.tag_w.ready.eq(1)]
        tr = table.read_port(domain="comb")
        tn = table.read_port(domain="comb")

        running = Signal()
        idx = [Signal(a + 1, name=f"i{k}") for k in range(3)]
        ptr = [Signal(a, name=f"p{k}") for k in range(3)]
        rep = Signal(a + 1)
        tag = Signal(range(tag_depth(cfg)))
        cache, cache_addr, cache_ok = Signal(len(self.glb.data)), \
            Signal(len(self.glb.addr.payload)), Signal()
        waiting, req_addr = Signal(), Signal(len(self.glb.addr.payload))

        m.d.comb += tr.addr.eq(tag)
        ea = Signal(a)
        m.d.comb += ea.eq(ptr[2] + tr.data.offset)
        waddr, slot, room = self._word(m, ea, shift, "")
        fresh = self.glb.valid & (req_addr == waddr)
        hit = fresh | (cache_ok & (cache_addr == waddr))
        word = Mux(self.glb.valid, self.glb.data, cache)
        can_emit = ~self.o.valid | self.o.ready

        m.d.comb += self.busy.eq(running | self.o.valid)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.glb.valid):
            m.d.sync += [cache.eq(self.glb.data), cache_addr.eq(req_addr), cache_ok.eq(1),
                         waiting.eq(0)]

        # The packet's elements: lane j joins while the innermost loop, the tag's run and
        # the GLB word go on (all monotone in j).
        V = self._values
        n = Signal(range(V + 1))
        if V == 1:
            m.d.comb += n.eq(1)
        else:
            pack = desc.stride[2] == 1
            joins = [pack & (slot + j < room) & (idx[2] + j < desc.count[2])
                     & (rep + j < desc.repeat) for j in range(1, V)]
            m.d.comb += n.eq(1 + sum(joins))

        # The loop nest's element after the packet: its counters, pointers and tag, and
        # whether the packet being sent is the last.
        last = [idx[0] + 1 == desc.count[0], idx[1] + 1 == desc.count[1],
                idx[2] + n == desc.count[2]]
        nxt_idx = [Signal.like(i, name=f"n{k}") for k, i in enumerate(idx)]
        nxt_ptr = [Signal.like(q, name=f"np{k}") for k, q in enumerate(ptr)]
        nxt_rep, nxt_tag, final = Signal.like(rep), Signal.like(tag), Signal()
        m.d.comb += [n.eq(i) for n, i in zip(nxt_idx, idx)] + \
            [n.eq(q) for n, q in zip(nxt_ptr, ptr)]
        with m.If(~last[2]):
            step2 = desc.stride[2] if V == 1 else Mux(n == 1, desc.stride[2], n)
            m.d.comb += [nxt_idx[2].eq(idx[2] + n), nxt_ptr[2].eq(ptr[2] + step2)]
        with m.Elif(~last[1]):
            step = ptr[1] + desc.stride[1]
            m.d.comb += [nxt_idx[2].eq(0), nxt_idx[1].eq(idx[1] + 1), nxt_ptr[1].eq(step),
                         nxt_ptr[2].eq(step)]
        with m.Elif(~last[0]):
            step = ptr[0] + desc.stride[0]
            m.d.comb += [nxt_idx[2].eq(0), nxt_idx[1].eq(0), nxt_idx[0].eq(idx[0] + 1),
                         nxt_ptr[0].eq(step), nxt_ptr[1].eq(step), nxt_ptr[2].eq(step)]
        with m.Else():
            m.d.comb += final.eq(1)
        # The next tag's entry is read before the packet's length decides whether the tag
        # moves on (``advance``), so the GLB request does not wait for that read.
        succ, advance = Signal.like(tag), Signal()
        m.d.comb += [succ.eq(Mux(tag + 1 == desc.tags, 0, tag + 1)), tn.addr.eq(succ),
                     advance.eq(rep + n == desc.repeat)]
        with m.If(advance):
            m.d.comb += [nxt_rep.eq(0), nxt_tag.eq(succ)]
        with m.Else():
            m.d.comb += [nxt_rep.eq(rep + n), nxt_tag.eq(tag)]
        nxt_ea = Signal(a)
        m.d.comb += nxt_ea.eq(nxt_ptr[2] + Mux(advance, tn.data.offset, tr.data.offset))
        nxt_waddr = self._word(m, nxt_ea, shift, "nxt_")[0]

        with m.If(self.start):
            m.d.sync += [running.eq((desc.count[0] != 0) & (desc.count[1] != 0)
                                    & (desc.count[2] != 0)),
                         rep.eq(0), tag.eq(0), cache_ok.eq(0), waiting.eq(0)]
            m.d.sync += [i.eq(0) for i in idx] + [p.eq(desc.base) for p in ptr]
        with m.Elif(running & hit & can_emit):
            if V == 1:
                m.d.sync += self.o.payload.data.eq(word.word_select(slot, self._slot)[:self._bits])
            else:
                lanes = word >> (slot * self._slot)
                m.d.sync += [self.o.payload.data.n.eq(n)] + \
                    [self.o.payload.data["values"][j].eq(
                        lanes.word_select(j, self._slot)[:self._bits]) for j in range(V)]
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.row.eq(tr.data.row),
                self.o.payload.col.eq(tr.data.col),
                rep.eq(nxt_rep), tag.eq(nxt_tag),
            ]
            m.d.sync += [i.eq(n) for i, n in zip(idx, nxt_idx)] + \
                [q.eq(n) for q, n in zip(ptr, nxt_ptr)]
            with m.If(final):
                m.d.sync += running.eq(0)
            with m.Elif(nxt_waddr != waddr):
                # Fetch the next element's word while this one goes out: no idle cycle
                # between GLB words when the read port is free.
                m.d.comb += [self.glb.addr.valid.eq(1), self.glb.addr.payload.eq(nxt_waddr)]
                with m.If(self.glb.addr.ready):
                    m.d.sync += [waiting.eq(1), req_addr.eq(nxt_waddr)]
        with m.Elif(running & ~hit & ~waiting):
            m.d.comb += [self.glb.addr.valid.eq(1), self.glb.addr.payload.eq(waddr)]
            with m.If(self.glb.addr.ready):
                m.d.sync += [waiting.eq(1), req_addr.eq(waddr)]
        return m

    def _word(self, m, ea, shift, name):
        """Element ``ea``'s word (the GLB word address its read asks for), its slot in the
        word and the word's elements: a GLB word, or from ``wide_from`` on one of
        ``wide`` GLB words counted from there."""
        if self._wide == 1:
            return ea[shift:], ea[:shift], 1 << shift
        lw = (self._wide - 1).bit_length()
        word = ea[shift:]
        rel = Signal(len(word), name=f"{name}rel")
        waddr = Signal(len(word), name=f"{name}waddr")
        slot = Signal(shift + lw, name=f"{name}slot")
        room = Signal(shift + lw + 1, name=f"{name}room")
        m.d.comb += rel.eq(word - self._wide_from)
        with m.If(word >= self._wide_from):
            m.d.comb += [waddr.eq(word - rel[:lw]), slot.eq(Cat(ea[:shift], rel[:lw])),
                         room.eq(1 << (shift + lw))]
        with m.Else():
            m.d.comb += [waddr.eq(word), slot.eq(ea[:shift]), room.eq(1 << shift)]
        return waddr, slot, room


class GONReceiver(wiring.Component):
    """Writes the GON's psums into the GLB, one per cycle at best.

    A two-entry skid buffer before the GLB write port keeps the GLB's grant
    out of the GON's ``ready`` path (which runs back through the array).
    With ``noc.gon_values`` > 1 a packet's psums, consecutive elements of one
    group of a GLB word (`ommatidia.hw.noc.GonPacker`), go in one masked write.

    After ``start``, psum number ``n`` from column ``col`` goes to element
    ``base + (col - col0)*stride + n`` of the psum slots (a masked word
    write); ``busy`` stays high until ``count`` psums are written.

    Members
    -------
    desc : In(recv_desc_layout(cfg))
    start : In(1)
    busy : Out(1)
    i : In(stream of gon_packet_layout(signed(psum_bits), rows, cols))
    glb : Out(stream of glb_write_layout(cfg))
    """

    def __init__(self, cfg: ArrayConfig):
        self._cfg = cfg
        self._slot = slot_bits(cfg.pe.psum_bits, cfg.dram_bits)
        super().__init__({
            "desc": In(recv_desc_layout(cfg)),
            "start": In(1),
            "busy": Out(1),
            "i": In(stream.Signature(gon_packet_layout(
                values_layout(signed(cfg.pe.psum_bits), cfg.noc.gon_values), cfg.rows,
                cfg.cols))),
            "glb": Out(stream.Signature(glb_write_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg, desc = self._cfg, self.desc
        a = elem_addr_bits(cfg)
        slots = cfg.dram_bits // self._slot
        shift = (slots - 1).bit_length()
        m = Module()
        counts = Array(Signal(a, name=f"count{c}") for c in range(cfg.cols))
        total = Signal(a + 1)
        running = Signal()
        skid = Signal(glb_write_layout(cfg))
        skid_valid = Signal()
        m.d.comb += self.busy.eq(running | self.glb.valid | skid_valid)

        take = running & ~skid_valid
        m.d.comb += self.i.ready.eq(take)
        col = self.i.payload.col
        ea = Signal(a)
        m.d.comb += ea.eq(desc.base + (col - desc.col0) * desc.stride + counts[col])
        V = cfg.noc.gon_values
        new = Signal(glb_write_layout(cfg))
        step = Signal(range(V + 1))
        if V == 1:
            value = Signal(signed(self._slot))
            m.d.comb += [value.eq(self.i.payload.data), step.eq(1)]
            mask = Cat((ea[:shift] == k).replicate(self._slot // 8) for k in range(slots)) \
                if shift else Const((1 << cfg.dram_bits // 8) - 1, cfg.dram_bits // 8)
            m.d.comb += new.data.eq(value.as_unsigned().replicate(slots))
        else:
            log = (V - 1).bit_length()
            lanes = [Signal(signed(self._slot), name=f"lane{j}") for j in range(V)]
            m.d.comb += [lane.eq(self.i.payload.data["values"][j]) for j, lane in enumerate(lanes)]
            m.d.comb += step.eq(self.i.payload.data.n)
            group = (Cat(lane.as_unsigned() for lane in lanes) << (ea[:log] * self._slot))
            m.d.comb += new.data.eq(group[:V * self._slot].replicate(slots // V))
            used = Signal(V)
            m.d.comb += used.eq((((Const(1, V + 1) << step) - 1) << ea[:log])[:V])
            mask = Cat(((ea[log:shift] == k // V) if shift > log else Const(1, 1)) & used[k % V]
                       for k in range(slots) for _ in range(self._slot // 8))
        m.d.comb += [new.addr.eq(ea[shift:]), new.mask.eq(mask)]
        accept = take & self.i.valid

        with m.If(self.glb.valid & ~self.glb.ready):
            with m.If(accept):
                m.d.sync += [skid.eq(new), skid_valid.eq(1)]
        with m.Elif(skid_valid):
            m.d.sync += [self.glb.payload.eq(skid), self.glb.valid.eq(1), skid_valid.eq(0)]
        with m.Elif(accept):
            m.d.sync += [self.glb.payload.eq(new), self.glb.valid.eq(1)]
        with m.Else():
            m.d.sync += self.glb.valid.eq(0)

        with m.If(self.start):
            m.d.sync += [running.eq(desc.count != 0), total.eq(0)]
            m.d.sync += [c.eq(0) for c in counts]
        with m.Elif(accept):
            m.d.sync += [counts[col].eq(counts[col] + step), total.eq(total + step)]
            with m.If(total + step == desc.count):
                m.d.sync += running.eq(0)
        return m


class PassEngine(wiring.Component):
    """GLB + filter/ifmap/psum senders + GON receiver + `PEArray`: runs one pass per ``start``.

    A host (testbench, later DMA and controller) fills the GLB through its
    own read and write clients, writes the tag tables, holds the descriptors,
    the array configuration and ``run`` during a pass, and pulses ``start``
    while ``busy`` is low: the engines start, ``run`` is offered to the array,
    and ``busy`` stays high until every sender is done, every psum is written
    back and the array is idle. Read clients, round-robin: filter, ifmap,
    psum senders, host, `DMAOut` (fed ``dma_out_cmd``, writing DRAM words on
    ``dram_w``); write clients: GON receiver, host, `DMAIn` (fed ``dma_cmd``;
    its DRAM port is ``dram_addr`` / ``dram_data``).

    Members
    -------
    host_read : In(GLBReadSignature(cfg))
    host_write : In(stream of glb_write_layout(cfg))
    tag_w : In(stream of tag_write_layout(cfg))
    dma_cmd : In(stream of dma_cmd_layout(cfg))
    dram_addr : Out(stream of unsigned(cfg.dram_addr_bits))
    dram_data : In(stream of unsigned(dram_bits))
    dma_busy, dma_error : Out(1)
    dma_out_cmd : In(stream of dma_out_cmd_layout(cfg))
    bias_w : In(stream of bias_write_layout(cfg))
    dram_w : Out(stream of dram_write_layout(cfg))
    dma_out_busy : Out(1)
    dma_out_words : Out(elem_addr_bits(cfg) + 1)
    filter_desc, ifmap_desc, psum_desc : In(send_desc_layout(cfg))
    gon_desc : In(recv_desc_layout(cfg))
    <kind>_row_id, <kind>_col_id, up, enable : as `PEArray`
    run : In(pe_run_layout(cfg.pe))
    start : In(1)
    busy : Out(1)
    glb_read : Out(1), with ``cfg.glb_bank_reads`` Out(range(6))
        GLB and filter GLB reads granted this cycle.
    glb_write : Out(2)
        GLB and filter GLB writes this cycle.
    noc_stalls : Out(range(5))
        Senders and GON outputs holding a packet their network does not take this cycle.
    mac_cycles, gated_macs, stall_cycles : Out(cfg.pe.counter_bits)
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"PassEngine takes an ArrayConfig, not {cfg!r}")
        self._cfg = cfg
        self._array = PEArray(cfg)
        members = {
            "host_read": In(GLBReadSignature(cfg)),
            "host_write": In(stream.Signature(glb_write_layout(cfg))),
            "tag_w": In(stream.Signature(tag_write_layout(cfg))),
            "dma_cmd": In(stream.Signature(dma_cmd_layout(cfg))),
            "dram_addr": Out(stream.Signature(unsigned(cfg.dram_addr_bits))),
            "dram_data": In(stream.Signature(unsigned(cfg.dram_bits))),
            "dma_busy": Out(1),
            "dma_error": Out(1),
            "dma_out_cmd": In(stream.Signature(dma_out_cmd_layout(cfg))),
            "bias_w": In(stream.Signature(bias_write_layout(cfg))),
            "dram_w": Out(stream.Signature(dram_write_layout(cfg))),
            "dma_out_busy": Out(1),
            "dma_out_words": Out(elem_addr_bits(cfg) + 1),
        }
        for kind in GIN_KINDS:
            members[f"{kind}_desc"] = In(send_desc_layout(cfg))
        members["gon_desc"] = In(recv_desc_layout(cfg))
        sig = self._array.signature.members
        for kind in GIN_KINDS:
            for f in ("row_id", "col_id"):
                members[f"{kind}_{f}"] = In(sig[f"{kind}_{f}"].shape)
        members["up"] = In(sig["up"].shape)
        members["enable"] = In(sig["enable"].shape)
        members["run"] = In(pe_run_layout(cfg.pe))
        members["start"] = In(1)
        members["busy"] = Out(1)
        members["glb_read"] = Out(range(6) if cfg.glb_bank_reads else 1)
        members["glb_write"] = Out(2)
        members["noc_stalls"] = Out(range(len(GIN_KINDS) + 2))
        for name in COUNTERS:
            members[name] = Out(cfg.pe.counter_bits)
        super().__init__(members)

    @property
    def array(self) -> PEArray:
        return self._array

    def _filter_glb(self, m, dma, glb):
        """The `FilterGLB` (None without one): `DMAIn` writes to GLB words from `glb_words`
        on go to it, the others to the GLB; the filter sender reads those words from it."""
        cfg = self._cfg
        if not filter_glb_words(cfg):
            wiring.connect(m, dma.glb, glb.write[2])
            return None
        m.submodules.filter_glb = fglb = FilterGLB(cfg)
        w, gw, main = dma.glb, glb_words(cfg), glb.write[2]
        to_filters = w.payload.addr >= gw
        m.d.comb += [
            fglb.write.valid.eq(w.valid & to_filters),
            fglb.write.payload.addr.eq((w.payload.addr - gw)[:filter_addr_bits(cfg)]),
            fglb.write.payload.data.eq(w.payload.data), fglb.write.payload.mask.eq(w.payload.mask),
            main.valid.eq(w.valid & ~to_filters),
            main.payload.addr.eq(w.payload.addr),
            main.payload.data.eq(w.payload.data), main.payload.mask.eq(w.payload.mask),
            w.ready.eq(Mux(to_filters, fglb.write.ready, main.ready)),
        ]
        return fglb

    def _filter_reads(self, m, s, r, fglb):
        """The filter sender ``s``'s reads: of GLB words to the GLB's read client ``r``,
        of filter GLB words (from `glb_words` on) to the `FilterGLB`. With
        ``cfg.glb_bank_reads`` the filter GLB's read port is its own, so such a read is
        granted whenever it comes (returned: 1 in a cycle granting one); without, it
        still waits for the GLB's one read grant (returned: 0, counted there)."""
        cfg, gw, from_f = self._cfg, glb_words(self._cfg), Signal()
        to_f = s.addr.payload >= gw
        m.d.comb += [r.addr.payload.eq(s.addr.payload),
                     fglb.addr.eq((s.addr.payload - gw)[:filter_addr_bits(cfg)]),
                     s.data.eq(Mux(from_f, fglb.data, r.data))]
        if not cfg.glb_bank_reads:
            grant = r.addr.valid & r.addr.ready
            m.d.comb += [r.addr.valid.eq(s.addr.valid), s.addr.ready.eq(r.addr.ready),
                         s.valid.eq(r.valid), fglb.en.eq(grant & to_f)]
            with m.If(grant):
                m.d.sync += from_f.eq(to_f)
            return 0
        own, f_valid = Signal(), Signal()
        m.d.comb += [own.eq(s.addr.valid & to_f), fglb.en.eq(own),
                     r.addr.valid.eq(s.addr.valid & ~to_f),
                     s.addr.ready.eq(Mux(to_f, 1, r.addr.ready)),
                     s.valid.eq(r.valid | f_valid)]
        m.d.sync += f_valid.eq(own)
        with m.If(s.addr.valid & s.addr.ready):
            m.d.sync += from_f.eq(to_f)
        return own

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.array = array = self._array
        m.submodules.glb = glb = GLB(cfg, readers=5, writers=3)
        m.submodules.dma_out = dma_out = DMAOut(cfg)
        wiring.connect(m, wiring.flipped(self.dma_out_cmd), dma_out.cmd)
        wiring.connect(m, wiring.flipped(self.bias_w), dma_out.bias_w)
        wiring.connect(m, dma_out.dram, wiring.flipped(self.dram_w))
        wiring.connect(m, dma_out.glb, glb.read[4])
        m.d.comb += [self.dma_out_busy.eq(dma_out.busy), self.dma_out_words.eq(dma_out.words)]
        m.submodules.dma = dma = DMAIn(cfg)
        wiring.connect(m, wiring.flipped(self.dma_cmd), dma.cmd)
        wiring.connect(m, dma.dram_addr, wiring.flipped(self.dram_addr))
        wiring.connect(m, wiring.flipped(self.dram_data), dma.dram_data)
        m.d.comb += [self.dma_busy.eq(dma.busy), self.dma_error.eq(dma.error)]
        fglb = self._filter_glb(m, dma, glb)
        own = 0
        bits = data_bits(cfg)
        senders = {}
        for n, kind in enumerate(GIN_KINDS):
            wide = filter_glb_word(cfg) if n == 0 else 1
            m.submodules[f"{kind}_sender"] = s = senders[kind] = SendEngine(
                cfg, bits[kind], gin_values(cfg)[kind], wide, glb_words(cfg))
            if n == 0 and fglb is not None:
                own = self._filter_reads(m, s.glb, glb.read[0], fglb)
            else:
                wiring.connect(m, s.glb, glb.read[n])
            wiring.connect(m, s.o, getattr(array, kind))
            m.d.comb += [s.desc.eq(getattr(self, f"{kind}_desc")), s.start.eq(self.start),
                         s.tag_w.payload.eq(self.tag_w.payload),
                         s.tag_w.valid.eq(self.tag_w.valid & (self.tag_w.payload.engine == n))]
            for f in ("row_id", "col_id"):
                m.d.comb += getattr(array, f"{kind}_{f}").eq(getattr(self, f"{kind}_{f}"))
        m.d.comb += self.tag_w.ready.eq(1)
        wiring.connect(m, wiring.flipped(self.host_read), glb.read[3])
        m.submodules.receiver = rx = GONReceiver(cfg)
        wiring.connect(m, array.gon, rx.i)
        wiring.connect(m, rx.glb, glb.write[0])
        wiring.connect(m, wiring.flipped(self.host_write), glb.write[1])
        if cfg.noc.gon_values > 1:
            gd, log = self.gon_desc, (cfg.noc.gon_values - 1).bit_length()
            m.d.comb += [array.gon_phase[c].eq((gd.base + (c - gd.col0) * gd.stride)[:log])
                         for c in range(cfg.cols)]
        m.d.comb += [rx.desc.eq(self.gon_desc), rx.start.eq(self.start),
                     array.up.eq(self.up), array.enable.eq(self.enable)]

        run_pending = Signal()
        m.d.comb += [array.run.valid.eq(run_pending), array.run.payload.eq(self.run)]
        with m.If(self.start):
            m.d.sync += run_pending.eq(1)
        with m.Elif(array.run.ready):
            m.d.sync += run_pending.eq(0)
        m.d.comb += self.busy.eq(run_pending | array.busy | rx.busy
                                 | Cat(s.busy for s in senders.values()).any())
        for name in COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(array, name))
        m.d.comb += [
            self.glb_read.eq(sum(r.addr.valid & r.addr.ready for r in glb.read) + own
                             if cfg.glb_bank_reads else
                             Cat(r.addr.valid & r.addr.ready for r in glb.read).any()),
            self.glb_write.eq(Cat(w.valid & w.ready for w in glb.write).any()
                              + (fglb.write.valid if fglb is not None else 0)),
            self.noc_stalls.eq(sum((s.o.valid & ~s.o.ready for s in senders.values()),
                                   start=array.gon.valid & ~array.gon.ready)),
        ]
        return m
