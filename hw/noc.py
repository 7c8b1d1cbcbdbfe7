"""The multicast network-on-chip: GIN, GON and local psum links (docs/architecture.md, "Hardware").

Global input network (GIN)
--------------------------
One GIN per data type (filter, ifmap, psum-in), each with its own IDs. A
packet (`gin_packet_layout`) carries data and a (row tag, column tag). The
Y-bus offers it to every X-bus; each X-bus is entered through a row
`MulticastController` holding the X-bus's row ID, and has a column
`MulticastController` with its own column ID in front of each PE. An MC
passes a packet whose tag equals its ID or is all ones (broadcast) and
consumes any other packet at once (the target is gated). One mechanism thus
gives unicast, horizontal and diagonal multicast and broadcast.

A multicast packet is complete when every matching PE has taken it; each
fork (`MulticastFork`: the Y-bus over its X-buses, each X-bus over its PEs)
keeps one "already delivered" bit per branch, so PEs may take the packet on
different cycles and none takes it twice. Only then does the GIN accept the
next packet. A matching PE that is not ready stalls the GIN.

IDs are runtime configuration: the GIN's ``row_id`` and ``col_id`` ports are
driven by configuration registers outside it (the accelerator's controller)
and must not change while a packet is in flight. The GIN is combinational: a
packet reaches its PEs in the cycle it is offered, and the GIN accepts one
packet per cycle while every matching PE is ready. The ready path runs from
every PE to the GLB port.

Global output network (GON) and local psum links
------------------------------------------------
Psums accumulate vertically up a column, as in Eyeriss: PE (r, c) passes its
psums to PE (r - 1, c) over a local link (`LocalPsumLink`, routed by each PE's `PsumRoute`), and
the top row of a PE set (its logical row 0) sends them to the GON, which
brings them from any PE to one GLB-side stream tagged with the source PE
(`gon_packet_layout`). Its arbitration is round-robin at both levels (see
`GON`). A `GonQueue` after a top PE lets it compute on while its X-bus serves the
other tops of its row.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import check_int

__all__ = [
    "values_layout", "gin_packet_layout", "gon_packet_layout", "coord_bits",
    "MulticastController", "MulticastFork", "XBus", "YBus", "GIN",
    "StreamArbiter", "GON", "GonPacker", "GonQueue", "PsumUnpacker", "LocalPsumLink", "PsumRoute",
]

MAX_DIM = 256
MAX_ID_BITS = 16


def _check_shape(owner: str, name: str, shape) -> None:
    try:
        width = Shape.cast(shape).width
    except TypeError:
        raise TypeError(f"{owner} {name} must be a shape, not {shape!r}") from None
    if width < 1:
        raise ValueError(f"{owner} {name} must be at least 1 bit wide, not {shape!r}")


def coord_bits(n: int) -> int:
    """Unsigned width of a coordinate 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


def values_layout(data_shape, n: int):
    """The data of a GIN packet carrying up to ``n`` values: ``data_shape`` itself for
    one, else ``values`` (lane ``j`` the ``j``-th value) and their number ``n`` (1..n)."""
    _check_shape("values_layout", "data_shape", data_shape)
    check_int("values_layout", "n", n, 1, MAX_DIM)
    if n == 1:
        return data_shape
    return data.StructLayout({"n": unsigned(n.bit_length()),
                              "values": data.ArrayLayout(data_shape, n)})


def gin_packet_layout(data_shape, row_id_bits: int, col_id_bits: int) -> data.StructLayout:
    """Payload of a GIN packet: ``data`` and its ``row`` and ``col`` tags."""
    _check_shape("gin_packet_layout", "data_shape", data_shape)
    check_int("gin_packet_layout", "row_id_bits", row_id_bits, 1, MAX_ID_BITS)
    check_int("gin_packet_layout", "col_id_bits", col_id_bits, 1, MAX_ID_BITS)
    return data.StructLayout({
        "data": data_shape,
        "row": unsigned(row_id_bits),
        "col": unsigned(col_id_bits),
    })


