"""The NoC in the Amaranth simulator: GIN multicast, GON, local psum links.

Each test drives every port of the design from one testbench that decides,
cycle by cycle, random idle on the inputs and random back-pressure on the
outputs, checks the stream rules on every output, and keeps a scoreboard of
deliveries. The expected deliveries come from a Python model of the multicast
controllers (tag equal to the ID, or all ones), written here.
"""

import gc
import random
import warnings
from collections import deque

import pytest
from amaranth import Fragment, Module, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from ommatidia.gen.config import EYERISS, TINY
from ommatidia.gen.multicast import PESet, plan_multicast
from ommatidia.sim.noc_model import (expected_deliveries, random_ids, random_tag,
                                      targets_of)
from ommatidia.hw.array import chain_psum_links
from ommatidia.hw.noc import (GIN, GON, GonPacker, GonQueue, LocalPsumLink,
                              MulticastController, PsumRoute, PsumUnpacker, gin_packet_layout,
                              values_layout)

DATA_BITS = 16


class Source:
    """One input stream: offers ``items`` in order, idling with probability ``idle``."""

    def __init__(self, port, items, rng, idle=0.0):
        self.port, self.items, self.rng, self.idle = port, deque(items), rng, idle
        self.valid = False

    def drive(self, ctx):
        if not self.valid and self.items and self.rng.random() >= self.idle:
            self.valid = True
            ctx.set(self.port.payload, self.items[0])
        ctx.set(self.port.valid, int(self.valid))

    def sample(self, ctx):
        """Return the item taken at the coming edge, or None."""
        if self.valid and ctx.get(self.port.ready):
            self.valid = False
            return self.items.popleft()
        return None


class Sink:
    """One output stream: ready with probability ``1 - stall``; checks valid and payload hold."""

    def __init__(self, port, rng, stall=0.0, name="", convert=lambda p: p):
        self.port, self.rng, self.stall, self.name, self.convert = port, rng, stall, name, convert
        self.got = []
        self.held = None
        self.ready = False

    def drive(self, ctx):
        self.ready = self.rng.random() >= self.stall
        ctx.set(self.port.ready, int(self.ready))

    def sample(self, ctx):
        valid = ctx.get(self.port.valid)
        payload = self.convert(ctx.get(self.port.payload)) if valid else None
        if self.held is not None:
            assert valid and payload == self.held, \
                f"{self.name}: valid payload {self.held} withdrawn or changed to {payload}"
        if valid and self.ready:
            self.held = None
            self.got.append(payload)
            return payload
        self.held = payload if valid else None
        return None


