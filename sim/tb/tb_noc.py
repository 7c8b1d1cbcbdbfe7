"""cocotb testbench of the generated GIN and GON Verilog.

The GIN tests give the GIN random IDs (or the IDs `gen.multicast` computes
for a PE set), send tagged packets with random idle, hold random
back-pressure at every PE, and keep a scoreboard: a PE may take only the
packet on the input, only if its IDs match the tags (equal or all ones), only
once, and the GIN may accept the packet only when every matching PE has
taken it. Outputs must keep valid and payload until taken. The GON test
checks that every psum leaves once, tagged with its PE, in each PE's order.

The GIN tests (``gin_*``) run on a GIN top, ``gon_random`` on a GON top;
select them with the runner's ``testcase``.

Environment: OMMATIDIA_ROWS, OMMATIDIA_COLS,
OMMATIDIA_ROW_BITS, OMMATIDIA_COL_BITS, OMMATIDIA_DATA_BITS,
OMMATIDIA_PACKETS, OMMATIDIA_STRIDE (for the generated IDs), OMMATIDIA_SEED.
"""

import os
import random

import cocotb
from amaranth import signed
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from ommatidia.gen.config import NoCConfig
from ommatidia.gen.multicast import PESet, plan_multicast
from ommatidia.hw.noc import gin_packet_layout, gon_packet_layout
from ommatidia.sim.noc_model import mc_takes as takes, random_ids, random_tag
from ommatidia.sim.tb.streams import to_signed, to_unsigned


def env(name: str) -> int:
    return int(os.environ[f"OMMATIDIA_{name}"])


class GINBench:
    """Clock, reset, and every port of a ``rows x cols`` GIN."""

    def __init__(self, dut):
        self.dut = dut
        self.rows, self.cols = env("ROWS"), env("COLS")
        self.rb, self.cb, self.data_bits = env("ROW_BITS"), env("COL_BITS"), env("DATA_BITS")
        self.layout = gin_packet_layout(signed(self.data_bits), self.rb, self.cb)
        self.pes = [(r, c) for r in range(self.rows) for c in range(self.cols)]
        self.out = {(r, c): (getattr(dut, f"o__{r}__{c}__valid"),
                             getattr(dut, f"o__{r}__{c}__ready"),
                             getattr(dut, f"o__{r}__{c}__payload")) for r, c in self.pes}
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self, row_ids, col_ids):
        dut = self.dut
        dut.i__valid.value = 0
        for _, ready, _ in self.out.values():
            ready.value = 0
        dut.row_id.value = sum(v << (r * self.rb) for r, v in enumerate(row_ids))
        dut.col_id.value = sum(col_ids[r][c] << ((r * self.cols + c) * self.cb)
                               for r, c in self.pes)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def targets(self, tag, row_ids, col_ids):
        return {(r, c) for r, c in self.pes
                if takes(tag[0], row_ids[r], self.rb) and takes(tag[1], col_ids[r][c], self.cb)}

    async def run(self, row_ids, col_ids, packets, rng, idle, stalls, drain=6):
        """Send ``packets`` (data, row tag, col tag); return (deliveries per PE, accept cycles)."""
        dut = self.dut
        await self.reset(row_ids, col_ids)
        got = {pe: [] for pe in self.pes}
        held = {}
        accepted = []
        index, valid, taken, cycle, quiet = 0, False, set(), 0, 0
        while quiet < drain:
            assert cycle < 50 * len(packets) + 1000, "GIN made no progress"
            if not valid and index < len(packets) and rng.random() >= idle:
                valid = True
                d, rt, ct = packets[index]
                dut.i__payload.value = self.layout.const(
                    {"data": d, "row": rt, "col": ct}).as_bits()
            dut.i__valid.value = int(valid)
            ready = {pe: rng.random() >= stalls[pe] for pe in self.pes}
            for pe, (_, r_handle, _) in self.out.items():
                r_handle.value = int(ready[pe])
            await FallingEdge(dut.clk)
            packet = packets[index] if valid else None
            targets = self.targets(packet[1:], row_ids, col_ids) if valid else set()
            for pe, (v_handle, _, p_handle) in self.out.items():
                if not int(v_handle.value):
                    assert pe not in held, f"PE {pe}: valid withdrawn before ready"
                    continue
                data = to_signed(int(p_handle.value), self.data_bits)
                if pe in held:
                    assert data == held[pe], f"PE {pe}: payload changed before ready"
                if not ready[pe]:
                    held[pe] = data
                    continue
                held.pop(pe, None)
                assert packet is not None, f"PE {pe} got {data} with no packet offered"
                assert data == packet[0], f"PE {pe} got {data} while {packet} was offered"
                assert pe in targets, f"PE {pe} with IDs ({row_ids[pe[0]]}, " \
                                      f"{col_ids[pe[0]][pe[1]]}) got packet {packet}"
                assert pe not in taken, f"PE {pe} got packet {index} twice"
                taken.add(pe)
                got[pe].append(data)
            if valid and int(dut.i__ready.value):
                assert taken == targets, \
                    f"packet {index} {packet} accepted with {sorted(targets - taken)} missing"
                accepted.append(cycle)
                taken, valid = set(), False
                index += 1
            quiet = quiet + 1 if index == len(packets) else 0
            cycle += 1
            await RisingEdge(dut.clk)
        return got, accepted

    def expected(self, row_ids, col_ids, packets):
        want = {pe: [] for pe in self.pes}
        for d, rt, ct in packets:
            for pe in self.targets((rt, ct), row_ids, col_ids):
                want[pe].append(d)
        return want