def gon_packet_layout(data_shape, rows: int, cols: int) -> data.StructLayout:
    """Payload of the GON output: ``data`` and the ``row`` and ``col`` of the PE it left."""
    _check_shape("gon_packet_layout", "data_shape", data_shape)
    check_int("gon_packet_layout", "rows", rows, 1, MAX_DIM)
    check_int("gon_packet_layout", "cols", cols, 1, MAX_DIM)
    return data.StructLayout({
        "data": data_shape,
        "row": unsigned(coord_bits(rows)),
        "col": unsigned(coord_bits(cols)),
    })


class MulticastController(wiring.Component):
    """Tag filter of a stream: passes the packets addressed to its ID, consumes the rest.

    A packet matches when its ``tag_field`` equals ``id`` or is all ones
    (broadcast). A matching packet goes to ``o`` with ``i``'s handshake; any
    other is accepted at once and dropped (the target behind the MC is gated).
    Combinational: no latency, one packet per cycle.

    Parameters
    ----------
    payload_shape : data.StructLayout
        Payload of ``i`` and ``o``; holds the tag.
    tag_field : str
        Name of the unsigned tag field in ``payload_shape``.

    Members
    -------
    id : In(tag width)
        The ID, set at configuration time.
    i : In(stream of payload_shape)
    o : Out(stream of payload_shape)
    match : Out(1)
        The packet on ``i`` is addressed to this MC.
    """

    def __init__(self, payload_shape, tag_field: str):
        if not isinstance(payload_shape, data.StructLayout):
            raise TypeError(f"MulticastController payload_shape must be a StructLayout, "
                            f"not {payload_shape!r}")
        try:
            tag_shape = payload_shape[tag_field].shape
        except KeyError:
            raise ValueError(f"MulticastController payload_shape has no field {tag_field!r}; "
                             f"it has {', '.join(name for name, _ in payload_shape)}") from None
        tag_shape = Shape.cast(tag_shape)
        if tag_shape.signed or tag_shape.width < 1:
            raise ValueError(f"MulticastController tag field {tag_field!r} must be unsigned and "
                             f"at least 1 bit wide, not {tag_shape!r}")
        self._tag_field = tag_field
        self._id_bits = tag_shape.width
        super().__init__({
            "id": In(tag_shape.width),
            "i": In(stream.Signature(payload_shape)),
            "o": Out(stream.Signature(payload_shape)),
            "match": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tag = self.i.payload[self._tag_field]
        broadcast = Const((1 << self._id_bits) - 1, self._id_bits)
        m.d.comb += [
            self.match.eq((tag == self.id) | (tag == broadcast)),
            self.o.payload.eq(self.i.payload),
            self.o.valid.eq(self.i.valid & self.match),
            self.i.ready.eq(self.o.ready | ~self.match),
        ]
        return m


class MulticastFork(wiring.Component):
    """Offer each packet to ``n`` outputs; accept the next once every output has taken it.

    Output ``k`` is valid while the input is valid and ``k`` has not yet taken
    the packet; a "delivered" bit per output remembers which have, so outputs
    may take the packet on different cycles and none takes it twice. The input
    is accepted in the cycle the last outstanding output takes the packet:
    no latency, one packet per cycle while all outputs are ready.

    Parameters
    ----------
    payload_shape : shape-like
    n : int
        Number of outputs.

    Members
    -------
    i : In(stream of payload_shape)
    o : Out(stream of payload_shape), array of n
    """

    def __init__(self, payload_shape, n: int):
        _check_shape("MulticastFork", "payload_shape", payload_shape)
        check_int("MulticastFork", "n", n, 1, MAX_DIM)
        self._n = n
        self._delivered = Signal(n, name="delivered")
        super().__init__({
            "i": In(stream.Signature(payload_shape)),
            "o": Out(stream.Signature(payload_shape)).array(n),
        })

    @property
    def delivered(self) -> Signal:
        """The "already delivered" bits, one per output (state, for inspection)."""
        return self._delivered

    def elaborate(self, platform):
        m = Module()
        n = self._n
        delivered = self._delivered
        for k in range(n):
            m.d.comb += [
                self.o[k].valid.eq(self.i.valid & ~delivered[k]),
                self.o[k].payload.eq(self.i.payload),
            ]
        m.d.comb += self.i.ready.eq(Cat(delivered[k] | self.o[k].ready for k in range(n)).all())
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += delivered.eq(0)
        with m.Else():
            for k in range(n):
                with m.If(self.o[k].valid & self.o[k].ready):
                    m.d.sync += delivered[k].eq(1)
        return m


class XBus(wiring.Component):
    """One row of a GIN: a row MC at the entry, a fork, and a column MC in front of each PE.

    A packet whose row tag does not match ``row_id`` is accepted at once. A
    matching one is offered to every column MC; PE ``c`` gets its ``data`` when
    the column tag matches ``col_id[c]``. The X-bus accepts the packet once
    every matching PE has taken it. Combinational, one packet per cycle.

    Parameters
    ----------
    cols : int
        PEs on the X-bus.
    data_shape : shape-like
        Shape of the data delivered to the PEs.
    row_id_bits, col_id_bits : int
        Tag widths.

    Members
    -------
    i : In(stream of gin_packet_layout)
    row_id : In(row_id_bits)
    col_id : In(ArrayLayout(col_id_bits, cols))
    o : Out(stream of data_shape), array of cols
    """

    def __init__(self, cols: int, data_shape, row_id_bits: int, col_id_bits: int):
        check_int("XBus", "cols", cols, 1, MAX_DIM)
        self._cols = cols
        self._layout = layout = gin_packet_layout(data_shape, row_id_bits, col_id_bits)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "row_id": In(row_id_bits),
            "col_id": In(data.ArrayLayout(unsigned(col_id_bits), cols)),
            "o": Out(stream.Signature(data_shape)).array(cols),
        })
        self._row_mc = MulticastController(layout, "row")
        self._fork = MulticastFork(layout, cols)
        self._col_mcs = [MulticastController(layout, "col") for _ in range(cols)]

    @property
    def fork(self) -> MulticastFork:
        """The fork behind the row MC (for inspection)."""
        return self._fork

    @property
    def row_mc(self) -> MulticastController:
        return self._row_mc

    def elaborate(self, platform):
        m = Module()
        m.submodules.row_mc = row_mc = self._row_mc
        m.submodules.fork = fork = self._fork
        wiring.connect(m, wiring.flipped(self.i), row_mc.i)
        wiring.connect(m, row_mc.o, fork.i)
        m.d.comb += row_mc.id.eq(self.row_id)
        for c in range(self._cols):
            col_mc = self._col_mcs[c]
            m.submodules[f"col_mc_{c}"] = col_mc
            wiring.connect(m, fork.o[c], col_mc.i)
            m.d.comb += [
                col_mc.id.eq(self.col_id[c]),
                self.o[c].valid.eq(col_mc.o.valid),
                self.o[c].payload.eq(col_mc.o.payload.data),
                col_mc.o.ready.eq(self.o[c].ready),
            ]
        return m