def simulate_gin(gin, row_ids, col_ids, packets, *, rng, idle, stalls, rb, cb,
                 drain_cycles=8, max_cycles=100_000):
    """Send ``packets`` (data, row tag, col tag) through ``gin``; return (deliveries, cycles).

    Fails on a delivery to a PE whose IDs do not match, a second delivery of
    a packet to a PE, a packet accepted before all its targets took it, or
    any output valid once every packet is through.
    """
    rows, cols = gin.rows, gin.cols
    layout = gin.packet_layout
    items = [layout.const({"data": d, "row": rt, "col": ct}) for d, rt, ct in packets]
    src = Source(gin.i, items, random.Random(rng.random()), idle)
    sinks = {(r, c): Sink(gin.o[r][c], random.Random(rng.random()), stalls[r][c],
                          name=f"PE ({r}, {c})")
             for r in range(rows) for c in range(cols)}
    result = {"cycles": 0, "first": None, "last": None}

    async def bench(ctx):
        for r in range(rows):
            ctx.set(gin.row_id[r], row_ids[r])
            for c in range(cols):
                ctx.set(gin.col_id[r][c], col_ids[r][c])
        index = 0
        taken = set()
        idle_after = 0
        cycle = 0
        while idle_after < drain_cycles:
            assert cycle < max_cycles, "GIN made no progress"
            src.drive(ctx)
            for sink in sinks.values():
                sink.drive(ctx)
            in_flight = packets[index] if src.valid else None
            targets = (targets_of(in_flight[1:], row_ids, col_ids, rb, cb)
                       if in_flight else set())
            for pe, sink in sinks.items():
                data = sink.sample(ctx)
                if data is None:
                    continue
                assert in_flight is not None, f"{sink.name} got {data} with no packet offered"
                assert data == in_flight[0], \
                    f"{sink.name} got {data} while packet {index} ({in_flight}) was offered"
                assert pe in targets, \
                    f"{sink.name} with IDs ({row_ids[pe[0]]}, {col_ids[pe[0]][pe[1]]}) " \
                    f"got packet {index} {in_flight}"
                assert pe not in taken, f"{sink.name} got packet {index} twice"
                taken.add(pe)
            if src.sample(ctx) is not None:
                assert taken == targets, \
                    f"packet {index} {in_flight} accepted with {sorted(targets - taken)} missing"
                result["first"] = cycle if result["first"] is None else result["first"]
                result["last"] = cycle
                taken = set()
                index += 1
            idle_after = idle_after + 1 if index == len(packets) else 0
            cycle += 1
            await ctx.tick()
        result["cycles"] = cycle

    sim = Simulator(gin)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return {pe: sink.got for pe, sink in sinks.items()}, result


@pytest.mark.parametrize("rows, cols, rb, cb, n", [
    (1, 1, 1, 1, 60),
    (1, 1, 2, 3, 40),
    (3, 4, 3, 3, 120),
    (12, 14, 4, 5, 40),
])
def test_gin_random(rows, cols, rb, cb, n, seed):
    """Random tags, IDs and back-pressure: every PE gets exactly its packets, in order."""
    rng = random.Random(seed)
    gin = GIN(rows, cols, signed(DATA_BITS), rb, cb)
    for trial in range(2):
        row_ids, col_ids = random_ids(rng, rows, cols, rb, cb)
        packets = [(k - (1 << (DATA_BITS - 1)) + trial * n,
                    *random_tag(rng, row_ids, col_ids, rb, cb)) for k in range(n)]
        stalls = [[rng.choice([0.0, 0.3, 0.7]) for _ in range(cols)] for _ in range(rows)]
        got, _ = simulate_gin(gin, row_ids, col_ids, packets, rng=rng, idle=0.2,
                              stalls=stalls, rb=rb, cb=cb)
        want = expected_deliveries(row_ids, col_ids, packets, rb, cb)
        for pe in want:
            assert got[pe] == want[pe], f"PE {pe}: got {got[pe]}, want {want[pe]}"
        assert sum(map(len, want.values())) > 0


@pytest.mark.parametrize("rows, cols, rb, cb", [(1, 1, 1, 1), (3, 4, 3, 3), (12, 14, 4, 5)])
def test_gin_throughput(rows, cols, rb, cb, seed):
    """One packet per cycle while every target is ready, for multicasts and broadcasts."""
    rng = random.Random(seed)
    gin = GIN(rows, cols, signed(DATA_BITS), rb, cb)
    row_ids, col_ids = random_ids(rng, rows, cols, rb, cb)
    n = 30
    packets = [(k, *random_tag(rng, row_ids, col_ids, rb, cb)) for k in range(n - 1)]
    packets.append((n - 1, (1 << rb) - 1, (1 << cb) - 1))
    stalls = [[0.0] * cols for _ in range(rows)]
    got, result = simulate_gin(gin, row_ids, col_ids, packets, rng=rng, idle=0.0,
                               stalls=stalls, rb=rb, cb=cb)
    span = result["last"] - result["first"] + 1
    print(f"GIN {rows}x{cols}: {n} packets accepted in {span} cycles")
    assert result["first"] == 0
    assert span == n
    assert all(got[pe][-1] == n - 1 for pe in got)


