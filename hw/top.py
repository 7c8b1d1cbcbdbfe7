"""The accelerator: a controller running a program from DRAM over a `PassEngine`.

The program is a list of 64-bit words in DRAM, one command word (opcode in
bits 63..56) followed by operand words; `ommatidia.gen.program` emits it and
docs/program.md documents it. Commands:

========  ==================================================================
``SET``   bits 7..0 register (`REGISTERS`), bits 23..8 word count ``k``;
          the next ``k`` words, least significant first, become the register
``TAG``   bits 55..0 a `tag_write_layout` write of one sender's tag table
``BIAS``  bits 55..0 a `bias_write_layout` write of the output stage's bias
``DMA_IN``  run the ``dma_in`` register as a `DMAIn` command; wait for it, or
          raw with bit 0 set (*background*) go on while it runs
``PASS``  start the engines on the registers; wait until the array is idle
``DMA_OUT`` run the ``dma_out`` register as a `DMAOut` command; wait for it, or
          with bit 0 set (*background*) go on while it drains; bit 1: the next
          ``PASS`` need not wait for it
``DONE``  stop with ``done``
========  ==================================================================

A background ``DMA_OUT`` reads the GLB read port and writes the DRAM write port,
which a ``DMA_IN``, ``SET``, ``TAG`` and the fetch do not use, so they run beside
it; a ``PASS``, ``BIAS`` (the output stage's table), ``DMA_OUT`` or ``DONE`` waits
until it has drained, but the first ``PASS`` after one with bit 1 set (the compiler
sets it only where that pass reads no GLB bank the ``DMAOut`` reads and writes none
of its words), and ``busy`` stays high until it has (after an ``error`` too).
Built with ``overlap=False`` (the AXI top, whose master issues a read burst only once
every write has its response) the controller ignores bits 0 and 1.

A background ``DMA_IN`` (raw: its copy cannot fail) writes the DRAM read port's words
into the GLB or the filter GLB; the commands after it run beside it, the fetch waits
for it (it shares the read port), another ``DMA_IN`` and ``DONE`` wait until it has
ended, and a ``PASS`` waits for it only if it was started before the previous
``PASS``: the compiler loads the next pass's filters into one half of the filter GLB
while the current pass reads the other. ``busy`` stays high until it has ended.
``overlap=False`` ignores bit 0 here too.

An unknown opcode, or an RLC stream the `DMAIn` finds malformed, stops the
controller with ``error``. Other commands run one after another, a ``TAG``, ``BIAS``
or ``DONE`` in a cycle, a ``SET`` of ``k`` words in ``k + 1``, from a FIFO of
`PREFETCH_WORDS` program words that the fetch fills ahead of them in blocks of
`FETCH_BLOCK` (one burst on AXI) while commands run, a ``PASS`` included; it
shares the DRAM read port with `DMAIn`: no word is asked for while a ``DMA_IN`` or
a foreground ``DMA_OUT`` is next or runs, and such a command waits until every word
asked for has come (the port answers in order). docs/program.md, "The fetch".
Counters restart at ``start`` and hold after ``done``.
"""

from __future__ import annotations

import enum

from amaranth import Cat, Const, Module, Mux, ResetInserter, Shape, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .dma import bias_write_layout, dma_cmd_layout, dma_out_cmd_layout, \
    dram_write_layout
from .array import GIN_KINDS, config_layouts
from .engines import PassEngine, recv_desc_layout, send_desc_layout, tag_write_layout
from .pe import pe_run_layout

__all__ = ["Opcode", "REGISTERS", "COUNTERS", "COUNTER_WIDTH", "Accelerator", "register_shapes"]


class Opcode(enum.IntEnum):
    """Command opcodes, bits 63..56 of a command word."""
    SET = 1
    TAG = 2
    BIAS = 3
    DMA_IN = 4
    PASS = 5
    DMA_OUT = 6
    DONE = 7


REGISTERS = ("filter_desc", "ifmap_desc", "psum_desc", "gon_desc", "run", "enable", "up",
             "filter_row_id", "filter_col_id", "ifmap_row_id", "ifmap_col_id",
             "psum_row_id", "psum_col_id", "dma_in", "dma_out")
