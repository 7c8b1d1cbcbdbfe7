"""DMA in and out of the GLB in the Amaranth simulator: raw words and RLC-coded activations.

A Python DRAM answers read requests in order with random stalls on both
streams; the GLB side takes writes with random back-pressure into a model
memory honouring byte masks. RLC streams come from the reference encoder
`ommatidia.gen.rlc.encode`; the GLB must then hold the values packed in
activation slots, with the bytes after the last value untouched.
"""

import random
from collections import deque
from dataclasses import replace

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from ommatidia.gen.config import TINY
from ommatidia.gen.rlc import encode
from ommatidia.hw.dma import DMAIn, DMAOut
from ommatidia.hw.glb import GLB, slot_bits
from ommatidia.sim.array_model import random_values
from ommatidia.sim.golden import output_stage
from ommatidia.sim.streams import StreamSender


def run_dma(cfg, dram, glb, cmds, rng, stall=0.3):
    dut = DMAIn(cfg)
    pending = deque()
    state = {"errors": []}

    async def host(ctx):
        tx = StreamSender(dut.cmd)
        for cmd in cmds:
            await tx.send(ctx, cmd)
            await ctx.tick()
            cycles = 0
            while ctx.get(dut.busy):
                await ctx.tick()
                cycles += 1
                assert cycles < 5000, f"DMA still busy after 5000 cycles on {cmd}"
            state["errors"].append(ctx.get(dut.error))
        state["done"] = True

    async def requests(ctx):
        r = random.Random(rng.random())
        while "done" not in state:
            ready = r.random() >= stall
            ctx.set(dut.dram_addr.ready, ready)
            _, _, valid, addr = await ctx.tick().sample(dut.dram_addr.valid,
                                                        dut.dram_addr.payload)
            if ready and valid:
                pending.append(addr)

    async def responses(ctx):
        r = random.Random(rng.random())
        while "done" not in state:
            offer = bool(pending) and r.random() >= stall
            ctx.set(dut.dram_data.valid, offer)
            if offer:
                ctx.set(dut.dram_data.payload, dram[pending[0]])
            _, _, ready = await ctx.tick().sample(dut.dram_data.ready)
            if offer and ready:
                pending.popleft()

    async def writes(ctx):
        r = random.Random(rng.random())
        nbytes = cfg.dram_bits // 8
        while "done" not in state:
            ready = r.random() >= stall
            ctx.set(dut.glb.ready, ready)
            _, _, valid, w = await ctx.tick().sample(dut.glb.valid, dut.glb.payload)
            if ready and valid:
                mask = sum(0xff << (8 * k) for k in range(nbytes) if w.mask >> k & 1)
                glb[w.addr] = (glb.get(w.addr, 0) & ~mask) | (w.data & mask)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(requests)
    sim.add_testbench(responses)
    sim.add_testbench(writes)
    sim.run()
    assert state.get("done")
    return state["errors"]


def packed(values, cfg):
    slot = slot_bits(cfg.pe.act_bits, cfg.dram_bits)
    per = cfg.dram_bits // slot
    out = []
    for k in range(0, len(values), per):
        out.append(sum((int(v) & ((1 << slot) - 1)) << (slot * j)
                       for j, v in enumerate(values[k:k + per])))
    return out