def test_gin_stall():
    """A matching PE that is not ready holds the GIN; the others take the packet once."""
    rows, cols, rb, cb = 3, 4, 3, 3
    gin = GIN(rows, cols, signed(DATA_BITS), rb, cb)
    layout = gin_packet_layout(signed(DATA_BITS), rb, cb)
    slow, hold = (1, 2), 5
    log = []

    async def bench(ctx):
        for r in range(rows):
            ctx.set(gin.row_id[r], 0)
            for c in range(cols):
                ctx.set(gin.col_id[r][c], 0)
        ctx.set(gin.i.payload, layout.const({"data": 7, "row": 0, "col": 0}))
        ctx.set(gin.i.valid, 1)
        for cycle in range(hold + 2):
            for r in range(rows):
                for c in range(cols):
                    ctx.set(gin.o[r][c].ready, int((r, c) != slow or cycle >= hold))
            valid = {(r, c) for r in range(rows) for c in range(cols)
                     if ctx.get(gin.o[r][c].valid)}
            accepted = ctx.get(gin.i.valid) and ctx.get(gin.i.ready)
            log.append((cycle, ctx.get(gin.i.ready), valid))
            await ctx.tick()
            if accepted:
                ctx.set(gin.i.valid, 0)

    sim = Simulator(gin)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    everyone = {(r, c) for r in range(rows) for c in range(cols)}
    assert log[0] == (0, 0, everyone)
    for cycle in range(1, hold):
        assert log[cycle] == (cycle, 0, {slow}), log[cycle]
    assert log[hold] == (hold, 1, {slow})
    assert log[hold + 1][2] == set()


def test_multicast_controller():
    """Exhaustive over 3-bit IDs and tags: pass on equal or all-ones, else consume and gate."""
    layout = gin_packet_layout(signed(4), 3, 2)
    mc = MulticastController(layout, "row")
    checked = []

    async def bench(ctx):
        for ident in range(8):
            for tag in range(8):
                for valid in (0, 1):
                    for ready in (0, 1):
                        ctx.set(mc.id, ident)
                        ctx.set(mc.i.payload, layout.const({"data": -3, "row": tag, "col": 1}))
                        ctx.set(mc.i.valid, valid)
                        ctx.set(mc.o.ready, ready)
                        match = tag == ident or tag == 7
                        assert ctx.get(mc.match) == match
                        assert ctx.get(mc.o.valid) == (valid and match)
                        assert ctx.get(mc.i.ready) == (ready or not match)
                        if match:
                            assert ctx.get(mc.o.payload.data) == -3
                        checked.append((ident, tag, valid, ready))

    sim = Simulator(mc)
    sim.add_testbench(bench)
    sim.run()
    assert len(set(checked)) == 8 * 8 * 2 * 2


def rs_expectation(sets, rows, cols):
    """The row-stationary mapping, PE by PE: which filter, ifmap row and psum each PE needs."""
    want = {kind: {(r, c): set() for r in range(rows) for c in range(cols)}
            for kind in ("filter", "ifmap", "psum")}
    for k, s in enumerate(sets):
        for i in range(s.rows):
            for e in range(s.cols):
                pe = (s.origin[0] + i, s.origin[1] + e)
                want["filter"][pe].add(("filter", s.filters, s.first_row + i))
                h = (s.first_col + e) * s.stride + s.first_row + i
                want["ifmap"][pe].add(("ifmap", s.channels, h))
                if i == s.rows - 1 and not s.psum_from_below:
                    want["psum"][pe].add(("psum", k, s.first_col + e))
    return want


