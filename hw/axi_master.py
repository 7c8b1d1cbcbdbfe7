"""An AXI4 master for the accelerator's DRAM port: word streams in, INCR bursts out.

The accelerator (`ommatidia.hw.top.Accelerator`) asks for one DRAM word at a
time: read requests (word addresses, responses in order) and writes (word
address and word). `AXI4Master` turns runs of consecutive word addresses
into AXI4 INCR bursts of full-width beats (``arsize``/``awsize`` =
log2(data_width / 8)) on a bus ``data_width`` bits wide, a multiple of the
word: word ``w`` is at byte ``base + w * word_bytes`` and sits in the lanes of
its beat by address (little endian), so a 128-bit bus carries two 64-bit
words a beat.

Reads: a burst collects consecutive requests, one a cycle, and is issued
when the request stream pauses or breaks its run, when it reaches
``max_burst`` beats, or when the next word would start a new 4 KiB page (AXI
forbids a burst to cross one), so a run is split into bursts that each stay
in one page. Up to ``max_reads`` bursts are outstanding; R beats go to the
accelerator as they come, word by word (``rready`` follows its ``ready``), so
no read data is buffered. Writes: a burst collects consecutive writes into
beats (``wstrb`` marks the words written) in a FIFO of ``max_burst`` beats
and is issued when the run breaks, reaches ``max_burst`` beats or a page
end, or when a read is waiting or ``flush`` is high (the accelerator is
idle); its W beats follow its AW handshake.

Ordering: a read burst is issued only when every write has its B response,
so a read sees every earlier write; a write burst is issued only when no
read burst is outstanding (the accelerator writes only what it computed
from reads it has received). One ID (0) everywhere, so responses come in
order.

Parameters
----------
word_bits : int
    The accelerator's DRAM word (``ArrayConfig.dram_bits``), a multiple of 8.
word_addr_bits : int
    Width of its word addresses (``ArrayConfig.dram_addr_bits``).
data_width : int
    AXI data width: ``word_bits`` times a power of two, at most 1024.
addr_width : int
    AXI address width, 12 to 64.
max_burst : int
    Most beats of a burst, 1 to 256.
max_reads : int
    Most read bursts outstanding, 1 to 16.

Members
-------
rd_addr : In(stream of unsigned(word_addr_bits))
rd_data : Out(stream of unsigned(word_bits))
wr : In(stream of StructLayout({"addr", "data"}))
base : In(addr_width)
    Byte address of word 0; its bits below a word are ignored.
flush : In(1)
    Issue the write burst being collected.
clear : In(1)
    Clears ``error``.
pending : Out(1)
    A read or write is collected, issued or awaiting its response.
error : Out(1)
    Sticky: an R or B response was not OKAY, or RLAST came on the wrong beat.
ar_fire, r_fire, aw_fire, w_fire, read_wait : Out(1)
    Events for counters: handshakes, and a cycle with a read burst outstanding and no R
    beat offered.
m_axi_* : the AXI4 master port (`axi4_members`).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import check_int

__all__ = ["AXI4Master", "axi4_members", "AXI_CACHE", "RESP_OKAY"]

AXI_CACHE = 0b0011
"""``arcache``/``awcache``: normal, non-cacheable, bufferable (what DMA masters send)."""

RESP_OKAY = 0
PAGE_BITS = 12
"""AXI bursts must not cross a 4 KiB boundary."""
MAX_WRITES = 15
"""Most write bursts awaiting their B response."""


def axi4_members(data_width: int, addr_width: int, prefix: str = "m_axi") -> dict:
    """The flat ports of an AXI4 master, named ``<prefix>_<signal>`` (``m_axi_arvalid``),
    as a signature dict (``Out`` = master to slave)."""
    sig = {
        "awid": Out(1), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awlock": Out(1), "awcache": Out(4), "awprot": Out(3),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(1), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "arid": Out(1), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arlock": Out(1), "arcache": Out(4), "arprot": Out(3),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    }
    return {f"{prefix}_{name}": member for name, member in sig.items()}


def _lanes(word_bits: int, data_width: int) -> int:
    ratio = data_width // word_bits
    if data_width % word_bits or ratio & (ratio - 1) or data_width > 1024:
        raise ValueError(f"AXI4Master data_width must be {word_bits} times a power of two, at "
                         f"most 1024, not {data_width!r}")
    return ratio


class AXI4Master(wiring.Component):
    __doc__ = __doc__

    def __init__(self, word_bits: int, word_addr_bits: int, *, data_width: int = 64,
                 addr_width: int = 32, max_burst: int = 256, max_reads: int = 4):
        check_int("AXI4Master", "word_bits", word_bits, 8, 1024)
        if word_bits % 8 or word_bits & (word_bits - 1):
            raise ValueError(f"AXI4Master word_bits must be a power of two bytes, not "
                             f"{word_bits}")
        check_int("AXI4Master", "word_addr_bits", word_addr_bits, 1, 64)
        check_int("AXI4Master", "data_width", data_width, word_bits, 1024)
        self._lanes = _lanes(word_bits, data_width)
        check_int("AXI4Master", "addr_width", addr_width, PAGE_BITS, 64)
        check_int("AXI4Master", "max_burst", max_burst, 1, 256)
        check_int("AXI4Master", "max_reads", max_reads, 1, 16)
        self._word_bits, self._data_width, self._addr_width = word_bits, data_width, addr_width
        self._max_burst, self._max_reads = max_burst, max_reads
        self._write_layout = data.StructLayout({"addr": unsigned(word_addr_bits),
                                                "data": unsigned(word_bits)})
        super().__init__({
            "rd_addr": In(stream.Signature(unsigned(word_addr_bits))),
            "rd_data": Out(stream.Signature(unsigned(word_bits))),
            "wr": In(stream.Signature(self._write_layout)),
            "base": In(addr_width),
            "flush": In(1),
            "clear": In(1),
            "pending": Out(1),
            "error": Out(1),
            "ar_fire": Out(1), "r_fire": Out(1), "aw_fire": Out(1), "w_fire": Out(1),
            "read_wait": Out(1),
            **axi4_members(data_width, addr_width),
        })

    def _byte_addr(self, m, word, name):
        """Byte address of word address ``word`` (wraps at the AXI address width)."""
        addr = Signal(self._addr_width, name=name)
        lg_wb = (self._word_bits // 8).bit_length() - 1
        base = self.base & ~((1 << lg_wb) - 1)
        m.d.comb += addr.eq(base + (word << lg_wb))
        return addr

    def _lane(self, addr):
        lg_wb = (self._word_bits // 8).bit_length() - 1
        lg_bb = (self._data_width // 8).bit_length() - 1
        return addr[lg_wb:lg_bb] if lg_bb > lg_wb else 0

    def elaborate(self, platform):
        m = Module()
        lg_bb = (self._data_width // 8).bit_length() - 1
        for ch in ("ar", "aw"):
            m.d.comb += [getattr(self, f"m_axi_{ch}size").eq(lg_bb),
                         getattr(self, f"m_axi_{ch}burst").eq(1),
                         getattr(self, f"m_axi_{ch}cache").eq(AXI_CACHE)]
        write_pending, read_issued, read_open, bad_last = Signal(), Signal(), Signal(), Signal()
        self._reads(m, write_pending, read_issued, read_open, bad_last)
        self._writes(m, read_issued, read_open, write_pending)
        m.d.comb += self.pending.eq(read_open | read_issued | write_pending)
        bad = Signal()
        m.d.comb += bad.eq((self.m_axi_rvalid & self.m_axi_rready
                            & (self.m_axi_rresp != RESP_OKAY))
                           | (self.m_axi_bvalid & self.m_axi_bready
                              & (self.m_axi_bresp != RESP_OKAY)) | bad_last)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.Elif(bad):
            m.d.sync += self.error.eq(1)
        return m

    def _reads(self, m, write_pending, read_issued, read_open, bad_last):
        """Read requests -> AR bursts; R beats -> words."""
        lanes, max_burst = self._lanes, self._max_burst
        desc_layout = data.StructLayout({"lane": range(max(lanes, 2)),
                                         "words": range(1, lanes * max_burst + 1)})
        m.submodules.rdesc = rdesc = fifo.SyncFIFO(width=desc_layout.size, depth=self._max_reads)
        req = self.rd_addr
        addr = self._byte_addr(m, req.payload, "rd_byte_addr")
        lane = self._lane(addr)

        is_open = Signal()
        next_word = Signal.like(req.payload)
        first = Signal(self._addr_width)
        beats = Signal(range(max_burst + 1))
        words = Signal(range(lanes * max_burst + 1))
        first_lane = Signal(range(max(lanes, 2)))
        # A request that extends the burst is at next_word: its page and lane come from
        # that register, not through the adder from the request.
        next_addr = self._byte_addr(m, next_word, "rd_next_byte_addr")
        extend = Signal()
        m.d.comb += extend.eq(is_open & req.valid & (req.payload == next_word)
                              & (next_addr[:PAGE_BITS] != 0)
                              & ~((self._lane(next_addr) == 0) & (beats == max_burst)))

        ar = self
        ar_desc = Signal(desc_layout)
        issue = Signal()
        m.d.comb += issue.eq(is_open & ~extend & ~ar.m_axi_arvalid & rdesc.w_rdy
                             & ~write_pending)
        m.d.comb += req.ready.eq(~is_open | extend | issue)
        with m.If(issue):
            m.d.sync += [ar.m_axi_arvalid.eq(1),
                         ar.m_axi_araddr.eq(first & ~((self._data_width // 8) - 1)),
                         ar.m_axi_arlen.eq(beats - 1),
                         ar_desc.lane.eq(first_lane), ar_desc.words.eq(words)]
        with m.If(ar.m_axi_arvalid & ar.m_axi_arready):
            m.d.sync += ar.m_axi_arvalid.eq(0)
        m.d.comb += [rdesc.w_en.eq(ar.m_axi_arvalid & ar.m_axi_arready),
                     rdesc.w_data.eq(ar_desc.as_value()),
                     self.ar_fire.eq(rdesc.w_en)]

        with m.If(req.valid & req.ready):
            m.d.sync += [is_open.eq(1), next_word.eq(req.payload + 1)]
            with m.If(extend):
                m.d.sync += [words.eq(words + 1), beats.eq(beats + (lane == 0))]
            with m.Else():
                m.d.sync += [first.eq(addr), first_lane.eq(lane), words.eq(1), beats.eq(1)]
        with m.Elif(issue):
            m.d.sync += is_open.eq(0)

        # R: deliver the words of the head burst lane by lane.
        head = data.View(desc_layout, rdesc.r_data)
        active = Signal()
        lane_reg = Signal(range(max(lanes, 2)))
        left_reg = Signal.like(words)
        cur_lane = Signal(range(max(lanes, 2)))
        cur_left = Signal.like(words)
        m.d.comb += [cur_lane.eq(Mux(active, lane_reg, head.lane)),
                     cur_left.eq(Mux(active, left_reg, head.words))]
        last_word = cur_left == 1
        beat_end = (cur_lane == lanes - 1) | last_word
        out = self.rd_data
        m.d.comb += [out.valid.eq(self.m_axi_rvalid & rdesc.r_rdy),
                     self.m_axi_rready.eq(rdesc.r_rdy & out.ready & beat_end),
                     out.payload.eq(self.m_axi_rdata.word_select(cur_lane, self._word_bits)
                                    if lanes > 1 else self.m_axi_rdata),
                     self.r_fire.eq(self.m_axi_rvalid & self.m_axi_rready),
                     self.read_wait.eq(rdesc.r_rdy & ~self.m_axi_rvalid)]
        with m.If(out.valid & out.ready):
            with m.If(last_word):
                m.d.sync += active.eq(0)
                m.d.comb += rdesc.r_en.eq(1)
            with m.Else():
                m.d.sync += [active.eq(1),
                             lane_reg.eq(Mux(cur_lane == lanes - 1, 0, cur_lane + 1)),
                             left_reg.eq(cur_left - 1)]
        m.d.comb += [bad_last.eq(self.r_fire & (self.m_axi_rlast != last_word)),
                     read_issued.eq(ar.m_axi_arvalid | rdesc.r_rdy), read_open.eq(is_open)]

    def _writes(self, m, read_issued, read_open, write_pending):
        """Writes -> beats in a FIFO -> AW bursts and W beats; B responses counted."""
        lanes, max_burst = self._lanes, self._max_burst
        dw, wb = self._data_width, self._word_bits // 8
        beat_layout = data.StructLayout({"data": unsigned(dw), "strb": unsigned(dw // 8),
                                         "last": 1})
        aw_layout = data.StructLayout({"addr": unsigned(self._addr_width), "len": unsigned(8)})
        m.submodules.wdata = wq = fifo.SyncFIFOBuffered(width=beat_layout.size, depth=max_burst)
        m.submodules.awq = awq = fifo.SyncFIFO(width=aw_layout.size, depth=2)
        w = self.wr
        addr = self._byte_addr(m, w.payload.addr, "wr_byte_addr")
        lane = self._lane(addr)

        is_open = Signal()
        next_word = Signal.like(w.payload.addr)
        first = Signal(self._addr_width)
        beats = Signal(range(max_burst + 1))
        cur = Signal(beat_layout)
        extend = Signal()
        m.d.comb += extend.eq(is_open & w.valid & (w.payload.addr == next_word)
                              & (addr[:PAGE_BITS] != 0)
                              & ~((lane == 0) & (beats == max_burst)))
        new_beat = extend & (lane == 0)
        want_close = is_open & ~extend & (w.valid | self.flush | self.rd_addr.valid | read_open)
        close = Signal()
        m.d.comb += close.eq(want_close & wq.w_rdy & awq.w_rdy)
        m.d.comb += w.ready.eq(~is_open | (extend & (~new_beat | wq.w_rdy)) | close)

        beat_in = Signal(beat_layout)
        ones = Const((1 << wb) - 1, dw // 8)
        m.d.comb += [beat_in.data.eq(w.payload.data << (lane * self._word_bits) if lanes > 1
                                     else w.payload.data),
                     beat_in.strb.eq(ones << (lane * wb) if lanes > 1 else ones)]
        pushed = Signal(beat_layout)
        m.d.comb += [pushed.data.eq(cur.data), pushed.strb.eq(cur.strb), pushed.last.eq(close),
                     wq.w_data.eq(pushed.as_value()), wq.w_en.eq(close | (w.valid & w.ready
                                                                          & new_beat))]
        aw_new = Signal(aw_layout)
        m.d.comb += [aw_new.addr.eq(first & ~((dw // 8) - 1)), aw_new.len.eq(beats - 1),
                     awq.w_data.eq(aw_new.as_value()), awq.w_en.eq(close)]
        with m.If(w.valid & w.ready):
            m.d.sync += [is_open.eq(1), next_word.eq(w.payload.addr + 1)]
            with m.If(extend & ~new_beat):
                m.d.sync += [cur.data.eq(cur.data | beat_in.data),
                             cur.strb.eq(cur.strb | beat_in.strb)]
            with m.Elif(extend):
                m.d.sync += [cur.data.eq(beat_in.data), cur.strb.eq(beat_in.strb),
                             beats.eq(beats + 1)]
            with m.Else():
                m.d.sync += [cur.data.eq(beat_in.data), cur.strb.eq(beat_in.strb),
                             first.eq(addr), beats.eq(1)]
        with m.Elif(close):
            m.d.sync += is_open.eq(0)

        # AW from the queue once no read is outstanding (and fewer than MAX_WRITES bursts
        # await their B); W beats follow their AW.
        credits = Signal(range(MAX_WRITES + 1))
        b_left = Signal(range(MAX_WRITES + 1))
        head = data.View(aw_layout, awq.r_data)
        m.d.comb += [self.m_axi_awvalid.eq(awq.r_rdy & ~read_issued & (b_left != MAX_WRITES)),
                     self.m_axi_awaddr.eq(head.addr), self.m_axi_awlen.eq(head.len),
                     awq.r_en.eq(self.m_axi_awvalid & self.m_axi_awready),
                     self.aw_fire.eq(awq.r_en)]
        beat = data.View(beat_layout, wq.r_data)
        m.d.comb += [self.m_axi_wvalid.eq(wq.r_rdy & (credits != 0)),
                     self.m_axi_wdata.eq(beat.data), self.m_axi_wstrb.eq(beat.strb),
                     self.m_axi_wlast.eq(beat.last),
                     wq.r_en.eq(self.m_axi_wvalid & self.m_axi_wready),
                     self.w_fire.eq(wq.r_en), self.m_axi_bready.eq(1)]
        w_done = wq.r_en & beat.last
        m.d.sync += credits.eq(credits + self.aw_fire - w_done)
        m.d.sync += b_left.eq(b_left + self.aw_fire - (self.m_axi_bvalid & self.m_axi_bready))
        m.d.comb += write_pending.eq(is_open | (wq.level != 0) | awq.r_rdy | (credits != 0)
                                     | (b_left != 0))
