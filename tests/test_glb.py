"""The GLB in the Amaranth simulator: banked words, masked writes, round-robin ports, slots.

Several read and write clients run concurrently, each with random idle
cycles; the words read back are checked against a Python dictionary of what
was written (clients write disjoint addresses, so only each client's own
order matters). The arbitration tests keep every client requesting and check
the grant sequence is round-robin.
"""

import dataclasses
import random

import pytest
from amaranth.sim import Simulator

from ommatidia.gen.config import SMALL, TINY
from ommatidia.hw.glb import GLB, glb_words, slot_bits
from ommatidia.sim.streams import StreamSender

from helpers import read_word


BANKED = dataclasses.replace(TINY, name="tiny_banks", glb_bank_reads=True)


@pytest.mark.parametrize("cfg", [TINY, SMALL, BANKED], ids=lambda c: c.name)
def test_concurrent_masked_writes_then_reads(cfg, seed):
    """Two writers with byte masks, then three readers, all at random addresses over every
    bank (bank edges included), with random idle: every word reads back as written."""
    rng = random.Random(seed)
    n_words = glb_words(cfg)
    edges = [b * cfg.glb_bank_words + d for b in range(cfg.glb_banks) for d in (-1, 0)
             if 0 <= b * cfg.glb_bank_words + d < n_words]
    addrs = sorted(set(edges) | set(rng.sample(range(n_words), 60)))
    rng.shuffle(addrs)
    owned = [addrs[0::2], addrs[1::2]]
    nbytes = cfg.dram_bits // 8
    ops = [[(a, rng.getrandbits(cfg.dram_bits), rng.choice([(1 << nbytes) - 1,
                                                           rng.getrandbits(nbytes)]))
            for a in mine for _ in range(rng.randint(1, 2))] for mine in owned]
    want = {a: 0 for a in addrs}
    for client in ops:
        for a, value, mask in client:
            bytemask = sum(0xff << (8 * k) for k in range(nbytes) if mask >> k & 1)
            want[a] = (want[a] & ~bytemask) | (value & bytemask)
    dut = GLB(cfg, readers=3, writers=2)
    got, done = {}, []

    def writer(i):
        async def bench(ctx):
            tx = StreamSender(dut.write[i], random.Random(rng.random()), 0.3)
            for a, value, mask in ops[i]:
                await tx.send(ctx, {"addr": a, "data": value, "mask": mask})
            done.append(i)
        return bench

    def reader(i):
        async def bench(ctx):
            r = random.Random(rng.random())
            while len(done) < 2:
                await ctx.tick()
            for a in addrs[i::3]:
                got[a] = await read_word(ctx, dut.read[i], a, r, 0.3)
        return bench

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for i in range(2):
        sim.add_testbench(writer(i))
    for i in range(3):
        sim.add_testbench(reader(i))
    sim.run()
    assert got == want


@pytest.mark.parametrize("kind", ["read", "write"])
def test_round_robin(kind):
    """Every client requesting every cycle: grants go 0, 1, 2, 3, 0, ... one a cycle; with
    clients 1 and 3 idle, 0 and 2 alternate."""
    cfg = TINY
    dut = GLB(cfg, readers=4, writers=4)
    ports = list(dut.read) if kind == "read" else list(dut.write)
    seq = {}

    def ready(p):
        return p.addr.ready if kind == "read" else p.ready

    def valid(p):
        return p.addr.valid if kind == "read" else p.valid

    async def bench(ctx):
        for active, name in (([0, 1, 2, 3], "all"), ([0, 2], "even")):
            for i in active:
                ctx.set(valid(ports[i]), 1)
            grants = []
            for _ in range(12):
                _, _, *r = await ctx.tick().sample(*(ready(p) for p in ports))
                assert sum(r) == 1, f"grants {r} are not one-hot"
                grants.append(r.index(1))
            for i in active:
                ctx.set(valid(ports[i]), 0)
            await ctx.tick()
            seq[name] = grants

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seq["all"] == [0, 1, 2, 3] * 3
    assert seq["even"] == [0, 2] * 6


def test_bank_reads_grant_each_bank_round_robin():
    """With a read port per bank: clients 0 and 1 on banks 0 and 1 are both granted every
    cycle; clients 2, 3, 4 on bank 2 take turns (2, 3, 4, ...); every response is the
    word of the client's own address, one cycle after its grant."""
    cfg, words = BANKED, BANKED.glb_bank_words
    addrs = [3, words + 7, 2 * words + 1, 2 * words + 2, 3 * words - 1]
    dut = GLB(cfg, readers=5, writers=1)
    grants, wrong = [], []

    async def bench(ctx):
        for a in addrs:
            ctx.set(dut.write[0].payload, {"addr": a, "data": 0x1000 + a, "mask": 0xff})
            ctx.set(dut.write[0].valid, 1)
            await ctx.tick()
        ctx.set(dut.write[0].valid, 0)
        for r, a in zip(dut.read, addrs):
            ctx.set(r.addr.payload, a)
            ctx.set(r.addr.valid, 1)
        for _ in range(9):
            got = await ctx.tick().sample(*(r.addr.ready for r in dut.read))
            now = list(got[2:])
            for i, r in enumerate(dut.read):  # the response of the grant just sampled
                if ctx.get(r.valid) != now[i] or now[i] and ctx.get(r.data) != 0x1000 + addrs[i]:
                    wrong.append((len(grants), i))
            grants.append(now)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not wrong
    assert [g[:2] for g in grants] == [[1, 1]] * 9
    assert [g[2:].index(1) + 2 for g in grants] == [2, 3, 4] * 3
    assert all(sum(g[2:]) == 1 for g in grants)


def test_read_during_write_returns_the_old_word():
    cfg = TINY
    dut = GLB(cfg, readers=1, writers=1)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.write[0].payload, {"addr": 5, "data": 0x1111, "mask": 0xff})
        ctx.set(dut.write[0].valid, 1)
        await ctx.tick()
        ctx.set(dut.write[0].payload, {"addr": 5, "data": 0x2222, "mask": 0xff})
        ctx.set(dut.read[0].addr.payload, 5)
        ctx.set(dut.read[0].addr.valid, 1)
        await ctx.tick()
        ctx.set(dut.write[0].valid, 0)
        ctx.set(dut.read[0].addr.valid, 0)
        seen["during"] = ctx.get(dut.read[0].data)
        seen["after"] = await read_word(ctx, dut.read[0], 5, random.Random(0), 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"during": 0x1111, "after": 0x2222}


def test_slot_bits():
    assert [slot_bits(b) for b in (1, 8, 9, 16, 17, 24, 32, 33, 64)] == \
        [8, 8, 16, 16, 32, 32, 32, 64, 64]
    with pytest.raises(ValueError, match="65-bit element needs a 128-bit slot"):
        slot_bits(65)
    with pytest.raises(ValueError, match="divide a 24-bit"):
        slot_bits(16, 24)


def test_glb_rejects_bad_arguments():
    import gc
    import warnings
    from amaranth.hdl import UnusedElaboratable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match="ArrayConfig"):
            GLB(TINY.pe, 1, 1)
        with pytest.raises(ValueError, match="readers must be an integer in 1..16, not 0"):
            GLB(TINY, 0, 1)
        gc.collect()


def test_size_is_the_config():
    """The banks hold exactly glb_bytes."""
    for cfg in (TINY, SMALL):
        assert glb_words(cfg) * cfg.dram_bits // 8 == cfg.glb_bytes