@pytest.mark.parametrize("case", ["stride2", "replicated"])
def test_gin_with_generated_ids(case, seed):
    """The IDs and tags from gen/multicast.py drive the GIN: each PE gets exactly its rows."""
    rng = random.Random(seed)
    rows, cols, noc = TINY.rows, TINY.cols, TINY.noc
    if case == "stride2":
        sets = [PESet(3, 2, (0, 0), stride=2), PESet(3, 2, (0, 2), stride=2, first_col=2)]
    else:
        sets = [PESet(1, 4, (r, 0), filters=r % 2, channels=r) for r in range(3)]
    plan = plan_multicast(sets, rows, cols, noc)
    want = rs_expectation(sets, rows, cols)
    gin = GIN(rows, cols, signed(DATA_BITS), noc.row_id_bits, noc.col_id_bits)
    for kind in ("filter", "ifmap", "psum"):
        ids = plan.gin(kind)
        keys = sorted(ids.tags)
        packets = [(keys.index(key), rt, ct) for key in keys for rt, ct in ids.tags[key]]
        rng.shuffle(packets)
        stalls = [[0.3] * cols for _ in range(rows)]
        got, _ = simulate_gin(gin, ids.row_ids, ids.col_ids, packets, rng=rng, idle=0.1,
                              stalls=stalls, rb=noc.row_id_bits, cb=noc.col_id_bits)
        assert any(want[kind].values()), kind
        for pe, need in want[kind].items():
            assert sorted(keys[d] for d in got[pe]) == sorted(need), (kind, pe)
        assert {d for pe in got for d in got[pe]} == set(range(len(keys))), kind


def simulate_ports(dut, sources, sinks, *, done, max_cycles=20_000):
    """Run ``sources`` and ``sinks`` until ``done()`` plus 8 quiet cycles; return the cycles."""
    state = {"cycles": 0}

    async def bench(ctx):
        quiet = 0
        while quiet < 8:
            assert state["cycles"] < max_cycles, "no progress"
            for port in (*sources, *sinks):
                port.drive(ctx)
            for port in (*sinks, *sources):
                port.sample(ctx)
            quiet = quiet + 1 if done() else 0
            state["cycles"] += 1
            await ctx.tick()

    top = Module()
    top.submodules.dut = dut
    top.d.sync += Signal(name="tick").eq(1)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return state["cycles"]


def gon_convert(payload):
    return (payload.data, payload.row, payload.col)


@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 4), (12, 14)])
def test_gon_random(rows, cols, seed):
    """Every psum leaves once, tagged with its PE, in its PE's order, under idle and stall."""
    rng = random.Random(seed)
    gon = GON(rows, cols, signed(24))
    per_pe = 12 if rows * cols < 20 else 2
    items = {(r, c): [rng.randrange(-(1 << 23), 1 << 23) for _ in range(rng.randrange(per_pe))]
             for r in range(rows) for c in range(cols)}
    sources = [Source(gon.i[r][c], items[r, c], random.Random(rng.random()), rng.random() * 0.8)
               for r in range(rows) for c in range(cols)]
    sink = Sink(gon.o, random.Random(rng.random()), 0.4, "GON", gon_convert)
    total = sum(map(len, items.values()))
    simulate_ports(gon, sources, [sink], done=lambda: len(sink.got) >= total)
    assert len(sink.got) == total
    for (r, c), values in items.items():
        assert [d for d, rr, cc in sink.got if (rr, cc) == (r, c)] == values, (r, c)


class Held:
    """Inputs held constant (a pass's configuration), as a port of `simulate_ports`."""

    def __init__(self, **values):
        self.values = values

    def drive(self, ctx):
        for port, value in self.values.values():
            ctx.set(port, value)

    def sample(self, ctx):
        return None


