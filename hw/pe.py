"""The processing element (PE) of the row-stationary array.

A PE computes the 1-D convolution of ``p`` filter rows with one ifmap row of
``q`` channels (Eyeriss's PE, JSSC 2017 section IV-C), for a runtime
configuration `PERun`:

``psum_out[k, f] = psum_in[k, f] + sum_{s<S, c<q} filter[k, c, s] * ifmap[c, f*U + s]``

Streams and orders
------------------
- ``filter``: ``p*q*S`` weights, tap-major: for s, for c, for k. Loaded into
  the filter spad at the start of a run when ``load_filter`` is set; otherwise
  the run reuses the filter rows already held (row stationarity).
- ``ifmap``: ``W*q`` activations, column-major: for x in 0..W-1, for c.
  The ifmap spad is a ring of ``ifmap_spad_depth // q`` columns (a sliding
  window); a column is overwritten only once every output has used it, so the
  next window loads while the current one computes.
- ``psum_in``: ``p`` psums per output (for f, for k), when ``accumulate`` is set.
- ``psum_out``: ``p`` psums per output (for f, for k).

Computation order is f, s, c, k (k innermost): the filter spad is read at
consecutive addresses and each ifmap value is read once per tap for all ``p``
filters. One operation issues per cycle; the first tap of an output adds the
incoming psum, the last tap emits the psum, so loading psums and emitting them
costs no extra cycles: a run takes about ``F*p*q*S`` cycles when its streams
keep up.

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

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import PEConfig

__all__ = ["PERun", "pe_run_layout", "PE", "COUNTER_BITS"]

COUNTER_BITS = 32
"""Default width of the PE counters (`PEConfig.counter_bits`)."""


def _bits(limit: int) -> int:
    """Unsigned width holding 0..limit."""
    return max(1, limit.bit_length())


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


class PE(wiring.Component):
    """Row-stationary processing element.

    Parameters
    ----------
    cfg : PEConfig
        Widths and scratchpad depths.

    Members
    -------
    run : In(stream of pe_run_layout)
        A run configuration; accepted when the PE is idle.
    filter : In(stream of signed(weight_bits))
    ifmap : In(stream of signed(act_bits))
    psum_in : In(stream of signed(psum_bits))
    psum_out : Out(stream of signed(psum_bits))
    busy : Out(1)
        High from the accepted run until its last psum and ifmap are done.
    done : Out(1)
        One-cycle pulse at the end of a run.
    mac_cycles, gated_macs, stall_cycles : Out(cfg.counter_bits)
        Since reset: MACs done, MACs skipped by zero gating, and busy cycles in
        which no operation issued because a stream was empty or blocked.
    """

    def __init__(self, cfg: PEConfig):
        if not isinstance(cfg, PEConfig):
            raise TypeError(f"PE takes a PEConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "run": In(stream.Signature(pe_run_layout(cfg))),
            "filter": In(stream.Signature(signed(cfg.weight_bits))),
            "ifmap": In(stream.Signature(signed(cfg.act_bits))),
            "psum_in": In(stream.Signature(signed(cfg.psum_bits))),
            "psum_out": Out(stream.Signature(signed(cfg.psum_bits))),
            "busy": Out(1),
            "done": Out(1),
            "mac_cycles": Out(cfg.counter_bits),
            "gated_macs": Out(cfg.counter_bits),
            "stall_cycles": Out(cfg.counter_bits),
        })

    @property
    def cfg(self) -> PEConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        m.submodules.filter_spad = filter_spad = Memory(
            shape=signed(cfg.weight_bits), depth=cfg.filter_spad_depth, init=[])
        m.submodules.ifmap_spad = ifmap_spad = Memory(
            shape=signed(cfg.act_bits), depth=cfg.ifmap_spad_depth, init=[])
        m.submodules.psum_spad = psum_spad = Memory(
            shape=signed(cfg.psum_bits), depth=cfg.psum_spad_depth, init=[])
        filter_wr = filter_spad.write_port()
        filter_rd = filter_spad.read_port(domain="sync")
        ifmap_wr = ifmap_spad.write_port()
        ifmap_rd = ifmap_spad.read_port(domain="comb")
        psum_wr = psum_spad.write_port()
        psum_rd = psum_spad.read_port(domain="comb")

        run = Signal(pe_run_layout(cfg))
        col_bits = _bits(cfg.max_ifmap_width) + 1

        # ifmap loader: column x may load once column x - ring is retired, that
        # is while x < load_limit = retired columns + ring.
        loaded = Signal(col_bits)
        load_limit = Signal(col_bits + 1)
        load_c = Signal.like(run.q)
        load_addr = Signal(range(cfg.ifmap_spad_depth))
        loading = Signal()

        # Issue stage loop state: output f, tap s, channel c, filter k.
        f = Signal.like(run.F)
        s = Signal.like(run.S)
        c = Signal.like(run.q)
        k = Signal.like(run.p)
        base = Signal(col_bits)
        column = Signal(col_bits)
        window_row = Signal(range(cfg.ifmap_spad_depth))
        tap_row = Signal(range(cfg.ifmap_spad_depth))
        filter_addr = Signal(range(cfg.filter_spad_depth))
        filter_load = Signal(range(cfg.filter_spad_depth + 1))
        computing = Signal()

        # Pipeline: issue -> read (filter spad address) -> weight (spad data
        # registered) -> multiply (product registered) -> accumulate.
        op = data.StructLayout({
            "act": signed(cfg.act_bits), "zero": 1, "k": k.shape(), "first": 1, "last": 1,
            "pin": signed(cfg.psum_bits),
        })
        read, weight, mul, accum = (Signal(op, name=f"{n}_op", reset_less=True)
                                    for n in ("read", "weight", "mul", "accum"))
        v_read, v_weight, v_mul, v_accum = (Signal(name=f"{n}_valid")
                                            for n in ("read", "weight", "mul", "accum"))
        read_filter_addr = Signal.like(filter_addr, reset_less=True)
        mul_w = Signal(signed(cfg.weight_bits), reset_less=True)
        accum_prod = Signal(signed(cfg.product_bits), reset_less=True)
        accum_psum = Signal(signed(cfg.psum_bits), reset_less=True)

        first_tap = (s == 0) & (c == 0)
        last_tap = (s == run.S - 1) & (c == run.q - 1)
        last_k = k == run.p - 1
        need_psum = first_tap & run.accumulate

        advance = ~(v_accum & accum.last & ~self.psum_out.ready)
        can_issue = computing & (loaded > column) & (~need_psum | self.psum_in.valid)
        issue = can_issue & advance
        act = Signal(signed(cfg.act_bits))
        m.d.comb += [
            ifmap_rd.addr.eq(tap_row + c),
            act.eq(ifmap_rd.data),
            filter_rd.addr.eq(read_filter_addr),
            filter_rd.en.eq(advance & v_read & ~read.zero),
            self.psum_in.ready.eq(issue & need_psum),
        ]

        # Accumulate stage: add the product to the psum read in the multiply
        # stage (forwarded when the op ahead wrote the same psum), then write the
        # psum spad, or send the psum out on the last tap.
        acc = Signal(signed(cfg.psum_bits))
        forward = v_accum & ~accum.last & (accum.k == mul.k)
        m.d.comb += [
            psum_rd.addr.eq(mul.k),
            acc.eq(Mux(accum.first, accum.pin, accum_psum) + Mux(accum.zero, 0, accum_prod)),
            psum_wr.addr.eq(accum.k),
            psum_wr.data.eq(acc),
            psum_wr.en.eq(v_accum & ~accum.last & advance),
            self.psum_out.valid.eq(v_accum & accum.last),
            self.psum_out.payload.eq(acc),
        ]

        with m.If(advance):
            m.d.sync += [
                v_read.eq(issue), v_weight.eq(v_read), v_mul.eq(v_weight), v_accum.eq(v_mul),
                read.act.eq(act), read.zero.eq(act == 0), read.k.eq(k),
                read.first.eq(first_tap), read.last.eq(last_tap),
                read.pin.eq(Mux(run.accumulate, self.psum_in.payload, 0)),
                read_filter_addr.eq(filter_addr),
                weight.eq(read), mul.eq(weight), accum.eq(mul),
                mul_w.eq(filter_rd.data),
                accum_prod.eq(mul.act * mul_w),
                accum_psum.eq(Mux(forward, acc, psum_rd.data)),
            ]

        with m.If(issue):
            m.d.sync += k.eq(k + 1)
            with m.If(last_k):
                m.d.sync += k.eq(0)
                m.d.sync += c.eq(c + 1)
                with m.If(c == run.q - 1):
                    m.d.sync += c.eq(0)
                    m.d.sync += s.eq(s + 1)
                    m.d.sync += column.eq(column + 1)
                    next_row = tap_row + run.q
                    m.d.sync += tap_row.eq(Mux(next_row >= run.ring_entries,
                                               next_row - run.ring_entries, next_row))
                    with m.If(s < run.U):
                        m.d.sync += load_limit.eq(base + s + 1 + run.ring)
                    with m.If(s == run.S - 1):
                        next_window = window_row + run.stride_entries
                        next_window = Mux(next_window >= run.ring_entries,
                                          next_window - run.ring_entries, next_window)
                        m.d.sync += [
                            s.eq(0), f.eq(f + 1), base.eq(base + run.U),
                            column.eq(base + run.U), load_limit.eq(base + run.U + run.ring),
                            window_row.eq(next_window), tap_row.eq(next_window),
                        ]
                        with m.If(f == run.F - 1):
                            m.d.sync += computing.eq(0)
            m.d.sync += filter_addr.eq(Mux(last_k & last_tap, 0, filter_addr + 1))

        # ifmap loader
        m.d.comb += [
            self.ifmap.ready.eq(loading & (loaded < run.W) & (loaded < load_limit)),
            ifmap_wr.addr.eq(load_addr),
            ifmap_wr.data.eq(self.ifmap.payload),
            ifmap_wr.en.eq(self.ifmap.valid & self.ifmap.ready),
        ]
        with m.If(self.ifmap.valid & self.ifmap.ready):
            m.d.sync += [
                load_c.eq(load_c + 1),
                load_addr.eq(Mux(load_addr == run.ring_entries - 1, 0, load_addr + 1)),
            ]
            with m.If(load_c == run.q - 1):
                m.d.sync += [load_c.eq(0), loaded.eq(loaded + 1)]

        # filter loader
        m.d.comb += [
            filter_wr.addr.eq(filter_load),
            filter_wr.data.eq(self.filter.payload),
            filter_wr.en.eq(self.filter.valid & self.filter.ready),
        ]

        stalled = Signal()
        with m.FSM():
            with m.State("IDLE"):
                # IDLE: waiting for a run configuration.
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid):
                    m.d.sync += [
                        run.eq(self.run.payload),
                        loaded.eq(0), load_limit.eq(self.run.payload.ring), load_c.eq(0),
                        load_addr.eq(0),
                        f.eq(0), s.eq(0), c.eq(0), k.eq(0), base.eq(0), column.eq(0),
                        window_row.eq(0), tap_row.eq(0), filter_addr.eq(0),
                        filter_load.eq(0), loading.eq(1),
                    ]
                    with m.If(self.run.payload.load_filter):
                        m.next = "LOAD_FILTER"
                    with m.Else():
                        m.d.sync += computing.eq(1)
                        m.next = "COMPUTE"
            with m.State("LOAD_FILTER"):
                # LOAD_FILTER: p*q*S weights into the filter spad.
                m.d.comb += [self.busy.eq(1), self.filter.ready.eq(1),
                             stalled.eq(~self.filter.valid)]
                with m.If(self.filter.valid):
                    m.d.sync += filter_load.eq(filter_load + 1)
                    with m.If(filter_load == run.filter_count - 1):
                        m.d.sync += computing.eq(1)
                        m.next = "COMPUTE"
            with m.State("COMPUTE"):
                # COMPUTE: issue one operation a cycle until every output is out
                # and the whole ifmap row is consumed.
                m.d.comb += [self.busy.eq(1), stalled.eq(computing & ~issue)]
                with m.If(~computing & ~v_read & ~v_weight & ~v_mul & ~v_accum &
                          (loaded == run.W)):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += loading.eq(0)
                    m.next = "IDLE"

        with m.If(v_accum & advance):
            with m.If(accum.zero):
                m.d.sync += self.gated_macs.eq(self.gated_macs + 1)
            with m.Else():
                m.d.sync += self.mac_cycles.eq(self.mac_cycles + 1)
        with m.If(stalled):
            m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        return m
