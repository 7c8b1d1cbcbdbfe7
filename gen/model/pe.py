"""The PE's timing rules, one definition for the model's recurrences
(`ommatidia.gen.model.timing`) and its cycle-level reference
(`ommatidia.gen.model.reference`), read from the RTL of `ommatidia.hw.pe`.

A PE runs ``F`` outputs of ``S*q*p`` MACs each, one operation issued a cycle in
the order f, s, c, k (tap, channel, filter; k innermost). A PE of ``lanes`` MAC
lanes whose ``p`` is a multiple of ``lanes`` does ``lanes`` filters (``k .. k + lanes -
1``) in one operation, except in the output's last (tap, channel), whose operations
take and emit a psum each: they do one filter each, so an output is ``(S*q - 1) * p /
lanes + p`` operations. Another ``p`` runs one filter an operation (`Schedule.group`).
Operation ``j`` of output ``f`` reads ifmap column ``f*U + s``; the ifmap spad is a ring of
``ring = ifmap_spad_depth // q`` columns, and a column may load only once the
column ``ring`` before it is freed. Output ``f`` frees its ``U`` new columns
``f*U .. f*U + U - 1`` in order, column ``f*U + x`` at the last issue of tap
``min(x, S - 1)``. An operation reaches the accumulate stage
`PIPELINE_STAGES` cycles after its issue unless the pipeline freezes (a psum
out waiting for room). Its last ``p`` operations (tap ``S - 1``, channel
``q - 1``) each emit a psum out and, when the PE accumulates, first take a psum
in: the psum from below is added after the PE's own MACs for that output. Filters load into the
filter spad in the same order, s, c, k (`Schedule.filter_shape`).

The recurrences keep each PE's timing (issue cursor, freezes, ifmap columns) in a
`PEState`; `pe_grid` lists the enabled PEs of a pass with their psum routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PIPELINE_STAGES", "Schedule", "PEState", "pe_grid"]

PIPELINE_STAGES = 4
"""Cycles from an operation's issue to its accumulate stage: the pipeline registers
read, weight, multiply, accumulate (`ommatidia.hw.pe`)."""


@dataclass(frozen=True)
class Schedule:
    """The operations of one PE run (the ``run`` register) and what each needs and frees."""

    S: int
    F: int
    U: int
    p: int
    q: int
    ring: int
    lanes: int = 1
    group: int = field(init=False)
    """Filters of an operation before the last (tap, channel): ``lanes`` when it divides
    ``p``, else 1."""
    tap_ops: int = field(init=False)
    """Operations of one tap but the last, ``q*p/group``."""
    ops: int = field(init=False)
    """MACs (filter weights) of one output, ``S*q*p``."""
    issues: int = field(init=False)
    """Operations of one output, ``(S*q - 1) * p/group + p`` (``ops`` with one lane)."""
    first_out: int = field(init=False)
    """Index of the first operation that emits a psum out, ``issues - p``."""

    def __post_init__(self):
        group = self.lanes if self.p % self.lanes == 0 else 1
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "tap_ops", self.q * self.p // group)
        object.__setattr__(self, "ops", self.S * self.q * self.p)
        object.__setattr__(self, "issues", (self.S * self.q - 1) * self.p // group + self.p)
        object.__setattr__(self, "first_out", self.issues - self.p)

    @classmethod
    def of(cls, run: dict, lanes: int = 1) -> Schedule:
        return cls(*(run[k] for k in ("S", "F", "U", "p", "q", "ring")), lanes)

    @property
    def one_tap(self) -> bool:
        """Whether the operations that take psums in are also those that emit them."""
        return self.ops == self.p

    @property
    def filter_shape(self) -> tuple[int, int, int]:
        """The filter spad, and the order weights load into it: [s, c, k]."""
        return (self.S, self.q, self.p)

    def tap(self, j: int) -> int:
        return min(j // self.tap_ops, self.S - 1)

    def tap_start(self, s: int) -> int:
        """The first operation of tap ``s`` (``issues`` for ``s = S``)."""
        return self.issues if s >= self.S else s * self.tap_ops

    def column(self, f: int, j: int) -> int:
        """The ifmap column operation ``j`` of output ``f`` reads."""
        return f * self.U + self.tap(j)

    def starts_tap(self, j: int) -> bool:
        return j == self.tap_start(self.tap(j))

    def ends_tap(self, j: int) -> bool:
        return j + 1 == self.tap_start(self.tap(j) + 1)

    def weights_read(self, j: int) -> int:
        """Weights of the first output loaded once operation ``j`` has read its own (they
        load in the order it reads them): ``group`` a grouped operation, one a single."""
        if j < self.first_out:
            return (j + 1) * self.group
        return self.first_out * self.group + j - self.first_out + 1

    def segments(self) -> list:
        """The operations of an output a PE issues before its last ``p`` (those that take
        and emit psums) as blocks, one per tap: (operations, the tap whose column the
        block waits for or -1, whether it ends its tap)."""
        segs, j = [], 0
        for s in range(self.S):
            lo, hi = max(j, self.tap_start(s)), min(self.first_out, self.tap_start(s + 1))
            if lo < hi:
                segs.append((hi - lo, s if self.starts_tap(lo) else -1, self.ends_tap(hi - 1)))
                j = hi
        return segs

    def takes_psum(self, j: int) -> bool:
        """Whether operation ``j`` adds a psum in (when the PE accumulates): the last tap's."""
        return j >= self.first_out

    def emits_psum(self, j: int) -> bool:
        """Whether operation ``j`` sends its psum out."""
        return j >= self.first_out

    def freeing_tap(self, x: int) -> int:
        """The tap whose last issue frees an output's ``x``-th new column (``x < U``)."""
        return min(x, self.S - 1)

    def load_limit(self, f: int, s: int) -> int:
        """Columns that may be loaded once tap ``s`` of output ``f`` has issued its last
        operation: the ring plus every column freed by then."""
        freed = sum(1 for x in range(self.U) if self.freeing_tap(x) <= s)
        return self.ring + f * self.U + freed

    def waits_for(self, x: int) -> int:
        """The column whose ring slot column ``x`` takes (negative: a slot never used)."""
        return x - self.ring