@pytest.mark.parametrize("n", [2, 4])
def test_gon_packer_random(n, seed):
    """Two passes of a top PE's psums under random idle and back-pressure: packets of the
    psums of one aligned group of ``n`` slots, cut at the pass's last psum, in order; a
    psum that does not end its packet is taken at once."""
    rng = random.Random(seed)
    phase, total = rng.randrange(n), rng.randrange(1, 12)
    packer = GonPacker(signed(24), n, 8)
    items = [rng.randrange(-(1 << 23), 1 << 23) for _ in range(2 * total)]
    want, cur = [], []
    for j, value in enumerate(items):
        cur.append(value)
        slot = (phase + j % total) % n
        if slot == n - 1 or j % total == total - 1:
            want.append(cur)
            cur = []
    source = Source(packer.i, items, random.Random(rng.random()), 0.3)
    sink = Sink(packer.o, random.Random(rng.random()), 0.5, "packer",
                lambda p: [p["values"][j] for j in range(p.n)])
    held = Held(phase=(packer.phase, phase), total=(packer.total, total))
    simulate_ports(packer, [held, source], [sink], done=lambda: len(sink.got) >= len(want))
    assert sink.got == want, f"phase {phase}, total {total}"


def test_gon_packer_takes_held_psums_at_once():
    """With the GON never ready, the packer still takes every psum but the last of a group."""
    packer = GonPacker(signed(24), 4, 8)
    source = Source(packer.i, list(range(10)), random.Random(0))
    sink = Sink(packer.o, random.Random(0), 1.0, "packer")
    held = Held(phase=(packer.phase, 1), total=(packer.total, 10))
    simulate_ports(packer, [held, source], [sink], done=lambda: len(source.items) == 8,
                   max_cycles=100)
    assert len(source.items) == 8 and sink.got == []


@pytest.mark.parametrize("n", [2, 4])
def test_psum_unpacker_random(n, seed):
    """Packets of 1..n psums under random idle and back-pressure come out one psum at a
    time, in order; with neither, one psum a cycle."""
    rng = random.Random(seed)
    unpacker = PsumUnpacker(signed(24), n)
    packets = [[rng.randrange(-(1 << 23), 1 << 23) for _ in range(rng.randint(1, n))]
               for _ in range(20)]
    items = [{"n": len(p), "values": p + [0] * (n - len(p))} for p in packets]
    want = [v for p in packets for v in p]
    for idle, stall in ((0.3, 0.5), (0.0, 0.0)):
        source = Source(unpacker.i, items, random.Random(rng.random()), idle)
        sink = Sink(unpacker.o, random.Random(rng.random()), stall, "unpacker")
        cycles = simulate_ports(unpacker, [source], [sink], done=lambda: len(sink.got) >= len(want))
        assert sink.got == want
    assert cycles - 8 <= len(want) + 3, cycles


@pytest.mark.parametrize("depth", [2, 8])
def test_psum_unpacker_runs_ahead_of_a_stalled_pe(depth):
    """With the bottom PE not taking psums (busy with its MACs), the psum GIN still hands
    ``depth`` packets to its `PsumUnpacker` (`NoCConfig.psum_gin_queue`), then waits; once
    the PE takes psums they come out in order, one a cycle from the cycle after the first
    packet is taken (cycle 1 to 24)."""
    unpacker = PsumUnpacker(signed(24), 2, depth)
    items = [{"n": 2, "values": [2 * k, 2 * k + 1]} for k in range(12)]
    source = Source(unpacker.i, items, random.Random(0))
    blocked = Sink(unpacker.o, random.Random(0), 1.0, "unpacker")
    simulate_ports(unpacker, [source], [blocked], done=lambda: len(source.items) == 12 - depth,
                   max_cycles=100)
    assert len(source.items) == 12 - depth and blocked.got == []
    unpacker = PsumUnpacker(signed(24), 2, depth)
    source = Source(unpacker.i, items, random.Random(0))
    sink = Sink(unpacker.o, random.Random(0), 0.0, "unpacker")
    cycles = simulate_ports(unpacker, [source], [sink], done=lambda: len(sink.got) >= 24)
    assert sink.got == list(range(24)) and cycles - 8 == 24, cycles


