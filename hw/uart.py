"""UART receiver and transmitter, 8N1, for the host link of a board.

A frame is one start bit (0), eight data bits least significant first and one
stop bit (1), each ``divisor`` clock cycles long; the line idles high. Both
ends run from the one system clock; ``divisor`` is its cycles per bit
(`uart_divisor` computes it from a clock and a baud rate).

amaranth-stdio, the Amaranth project's serial core, is not on PyPI (the name
is a placeholder there), so the two small cores are written here against
`amaranth.lib.stream`.
"""

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import check_int

__all__ = ["MIN_DIVISOR", "MAX_DIVISOR", "uart_divisor", "UARTRx", "UARTTx"]

MIN_DIVISOR = 4
"""Fewest clock cycles per bit: mid-bit sampling needs a bit at least 4 cycles long."""
MAX_DIVISOR = 1 << 24
MAX_BAUD_ERROR = 0.02
"""Largest relative baud-rate error `uart_divisor` accepts (8N1 tolerates about 4 % end to end)."""


def _check_divisor(owner: str, divisor) -> None:
    check_int(owner, "divisor", divisor, MIN_DIVISOR, MAX_DIVISOR)


def uart_divisor(clk_freq: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_freq`` Hz, rounded to the nearest integer.

    Raises ValueError when the divisor is below `MIN_DIVISOR` or the rounding
    puts the baud rate more than `MAX_BAUD_ERROR` off.
    """
    if not clk_freq > 0:
        raise ValueError(f"uart_divisor clk_freq must be positive, not {clk_freq!r}")
    check_int("uart_divisor", "baud", baud, 1)
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(
            f"uart_divisor baud {baud} needs at least {MIN_DIVISOR} clock cycles per bit, "
            f"but clk_freq {clk_freq} Hz gives {clk_freq / baud:.2f}")
    error = abs(clk_freq / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(
            f"uart_divisor baud {baud} at clk_freq {clk_freq} Hz is {100 * error:.1f} % off "
            f"with divisor {divisor}, more than the {100 * MAX_BAUD_ERROR:.0f} % limit")
    return divisor


class UARTRx(wiring.Component):
    """UART receiver: line ``rx`` to a stream of bytes.

    ``rx`` passes through a two-flop synchroniser. A falling edge starts a
    frame; the start bit is checked at its middle (a glitch shorter than half a
    bit is ignored) and every later bit is sampled ``divisor`` cycles after the
    previous one, so in the middle of its bit. A frame whose stop bit reads 0
    is dropped with a ``framing_error`` pulse, and the receiver then waits for
    the line to go high again (a break holds it low). A good byte appears on
    ``o`` half a bit after the end of its frame plus the synchroniser's two
    cycles and stays there until taken; a byte that completes while the
    previous one is still waiting is dropped with an ``overrun`` pulse, so the
    consumer must take each byte within one frame time.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least `MIN_DIVISOR`.

    Members
    -------
    rx : In(1)
        The serial line (asynchronous; idles high).
    o : Out(stream of unsigned(8))
        Received bytes.
    framing_error : Out(1)
        One-cycle pulse per frame dropped for its stop bit.
    overrun : Out(1)
        One-cycle pulse per good byte dropped because ``o`` was still full.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(unsigned(8)))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int):
        _check_divisor("UARTRx", divisor)
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        count = Signal(range(div))
        bits = Signal(range(9))
        shreg = Signal(8)
        at_sample = count == 0

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                # IDLE: line high, waiting for the falling edge of a start bit
                with m.If(~line):
                    m.d.sync += count.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                # START: wait for the middle of the start bit and check it is still low
                m.d.sync += count.eq(count - 1)
                with m.If(at_sample):
                    m.d.sync += [count.eq(div - 1), bits.eq(8)]
                    m.next = "DATA"
                    with m.If(line):
                        m.next = "IDLE"
            with m.State("DATA"):
                # DATA: sample the eight data bits, least significant first
                m.d.sync += count.eq(count - 1)
                with m.If(at_sample):
                    m.d.sync += [count.eq(div - 1), shreg.eq(Cat(shreg[1:], line)),
                                 bits.eq(bits - 1)]
                    with m.If(bits == 1):
                        m.next = "STOP"
            with m.State("STOP"):
                # STOP: sample the stop bit; deliver the byte or report a framing error
                m.d.sync += count.eq(count - 1)
                with m.If(at_sample):
                    with m.If(line):
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                # BREAK: after a bad stop bit, wait for the line to return high
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter: a stream of bytes to line ``tx``.

    A byte taken from ``i`` starts its start bit on the next cycle; ``i`` is
    ready when the line is idle and in the last cycle of a stop bit, so bytes
    offered back to back go out with no idle time between frames (one byte per
    ``10 * divisor`` cycles). ``tx`` and ``i.ready`` are registers; ``tx``
    idles high.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least `MIN_DIVISOR`.

    Members
    -------
    i : In(stream of unsigned(8))
        Bytes to send.
    tx : Out(1)
        The serial line.
    """

    i: In(stream.Signature(unsigned(8)))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        _check_divisor("UARTTx", divisor)
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        busy = Signal()
        ready = Signal(init=1)
        count = Signal(range(div))
        bits = Signal(range(10))
        shreg = Signal(9)

        m.d.comb += self.i.ready.eq(ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [busy.eq(1), ready.eq(0), self.tx.eq(0),
                         shreg.eq(Cat(self.i.payload, 1)), bits.eq(9), count.eq(div - 1)]
        with m.Elif(busy):
            m.d.sync += count.eq(count - 1)
            with m.If((count == 1) & (bits == 0)):
                m.d.sync += ready.eq(1)
            with m.If(count == 0):
                with m.If(bits == 0):
                    m.d.sync += busy.eq(0)
                with m.Else():
                    m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg[1:]), bits.eq(bits - 1),
                                 count.eq(div - 1)]
        return m