class PEState:
    """Timing state of one PE: issue cursor, pipeline freezes, ifmap columns.

    Position ``r``, ``c``; psum routes: ``acc`` (takes psums in), ``gin`` (from the psum
    sender), ``below`` / ``above`` (linked PEs), ``top`` (sends to the GON). ``C0``:
    first compute cycle; ``prev``: last issue; ``fr``: freezes (accumulate cycle, cycle
    the psum leaves); ``A``: cycle each ifmap column is usable; ``ret``: cycle each
    column is freed; ``nv``, ``np``, ``nf``: ifmap values, psums in and weights
    received; ``last_take``: last psum taken over the link; ``final_I``, ``final_O``:
    issue and psum-out cycle of the last operation of its latest output (set at its
    last psum);
    ``tap_end``: last issue of each of its taps; ``fp``: filter packets taken before
    its last weight; ``ch``: its psum chain (`ommatidia.gen.model.timing`).
    """

    __slots__ = ("r", "c", "acc", "gin", "below", "above", "top", "C0", "prev", "fr", "A",
                 "nv", "ret", "last_take", "np", "final_O", "final_I", "tap_end", "nf",
                 "ordered", "fp", "loaded", "wl", "ch")

    def __init__(self, r: int, c: int):
        self.r, self.c = r, c
        self.prev = 0
        self.fr = []
        self.ordered = True
        self.A = []
        self.nv = self.np = self.nf = self.fp = 0
        self.ret = []
        self.last_take = -1
        self.final_O = self.final_I = 0
        self.tap_end = []
        self.loaded = True
        self.wl = []  # streaming filters: (weights in, cycle they are counted) a packet

    def next_free(self, t: int) -> int:
        """First cycle from ``t`` not frozen by a psum waiting at the accumulate stage."""
        fr = self.fr
        if self.ordered:
            # the freezes are disjoint and in order (``ordered``): those ending by ``t``, a
            # prefix, cannot move it; the scan starts after them
            j = len(fr)
            while j and fr[j - 1][1] > t:
                j -= 1
            if j == len(fr):
                return t
            fr = fr[j:]
        for a, o in fr:
            if a <= t < o:
                t = o
        return t

    def issue_one(self, tmin: int) -> int:
        t = self.prev + 1
        if tmin > t:
            t = tmin
        if self.fr:
            t = self.next_free(t)
        self.prev = t
        return t

    def issue_block(self, n: int, tmin: int) -> int:
        """Issue ``n`` operations from ``tmin`` on, around freezes; the last one's cycle."""
        t = self.next_free(max(self.prev + 1, tmin))
        for a, o in self.fr:
            if o <= t:
                continue
            if a < t + n:
                n -= a - t
                t = o
            else:
                break
        t += n
        self.prev = t - 1
        return t - 1

    def acc_time(self, i: int) -> int:
        """Cycle an operation issued at ``i`` reaches the accumulate stage."""
        if not self.ordered:
            return i + PIPELINE_STAGES + sum(o - a for a, o in self.fr if a > i)
        t, fr = i + PIPELINE_STAGES, self.fr
        j = len(fr) - 1
        while j >= 0 and fr[j][0] > i:
            t += fr[j][1] - fr[j][0]
            j -= 1
        return t

    def freeze(self, acc: int, out: int) -> None:
        """The pipeline frozen from ``acc`` to ``out``; ``ordered`` stays True while every
        freeze starts after the one before ends."""
        if out > acc:
            if self.fr and acc < self.fr[-1][1]:
                self.ordered = False
            self.fr.append((acc, out))

    def prune(self) -> None:
        """Forget the freezes that can no longer delay an issue or an accumulate (with
        ``ordered`` freezes, whose ends grow, a prefix)."""
        fr, lim = self.fr, self.prev - 2 * PIPELINE_STAGES
        if fr and (fr[0][1] <= lim or not self.ordered):
            self.fr = [x for x in fr if x[1] > lim]


def pe_grid(cfg, regs) -> dict:
    """The enabled PEs with their psum routes (`PEState`), keyed by (row, column)."""
    rows, cols = cfg.rows, cfg.cols
    en, up, run = regs["enable"], regs["up"], regs["run"]
    pes = {(r, c): PEState(r, c) for r in range(rows) for c in range(cols) if en[r][c]}
    for (r, c), pe in pes.items():
        fed = r + 1 < rows and bool(up[r + 1][c])
        pe.below = pes.get((r + 1, c)) if fed else None
        if fed and pe.below is None:
            raise ValueError(f"PE ({r}, {c}) takes psums over the link from PE ({r + 1}, {c}), "
                             f"which is not enabled")
        pe.acc = bool(run["accumulate"]) or fed
        pe.gin = pe.acc and not fed
        pe.top = not (r > 0 and up[r][c])
        pe.above = None if pe.top else pes.get((r - 1, c))
        if not pe.top and pe.above is None:
            raise ValueError(f"PE ({r}, {c}) sends psums over the link to PE ({r - 1}, {c}), "
                             f"which is not enabled")
    return pes
