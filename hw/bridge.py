"""Host bridge: a byte protocol from the serial line to the accelerator's DRAM and command ports.

On a board the host reaches the accelerator through a UART (`UARTBridge`):
it loads the program and data into DRAM, starts the accelerator, polls its
status and reads back results and performance counters.

Protocol
--------
The host sends a command byte and its arguments; the bridge answers. All
numbers are little-endian; a word is ``dram_bits / 8`` bytes.

==========  =====  ===========================  ==================================
command     byte   arguments                    answer
==========  =====  ===========================  ==================================
WRITE       0x01   addr u32, n u16, n words     ACK once the n words are written
READ        0x02   addr u32, n u16              the n words (nothing if n = 0)
START       0x03   --                           ACK (after the ``start`` pulse)
STATUS      0x04   --                           the status byte
COUNTERS    0x05   --                           count u8, then count u64 counters
==========  =====  ===========================  ==================================

ACK is 0x06 and NAK is 0x15 (ASCII ACK and NAK). Word ``k`` of a WRITE or
READ is DRAM word ``addr + k``; address bits above ``addr_bits`` are ignored
and addresses wrap modulo ``2**addr_bits``. The status byte is the
accelerator's (bit 0 busy, bit 1 done, bit 2 error). Each counter is sampled
when its first byte is sent.

Errors and resynchronisation: an unknown command byte is answered with NAK
and dropped, and the next byte is read as a command. If the line goes
silent for ``timeout`` cycles in the middle of a command's arguments or
data, the command is abandoned (words already complete stay written) and
answered with NAK; a host that lost its place therefore waits longer than
that, discards what it received and starts again with a new command.

Flow control: there is none on the line, so the bridge must take each byte
within a frame time. Bytes wait in a FIFO of ``fifo_depth`` while the DRAM
write port stalls; the DRAM must accept writes faster, on average, than the
line delivers words. Answers are sent as fast as the transmitter takes them.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import check_int

from .uart import UARTRx, UARTTx

__all__ = ["Command", "Reply", "COUNTER_BITS", "MAX_COUNTERS", "MAX_WORDS", "mem_write_layout",
           "HostBridge", "UARTBridge"]

COUNTER_BITS = 64
MAX_COUNTERS = 255
MAX_WORDS = (1 << 16) - 1
"""Most words one WRITE or READ moves (its ``n`` is a u16)."""


class Command(enum.IntEnum, shape=8):
    """Command bytes of the host protocol."""

    WRITE = 0x01
    READ = 0x02
    START = 0x03
    STATUS = 0x04
    COUNTERS = 0x05


class Reply(enum.IntEnum, shape=8):
    """One-byte answers of the host protocol."""

    ACK = 0x06
    NAK = 0x15


def mem_write_layout(dram_bits: int, addr_bits: int) -> data.StructLayout:
    """Payload of a DRAM word write: ``addr`` and ``data``."""
    return data.StructLayout({"addr": unsigned(addr_bits), "data": unsigned(dram_bits)})


class _Command:
    """Registers of the host command in progress: its bytes, arguments, word and answer."""

    def __init__(self, inq: fifo.SyncFIFOBuffered, tx_ready, counters: int, dram_bits: int,
                 addr_bits: int, timeout: int):
        word_bytes = dram_bits // 8
        self.inq = inq
        self.byte = inq.r_data
        self.got = Signal()

        self.cmd = Signal(8)
        self.reply_byte = Signal(8)
        # One shift register serves a command's arguments, a WRITE's word and the bytes an
        # answer sends: bytes from the line enter at the top, bytes to it leave at the bottom.
        self.buf = Signal(max(dram_bits, COUNTER_BITS))
        self.args = self.buf[-48:]
        """A WRITE's or READ's arguments once their six bytes are in."""
        self.word = self.buf[-dram_bits:]
        """A WRITE's word once its bytes are in."""
        self.arg_left = Signal(range(7))
        self.addr = Signal(addr_bits)
        self.n = Signal(16)
        self.word_left = Signal(range(word_bytes + 1))
        self.out_left = Signal(range(len(self.buf) // 8 + 1))
        self.index = Signal(range(counters + 1))

        self.silent = Signal(range(max(timeout, 1) + 1))
        self.timed_out = Signal()
        self.sent_last = tx_ready & (self.out_left == 1)
        """The transmitter takes the last byte of ``buf`` this cycle."""


class HostBridge(wiring.Component):
    """Executes host protocol commands (see the module docstring) from a byte stream.

    Bytes from ``i`` go through a FIFO of ``fifo_depth``; a command byte is
    decoded in two cycles, argument and data bytes are taken one per cycle.
    WRITE collects a word and then offers it on ``mem_w``; READ
    reads one word at a time (``mem_raddr``, then ``mem_rdata``, any latency)
    and sends its bytes before asking for the next word; COUNTERS sends
    ``counters`` one after the other, each snapshotted when its first byte
    is offered. Answers leave on ``o``, which must not drop bytes (the
    transmitter back-pressures it).

    Parameters
    ----------
    counters : int
        Number of 64-bit performance counters, 1 to `MAX_COUNTERS`.
    dram_bits : int
        DRAM word width, a multiple of 8 from 8 to 512.
    addr_bits : int
        DRAM word address width, 1 to 32.
    timeout : int
        Cycles without a byte inside a command after which it is abandoned
        (answered NAK); 0 never abandons.
    fifo_depth : int
        Input bytes held while the DRAM write port stalls.

    Members
    -------
    i : In(stream of unsigned(8))
        Bytes from the host (a `UARTRx`).
    o : Out(stream of unsigned(8))
        Bytes to the host (a `UARTTx`).
    mem_w : Out(stream of mem_write_layout(dram_bits, addr_bits))
        DRAM word writes.
    mem_raddr : Out(stream of unsigned(addr_bits))
        DRAM word read addresses; at most one read is outstanding.
    mem_rdata : In(stream of unsigned(dram_bits))
        DRAM read data, one word per address, in order.
    start : Out(1)
        One-cycle pulse: run the program at DRAM word 0.
    status : In(unsigned(8))
        Accelerator status: bit 0 busy, bit 1 done, bit 2 error.
    counters : In(ArrayLayout(unsigned(64), counters))
        Performance counters.
    """

    def __init__(self, counters: int, dram_bits: int = 64, addr_bits: int = 32, *,
                 timeout: int = 1 << 24, fifo_depth: int = 16):
        check_int("HostBridge", "counters", counters, 1, MAX_COUNTERS)
        check_int("HostBridge", "dram_bits", dram_bits, 8, 512)
        if dram_bits % 8:
            raise ValueError(f"HostBridge.dram_bits must be a multiple of 8, not {dram_bits}")
        check_int("HostBridge", "addr_bits", addr_bits, 1, 32)
        check_int("HostBridge", "timeout", timeout, 0, 1 << 32)
        check_int("HostBridge", "fifo_depth", fifo_depth, 2, 1 << 16)
        self._counters = counters
        self._dram_bits = dram_bits
        self._addr_bits = addr_bits
        self._timeout = timeout
        self._fifo_depth = fifo_depth
        super().__init__({
            "i": In(stream.Signature(unsigned(8))),
            "o": Out(stream.Signature(unsigned(8))),
            "mem_w": Out(stream.Signature(mem_write_layout(dram_bits, addr_bits))),
            "mem_raddr": Out(stream.Signature(unsigned(addr_bits))),
            "mem_rdata": In(stream.Signature(unsigned(dram_bits))),
            "start": Out(1),
            "status": In(unsigned(8)),
            "counters": In(data.ArrayLayout(unsigned(COUNTER_BITS), counters)),
        })

    def elaborate(self, platform):
        m = Module()
        r = self._datapath(m)
        with m.FSM():
            self._parser_states(m, r)
            self._write_states(m, r)
            self._read_states(m, r)
            self._answer_states(m, r)
        return m

    def _datapath(self, m: Module) -> _Command:
        """The rx byte FIFO, the command registers and silence timer, the DRAM address and data."""
        m.submodules.fifo = inq = fifo.SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        m.d.comb += [inq.w_data.eq(self.i.payload), inq.w_en.eq(self.i.valid),
                     self.i.ready.eq(inq.w_rdy)]
        r = _Command(inq, self.o.ready, self._counters, self._dram_bits, self._addr_bits,
                     self._timeout)
        m.d.comb += r.got.eq(inq.r_rdy & inq.r_en)
        if self._timeout:
            m.d.comb += r.timed_out.eq(r.silent == self._timeout)

        m.d.sync += self.start.eq(0)
        m.d.comb += [self.mem_w.payload.addr.eq(r.addr), self.mem_w.payload.data.eq(r.word),
                     self.mem_raddr.payload.eq(r.addr)]
        return r

    def _receive(self, m: Module, r: _Command):
        """Take a byte from the rx FIFO if there is one, timing the silence."""
        m.d.comb += r.inq.r_en.eq(1)
        if self._timeout:
            with m.If(r.got):
                m.d.sync += r.silent.eq(0)
            with m.Else():
                m.d.sync += r.silent.eq(r.silent + 1)

    def _reply(self, m: Module, r: _Command, value, state="REPLY"):
        """Latch a one-byte answer and go to ``state``, which sends it."""
        m.d.sync += r.reply_byte.eq(value)
        m.next = state

    def _send_reply(self, m: Module, r: _Command, then: str):
        """Offer the one-byte answer on the tx stream; go to ``then`` once taken."""
        m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(r.reply_byte)]
        with m.If(self.o.ready):
            m.next = then

    def _send(self, m: Module, r: _Command):
        """Offer the lowest byte of ``buf`` on the tx stream; shift it out once taken."""
        m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(r.buf[:8])]
        with m.If(self.o.ready):
            m.d.sync += [r.buf.eq(Cat(r.buf[8:], r.byte)), r.out_left.eq(r.out_left - 1)]

    def _parser_states(self, m: Module, r: _Command):
        """rx command parser: decode a command byte, collect WRITE's and READ's arguments."""
        byte, cmd, args, arg_left = r.byte, r.cmd, r.args, r.arg_left
        with m.State("IDLE"):
            # IDLE: waiting for a command byte
            m.d.comb += r.inq.r_en.eq(1)
            m.d.sync += [r.silent.eq(0), arg_left.eq(6), cmd.eq(byte)]
            with m.If(r.got):
                m.next = "DECODE"
        with m.State("DECODE"):
            # DECODE: act on the command byte
            with m.Switch(cmd):
                with m.Case(Command.WRITE, Command.READ):
                    m.next = "ARGS"
                with m.Case(Command.START):
                    m.d.sync += self.start.eq(1)
                    self._reply(m, r, Reply.ACK)
                with m.Case(Command.STATUS):
                    self._reply(m, r, self.status)
                with m.Case(Command.COUNTERS):
                    m.d.sync += r.index.eq(0)
                    self._reply(m, r, self._counters, "SEND_COUNT")
                with m.Default():
                    self._reply(m, r, Reply.NAK)
        with m.State("ARGS"):
            # ARGS: collecting addr (4 bytes) and n (2 bytes), little-endian
            self._receive(m, r)
            with m.If(r.got):
                m.d.sync += [r.buf.eq(Cat(r.buf[8:], byte)), arg_left.eq(arg_left - 1)]
                with m.If(arg_left == 1):
                    m.next = "DISPATCH"
            with m.Elif(r.timed_out):
                self._reply(m, r, Reply.NAK)
        with m.State("DISPATCH"):
            # DISPATCH: arguments complete, start the transfer (or answer an empty one)
            m.d.sync += [r.addr.eq(args[:self._addr_bits]), r.n.eq(args[32:48]),
                         r.word_left.eq(self._dram_bits // 8), r.silent.eq(0)]
            empty = args[32:48] == 0
            with m.If(cmd == Command.WRITE):
                with m.If(empty):
                    self._reply(m, r, Reply.ACK)
                with m.Else():
                    m.next = "WRITE_DATA"
            with m.Elif(empty):
                m.next = "IDLE"
            with m.Else():
                m.next = "READ_ADDR"

    def _write_states(self, m: Module, r: _Command):
        """WRITE: collect each word from the line and write it to DRAM; ACK after the last."""
        word_bytes = self._dram_bits // 8
        with m.State("WRITE_DATA"):
            # WRITE_DATA: collecting the bytes of the next word
            self._receive(m, r)
            with m.If(r.got):
                m.d.sync += [r.buf.eq(Cat(r.buf[8:], r.byte)), r.word_left.eq(r.word_left - 1)]
                with m.If(r.word_left == 1):
                    m.next = "WRITE_MEM"
            with m.Elif(r.timed_out):
                self._reply(m, r, Reply.NAK)
        with m.State("WRITE_MEM"):
            # WRITE_MEM: the word waits for the DRAM write port; ACK after the last
            m.d.comb += self.mem_w.valid.eq(1)
            with m.If(self.mem_w.ready):
                m.d.sync += [r.addr.eq(r.addr + 1), r.n.eq(r.n - 1), r.word_left.eq(word_bytes),
                             r.silent.eq(0)]
                with m.If(r.n == 1):
                    self._reply(m, r, Reply.ACK)
                with m.Else():
                    m.next = "WRITE_DATA"

    def _read_states(self, m: Module, r: _Command):
        """READ: read one DRAM word at a time and send its bytes before asking for the next."""
        with m.State("READ_ADDR"):
            # READ_ADDR: ask the DRAM for the next word
            m.d.comb += self.mem_raddr.valid.eq(1)
            with m.If(self.mem_raddr.ready):
                m.d.sync += [r.addr.eq(r.addr + 1), r.n.eq(r.n - 1)]
                m.next = "READ_DATA"
        with m.State("READ_DATA"):
            # READ_DATA: wait for the word
            m.d.comb += self.mem_rdata.ready.eq(1)
            with m.If(self.mem_rdata.valid):
                m.d.sync += [r.buf.eq(self.mem_rdata.payload),
                             r.out_left.eq(self._dram_bits // 8)]
                m.next = "SEND_WORD"
        with m.State("SEND_WORD"):
            # SEND_WORD: the word's bytes to the host, lowest first; then the next word
            self._send(m, r)
            with m.If(r.sent_last):
                with m.If(r.n == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "READ_ADDR"

    def _answer_states(self, m: Module, r: _Command):
        """tx responses: the counters, each snapshotted as it starts, and the one-byte answers."""
        with m.State("SEND_COUNT"):
            # SEND_COUNT: the number of counters
            self._send_reply(m, r, "NEXT_COUNTER")
        with m.State("SEND_COUNTER"):
            # SEND_COUNTER: one counter's eight bytes, lowest first
            self._send(m, r)
            with m.If(r.sent_last):
                m.next = "NEXT_COUNTER"
        with m.State("NEXT_COUNTER"):
            # NEXT_COUNTER: snapshot the next counter (or finish)
            with m.If(r.index == self._counters):
                m.next = "IDLE"
            with m.Else():
                m.d.sync += [r.buf.eq(self.counters[r.index]), r.out_left.eq(COUNTER_BITS // 8),
                             r.index.eq(r.index + 1)]
                m.next = "SEND_COUNTER"
        with m.State("REPLY"):
            # REPLY: a one-byte answer
            self._send_reply(m, r, "IDLE")


class UARTBridge(wiring.Component):
    """`HostBridge` between a `UARTRx` and a `UARTTx`: the host link of a board top.

    Parameters
    ----------
    counters, dram_bits, addr_bits, timeout, fifo_depth
        As for `HostBridge`.
    divisor : int
        Clock cycles per bit of the serial line (`ommatidia.hw.uart.uart_divisor`).

    Members
    -------
    rx : In(1)
        Serial line from the host (idles high).
    tx : Out(1)
        Serial line to the host.
    framing_error, overrun : Out(1)
        The receiver's pulses (`UARTRx`).
    mem_w, mem_raddr, mem_rdata, start, status, counters
        As for `HostBridge`.
    """

    def __init__(self, counters: int, dram_bits: int = 64, addr_bits: int = 32, *,
                 divisor: int, timeout: int = 1 << 24, fifo_depth: int = 16):
        self._bridge = HostBridge(counters, dram_bits, addr_bits, timeout=timeout,
                                  fifo_depth=fifo_depth)
        self._rx = UARTRx(divisor)
        self._tx = UARTTx(divisor)
        members = {
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "framing_error": Out(1),
            "overrun": Out(1),
        }
        for name in ("mem_w", "mem_raddr", "mem_rdata", "start", "status", "counters"):
            members[name] = self._bridge.signature.members[name]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = self._rx
        m.submodules.tx = tx = self._tx
        m.submodules.bridge = bridge = self._bridge
        wiring.connect(m, rx.o, bridge.i)
        wiring.connect(m, bridge.o, tx.i)
        wiring.connect(m, wiring.flipped(self.mem_w), bridge.mem_w)
        wiring.connect(m, wiring.flipped(self.mem_raddr), bridge.mem_raddr)
        wiring.connect(m, wiring.flipped(self.mem_rdata), bridge.mem_rdata)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx),
                     self.framing_error.eq(rx.framing_error), self.overrun.eq(rx.overrun),
                     self.start.eq(bridge.start), bridge.status.eq(self.status),
                     bridge.counters.eq(self.counters)]
        return m
