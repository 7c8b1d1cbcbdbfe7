"""UARTRx and UARTTx in the Amaranth simulator against a bit-level 8N1 model written here.

The model is a list of line levels, one per clock cycle: frames are built
from the definition of 8N1 (start 0, data LSB first, stop 1), and a
transmitted waveform is decoded by checking that every bit holds its level
for exactly ``divisor`` cycles.
"""

import gc
import random
import warnings

import pytest
from amaranth import Module
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ommatidia.hw.uart import UARTRx, UARTTx, uart_divisor


def frame_levels(byte, divisor, *, stop=1, stretch=0.0):
    """Line levels of one frame; ``stretch`` makes every bit ``(1 + stretch)`` times longer."""
    bits = [0] + [(byte >> k) & 1 for k in range(8)] + [stop]
    edges = [round(k * divisor * (1 + stretch)) for k in range(11)]
    return [level for k, level in enumerate(bits) for _ in range(edges[k + 1] - edges[k])]


def line_waveform(frames, divisor, rng, *, max_gap, stretch=0.0):
    """Idle, then each ``(byte, stop)`` frame followed by 0..max_gap idle cycles."""
    wave = [1] * rng.randint(3, 10)
    for byte, stop in frames:
        wave += frame_levels(byte, divisor, stop=stop, stretch=stretch)
        wave += [1] * rng.randint(0, max_gap)
    return wave + [1] * (3 * divisor)


def run_rx(divisor, wave, rng, *, take=True, stall=0.3):
    """Play ``wave`` on UARTRx.rx; return the bytes taken and the cycles of each pulse."""
    dut = UARTRx(divisor)
    got, framing, overrun = [], [], []

    async def bench(ctx):
        for cycle, level in enumerate(wave):
            ctx.set(dut.rx, level)
            ready = take and rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
            if ctx.get(dut.framing_error):
                framing.append(cycle)
            if ctx.get(dut.overrun):
                overrun.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, framing, overrun


def decode_strict(wave, divisor):
    """Frames of a transmitted waveform: (start cycle, byte); every bit must last ``divisor``."""
    frames, t = [], 0
    while t < len(wave):
        if wave[t]:
            t += 1
            continue
        assert t + 10 * divisor <= len(wave), f"frame at cycle {t} is cut off"
        levels = []
        for k in range(10):
            bit = wave[t + k * divisor:t + (k + 1) * divisor]
            assert len(set(bit)) == 1, f"bit {k} of the frame at cycle {t} is not steady: {bit}"
            levels.append(bit[0])
        assert levels[0] == 0 and levels[9] == 1, f"bad start/stop bits at cycle {t}: {levels}"
        frames.append((t, sum(b << k for k, b in enumerate(levels[1:9]))))
        t += 10 * divisor
    return frames


@pytest.mark.parametrize("run", range(3))
def test_rx_against_model(seed, run):
    """Random bytes with random gaps (back to back included) arrive intact, in order."""
    rng = random.Random(seed + run)
    divisor = rng.randint(4, 16)
    data = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]
    wave = line_waveform([(b, 1) for b in data], divisor, rng, max_gap=2 * divisor)
    got, framing, overrun = run_rx(divisor, wave, rng)
    assert got == data, f"divisor {divisor}"
    assert framing == [] and overrun == []


@pytest.mark.parametrize("stretch", [-0.02, 0.02])
def test_rx_tolerates_baud_error(seed, stretch):
    """Mid-bit sampling takes frames whose bits are 2 % too short or too long."""
    rng = random.Random(seed)
    divisor = rng.randint(12, 16)
    data = [rng.randrange(256) for _ in range(20)]
    wave = line_waveform([(b, 1) for b in data], divisor, rng, max_gap=0, stretch=stretch)
    got, framing, _ = run_rx(divisor, wave, rng)
    assert got == data and framing == []


def test_rx_framing_error_and_break(seed):
    """A frame with a 0 stop bit is dropped with one pulse; a break is one error; then the
    receiver recovers."""
    rng = random.Random(seed)
    divisor = rng.randint(4, 16)
    frames = [(rng.randrange(256), rng.random() >= 0.3) for _ in range(30)]
    wave = []
    for byte, stop in frames:
        wave += frame_levels(byte, divisor, stop=int(stop))
        # after a bad stop bit the line must rise before the next start bit
        wave += [1] * (rng.randint(1, divisor) if not stop else rng.randint(0, divisor))
    wave = [1] * 5 + wave + [0] * (25 * divisor) + [1] * 3
    tail = rng.randrange(256)
    wave += frame_levels(tail, divisor) + [1] * (3 * divisor)
    got, framing, overrun = run_rx(divisor, wave, rng)
    assert got == [b for b, stop in frames if stop] + [tail]
    assert len(framing) == sum(not stop for _, stop in frames) + 1
    assert overrun == []


