"""Host driver of a board: runs the accelerator over its serial link (`ommatidia.hw.bridge`).

`Host` speaks the bridge's byte protocol over a *transport*, any object with
``write(data: bytes)`` and ``read(n: int) -> bytes``, where ``read`` returns
exactly ``n`` bytes or raises TimeoutError. `Host.open_serial` makes one
from a serial port (pyserial); `ommatidia.sim.uart_model.SimTransport` is one
over a design in the Amaranth simulator, so the same host code drives the
simulated and the real board.

A session loads the program and data with `Host.write_words`, calls
`Host.start` and `Host.wait_done`, then reads results with `Host.read_words`
and the performance counters with `Host.counters`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ommatidia.gen.config import check_int
from ommatidia.hw.bridge import COUNTER_BITS, MAX_WORDS, Command, Reply

__all__ = ["HostError", "Status", "SerialTransport", "Host", "BridgeTransport", "run_layer"]

ADDR_LIMIT = 1 << 32


class HostError(RuntimeError):
    """The board answered something the protocol does not allow, or reported an error."""


@dataclass(frozen=True)
class Status:
    """The accelerator's status byte."""

    raw: int

    def __post_init__(self):
        check_int("Status", "raw", self.raw, 0, 255)

    @property
    def busy(self) -> bool:
        return bool(self.raw & 1)

    @property
    def done(self) -> bool:
        return bool(self.raw & 2)

    @property
    def error(self) -> bool:
        return bool(self.raw & 4)


class SerialTransport:
    """Transport over a pyserial port.

    `read` collects the bytes over as many reads of the port as it takes and
    raises TimeoutError when one of them brings nothing within the port's
    timeout: the timeout bounds silence, not the length of a transfer.
    """

    def __init__(self, port):
        self.port = port

    def write(self, data: bytes) -> None:
        self.port.write(bytes(data))
        self.port.flush()

    def read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            part = self.port.read(n - len(data))
            if not part:
                raise TimeoutError(
                    f"serial port {self.port.port}: {len(data)} of {n} bytes, then nothing "
                    f"for {self.port.timeout} s")
            data += part
        return bytes(data)

    def reset_input_buffer(self) -> None:
        self.port.reset_input_buffer()

    def close(self) -> None:
        self.port.close()