@cocotb.test()
async def gin_random(dut):
    """Random tags under random IDs and random back-pressure at every PE."""
    seed = env("SEED")
    dut._log.info(f"OMMATIDIA_SEED={seed}")
    rng = random.Random(seed)
    tb = GINBench(dut)
    row_ids, col_ids = random_ids(rng, tb.rows, tb.cols, tb.rb, tb.cb)
    base = -(1 << (tb.data_bits - 1))
    packets = [(base + k, *random_tag(rng, row_ids, col_ids, tb.rb, tb.cb))
               for k in range(env("PACKETS"))]
    stalls = {pe: rng.choice([0.0, 0.3, 0.7]) for pe in tb.pes}
    got, _ = await tb.run(row_ids, col_ids, packets, rng, 0.2, stalls)
    want = tb.expected(row_ids, col_ids, packets)
    for pe in tb.pes:
        assert got[pe] == want[pe], f"PE {pe}: got {got[pe]}, want {want[pe]}"
    dut._log.info(f"{sum(map(len, want.values()))} deliveries of {len(packets)} packets")


@cocotb.test()
async def gin_throughput(dut):
    """One packet per cycle while every target is ready."""
    rng = random.Random(env("SEED") + 1)
    tb = GINBench(dut)
    row_ids, col_ids = random_ids(rng, tb.rows, tb.cols, tb.rb, tb.cb)
    n = 24
    packets = [(k, *random_tag(rng, row_ids, col_ids, tb.rb, tb.cb)) for k in range(n)]
    got, accepted = await tb.run(row_ids, col_ids, packets, rng, 0.0,
                                 {pe: 0.0 for pe in tb.pes})
    assert accepted == list(range(n)), accepted
    assert got == tb.expected(row_ids, col_ids, packets)
    dut._log.info(f"{n} packets accepted in cycles {accepted[0]}..{accepted[-1]}")


@cocotb.test()
async def gin_generated_ids(dut):
    """IDs and tags from gen.multicast for one R x E set with stride U: each PE gets exactly
    its filter row and its ifmap row (e*U + i)."""
    rng = random.Random(env("SEED") + 2)
    tb = GINBench(dut)
    stride = env("STRIDE")
    noc = NoCConfig(row_id_bits=tb.rb, col_id_bits=tb.cb)
    s = PESet(tb.rows, tb.cols, stride=stride)
    plan = plan_multicast([s], tb.rows, tb.cols, noc)
    want = {"filter": {(r, c): [r] for r, c in tb.pes},
            "ifmap": {(r, c): [c * stride + r] for r, c in tb.pes}}
    for kind in ("filter", "ifmap"):
        ids = plan.gin(kind)
        packets = [(key[2], rt, ct) for key, tags in ids.tags.items() for rt, ct in tags]
        rng.shuffle(packets)
        got, _ = await tb.run(list(ids.row_ids), [list(x) for x in ids.col_ids], packets, rng,
                              0.1, {pe: 0.3 for pe in tb.pes})
        assert got == want[kind], kind
        dut._log.info(f"{kind}: {len(packets)} packets for {len(ids.tags)} rows")


@cocotb.test()
async def gon_random(dut):
    """Every psum leaves once, tagged with its PE, in each PE's order."""
    seed = env("SEED")
    rng = random.Random(seed)
    rows, cols, bits = env("ROWS"), env("COLS"), env("DATA_BITS")
    layout = gon_packet_layout(signed(bits), rows, cols)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    pes = [(r, c) for r in range(rows) for c in range(cols)]
    ports = {(r, c): (getattr(dut, f"i__{r}__{c}__valid"), getattr(dut, f"i__{r}__{c}__ready"),
                      getattr(dut, f"i__{r}__{c}__payload")) for r, c in pes}
    items = {pe: [rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1))
                  for _ in range(rng.randrange(env("PACKETS")))] for pe in pes}
    idle = {pe: rng.random() * 0.8 for pe in pes}
    for valid, _, _ in ports.values():
        valid.value = 0
    dut.o__ready.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    total = sum(map(len, items.values()))
    pending = {pe: list(v) for pe, v in items.items()}
    offering = {pe: False for pe in pes}
    out, held, quiet, cycle = [], None, 0, 0
    while quiet < 6:
        assert cycle < 20 * total + 1000, "GON made no progress"
        for pe, (valid, _, payload) in ports.items():
            if not offering[pe] and pending[pe] and rng.random() >= idle[pe]:
                offering[pe] = True
                payload.value = to_unsigned(pending[pe][0], bits)
            valid.value = int(offering[pe])
        ready = rng.random() >= 0.4
        dut.o__ready.value = int(ready)
        await FallingEdge(dut.clk)
        if int(dut.o__valid.value):
            raw = int(dut.o__payload.value)
            if held is not None:
                assert raw == held, "GON payload changed before ready"
            if ready:
                v = layout.from_bits(raw)
                out.append((v.data, v.row, v.col))
                held = None
            else:
                held = raw
        else:
            assert held is None, "GON valid withdrawn before ready"
        for pe, (_, r_handle, _) in ports.items():
            if offering[pe] and int(r_handle.value):
                offering[pe] = False
                pending[pe].pop(0)
        quiet = quiet + 1 if len(out) >= total else 0
        cycle += 1
        await RisingEdge(dut.clk)
    assert len(out) == total
    for pe in pes:
        assert [d for d, r, c in out if (r, c) == pe] == items[pe], pe
    dut._log.info(f"{total} psums out in {cycle} cycles")
