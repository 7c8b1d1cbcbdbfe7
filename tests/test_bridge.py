"""The host bridge behind its UARTs, driven with hand-packed protocol bytes over a bit-level line.

The DRAM is a Python dict with random stalls and read latency
(`DictDRAM`); status and counters are set by the test. Messages are packed
here from the protocol table (command bytes 0x01..0x05, ACK 0x06, NAK
0x15, little-endian), not from the bridge's constants.
"""

import gc
import random
import struct
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ommatidia.hw.bridge import HostBridge, UARTBridge
from ommatidia.sim.bridge_model import DictDRAM
from ommatidia.sim.uart_model import SimTransport, wait_cycles

WRITE, READ, START, STATUS, COUNTERS = 0x01, 0x02, 0x03, 0x04, 0x05
ACK, NAK = 0x06, 0x15
DIVISOR = 4
TIMEOUT = 400
BYTE_CYCLES = 10 * DIVISOR

CONFIGS = {"64b": (64, 32, 3), "24b": (24, 10, 1)}


class Board:
    """A UARTBridge with a DictDRAM, a start-pulse monitor and settable status/counters."""

    def __init__(self, seed, dram_bits, addr_bits, counters, *, max_gap=DIVISOR):
        self.rng = random.Random(seed)
        self.dram_bits, self.addr_bits, self.n_counters = dram_bits, addr_bits, counters
        self.dut = UARTBridge(counters, dram_bits, addr_bits, divisor=DIVISOR, timeout=TIMEOUT)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.dram = DictDRAM(self.dut, self.rng, max_stall=6, max_latency=6,
                             default=lambda addr: (addr * 0x9E3779B97F4A7C15) % (1 << dram_bits))
        self.dram.add_to(self.sim)
        self.starts = []
        self.status = 0
        self.counters = [0] * counters
        self.sim.add_testbench(self._watch_start, background=True)
        self.sim.add_testbench(self._drive_inputs, background=True)
        self.line = SimTransport(self.sim, self.dut.rx, self.dut.tx, DIVISOR,
                                 timeout_cycles=200 * BYTE_CYCLES, rng=self.rng, max_gap=max_gap)

    async def _watch_start(self, ctx):
        """Record the width in cycles of every ``start`` pulse."""
        while True:
            await ctx.posedge(self.dut.start)
            width = 0
            while ctx.get(self.dut.start):
                await ctx.tick()
                width += 1
            self.starts.append(width)

    async def _drive_inputs(self, ctx):
        """Copy `status` and `counters` to the bridge once per bit time (a command takes longer)."""
        while True:
            ctx.set(self.dut.status, self.status)
            ctx.set(self.dut.counters, self.counters)
            await wait_cycles(ctx, DIVISOR)

    def word_bytes(self, words):
        return b"".join(w.to_bytes(self.dram_bits // 8, "little") for w in words)

    def random_words(self, n):
        return [self.rng.getrandbits(self.dram_bits) for _ in range(n)]

    def command(self, message: bytes, answer_bytes: int) -> bytes:
        self.line.write(message)
        return self.line.read(answer_bytes)

    def write(self, addr, words) -> bytes:
        header = struct.pack("<BIH", WRITE, addr, len(words))
        return self.command(header + self.word_bytes(words), 1)

    def read(self, addr, n) -> bytes:
        return self.command(struct.pack("<BIH", READ, addr, n), n * self.dram_bits // 8)


@pytest.mark.parametrize("config", CONFIGS)
def test_write_read_back(seed, config):
    """WRITE stores each word at its address in order; READ returns them bit for bit."""
    dram_bits, addr_bits, counters = CONFIGS[config]
    board = Board(seed, dram_bits, addr_bits, counters)
    rng = board.rng
    mask = (1 << addr_bits) - 1
    for _ in range(2):
        n = rng.randint(1, 24)
        addr = rng.randrange(1 << addr_bits)
        words = board.random_words(n)
        expect_addrs = [(addr + k) & mask for k in range(n)]
        writes_before = len(board.dram.writes)
        assert board.write(addr, words) == bytes([ACK])
        assert board.dram.writes[writes_before:] == expect_addrs
        assert [board.dram.words[a] for a in expect_addrs] == words
        assert board.read(addr, n) == board.word_bytes(words)
    # words the DRAM holds without a WRITE (its default contents), across the address wrap
    base = (1 << addr_bits) - 3
    unwritten = [a for a in ((base + k) & mask for k in range(6)) if a not in board.dram.words]
    for a in unwritten:
        assert board.read(a, 1) == board.word_bytes([board.dram.default(a)])
    # address bits above addr_bits are ignored
    if addr_bits < 32:
        word = board.random_words(1)
        assert board.write((1 << 31) | 5, word) == bytes([ACK])
        assert board.dram.words[5] == word[0]
    assert board.line.line.framing_errors == 0


def test_empty_transfers(seed):
    """WRITE of 0 words is acknowledged; READ of 0 words answers nothing."""
    board = Board(seed, 64, 32, 1)
    assert board.write(7, []) == bytes([ACK])
    board.status = 0x5A
    assert board.command(struct.pack("<BIH", READ, 7, 0) + bytes([STATUS]), 1) == bytes([0x5A])
    assert board.dram.writes == [] and board.dram.reads == []


def test_start_status_counters(seed):
    """START pulses ``start`` for one cycle and ACKs; STATUS and COUNTERS report the inputs."""
    dram_bits, addr_bits, n = CONFIGS["64b"]
    board = Board(seed, dram_bits, addr_bits, n)
    rng = board.rng
    for _ in range(3):
        board.status = rng.randrange(256)
        assert board.command(bytes([STATUS]), 1) == bytes([board.status])
    assert board.starts == []
    assert board.command(bytes([START]), 1) == bytes([ACK])
    assert board.starts == [1]
    board.line.run(5 * BYTE_CYCLES)
    assert board.starts == [1]
    assert board.command(bytes([START]), 1) == bytes([ACK])
    assert board.starts == [1, 1]
    board.counters = [rng.getrandbits(64) for _ in range(n)]
    board.counters[0] = (1 << 64) - 1
    answer = board.command(bytes([COUNTERS]), 1 + 8 * n)
    assert answer[0] == n
    assert list(struct.unpack(f"<{n}Q", answer[1:])) == board.counters


def test_unknown_command_resynchronises(seed):
    """Each unknown command byte is answered NAK and the next command works."""
    board = Board(seed, 64, 32, 3)
    rng = board.rng
    bad = [b for b in range(256) if b not in (WRITE, READ, START, STATUS, COUNTERS)]
    for byte in [0x00, 0xFF] + rng.sample(bad, 4):
        board.status = rng.randrange(256)
        assert board.command(bytes([byte, STATUS]), 2) == bytes([NAK, board.status])
    words = board.random_words(3)
    assert board.write(100, words) == bytes([ACK])
    assert board.read(100, 3) == board.word_bytes(words)


def test_silence_abandons_a_command(seed):
    """A command cut short is answered NAK after the timeout; complete words stay written."""
    board = Board(seed, 64, 32, 1)
    board.line.write(struct.pack("<BI", WRITE, 40)[:4])
    assert board.line.read(1) == bytes([NAK])
    words = board.random_words(3)
    message = struct.pack("<BIH", WRITE, 50, 3) + board.word_bytes(words)
    board.line.write(message[:-3])
    assert board.line.read(1) == bytes([NAK])
    assert board.dram.writes == [50, 51]
    board.status = 0x33
    assert board.command(bytes([STATUS]), 1) == bytes([0x33])
    assert board.read(50, 2) == board.word_bytes(words[:2])


def test_silence_is_measured_in_cycles(seed):
    """The NAK of an abandoned command comes ``timeout`` cycles after the last byte, not before."""
    board = Board(seed, 64, 32, 1, max_gap=0)
    board.line.write(bytes([READ, 1, 2]))
    start = board.line.cycles
    assert board.line.read(1) == bytes([NAK])
    elapsed = board.line.cycles - start
    # the 3 bytes (3 frames), the timeout, then the NAK's frame
    assert 3 * BYTE_CYCLES + TIMEOUT <= elapsed <= 4 * BYTE_CYCLES + TIMEOUT + 4 * DIVISOR


def test_bridge_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="dram_bits must be a multiple of 8, not 12"):
            HostBridge(1, 12)
        with pytest.raises(ValueError, match="HostBridge.addr_bits must be at most 32, not 33"):
            HostBridge(1, 64, 33)
        with pytest.raises(ValueError, match="HostBridge.counters must be at least 1, not 0"):
            HostBridge(0)
        gc.collect()