"""``SET`` register numbers: index in this tuple. All but the last two are `PassEngine` inputs."""

COUNTERS = ("cycles", "macs", "mac_cycles", "gated_macs", "pe_stall_cycles",
            "noc_stall_cycles", "glb_reads", "glb_writes", "dram_words_read",
            "dram_words_written", "program_words")
"""Performance counters of a run, in the order of `Accelerator.counters`."""

PREFETCH_WORDS = 64
"""Program words the controller holds or has asked for ahead of the command it runs (a
block RAM of 64 words and the FIFO's output register)."""

FETCH_BLOCK = 16
"""Program words the controller asks for at once, one a cycle."""

COUNTER_WIDTH = 48
"""Default width of the performance counters (`ArrayConfig.counter_bits`)."""


def register_shapes(cfg: ArrayConfig) -> dict:
    """Shape of each ``SET`` register."""
    shapes = {f"{kind}_desc": send_desc_layout(cfg) for kind in GIN_KINDS}
    shapes["gon_desc"] = recv_desc_layout(cfg)
    shapes["run"] = pe_run_layout(cfg.pe)
    shapes.update(config_layouts(cfg))
    shapes = {name: shapes[name] for name in REGISTERS[:-2]}
    shapes["dma_in"] = dma_cmd_layout(cfg)
    shapes["dma_out"] = dma_out_cmd_layout(cfg)
    return shapes


def _width(shape) -> int:
    return Shape.cast(shape).width


HEAD_LAYOUT = data.StructLayout({"op": 3, "bit0": 1})
"""What the controller decides on in a program word, decoded as the word comes: ``op`` the
opcode when it is one (1..7), else 0; ``bit0`` the word's bit 0 (a DMA command's
background bit)."""