def test_raw_and_rlc_commands(seed):
    """A raw copy, two RLC streams (one with two spare words after its term word) and a raw
    copy again: the GLB holds the DRAM words and the decoded values, packed."""
    cfg = TINY
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    dram = {a: rng.getrandbits(64) for a in range(0, 40)}
    glb = {a: rng.getrandbits(64) for a in range(0, 200)}
    before = dict(glb)
    streams = []
    base = 100
    for n, zeros in ((37, 0.7), (61, 0.2)):
        values = random_values(nrng, cfg.pe.act_bits, (n,), zeros, False)
        words = encode(values, cfg.rlc)
        for k, word in enumerate(words):
            dram[base + k] = word
        streams.append((base, n, values, len(words)))
        base += len(words) + 2
    dram.update({a: 0 for a in range(base - 2, base)})
    cmds = [{"dram": 3, "glb": 10, "words": 9, "n": 0, "rlc": 0},
            {"dram": streams[0][0], "glb": 50, "words": streams[0][3], "n": 37, "rlc": 1},
            {"dram": streams[1][0], "glb": 70, "words": streams[1][3] + 2, "n": 61, "rlc": 1},
            {"dram": 20, "glb": 0, "words": 5, "n": 0, "rlc": 0}]
    errors = run_dma(cfg, dram, glb, cmds, rng)
    assert errors == [0, 0, 0, 0]
    want = dict(before)
    want.update({10 + k: dram[3 + k] for k in range(9)})
    for glb_base, (_, n, values, _) in zip((50, 70), streams):
        words = packed(values, cfg)
        tail = n % 8
        for k, word in enumerate(words):
            if k == len(words) - 1 and tail:
                keep = ((1 << 64) - 1) ^ ((1 << (8 * tail)) - 1)
                word |= before[glb_base + k] & keep
            want[glb_base + k] = word
    want.update({k: dram[20 + k] for k in range(5)})
    assert glb == want


def test_malformed_stream_raises_error(seed):
    """A stream missing its term word: ``error`` after the command, and the DMA finishes."""
    cfg = TINY
    rng = random.Random(seed)
    values = random_values(np.random.default_rng(seed), 8, (20,), 0.3, False)
    words = encode(values, cfg.rlc)
    words[-1] &= (1 << 63) - 1
    dram = {k: w for k, w in enumerate(words)}
    dram[len(words)] = 1 << 63
    errors = run_dma(cfg, dram, {}, [{"dram": 0, "glb": 0, "words": len(words) + 1, "n": 20,
                                      "rlc": 1}], rng, stall=0.2)
    assert errors == [1]


