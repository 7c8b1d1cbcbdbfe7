"""The PE array: ``rows x cols`` PEs with their three GINs, local psum links and the GON.

`PEArray` wires the blocks of `ommatidia.hw.pe` and `ommatidia.hw.noc`
(docs/architecture.md, "Hardware"): the filter, ifmap and psum GINs deliver tagged
packets from the GLB to the PEs; each PE's psum output goes up its column
over its local link or to the GON; the GON brings psums to one GLB-side stream
tagged with the PE they left. A `run` configuration is broadcast to the
enabled PEs. Each PE is a `PECell` with what serves it alone (its psum unpacker,
its link and routes, its GON packer and queue, its ``enable`` gate), one component
written once as Verilog however large the array; `chain_psum_links` wires the cells'
links up the columns. Configuration inputs (GIN IDs, psum routes ``up``, ``enable``)
come from `ommatidia.gen.multicast.plan_for` and must be held during a pass.

Run broadcast
-------------
``run`` is offered to every PE whose ``enable`` bit is set and accepted once
each of them has taken it (a `MulticastFork`; a PE takes a run when idle,
so an idle array accepts it in one cycle). PE (r, c) runs with
``accumulate = run.accumulate | up[r + 1][c]``: a PE fed psums over a local
link always adds them, and ``run.accumulate`` says whether the PEs fed by the
psum GIN (the bottom row of a set) take psums from it. So no psum is
expected by, or may be sent to, a PE whose psums-in are unused.

Stream orders of a row-stationary pass, and why they cannot deadlock
--------------------------------------------------------------------
For one PE set (logical PE (i, e) does filter row i on ifmap row
``h = e*U + i`` and produces ofmap row e; PE (R-1, e) is the bottom of
column e, PE (0, e) sends to the GON), the GLB side sends, each stream from
its own process, all concurrent with the GON drain:

- ``filter``: filter row i (``p*q*S`` weights, the PE's tap-major order) to
  logical row i (horizontal multicast), row after row.
- ``ifmap``: column-interleaved: for x in 0..W-1, for each needed ifmap row
  h, the ``q`` values of column x, to every PE that needs row h (diagonal
  multicast).
- ``psum`` (when ``run.accumulate``): output-interleaved: for f, for e, the
  ``p`` psums of output f of ofmap row e, to PE (R-1, e) (unicast).

A GIN packet waits until every target has taken it, so one stuck target
stalls every other PE of that GIN. The orders above, not buffering, keep the
pass moving. Filters are taken in the PE's filter-load state, which needs
nothing but the filter stream. Suppose the other streams are all stuck, the
ifmap sender at column x (every column before x delivered to every PE):

1. A target T refusing column x has a full ifmap ring: it holds columns
   ``retired .. x-1`` with ``x - retired = ring >= S`` (``ring =
   ifmap_spad_depth // q``). T is at an output f with ``f*U <= retired``,
   so ``f*U + S - 1 < x``: every PE has every ifmap column of outputs up to
   f, and T waits for psum-in or for psum-out room.
2. Psum-out room: the PE above has not taken a psum of an output f' <= f
   (it takes psums of output f' at its last tap, which needs column
   f'*U + S - 1 < x, which it has); so it too waits only for psum-out room, and so on up to
   the top row, whose GON output drains.
3. Psum-in: the PE below produces output f, whose columns it has, so it
   waits for its own psum-in, and so on down to the bottom PE, which waits
   for the psum GIN. In f-major order that sender is at an output no later
   than f, for a bottom PE that has that output's columns, so by 2 it is
   taken.

(When the ifmap sender has finished, every PE has every column and 2 and 3
apply alone.) So some stream always moves until the pass is done. The psum order must be
f-major: in e-major order (all outputs of PE (R-1, 0) first) PE (R-1, 1)
fills its ring waiting for its first psum, the ifmap sender stops, and PE
(R-1, 0) never gets the columns of its later outputs (tests/test_array.py
shows that deadlock). The tests start each pass when ``busy`` is low.

Counters ``mac_cycles``, ``gated_macs`` and ``stall_cycles`` count the events
of all PEs (modulo ``2**pe.counter_bits``): each cycle they add the number of
PEs that did a MAC, gated one or stalled (`pe_event_layout`), so the array holds
three counters, not three per PE; the PEs' own counters drive nothing here.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .noc import (GIN, GON, GonPacker, GonQueue, MulticastFork, PsumRoute, PsumUnpacker,
                  gin_packet_layout, gon_packet_layout, values_layout)
from .pe import PE, pe_event_layout, pe_run_layout

__all__ = ["PEArray", "PECell", "GIN_KINDS", "COUNTERS", "config_layouts", "chain_psum_links"]

GIN_KINDS = ("filter", "ifmap", "psum")
COUNTERS = ("mac_cycles", "gated_macs", "stall_cycles")


def _grid(shape, rows: int, cols: int) -> data.ArrayLayout:
    return data.ArrayLayout(data.ArrayLayout(shape, cols), rows)


def config_layouts(cfg: ArrayConfig) -> dict:
    """Shapes of the array's configuration inputs: GIN IDs, psum link routes, PE enables."""
    rows, cols, noc = cfg.rows, cfg.cols, cfg.noc
    shapes = {}
    for kind in GIN_KINDS:
        shapes[f"{kind}_row_id"] = data.ArrayLayout(unsigned(noc.row_id_bits), rows)
        shapes[f"{kind}_col_id"] = _grid(unsigned(noc.col_id_bits), rows, cols)
    shapes["up"] = _grid(unsigned(1), rows, cols)
    shapes["enable"] = _grid(unsigned(1), rows, cols)
    return shapes


