"""Multicast IDs and tags of the GINs for a row-stationary mapping.

See docs/architecture.md, "Hardware".

A mapping places logical PE sets (`PESet`) on the physical array. Each set of
``R x E`` PEs computes ``E`` ofmap rows of a 2-D convolution with stride
``U``: logical PE (i, e) at physical PE (origin_row + i, origin_col + e) gets

- filter row ``first_row + i`` of its filter group (horizontal multicast),
- ifmap row ``h = (first_col + e) * U + first_row + i`` of its channel group
  (diagonal multicast, for any stride),
- on its bottom row (i = R - 1) the psums of ofmap row ``first_col + e`` from
  the psum GIN (unicast), unless the set takes them from the set below.

Psums then move up the column over the local links, and the set's top row
(i = 0) sends them to the GON. Sets with the same ``filters`` (``channels``)
group share filter (ifmap) rows, so one delivery reaches all of them; replicas
with their own groups get their own. A logical set too tall or too wide for
the array is folded into pieces with ``first_row`` / ``first_col``.

`rs_deliveries` turns the sets into deliveries: a data item (a key) and the
exact set of PEs that must receive it. `assign_ids` then chooses, per GIN,
one row ID per X-bus, one column ID per PE and the tags of each delivery.
A PE receives a packet whose tag equals its (row ID, column ID) field by
field, the all-ones value of a field being a broadcast.

The ID scheme
-------------
PEs are told apart by their *signature*, the set of deliveries they must
receive (one delivery per PE in the usual case). Physical rows are grouped
into *bands* sharing one row ID; inside a band each signature gets its own
column ID (a label), and a delivery is sent once per (band, signature) that
contains it. A delivery to every PE of the array is sent once with the
broadcast tag (all ones, all ones). PEs that must receive nothing get the
all-ones IDs, which only the broadcast tag matches; so do rows without
targets.

Bands are chosen greedily: starting from one band per row, the two bands
sharing the most deliveries are merged while the merged band needs no more
than ``2**col_id_bits - 1`` labels; then, if there are more bands than
``2**row_id_bits - 1`` row IDs, the bands needing the fewest labels together
are merged. So the ifmap rows of a stride-1 set form one band (column ID of
PE (i, e) is ``e + i`` up to an offset, one packet per ifmap row); with
stride U the rows whose ``i`` agree modulo U share deliveries and merge, and
a delivery is split into one packet per band only where the labels of one
band would not fit the column tag. The result is checked by `check_ids`:
every delivery reaches exactly its PEs, each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .config import ArrayConfig, NoCConfig, check_int

__all__ = [
    "PESet", "Delivery", "GINIds", "MulticastPlan",
    "mc_match", "rs_deliveries", "assign_ids", "check_ids", "plan_multicast", "plan_for",
]

PE = tuple[int, int]
Tag = tuple[int, int]


@dataclass(frozen=True)
class PESet:
    """One logical PE set (or a piece of one) placed on the physical array.

    Parameters
    ----------
    rows, cols:
        ``R`` logical rows (filter rows) and ``E`` logical columns (ofmap rows).
    origin:
        Physical (row, column) of logical PE (0, 0).
    stride:
        Convolution stride ``U``.
    filters, channels:
        Filter group and channel group: sets of one group receive the same
        filter (ifmap) rows; replicas on other filters or channels use other
        groups.
    first_row, first_col:
        Logical filter row and ofmap row of this piece's row 0 and column 0,
        for a set folded into pieces.
    psum_from_below:
        The bottom row takes its psums from the PE below (the top row of
        another set) over the local link instead of from the psum GIN.
    """

    rows: int
    cols: int
    origin: tuple[int, int] = (0, 0)
    stride: int = 1
    filters: int = 0
    channels: int = 0
    first_row: int = 0
    first_col: int = 0
    psum_from_below: bool = False

    def __post_init__(self):
        own = "PESet"
        check_int(own, "rows", self.rows, 1)
        check_int(own, "cols", self.cols, 1)
        if (not isinstance(self.origin, tuple) or len(self.origin) != 2):
            raise ValueError(f"PESet.origin must be a (row, column) tuple, not {self.origin!r}")
        check_int(own, "origin[0]", self.origin[0], 0)
        check_int(own, "origin[1]", self.origin[1], 0)
        check_int(own, "stride", self.stride, 1)
        check_int(own, "filters", self.filters, 0)
        check_int(own, "channels", self.channels, 0)
        check_int(own, "first_row", self.first_row, 0)
        check_int(own, "first_col", self.first_col, 0)
        if not isinstance(self.psum_from_below, bool):
            raise ValueError(f"PESet.psum_from_below must be a bool, not {self.psum_from_below!r}")

    def pe(self, i: int, e: int) -> PE:
        """Physical PE of logical PE (i, e)."""
        return (self.origin[0] + i, self.origin[1] + e)

    def filter_row(self, i: int) -> int:
        return self.first_row + i

    def ifmap_row(self, i: int, e: int) -> int:
        return (self.first_col + e) * self.stride + self.first_row + i

    def ofmap_row(self, e: int) -> int:
        return self.first_col + e


@dataclass(frozen=True)
class Delivery:
    """A data item and the exact set of PEs that must receive it.

    ``key`` names the item: ``("filter", group, row)``, ``("ifmap", group,
    row)``, ``("psum", set, ofmap_row)``, or anything hashable.
    """

    key: tuple
    targets: frozenset

    def describe(self) -> str:
        kind, *rest = self.key if isinstance(self.key, tuple) else (self.key,)
        if kind == "filter" and len(rest) == 2:
            return f"filter row {rest[1]} of filter group {rest[0]}"
        if kind == "ifmap" and len(rest) == 2:
            return f"ifmap row {rest[1]} of channel group {rest[0]}"
        if kind == "psum" and len(rest) == 2:
            return f"psums of ofmap row {rest[1]} of set {rest[0]}"
        return f"delivery {self.key!r}"


def mc_match(tag: int, ident: int, bits: int) -> bool:
    """Whether a multicast controller with ID ``ident`` takes tag ``tag`` (equal, or all ones)."""
    return tag == ident or tag == (1 << bits) - 1


@dataclass(frozen=True)
class GINIds:
    """IDs of one GIN and the tags of its deliveries.

    ``row_ids[r]`` is the row ID of X-bus ``r``, ``col_ids[r][c]`` the column
    ID of PE (r, c), and ``tags[key]`` the tags to send the delivery ``key``
    with, one packet per tag.
    """

    rows: int
    cols: int
    row_id_bits: int
    col_id_bits: int
    row_ids: tuple
    col_ids: tuple
    tags: dict
    deliveries: tuple

    def ids(self, pe: PE) -> Tag:
        r, c = pe
        return (self.row_ids[r], self.col_ids[r][c])

    def matches(self, tag: Tag) -> frozenset:
        """The PEs whose multicast controllers take ``tag``."""
        rt, ct = tag
        return frozenset(
            (r, c) for r in range(self.rows) if mc_match(rt, self.row_ids[r], self.row_id_bits)
            for c in range(self.cols) if mc_match(ct, self.col_ids[r][c], self.col_id_bits))

    @property
    def packets(self) -> int:
        """Packets needed to send every delivery once."""
        return sum(len(t) for t in self.tags.values())

    def packed(self) -> tuple[int, int]:
        """Values of the GIN's ``row_id`` and ``col_id`` ports (element 0 in the low bits)."""
        row = sum(v << (r * self.row_id_bits) for r, v in enumerate(self.row_ids))
        col = sum(v << ((r * self.cols + c) * self.col_id_bits)
                  for r, line in enumerate(self.col_ids) for c, v in enumerate(line))
        return row, col


