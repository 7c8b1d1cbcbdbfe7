"""The host driver `Host` running against the simulated UART bridge, over a bit-level line.

The whole path is exercised: Host -> SimTransport (bytes to 8N1 frames) ->
UARTRx -> HostBridge -> DictDRAM / fake accelerator -> UARTTx -> frames to
bytes -> Host. The fake accelerator raises busy on ``start`` and done a
random number of cycles later, counting its busy cycles in a counter.
"""

import random

import pytest
from amaranth.sim import Simulator

from ommatidia.boards.host import Host, HostError, SerialTransport, Status
from ommatidia.gen.config import ICEBREAKER
from ommatidia.hw.bridge import UARTBridge
from ommatidia.sim.bridge_model import DictDRAM
from ommatidia.sim.uart_model import SimTransport, wait_cycles

DIVISOR = 4
COUNTERS = 4


class FakeAccelerator:
    """On each ``start``: busy for `run_cycles` cycles, then done (or error if `fail`).

    Counter 0 counts the runs, counter 1 the cycles spent busy, counter 2
    holds a constant; the others are zero.
    """

    def __init__(self, dut, run_cycles, *, fail=False, constant=0):
        self.dut = dut
        self.run_cycles = run_cycles
        self.fail = fail
        self.counters = [0, 0, constant] + [0] * (COUNTERS - 3)
        self.started_at = []

    async def run(self, ctx, line):
        ctx.set(self.dut.counters, self.counters)
        while True:
            await ctx.posedge(self.dut.start)
            self.started_at.append(line.cycles)
            ctx.set(self.dut.status, 0b001)
            await wait_cycles(ctx, self.run_cycles)
            self.counters[0] += 1
            self.counters[1] += self.run_cycles
            ctx.set(self.dut.counters, self.counters)
            ctx.set(self.dut.status, 0b110 if self.fail else 0b010)


def make_host(seed, *, word_bits=64, chunk=48, run_cycles=300, fail=False, constant=0,
              timeout_cycles=1 << 16, addr_bits=24):
    rng = random.Random(seed)
    dut = UARTBridge(COUNTERS, word_bits, addr_bits, divisor=DIVISOR)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    dram = DictDRAM(dut, rng, max_stall=4, max_latency=4)
    dram.add_to(sim)
    transport = SimTransport(sim, dut.rx, dut.tx, DIVISOR, timeout_cycles=timeout_cycles,
                             rng=rng, max_gap=2)
    accel = FakeAccelerator(dut, run_cycles, fail=fail, constant=constant)

    async def accelerator(ctx):
        await accel.run(ctx, transport.line)

    sim.add_testbench(accelerator, background=True)
    host = Host(transport, word_bits=word_bits, chunk=chunk)
    return host, dram, accel, rng


def test_write_read_round_trip(seed):
    """A few hundred random words written in chunks come back bit for bit and sit in DRAM."""
    host, dram, _, rng = make_host(seed, chunk=48)
    n = 200
    addr = rng.randrange(1 << 20)
    words = [rng.getrandbits(64) for _ in range(n)]
    words[:2] = [0, (1 << 64) - 1]
    host.write_words(addr, words)
    assert [dram.words[addr + k] for k in range(n)] == words
    assert dram.writes == list(range(addr, addr + n))
    assert host.read_words(addr, n) == words
    assert dram.reads == list(range(addr, addr + n))
    assert host.transport.line.framing_errors == 0


def test_narrow_words_and_odd_chunks(seed):
    """24-bit words, chunks of 7: reads that start inside a written block are exact."""
    host, dram, _, rng = make_host(seed, word_bits=24, chunk=7)
    words = [rng.getrandbits(24) for _ in range(40)]
    host.write_words(1000, words)
    assert host.read_words(1013, 20) == words[13:33]
    assert host.read_words(1000, 0) == []


def test_icebreaker_address_width(seed):
    """With the icebreaker preset's DRAM address width, addresses wrap modulo its DRAM."""
    bits = ICEBREAKER.dram_addr_bits
    size = 1 << bits
    host, dram, _, rng = make_host(seed, addr_bits=bits, chunk=16)
    n = 40
    addr = size - rng.randint(1, n - 1)
    words = [rng.getrandbits(64) for _ in range(n)]
    host.write_words(addr, words)
    assert dram.writes == [(addr + k) % size for k in range(n)]
    assert host.read_words(addr, n) == words
    assert host.read_words(0, n - (size - addr)) == words[size - addr:]


