"""The host's end of a UART line, as a bit-level model driving a design in the Amaranth simulator.

`UARTLine` turns queued bytes into 8N1 frames on the design's receive pin and
decodes the frames on its transmit pin, cycle by cycle, with optional random
idle time between frames. `SimTransport` wraps it in the transport interface
of `ommatidia.boards.host.Host` (``write(bytes)``, ``read(n)``), advancing the
simulation only while the host waits for bytes, so a host program runs
unchanged against the simulated board.
"""

from __future__ import annotations

import collections
import random

from ommatidia.gen.config import check_int

__all__ = ["UARTLine", "SimTransport", "wait_cycles"]


async def wait_cycles(ctx, n: int) -> None:
    """Let ``n`` clock edges pass (a plain loop: safe to abandon when the simulation is dropped)."""
    for _ in range(n):
        await ctx.tick()


class UARTLine:
    """Bit-level host UART on a simulated design's pins.

    Sends each byte of `to_dut` as start bit, eight data bits (least
    significant first) and stop bit, each ``divisor`` cycles, followed by
    ``0..max_gap`` idle cycles drawn from ``rng``. Receives frames on the
    design's transmit pin by sampling each bit ``divisor // 2`` cycles after
    it starts (the start bit starts at the falling edge) into `from_dut`; a
    frame whose stop bit reads 0 counts in `framing_errors` and the model
    waits for the line to go high again. The two directions are independent
    background testbenches (`add_to`); the receiver sleeps while the line is
    idle. `cycles` counts the clock cycles since the sender started, updated
    at least once per bit time.

    Parameters
    ----------
    rx_pin : Signal
        The design's receive line (the model drives it).
    tx_pin : Signal
        The design's transmit line (the model samples it).
    divisor : int
        Clock cycles per bit, at least 4.
    rng : random.Random, optional
        Source of the idle gaps.
    max_gap : int
        Most idle cycles after a frame.
    """

    def __init__(self, rx_pin, tx_pin, divisor: int, *, rng: random.Random | None = None,
                 max_gap: int = 0):
        check_int("UARTLine", "divisor", divisor, 4)
        check_int("UARTLine", "max_gap", max_gap, 0)
        self.rx_pin = rx_pin
        self.tx_pin = tx_pin
        self.divisor = divisor
        self.rng = rng or random.Random(0)
        self.max_gap = max_gap
        self.to_dut: collections.deque[int] = collections.deque()
        self.from_dut: collections.deque[int] = collections.deque()
        self.framing_errors = 0
        self.cycles = 0
        self.sending = False

    def _frame(self, byte: int) -> list[tuple[int, int]]:
        levels = [0] + [(byte >> k) & 1 for k in range(8)] + [1]
        segments = [(level, self.divisor) for level in levels]
        gap = self.rng.randint(0, self.max_gap) if self.max_gap else 0
        if gap:
            segments.append((1, gap))
        return segments

    def add_to(self, sim) -> None:
        """Add the sender and the receiver to ``sim`` as background testbenches."""
        sim.add_testbench(self.sender, background=True)
        sim.add_testbench(self.receiver, background=True)

    async def sender(self, ctx) -> None:
        """Drive `to_dut` onto ``rx_pin`` forever; counts `cycles`."""
        ctx.set(self.rx_pin, 1)
        await ctx.tick()
        self.cycles += 1
        while True:
            if not self.to_dut:
                await wait_cycles(ctx, self.divisor)
                self.cycles += self.divisor
                continue
            self.sending = True
            for level, hold in self._frame(self.to_dut.popleft()):
                ctx.set(self.rx_pin, level)
                await wait_cycles(ctx, hold)
                self.cycles += hold
            self.sending = bool(self.to_dut)

    async def receiver(self, ctx) -> None:
        """Decode frames on ``tx_pin`` into `from_dut` forever."""
        d = self.divisor
        while True:
            if not ctx.get(self.tx_pin):
                await ctx.posedge(self.tx_pin)
            await ctx.negedge(self.tx_pin)
            await wait_cycles(ctx, d // 2)
            if ctx.get(self.tx_pin):
                continue
            value = 0
            for k in range(8):
                await wait_cycles(ctx, d)
                value |= ctx.get(self.tx_pin) << k
            await wait_cycles(ctx, d)
            if ctx.get(self.tx_pin):
                self.from_dut.append(value)
            else:
                self.framing_errors += 1


class SimTransport:
    """`ommatidia.boards.host.Host` transport over a `UARTLine` in a running Amaranth simulation.

    The caller builds the ``Simulator`` (design, clock, its own background
    testbenches such as a DRAM model); the transport adds the line as a
    background testbench. `write` queues bytes and returns at once; `read`
    advances the simulation until ``n`` bytes have arrived, raising
    TimeoutError after ``timeout_cycles`` cycles in which the line neither
    sent nor received a byte (the timeout bounds silence, as for
    `ommatidia.boards.host.SerialTransport`). All simulation time should
    pass through `read` and `run` once the transport exists.

    Parameters
    ----------
    sim : amaranth.sim.Simulator
    rx_pin, tx_pin, divisor, rng, max_gap
        As for `UARTLine`.
    timeout_cycles : int
        Cycles `read` waits for its bytes.
    """

    def __init__(self, sim, rx_pin, tx_pin, divisor: int, *, timeout_cycles: int = 1 << 20,
                 rng: random.Random | None = None, max_gap: int = 0):
        check_int("SimTransport", "timeout_cycles", timeout_cycles, 1)
        self.sim = sim
        self.timeout_cycles = timeout_cycles
        self.line = UARTLine(rx_pin, tx_pin, divisor, rng=rng, max_gap=max_gap)
        self.line.add_to(sim)

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since the line started."""
        return self.line.cycles

    def write(self, data: bytes) -> None:
        self.line.to_dut.extend(bytes(data))

    def read(self, n: int) -> bytes:
        deadline = self.line.cycles + self.timeout_cycles
        received = self.line.from_dut
        seen = len(received)
        while len(received) < n:
            if self.line.sending or self.line.to_dut or len(received) != seen:
                seen = len(received)
                deadline = self.line.cycles + self.timeout_cycles
            elif self.line.cycles >= deadline:
                raise TimeoutError(
                    f"SimTransport.read: {len(received)} of {n} bytes, then nothing for "
                    f"{self.timeout_cycles} cycles")
            self.sim.advance()
        return bytes(received.popleft() for _ in range(n))

    def run(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass."""
        target = self.line.cycles + cycles
        while self.line.cycles < target:
            self.sim.advance()

    def reset_input_buffer(self) -> None:
        """Drop the bytes received and not yet read (as pyserial's method of that name)."""
        self.line.from_dut.clear()