@dataclass(frozen=True)
class MulticastPlan:
    """IDs of the filter, ifmap and psum GINs, and the psum routes, for a list of `PESet`.

    ``up[r][c]`` is the psum route of `PECell` (r, c) (PE (r, c) passes psums to PE
    (r - 1, c)); ``outputs`` maps each PE that sends psums to the GON to
    ``(set index, ofmap row)``.
    """

    sets: tuple
    filter: GINIds
    ifmap: GINIds
    psum: GINIds
    up: tuple
    outputs: dict

    def gin(self, kind: str) -> GINIds:
        if kind not in ("filter", "ifmap", "psum"):
            raise ValueError(f"GIN kind must be filter, ifmap or psum, not {kind!r}")
        return getattr(self, kind)


def _pe_str(pe: PE) -> str:
    return f"PE ({pe[0]}, {pe[1]})"


def _check_dims(rows, cols):
    check_int("array", "rows", rows, 1)
    check_int("array", "cols", cols, 1)


def _placement(sets, rows: int, cols: int) -> dict:
    """Map every used PE to (set index, i, e); reject PEs off the array and overlaps."""
    _check_dims(rows, cols)
    owner = {}
    for k, s in enumerate(sets):
        if not isinstance(s, PESet):
            raise ValueError(f"set {k} must be a PESet, not {s!r}")
        for i in range(s.rows):
            for e in range(s.cols):
                pe = s.pe(i, e)
                if pe[0] >= rows or pe[1] >= cols:
                    raise ValueError(
                        f"set {k} places its logical PE ({i}, {e}) at {_pe_str(pe)}, outside "
                        f"the {rows}x{cols} array")
                if pe in owner:
                    raise ValueError(f"{_pe_str(pe)} is in set {owner[pe][0]} and in set {k}")
                owner[pe] = (k, i, e)
    return owner


