"""The pass engines on their own: a `SendEngine` or the `GONReceiver` on a `GLB`.

The testbench fills the GLB with random words, then checks a sender's
packets (with random back-pressure) against the loop nest, the tag table with
its repeat count and offsets, and the slot unpacking written out in Python;
and the receiver's masked writes against the same formula, with random idle
on the GON side (neighbouring slots must keep their old bits).
"""

import random

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from ommatidia.gen.config import TINY
from ommatidia.hw.engines import GONReceiver, SendEngine, tag_depth
from ommatidia.hw.glb import GLB, glb_words, slot_bits
from ommatidia.sim.streams import StreamReceiver, StreamSender

from helpers import read_word


class Harness(Elaboratable):
    """A GLB with ``engine`` as client 0 and free host clients after it."""

    def __init__(self, cfg, engine, reads: bool):
        self.glb = GLB(cfg, readers=2, writers=2)
        self.engine = engine
        self.reads = reads

    def elaborate(self, platform):
        m = Module()
        m.submodules.glb, m.submodules.engine = self.glb, self.engine
        if self.reads:
            wiring.connect(m, self.engine.glb, self.glb.read[0])
        else:
            wiring.connect(m, self.engine.glb, self.glb.write[0])
        return m


def element(words, ea, bits, slot, word_bits):
    per = word_bits // slot
    raw = (words[ea // per] >> (slot * (ea % per))) & ((1 << bits) - 1)
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def reference(desc, tags, words, bits, cfg):
    slot = slot_bits(bits, cfg.dram_bits)
    out, t, r = [], 0, 0
    c, s = desc["count"], desc["stride"]
    for i0 in range(c[0]):
        for i1 in range(c[1]):
            for i2 in range(c[2]):
                row, col, offset = tags[t]
                ea = desc["base"] + i0 * s[0] + i1 * s[1] + i2 * s[2] + offset
                out.append((element(words, ea, bits, slot, cfg.dram_bits), row, col))
                r += 1
                if r == desc["repeat"]:
                    r, t = 0, (t + 1) % len(tags)
    return out


def random_desc(rng, cfg, bits):
    per = cfg.dram_bits // slot_bits(bits, cfg.dram_bits)
    count = [rng.randint(1, 4) for _ in range(3)]
    stride = [rng.randint(0, 9) for _ in range(3)]
    ntags = rng.randint(1, tag_depth(cfg))
    tags = [(rng.randrange(1 << cfg.noc.row_id_bits), rng.randrange(1 << cfg.noc.col_id_bits),
             rng.randint(0, 40)) for _ in range(ntags)]
    span = sum((c - 1) * s for c, s in zip(count, stride)) + 40
    base = rng.randrange(glb_words(cfg) * per - span)
    return {"base": base, "count": count, "stride": stride, "repeat": rng.randint(1, 6),
            "tags": ntags}, tags


async def fill(ctx, glb, words):
    tx = StreamSender(glb.write[1])
    for a, w in enumerate(words):
        await tx.send(ctx, {"addr": a, "data": w, "mask": 0xff})


async def start_sender(ctx, eng, desc, tags):
    """Write a SendEngine's tag table, then start it on ``desc``."""
    tx = StreamSender(eng.tag_w)
    for j, (row, col, offset) in enumerate(tags):
        await tx.send(ctx, {"engine": 0, "index": j,
                            "entry": {"row": row, "col": col, "offset": offset}})
    ctx.set(eng.desc, desc)
    ctx.set(eng.start, 1)
    await ctx.tick()
    ctx.set(eng.start, 0)


@pytest.mark.parametrize("bits", [8, 16, 24])
def test_sender_walks_loops_tags_and_slots(bits, seed):
    """Three random descriptors in a row, random back-pressure: packets = the Python loop nest."""
    cfg = TINY
    rng = random.Random(seed)
    words = [rng.getrandbits(cfg.dram_bits) for _ in range(glb_words(cfg))]
    eng = SendEngine(cfg, bits)
    dut = Harness(cfg, eng, reads=True)
    runs = [random_desc(rng, cfg, bits) for _ in range(3)]
    got = []

    async def host(ctx):
        await fill(ctx, dut.glb, words)
        for desc, tags in runs:
            await start_sender(ctx, eng, desc, tags)
            rx = StreamReceiver(eng.o, random.Random(rng.random()), 0.3)
            n = reference(desc, tags, words, bits, cfg)
            items = []
            for _ in n:
                v = await rx.recv(ctx)
                items.append((v.data, v.row, v.col))
            await ctx.tick().repeat(5)
            assert not ctx.get(eng.busy) and not ctx.get(eng.o.valid), "extra packets"
            got.append(items)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    for (desc, tags), items in zip(runs, got):
        assert items == reference(desc, tags, words, bits, cfg), desc


def test_sender_throughput_and_zero_count():
    """Linear 8-bit elements without back-pressure: 8 packets per 9 cycles; a zero count
    sends nothing and is not busy."""
    cfg = TINY
    words = [random.Random(1).getrandbits(64) for _ in range(32)]
    eng = SendEngine(cfg, 8)
    dut = Harness(cfg, eng, reads=True)
    stats = {}

    async def host(ctx):
        await fill(ctx, dut.glb, words)
        await StreamSender(eng.tag_w).send(ctx, {"engine": 0, "index": 0,
                                                 "entry": {"row": 1, "col": 2, "offset": 0}})
        ctx.set(eng.desc, {"base": 0, "count": [0, 1, 1], "stride": [1, 1, 1],
                           "repeat": 1, "tags": 1})
        ctx.set(eng.start, 1)
        await ctx.tick()
        ctx.set(eng.start, 0)
        stats["zero_busy"] = ctx.get(eng.busy)
        ctx.set(eng.desc, {"base": 0, "count": [1, 1, 8 * 32], "stride": [0, 0, 1],
                           "repeat": 1, "tags": 1})
        ctx.set(eng.o.ready, 1)
        ctx.set(eng.start, 1)
        await ctx.tick()
        ctx.set(eng.start, 0)
        cycles = sent = 0
        while ctx.get(eng.busy):
            _, _, valid = await ctx.tick().sample(eng.o.valid)
            sent += valid
            cycles += 1
        stats["sent"], stats["cycles"] = sent, cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert stats["zero_busy"] == 0
    assert stats["sent"] == 256
    print(f"256 elements in {stats['cycles']} cycles")
    assert stats["cycles"] <= 256 * 9 // 8 + 3


def packed_reference(desc, tags, words, cfg, values):
    """The packets of a sender packing up to ``values`` 8-bit elements: an element joins
    the packet before while the innermost loop (of stride 1) goes on, the tag serves it
    and it sits in the packet's GLB word."""
    per = cfg.dram_bits // 8
    out, t, r = [], 0, 0
    c, s = desc["count"], desc["stride"]
    for i0 in range(c[0]):
        for i1 in range(c[1]):
            for i2 in range(c[2]):
                row, col, offset = tags[t]
                ea = desc["base"] + i0 * s[0] + i1 * s[1] + i2 * s[2] + offset
                v = element(words, ea, 8, 8, cfg.dram_bits)
                last = out[-1] if out else None
                if (last is not None and s[2] == 1 and i2 > 0 and r > 0
                        and len(last[0]) < values and last[3] == ea // per):
                    last[0].append(v)
                else:
                    out.append(([v], row, col, ea // per))
                r += 1
                if r == desc["repeat"]:
                    r, t = 0, (t + 1) % len(tags)
    return [(tuple(vals), row, col) for vals, row, col, _ in out]


@pytest.mark.parametrize("values", [2, 4, 8])
def test_wide_sender_packs_a_word(values, seed):
    """A sender of up to ``values`` 8-bit elements a packet, random descriptors (the
    innermost stride mostly 1, long innermost loops, repeats) and random back-pressure:
    the packets = the Python loop nest grouped by word, innermost loop and tag."""
    cfg = TINY
    rng = random.Random(seed)
    words = [rng.getrandbits(cfg.dram_bits) for _ in range(glb_words(cfg))]
    eng = SendEngine(cfg, 8, values)
    dut = Harness(cfg, eng, reads=True)
    runs = []
    for _ in range(4):
        desc, tags = random_desc(rng, cfg, 8)
        desc["count"][2] = rng.randint(1, 20)
        desc["stride"][2] = rng.choice([1, 1, 1, 0, 2])
        desc["repeat"] = rng.choice([desc["count"][2], rng.randint(1, 30)])
        desc["base"] = rng.randrange(glb_words(cfg) * 8 - 200)
        runs.append((desc, tags))
    got = []

    async def host(ctx):
        await fill(ctx, dut.glb, words)
        for desc, tags in runs:
            await start_sender(ctx, eng, desc, tags)
            rx = StreamReceiver(eng.o, random.Random(rng.random()), 0.3)
            items = []
            for _ in packed_reference(desc, tags, words, cfg, values):
                v = await rx.recv(ctx)
                items.append((tuple(v.data["values"][j] for j in range(v.data.n)), v.row, v.col))
            await ctx.tick().repeat(5)
            assert not ctx.get(eng.busy) and not ctx.get(eng.o.valid), "extra packets"
            got.append(items)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    for (desc, tags), items in zip(runs, got):
        assert items == packed_reference(desc, tags, words, cfg, values), desc


def test_wide_sender_sends_a_word_a_cycle():
    """Linear 8-bit elements, 8 a packet, no back-pressure: 256 elements in 32 packets,
    one a cycle after the first word."""
    cfg = TINY
    words = [random.Random(2).getrandbits(64) for _ in range(32)]
    eng = SendEngine(cfg, 8, 8)
    dut = Harness(cfg, eng, reads=True)
    stats = {}

    async def host(ctx):
        await fill(ctx, dut.glb, words)
        await StreamSender(eng.tag_w).send(ctx, {"engine": 0, "index": 0,
                                                 "entry": {"row": 1, "col": 2, "offset": 0}})
        ctx.set(eng.desc, {"base": 0, "count": [1, 1, 8 * 32], "stride": [0, 0, 1],
                           "repeat": 8 * 32, "tags": 1})
        ctx.set(eng.o.ready, 1)
        ctx.set(eng.start, 1)
        await ctx.tick()
        ctx.set(eng.start, 0)
        cycles = sent = 0
        while ctx.get(eng.busy):
            _, _, valid, n = await ctx.tick().sample(eng.o.valid, eng.o.payload.data.n)
            sent += n if valid else 0
            cycles += 1
        stats["sent"], stats["cycles"] = sent, cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    print(f"256 elements in {stats['cycles']} cycles")
    assert stats["sent"] == 256
    assert stats["cycles"] <= 32 + 3


@pytest.mark.parametrize("values", [1, 2])
def test_receiver_writes_psum_slots(values, seed):
    """GON packets from columns col0..col0+E-1 in a random interleaving, random idle, while
    another client competes for the write port: psum n of column c lands in slot
    base + (c - col0)*stride + n, and only there; with ``noc.gon_values`` = 2 a packet
    holds the column's psums of one aligned pair of slots (`GonPacker`), written at once."""
    import dataclasses
    cfg = dataclasses.replace(TINY, noc=dataclasses.replace(TINY.noc, gon_values=values))
    rng = random.Random(seed)
    bits, slot = cfg.pe.psum_bits, slot_bits(cfg.pe.psum_bits)
    per = cfg.dram_bits // slot
    words = [rng.getrandbits(cfg.dram_bits) for _ in range(glb_words(cfg))]
    rx_eng = GONReceiver(cfg)
    dut = Harness(cfg, rx_eng, reads=False)
    col0, E, stride = rng.randint(0, 1), rng.randint(1, 3), rng.randint(5, 9)
    per_col = rng.randint(1, stride)
    base = rng.randrange(100, 300)
    want = list(words)
    by_col = {}
    for c in range(col0, col0 + E):
        by_col[c], cur = [], []
        for n in range(per_col):
            v = rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1))
            ea = base + (c - col0) * stride + n
            w, k = divmod(ea, per)
            want[w] = (want[w] & ~(((1 << slot) - 1) << (slot * k))) | \
                ((v & ((1 << slot) - 1)) << (slot * k))
            cur.append(v)
            if ea % values == values - 1 or n == per_col - 1:
                by_col[c].append(cur)
                cur = []
    order = [c for c in by_col for _ in by_col[c]]
    rng.shuffle(order)
    packets = []
    for c in order:
        got = by_col[c].pop(0)
        data = got[0] if values == 1 else \
            {"n": len(got), "values": got + [rng.randrange(1 << 8)] * (values - len(got))}
        packets.append({"data": data, "row": rng.randrange(cfg.rows), "col": c})
    count = E * per_col
    result = {}
    others = {a: rng.getrandbits(cfg.dram_bits) for a in range(40)}
    for a, w in others.items():
        want[a] = w

    async def competitor(ctx):
        while "go" not in result:
            await ctx.tick()
        await StreamSender(dut.glb.write[1]).send_all(
            ctx, [{"addr": a, "data": w, "mask": 0xff} for a, w in others.items()])

    async def host(ctx):
        await fill(ctx, dut.glb, words)
        result["go"] = True
        ctx.set(rx_eng.desc, {"base": base, "col0": col0, "stride": stride,
                              "count": count})
        ctx.set(rx_eng.start, 1)
        await ctx.tick()
        ctx.set(rx_eng.start, 0)
        await StreamSender(rx_eng.i, random.Random(rng.random()), 0.3).send_all(ctx, packets)
        while ctx.get(rx_eng.busy):
            await ctx.tick()
        result["busy_after"] = ctx.get(rx_eng.i.ready)
        lo, hi = base // per - 1, (base + E * stride) // per + 2
        while ctx.get(dut.glb.write[1].valid):
            await ctx.tick()
        result["words"] = {a: await read_word(ctx, dut.glb.read[1], a, rng, 0)
                           for a in [*range(lo, hi), *others]}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(competitor)
    sim.run()
    assert result["busy_after"] == 0, "receiver takes psums beyond its count"
    for a, w in result["words"].items():
        assert w == want[a], f"word {a}: {w:#x}, want {want[a]:#x}"