class OutHarness(Elaboratable):
    def __init__(self, cfg):
        self.glb, self.dma = GLB(cfg, readers=1, writers=1), DMAOut(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.glb, m.submodules.dma = self.glb, self.dma
        wiring.connect(m, self.dma.glb, self.glb.read[0])
        return m


@pytest.mark.parametrize("codec", [True, False], ids=["rlc", "packed"])
def test_dma_out_stage_and_rlc(seed, codec):
    """Psums (24-bit, in 32-bit slots) through the output stage (a bias per filter of the
    ``[e][f][k]`` layout, wrapping, ReLU, rounding shift, saturation), RLC-coded to DRAM
    with random back-pressure: the words are `encode` of `golden.output_stage`, or without
    the codec those activations packed eight to a word; then a raw copy."""
    cfg = replace(TINY, rlc_codec=codec)
    rng = random.Random(seed)
    bits = cfg.pe.psum_bits
    psums = [rng.choice([0, 0, rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1)),
                         rng.randrange(-3000, 3000)]) for _ in range(45)]
    # Packed, the last DRAM word holds activations 40..44; a negative first one (filter 0 of
    # the stage without ReLU, a small bias) shows its unused slots are zeroed, not sign-filled.
    psums[40] = -(1 << (bits - 2))
    words = {}
    for j, v in enumerate(psums):
        words[20 + j // 2] = words.get(20 + j // 2, 0) | ((v & 0xffffffff) << (32 * (j % 2)))
    raw = {a: rng.getrandbits(64) for a in range(60, 67)}
    words.update(raw)
    stages = [{"shift": rng.randrange(0, 12), "relu": relu, "p": p}
              for relu, p in ((1, 3), (0, 5))]
    biases = [[rng.choice([rng.randrange(-5000, 5000), (1 << (bits - 1)) - 1])
               for _ in range(st["p"])] for st in stages]
    biases[1][0] = rng.randrange(-5000, 5000)
    cmds = [{"glb": 20, "dram": 1000, "n": 45, "rlc": 1, "stage": stages[0]},
            {"glb": 20, "dram": 2000, "n": 45, "rlc": 1, "stage": stages[1]},
            {"glb": 60, "dram": 3000, "n": 7, "rlc": 0, "stage": stages[0]}]
    dut = OutHarness(cfg)
    dram, counts = {}, []

    async def host(ctx):
        tx = StreamSender(dut.glb.write[0])
        for a, w in words.items():
            await tx.send(ctx, {"addr": a, "data": w, "mask": 0xff})
        ctx.set(dut.glb.write[0].valid, 0)
        ctx.set(dut.dma.dram.ready, 0)
        r = random.Random(rng.random())
        for cmd, table in zip(cmds, biases + [[]]):
            for index, value in enumerate(table):
                await StreamSender(dut.dma.bias_w).send(ctx, {"index": index, "value": value})
            await StreamSender(dut.dma.cmd).send(ctx, cmd)
            cycles = 0
            while True:
                ready = r.random() >= 0.3
                ctx.set(dut.dma.dram.ready, ready)
                _, _, valid, w, busy = await ctx.tick().sample(dut.dma.dram.valid,
                                                               dut.dma.dram.payload, dut.dma.busy)
                if ready and valid:
                    dram[w.addr] = w.data
                cycles += 1
                assert cycles < 5000
                if not busy and not valid:
                    break
            counts.append(ctx.get(dut.dma.words))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    want = {}
    for base, stage, table in zip((1000, 2000), stages, biases):
        p = stage["p"]
        grid = np.array(psums + [0] * (-len(psums) % p)).reshape(-1, p).T[None, :, :]
        values = output_stage(grid, bias=table, relu=bool(stage["relu"]), shift=stage["shift"],
                              act_bits=cfg.pe.act_bits, psum_bits=bits)[0].T.reshape(-1)
        values = values[:len(psums)]
        coded = encode(values, cfg.rlc) if codec else packed(values, cfg)
        want.update({base + k: w for k, w in enumerate(coded)})
    want.update({3000 + k: raw[60 + k] for k in range(7)})
    assert dram == want
    assert counts[2] == 7 and counts[0] == len([a for a in want if 1000 <= a < 2000])


@pytest.mark.parametrize("rlc", [1, 0], ids=["rlc", "raw"])
def test_dma_out_one_value_a_cycle(rlc):
    """With the DRAM always taking: the command is taken at cycle 0, the first GLB word is
    asked for at 1 and comes at 2, so its first psum goes to the encoder at 3 and the 19
    psums of 10 words one a cycle after (3 .. 21, no gap between words); the encoder's last
    word leaves its register at 22 and the DMA's at 23, so ``busy`` falls at 24. Raw, the
    7 words go out of the DMA's write register at 4 .. 10, ``busy`` falls at 11."""
    cfg = TINY
    dut = OutHarness(cfg)
    n = 19 if rlc else 7
    fires, writes = [], []
    done = []

    async def host(ctx):
        tx = StreamSender(dut.glb.write[0])
        for a in range(10):
            await tx.send(ctx, {"addr": 40 + a, "data": (a + 1) * 0x0000_0100_0000_0300,
                                "mask": 0xff})
        ctx.set(dut.glb.write[0].valid, 0)
        ctx.set(dut.dma.dram.ready, 1)
        ctx.set(dut.dma.cmd.valid, 1)
        ctx.set(dut.dma.cmd.payload, {"glb": 40, "dram": 500, "n": n, "rlc": rlc,
                                      "stage": {"shift": 0, "relu": 0, "p": 1}})
        enc = dut.dma._encoder
        for cycle in range(40):
            _, _, taken, fire, write, busy = await ctx.tick().sample(
                dut.dma.cmd.ready, enc.i.valid & enc.i.ready, dut.dma.dram.valid,
                dut.dma.busy)
            ctx.set(dut.dma.cmd.valid, 0)
            if taken and cycle == 0:
                done.append(0)
            if fire:
                fires.append(cycle)
            if write:
                writes.append(cycle)
            if cycle and not busy and not done[1:]:
                done.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    if rlc:
        assert fires == list(range(3, 22))
        assert writes[-1] == 23 and done == [0, 24]
    else:
        assert fires == [] and writes == list(range(4, 11)) and done == [0, 11]