class Accelerator(wiring.Component):
    """`PassEngine` + controller: runs the program at DRAM word ``prog`` after ``start``.

    Members
    -------
    start : In(1)
        Accepted when not busy: clears the counters and fetches from ``prog``.
    prog : In(cfg.dram_addr_bits)
    busy, done, error : Out(1)
        ``done`` and ``error`` hold until the next ``start``.
    dram_addr : Out(stream of unsigned(cfg.dram_addr_bits))
        Read requests; responses on ``dram_data`` in order.
    dram_data : In(stream of unsigned(dram_bits))
    dram_w : Out(stream of dram_write_layout(cfg))
    counters : Out(ArrayLayout(unsigned(cfg.counter_bits), len(COUNTERS)))

    Parameters
    ----------
    cfg : ArrayConfig
    overlap : bool
        Honour the background bit of ``DMA_OUT`` and ``DMA_IN`` (off: every DMA command in
        the foreground).
    """

    def __init__(self, cfg: ArrayConfig, *, overlap: bool = True):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"Accelerator takes an ArrayConfig, not {cfg!r}")
        self._cfg = cfg
        self._overlap = bool(overlap)
        self._engine = PassEngine(cfg)
        self._shapes = register_shapes(cfg)
        for name, layout in (("TAG", tag_write_layout(cfg)), ("BIAS", bias_write_layout(cfg))):
            if _width(layout) > 56:
                raise ValueError(f"a {name} write needs {_width(layout)} bits, more than the "
                                 f"56 of a command word")
        super().__init__({
            "start": In(1),
            "prog": In(cfg.dram_addr_bits),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "dram_addr": Out(stream.Signature(unsigned(cfg.dram_addr_bits))),
            "dram_data": In(stream.Signature(unsigned(cfg.dram_bits))),
            "dram_w": Out(stream.Signature(dram_write_layout(cfg))),
            "counters": Out(data.ArrayLayout(unsigned(cfg.counter_bits), len(COUNTERS))),
        })

    @property
    def engine(self) -> PassEngine:
        return self._engine

    def _background(self, head):
        """True for a ``DMA_OUT`` command word that runs in the background."""
        return (head.op == Opcode.DMA_OUT) & head.bit0 if self._overlap else Const(0, 1)

    def _background_in(self, head, reg):
        """True for a ``DMA_IN`` command word that runs in the background (raw only)."""
        rlc = data.View(self._shapes["dma_in"], reg[:_width(self._shapes["dma_in"])]).rlc
        return head.bit0 & ~rlc if self._overlap else Const(0, 1)

    def _command(self, m, word, head, pop, regs, target, chunk, left, fetching, fresh, beside):
        """Runs command word ``word``, taking it from the FIFO (``pop``) once started; a
        ``DMA_IN`` or foreground ``DMA_OUT`` once no program word is on its way
        (``fetching`` low); a ``BIAS``, ``DMA_OUT`` or ``DONE``, or a ``PASS`` unless
        ``beside`` (the last ``DMA_OUT`` had bit 1 set and no ``PASS`` started since),
        once the `DMAOut` is idle; a ``DONE``, or a ``PASS`` unless ``fresh`` (the
        `DMAIn` was started since the last ``PASS``), once the `DMAIn` is idle."""
        eng = self._engine
        out_idle = ~eng.dma_out_busy
        in_idle = ~eng.dma_busy
        with m.Switch(head.op):
            with m.Case(Opcode.SET):
                m.d.comb += pop.eq(1)
                m.d.sync += [target.eq(word[0:8]), chunk.eq(0), left.eq(word[8:24])]
                with m.If(word[0:8] >= len(REGISTERS)):
                    m.d.sync += self.error.eq(1)
                    m.next = "IDLE"
            with m.Case(Opcode.TAG):
                m.d.comb += [pop.eq(1), eng.tag_w.valid.eq(1), eng.tag_w.payload.eq(word)]
            with m.Case(Opcode.BIAS):
                m.d.comb += [pop.eq(out_idle), eng.bias_w.valid.eq(out_idle),
                             eng.bias_w.payload.eq(word)]
            with m.Case(Opcode.DMA_IN):
                m.d.comb += [eng.dma_cmd.valid.eq(~fetching),
                             eng.dma_cmd.payload.eq(regs["dma_in"])]
                with m.If(eng.dma_cmd.valid & eng.dma_cmd.ready):
                    m.d.comb += pop.eq(1)
                    with m.If(self._background_in(head, regs["dma_in"])):
                        m.d.sync += fresh.eq(1)
                    with m.Else():
                        m.next = "WAIT_DMA_IN"
            with m.Case(Opcode.PASS):
                with m.If((out_idle | beside) & (in_idle | fresh)):
                    m.d.comb += [pop.eq(1), eng.start.eq(1)]
                    m.d.sync += [fresh.eq(0), beside.eq(0)]
                    m.next = "WAIT_PASS"
            with m.Case(Opcode.DMA_OUT):
                background = self._background(head)
                m.d.comb += [eng.dma_out_cmd.valid.eq(~fetching | background),
                             eng.dma_out_cmd.payload.eq(regs["dma_out"])]
                with m.If(eng.dma_out_cmd.valid & eng.dma_out_cmd.ready):
                    m.d.comb += pop.eq(1)
                    m.d.sync += beside.eq(background & word[1])
                    with m.If(~background):
                        m.next = "WAIT_DMA_OUT"
            with m.Case(Opcode.DONE):
                with m.If(out_idle & in_idle):
                    m.d.comb += pop.eq(1)
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
            with m.Default():
                m.d.sync += self.error.eq(1)
                m.next = "IDLE"

    def elaborate(self, platform):
        eng = self._engine
        m = Module()
        m.submodules.engine = eng

        regs = {}
        for name, shape in self._shapes.items():
            regs[name] = Signal(64 * -(-_width(shape) // 64), name=f"reg_{name}")
            if name in REGISTERS[:-2]:
                m.d.comb += getattr(eng, name).as_value().eq(regs[name][:_width(shape)])

        running, active, fsm_run, out_wait = Signal(), Signal(), Signal(), Signal()
        fresh, beside = Signal(), Signal()
        start = Signal()
        m.d.comb += start.eq(self.start & ~running)
        # The program words in a block RAM, and beside them in lock step what the controller
        # decides on (HEAD_LAYOUT), small enough for LUT RAM: its output register is a
        # flip-flop, so the fetch's request does not wait for the block RAM's output.
        m.submodules.prefetch = q = ResetInserter(start)(
            fifo.SyncFIFOBuffered(width=64, depth=PREFETCH_WORDS + 1))
        m.submodules.prefetch_head = qh = ResetInserter(start)(
            fifo.SyncFIFOBuffered(width=HEAD_LAYOUT.size, depth=PREFETCH_WORDS + 1))
        pop = Signal()
        m.d.comb += [q.r_en.eq(pop), qh.r_en.eq(pop)]
        word = q.r_data
        head = data.View(HEAD_LAYOUT, qh.r_data)
        target = Signal(8)
        chunk, left = Signal(16), Signal(16)

        # The fetch: program words ahead into the FIFO while commands run, in blocks of
        # FETCH_BLOCK words asked for one a cycle (one burst on AXI), a block once the last
        # one's words are in and the FIFO has room for it; none while a DMA command waits
        # to run or runs (the port answers in order), none past a DONE or a command that
        # stops the controller once it has come (the fetch knows each word's role).
        pc = Signal(self._cfg.dram_addr_bits)
        asked = Signal(range(PREFETCH_WORDS + 1))
        block = Signal(range(FETCH_BLOCK + 1))
        stopped = Signal()
        operands = Signal(16)
        fetching = Signal()
        m.d.comb += fetching.eq(asked != 0)
        arrived = fetching & self.dram_data.valid
        stop_now = Signal()
        arriving = self.dram_data.payload
        with m.If(arrived & (operands == 0)):
            with m.Switch(arriving[56:64]):
                with m.Case(Opcode.SET):
                    m.d.comb += stop_now.eq(arriving[0:8] >= len(REGISTERS))
                with m.Case(Opcode.TAG, Opcode.BIAS, Opcode.DMA_IN, Opcode.PASS,
                            Opcode.DMA_OUT):
                    pass
                with m.Default():
                    m.d.comb += stop_now.eq(1)
        dma_next = Signal()
        m.d.comb += dma_next.eq(fsm_run & qh.r_rdy & (left == 0)
                                & ((head.op == Opcode.DMA_IN)
                                   | (head.op == Opcode.DMA_OUT) & ~self._background(head)))
        cut = ~active | stopped | stop_now | dma_next | eng.dma_busy \
            | eng.dma_out_busy & out_wait
        room, room_if_pop = Signal(), Signal()
        m.d.comb += [room.eq(qh.level <= PREFETCH_WORDS - FETCH_BLOCK),
                     room_if_pop.eq(qh.level == PREFETCH_WORDS - FETCH_BLOCK + 1)]
        begin = (block == 0) & ~fetching & (room | room_if_pop & pop)
        ask = Signal()
        m.d.comb += ask.eq(~cut & ((block != 0) | begin))
        wiring.connect(m, eng.dram_w, wiring.flipped(self.dram_w))
        # The DMA asks only while it is busy, when the fetch does not (``cut``): the address
        # is the DMA's whenever it asks, so that it does not wait for ``ask``.
        m.d.comb += [self.dram_addr.valid.eq(ask | eng.dram_addr.valid),
                     self.dram_addr.payload.eq(Mux(eng.dram_addr.valid, eng.dram_addr.payload,
                                                   pc)),
                     eng.dram_addr.ready.eq(self.dram_addr.ready)]
        with m.If(fetching):
            m.d.comb += [self.dram_data.ready.eq(1), q.w_en.eq(self.dram_data.valid),
                         q.w_data.eq(arriving), qh.w_en.eq(self.dram_data.valid),
                         qh.w_data.eq(Cat(Mux(arriving[59:64] == 0, arriving[56:59], 0),
                                          arriving[0]))]
        with m.Else():
            m.d.comb += [eng.dram_data.valid.eq(self.dram_data.valid),
                         eng.dram_data.payload.eq(self.dram_data.payload),
                         self.dram_data.ready.eq(eng.dram_data.ready)]
        sent = ask & self.dram_addr.ready
        with m.If(cut):
            m.d.sync += block.eq(0)
        with m.Elif(sent):
            m.d.sync += [pc.eq(pc + 1), block.eq(Mux(block != 0, block, FETCH_BLOCK) - 1)]
        m.d.sync += asked.eq(Mux(sent, asked + 1 - arrived, asked - arrived))
        with m.If(arrived):
            m.d.sync += operands.eq(Mux(operands != 0, operands - 1,
                                        Mux(arriving[56:64] == Opcode.SET, arriving[8:24], 0)))
        with m.If(stop_now):
            m.d.sync += stopped.eq(1)

        with m.FSM(name="ctrl") as fsm:
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [pc.eq(self.prog), left.eq(0), self.done.eq(0),
                                 self.error.eq(0), stopped.eq(0), operands.eq(0), fresh.eq(0),
                                 beside.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(qh.r_rdy & (left != 0)):
                    m.d.comb += pop.eq(1)
                    with m.Switch(target):
                        for i, name in enumerate(self._shapes):
                            with m.Case(i):
                                m.d.sync += regs[name].word_select(chunk, 64).eq(word)
                    m.d.sync += [chunk.eq(chunk + 1), left.eq(left - 1)]
                with m.Elif(qh.r_rdy):
                    self._command(m, word, head, pop, regs, target, chunk, left, fetching, fresh,
                                  beside)
            with m.State("WAIT_DMA_IN"):
                with m.If(~eng.dma_busy):
                    with m.If(eng.dma_error):
                        m.d.sync += self.error.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "RUN"
            with m.State("WAIT_PASS"):
                with m.If(~eng.busy):
                    m.next = "RUN"
            with m.State("WAIT_DMA_OUT"):
                with m.If(~eng.dma_out_busy):
                    m.next = "RUN"
        m.d.comb += [active.eq(~fsm.ongoing("IDLE")),
                     running.eq(active | fetching | eng.dma_out_busy | eng.dma_busy),
                     fsm_run.eq(fsm.ongoing("RUN")), out_wait.eq(fsm.ongoing("WAIT_DMA_OUT")),
                     self.busy.eq(running)]

        self._counters(m, start, running, fetching)
        return m

    def _counters(self, m, start, running, fetching):
        """The performance counters: cleared at ``start``, counting while ``running``."""
        eng = self._engine
        counts = {name: Signal(self._cfg.counter_bits, name=f"count_{name}") for name in COUNTERS}
        events = {
            "cycles": running,
            "noc_stall_cycles": eng.noc_stalls,
            "glb_reads": eng.glb_read,
            "glb_writes": eng.glb_write,
            "dram_words_read": ~fetching & self.dram_data.valid & self.dram_data.ready,
            "dram_words_written": self.dram_w.valid & self.dram_w.ready,
            "program_words": fetching & self.dram_data.valid & self.dram_data.ready,
        }
        for name, event in events.items():
            counting = running
            if name in ("noc_stall_cycles", "glb_reads", "glb_writes"):
                # The engine's events come late in the cycle: counted the cycle after.
                late = Signal(len(event), name=f"late_{name}")
                m.d.sync += late.eq(Mux(running, event, 0))
                event, counting = late, Const(1)
            with m.If(start):
                m.d.sync += counts[name].eq(0)
            with m.Elif(counting):
                m.d.sync += counts[name].eq(counts[name] + event)
        for name, source in (("mac_cycles", eng.mac_cycles), ("gated_macs", eng.gated_macs),
                             ("pe_stall_cycles", eng.stall_cycles)):
            base = Signal(self._cfg.pe.counter_bits, name=f"base_{name}")
            with m.If(start):
                m.d.sync += base.eq(source)
            m.d.comb += counts[name].eq((source - base)[:self._cfg.pe.counter_bits])
        m.d.comb += counts["macs"].eq(counts["mac_cycles"] + counts["gated_macs"])
        for i, name in enumerate(COUNTERS):
            m.d.comb += self.counters[i].eq(counts[name])