class YBus(MulticastFork):
    """The Y-bus of a GIN: offers every packet from the GLB port to all ``rows`` X-buses.

    A `MulticastFork` of GIN packets: the packet is complete when every X-bus
    has accepted it (an X-bus whose row MC does not match accepts at once).

    Parameters
    ----------
    rows : int
    data_shape : shape-like
    row_id_bits, col_id_bits : int

    Members
    -------
    i : In(stream of gin_packet_layout)
    o : Out(stream of gin_packet_layout), array of rows
    """

    def __init__(self, rows: int, data_shape, row_id_bits: int, col_id_bits: int):
        check_int("YBus", "rows", rows, 1, MAX_DIM)
        super().__init__(gin_packet_layout(data_shape, row_id_bits, col_id_bits), rows)


class GIN(wiring.Component):
    """Global input network for one data type: a Y-bus feeding ``rows`` X-buses of ``cols`` PEs.

    PE (r, c) receives the ``data`` of every packet whose row tag matches
    ``row_id[r]`` and whose column tag matches ``col_id[r][c]`` (equal, or all
    ones), in packet order, exactly once. The GIN accepts a packet once every
    matching PE has taken it; a packet that matches no PE is accepted at once.
    Combinational: a packet reaches ready PEs in the cycle it is offered, and
    the GIN takes one packet per cycle while all matching PEs are ready.

    ``row_id`` and ``col_id`` are configuration: hold them while packets flow.

    Parameters
    ----------
    rows, cols : int
        Size of the PE array.
    data_shape : shape-like
        The data type (``signed(weight_bits)`` for filters, ``signed(act_bits)``
        for ifmaps, ``signed(psum_bits)`` for psums).
    row_id_bits, col_id_bits : int
        Tag and ID widths; the all-ones tag is broadcast.

    Members
    -------
    i : In(stream of gin_packet_layout(data_shape, row_id_bits, col_id_bits))
        From the GLB.
    row_id : In(ArrayLayout(row_id_bits, rows))
        Row ID of each X-bus.
    col_id : In(ArrayLayout(ArrayLayout(col_id_bits, cols), rows))
        Column ID of each PE, ``col_id[r][c]``.
    o : Out(stream of data_shape), array of (rows, cols)
        To each PE, ``o[r][c]``.
    """

    def __init__(self, rows: int, cols: int, data_shape, row_id_bits: int, col_id_bits: int):
        check_int("GIN", "rows", rows, 1, MAX_DIM)
        check_int("GIN", "cols", cols, 1, MAX_DIM)
        self._rows, self._cols = rows, cols
        self._layout = gin_packet_layout(data_shape, row_id_bits, col_id_bits)
        super().__init__({
            "i": In(stream.Signature(self._layout)),
            "row_id": In(data.ArrayLayout(unsigned(row_id_bits), rows)),
            "col_id": In(data.ArrayLayout(data.ArrayLayout(unsigned(col_id_bits), cols), rows)),
            "o": Out(stream.Signature(data_shape)).array(rows, cols),
        })
        args = (data_shape, row_id_bits, col_id_bits)
        self._ybus = YBus(rows, *args)
        self._xbuses = [XBus(cols, *args) for _ in range(rows)]

    @property
    def ybus(self) -> YBus:
        """The Y-bus (for inspection)."""
        return self._ybus

    @property
    def xbuses(self) -> list:
        """The X-buses, one per row (for inspection)."""
        return list(self._xbuses)

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def packet_layout(self) -> data.StructLayout:
        return self._layout

    def elaborate(self, platform):
        m = Module()
        m.submodules.ybus = ybus = self._ybus
        wiring.connect(m, wiring.flipped(self.i), ybus.i)
        for r in range(self._rows):
            xbus = self._xbuses[r]
            m.submodules[f"xbus_{r}"] = xbus
            wiring.connect(m, ybus.o[r], xbus.i)
            m.d.comb += [
                xbus.row_id.eq(self.row_id[r]),
                xbus.col_id.eq(self.col_id[r]),
            ]
            for c in range(self._cols):
                wiring.connect(m, xbus.o[c], wiring.flipped(self.o[r][c]))
        return m


