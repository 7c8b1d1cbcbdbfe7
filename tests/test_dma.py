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

from ommatidia.gen.config import PRESETS, TINY
from ommatidia.gen.model.dram import SYSTEM_DRAM, DramTiming
from ommatidia.gen.model.machine import Machine
from ommatidia.gen.program import _packer
from ommatidia.gen.rlc import encode, pack
from ommatidia.hw.dma import DMAIn, DMAOut, dma_cmd_layout
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


@pytest.mark.parametrize("codec, values", [(True, 1), (True, 2), (False, 1)],
                         ids=["rlc", "rlc-two", "packed"])
def test_dma_out_stage_and_rlc(seed, codec, values):
    """Psums (24-bit, in 32-bit slots) through the output stage (a bias per filter of the
    ``[e][f][k]`` layout, wrapping, ReLU, rounding shift, saturation), RLC-coded to DRAM
    with random back-pressure: the words are `encode` of `golden.output_stage`, or without
    the codec those activations packed eight to a word; then a raw copy. With
    ``dma_out_values`` = 2 a GLB word's two psums a cycle (odd ``p``: a word's two psums
    take filters ``p - 1`` and 0 in turn)."""
    cfg = replace(TINY, rlc_codec=codec, dma_out_values=values)
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


async def _start_dma_out(ctx, dut, n, rlc):
    """GLB words 40 + a written with psums 0x300 * (a + 1) and 0x100 * (a + 1), a < 10,
    then a ``DMA_OUT`` of ``n`` psums from word 40 to DRAM word 500 offered, the DRAM
    always ready."""
    tx = StreamSender(dut.glb.write[0])
    for a in range(10):
        await tx.send(ctx, {"addr": 40 + a, "data": (a + 1) * 0x0000_0100_0000_0300,
                            "mask": 0xff})
    ctx.set(dut.glb.write[0].valid, 0)
    ctx.set(dut.dma.dram.ready, 1)
    ctx.set(dut.dma.cmd.valid, 1)
    ctx.set(dut.dma.cmd.payload, {"glb": 40, "dram": 500, "n": n, "rlc": rlc,
                                  "stage": {"shift": 0, "relu": 0, "p": 1}})


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
        await _start_dma_out(ctx, dut, n, rlc)
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