def test_run_and_counters(seed):
    """start, wait_done, counters: done comes no sooner than the run's cycles after start."""
    rng = random.Random(seed)
    run_cycles = rng.randint(200, 2000)
    constant = rng.getrandbits(64)
    host, _, accel, _ = make_host(seed, run_cycles=run_cycles, constant=constant)
    assert host.status() == Status(0)
    assert host.counters() == [0, 0, constant, 0]
    host.start()
    first = host.status()
    assert first.busy and not first.done
    status = host.wait_done(timeout=60, poll=0)
    assert status.done and not status.busy and not status.error
    assert host.transport.cycles >= accel.started_at[0] + run_cycles
    assert host.counters() == [1, run_cycles, constant, 0]
    host.start()
    host.wait_done(timeout=60, poll=0)
    assert host.counters() == [2, 2 * run_cycles, constant, 0]
    assert len(accel.started_at) == 2


def test_wait_done_reports_error_and_timeout(seed):
    host, _, accel, _ = make_host(seed, run_cycles=50, fail=True)
    host.start()
    with pytest.raises(HostError, match="reports an error .status 0x06"):
        host.wait_done(timeout=60, poll=0)
    assert len(accel.started_at) == 1
    host, _, accel, _ = make_host(seed, run_cycles=10 ** 9)
    host.start()
    with pytest.raises(TimeoutError, match="not done after 0.2 s"):
        host.wait_done(timeout=0.2, poll=0)
    assert len(accel.started_at) == 1
    status = host.status()
    assert status.busy and not status.done


def test_transport_timeout_is_clear(seed):
    """A board that does not answer gives TimeoutError naming the missing bytes."""
    host, *_ = make_host(seed, timeout_cycles=2000)
    host.transport.write(bytes([0x02]))       # READ whose arguments never come
    sent = host.transport.cycles
    with pytest.raises(TimeoutError, match="0 of 8 bytes, then nothing for 2000 cycles") as info:
        host.transport.read(8)
    assert type(info.value) is TimeoutError
    assert host.transport.cycles - sent >= 2000, "the read gave up before its timeout"
    assert host.transport.line.framing_errors == 0, "the silence is the board's, not garbled frames"


def test_nak_raises(seed):
    """A NAK where an ACK is expected raises HostError."""
    host, *_ = make_host(seed)
    host.transport.write(bytes([0xEE]))       # unknown command: the bridge answers NAK
    with pytest.raises(HostError, match="NAK"):
        host._expect_ack("test")
    host.write_words(3, [5])                  # and the link still works
    assert host.read_words(3, 1) == [5]


class FakePort:
    """A pyserial-like port: reads return at most ``burst`` bytes, and b"" when it has none
    (pyserial's timeout)."""

    port, timeout = "/dev/fake", 0.5

    def __init__(self, answer, burst=1 << 30):
        self.answer, self.burst, self.written = answer, burst, b""

    def write(self, data):
        self.written += data

    def flush(self):
        pass

    def read(self, n):
        n = min(n, self.burst)
        data, self.answer = self.answer[:n], self.answer[n:]
        return data


def test_host_checks_arguments():
    host = Host(SerialTransport(FakePort(b"")))
    with pytest.raises(ValueError, match="word 1 must be an integer in 0..18446744073709551615"):
        host.write_words(0, [1, 1 << 64])
    assert host.transport.port.written == b""
    with pytest.raises(ValueError, match="32-bit address limit"):
        host.read_words((1 << 32) - 2, 3)
    with pytest.raises(ValueError, match="Host.chunk must be at most 65535, not 65536"):
        Host(host.transport, chunk=1 << 16)
    with pytest.raises(ValueError, match="Host.word_bits must be a multiple of 8, not 12"):
        Host(host.transport, word_bits=12)


def test_serial_transport(seed):
    """Over a pyserial-like port: answers split over many reads are joined; silence is a
    TimeoutError naming the port and the missing bytes."""
    rng = random.Random(seed)
    words = [rng.getrandbits(64) for _ in range(5)]
    answer = b"".join(w.to_bytes(8, "little") for w in words) + b"\x06\x02" + bytes(9)
    transport = SerialTransport(FakePort(answer, burst=3))
    host = Host(transport)
    assert host.read_words(0x01020304, 5) == words
    assert transport.port.written == b"\x02\x04\x03\x02\x01\x05\x00"
    host.start()
    assert transport.port.written[-1:] == b"\x03"
    with pytest.raises(TimeoutError, match="/dev/fake: 9 of 16 bytes, then nothing for 0.5 s"):
        host.counters()


def test_open_serial_loopback():
    """open_serial through pyserial's loop:// port, which echoes: STATUS reads back its own
    command byte (0x04, error bit set); COUNTERS reads 5 as the count, then times out."""
    host = Host.open_serial("loop://", 115200, timeout=0.05)
    assert host.status() == Status(0x04)
    with pytest.raises(TimeoutError, match="loop://: 0 of 40 bytes, then nothing for 0.05 s"):
        host.counters()
    host.transport.close()