def _packet_values(cfg: ArrayConfig) -> dict:
    """The values a packet carries (`values_layout`) on the filter, ifmap and psum GINs
    and on the GON, as many as ``cfg.noc`` gives each."""
    pe, noc = cfg.pe, cfg.noc
    return {"filter": values_layout(signed(pe.weight_bits), noc.filter_gin_values),
            "ifmap": values_layout(signed(pe.act_bits), noc.ifmap_gin_values),
            "psum": values_layout(signed(pe.psum_bits), noc.psum_gin_values),
            "gon": values_layout(signed(pe.psum_bits), noc.gon_values)}


class PEArray(wiring.Component):
    """``rows x cols`` PEs with filter, ifmap and psum GINs, local psum links and the GON.

    Packets reach the PEs in the cycle the GINs accept them; psums leave the
    GON two cycles after a PE emits them (plus one cycle per local link they
    climb). See the module docstring for the send orders a pass must use.

    Grid-shaped inputs (``enable``, ``up``, ``<kind>_col_id``) hold element
    ``[r][c]`` at position ``r*cols + c`` (row 0, column 0 in the low bits),
    as `ommatidia.gen.multicast.GINIds.packed` produces them.

    PE (r, c) is the ``pe`` of `PECell` submodule ``cell_<r>_<c>`` (`cells`, `pes`).

    Parameters
    ----------
    cfg : ArrayConfig
        Array size, PE widths and spad depths, tag widths.

    Members
    -------
    filter, ifmap, psum : In(stream of gin_packet_layout)
        GIN packets from the GLB: ``data`` (``signed(weight_bits)``, or up to
        ``noc.filter_gin_values`` of them in a `values_layout`,
        ``signed(act_bits)`` or up to ``noc.ifmap_gin_values`` of them (one ifmap
        column's channels), ``signed(psum_bits)`` or up to ``noc.psum_gin_values``
        of them, which a `PsumUnpacker` of ``noc.psum_gin_queue`` packets at each PE queues
        and hands on one a cycle)
        with ``row`` and ``col`` tags of ``noc.row_id_bits`` and ``noc.col_id_bits``.
    gon : Out(stream of gon_packet_layout(signed(psum_bits), rows, cols))
        Psums to the GLB, tagged with the ``row`` and ``col`` of their PE; with
        ``noc.gon_values`` > 1 packets of up to that many (`values_layout`), each
        top PE's gathered by a `GonPacker`; with ``noc.gon_queue`` > 0 each PE's
        packets wait in a `GonQueue` of that many for the GON.
    gon_phase : In(ArrayLayout(range(gon_values), cols)), only with ``gon_values`` > 1
        The slot of each column's first psum in its group of ``gon_values`` slots.
    filter_row_id, ifmap_row_id, psum_row_id : In(ArrayLayout(row_id_bits, rows))
        Row ID of each X-bus of each GIN (configuration).
    filter_col_id, ifmap_col_id, psum_col_id : In(rows x cols of col_id_bits)
        Column ID of each PE on each GIN (configuration).
    up : In(rows x cols of 1)
        Psum routes: PE (r, c) passes its psums to PE (r - 1, c) (``up[0]`` is ignored).
    enable : In(rows x cols of 1)
        PEs that take ``run``; the others stay idle.
    run : In(stream of pe_run_layout(cfg.pe))
        The run of a pass, broadcast to the enabled PEs.
    busy : Out(1)
        Some PE is busy.
    mac_cycles, gated_macs, stall_cycles : Out(cfg.pe.counter_bits)
        Sums of the PE counters, one cycle behind.
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"PEArray takes an ArrayConfig, not {cfg!r}")
        self._cfg = cfg
        rows, cols, pe, noc = cfg.rows, cfg.cols, cfg.pe, cfg.noc
        rb, cb = noc.row_id_bits, noc.col_id_bits
        shapes = _packet_values(cfg)
        self._gin_shapes = {kind: shapes[kind] for kind in GIN_KINDS}
        self._gon_shape = shapes["gon"]
        members = {}
        for kind in GIN_KINDS:
            members[kind] = In(stream.Signature(
                gin_packet_layout(self._gin_shapes[kind], rb, cb)))
        members["gon"] = Out(stream.Signature(
            gon_packet_layout(self._gon_shape, rows, cols)))
        if noc.gon_values > 1:
            members["gon_phase"] = In(data.ArrayLayout(range(noc.gon_values), cols))
        members.update({name: In(shape) for name, shape in config_layouts(cfg).items()})
        members["run"] = In(stream.Signature(pe_run_layout(pe)))
        members["busy"] = Out(1)
        for name in COUNTERS:
            members[name] = Out(cfg.pe.counter_bits)
        super().__init__(members)
        self._cells = [[PECell(cfg) for _ in range(cols)] for _ in range(rows)]

    @property
    def cfg(self) -> ArrayConfig:
        return self._cfg

    @property
    def cells(self) -> list:
        """The PE cells, ``cells[r][c]`` (for inspection)."""
        return [list(line) for line in self._cells]

    @property
    def pes(self) -> list:
        """The PEs, ``pes[r][c]`` (for inspection)."""
        return [[cell.pe for cell in line] for line in self._cells]

    def elaborate(self, platform):
        cfg = self._cfg
        rows, cols = cfg.rows, cfg.cols
        rb, cb = cfg.noc.row_id_bits, cfg.noc.col_id_bits
        m = Module()

        gins = {}
        for kind in GIN_KINDS:
            gin = GIN(rows, cols, self._gin_shapes[kind], rb, cb)
            m.submodules[f"{kind}_gin"] = gins[kind] = gin
            wiring.connect(m, wiring.flipped(getattr(self, kind)), gin.i)
            m.d.comb += [gin.row_id.eq(getattr(self, f"{kind}_row_id")),
                         gin.col_id.eq(getattr(self, f"{kind}_col_id"))]
        m.submodules.gon = gon = GON(rows, cols, self._gon_shape)
        if cfg.noc.gon_values > 1:
            F, p = self.run.payload.F, self.run.payload.p
            total = Signal(len(F) + len(p))
            m.d.comb += total.eq(F * p)
        m.submodules.run_fork = fork = MulticastFork(pe_run_layout(cfg.pe), rows * cols)
        wiring.connect(m, wiring.flipped(self.run), fork.i)
        wiring.connect(m, gon.o, wiring.flipped(self.gon))

        busy = []
        for r in range(rows):
            for c in range(cols):
                cell = self._cells[r][c]
                m.submodules[f"cell_{r}_{c}"] = cell
                for kind in GIN_KINDS:
                    wiring.connect(m, gins[kind].o[r][c], getattr(cell, kind))
                wiring.connect(m, cell.gon, gon.i[r][c])
                wiring.connect(m, fork.o[r * cols + c], cell.run)
                m.d.comb += cell.enable.eq(self.enable[r][c])
                if cfg.noc.gon_values > 1:
                    m.d.comb += [cell.gon_phase.eq(self.gon_phase[c]), cell.gon_total.eq(total)]
                busy.append(cell.busy)

        chain_psum_links(m, self._cells, self.up)
        m.d.comb += self.busy.eq(Cat(busy).any())
        cells = [cell for line in self._cells for cell in line]
        for name, field in zip(COUNTERS, ("mac", "gated", "stall")):
            counter = getattr(self, name)
            m.d.sync += counter.eq(counter + _popcount([getattr(cell.events, field)
                                                        for cell in cells]))
        return m


class PECell(wiring.Component):
    """One PE of the array with what serves it alone: its psum unpacker, its `PsumRoute` (its
    part of the local psum links), its GON packer and queue, and its ``enable`` gate on ``run``.

    Every cell of an array is the same component (one Verilog module); its place in the
    array is only in how `PEArray` wires it. The array ties ``up`` to 0 on row 0 (its
    psums always go to the GON) and ``link_in`` to invalid, ``fed_by_link`` to 0 on the
    bottom row.

    Parameters
    ----------
    cfg : ArrayConfig
        PE widths and spad depths, the NoC's packet sizes and queues.

    Members
    -------
    filter, ifmap : In(stream of values_layout(...))
        The filter and ifmap GINs' output for the PE.
    psum : In(stream of values_layout(signed(psum_bits), noc.psum_gin_values))
        The psum GIN's output for the PE; with ``psum_gin_values`` > 1 through a
        `PsumUnpacker` of ``noc.psum_gin_queue`` packets.
    link_in : In(stream of signed(psum_bits))
        The link of the cell below.
    link_out : Out(stream of signed(psum_bits))
        The cell's `LocalPsumLink`, to the cell above.
    up : In(1)
        The PE passes its psums to the cell above, not to the GON.
    fed_by_link : In(1)
        The ``up`` of the cell below: the PE takes its psums-in from ``link_in`` and
        accumulates them.
    enable : In(1)
        The PE takes ``run``; else ``run`` is accepted at once.
    run : In(stream of pe_run_layout(cfg.pe))
    gon : Out(stream of values_layout(signed(psum_bits), noc.gon_values))
        To the GON; with ``gon_values`` > 1 through a `GonPacker`, with ``gon_queue``
        through a `GonQueue`.
    gon_phase : In(range(gon_values)), gon_total : In(...), only with ``gon_values`` > 1
        The `GonPacker`'s ``phase`` and ``total``.
    busy : Out(1)
    events : Out(pe_event_layout(cfg.pe.lanes))
        The PE's counter events.
    """

    def __init__(self, cfg: ArrayConfig):
        pe, noc = cfg.pe, cfg.noc
        self._pe_cfg, self._noc = pe, noc
        self._psum = signed(pe.psum_bits)
        shapes = _packet_values(cfg)
        self._psum_gin, self._gon_shape = shapes["psum"], shapes["gon"]
        self._pe = PE(pe, noc.filter_gin_values, noc.ifmap_gin_values)
        psum = stream.Signature(self._psum)
        run = pe_run_layout(pe)
        members = {
            "filter": In(stream.Signature(shapes["filter"])),
            "ifmap": In(stream.Signature(shapes["ifmap"])),
            "psum": In(stream.Signature(self._psum_gin)),
            "link_in": In(psum),
            "link_out": Out(psum),
            "up": In(1),
            "fed_by_link": In(1),
            "enable": In(1),
            "run": In(stream.Signature(run)),
            "gon": Out(stream.Signature(self._gon_shape)),
            "busy": Out(1),
            "events": Out(pe_event_layout(pe.lanes)),
        }
        if noc.gon_values > 1:
            members["gon_phase"] = In(range(noc.gon_values))
            members["gon_total"] = In(run["F"].shape.width + run["p"].shape.width)
        super().__init__(members)

    @property
    def pe(self) -> PE:
        return self._pe

    def elaborate(self, platform):
        noc = self._noc
        m = Module()
        m.submodules.pe = pe = self._pe
        m.submodules.route = route = PsumRoute(self._psum)
        wiring.connect(m, wiring.flipped(self.filter), pe.filter)
        wiring.connect(m, wiring.flipped(self.ifmap), pe.ifmap)
        if noc.psum_gin_values == 1:
            wiring.connect(m, wiring.flipped(self.psum), route.gin)
        else:
            m.submodules.unpacker = unpacker = PsumUnpacker(
                self._psum, noc.psum_gin_values, noc.psum_gin_queue)
            wiring.connect(m, wiring.flipped(self.psum), unpacker.i)
            wiring.connect(m, unpacker.o, route.gin)
        wiring.connect(m, pe.psum_out, route.pe_out)
        wiring.connect(m, route.pe_in, pe.psum_in)
        wiring.connect(m, wiring.flipped(self.link_in), route.link_in)
        wiring.connect(m, route.link_out, wiring.flipped(self.link_out))
        m.d.comb += [route.up.eq(self.up), route.fed_by_link.eq(self.fed_by_link)]
        out = route.gon
        if noc.gon_values > 1:
            m.submodules.packer = packer = GonPacker(self._psum, noc.gon_values,
                                                     len(self.gon_total))
            wiring.connect(m, out, packer.i)
            m.d.comb += [packer.phase.eq(self.gon_phase), packer.total.eq(self.gon_total)]
            out = packer.o
        if noc.gon_queue:
            m.submodules.gon_queue = queue = GonQueue(self._gon_shape, noc.gon_queue)
            wiring.connect(m, out, queue.i)
            out = queue.o
        wiring.connect(m, out, wiring.flipped(self.gon))
        m.d.comb += [
            pe.run.valid.eq(self.run.valid & self.enable),
            self.run.ready.eq(pe.run.ready | ~self.enable),
            pe.run.payload.eq(self.run.payload),
            pe.run.payload.accumulate.eq(self.run.payload.accumulate | self.fed_by_link),
            self.busy.eq(pe.busy),
            self.events.eq(pe.events),
        ]
        return m


def chain_psum_links(m: Module, grid: list, up) -> None:
    """Wire the local psum links of ``grid[r][c]`` (`PECell` or `PsumRoute`s) up each column
    with routes ``up[r][c]``: each link to the one above's ``link_in``, each ``fed_by_link``
    to the ``up`` of the one below. Row 0's ``up`` stays 0 (its psums go to the GON), the
    bottom row's ``link_in`` invalid and ``fed_by_link`` 0 (fed by the psum GIN)."""
    for r, line in enumerate(grid):
        for c, cell in enumerate(line):
            if r > 0:
                m.d.comb += cell.up.eq(up[r][c])
            if r + 1 < len(grid):
                wiring.connect(m, grid[r + 1][c].link_out, cell.link_in)
                m.d.comb += cell.fed_by_link.eq(up[r + 1][c])


def _popcount(bits: list):
    """Number of ``bits`` set, as a balanced adder tree of the narrowest sums."""
    values = list(bits)
    while len(values) > 1:
        values = [values[k] + values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