def rs_deliveries(sets: Iterable[PESet], rows: int, cols: int) -> dict:
    """The deliveries of the row-stationary dataflow, per GIN: ``{"filter": (...), ...}``."""
    sets = tuple(sets)
    owner = _placement(sets, rows, cols)
    groups = {"filter": {}, "ifmap": {}, "psum": {}}
    for pe, (k, i, e) in sorted(owner.items()):
        s = sets[k]
        groups["filter"].setdefault(("filter", s.filters, s.filter_row(i)), set()).add(pe)
        groups["ifmap"].setdefault(("ifmap", s.channels, s.ifmap_row(i, e)), set()).add(pe)
        if i == s.rows - 1 and not s.psum_from_below:
            groups["psum"].setdefault(("psum", k, s.ofmap_row(e)), set()).add(pe)
    return {kind: tuple(Delivery(key, frozenset(t)) for key, t in sorted(g.items()))
            for kind, g in groups.items()}


def _psum_routes(sets, owner, rows: int, cols: int):
    up = [[0] * cols for _ in range(rows)]
    for k, s in enumerate(sets):
        for e in range(s.cols):
            for i in range(1, s.rows):
                r, c = s.pe(i, e)
                up[r][c] = 1
            if s.psum_from_below:
                below = s.pe(s.rows, e)
                if below not in owner or owner[below][1] != 0:
                    raise ValueError(
                        f"set {k} takes psums from below its bottom row, but {_pe_str(below)} "
                        f"is not the top row of a set")
                up[below[0]][below[1]] = 1
    outputs = {pe: (k, sets[k].ofmap_row(e)) for pe, (k, i, e) in owner.items()
               if i == 0 and not up[pe[0]][pe[1]]}
    return tuple(tuple(line) for line in up), outputs