class Host:
    """Driver of the host bridge protocol.

    Parameters
    ----------
    transport
        ``write(bytes)`` and ``read(n) -> bytes`` (TimeoutError if the bytes
        do not come).
    word_bits : int
        DRAM word width of the board (the bridge's ``dram_bits``).
    chunk : int
        Most words per WRITE or READ command (at most 65535).
    """

    def __init__(self, transport, *, word_bits: int = 64, chunk: int = MAX_WORDS):
        check_int("Host", "word_bits", word_bits, 8, 512)
        if word_bits % 8:
            raise ValueError(f"Host.word_bits must be a multiple of 8, not {word_bits}")
        check_int("Host", "chunk", chunk, 1, MAX_WORDS)
        self.transport = transport
        self.word_bits = word_bits
        self.word_bytes = word_bits // 8
        self.chunk = chunk

    @classmethod
    def open_serial(cls, port: str, baud: int, *, timeout: float = 2.0, **kwargs) -> Host:
        """A Host on serial ``port`` at ``baud`` (8N1); ``port`` may be a pyserial URL.

        ``timeout`` is the longest silence, in seconds, while an answer is
        due; writes block until sent. Other keywords go to `Host`.
        """
        import serial

        check_int("Host.open_serial", "baud", baud, 1)
        link = serial.serial_for_url(port, baudrate=baud, bytesize=serial.EIGHTBITS,
                                     parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                                     timeout=timeout, write_timeout=None)
        link.reset_input_buffer()
        return cls(SerialTransport(link), **kwargs)

    def _expect_ack(self, what: str) -> None:
        answer = self.transport.read(1)[0]
        if answer == Reply.NAK:
            raise HostError(f"{what}: the board answered NAK")
        if answer != Reply.ACK:
            raise HostError(f"{what}: expected ACK 0x{Reply.ACK:02x}, got 0x{answer:02x}")

    def _check_range(self, what: str, addr: int, n: int) -> None:
        check_int(f"Host.{what}", "addr", addr, 0, ADDR_LIMIT - 1)
        if addr + n > ADDR_LIMIT:
            raise ValueError(f"Host.{what}: words {addr}..{addr + n - 1} pass the 32-bit "
                             f"address limit {ADDR_LIMIT - 1}")

    def write_words(self, addr: int, words) -> None:
        """Write ``words`` to DRAM words ``addr``, ``addr + 1``, ..."""
        words = list(words)
        self._check_range("write_words", addr, len(words))
        limit = 1 << self.word_bits
        for k, word in enumerate(words):
            if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word < limit:
                raise ValueError(f"Host.write_words word {k} must be an integer in "
                                 f"0..{limit - 1}, not {word!r}")
        for base in range(0, len(words), self.chunk):
            part = words[base:base + self.chunk]
            message = bytearray([Command.WRITE])
            message += (addr + base).to_bytes(4, "little") + len(part).to_bytes(2, "little")
            for word in part:
                message += word.to_bytes(self.word_bytes, "little")
            self.transport.write(bytes(message))
            self._expect_ack(f"WRITE of {len(part)} words at {addr + base}")

    def read_words(self, addr: int, n: int) -> list[int]:
        """Read DRAM words ``addr`` to ``addr + n - 1``."""
        check_int("Host.read_words", "n", n, 0)
        self._check_range("read_words", addr, n)
        words: list[int] = []
        for base in range(0, n, self.chunk):
            count = min(self.chunk, n - base)
            self.transport.write(bytes([Command.READ]) + (addr + base).to_bytes(4, "little")
                                 + count.to_bytes(2, "little"))
            data = self.transport.read(count * self.word_bytes)
            words += [int.from_bytes(data[k:k + self.word_bytes], "little")
                      for k in range(0, len(data), self.word_bytes)]
        return words

    def start(self) -> None:
        """Start the accelerator on the program at DRAM word 0."""
        self.transport.write(bytes([Command.START]))
        self._expect_ack("START")

    def status(self) -> Status:
        self.transport.write(bytes([Command.STATUS]))
        return Status(self.transport.read(1)[0])

    def counters(self) -> list[int]:
        """The performance counters, in the accelerator's order."""
        self.transport.write(bytes([Command.COUNTERS]))
        count = self.transport.read(1)[0]
        size = COUNTER_BITS // 8
        data = self.transport.read(count * size)
        return [int.from_bytes(data[k:k + size], "little") for k in range(0, len(data), size)]

    def wait_done(self, timeout: float = 10.0, poll: float = 0.001) -> Status:
        """Poll the status until done; HostError if it reports an error, TimeoutError after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.error:
                raise HostError(f"the accelerator reports an error (status 0x{status.raw:02x})")
            if status.done:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"the accelerator is not done after {timeout} s "
                                   f"(status 0x{status.raw:02x})")
            if poll:
                time.sleep(poll)


class BridgeTransport:
    """`ommatidia.host.driver.Driver`'s transport over the bridge protocol of ``host``.

    The board's `ommatidia.hw.system.System` has no register map; this maps the
    registers the driver uses (`ommatidia.hw.axi_regs`) onto the bridge's commands:
    ``ID`` reads the accelerator's ID, ``STATUS`` the status byte (same bits),
    ``CTRL.START`` sends START, a read of ``NUM_COUNTERS`` takes a snapshot of the
    counters (one COUNTERS command) that the counter registers then read, ``PROG`` and
    ``DRAM_BASE`` are 0 (the board runs the program at DRAM word 0 of its own DRAM) and
    take only 0. Other registers read 0.
    """

    dram_base = 0

    def __init__(self, host: Host, *, poll: float = 0.001):
        self.host = host
        self.poll = poll
        self._snapshot: list[int] | None = None

    def read_reg(self, offset: int) -> int:
        from ommatidia.hw import axi_regs as regs
        if offset == regs.offset("ID"):
            return regs.ID_VALUE
        if offset == regs.offset("STATUS"):
            return self.host.status().raw
        if offset == regs.offset("NUM_COUNTERS"):
            self._snapshot = self.host.counters()
            return len(self._snapshot)
        if offset == regs.offset("COUNTER_BITS"):
            return COUNTER_BITS
        index, high = divmod(offset - regs.COUNTER_BASE, 8)
        if offset >= regs.COUNTER_BASE and high in (0, 4):
            if self._snapshot is None:
                self._snapshot = self.host.counters()
            if index < len(self._snapshot):
                return (self._snapshot[index] >> (8 * high)) & 0xFFFF_FFFF
        return 0

    def write_reg(self, offset: int, value: int) -> None:
        from ommatidia.hw import axi_regs as regs
        if offset == regs.offset("CTRL"):
            if value & regs.CTRL_START:
                self.host.start()
            return
        zero_only = {regs.offset(n): n for n in ("PROG", "DRAM_BASE_LO", "DRAM_BASE_HI")}
        if offset in zero_only:
            if value:
                raise ValueError(f"the UART bridge runs the program at DRAM word 0 of the "
                                 f"board's DRAM: {zero_only[offset]} takes only 0, not {value}")
            return
        raise ValueError(f"the UART bridge has no register at offset 0x{offset:x}")

    def read_words(self, addr: int, n: int) -> list[int]:
        return self.host.read_words(addr, n)

    def write_words(self, addr: int, words) -> None:
        self.host.write_words(addr, words)

    def pause(self) -> None:
        if self.poll:
            time.sleep(self.poll)


def run_layer(host: Host, prog, *, timeout: float = 60.0):
    """Run a compiled layer (`ommatidia.gen.program.LayerProgram`) on the board behind
    ``host`` with the host driver (`ommatidia.host.driver.Driver` over a `BridgeTransport`):
    load its DRAM image, start, wait for done, read the ofmap back.

    Returns (ofmap (N, M, E, F), counters by name).
    """
    from ommatidia.host.driver import Driver
    return Driver(BridgeTransport(host)).run(prog, timeout=timeout)
