"""DMA between the DRAM port and the GLB: raw words, RLC-coded activations in and out.

The DRAM port is a request stream of word addresses and an in-order response
stream of ``dram_bits`` words (either side may stall). A command
``(dram, glb, words, n, rlc)`` reads ``words`` DRAM words from ``dram`` on:

- raw (``rlc = 0``): word ``k`` goes to GLB word ``glb + k``;
- RLC (``rlc = 1``): the words feed an `ommatidia.hw.rlc.RLCDecoder` told
  ``n`` values, emitting ``(run, level)`` pairs; the values, truncated to
  ``act_bits``, are packed into the activation slots of GLB words ``glb,
  glb + 1, ...`` (`ommatidia.hw.glb`), a pair at a time: its run's zeros are
  slots left zero, its level the next slot. The last word is written with
  only its filled slots' bytes. Words left after the term word are read
  and dropped; a malformed stream, or one whose ``words`` end before its
  term word, raises the sticky ``error`` until the next command and ends
  the command.

Requests run ahead of responses with no limit; the GLB write is one register
stage, so when neither side stalls a raw copy moves one word a cycle and a
decode one pair a cycle, or a cycle per GLB word the pair completes when that
is more (a run crossing two word boundaries writes two words); with
``ArrayConfig.rlc_decode_words`` one coded word's pairs a cycle, or a cycle per GLB
word they complete when more.

Without the RLC codec (``ArrayConfig.rlc_codec`` false, for the smallest
FPGAs) `DMAIn` only copies raw words (the ``rlc`` flag is ignored: the
compiler stores ifmaps packed like filters) and `DMAOut` packs the output
stage's activations into activation slots of DRAM words instead of coding
them.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .glb import GLBReadSignature, elem_addr_bits, glb_write_layout, slot_bits, word_addr_bits
from .rlc import RLCDecoder, RLCEncoder

__all__ = ["DRAM_ADDR_BITS", "READ_AHEAD", "dma_cmd_layout", "DMAIn", "output_stage_layout",
           "bias_write_layout", "dma_out_cmd_layout", "dram_write_layout", "DMAOut"]

DRAM_ADDR_BITS = 32
"""Default width of a DRAM word address (`ArrayConfig.dram_addr_bits`)."""

READ_AHEAD = 3
"""GLB words `DMAOut` holds or has asked for: a read's word is usable two cycles after
its request, so three keep one word a cycle going out."""


def dma_cmd_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A DMA command: DRAM word address, GLB word address (the filter GLB's words follow
    the GLB's), DRAM words, values, RLC flag."""
    a = elem_addr_bits(cfg) + 1
    return data.StructLayout({"dram": unsigned(cfg.dram_addr_bits),
                              "glb": unsigned(word_addr_bits(cfg)),
                              "words": unsigned(a), "n": unsigned(a), "rlc": 1})


