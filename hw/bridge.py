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
        word_bytes = self._dram_bits // 8
        out_bits = max(self._dram_bits, COUNTER_BITS)

        m.submodules.fifo = inq = fifo.SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        m.d.comb += [inq.w_data.eq(self.i.payload), inq.w_en.eq(self.i.valid),
                     self.i.ready.eq(inq.w_rdy)]
        byte = inq.r_data
        got = Signal()
        m.d.comb += got.eq(inq.r_rdy & inq.r_en)

        cmd = Signal(8)
        reply_byte = Signal(8)
        args = Signal(48)
        arg_left = Signal(range(7))
        addr = Signal(self._addr_bits)
        n = Signal(16)
        word = Signal(self._dram_bits)
        word_left = Signal(range(word_bytes + 1))
        obuf = Signal(out_bits)
        out_left = Signal(range(out_bits // 8 + 1))
        index = Signal(range(self._counters + 1))

        silent = Signal(range(max(self._timeout, 1) + 1))
        timed_out = Signal()
        if self._timeout:
            m.d.comb += timed_out.eq(silent == self._timeout)

        m.d.sync += self.start.eq(0)
        m.d.comb += [self.mem_w.payload.addr.eq(addr), self.mem_w.payload.data.eq(word),
                     self.mem_raddr.payload.eq(addr)]

        def receive():
            m.d.comb += inq.r_en.eq(1)
            if self._timeout:
                with m.If(got):
                    m.d.sync += silent.eq(0)
                with m.Else():
                    m.d.sync += silent.eq(silent + 1)

        def reply(value, state="REPLY"):
            m.d.sync += reply_byte.eq(value)
            m.next = state

        def send_reply(then):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(reply_byte)]
            with m.If(self.o.ready):
                m.next = then

        sent_last = self.o.ready & (out_left == 1)

        def send():
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(obuf[:8])]
            with m.If(self.o.ready):
                m.d.sync += [obuf.eq(obuf >> 8), out_left.eq(out_left - 1)]

        with m.FSM():
            with m.State("IDLE"):
                # IDLE: waiting for a command byte
                m.d.comb += inq.r_en.eq(1)
                m.d.sync += [silent.eq(0), arg_left.eq(6), cmd.eq(byte)]
                with m.If(got):
                    m.next = "DECODE"
            with m.State("DECODE"):
                # DECODE: act on the command byte
                with m.Switch(cmd):
                    with m.Case(Command.WRITE, Command.READ):
                        m.next = "ARGS"
                    with m.Case(Command.START):
                        m.d.sync += self.start.eq(1)
                        reply(Reply.ACK)
                    with m.Case(Command.STATUS):
                        reply(self.status)
                    with m.Case(Command.COUNTERS):
                        m.d.sync += index.eq(0)
                        reply(self._counters, "SEND_COUNT")
                    with m.Default():
                        reply(Reply.NAK)
            with m.State("ARGS"):
                # ARGS: collecting addr (4 bytes) and n (2 bytes), little-endian
                receive()
                with m.If(got):
                    m.d.sync += [args.eq(Cat(args[8:], byte)), arg_left.eq(arg_left - 1)]
                    with m.If(arg_left == 1):
                        m.next = "DISPATCH"
                with m.Elif(timed_out):
                    reply(Reply.NAK)
            with m.State("DISPATCH"):
                # DISPATCH: arguments complete, start the transfer (or answer an empty one)
                m.d.sync += [addr.eq(args[:self._addr_bits]), n.eq(args[32:48]),
                             word_left.eq(word_bytes), silent.eq(0)]
                empty = args[32:48] == 0
                with m.If(cmd == Command.WRITE):
                    with m.If(empty):
                        reply(Reply.ACK)
                    with m.Else():
                        m.next = "WRITE_DATA"
                with m.Elif(empty):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "READ_ADDR"
            with m.State("WRITE_DATA"):
                # WRITE_DATA: collecting the bytes of the next word
                receive()
                with m.If(got):
                    m.d.sync += [word.eq(Cat(word[8:], byte)), word_left.eq(word_left - 1)]
                    with m.If(word_left == 1):
                        m.next = "WRITE_MEM"
                with m.Elif(timed_out):
                    reply(Reply.NAK)
            with m.State("WRITE_MEM"):
                # WRITE_MEM: the word waits for the DRAM write port; ACK after the last
                m.d.comb += self.mem_w.valid.eq(1)
                with m.If(self.mem_w.ready):
                    m.d.sync += [addr.eq(addr + 1), n.eq(n - 1), word_left.eq(word_bytes),
                                 silent.eq(0)]
                    with m.If(n == 1):
                        reply(Reply.ACK)
                    with m.Else():
                        m.next = "WRITE_DATA"
            with m.State("READ_ADDR"):
                # READ_ADDR: ask the DRAM for the next word
                m.d.comb += self.mem_raddr.valid.eq(1)
                with m.If(self.mem_raddr.ready):
                    m.d.sync += [addr.eq(addr + 1), n.eq(n - 1)]
                    m.next = "READ_DATA"
            with m.State("READ_DATA"):
                # READ_DATA: wait for the word
                m.d.comb += self.mem_rdata.ready.eq(1)
                with m.If(self.mem_rdata.valid):
                    m.d.sync += [obuf.eq(self.mem_rdata.payload), out_left.eq(word_bytes)]
                    m.next = "SEND_WORD"
            with m.State("SEND_WORD"):
                # SEND_WORD: the word's bytes to the host, lowest first; then the next word
                send()
                with m.If(sent_last):
                    with m.If(n == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "READ_ADDR"
            with m.State("SEND_COUNT"):
                # SEND_COUNT: the number of counters
                send_reply("NEXT_COUNTER")
            with m.State("SEND_COUNTER"):
                # SEND_COUNTER: one counter's eight bytes, lowest first
                send()
                with m.If(sent_last):
                    m.next = "NEXT_COUNTER"
            with m.State("NEXT_COUNTER"):
                # NEXT_COUNTER: snapshot the next counter (or finish)
                with m.If(index == self._counters):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [obuf.eq(self.counters[index]), out_left.eq(COUNTER_BITS // 8),
                                 index.eq(index + 1)]
                    m.next = "SEND_COUNTER"
            with m.State("REPLY"):
                # REPLY: a one-byte answer
                send_reply("IDLE")
        return m


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
