"""Formal proofs (SymbiYosys, k-induction) of the GIN on a 2x2 array with 2-bit tags.

The harness gives the GIN arbitrary constant IDs, an arbitrary packet stream
that obeys the stream rules, and arbitrary back-pressure at every PE, and
proves for all time:

- PE (r, c) is offered a packet exactly while the packet is on the GIN's
  input, its tags match the PE's IDs and the PE has not yet taken it; what it
  takes is the packet's data;
- no PE takes a packet twice, and the GIN accepts a packet exactly when every
  matching PE has taken it or takes it in that cycle (so a PE that is not
  ready stalls the GIN, and one packet goes per cycle while all are ready);
- the stream rules hold at every port: each PE output and each Y-bus to
  X-bus stream keeps ``valid`` and ``payload`` until taken.

The last block of assertions only states the reachable internal state (the
"delivered" bits of the forks) so that induction succeeds. A mutated design
(a fork that forgets what it delivered, an MC that ignores broadcasts) must
fail.
"""

import pathlib

import pytest
from amaranth import Elaboratable, Module, Signal, Value, unsigned
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover

from ommatidia.hw import noc
from ommatidia.hw.noc import GIN
from ommatidia.sim.formal import FormalFailure, prove

ROWS, COLS, ROW_BITS, COL_BITS, DATA_BITS = 2, 2, 2, 2, 2


def _any(terms):
    result = 0
    for term in terms:
        result = result | term
    return result


def _all(terms):
    result = 1
    for term in terms:
        result = result & term
    return result


class GINHarness(Elaboratable):
    def __init__(self, covers: bool = False):
        self.gin = GIN(ROWS, COLS, unsigned(DATA_BITS), ROW_BITS, COL_BITS)
        self.covers = covers

    def stream_rule(self, m, port, name):
        """Assert that ``port`` keeps valid and payload until taken; return its stall register."""
        stalled = Signal(name=f"{name}_stalled")
        held = Signal.like(port.payload, name=f"{name}_held")
        m.d.sync += [stalled.eq(port.valid & ~port.ready), held.eq(port.payload)]
        with m.If(stalled):
            m.d.comb += Assert(port.valid, f"{name}: valid withdrawn before ready")
            m.d.comb += Assert(Value.cast(port.payload) == Value.cast(held),
                               f"{name}: payload changed before ready")
        return stalled, held

    def elaborate(self, platform):
        m = Module()
        m.submodules.gin = gin = self.gin
        row_all, col_all = (1 << ROW_BITS) - 1, (1 << COL_BITS) - 1
        for r in range(ROWS):
            m.d.comb += gin.row_id[r].eq(AnyConst(ROW_BITS))
            for c in range(COLS):
                m.d.comb += [
                    gin.col_id[r][c].eq(AnyConst(COL_BITS)),
                    gin.o[r][c].ready.eq(AnySeq(1)),
                ]
        m.d.comb += [
            gin.i.valid.eq(AnySeq(1)),
            gin.i.payload.eq(AnySeq(gin.packet_layout.size)),
        ]

        # The packet source obeys the stream rules.
        stalled = Signal()
        held = Signal(gin.packet_layout)
        m.d.sync += [stalled.eq(gin.i.valid & ~gin.i.ready), held.eq(gin.i.payload)]
        with m.If(stalled):
            m.d.comb += Assume(gin.i.valid & (gin.i.payload.as_value() == held.as_value()))

        packet = gin.i.payload
        accept = gin.i.valid & gin.i.ready
        row_hit = [Signal(name=f"row_hit_{r}") for r in range(ROWS)]
        col_hit = [[Signal(name=f"col_hit_{r}_{c}") for c in range(COLS)] for r in range(ROWS)]
        match = [[Signal(name=f"match_{r}_{c}") for c in range(COLS)] for r in range(ROWS)]
        got = [[Signal(name=f"got_{r}_{c}") for c in range(COLS)] for r in range(ROWS)]
        served = []
        for r in range(ROWS):
            m.d.comb += row_hit[r].eq((packet.row == gin.row_id[r]) | (packet.row == row_all))
            for c in range(COLS):
                o = gin.o[r][c]
                name = f"PE ({r}, {c})"
                take = o.valid & o.ready
                m.d.comb += [
                    col_hit[r][c].eq((packet.col == gin.col_id[r][c]) | (packet.col == col_all)),
                    match[r][c].eq(gin.i.valid & row_hit[r] & col_hit[r][c]),
                    Assert(o.valid == (match[r][c] & ~got[r][c]),
                           f"{name}: offered iff the tags match its IDs and it has not taken it"),
                    Assert(~take | (o.payload == packet.data), f"{name}: wrong data"),
                    Assert(~(take & got[r][c]), f"{name}: took a packet twice"),
                    Assert(~accept | ((got[r][c] | take) == match[r][c]),
                           f"{name}: packet accepted without exactly one delivery iff match"),
                ]
                with m.If(accept):
                    m.d.sync += got[r][c].eq(0)
                with m.Elif(take):
                    m.d.sync += got[r][c].eq(1)
                served.append(~match[r][c] | got[r][c] | o.ready)
        with m.If(gin.i.valid):
            m.d.comb += Assert(gin.i.ready == _all(served),
                               "GIN accepts iff every matching PE has or takes the packet")

        out_rules = {}
        for r in range(ROWS):
            for c in range(COLS):
                out_rules[r, c] = self.stream_rule(m, gin.o[r][c], f"o_{r}_{c}")
        bus_rules = [self.stream_rule(m, gin.ybus.o[r], f"ybus_o_{r}") for r in range(ROWS)]
        for r, xbus in enumerate(gin.xbuses):
            self.stream_rule(m, xbus.row_mc.o, f"xbus_{r}_row_mc_o")
            for c in range(COLS):
                self.stream_rule(m, xbus.fork.o[c], f"xbus_{r}_fork_o_{c}")

        if self.covers:
            earlier = _any(got[r][c] for r in range(ROWS) for c in range(COLS))
            everyone = _all(match[r][c] for r in range(ROWS) for c in range(COLS))
            accepted = Signal()
            m.d.sync += accepted.eq(accept & everyone)
            m.d.comb += [
                Cover(accept & earlier),
                Cover(accept & everyone & accepted & (packet.row != row_all)),
            ]

        # Induction strengthening: the reachable internal state.
        yd = gin.ybus.delivered
        with m.If(~stalled):
            m.d.comb += Assert(yd == 0)
            for r in range(ROWS):
                m.d.comb += Assert(gin.xbuses[r].fork.delivered == 0)
                for c in range(COLS):
                    m.d.comb += Assert(~got[r][c])
        with m.Else():
            m.d.comb += Assert(packet.as_value() == held.as_value())
            for r in range(ROWS):
                xd = gin.xbuses[r].fork.delivered
                m.d.comb += Assert(yd[r] | row_hit[r])
                with m.If(yd[r]):
                    m.d.comb += Assert(xd == 0)
                    for c in range(COLS):
                        m.d.comb += Assert(got[r][c] == match[r][c])
                with m.Else():
                    for c in range(COLS):
                        m.d.comb += Assert(xd[c] == (got[r][c] | ~col_hit[r][c]))
        for r in range(ROWS):
            for c in range(COLS):
                m.d.comb += Assert(~got[r][c] | match[r][c])
                o_stalled, o_held = out_rules[r, c]
                with m.If(o_stalled):
                    m.d.comb += Assert(stalled & ~got[r][c] & (o_held == held.data))
            y_stalled, _ = bus_rules[r]
            with m.If(y_stalled):
                m.d.comb += Assert(stalled & ~yd[r])
        return m