def test_rx_glitch_ignored(seed):
    """A low pulse shorter than half a bit is not a start bit."""
    rng = random.Random(seed)
    divisor = rng.randint(6, 16)
    byte = rng.randrange(256)
    glitch = [1] * 5 + [0] * (divisor // 2 - 2) + [1] * (2 * divisor)
    got, framing, _ = run_rx(divisor, glitch + frame_levels(byte, divisor) + [1] * 3 * divisor,
                             rng)
    assert got == [byte] and framing == []


def test_rx_overrun(seed):
    """A byte completing while the previous one waits is dropped with an overrun pulse."""
    rng = random.Random(seed)
    divisor = rng.randint(4, 16)
    data = [rng.randrange(256) for _ in range(3)]
    wave = line_waveform([(b, 1) for b in data], divisor, rng, max_gap=divisor)
    dut = UARTRx(divisor)
    overruns = 0

    async def bench(ctx):
        nonlocal overruns
        for level in wave:
            ctx.set(dut.rx, level)
            overruns += ctx.get(dut.overrun)
            await ctx.tick()
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == data[0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert overruns == 2


def run_tx(divisor, data, rng, *, idle):
    """Send ``data`` through UARTTx with random idle; return the waveform and acceptance cycles."""
    dut = UARTTx(divisor)
    wave, accepted = [], []

    async def bench(ctx):
        cycle, k = 0, 0
        limit = 10 * divisor * len(data) * 3 + 200
        while k < len(data) or cycle < (accepted[-1] if accepted else 0) + 12 * divisor:
            offer = k < len(data) and rng.random() >= idle
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, data[k])
            if offer and ctx.get(dut.i.ready):
                accepted.append(cycle)
                k += 1
            wave.append(ctx.get(dut.tx))
            await ctx.tick()
            cycle += 1
            assert cycle < limit, "transmitter hangs"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return wave, accepted


@pytest.mark.parametrize("idle", [0.0, 0.9])
def test_tx_against_model(seed, idle):
    """Frames decode exactly; each starts the cycle after its byte is taken; no gap back to back."""
    rng = random.Random(seed)
    divisor = rng.randint(4, 16)
    data = [rng.randrange(256) for _ in range(30)]
    wave, accepted = run_tx(divisor, data, rng, idle=idle)
    frames = decode_strict(wave, divisor)
    assert [b for _, b in frames] == data, f"divisor {divisor}"
    assert [t for t, _ in frames] == [c + 1 for c in accepted]
    if idle == 0.0:
        assert [t for t, _ in frames] == [frames[0][0] + 10 * divisor * k for k in range(30)]


def test_round_trip(seed):
    """UARTTx into UARTRx: random bytes with random idle arrive unchanged."""
    rng = random.Random(seed)
    divisor = rng.randint(4, 16)
    data = [rng.randrange(256) for _ in range(40)]
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def send(ctx):
        for byte in data:
            while rng.random() < 0.5:
                await ctx.tick()
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(rx.o.ready, 1)
        for _ in data:
            payload, = await ctx.tick().sample(rx.o.payload).until(rx.o.valid)
            got.append(payload)
            assert not ctx.get(rx.framing_error)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    assert got == data, f"divisor {divisor}"


def test_divisor_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        for cls in (UARTRx, UARTTx):
            with pytest.raises(ValueError, match="divisor must be at least 4, not 3"):
                cls(3)
            with pytest.raises(ValueError, match="divisor must be an integer"):
                cls(4.0)
        gc.collect()
    assert uart_divisor(12e6, 115200) == 104            # 12e6 / 115200 = 104.17
    assert uart_divisor(48e6, 3_000_000) == 16
    with pytest.raises(ValueError, match="at least 4 clock cycles per bit"):
        uart_divisor(12e6, 4_000_000)                   # 3 cycles per bit
    with pytest.raises(ValueError, match="4.0 % off"):
        uart_divisor(12e6, 2_500_000)                   # 4.8 -> 5 cycles: 2.4 MBd
