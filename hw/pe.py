"""The processing element (PE) of the row-stationary array.

A PE computes the 1-D convolution of ``p`` filter rows with one ifmap row of
``q`` channels (Eyeriss's PE, JSSC 2017 section IV-C), for a runtime
configuration `PERun`:

``psum_out[k, f] = psum_in[k, f] + sum_{s<S, c<q} filter[k, c, s] * ifmap[c, f*U + s]``

Streams and orders
------------------
- ``filter``: ``p*q*S`` weights, tap-major: for s, for c, for k. Loaded into
  the filter spad at the start of a run when ``load_filter`` is set; otherwise
  the run reuses the filter rows already held (row stationarity). With
  `PEConfig.stream_filters` the run computes while they load: an operation of the
  first output, which reads the spad in load order, issues once its weights are in.
- ``ifmap``: ``W*q`` activations, column-major: for x in 0..W-1, for c.
  The ifmap spad is a ring of ``ifmap_spad_depth // q`` columns (a sliding
  window); a column is overwritten only once every output has used it, so the
  next window loads while the current one computes. With ``ifmap_values`` > 1 a
  packet carries up to that many consecutive channels of one column (never two
  columns' values), written in one cycle into the spad's banks.
- ``psum_in``: ``p`` psums per output (for f, for k), when ``accumulate`` is set,
  taken by the operations of the last tap.
- ``psum_out``: ``p`` psums per output (for f, for k).

Computation order is f, s, c, k (k innermost): the filter spad is read at
consecutive addresses and each ifmap value is read once per tap for all ``p``
filters. One operation issues per cycle; the last tap of an output adds the
incoming psum and emits the sum, so psums cost no extra cycles: a run takes
about ``F*p*q*S`` cycles when its streams keep up. Adding the psum from below
after the PE's own MACs for that output (as Eyeriss does) lets every PE of a
psum chain work on the same output at once: a PE waits for the PE below only
at its last tap, not before its first.

MAC lanes (`PEConfig.lanes`): with ``p`` a multiple of ``lanes`` an operation does the
``lanes`` filters ``k .. k + lanes - 1`` with one ifmap value, their weights read from
``lanes`` filter spad banks and their psums from ``lanes`` psum spad banks (filter
``k`` in bank ``k % lanes``); the last (tap, channel)'s operations, and every one of a
run of another ``p``, are single: filter ``k`` on lane ``k % lanes``, its weight
broadcast to the lanes (`ommatidia.gen.model.pe.Schedule`).

Pipeline, one stage a cycle: issue (ifmap spad read) -> read (zero test
registered; filter spad read unless the activation is zero) -> weight (spad
data registered, so no block-RAM output feeds the multiplier) -> multiply
(product and psum spad entry registered) -> accumulate (add and write back to
the psum spad, or psum out).
Zero gating: an ifmap value of zero does not read the filter spad and does
not update the accumulator; it is counted in ``gated_macs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from amaranth import Array, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import PEConfig, check_int

from .noc import values_layout

__all__ = ["PERun", "pe_run_layout", "pe_event_layout", "PE", "COUNTER_BITS"]

COUNTER_BITS = 32
"""Default width of the PE counters (`PEConfig.counter_bits`)."""


def _bits(limit: int) -> int:
    """Unsigned width holding 0..limit."""
    return max(1, limit.bit_length())


def pe_event_layout(lanes: int = 1) -> data.StructLayout:
    """A PE's counter events of one cycle: MACs done, MACs gated (up to ``lanes`` each),
    a stall cycle."""
    return data.StructLayout({"mac": unsigned(_bits(lanes)), "gated": unsigned(_bits(lanes)),
                              "stall": 1})


def pe_run_layout(cfg: PEConfig) -> data.StructLayout:
    """Payload of the PE's ``run`` stream: one `PERun`, with derived fields."""
    depth = _bits(cfg.ifmap_spad_depth)
    return data.StructLayout({
        "S": unsigned(_bits(cfg.max_filter_width)),
        "W": unsigned(_bits(cfg.max_ifmap_width)),
        "F": unsigned(_bits(cfg.max_ifmap_width)),
        "U": unsigned(depth),
        "p": unsigned(_bits(cfg.psum_spad_depth)),
        "q": unsigned(depth),
        "filter_count": unsigned(_bits(cfg.filter_spad_depth)),
        "ring": unsigned(depth),
        "ring_entries": unsigned(depth),
        "stride_entries": unsigned(depth),
        "load_filter": 1,
        "accumulate": 1,
    })