def assign_ids(deliveries: Iterable[Delivery], rows: int, cols: int,
               row_id_bits: int, col_id_bits: int) -> GINIds:
    """Row IDs, column IDs and tags for ``deliveries`` on a ``rows x cols`` GIN.

    Raises
    ------
    ValueError
        A delivery has a target off the array or no target, two deliveries
        share a key, or the IDs would not fit the tag fields (the message names
        the PE and the tag); the result also passes `check_ids`.
    """
    _check_dims(rows, cols)
    check_int("NoC", "row_id_bits", row_id_bits, 1, 16)
    check_int("NoC", "col_id_bits", col_id_bits, 1, 16)
    deliveries = tuple(deliveries)
    keys = set()
    for d in deliveries:
        if d.key in keys:
            raise ValueError(f"two deliveries have the key {d.key!r}")
        keys.add(d.key)
        for pe in sorted(d.targets):
            if not (0 <= pe[0] < rows and 0 <= pe[1] < cols):
                raise ValueError(f"{d.describe()} is required at {_pe_str(pe)}, outside the "
                                 f"{rows}x{cols} array: no PE can match its tag")
        if not d.targets:
            raise ValueError(f"{d.describe()} has no target PE: no PE would match its tag")

    row_bcast, col_bcast = (1 << row_id_bits) - 1, (1 << col_id_bits) - 1
    everyone = frozenset((r, c) for r in range(rows) for c in range(cols))
    tags = {d.key: [] for d in deliveries}
    signature = {}
    for j, d in enumerate(deliveries):
        if d.targets == everyone:
            tags[d.key].append((row_bcast, col_bcast))
            continue
        for pe in d.targets:
            signature.setdefault(pe, set()).add(j)
    signature = {pe: tuple(sorted(js)) for pe, js in signature.items()}

    row_sigs = {}
    for (r, c), sig in sorted(signature.items()):
        sigs = row_sigs.setdefault(r, [])
        if sig not in sigs:
            sigs.append(sig)
            if len(sigs) > col_bcast:
                d = deliveries[sig[0]]
                raise ValueError(
                    f"{_pe_str((r, c))} needs column ID {col_bcast} for tag "
                    f"({len(row_sigs) - 1}, {col_bcast}) of {d.describe()}: row {r} alone needs "
                    f"{len(sigs)} column IDs, but col_id_bits = {col_id_bits} holds IDs "
                    f"0..{col_bcast - 1} ({col_bcast} is the broadcast tag)")

    bands = [([r], set(sigs)) for r, sigs in sorted(row_sigs.items())]

    def gain(a, b):
        return sum(len(s) for s in a[1] & b[1])

    while len(bands) > 1:
        best = None
        for x in range(len(bands)):
            for y in range(x + 1, len(bands)):
                union = len(bands[x][1] | bands[y][1])
                if union > col_bcast:
                    continue
                score = (gain(bands[x], bands[y]), -union)
                if best is None or score > best[0]:
                    best = (score, x, y)
        if best is None or (best[0][0] == 0 and len(bands) <= row_bcast):
            break
        _, x, y = best
        merged = (sorted(bands[x][0] + bands[y][0]), bands[x][1] | bands[y][1])
        bands = [b for k, b in enumerate(bands) if k not in (x, y)] + [merged]
        bands.sort(key=lambda b: b[0][0])
    if len(bands) > row_bcast:
        band_rows, sigs = bands[row_bcast]
        pe = min(p for p in signature if p[0] in band_rows)
        d = deliveries[signature[pe][0]]
        label = sorted(sigs).index(signature[pe])
        raise ValueError(
            f"{_pe_str(pe)} needs row ID {row_bcast} for tag ({row_bcast}, {label}) of "
            f"{d.describe()}: the deliveries need {len(bands)} row IDs, but row_id_bits = "
            f"{row_id_bits} holds IDs 0..{row_bcast - 1} ({row_bcast} is the broadcast tag)")

    row_ids = [row_bcast] * rows
    col_ids = [[col_bcast] * cols for _ in range(rows)]
    for rho, (band_rows, sigs) in enumerate(bands):
        labels = {sig: label for label, sig in enumerate(sorted(sigs))}
        for r in band_rows:
            row_ids[r] = rho
        for pe, sig in signature.items():
            if pe[0] in band_rows:
                col_ids[pe[0]][pe[1]] = labels[sig]
        for sig, label in labels.items():
            for j in sig:
                tags[deliveries[j].key].append((rho, label))
    ids = GINIds(rows=rows, cols=cols, row_id_bits=row_id_bits, col_id_bits=col_id_bits,
                 row_ids=tuple(row_ids), col_ids=tuple(tuple(line) for line in col_ids),
                 tags={k: tuple(v) for k, v in tags.items()}, deliveries=deliveries)
    check_ids(ids)
    return ids