@pytest.mark.parametrize("depth", [1, 3])
def test_gon_queue_random(depth, seed):
    """GON packets through the queue in order under random idle and back-pressure; with
    neither, each offered the cycle after it was taken, one a cycle from two slots on."""
    rng = random.Random(seed)
    queue = GonQueue(values_layout(signed(24), 2), depth)
    packets = [[rng.randrange(-(1 << 23), 1 << 23) for _ in range(rng.randint(1, 2))]
               for _ in range(30)]
    items = [{"n": len(p), "values": p + [0] * (2 - len(p))} for p in packets]
    for idle, stall in ((0.3, 0.5), (0.0, 0.0)):
        source = Source(queue.i, items, random.Random(rng.random()), idle)
        sink = Sink(queue.o, random.Random(rng.random()), stall, "queue",
                    lambda p: [p["values"][j] for j in range(p.n)])
        cycles = simulate_ports(queue, [source], [sink],
                                done=lambda: len(sink.got) >= len(packets))
        assert sink.got == packets
    # a full queue takes no packet in the cycle its head leaves: one queue slot is half rate
    assert cycles - 8 == (len(packets) if depth > 1 else 2 * len(packets) - 1), cycles


def packer_and_queue(depth: int):
    """A top PE's GON path: its `GonPacker` of 2 psums, then a `GonQueue` of ``depth``
    packets (none for 0)."""
    m = Module()
    m.submodules.packer = packer = GonPacker(signed(24), 2, 8)
    out = packer.o
    if depth:
        m.submodules.queue = queue = GonQueue(out.payload.shape(), depth)
        wiring.connect(m, out, queue.i)
        out = queue.o
    return m, packer, out


@pytest.mark.parametrize("depth", [0, 3])
def test_gon_queue_lets_the_top_run_on(depth):
    """With the GON's X-bus serving other tops (never ready here), a top PE without a
    queue gets rid of one psum (its packer holds it) and its MAC pipeline freezes; with a
    queue of ``depth`` packets it hands on ``2 * depth + 1`` psums, then the queue lets
    them out in order once the X-bus takes them."""
    m, packer, out = packer_and_queue(depth)
    source = Source(packer.i, list(range(20)), random.Random(0))
    blocked = Sink(out, random.Random(0), 1.0, "queue")
    held = Held(phase=(packer.phase, 0), total=(packer.total, 20))
    taken = 1 + 2 * depth
    simulate_ports(m, [held, source], [blocked], done=lambda: len(source.items) == 20 - taken,
                   max_cycles=100)
    assert len(source.items) == 20 - taken and blocked.got == []
    m, packer, out = packer_and_queue(depth)
    source = Source(packer.i, list(range(20)), random.Random(0))
    blocked = Sink(out, random.Random(0), 1.0, "queue")
    sink = Sink(out, random.Random(0), 0.0, "queue", lambda p: list(p["values"]))

    class Release:
        """The X-bus blocked for 40 cycles, then ready every cycle."""
        cycle = 0

        def drive(self, ctx):
            (blocked if self.cycle < 40 else sink).drive(ctx)

        def sample(self, ctx):
            (blocked if self.cycle < 40 else sink).sample(ctx)
            self.cycle += 1

    simulate_ports(m, [held, source], [Release()], done=lambda: len(sink.got) >= 10)
    assert sink.got == [[2 * k, 2 * k + 1] for k in range(10)]


@pytest.mark.parametrize("rows, cols", [(1, 3), (3, 4)])
def test_gon_order_and_throughput(rows, cols):
    """With every PE sending all the time: round-robin order, one psum per cycle, latency 2."""
    gon = GON(rows, cols, signed(24))
    n = 3 * rows * cols
    items = {(r, c): [1000 * r + 10 * c + k for k in range(3)]
             for r in range(rows) for c in range(cols)}
    sources = [Source(gon.i[r][c], items[r, c], random.Random(0)) for r in range(rows)
               for c in range(cols)]
    sink = Sink(gon.o, random.Random(0), 0.0, "GON", gon_convert)
    first = {}

    class Clock:
        cycle = 0

        def drive(self, ctx):
            pass

        def sample(self, ctx):
            if ctx.get(gon.o.valid) and "out" not in first:
                first["out"] = self.cycle
            if len(sink.got) == n and "all" not in first:
                first["all"] = self.cycle
            self.cycle += 1

    simulate_ports(gon, sources, [sink, Clock()], done=lambda: len(sink.got) >= n)
    order = [(r, c) for c in range(cols) for r in range(rows)]
    assert [(rr, cc) for _, rr, cc in sink.got] == order * 3
    assert [d for d, _, _ in sink.got] == [1000 * r + 10 * c + k for k in range(3)
                                            for r, c in order]
    assert first["out"] == 2
    assert first["all"] == n + 1