class StreamArbiter(wiring.Component):
    """Round-robin merge of ``n`` streams into one registered stream tagged with the source.

    Each cycle the output register has room (empty, or being taken), the
    arbiter grants the first valid input at or after its pointer (cyclically)
    and moves the pointer just past it, so inputs with data waiting take turns.
    Latency one cycle; one transfer per cycle.

    Parameters
    ----------
    payload_shape : shape-like
    n : int
        Number of inputs.

    Members
    -------
    i : In(stream of payload_shape), array of n
    o : Out(stream of StructLayout({"data": payload_shape, "index": coord_bits(n)}))
    """

    def __init__(self, payload_shape, n: int):
        _check_shape("StreamArbiter", "payload_shape", payload_shape)
        check_int("StreamArbiter", "n", n, 1, MAX_DIM)
        self._n = n
        self._layout = data.StructLayout({"data": payload_shape,
                                          "index": unsigned(coord_bits(n))})
        super().__init__({
            "i": In(stream.Signature(payload_shape)).array(n),
            "o": Out(stream.Signature(self._layout)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._n
        bits = coord_bits(n)
        pointer = Signal(bits)
        after = [self.i[k].valid & (pointer <= k) if k < (1 << bits) - 1 else self.i[k].valid
                 for k in range(n)]
        valid = [self.i[k].valid for k in range(n)]
        grant = Signal(bits)
        any_after = Signal()
        any_valid = Signal()
        first_after = Const(0, bits)
        first_any = Const(0, bits)
        for k in reversed(range(n)):
            first_after = Mux(after[k], k, first_after)
            first_any = Mux(valid[k], k, first_any)
        m.d.comb += [
            any_after.eq(Cat(after).any()),
            any_valid.eq(Cat(valid).any()),
            grant.eq(Mux(any_after, first_after, first_any)),
        ]
        room = ~self.o.valid | self.o.ready
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(room & (grant == k))
        with m.If(room):
            m.d.sync += self.o.valid.eq(any_valid)
            with m.If(any_valid):
                m.d.sync += [
                    self.o.payload.index.eq(grant),
                    pointer.eq(Mux(grant == n - 1, 0, grant + 1)),
                ]
                with m.Switch(grant):
                    for k in range(n):
                        with m.Case(k):
                            m.d.sync += self.o.payload.data.eq(self.i[k].payload)
        return m


class GON(wiring.Component):
    """Global output network: brings psums from any PE to one GLB-side stream.

    Each X-bus merges its ``cols`` PEs with a round-robin `StreamArbiter`, and
    the Y-bus merges the ``rows`` X-buses with another, so the output carries
    every psum exactly once, tagged with the ``row`` and ``col`` of its PE.
    Order: the psums of one PE leave in the order the PE sent them; between
    PEs both levels take turns round-robin (with every PE sending all the
    time, the order is (0, 0), (1, 0), ..., (rows-1, 0), (0, 1), (1, 1), ...).
    Latency two cycles; one packet per cycle (``data_shape``: a psum, or a
    `values_layout` of several from a `GonPacker`).

    Parameters
    ----------
    rows, cols : int
    data_shape : shape-like
        ``signed(psum_bits)``.

    Members
    -------
    i : In(stream of data_shape), array of (rows, cols)
        From each PE, ``i[r][c]`` (unused PEs: leave ``valid`` low).
    o : Out(stream of gon_packet_layout(data_shape, rows, cols))
        To the GLB.
    """

    def __init__(self, rows: int, cols: int, data_shape):
        self._layout = gon_packet_layout(data_shape, rows, cols)
        self._rows, self._cols = rows, cols
        self._data_shape = data_shape
        super().__init__({
            "i": In(stream.Signature(data_shape)).array(rows, cols),
            "o": Out(stream.Signature(self._layout)),
        })

    def elaborate(self, platform):
        m = Module()
        xbuses = []
        for r in range(self._rows):
            xbus = StreamArbiter(self._data_shape, self._cols)
            m.submodules[f"xbus_{r}"] = xbus
            for c in range(self._cols):
                wiring.connect(m, wiring.flipped(self.i[r][c]), xbus.i[c])
            xbuses.append(xbus)
        row_layout = xbuses[0].o.payload.shape()
        m.submodules.ybus = ybus = StreamArbiter(row_layout, self._rows)
        for r, xbus in enumerate(xbuses):
            wiring.connect(m, xbus.o, ybus.i[r])
        m.d.comb += [
            self.o.valid.eq(ybus.o.valid),
            self.o.payload.data.eq(ybus.o.payload.data.data),
            self.o.payload.col.eq(ybus.o.payload.data.index),
            self.o.payload.row.eq(ybus.o.payload.index),
            ybus.o.ready.eq(self.o.ready),
        ]
        return m


class GonPacker(wiring.Component):
    """Gathers a top PE's consecutive psums of one aligned group of ``n`` GLB slots into
    one GON packet (`values_layout`).

    Psum ``j`` of the PE's ``total`` in a pass goes to slot ``phase + j`` (mod ``n``)
    of its group: the packer takes it at once and holds it unless it ends the group or
    is the pass's last; that one goes out with the held ones in the same cycle (the
    output is combinational: no latency, no extra register stage), so the PE never
    waits for the packer, only for the GON.

    Members
    -------
    phase : In(range(n))
        The slot of the PE's first psum in its group, held during the pass.
    total : In(bits)
        Psums the PE sends in the pass, held during it.
    i : In(stream of data_shape)
    o : Out(stream of values_layout(data_shape, n))
    """

    def __init__(self, data_shape, n: int, bits: int):
        _check_shape("GonPacker", "data_shape", data_shape)
        check_int("GonPacker", "n", n, 2, MAX_DIM)
        if n & (n - 1):
            raise ValueError(f"GonPacker n must be a power of two, not {n}")
        self._shape, self._n, self._bits = data_shape, n, bits
        super().__init__({
            "phase": In(range(n)),
            "total": In(bits),
            "i": In(stream.Signature(data_shape)),
            "o": Out(stream.Signature(values_layout(data_shape, n))),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._n
        log = (n - 1).bit_length()
        held = [Signal(self._shape, name=f"held{j}") for j in range(n - 1)]
        count = Signal(range(n))
        j = Signal(self._bits)
        pos = Signal(log)
        m.d.comb += pos.eq(self.phase + j)
        last = j + 1 == self.total
        closes = (pos == n - 1) | last
        m.d.comb += [self.o.payload.n.eq(count + 1),
                     self.i.ready.eq(~closes | self.o.ready),
                     self.o.valid.eq(closes & self.i.valid)]
        for k in range(n):
            lane = self.o.payload["values"][k]
            m.d.comb += lane.eq(self.i.payload)
            if k < n - 1:
                with m.If(count > k):
                    m.d.comb += lane.eq(held[k])
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += j.eq(Mux(last, 0, j + 1))
            with m.If(closes):
                m.d.sync += count.eq(0)
            with m.Else():
                m.d.sync += [count.eq(count + 1), Array(held)[count].eq(self.i.payload)]
        return m


def _packet_fifo(m: Module, i, shape, depth: int) -> fifo.SyncFIFO:
    """A `SyncFIFO` of ``depth`` packets of ``shape`` (submodule ``queue`` of ``m``) that
    input stream ``i`` writes."""
    m.submodules.queue = queue = fifo.SyncFIFO(width=Shape.cast(shape).width, depth=depth)
    m.d.comb += [queue.w_data.eq(i.payload), queue.w_en.eq(i.valid), i.ready.eq(queue.w_rdy)]
    return queue


class GonQueue(wiring.Component):
    """A queue of ``depth`` GON packets after a top PE (after its `GonPacker`), so the
    top's MAC pipeline runs on while the GON's X-bus serves the other tops of its row.

    A `SyncFIFO`: a packet taken at one cycle is offered to the X-bus from the next; a
    full queue takes a packet again the cycle after its head is taken.

    Members
    -------
    i : In(stream of data_shape)
    o : Out(stream of data_shape)
    """

    def __init__(self, data_shape, depth: int):
        _check_shape("GonQueue", "data_shape", data_shape)
        check_int("GonQueue", "depth", depth, 1, MAX_DIM)
        self._shape, self._depth = data_shape, depth
        super().__init__({
            "i": In(stream.Signature(data_shape)),
            "o": Out(stream.Signature(data_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        queue = _packet_fifo(m, self.i, self._shape, self._depth)
        m.d.comb += [self.o.payload.eq(queue.r_data), self.o.valid.eq(queue.r_rdy),
                     queue.r_en.eq(self.o.ready)]
        return m


class PsumUnpacker(wiring.Component):
    """A queue of ``depth`` psum GIN packets (`values_layout`) in front of a PE, handing
    their psums out one a cycle in lane order.

    Members
    -------
    i : In(stream of values_layout(data_shape, n))
    o : Out(stream of data_shape)
    """

    def __init__(self, data_shape, n: int, depth: int = 2):
        _check_shape("PsumUnpacker", "data_shape", data_shape)
        check_int("PsumUnpacker", "n", n, 2, MAX_DIM)
        check_int("PsumUnpacker", "depth", depth, 1, MAX_DIM)
        self._shape, self._n, self._depth = data_shape, n, depth
        self._layout = values_layout(data_shape, n)
        super().__init__({
            "i": In(stream.Signature(self._layout)),
            "o": Out(stream.Signature(data_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        queue = _packet_fifo(m, self.i, self._layout, self._depth)
        head = self._layout(queue.r_data)
        lane = Signal(range(self._n))
        m.d.comb += [self.o.valid.eq(queue.r_rdy),
                     self.o.payload.eq(Array(head["values"][j] for j in range(self._n))[lane])]
        done = lane + 1 == head.n
        m.d.comb += queue.r_en.eq(self.o.ready & done)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += lane.eq(Mux(done, 0, lane + 1))
        return m


class LocalPsumLink(wiring.Component):
    """Local psum link from a PE to its upper neighbour: one register stage.

    Accepts when empty or being emptied; latency one cycle, one psum per cycle.

    Parameters
    ----------
    data_shape : shape-like
        ``signed(psum_bits)``.

    Members
    -------
    i : In(stream of data_shape)
        From PE (r, c).
    o : Out(stream of data_shape)
        To PE (r - 1, c).
    """

    def __init__(self, data_shape):
        _check_shape("LocalPsumLink", "data_shape", data_shape)
        super().__init__({
            "i": In(stream.Signature(data_shape)),
            "o": Out(stream.Signature(data_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class PsumRoute(wiring.Component):
    """A PE's part of the local psum links: where its psums go and where its psums-in come from.

    Psums accumulate up a column toward the PE set's top row (Eyeriss). With
    ``up`` set, the psums the PE emits (``pe_out``) go over its `LocalPsumLink`
    to ``link_out``, the ``link_in`` of the PE above; otherwise to ``gon``. With
    ``fed_by_link`` set (the ``up`` of the PE below), the PE's psums-in
    (``pe_in``) come from ``link_in`` and it takes nothing from the psum GIN
    (``gin`` is not ready); otherwise from ``gin``. Routes are configuration:
    change them only while no psum is in flight. Latency: one cycle on the
    link, none elsewhere.

    Parameters
    ----------
    data_shape : shape-like
        ``signed(psum_bits)``.

    Members
    -------
    up, fed_by_link : In(1)
    pe_out : In(stream of data_shape)
        The PE's psum output.
    gin : In(stream of data_shape)
        The psum GIN's output for the PE.
    link_in : In(stream of data_shape)
        The link of the PE below.
    pe_in : Out(stream of data_shape)
        The PE's psum input.
    gon : Out(stream of data_shape)
        To the GON.
    link_out : Out(stream of data_shape)
        The PE's link, to the PE above.
    """

    def __init__(self, data_shape):
        _check_shape("PsumRoute", "data_shape", data_shape)
        self._data_shape = data_shape
        psum = stream.Signature(data_shape)
        super().__init__({
            "up": In(1),
            "fed_by_link": In(1),
            "pe_out": In(psum),
            "gin": In(psum),
            "link_in": In(psum),
            "pe_in": Out(psum),
            "gon": Out(psum),
            "link_out": Out(psum),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = LocalPsumLink(self._data_shape)
        wiring.connect(m, link.o, wiring.flipped(self.link_out))
        src, up = self.pe_out, self.up
        m.d.comb += [
            self.gon.payload.eq(src.payload),
            link.i.payload.eq(src.payload),
            link.i.valid.eq(src.valid & up),
            self.gon.valid.eq(src.valid & ~up),
            src.ready.eq(Mux(up, link.i.ready, self.gon.ready)),
        ]
        dst, fed = self.pe_in, self.fed_by_link
        m.d.comb += [self.link_in.ready.eq(fed & dst.ready), self.gin.ready.eq(~fed & dst.ready)]
        with m.If(fed):
            m.d.comb += [dst.valid.eq(self.link_in.valid), dst.payload.eq(self.link_in.payload)]
        with m.Else():
            m.d.comb += [dst.valid.eq(self.gin.valid), dst.payload.eq(self.gin.payload)]
        return m