@pytest.mark.parametrize("n, done", [(19, 15), (20, 15), (16, 14)])
def test_dma_out_two_values_a_cycle(n, done):
    """`dma_out_values` = 2, with the DRAM always taking, psums all non-zero (a pair each,
    3 to an RLC word): taken at 0, the command's GLB words go to the encoder one a cycle
    from 3, ``ceil(n / 2)`` of them; the encoder's last word leaves the DMA's register two
    cycles after the last, ``busy`` falls the cycle after. 19 psums: 10 words (3 .. 12),
    the last with one psum; 20: 10 words, the last transfer's pairs 19 and 20 go to a word
    of its own; 16: 8 words (3 .. 10), the last transfer's pairs 15 and 16 complete word 5
    and start word 6, which goes out a cycle after (words at 12 and 13, ``busy`` falls at
    14)."""
    cfg = replace(TINY, dma_out_values=2)
    dut = OutHarness(cfg)
    fires, writes, got = [], [], []

    async def host(ctx):
        await _start_dma_out(ctx, dut, n, 1)
        enc = dut.dma._encoder
        for cycle in range(40):
            _, _, taken, fire, write, w, busy = await ctx.tick().sample(
                dut.dma.cmd.ready, enc.i.valid & enc.i.ready, dut.dma.dram.valid,
                dut.dma.dram.payload, dut.dma.busy)
            ctx.set(dut.dma.cmd.valid, 0)
            assert cycle or taken
            if fire:
                fires.append(cycle)
            if write:
                writes.append(cycle)
                got.append(w.data)
            if cycle and not busy:
                assert done == cycle
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    words = -(-n // 2)
    assert fires == list(range(3, 3 + words))
    assert writes[-1] == done - 1 and got == encode([127] * n, cfg.rlc)
    if n == 16:
        assert writes[-2:] == [12, 13]
    assert model_out_cycles(cfg, {"glb": 40, "dram": 500, "n": n, "rlc": 1,
                                  "stage": {"shift": 0, "relu": 0, "p": 1}}) == 3 + done


def time_dma(cfg, dram, cmd, latency=1, interval=1):
    """One `DMAIn` command taken at cycle 0 from an always-ready GLB and a DRAM that
    answers request ``k`` (asked for at ``a_k``) from cycle ``max(a_k + latency, answer of
    k - 1 + interval)``, as `ommatidia.gen.model.dram.DramTiming` says. Returns the cycle
    ``busy`` falls, the GLB writes ``(cycle, addr, data, mask)`` and the cycles a pair is
    taken from the decoder."""
    dut = DMAIn(cfg)
    dec = dut._decoder
    got = {"writes": [], "pairs": []}

    async def bench(ctx):
        ctx.set(dut.glb.ready, 1)
        ctx.set(dut.dram_addr.ready, 1)
        ctx.set(dut.cmd.payload, cmd)
        ctx.set(dut.cmd.valid, 1)
        answers = deque()
        last = None
        for cycle in range(500):
            offer = bool(answers) and answers[0][0] <= cycle
            ctx.set(dut.dram_data.valid, offer)
            if offer:
                ctx.set(dut.dram_data.payload, dram[answers[0][1]])
            _, _, ask, addr, taken, write, w, pair, busy = await ctx.tick().sample(
                dut.dram_addr.valid, dut.dram_addr.payload, dut.dram_data.ready,
                dut.glb.valid, dut.glb.payload, dec.o.valid & dec.o.ready, dut.busy)
            ctx.set(dut.cmd.valid, 0)
            if ask:
                last = max(cycle + latency, last + interval) if answers or last else \
                    cycle + latency
                answers.append((last, addr))
            if offer and taken:
                answers.popleft()
            if write:
                got["writes"].append((cycle, w.addr, w.data, w.mask))
            if pair:
                got["pairs"].append(cycle)
            if cycle and not busy:
                got["done"] = cycle
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got["done"], got["writes"], got["pairs"]


def word(*slots):
    """A GLB word of 8-bit activation slots, slot 0 first."""
    return sum((v & 0xff) << (8 * k) for k, v in enumerate(slots))


def test_dma_in_places_a_pair_a_cycle():
    """Pairs (0, 1) (2, 2) (5, 3) | (20, 4) (1, 5) (0, 6) | (2, 7) term: 37 values, 8 to a
    GLB word. Taken at 0, the command asks for word 0 at 1, the decoder loads it at 2 and
    offers a pair a cycle from 3: (0, 1) to slot 0 at 3, (2, 2) to slot 3 at 4, (5, 3)'s
    run crosses a word boundary: GLB word 0 is written (out of the DMA's register at 6)
    as the 3 goes to slot 1 of word 1, at 5. (20, 4)'s run crosses two: word 1 at 6, the
    zeros of word 2 at 7 with the 4 to slot 6 of word 3. (1, 5) crosses one: word 3 and the
    5 to slot 0 of word 4 at 8; (0, 6) at 9; (2, 7), the last, to slot 4 at 10, written
    with the bytes of slots 0..4 only (11). The decoder checks the term word at 11,
    ``busy`` falls at 12: 8 cycles of pairs (values one a cycle took 37) and 4, what
    the model counts."""
    cfg = TINY
    pairs = [(0, 1), (2, 2), (5, 3), (20, 4), (1, 5), (0, 6), (2, 7)]
    dram = dict(enumerate(pack(pairs, cfg.rlc), start=40))
    cmd = {"dram": 40, "glb": 100, "words": 3, "n": 37, "rlc": 1}
    done, writes, taken = time_dma(cfg, dram, cmd)
    assert taken == [3, 4, 5, 7, 8, 9, 10] and done == 12
    assert writes == [(6, 100, word(1, 0, 0, 2), 0xff), (7, 101, word(0, 3), 0xff),
                      (8, 102, 0, 0xff), (9, 103, word(0, 0, 0, 0, 0, 0, 4), 0xff),
                      (11, 104, word(5, 6, 0, 0, 7), 0x1f)]
    assert model_cycles(cfg, dram, cmd) == 3 + done


def test_dma_in_places_a_coded_word_a_cycle():
    """`test_dma_in_places_a_pair_a_cycle`'s stream with a coded word's pairs a cycle
    (`ArrayConfig.rlc_decode_words`): word 0's three pairs at 3, completing GLB word 0
    (written at 4) with the 3 in slot 1 of word 1; word 1 at 4-6: (20, 4)'s run writes
    word 1 at 4 and the zero word 2 at 5 with the 4 to slot 6 of word 3; (1, 5) would
    complete word 3, a second write, so it waits: at 6 it writes word 3 and (0, 6) joins
    it in word 4; word 2's (2, 7) ends the stream at 7. ``busy`` falls at 9: 5 cycles
    of words (8 of pairs), a cycle per GLB word written."""
    cfg = replace(TINY, rlc_decode_words=True)
    pairs = [(0, 1), (2, 2), (5, 3), (20, 4), (1, 5), (0, 6), (2, 7)]
    dram = dict(enumerate(pack(pairs, cfg.rlc), start=40))
    cmd = {"dram": 40, "glb": 100, "words": 3, "n": 37, "rlc": 1}
    done, writes, taken = time_dma(cfg, dram, cmd)
    assert taken == [3, 6, 7] and done == 9
    assert writes == [(4, 100, word(1, 0, 0, 2), 0xff), (5, 101, word(0, 3), 0xff),
                      (6, 102, 0, 0xff), (7, 103, word(0, 0, 0, 0, 0, 0, 4), 0xff),
                      (8, 104, word(5, 6, 0, 0, 7), 0x1f)]
    assert model_cycles(cfg, dram, cmd) == 3 + done


def test_dma_in_last_pair_crossing_words():
    """One word, (15, 9) (10, -1), 27 values: (15, 9) from slot 0 puts its 9 in slot 7 of
    the next word, so the zero word 0 goes at 3 and word 1 with the 9 at 4; the last pair
    (10, -1) crosses a word and ends the stream: the zero word 2 at 5, then the -1 in
    slot 2 of word 3, written with 3 bytes, at 6; ``busy`` falls at 8."""
    cfg = TINY
    dram = dict(enumerate(pack([(15, 9), (10, -1)], cfg.rlc)))
    cmd = {"dram": 0, "glb": 7, "words": 1, "n": 27, "rlc": 1}
    done, writes, taken = time_dma(cfg, dram, cmd)
    assert taken == [4, 6] and done == 8
    assert writes == [(4, 7, 0, 0xff), (5, 8, word(0, 0, 0, 0, 0, 0, 0, 9), 0xff),
                      (6, 9, 0, 0xff), (7, 10, word(0, 0, -1), 0x07)]
    assert model_cycles(cfg, dram, cmd) == 3 + done


def test_dma_in_waits_for_slow_dram_words():
    """The first stream with a word every 4 cycles: word 1 comes at 6, after (5, 3) was
    taken at 5 (the decoder loads it at 6, one cycle later than with the DRAM keeping up),
    word 2 at 10, when (0, 6) would be taken anyway: ``busy`` falls at 13; with a latency
    of 5 every word comes in time but the first, loaded at 6: 4 cycles later than at 1."""
    cfg = TINY
    pairs = [(0, 1), (2, 2), (5, 3), (20, 4), (1, 5), (0, 6), (2, 7)]
    dram = dict(enumerate(pack(pairs, cfg.rlc), start=40))
    cmd = {"dram": 40, "glb": 100, "words": 3, "n": 37, "rlc": 1}
    for latency, interval, want in ((1, 4, 13), (5, 1, 16)):
        done, writes, _ = time_dma(cfg, dram, cmd, latency, interval)
        assert done == want and len(writes) == 5
        assert model_cycles(cfg, dram, cmd, DramTiming(read_latency=latency,
                                                       read_interval=interval)) == 3 + done


@pytest.mark.parametrize("words", [False, True], ids=["pairs", "words"])
@pytest.mark.parametrize("preset", ["tiny", "eyeriss"])
def test_dma_in_cycles_match_the_model(preset, words, seed):
    """Random streams (0 to 95 % zeros, some with spare words after the term word that are
    read and dropped) on DRAMs of random latency and bandwidth: the GLB holds the values
    and the model's cycles (`ommatidia.gen.model.machine.Machine.dma_in`, 3 of them the
    controller's) are the DMA's; placing a pair a cycle or a coded word's pairs a cycle
    (`ArrayConfig.rlc_decode_words`)."""
    cfg = replace(PRESETS[preset], rlc_decode_words=words)
    rng = np.random.default_rng(seed)
    slot = slot_bits(cfg.pe.act_bits, cfg.dram_bits)
    for _ in range(12 if words else 6):
        n = int(rng.integers(1, 120))
        values = random_values(rng, cfg.pe.act_bits, (n,), rng.uniform(0, 0.95), False)
        coded = encode(values, cfg.rlc)
        spare = int(rng.integers(0, 3))
        dram = dict(enumerate(coded + [int(x) for x in rng.integers(0, 1 << 62, spare)]))
        cmd = {"dram": 0, "glb": 3, "words": len(dram), "n": n, "rlc": 1}
        timing = DramTiming(read_latency=int(rng.integers(1, 6)),
                            read_interval=int(rng.integers(1, 4)))
        done, writes, _ = time_dma(cfg, dram, cmd, timing.read_latency, timing.read_interval)
        glb = {}
        for _, addr, data, mask in writes:
            keep = sum(0xff << (8 * k) for k in range(cfg.dram_bits // 8) if mask >> k & 1)
            glb[addr] = glb.get(addr, 0) & ~keep | data & keep
        per = cfg.dram_bits // slot
        got = [(glb[3 + k // per] >> (slot * (k % per))) & ((1 << slot) - 1) for k in range(n)]
        assert got == [int(v) & ((1 << slot) - 1) for v in values]
        assert model_cycles(cfg, dram, cmd, timing) == 3 + done, f"{timing}, n = {n}"


def model_cycles(cfg, dram, cmd, timing=SYSTEM_DRAM):
    machine = Machine(cfg, dram, values=False, dram=timing)
    machine.set("dma_in", _packer(dma_cmd_layout(cfg))(cmd))
    return machine.dma_in()


def model_out_cycles(cfg, cmd):
    """The model's cycles of a ``DMA_OUT`` of ``cmd`` without values (psums taken
    non-zero)."""
    from ommatidia.hw.dma import dma_out_cmd_layout
    machine = Machine(cfg, {}, values=False)
    machine.set("dma_out", _packer(dma_out_cmd_layout(cfg))(cmd))
    return machine.dma_out()