class _RouteGrid(wiring.Component):
    """``rows x cols`` `PsumRoute`s chained as `PEArray` chains its cells."""

    def __init__(self, rows, cols, data_shape):
        psum = stream.Signature(data_shape)
        super().__init__({
            "up": In(data.ArrayLayout(data.ArrayLayout(unsigned(1), cols), rows)),
            "pe_out": In(psum).array(rows, cols),
            "gin": In(psum).array(rows, cols),
            "pe_in": Out(psum).array(rows, cols),
            "gon": Out(psum).array(rows, cols),
        })
        self.routes = [[PsumRoute(data_shape) for _ in range(cols)] for _ in range(rows)]

    def elaborate(self, platform):
        m = Module()
        for r, line in enumerate(self.routes):
            for c, route in enumerate(line):
                m.submodules[f"route_{r}_{c}"] = route
                wiring.connect(m, wiring.flipped(self.pe_out[r][c]), route.pe_out)
                wiring.connect(m, wiring.flipped(self.gin[r][c]), route.gin)
                wiring.connect(m, route.pe_in, wiring.flipped(self.pe_in[r][c]))
                wiring.connect(m, route.gon, wiring.flipped(self.gon[r][c]))
        chain_psum_links(m, self.routes, self.up)
        return m


@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 4), (5, 2)])
def test_psum_links(rows, cols, seed):
    """Psums go up a column where ``up`` is set (row 0's ignored) and to the GON elsewhere;
    PEs fed by a link take nothing from the psum GIN."""
    rng = random.Random(seed)
    links = _RouteGrid(rows, cols, signed(24))
    up = [[rng.randrange(2) for _ in range(cols)] for _ in range(rows)]
    n = 10
    out_items = {(r, c): [(r * 100 + c) * 100 + k for k in range(n)]
                 for r in range(rows) for c in range(cols)}
    gin_items = {(r, c): [-((r * 100 + c) * 100 + k) - 1 for k in range(n)]
                 for r in range(rows) for c in range(cols)}
    pe_out = {pe: Source(links.pe_out[pe[0]][pe[1]], v, random.Random(rng.random()), 0.3)
              for pe, v in out_items.items()}
    gin = {pe: Source(links.gin[pe[0]][pe[1]], v, random.Random(rng.random()), 0.3)
           for pe, v in gin_items.items()}
    pe_in = {pe: Sink(links.pe_in[pe[0]][pe[1]], random.Random(rng.random()), 0.3,
                      f"pe_in {pe}") for pe in out_items}
    gon = {pe: Sink(links.gon[pe[0]][pe[1]], random.Random(rng.random()), 0.3, f"gon {pe}")
           for pe in out_items}
    linked = {(r, c) for r in range(1, rows) for c in range(cols) if up[r][c]}
    want_in = {(r, c): out_items[r + 1, c] if (r + 1, c) in linked else gin_items[r, c]
               for r, c in out_items}
    want_gon = {pe: [] if pe in linked else out_items[pe] for pe in out_items}

    class Config:
        def drive(self, ctx):
            for r in range(rows):
                for c in range(cols):
                    ctx.set(links.up[r][c], up[r][c])

        def sample(self, ctx):
            pass

    def done():
        return all(len(pe_in[pe].got) >= len(want_in[pe]) for pe in pe_in) and \
            all(len(gon[pe].got) >= len(want_gon[pe]) for pe in gon)

    simulate_ports(links, [Config(), *pe_out.values(), *gin.values()],
                   [*pe_in.values(), *gon.values()], done=done)
    assert sum(len(sink.got) for sink in gon.values()) == n * (rows * cols - len(linked))
    for pe in out_items:
        assert pe_in[pe].got == want_in[pe], pe
        assert gon[pe].got == want_gon[pe], pe
        feeds_link = (pe[0] + 1, pe[1]) in linked
        assert len(gin[pe].items) == (n if feeds_link else 0), pe