@dataclass(frozen=True)
class PERun:
    """One run of a PE: ``p`` filter rows of length ``S`` over ``q`` channels
    of an ifmap row of width ``W`` with stride ``U``.

    ``load_filter`` loads new filter rows first; ``accumulate`` adds the
    ``psum_in`` stream to the outputs (else they start from zero).
    """

    S: int
    W: int
    U: int = 1
    p: int = 1
    q: int = 1
    load_filter: bool = True
    accumulate: bool = False

    @property
    def F(self) -> int:
        """Outputs per filter: ``(W - S) // U + 1``."""
        return (self.W - self.S) // self.U + 1

    @property
    def macs(self) -> int:
        return self.F * self.p * self.q * self.S

    def ring_columns(self, cfg: PEConfig) -> int:
        """ifmap spad capacity in columns of ``q`` values."""
        return cfg.ifmap_spad_depth // self.q

    def check(self, cfg: PEConfig) -> None:
        """Raise ValueError naming the parameter and the limit it breaks."""
        for name in ("S", "W", "U", "p", "q"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PERun.{name} must be a positive integer, not {value!r}")
        if self.S > cfg.max_filter_width:
            raise ValueError(f"PERun.S = {self.S} exceeds max_filter_width = "
                             f"{cfg.max_filter_width}")
        if self.W > cfg.max_ifmap_width:
            raise ValueError(f"PERun.W = {self.W} exceeds max_ifmap_width = "
                             f"{cfg.max_ifmap_width}")
        if self.W < self.S:
            raise ValueError(f"PERun.W = {self.W} is shorter than the filter row S = {self.S}")
        if self.p > cfg.psum_spad_depth:
            raise ValueError(f"PERun.p = {self.p} filters exceed psum_spad_depth = "
                             f"{cfg.psum_spad_depth}")
        if self.p * self.q * self.S > cfg.filter_spad_depth:
            raise ValueError(f"PERun p*q*S = {self.p * self.q * self.S} filter weights exceed "
                             f"filter_spad_depth = {cfg.filter_spad_depth}")
        if self.q * self.S > cfg.ifmap_spad_depth:
            raise ValueError(f"PERun q*S = {self.q * self.S} ifmap values exceed "
                             f"ifmap_spad_depth = {cfg.ifmap_spad_depth}")
        if self.U > self.ring_columns(cfg):
            raise ValueError(f"PERun.U = {self.U} exceeds the ifmap spad's "
                             f"{self.ring_columns(cfg)} columns of q = {self.q}")

    def fields(self, cfg: PEConfig) -> dict:
        """Field values of `pe_run_layout` (checked first)."""
        self.check(cfg)
        ring = self.ring_columns(cfg)
        return {
            "S": self.S, "W": self.W, "F": self.F, "U": self.U, "p": self.p, "q": self.q,
            "filter_count": self.p * self.q * self.S, "ring": ring,
            "ring_entries": ring * self.q, "stride_entries": self.U * self.q,
            "load_filter": int(self.load_filter), "accumulate": int(self.accumulate),
        }

    def const(self, cfg: PEConfig):
        """The run as a constant of `pe_run_layout`."""
        return pe_run_layout(cfg).const(self.fields(cfg))


def _banked(m: Module, name: str, bits: int, depth: int, banks: int, read_domain: str):
    """A spad of ``depth`` signed ``bits``-bit entries in ``banks`` memories (entry ``i``
    in bank ``i % banks``), so a packet of ``banks`` values is written in one cycle: each
    bank's write and read port."""
    wr, rd = [], []
    for b in range(banks):
        bank = Memory(shape=signed(bits), depth=-(-depth // banks), init=[])
        m.submodules[name if banks == 1 else f"{name}_{b}"] = bank
        wr.append(bank.write_port())
        rd.append(bank.read_port(domain=read_domain))
    return wr, rd


def _write_packet(m: Module, ports, name: str, start: Value, values, n: Value, take: Value):
    """Write a packet's ``n`` values to entries ``start ..`` of a spad banked over
    ``ports`` (entry ``i`` in bank ``i % len(ports)``), each bank its value, in one cycle."""
    bits = (len(ports) - 1).bit_length()
    for b, wr in enumerate(ports):
        lane = Signal(bits, name=f"{name}_lane{b}")
        m.d.comb += [lane.eq(b - start[:bits]), wr.addr.eq((start + lane)[bits:]),
                     wr.data.eq(values[lane]), wr.en.eq(take & (lane < n))]


def _shift_add(a: Value, w: Value) -> Value:
    """``a * w`` (both signed) as the sum of ``w``'s bits' partial products: logic that
    synthesis does not map to a DSP block (`PEConfig.lut_mul_lanes`)."""
    top = len(w) - 1
    terms = [Mux(w[i], a << i, 0) for i in range(top)] + [Mux(w[top], -(a << top), 0)]
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                 for k in range(0, len(terms), 2)]
    return terms[0]


class _Spads(NamedTuple):
    """Write and read ports of the PE's three scratchpads (per bank)."""

    filter_wr: list
    filter_rd: list
    ifmap_wr: list
    ifmap_rd: list
    psum_wr: list
    psum_rd: list


class _Registers:
    """The PE's registers: the run, the ifmap ring loader, the issue loop and the MAC pipeline."""

    def __init__(self, cfg: PEConfig, values: int):
        self.run = Signal(pe_run_layout(cfg))
        col_bits = _bits(cfg.max_ifmap_width) + 1

        # ifmap loader: column x may load once column x - ring is retired, that
        # is while x < load_limit = retired columns + ring.
        self.loaded = Signal(col_bits)
        self.load_limit = Signal(col_bits + 1)
        self.load_c = Signal.like(self.run.q)
        self.load_addr = Signal(range(cfg.ifmap_spad_depth))
        self.loading = Signal()

        # Issue stage loop state: output f, tap s, channel c, filter k.
        self.f = Signal.like(self.run.F)
        self.s = Signal.like(self.run.S)
        self.c = Signal.like(self.run.q)
        self.k = Signal.like(self.run.p)
        self.base = Signal(col_bits)
        self.column = Signal(col_bits)
        self.window_row = Signal(range(cfg.ifmap_spad_depth))
        self.tap_row = Signal(range(cfg.ifmap_spad_depth))
        self.filter_addr = Signal(range(cfg.filter_spad_depth))
        self.filter_load = Signal(range(cfg.filter_spad_depth + 1))
        self.computing = Signal()
        # The loop bounds less one, registered with the run so that no subtraction lies on
        # the issue stage's path (the Fmax of the OrangeCrab build).
        self.s_max = Signal.like(self.run.S)
        self.c_max = Signal.like(self.run.q)
        self.k_max = Signal.like(self.run.p)
        self.f_max = Signal.like(self.run.F)
        self.ring_max = Signal.like(self.load_addr)

        # Pipeline: issue -> read (filter spad address) -> weight (spad data
        # registered) -> multiply (product registered) -> accumulate.
        op = data.StructLayout({
            "act": signed(cfg.act_bits), "zero": 1, "k": self.k.shape(), "first": 1, "last": 1,
            "pin": signed(cfg.psum_bits), **({"single": 1} if cfg.lanes > 1 else {}),
        })
        self.read, self.weight, self.mul, self.accum = (
            Signal(op, name=f"{n}_op", reset_less=True)
            for n in ("read", "weight", "mul", "accum"))
        self.v_read, self.v_weight, self.v_mul, self.v_accum = (
            Signal(name=f"{n}_valid") for n in ("read", "weight", "mul", "accum"))
        self.read_filter_addr = Signal.like(self.filter_addr, reset_less=True)
        L = cfg.lanes
        self.read_block = Signal(range(values // L), reset_less=True)
        self.read_lane = Signal(range(values), reset_less=True)
        # Lanes: p a multiple of lanes runs in groups of lanes filters (``grouped``), the
        # last group at k_gmax; a single operation (the last tap's, or any when not
        # grouped) does filter k on lane k % lanes, its weight broadcast to every lane.
        self.k_gmax = Signal.like(self.run.p)
        self.grouped = Signal()

        def lanes(name, shape):
            return [Signal(shape, name=name if L == 1 else f"{name}{n}", reset_less=True)
                    for n in range(L)]
        self.mul_w = lanes("mul_w", signed(cfg.weight_bits))
        self.accum_prod = lanes("accum_prod", signed(cfg.product_bits))
        self.accum_psum = lanes("accum_psum", signed(cfg.psum_bits))


class _Issue(NamedTuple):
    """The issue stage's terms that the later stages and the controller share."""

    first_tap: Value
    last_tap: Value
    last_k: Value
    advance: Value
    issue: Value
    act: Signal
    single: Value


class PE(wiring.Component):
    """Row-stationary processing element.

    Parameters
    ----------
    cfg : PEConfig
        Widths and scratchpad depths.
    filter_values : int
        Weights a filter packet carries at most (`NoCConfig.filter_gin_values`, a
        power of two): the filter spad is that many banks, or ``cfg.lanes`` if more
        (weight ``a`` in bank ``a % banks``), so a packet is written in one cycle and
        the ``lanes`` weights of an operation are read in one.
    ifmap_values : int
        Activations an ifmap packet carries at most (`NoCConfig.ifmap_gin_values`, a
        power of two): the ifmap spad is that many banks (entry ``a`` in bank
        ``a % ifmap_values``), so a packet of one column's channels is written in one
        cycle.

    Members
    -------
    run : In(stream of pe_run_layout)
        A run configuration; accepted when the PE is idle.
    filter : In(stream of values_layout(signed(weight_bits), filter_values))
    ifmap : In(stream of values_layout(signed(act_bits), ifmap_values))
    psum_in : In(stream of signed(psum_bits))
    psum_out : Out(stream of signed(psum_bits))
    busy : Out(1)
        High from the accepted run until its last psum and ifmap are done.
    done : Out(1)
        One-cycle pulse at the end of a run.
    mac_cycles, gated_macs, stall_cycles : Out(cfg.counter_bits)
        Since reset: MACs done, MACs skipped by zero gating, and busy cycles in
        which no operation issued because a stream was empty or blocked.
    events : Out(pe_event_layout(cfg.lanes))
        This cycle's increments of the three counters, for an array that counts
        its PEs' events together (`ommatidia.hw.array.PEArray`) instead of summing
        their counters: the PE's own counters then drive nothing and synthesis
        removes them.
    """

    def __init__(self, cfg: PEConfig, filter_values: int = 1, ifmap_values: int = 1):
        if not isinstance(cfg, PEConfig):
            raise TypeError(f"PE takes a PEConfig, not {cfg!r}")
        for name, value in (("filter_values", filter_values), ("ifmap_values", ifmap_values)):
            check_int("PE", name, value, 1, 64)
            if value & (value - 1):
                raise ValueError(f"PE {name} must be a power of two, not {value}")
        self._cfg = cfg
        self._values = filter_values
        self._ifmap_values = ifmap_values
        self._banks = max(filter_values, cfg.lanes)
        super().__init__({
            "run": In(stream.Signature(pe_run_layout(cfg))),
            "filter": In(stream.Signature(values_layout(signed(cfg.weight_bits),
                                                        filter_values))),
            "ifmap": In(stream.Signature(values_layout(signed(cfg.act_bits), ifmap_values))),
            "psum_in": In(stream.Signature(signed(cfg.psum_bits))),
            "psum_out": Out(stream.Signature(signed(cfg.psum_bits))),
            "busy": Out(1),
            "done": Out(1),
            "mac_cycles": Out(cfg.counter_bits),
            "gated_macs": Out(cfg.counter_bits),
            "stall_cycles": Out(cfg.counter_bits),
            "events": Out(pe_event_layout(cfg.lanes)),
        })

    @property
    def cfg(self) -> PEConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        spads = self._scratchpads(m)
        r = _Registers(self._cfg, self._banks)
        ctl = self._issue_stage(m, r, spads)
        acc, forward = self._accumulate_stage(m, r, spads, ctl)
        self._pipeline(m, r, spads, ctl, acc, forward)
        self._issue_loop(m, r, ctl)
        self._ifmap_loader(m, r, spads)
        self._filter_loader(m, r, spads)
        stalled = self._controller(m, r, ctl)
        self._counters(m, r, ctl, stalled)
        return m

    def _scratchpads(self, m: Module) -> _Spads:
        """Filter, ifmap and psum spads; only the filter spad reads synchronously."""
        cfg = self._cfg
        filter_wr, filter_rd = _banked(m, "filter_spad", cfg.weight_bits, cfg.filter_spad_depth,
                                       self._banks, "sync")
        ifmap_wr, ifmap_rd = _banked(m, "ifmap_spad", cfg.act_bits, cfg.ifmap_spad_depth,
                                     self._ifmap_values, "comb")
        psum_wr, psum_rd = _banked(m, "psum_spad", cfg.psum_bits, cfg.psum_spad_depth,
                                   cfg.lanes, "comb")
        return _Spads(filter_wr, filter_rd, ifmap_wr, ifmap_rd, psum_wr, psum_rd)

    def _issue_stage(self, m: Module, r: _Registers, spads: _Spads) -> _Issue:
        """Issue stage: read the ifmap spad once its column is in and, at the last tap of an
        accumulating run, the psum in."""
        run, s, c, k = r.run, r.s, r.c, r.k
        first_tap = (s == 0) & (c == 0)
        last_tap = (s == r.s_max) & (c == r.c_max)
        single = last_tap | ~r.grouped
        last_k = k == (r.k_max if self._cfg.lanes == 1 else Mux(single, r.k_max, r.k_gmax))
        need_psum = last_tap & run.accumulate

        advance = ~(r.v_accum & r.accum.last & ~self.psum_out.ready)
        can_issue = r.computing & (r.loaded > r.column) & (~need_psum | self.psum_in.valid)
        if self._cfg.stream_filters:
            L = self._cfg.lanes
            last = r.filter_addr if L == 1 else Mux(single, r.filter_addr,
                                                     r.filter_addr + L - 1)
            can_issue &= last < r.filter_load
        issue = can_issue & advance
        act = Signal(signed(self._cfg.act_bits))
        lane_bits = (self._banks - 1).bit_length()
        group_bits = (self._cfg.lanes - 1).bit_length()
        read = advance & r.v_read & ~r.read.zero
        m.d.comb += self.psum_in.ready.eq(issue & need_psum)
        if len(spads.ifmap_rd) == 1:
            m.d.comb += [spads.ifmap_rd[0].addr.eq(r.tap_row + c), act.eq(spads.ifmap_rd[0].data)]
        else:
            bits = (len(spads.ifmap_rd) - 1).bit_length()
            addr = Signal.like(r.tap_row)
            m.d.comb += [addr.eq(r.tap_row + c),
                         act.eq(Array(rd.data for rd in spads.ifmap_rd)[addr[:bits]])]
            m.d.comb += [rd.addr.eq(addr[bits:]) for rd in spads.ifmap_rd]
        for rd in spads.filter_rd:
            m.d.comb += [rd.addr.eq(r.read_filter_addr[lane_bits:]), rd.en.eq(read)]
        if lane_bits > group_bits:
            with m.If(read):
                m.d.sync += r.read_block.eq(r.read_filter_addr[group_bits:lane_bits])
        if lane_bits and group_bits:
            with m.If(read):
                m.d.sync += r.read_lane.eq(r.read_filter_addr[:lane_bits])
        return _Issue(first_tap, last_tap, last_k, advance, issue, act, single)

    def _accumulate_stage(self, m: Module, r: _Registers, spads: _Spads, ctl: _Issue):
        """Accumulate stage: product plus (forwarded) psum to the psum spad; at the last tap
        plus the psum in, and out."""
        accum, L = r.accum, self._cfg.lanes
        bits = (L - 1).bit_length()
        acc = [Signal(signed(self._cfg.psum_bits), name="acc" if L == 1 else f"acc{n}")
               for n in range(L)]
        forward = r.v_accum & ~accum.last & (accum.k[bits:] == r.mul.k[bits:])
        for n in range(L):
            mine = 1 if L == 1 else ~accum.single | (accum.k[:bits] == n)
            m.d.comb += [
                spads.psum_rd[n].addr.eq(r.mul.k[bits:]),
                acc[n].eq(Mux(accum.first, 0, r.accum_psum[n]) + (accum.pin if L == 1 else 0)
                          + Mux(accum.zero, 0, r.accum_prod[n])),
                spads.psum_wr[n].addr.eq(accum.k[bits:]),
                spads.psum_wr[n].data.eq(acc[n]),
                spads.psum_wr[n].en.eq(r.v_accum & ~accum.last & ctl.advance & mine),
            ]
        forward = [forward if L == 1 else forward & (~accum.single | (accum.k[:bits] == n))
                   for n in range(L)]
        m.d.comb += [
            self.psum_out.valid.eq(r.v_accum & accum.last),
            self.psum_out.payload.eq(acc[0] if L == 1 else Array(acc)[accum.k[:bits]] + accum.pin),
        ]
        return acc, forward

    def _pipeline(self, m: Module, r: _Registers, spads: _Spads, ctl: _Issue, acc, forward):
        """Advance the MAC pipeline (read, weight, multiply, accumulate) unless psum_out blocks."""
        with m.If(ctl.advance):
            m.d.sync += [
                r.v_read.eq(ctl.issue), r.v_weight.eq(r.v_read), r.v_mul.eq(r.v_weight),
                r.v_accum.eq(r.v_mul),
                r.read.act.eq(ctl.act), r.read.zero.eq(ctl.act == 0), r.read.k.eq(r.k),
                r.read.first.eq(ctl.first_tap), r.read.last.eq(ctl.last_tap),
                r.read.pin.eq(Mux(r.run.accumulate & ctl.last_tap, self.psum_in.payload, 0)),
                r.read_filter_addr.eq(r.filter_addr),
                r.weight.eq(r.read), r.mul.eq(r.weight), r.accum.eq(r.mul),
            ]
            L, rd = self._cfg.lanes, spads.filter_rd
            if L > 1:
                m.d.sync += r.read.single.eq(ctl.single)
                one = Array(b.data for b in rd)[r.read_lane]
            for n in range(L):
                banks = rd[n::L]
                w = Array(b.data for b in banks)[r.read_block] if len(banks) > 1 else banks[0].data
                m.d.sync += [
                    r.mul_w[n].eq(w if L == 1 else Mux(r.weight.single, one, w)),
                    r.accum_prod[n].eq(_shift_add(r.mul.act, r.mul_w[n])
                                       if n >= L - self._cfg.lut_mul_lanes
                                       else r.mul.act * r.mul_w[n]),
                    r.accum_psum[n].eq(Mux(forward[n], acc[n], spads.psum_rd[n].data)),
                ]

    def _issue_loop(self, m: Module, r: _Registers, ctl: _Issue):
        """Step the loop nest f, s, c, k; after each output, slide the window U columns."""
        run, f, s, c, k = r.run, r.f, r.s, r.c, r.k
        base, window_row, tap_row = r.base, r.window_row, r.tap_row
        L = self._cfg.lanes
        step = 1 if L == 1 else Mux(ctl.single, 1, L)
        with m.If(ctl.issue):
            m.d.sync += k.eq(k + step)
            with m.If(ctl.last_k):
                m.d.sync += k.eq(0)
                m.d.sync += c.eq(c + 1)
                with m.If(c == r.c_max):
                    m.d.sync += c.eq(0)
                    m.d.sync += s.eq(s + 1)
                    m.d.sync += r.column.eq(r.column + 1)
                    next_row = tap_row + run.q
                    m.d.sync += tap_row.eq(Mux(next_row >= run.ring_entries,
                                               next_row - run.ring_entries, next_row))
                    with m.If(s < run.U):
                        m.d.sync += r.load_limit.eq(base + s + 1 + run.ring)
                    with m.If(s == r.s_max):
                        next_window = window_row + run.stride_entries
                        next_window = Mux(next_window >= run.ring_entries,
                                          next_window - run.ring_entries, next_window)
                        m.d.sync += [
                            s.eq(0), f.eq(f + 1), base.eq(base + run.U),
                            r.column.eq(base + run.U), r.load_limit.eq(base + run.U + run.ring),
                            window_row.eq(next_window), tap_row.eq(next_window),
                        ]
                        with m.If(f == r.f_max):
                            m.d.sync += r.computing.eq(0)
            m.d.sync += r.filter_addr.eq(Mux(ctl.last_k & ctl.last_tap, 0, r.filter_addr + step))

    def _ifmap_loader(self, m: Module, r: _Registers, spads: _Spads):
        """Write the ifmap stream into the ring, ``q`` values a column, up to ``load_limit``;
        a packet of ``n`` values (one column's) goes to entries ``load_addr ..``, each in
        its bank."""
        run = r.run
        take = self.ifmap.valid & self.ifmap.ready
        m.d.comb += self.ifmap.ready.eq(r.loading & (r.loaded < run.W) &
                                        (r.loaded < r.load_limit))
        IV = self._ifmap_values
        if IV == 1:
            n = 1
            wr = spads.ifmap_wr[0]
            m.d.comb += [wr.addr.eq(r.load_addr), wr.data.eq(self.ifmap.payload),
                         wr.en.eq(take)]
        else:
            n = self.ifmap.payload.n
            values = Array(self.ifmap.payload["values"][j] for j in range(IV))
            _write_packet(m, spads.ifmap_wr, "ifmap", r.load_addr, values, n, take)
        with m.If(take):
            m.d.sync += [
                r.load_c.eq(r.load_c + n),
                r.load_addr.eq(Mux(r.load_addr + n > r.ring_max, 0, r.load_addr + n)),
            ]
            with m.If(r.load_c + n > r.c_max):
                m.d.sync += [r.load_c.eq(0), r.loaded.eq(r.loaded + 1)]

    def _filter_loader(self, m: Module, r: _Registers, spads: _Spads):
        """Write the filter stream into the filter spad (in ``LOAD_FILTER``): the ``n``
        weights of a packet go to weights ``filter_load ..``, each in its bank."""
        take = self.filter.valid & self.filter.ready
        V, B = self._values, self._banks
        if B == 1:
            wr = spads.filter_wr[0]
            m.d.comb += [wr.addr.eq(r.filter_load), wr.data.eq(self.filter.payload),
                         wr.en.eq(take)]
            return
        bits = (B - 1).bit_length()
        if V == 1:
            for b, wr in enumerate(spads.filter_wr):
                m.d.comb += [wr.addr.eq(r.filter_load[bits:]), wr.data.eq(self.filter.payload),
                             wr.en.eq(take & (r.filter_load[:bits] == b))]
            return
        values = Array(self.filter.payload["values"][j] for j in range(V))
        _write_packet(m, spads.filter_wr, "filter", r.filter_load, values,
                      self.filter.payload.n, take)

    def _controller(self, m: Module, r: _Registers, ctl: _Issue):
        """Run controller (IDLE, LOAD_FILTER, COMPUTE); returns the stall condition."""
        run = r.run
        stalled = Signal()
        with m.FSM():
            with m.State("IDLE"):
                # IDLE: waiting for a run configuration.
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid):
                    m.d.sync += [
                        run.eq(self.run.payload),
                        r.s_max.eq(self.run.payload.S - 1), r.c_max.eq(self.run.payload.q - 1),
                        r.k_max.eq(self.run.payload.p - 1), r.f_max.eq(self.run.payload.F - 1),
                        r.k_gmax.eq(self.run.payload.p - self._cfg.lanes),
                        r.grouped.eq(self.run.payload.p % self._cfg.lanes == 0),
                        r.ring_max.eq(self.run.payload.ring_entries - 1),
                        r.loaded.eq(0), r.load_limit.eq(self.run.payload.ring), r.load_c.eq(0),
                        r.load_addr.eq(0),
                        r.f.eq(0), r.s.eq(0), r.c.eq(0), r.k.eq(0), r.base.eq(0),
                        r.column.eq(0), r.window_row.eq(0), r.tap_row.eq(0),
                        r.filter_addr.eq(0), r.filter_load.eq(0), r.loading.eq(1),
                    ]
                    if self._cfg.stream_filters:
                        m.d.sync += r.computing.eq(1)
                        m.next = "COMPUTE"
                        with m.If(~self.run.payload.load_filter):
                            m.d.sync += r.filter_load.eq(self.run.payload.filter_count)
                    else:
                        with m.If(self.run.payload.load_filter):
                            m.next = "LOAD_FILTER"
                        with m.Else():
                            m.d.sync += r.computing.eq(1)
                            m.next = "COMPUTE"
            with m.State("LOAD_FILTER"):
                # LOAD_FILTER: p*q*S weights into the filter spad (unless they stream in
                # during COMPUTE).
                m.d.comb += [self.busy.eq(1), self.filter.ready.eq(1),
                             stalled.eq(~self.filter.valid)]
                n = 1 if self._values == 1 else self.filter.payload.n
                with m.If(self.filter.valid):
                    m.d.sync += r.filter_load.eq(r.filter_load + n)
                    with m.If(r.filter_load + n >= run.filter_count):
                        m.d.sync += r.computing.eq(1)
                        m.next = "COMPUTE"
            with m.State("COMPUTE"):
                # COMPUTE: issue one operation a cycle until every output is out
                # and the whole ifmap row is consumed.
                m.d.comb += [self.busy.eq(1), stalled.eq(r.computing & ~ctl.issue)]
                if self._cfg.stream_filters:
                    n = 1 if self._values == 1 else self.filter.payload.n
                    m.d.comb += self.filter.ready.eq(r.filter_load < run.filter_count)
                    with m.If(self.filter.valid & self.filter.ready):
                        m.d.sync += r.filter_load.eq(r.filter_load + n)
                with m.If(~r.computing & ~r.v_read & ~r.v_weight & ~r.v_mul & ~r.v_accum &
                          (r.loaded == run.W)):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += r.loading.eq(0)
                    m.next = "IDLE"
        return stalled

    def _counters(self, m: Module, r: _Registers, ctl: _Issue, stalled):
        """Count MACs done, MACs gated on a zero activation, and stall cycles."""
        ev, L = self.events, self._cfg.lanes
        macs = 1 if L == 1 else Mux(r.accum.single, 1, L)
        m.d.comb += [ev.gated.eq(Mux(r.v_accum & ctl.advance & r.accum.zero, macs, 0)),
                     ev.mac.eq(Mux(r.v_accum & ctl.advance & ~r.accum.zero, macs, 0)),
                     ev.stall.eq(stalled)]
        for name, event in (("mac_cycles", ev.mac), ("gated_macs", ev.gated),
                            ("stall_cycles", ev.stall)):
            counter = getattr(self, name)
            with m.If(event):
                m.d.sync += counter.eq(counter + event)