class DMAIn(wiring.Component):
    """DRAM -> GLB copy, raw or RLC-decoding; one command at a time.

    Members
    -------
    cmd : In(stream of dma_cmd_layout(cfg))
        Accepted when idle.
    dram_addr : Out(stream of unsigned(cfg.dram_addr_bits))
    dram_data : In(stream of unsigned(dram_bits))
        Responses in request order.
    glb : Out(stream of glb_write_layout(cfg))
    busy : Out(1)
        From the command until its last GLB write is taken and every word is read.
    error : Out(1)
        The decoder's sticky error (RLC commands).
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"DMAIn takes an ArrayConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(dma_cmd_layout(cfg))),
            "dram_addr": Out(stream.Signature(unsigned(cfg.dram_addr_bits))),
            "dram_data": In(stream.Signature(unsigned(cfg.dram_bits))),
            "glb": Out(stream.Signature(glb_write_layout(cfg))),
            "busy": Out(1),
            "error": Out(1),
        })
        self._decoder = (RLCDecoder(cfg.rlc, count_bits=elem_addr_bits(cfg) + 1, pairs=True,
                                    words=cfg.rlc_decode_words)
                         if cfg.rlc_codec else None)

    def elaborate(self, platform):
        cfg = self._cfg
        if not cfg.rlc_codec:
            return self._elaborate_raw()
        a = elem_addr_bits(cfg) + 1
        m = Module()
        m.submodules.decoder = dec = self._decoder

        cmd = Signal(dma_cmd_layout(cfg))
        req_left, resp_left = Signal(a), Signal(a)
        values_left = Signal(a)
        start_pending = Signal()
        glb_addr = Signal(word_addr_bits(cfg))
        w = self.glb
        room = ~w.valid | w.ready
        with m.If(w.ready):
            m.d.sync += w.valid.eq(0)

        truncated = Signal()
        m.d.comb += truncated.eq(cmd.rlc & ~start_pending & (resp_left == 0) & dec.busy
                                 & dec.i.ready & ~dec.o.valid)
        cut = Signal()
        with m.If(truncated):
            m.d.sync += [cut.eq(1), values_left.eq(0)]

        busy = Signal()
        m.d.comb += [busy.eq((req_left != 0) | (resp_left != 0) | (values_left != 0)
                             | w.valid | start_pending | dec.busy & ~truncated & ~cut),
                     self.busy.eq(busy), self.error.eq(dec.error | cut),
                     self.cmd.ready.eq(~busy)]
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [cmd.eq(self.cmd.payload), req_left.eq(self.cmd.payload.words),
                         resp_left.eq(self.cmd.payload.words), glb_addr.eq(self.cmd.payload.glb),
                         start_pending.eq(self.cmd.payload.rlc), cut.eq(0),
                         values_left.eq(Mux(self.cmd.payload.rlc, self.cmd.payload.n, 0))]

        m.d.comb += [self.dram_addr.valid.eq(req_left != 0), self.dram_addr.payload.eq(cmd.dram)]
        with m.If(self.dram_addr.valid & self.dram_addr.ready):
            m.d.sync += [req_left.eq(req_left - 1), cmd.dram.eq(cmd.dram + 1)]

        m.d.comb += [dec.start.valid.eq(start_pending), dec.start.payload.eq(cmd.n)]
        with m.If(start_pending & dec.start.ready):
            m.d.sync += start_pending.eq(0)

        with m.If(~cmd.rlc):
            m.d.comb += self.dram_data.ready.eq((resp_left != 0) & room)
            with m.If(self.dram_data.valid & self.dram_data.ready):
                m.d.sync += [resp_left.eq(resp_left - 1), glb_addr.eq(glb_addr + 1),
                             w.valid.eq(1), w.payload.addr.eq(glb_addr),
                             w.payload.data.eq(self.dram_data.payload),
                             w.payload.mask.eq(-1)]
        with m.Else():
            draining = Signal()
            with m.If(dec.i.valid & dec.i.ready & dec.i.payload.term):
                m.d.sync += draining.eq(1)
            with m.If(self.cmd.valid & ~busy):
                m.d.sync += draining.eq(0)
            m.d.comb += [dec.i.payload.as_value().eq(self.dram_data.payload),
                         dec.i.valid.eq(self.dram_data.valid & (resp_left != 0) & ~draining),
                         self.dram_data.ready.eq((resp_left != 0)
                                                 & (dec.i.ready & ~draining | draining))]
            with m.If(self.dram_data.valid & self.dram_data.ready):
                m.d.sync += resp_left.eq(resp_left - 1)

            with m.If(dec.error):
                m.d.sync += values_left.eq(0)
            if cfg.rlc_decode_words:
                self._place_words(m, values_left, glb_addr)
            else:
                self._place(m, values_left, glb_addr)
        return m

    def _place(self, m, values_left, glb_addr):
        """Places the decoder's ``(run, level)`` pairs into the activation slots of the GLB
        word being assembled: the run's zeros are slots left zero, the level goes in the
        next slot. The GLB takes one write a cycle, so a pair takes one cycle, or one per
        word it completes when that is more: the word the run leaves is written the cycle
        the level goes into the next one, whole words of zeros one a cycle before it. A
        word is written when its last slot is filled or with the command's last value
        (then only its filled slots' bytes)."""
        cfg, dec, w = self._cfg, self._decoder, self.glb
        slot, per, room, acc, fill, done = self._assembly(m)

        pair = dec.o.payload
        step = pair.run + 1
        last = values_left == step
        pos = Signal(range(per + cfg.rlc.max_run + 1))
        at = Signal(range(per))
        take = Signal()
        m.d.comb += [pos.eq(fill + pair.run - done),
                     at.eq(Mux(pos < per, pos, pos - per)),
                     take.eq((pos < per) | (pos < 2 * per - 1) & ~last),
                     dec.o.ready.eq(room & take)]
        value = Signal(signed(slot))
        m.d.comb += value.eq(pair.level[:cfg.pe.act_bits].as_signed())
        filled = Cat((at >= k if k else Const(1, 1)).replicate(slot // 8) for k in range(per))
        write = [w.valid.eq(1), w.payload.addr.eq(glb_addr), glb_addr.eq(glb_addr + 1),
                 acc.eq(0), fill.eq(0)]

        with m.If(dec.o.valid & room):
            with m.If(pos >= per):
                # the run fills the rest of the word being assembled
                m.d.sync += [*write, w.payload.data.eq(acc), w.payload.mask.eq(-1)]
            with m.If(take):
                new = Mux(pos < per, acc, 0) | (value.as_unsigned() << (at * slot))[:cfg.dram_bits]
                m.d.sync += [values_left.eq(values_left - step), done.eq(0)]
                with m.If((at == per - 1) | last):
                    m.d.sync += [*write, w.payload.data.eq(new), w.payload.mask.eq(filled)]
                with m.Else():
                    m.d.sync += [acc.eq(new), fill.eq(at + 1)]
            with m.Else():
                m.d.sync += done.eq(done + per - fill)

    def _assembly(self, m):
        """The GLB word being assembled from the pairs: the slot width, slots a word, the
        write stage's room, the word, its filled slots and the zeros of the pair being
        placed already placed; cleared by a command."""
        cfg, w = self._cfg, self.glb
        slot = slot_bits(cfg.pe.act_bits, cfg.dram_bits)
        per = cfg.dram_bits // slot
        acc = Signal(cfg.dram_bits)
        fill = Signal(range(per))
        done = Signal(cfg.rlc.run_bits)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [acc.eq(0), fill.eq(0), done.eq(0)]
        return slot, per, ~w.valid | w.ready, acc, fill, done

    def _place_words(self, m, values_left, glb_addr):
        """`_place` for a coded word's pairs a transfer (`ArrayConfig.rlc_decode_words`):
        in a cycle, the pairs of the word in order, as long as the GLB word they complete
        is the cycle's only write; a pair that would complete a second one waits for the
        next cycle (``skip``: the pairs of the word placed in earlier cycles). So a DRAM
        word takes a cycle, or one per GLB word its pairs complete when more."""
        cfg, dec, w = self._cfg, self._decoder, self.glb
        slot, per, room, acc, fill, done = self._assembly(m)
        skip = Signal(range(cfg.rlc.pairs_per_word + 1))
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += skip.eq(0)

        group = dec.o.payload
        first = group.first + skip
        # along the pairs: the GLB word being assembled, its fill, the values left,
        # whether the cycle has written, whether every pair so far is placed
        word, f, left, wrote, going = acc, fill, values_left, Const(0), room
        data_out, mask_out = Signal(cfg.dram_bits), Signal(cfg.dram_bits // 8)
        placed_now = []
        for k in range(cfg.rlc.pairs_per_word):
            pair = group.pairs[k]
            here = dec.o.valid & going & (k >= first) & (k < group.end)
            last = left == pair.run + 1
            d = Mux(k == first, done, 0)
            pos = Signal(range(per + cfg.rlc.max_run + 1), name=f"pos{k}")
            value = Signal(signed(slot), name=f"value{k}")
            m.d.comb += [pos.eq(f + pair.run - d),
                         value.eq(pair.level[:cfg.pe.act_bits].as_signed())]
            inside = pos < per
            at = Mux(inside, pos, pos - per)[:len(fill)]
            shifted = (value.as_unsigned() << (at * slot))[:cfg.dram_bits]
            # before the cycle's write: the level goes in this word (written when that
            # completes it or ends the stream) or in the next with this one written, or
            # only this word is written (the run goes past it); after it: the level goes
            # in the new word if that writes nothing
            placed = here & Mux(wrote, (pos < per - 1) & ~last,
                                inside | (pos < 2 * per - 1) & ~last)
            completes = inside & ((at == per - 1) | last)
            write = here & ~wrote & (~inside | completes)
            filled = Cat((at >= j if j else Const(1, 1)).replicate(slot // 8)
                         for j in range(per))
            with m.If(write):
                m.d.comb += [data_out.eq(Mux(inside, word | shifted, word)),
                             mask_out.eq(Mux(completes, filled, -1))]
            with m.If(here & ~placed & ~wrote):
                m.d.sync += done.eq(d + per - f)
            with m.If(placed):
                m.d.sync += done.eq(0)
            nw = Signal(cfg.dram_bits, name=f"word{k}")
            nf = Signal(range(per), name=f"fill{k}")
            nl = Signal.like(values_left, name=f"left{k}")
            m.d.comb += [
                nw.eq(Mux(placed, Mux(inside, Mux(completes, 0, word | shifted), shifted),
                          Mux(write, 0, word))),
                nf.eq(Mux(placed, Mux(inside, Mux(completes, 0, pos + 1), pos - per + 1),
                          Mux(write, 0, f))),
                nl.eq(Mux(placed, left - pair.run - 1, left)),
            ]
            word, f, left = nw, nf, nl
            wrote = wrote | write
            going = going & ~(here & ~placed)
            placed_now.append(placed)
        with m.If(wrote):
            m.d.sync += [w.valid.eq(1), w.payload.addr.eq(glb_addr), glb_addr.eq(glb_addr + 1),
                         w.payload.data.eq(data_out), w.payload.mask.eq(mask_out)]
        m.d.comb += dec.o.ready.eq(going)
        with m.If(dec.o.valid & room):
            m.d.sync += [acc.eq(word), fill.eq(f), values_left.eq(left),
                         skip.eq(Mux(going, 0, skip + sum(placed_now)))]

    def _elaborate_raw(self):
        """Without the codec: every command is a raw copy."""
        cfg = self._cfg
        a = elem_addr_bits(cfg) + 1
        m = Module()
        dram = Signal(cfg.dram_addr_bits)
        req_left, resp_left = Signal(a), Signal(a)
        glb_addr = Signal(word_addr_bits(cfg))
        w = self.glb
        with m.If(w.ready):
            m.d.sync += w.valid.eq(0)
        busy = Signal()
        m.d.comb += [busy.eq((req_left != 0) | (resp_left != 0) | w.valid),
                     self.busy.eq(busy), self.cmd.ready.eq(~busy)]
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [dram.eq(self.cmd.payload.dram), req_left.eq(self.cmd.payload.words),
                         resp_left.eq(self.cmd.payload.words), glb_addr.eq(self.cmd.payload.glb)]
        m.d.comb += [self.dram_addr.valid.eq(req_left != 0), self.dram_addr.payload.eq(dram)]
        with m.If(self.dram_addr.valid & self.dram_addr.ready):
            m.d.sync += [req_left.eq(req_left - 1), dram.eq(dram + 1)]
        m.d.comb += self.dram_data.ready.eq((resp_left != 0) & (~w.valid | w.ready))
        with m.If(self.dram_data.valid & self.dram_data.ready):
            m.d.sync += [resp_left.eq(resp_left - 1), glb_addr.eq(glb_addr + 1),
                         w.valid.eq(1), w.payload.addr.eq(glb_addr),
                         w.payload.data.eq(self.dram_data.payload), w.payload.mask.eq(-1)]
        return m


def dram_write_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A DRAM word write: word address and word."""
    return data.StructLayout({"addr": unsigned(cfg.dram_addr_bits),
                              "data": unsigned(cfg.dram_bits)})


def output_stage_layout(cfg: ArrayConfig) -> data.StructLayout:
    """Output stage of `DMAOut` (docs/architecture.md, "Numbers"): bias from a table of
    ``p`` entries (psum ``j`` of a region takes entry ``j mod p``, its filter in the ``[e][f][k]``
    layout), ReLU when ``relu``, shift right by ``shift`` with round-half-up."""
    return data.StructLayout({"shift": unsigned((cfg.pe.psum_bits - 1).bit_length()),
                              "relu": 1, "p": range(1, cfg.pe.psum_spad_depth + 1)})


def bias_write_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A write of entry ``index`` of the output stage's bias table."""
    return data.StructLayout({"index": range(cfg.pe.psum_spad_depth),
                              "value": signed(cfg.pe.psum_bits)})


def dma_out_cmd_layout(cfg: ArrayConfig) -> data.StructLayout:
    """A `DMAOut` command: GLB word address, DRAM word address, count, RLC flag, stage."""
    a = elem_addr_bits(cfg) + 1
    return data.StructLayout({"glb": unsigned(word_addr_bits(cfg)),
                              "dram": unsigned(cfg.dram_addr_bits), "n": unsigned(a), "rlc": 1,
                              "stage": output_stage_layout(cfg)})


class DMAOut(wiring.Component):
    """GLB -> DRAM copy: raw words, or psums through the output stage and the RLC encoder.

    Raw (``rlc = 0``): GLB words ``glb .. glb + n - 1`` go to DRAM words
    ``dram ..``. RLC (``rlc = 1``): the ``n`` psums packed from GLB word
    ``glb`` on (psum slots, `ommatidia.hw.glb`) go through the output stage
    of `ommatidia.sim.golden.output_stage` (bias added modulo
    ``2**psum_bits``, ReLU, shift with round-half-up, saturation to
    ``act_bits``; the bias table is written on ``bias_w``), and an
    `ommatidia.hw.rlc.RLCEncoder` codes them into DRAM words ``dram ..`` (without
    the codec they are packed into activation slots of DRAM words instead);
    ``words`` counts the words written by the last command. GLB words are read
    up to `READ_AHEAD` ahead into a FIFO, so a raw word or a psum goes out
    every cycle while the DRAM takes them; with ``cfg.dma_out_values`` = 2 a
    GLB word of psums a cycle (the output stage on both, filters ``filt`` and
    the next modulo ``p``, into an encoder taking two values a transfer).

    Members
    -------
    cmd : In(stream of dma_out_cmd_layout(cfg))
    bias_w : In(stream of bias_write_layout(cfg))
        Bias table writes, always accepted.
    glb : Out(GLBReadSignature(cfg))
    dram : Out(stream of dram_write_layout(cfg))
    busy : Out(1)
    words : Out(elem_addr_bits(cfg) + 1)
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"DMAOut takes an ArrayConfig, not {cfg!r}")
        self._cfg = cfg
        a = elem_addr_bits(cfg) + 1
        super().__init__({
            "cmd": In(stream.Signature(dma_out_cmd_layout(cfg))),
            "bias_w": In(stream.Signature(bias_write_layout(cfg))),
            "glb": Out(GLBReadSignature(cfg)),
            "dram": Out(stream.Signature(dram_write_layout(cfg))),
            "busy": Out(1),
            "words": Out(a),
        })
        if not cfg.rlc_codec:
            self._encoder = None
        elif cfg.dma_out_values == 1:
            self._encoder = RLCEncoder(cfg.rlc, count_bits=a)
        else:
            self._encoder = RLCEncoder(cfg.rlc, count_bits=a, values=cfg.dma_out_values)

    def elaborate(self, platform):
        cfg, enc = self._cfg, self._encoder
        a = elem_addr_bits(cfg) + 1
        slot = slot_bits(cfg.pe.psum_bits, cfg.dram_bits)
        per = cfg.dram_bits // slot
        aslot = slot_bits(cfg.pe.act_bits, cfg.dram_bits)
        aper = cfg.dram_bits // aslot
        m = Module()

        cmd = Signal(dma_out_cmd_layout(cfg))
        left, req_left = Signal(a), Signal(a)
        filt = Signal(range(cfg.pe.psum_spad_depth))
        m.submodules.words = q = fifo.SyncFIFO(width=cfg.dram_bits, depth=READ_AHEAD)
        waiting = Signal()
        k = Signal(range(per))
        glb_addr = Signal(word_addr_bits(cfg))
        dram_addr = Signal(cfg.dram_addr_bits)
        o = self.dram
        room = ~o.valid | o.ready
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        accept = self.cmd.valid & self.cmd.ready

        if enc is not None:
            # The encoder takes the value count before the first psum.
            m.submodules.encoder = enc
            start_pending = Signal()
            m.d.comb += [enc.start.valid.eq(start_pending), enc.start.payload.eq(cmd.n)]
            with m.If(accept):
                m.d.sync += start_pending.eq(self.cmd.payload.rlc)
            with m.Elif(enc.start.ready):
                m.d.sync += start_pending.eq(0)
            coding = start_pending | enc.busy
        else:
            coding = Const(0)

        busy = Signal()
        m.d.comb += [busy.eq((left != 0) | waiting | q.r_rdy | coding | o.valid),
                     self.busy.eq(busy), self.cmd.ready.eq(~busy)]
        with m.If(accept):
            p = self.cmd.payload
            m.d.sync += [cmd.eq(p), left.eq(p.n), req_left.eq(p.n), glb_addr.eq(p.glb),
                         dram_addr.eq(p.dram), k.eq(0), filt.eq(0), self.words.eq(0)]

        # GLB words are read up to READ_AHEAD ahead of the one going out, so a word's psums
        # follow the last one's with no gap.
        pop = Signal()
        m.d.comb += [self.glb.addr.valid.eq((req_left != 0)
                                            & (q.level + waiting - pop < READ_AHEAD)),
                     self.glb.addr.payload.eq(glb_addr),
                     q.w_en.eq(self.glb.valid), q.w_data.eq(self.glb.data), q.r_en.eq(pop)]
        m.d.sync += waiting.eq(self.glb.addr.valid & self.glb.addr.ready)
        with m.If(self.glb.addr.valid & self.glb.addr.ready):
            step = Mux(cmd.rlc, per, 1)
            m.d.sync += [req_left.eq(Mux(req_left > step, req_left - step, 0)),
                         glb_addr.eq(glb_addr + 1)]
        cur, have = q.r_data, q.r_rdy

        V = cfg.dma_out_values
        filts = [filt]
        for _ in range(V):
            filts.append(Mux(filts[-1] + 1 == cmd.stage.p, 0, filts[-1] + 1))
        zs = self._output_stage(m, cmd, cur, [(k, filt)] if V == 1 else list(enumerate(filts[:V])),
                                slot, cfg.pe.act_bits if enc is not None else aslot)
        z = zs[0]
        dram_write = [o.valid.eq(1), o.payload.addr.eq(dram_addr),
                      dram_addr.eq(dram_addr + 1), self.words.eq(self.words + 1)]
        with m.If(cmd.rlc):
            if enc is not None:
                m.d.comb += [enc.i.valid.eq(have),
                             enc.i.payload.eq(z if V == 1 else Cat(zs))]
                take = enc.i.ready
            else:
                take = room
            with m.If(have & take):
                if V > 1:
                    # a whole GLB word of psums to the encoder
                    m.d.comb += pop.eq(1)
                    m.d.sync += [left.eq(Mux(left > V, left - V, 0)), filt.eq(filts[V])]
                else:
                    m.d.sync += [left.eq(left - 1), k.eq(k + 1), filt.eq(filts[1])]
                    with m.If((k == per - 1) | (left == 1)):
                        m.d.comb += pop.eq(1)
                        m.d.sync += k.eq(0)
                if enc is None:
                    self._pack(m, z, aslot, aper, left == 1, dram_write)
        with m.Else():
            with m.If(have & room):
                m.d.comb += pop.eq(1)
                m.d.sync += [*dram_write, o.payload.data.eq(cur), left.eq(left - 1)]
        if enc is not None:
            m.d.comb += enc.o.ready.eq(room)
            with m.If(enc.o.valid & enc.o.ready):
                m.d.sync += [*dram_write, o.payload.data.eq(enc.o.payload.as_value())]
        return m

    def _pack(self, m, z, aslot, aper, last, dram_write):
        """Without the codec: activation ``z`` goes to the next slot of the DRAM word being
        filled, lowest slot first; the word is written when full or at the command's
        last value (its unused slots zero), so every command starts at slot 0."""
        fill = Signal(range(aper))
        m.d.sync += [fill.eq(fill + 1), self.dram.payload.data.word_select(fill, aslot).eq(z)]
        with m.If(fill == 0):
            m.d.sync += self.dram.payload.data.eq(z.as_unsigned())
        with m.If((fill == aper - 1) | last):
            m.d.sync += [*dram_write, fill.eq(0)]

    def _output_stage(self, m, cmd, cur, slots, slot, z_bits):
        """The output stage on psum slots ``k`` of ``cur``, ``(k, filt)`` in ``slots``: bias
        of filter ``filt``, ReLU, rounding shift and saturation to an activation,
        sign-extended to ``z_bits``; a bias table read port a slot."""
        cfg = self._cfg
        m.submodules.bias = bias = Memory(shape=signed(cfg.pe.psum_bits),
                                          depth=cfg.pe.psum_spad_depth, init=[])
        bw = bias.write_port()
        m.d.comb += [bw.addr.eq(self.bias_w.payload.index), bw.data.eq(self.bias_w.payload.value),
                     bw.en.eq(self.bias_w.valid), self.bias_w.ready.eq(1)]
        stage, bits = cmd.stage, cfg.pe.psum_bits
        hi, lo = (1 << (cfg.pe.act_bits - 1)) - 1, -(1 << (cfg.pe.act_bits - 1))
        half = (Const(1, bits + 1) << stage.shift) >> 1
        zs = []
        for k, filt in slots:
            br = bias.read_port(domain="comb")
            m.d.comb += br.addr.eq(filt)
            x = Signal(signed(bits))
            biased = Signal(signed(bits))
            y = Signal(signed(bits + 1))
            z = Signal(signed(z_bits))
            m.d.comb += [x.eq(cur.word_select(k, slot)[:bits].as_signed()),
                         biased.eq((x + br.data)[:bits].as_signed()),
                         y.eq((Mux(stage.relu & (biased < 0), 0, biased) + half) >> stage.shift)]
            with m.If(y > hi):
                m.d.comb += z.eq(hi)
            with m.Elif(y < lo):
                m.d.comb += z.eq(lo)
            with m.Else():
                m.d.comb += z.eq(y)
            zs.append(z)
        return zs