def test_local_link_throughput():
    """A local link passes one psum per cycle with one cycle of latency."""
    link = LocalPsumLink(signed(24))
    n = 20
    src = Source(link.i, list(range(n)), random.Random(0))
    sink = Sink(link.o, random.Random(0), 0.0, "link")
    cycles = simulate_ports(link, [src], [sink], done=lambda: len(sink.got) >= n)
    assert sink.got == list(range(n))
    assert cycles - 8 == n, "the last of n psums must leave in cycle n"


@pytest.mark.parametrize("factory, error, match, nearest, width", [
    (lambda: GIN(0, 4, signed(8), 3, 3), ValueError, "GIN.rows must be at least 1, not 0",
     lambda: GIN(1, 4, signed(8), 3, 3).i.payload, 8 + 3 + 3),
    (lambda: GIN(2, 2, signed(8), 0, 3), ValueError, "row_id_bits must be at least 1, not 0",
     lambda: GIN(2, 2, signed(8), 1, 3).i.payload, 8 + 1 + 3),
    (lambda: MulticastController(gin_packet_layout(signed(8), 2, 2), "tag"), ValueError,
     "no field 'tag'",
     lambda: MulticastController(gin_packet_layout(signed(8), 2, 2), "row").id, 2),
    (lambda: GON(2, 2, "psum"), TypeError, "data_shape must be a shape",
     lambda: GON(2, 2, signed(8)).o.payload.data, 8),
])
def test_bad_parameters(factory, error, match, nearest, width):
    """Each bad parameter raises exactly ``error`` (not a subclass) naming the parameter;
    the nearest good value builds, with ``width`` bits on the port ``nearest`` gives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error, match=match) as info:
            factory()
        raised = type(info.value)
        del info                  # its traceback holds the unused elaboratables
        built = len(Value.cast(nearest()))
        gc.collect()
    assert raised is error
    assert built == width


def test_eyeriss_sized_gin_ports():
    """The Eyeriss 12x14 filter GIN: a 14-wide X-bus per row, tags of 4 and 5 bits."""
    gin = GIN(EYERISS.rows, EYERISS.cols, signed(EYERISS.pe.weight_bits),
              EYERISS.noc.row_id_bits, EYERISS.noc.col_id_bits)
    Fragment.get(gin, None)
    assert len(gin.o) == 12 and all(len(line) == 14 for line in gin.o)
    assert gin.packet_layout.size == 16 + 4 + 5
    assert len(gin.col_id.as_value()) == 12 * 14 * 5


@pytest.mark.parametrize("top, ports", [
    ("gin", ["i__payload", "row_id", "col_id", "o__2__3__valid", "o__0__0__payload"]),
    ("gon", ["i__2__3__valid", "o__payload", "o__ready"]),
])
def test_generate_tops(top, ports, tmp_path):
    """`ommatidia generate --top gin|gon` writes the tiny-preset NoC with its stream ports."""
    from ommatidia.cli import main
    assert main(["generate", "--preset", "tiny", "--top", top, "-o", str(tmp_path)]) == 0
    text = (tmp_path / f"ommatidia_{top}.v").read_text()
    for port in ports:
        assert f" {port};" in text or f" {port}," in text, port