@pytest.mark.formal
def test_gin_formal(build_dir):
    prove(GINHarness(), name="gin_2x2", depth=3, build_dir=build_dir, mode="prove")


@pytest.mark.formal
def test_gin_formal_not_vacuous(build_dir):
    """The assumptions allow a packet taken by PEs on different cycles, and one multicast
    to every PE per cycle, back to back."""
    prove(GINHarness(covers=True), name="gin_2x2_cover", depth=6, build_dir=build_dir,
          mode="cover")


def _forgetful_fork(self, platform):
    """A fork without "delivered" bits: every output stays valid until the input goes."""
    m = Module()
    for k in range(self._n):
        m.d.comb += [self.o[k].valid.eq(self.i.valid), self.o[k].payload.eq(self.i.payload)]
    m.d.comb += self.i.ready.eq(_all(self.o[k].ready for k in range(self._n)))
    m.d.sync += self._delivered.eq(0)
    return m


def _no_broadcast_mc(self, platform):
    """An MC that matches only on an equal tag."""
    m = Module()
    tag = self.i.payload[self._tag_field]
    m.d.comb += [
        self.match.eq(tag == self.id),
        self.o.payload.eq(self.i.payload),
        self.o.valid.eq(self.i.valid & self.match),
        self.i.ready.eq(self.o.ready | ~self.match),
    ]
    return m


def _line_of(text: str) -> int:
    """Line of this file where the assertion containing ``text`` is made."""
    lines = pathlib.Path(__file__).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line and "Assert(" in line)


@pytest.mark.formal
@pytest.mark.parametrize("target, mutant, broken", [
    (noc.MulticastFork, _forgetful_fork, ["Assert(o.valid == (match", "Assert(~(take & got"]),
    (noc.MulticastController, _no_broadcast_mc, ["Assert(o.valid == (match"]),
], ids=["forgetful_fork", "mc_without_broadcast"])
def test_gin_formal_catches_mutants(target, mutant, broken, build_dir, monkeypatch):
    """The proof fails on a mutated GIN, with a counterexample to a stated property."""
    monkeypatch.setattr(target, "elaborate", mutant)
    with pytest.raises(FormalFailure) as info:
        prove(GINHarness(), name="gin_mutant", depth=3, build_dir=build_dir, mode="prove")
    log = (info.value.workdir / "logfile.txt").read_text()
    assert "returned FAIL for basecase" in log, "no counterexample from the base case"
    lines = {f"test_noc_formal.py:{_line_of(text)}" for text in broken}
    assert any(failure.endswith(line) or f"{line} " in failure
               for failure in info.value.failures for line in lines), info.value.failures