def check_ids(ids: GINIds, deliveries: Iterable[Delivery] | None = None) -> None:
    """Check that every delivery reaches exactly its target PEs, each once.

    Simulates the multicast controllers PE by PE. ``deliveries`` defaults to
    ``ids.deliveries``.

    Raises
    ------
    ValueError
        An ID or tag wider than its field, a tag no PE matches, a target that
        matches no tag, a PE that matches a tag it must not receive, or a PE
        that matches two tags of one delivery; the message names the PE and the
        tag.
    """
    deliveries = ids.deliveries if deliveries is None else tuple(deliveries)
    rb, cb = ids.row_id_bits, ids.col_id_bits
    if len(ids.row_ids) != ids.rows or len(ids.col_ids) != ids.rows or any(
            len(line) != ids.cols for line in ids.col_ids):
        raise ValueError(f"the IDs must cover the {ids.rows}x{ids.cols} array")

    def tags_of(pe):
        found = [(d, t) for d in deliveries if pe in d.targets for t in ids.tags.get(d.key, ())]
        if not found:
            return "(no delivery targets it)"
        d, t = found[0]
        return f"(tag {t} of {d.describe()})"

    for r in range(ids.rows):
        for c in range(ids.cols):
            for what, value, bits in (("row ID", ids.row_ids[r], rb),
                                      ("column ID", ids.col_ids[r][c], cb)):
                if isinstance(value, bool) or not isinstance(value, int) \
                        or not 0 <= value < (1 << bits):
                    raise ValueError(
                        f"{_pe_str((r, c))}: {what} {value!r} is wider than its "
                        f"{bits}-bit tag field {tags_of((r, c))}")
    for d in deliveries:
        tags = ids.tags.get(d.key)
        if not tags:
            raise ValueError(f"{d.describe()} has no tag: no PE matches it "
                             f"(targets {', '.join(map(_pe_str, sorted(d.targets)))})")
        seen = {}
        for tag in tags:
            rt, ct = tag
            target = _pe_str(min(d.targets)) if d.targets else "no PE"
            if not (0 <= rt < (1 << rb) and 0 <= ct < (1 << cb)):
                raise ValueError(f"tag {tag} of {d.describe()} (for {target}) is wider than the "
                                 f"{rb}-bit row and {cb}-bit column tag fields")
            hit = ids.matches(tag)
            if not hit:
                raise ValueError(
                    f"no PE matches tag {tag} of {d.describe()}; it is required at "
                    + ", ".join(f"{_pe_str(pe)} (IDs {ids.ids(pe)})" for pe in sorted(d.targets)))
            for pe in sorted(hit):
                if pe not in d.targets:
                    raise ValueError(f"{_pe_str(pe)} with IDs {ids.ids(pe)} matches tag {tag} of "
                                     f"{d.describe()} but is not one of its targets")
                if pe in seen:
                    raise ValueError(f"{_pe_str(pe)} matches tags {seen[pe]} and {tag} of "
                                     f"{d.describe()}: it would receive it twice")
                seen[pe] = tag
        for pe in sorted(d.targets):
            if pe not in seen:
                raise ValueError(f"{_pe_str(pe)} with IDs {ids.ids(pe)} matches no tag of "
                                 f"{d.describe()} (tags {', '.join(map(str, tags))})")


def plan_multicast(sets: Iterable[PESet], rows: int, cols: int, noc: NoCConfig) -> MulticastPlan:
    """GIN IDs and tags, and psum routes, for ``sets`` on a ``rows x cols`` array."""
    if not isinstance(noc, NoCConfig):
        raise ValueError(f"noc must be a NoCConfig, not {noc!r}")
    sets = tuple(sets)
    owner = _placement(sets, rows, cols)
    deliveries = rs_deliveries(sets, rows, cols)
    gins = {kind: assign_ids(ds, rows, cols, noc.row_id_bits, noc.col_id_bits)
            for kind, ds in deliveries.items()}
    up, outputs = _psum_routes(sets, owner, rows, cols)
    return MulticastPlan(sets=sets, up=up, outputs=outputs, **gins)


def plan_for(cfg: ArrayConfig, sets: Iterable[PESet]) -> MulticastPlan:
    """`plan_multicast` on the array of ``cfg``."""
    return plan_multicast(sets, cfg.rows, cfg.cols, cfg.noc)

