"""Analytical performance model of the accelerator: cycles, counters, accesses, energy.

`predict` interprets a program the way `ommatidia.hw.top.Accelerator` runs it,
without knowing how `ommatidia.gen.program.compile_layer` built it: it decodes
each command word from the DRAM image (docs/program.md), keeps the registers
(unpacked with their `lib.data` layouts) and the tag tables, and predicts the
cycles of each command from them and, where it matters, from the DRAM data.
The DRAM port is assumed never to stall (``stall_rate = 0``).

Cycle formulas (derived from the RTL, checked against Verilator)
----------------------------------------------------------------
- Command fetch: a DRAM word costs two cycles (request, response), a command
  one more to execute: ``SET`` of ``k`` words ``3 + 2k``, ``TAG``, ``BIAS``,
  ``DONE`` 3.
- ``DMA_IN``: 3 + raw ``words + 3`` (one word a cycle, one request in flight),
  or RLC ``n + 4`` (the decoder makes one value a cycle, zeros included; words
  past the term word are drained one a cycle after it is taken, ``1 + v``
  cycles in for ``v`` values before it: ``max(n + 4, v + extra + 3)``).
- ``DMA_OUT`` raw: 3 + ``3n + 2`` (one GLB read in flight).
- ``DMA_OUT`` (RLC): a GLB read of one psum word costs two cycles before its
  ``e`` psums (``e = 64 / psum slot``) go out one a cycle, so
  ``(w - 1)(e + 2) + r + 9`` for ``w`` words, ``r`` psums in the last word.
- ``PASS``: ``4 +`` the first cycle the engines are idle, from a per-output
  max-plus recurrence over the PEs (`_pass_timing`). Each PE issues one
  operation a cycle (``F*S*q*p`` of them; a zero activation still takes its
  cycle) through a 4-stage pipeline; it waits for

  * its filters: the filter sender delivers one weight a cycle with one idle
    cycle per new GLB word (8 per 9 cycles for 8-bit weights);
  * the ifmap column of each tap: the ifmap sender multicasts one value a
    cycle (plus a cycle per GLB word) and a packet waits until every target
    has room in its ring of ``ifmap_spad_depth // q`` columns, which frees a
    column only when the PE has used it; since the stream is
    column-interleaved, every column waits for the slowest PE's ring;
  * the psums of the first tap: from the psum sender (bottom PEs, in
    ``(f, e, k)`` order), or over the local link from the PE below, which
    emits them only at its last tap, so each level of a psum chain lags the
    one below by about one output and, with a ring only ``S`` columns deep,
    a tall chain serializes (AlexNet CONV1/CONV3 passes run ~9x their
    compute bound);
  * room for its psums: a link holds one psum; the GON takes one psum a
    cycle from all the top PEs, round-robin, so PEs freeze while waiting.

  Each psum chain (a column of PEs linked by ``up``) runs its outputs as soon
  as its inputs are known; the GON grants strictly in cycle order, up to a
  horizon no other chain can request before. GLB read-port conflicts between
  the senders (one word a cycle, round-robin) are settled by replaying each
  round's requests through the round-robin arbiter until the grants agree.
  Passes whose first tap is also their last (``S*q == 1``), which the
  recurrences cannot order, fall back to a cycle-level reference of the same
  rules (``predict(..., reference=True)`` uses it for every pass).

- Arbiter state survives ``start``: the GLB port's and the GON's round-robin
  pointers carry over from one run to the next, so a layer's cycles depend
  (by a few cycles) on the run before it; `Prediction.state` hands it on.

Counters and accesses
---------------------
`Prediction.counters` predicts `ommatidia.hw.top.COUNTERS` as the hardware
counts them. ``gated_macs`` and ``dram_words_written`` depend on the data:
with ``values=True`` (default) the model tracks the GLB contents and
computes every pass (filters, ifmaps and psums routed by the tag tables and
IDs), so they are exact; with ``values=False`` they are worst cases (no zero).

`Prediction.accesses`, in data values (elements, not words):

- ``dram``: DRAM traffic (``dram_words_read + dram_words_written``) in
  ``act_bits`` element equivalents (words * ``dram_bits / act_bits``), so RLC
  savings count;
- ``glb``: element reads (one per sender packet, however many PEs it
  reaches; one per psum read by ``DMA_OUT``) and element writes (one per
  value ``DMA_IN`` stores, one per psum the GON receiver stores);
- ``noc``: GIN values delivered to PEs (a multicast counts once per target),
  psums passed over local links, psums carried by the GON;
- ``spad``: per PE one ifmap read per tap and channel, shared by its ``p``
  filters (the PE computes k innermost); per PE operation one filter read
  unless the activation is zero, one psum read unless it is the first tap, one
  psum write unless it is the last tap; plus the spad writes of every weight
  and activation a PE loads;
- ``mac``: multiplications done (``mac_cycles``; zero-gated ones excluded).

`Prediction.energy` weighs them with `ommatidia.gen.energy.energy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Shape
from amaranth.lib import data

__all__ = ["Command", "Prediction", "decode", "pass_registers", "predict", "predict_words",
           "reset_state", "rlc_words"]

_KINDS = ("filter", "ifmap", "psum")


# ---------------------------------------------------------------------------
# Decoding


def _unpack_expr(shape, offset: int) -> str:
    """A Python expression of ``b`` (the bits) giving the value of ``shape`` at ``offset``."""
    if isinstance(shape, data.StructLayout):
        items = ", ".join(f"{name!r}: {_unpack_expr(f.shape, offset + f.offset)}"
                          for name, f in shape)
        return "{" + items + "}"
    if isinstance(shape, data.ArrayLayout):
        width = Shape.cast(shape.elem_shape).width
        items = ", ".join(_unpack_expr(shape.elem_shape, offset + k * width)
                          for k in range(shape.length))
        return "[" + items + "]"
    s = Shape.cast(shape)
    field = f"((b >> {offset}) & {(1 << s.width) - 1})"
    if s.signed:
        top = 1 << (s.width - 1)
        return f"(({field} ^ {top}) - {top})"
    return field


def _unpacker(shape):
    """A function turning the bits of ``shape`` into ints, dicts and lists: one
    expression compiled from the layout (unpacking is the model's hottest path)."""
    return eval("lambda b: " + _unpack_expr(shape, 0))


@dataclass(frozen=True)
class Command:
    """One decoded command: opcode name, word address, words it spans (command word and
    operands), and for ``SET`` the register and its raw value, for ``TAG`` / ``BIAS``
    the unpacked write."""

    op: str
    pc: int
    words: int
    reg: str | None = None
    value: object = None


def decode(cfg, words: dict) -> list[Command]:
    """The commands of the program at DRAM word 0 of ``words`` (address -> word), up to
    and including ``DONE``. Raises ValueError on an unknown opcode or register, as the
    controller stops with ``error`` there."""
    from ommatidia.hw.dma import bias_write_layout
    from ommatidia.hw.engines import tag_write_layout
    from ommatidia.hw.top import REGISTERS, Opcode
    tag_un, bias_un = _unpacker(tag_write_layout(cfg)), _unpacker(bias_write_layout(cfg))
    pc, out = 0, []
    while True:
        word = words.get(pc, 0)
        op, low = word >> 56, word & ((1 << 56) - 1)
        if op == Opcode.SET:
            reg, k = low & 0xff, (low >> 8) & 0xffff
            if reg >= len(REGISTERS):
                raise ValueError(f"SET of register {reg} at word {pc}: there are "
                                 f"{len(REGISTERS)} registers")
            value = sum(words.get(pc + 1 + j, 0) << (64 * j) for j in range(k))
            out.append(Command("SET", pc, 1 + k, REGISTERS[reg], value))
            pc += 1 + k
            continue
        if op == Opcode.TAG:
            out.append(Command("TAG", pc, 1, None, tag_un(low)))
        elif op == Opcode.BIAS:
            out.append(Command("BIAS", pc, 1, None, bias_un(low)))
        elif op in (Opcode.DMA_IN, Opcode.PASS, Opcode.DMA_OUT, Opcode.DONE):
            out.append(Command(Opcode(op).name, pc, 1))
            if op == Opcode.DONE:
                return out
        else:
            raise ValueError(f"unknown opcode {op} at word {pc}")
        pc += 1


def pass_registers(cfg, words: dict) -> list[dict]:
    """The registers (unpacked: ints, dicts, lists) and the three tag tables
    (``"tags"``: index -> entry per sender) at each ``PASS`` of the program in
    ``words``, in program order."""
    from ommatidia.hw.top import REGISTERS, register_shapes
    shapes = register_shapes(cfg)
    unpack = {name: _unpacker(shapes[name]) for name in REGISTERS}
    regs = {name: unpack[name](0) for name in REGISTERS}
    tags = [dict() for _ in _KINDS]
    out = []
    for cmd in decode(cfg, words):
        if cmd.op == "SET":
            regs[cmd.reg] = unpack[cmd.reg](cmd.value)
        elif cmd.op == "TAG":
            tags[cmd.value["engine"]][cmd.value["index"]] = cmd.value["entry"]
        elif cmd.op == "PASS":
            out.append({**regs, "tags": [dict(t) for t in tags]})
    return out


# ---------------------------------------------------------------------------
# Pass timing: per-output max-plus recurrences


class _Unordered(Exception):
    """The recurrences cannot order this pass; use the cycle-level reference."""


class _Port:
    """The GLB read port: one grant a cycle. A request waits as long as ``plan`` says
    (the round-robin wait of the same request in a previous round; with ``shift``
    False only if it comes in the same cycle), then for a free cycle; ``log`` records
    per sender (request cycle, grant) in request order."""

    def __init__(self, plan=None, shift: bool = True):
        self.used = set()
        self.plan = plan or {}
        self.shift = shift
        self.log = [[], [], []]

    def grant(self, sender: int, t: int) -> int:
        k = len(self.log[sender])
        planned = self.plan.get((sender, k))
        g = t
        if planned is not None and (self.shift or planned[0] == t):
            g += planned[1] - planned[0]
        while g in self.used:
            g += 1
        self.used.add(g)
        self.log[sender].append((t, g))
        return g


def _round_robin(log, last: int) -> dict:
    """The grants the RTL's round-robin port makes for the requests of ``log`` (per
    sender, its request cycles in order; each waits for the previous one's grant):
    (sender, k) -> (request cycle, grant)."""
    queues = [[t for t, _ in reqs] for reqs in log]
    pos, out = [0, 0, 0], {}
    heads = [q[0] if q else None for q in queues]
    t = min((h for h in heads if h is not None), default=None)
    while t is not None:
        waiting = [e for e in range(3) if heads[e] is not None and heads[e] <= t]
        if waiting:
            e = next(c for c in ((last + j) % 5 for j in range(1, 6)) if c in waiting)
            out[e, pos[e]] = (queues[e][pos[e]], t)
            last = e
            pos[e] += 1
            heads[e] = queues[e][pos[e]] if pos[e] < len(queues[e]) else None
            if heads[e] is not None:
                heads[e] = max(heads[e], t + 1)
            t += 1
        else:
            t = min((h for h in heads if h is not None), default=None)
    return out


class _PE:
    """Timing state of one PE: issue cursor, pipeline freezes, ifmap columns."""

    __slots__ = ("r", "c", "acc", "gin", "below", "above", "top", "C0", "prev", "fr", "A",
                 "nv", "ret", "last_take", "np", "final_O", "final_I", "tap_end", "nf")

    def __init__(self, r: int, c: int):
        self.r, self.c = r, c
        self.prev = 0
        self.fr = []
        self.A = []
        self.nv = self.np = self.nf = 0
        self.ret = []
        self.last_take = -1
        self.final_O = self.final_I = 0
        self.tap_end = []

    def next_free(self, t: int) -> int:
        """First cycle from ``t`` not frozen by a psum waiting at the accumulate stage."""
        for a, o in self.fr:
            if a <= t < o:
                t = o
        return t

    def issue_one(self, tmin: int) -> int:
        t = self.next_free(max(self.prev + 1, tmin))
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
        return i + 4 + sum(o - a for a, o in self.fr if a > i)

    def freeze(self, acc: int, out: int) -> None:
        if out > acc:
            self.fr.append((acc, out))

    def prune(self) -> None:
        self.fr = [x for x in self.fr if x[1] > self.prev - 8]


class _Sender:
    """Timing of one sender's packets: emission ``e`` (registered, valid from ``e + 1``)
    and delivery ``d`` (the cycle the last target takes it)."""

    def __init__(self, stream, port, index: int):
        self.index = index
        self.word, self.tag, self.targets = stream["word"], stream["tag"], stream["targets"]
        self.N = len(self.word)
        self.miss = stream["miss"]
        self.port = port
        self.n = 0
        self.e = self.d = -1
        self.first = 0
        self.stalls = 0
        self.last_grant = -1

    def emit(self) -> int:
        n = self.n
        if n == 0:
            e = self.first + 1
        elif self.miss[n]:
            g = self.port.grant(self.index, self.e + 1)
            self.last_grant = max(self.last_grant, g)
            e = max(g + 1, self.d)
        else:
            e = max(self.e + 1, self.d)
        self.e = e
        return e

    def deliver(self, d: int) -> None:
        self.stalls += d - self.e - 1
        self.d = d
        self.n += 1


class _Gon:
    """The GON: a round-robin X-bus arbiter per row into the Y-bus arbiter, each one psum
    a cycle, and the receiver taking one a cycle. An X-bus grant at ``g`` holds the
    X-bus until the Y-bus takes the psum (``g + 1`` when it is free). Grants are made
    in cycle order, up to a horizon before which no unscheduled request can come."""

    def __init__(self, rows: int, cols: int, xptr, yptr: int):
        self.rows, self.cols = rows, cols
        self.xbusy = [set() for _ in range(rows)]
        self.ybusy = set()
        self.xptr, self.yptr = list(xptr), yptr
        self.y_last = -1
        self.t = 0
        self.tops = []

    def step(self, horizon: int) -> bool:
        """Make the grants of the cycles with requests before ``horizon`` until a top's
        output is done; whether it granted anything."""
        tops = [tp for tp in self.tops if not tp.done]
        self.tops = tops
        if not tops:
            return False
        rows = {}
        for tp in tops:
            rows.setdefault(tp.pe.r, []).append(tp)
        for row in rows.values():
            row.sort(key=lambda tp: tp.pe.c)
        moved = False
        while True:
            t = max(self.t, min(tp.acc for tp in tops))
            if t >= horizon:
                return moved
            finished = False
            for r, row in rows.items():
                busy = self.xbusy[r]
                if t in busy:
                    continue
                ptr, g = self.xptr[r], None
                for tp in row:
                    if tp.acc <= t and not tp.done:
                        if tp.pe.c >= ptr:
                            g = tp
                            break
                        if g is None:
                            g = tp
                if g is None:
                    continue
                self.xptr[r] = 0 if g.pe.c == self.cols - 1 else g.pe.c + 1
                y = t + 1
                while y in self.ybusy:
                    y += 1
                self.ybusy.add(y)
                busy.update(range(t, y))
                if y > self.y_last:
                    self.y_last = y
                    self.yptr = 0 if r == self.rows - 1 else r + 1
                g.grant(t)
                finished |= g.done
            self.t = t + 1
            moved = True
            if finished:
                self.tops = [tp for tp in tops if not tp.done]
                return True


class _Top:
    """The last operations (psums out) of one output of a PE that sends to the GON."""

    def __init__(self, pe: _PE, p: int, tmin: int):
        self.pe, self.p, self.k = pe, p, 0
        self.done = False
        self.i = pe.issue_one(tmin)
        self.acc = pe.acc_time(self.i)

    def grant(self, t: int) -> None:
        pe = self.pe
        pe.freeze(self.acc, t)
        pe.final_O, pe.final_I = t, self.i
        self.k += 1
        if self.k == self.p:
            self.done = True
            return
        self.i = pe.issue_one(0)
        self.acc = pe.acc_time(self.i)


@dataclass
class _PassTime:
    """What the timing of one pass gives: ``PASS`` command cycles, the arbiter state
    after it (GLB reader last granted, X-bus pointers, Y-bus pointer), stall counters."""

    cycles: int
    rr: tuple
    pe_stalls: int
    noc_stalls: int


def _pe_grid(cfg, regs):
    """The enabled PEs with their psum routes (`_PE`), keyed by (row, column)."""
    rows, cols = cfg.rows, cfg.cols
    en, up, run = regs["enable"], regs["up"], regs["run"]
    pes = {(r, c): _PE(r, c) for r in range(rows) for c in range(cols) if en[r][c]}
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


def _first_grants(senders) -> None:
    """At the pass start every sender with packets requests a GLB word."""
    for e, s in enumerate(senders):
        if s.N:
            s.first = s.last_grant = s.port.grant(e, 0)


def _pass_timing(cfg, regs, streams, rr, rounds: int = 10) -> _PassTime:
    """Cycles of one ``PASS`` (`_pass_rounds`), its GLB port grants iterated to the
    round-robin fixed point: each round replays the previous round's fetch requests
    through the RTL's round-robin arbiter. Rounds keep each request's wait; after
    half of them only for requests in the same cycle, which converges, a conflict at
    a time; the round closest to its own replay is kept."""
    plan, best = {}, None
    for n in range(rounds):
        got, log = _pass_rounds(cfg, regs, streams, rr, plan, n < rounds // 2)
        rr_plan = _round_robin(log, rr[0])
        used = {(e, k): x for e in range(3) for k, x in enumerate(log[e])}
        miss = sum(used.get(k) != x for k, x in rr_plan.items())
        if best is None or miss <= best[0]:
            best = (miss, got)
        if not miss:
            break
        plan = rr_plan
    return best[1]


def _pass_rounds(cfg, regs, streams, rr, plan, shift=True):
    """One round of the timing of a ``PASS`` from its registers and sender streams
    (`_Machine._streams`), the GLB port answering from ``plan``; returns the
    `_PassTime` and the port's request log.

    Filters go first (never refused). Then, as far as the known times allow: the
    ifmap packets in stream order (each waits until every target has room in its
    ring: the issue of the operation that retired column ``x - ring``); the psum
    sender's packets (taken at the bottom PEs' first-tap issues); each chain's
    next output once its columns and psums are in, bottom-up: a PE's taps as
    blocks of operations, its last-tap psums handed up the link to the first-tap
    issues of the PE above psum by psum, and the top's last-tap psums registered
    with the GON, which grants them in cycle order.
    """
    run = regs["run"]
    S, F, U, p, q, ring = (run[k] for k in ("S", "F", "U", "p", "q", "ring"))
    L, tap = S * q * p, q * p
    if L == p:
        raise _Unordered()
    pes = _pe_grid(cfg, regs)
    port = _Port(plan, shift)
    snd = [_Sender(streams[kind], port, e) for e, kind in enumerate(_KINDS)]
    for kind, s in zip(_KINDS, snd):
        for group in s.targets.values():
            for rc in group:
                if rc not in pes:
                    raise ValueError(f"a {kind} tag reaches PE {rc}, which is not enabled")
    _first_grants(snd)
    fs, ifm, psm = snd
    for pe in pes.values():
        pe.C0 = 1
    if run["load_filter"]:
        count = run["filter_count"]
        while fs.n < fs.N:
            e = fs.emit()
            for rc in fs.targets[fs.tag[fs.n]]:
                pe = pes[rc]
                pe.nf += 1
                if pe.nf == count:
                    pe.C0 = e + 2
            fs.deliver(e + 1)
    for pe in pes.values():
        pe.prev = pe.C0 - 1
    plans = {}
    for acc in (False, True):
        segs, j = [], 0
        if acc:
            j = p
        for s in range(S):
            lo, hi = max(j, s * tap), min(L - p, (s + 1) * tap)
            if lo < hi:
                segs.append((hi - lo, s if lo == s * tap else -1, hi % tap == 0))
                j = hi
        plans[acc] = segs
    last_col = S - 1 if q == 1 else -1
    chains = []
    for pe in sorted(pes.values(), key=lambda x: (x.c, -x.r)):
        if pe.below is None:
            chain = [pe]
            while not chain[-1].top:
                chain.append(chain[-1].above)
            chains.append(chain)
    gon = _Gon(cfg.rows, cfg.cols, rr[1], rr[2])
    chain_of = {id(pe): k for k, chain in enumerate(chains) for pe in chain}
    phase = [0] * len(chains)
    busy = [None] * len(chains)

    def deliver_ifmaps():
        moved = False
        while ifm.n < ifm.N:
            group = [pes[rc] for rc in ifm.targets[ifm.tag[ifm.n]]]
            ready = []
            for pe in group:
                x = pe.nv // q
                if x < ring:
                    ready.append(1)
                elif x - ring < len(pe.ret):
                    ready.append(pe.ret[x - ring] + 1)
                else:
                    return moved
            e = ifm.emit()
            d = e + 1
            for pe, rv in zip(group, ready):
                take = max(e + 1, rv)
                d = max(d, take)
                pe.nv += 1
                if pe.nv % q == 0:
                    pe.A.append(take + 1)
            ifm.deliver(d)
            moved = True
        return moved

    def send_psums():
        moved = False
        while psm.n < psm.N:
            group = [pes[rc] for rc in psm.targets[psm.tag[psm.n]]]
            for pe in group:
                f = pe.np // p
                k = chain_of[id(pe)]
                if phase[k] != f or busy[k] is not None or len(pe.A) <= f * U:
                    return moved
            e = psm.emit()
            d = e + 1
            for pe in group:
                f, k = divmod(pe.np, p)
                take = pe.issue_one(max(e + 1, pe.A[f * U] if k == 0 else 0))
                pe.np += 1
                d = max(d, take)
                if k == p - 1 and q == 1:
                    pe.tap_end.append(take)
            psm.deliver(d)
            moved = True
        return moved

    def plain(pe, f):
        A, base, ends = pe.A, f * U, pe.tap_end
        if not pe.fr or pe.fr[-1][1] <= pe.prev + 1:
            t = pe.prev + 1
            for n, col, ends_tap in plans[pe.acc]:
                if col >= 0 and A[base + col] > t:
                    t = A[base + col]
                t += n
                if ends_tap:
                    ends.append(t - 1)
            pe.prev = t - 1
            return
        for n, col, ends_tap in plans[pe.acc]:
            last = pe.issue_block(n, A[base + col] if col >= 0 else 0)
            if ends_tap:
                ends.append(last)

    def hand_over(b, a, f):
        """Last-tap psums of ``b`` up the link to ``a``'s first tap, psum by psum."""
        tmin = b.A[f * U + last_col] if last_col >= 0 else 0
        tb = max(b.prev + 1, tmin)
        ta = max(a.prev + 1, a.A[f * U])
        if (not b.fr or b.fr[-1][1] <= tb) and (not a.fr or a.fr[-1][1] <= a.prev + 1) \
                and a.last_take <= tb + 4 and ta <= tb + 5:
            b.prev = b.final_I = tb + p - 1
            b.final_O = tb + p + 3
            a.prev = a.last_take = tb + p + 4
            if q == 1:
                a.tap_end.append(a.prev)
        else:
            for k in range(p):
                i = b.issue_one(tmin if k == 0 else 0)
                acc = b.acc_time(i)
                o = max(acc, a.last_take)
                b.freeze(acc, o)
                take = a.issue_one(max(o + 1, a.A[f * U] if k == 0 else 0))
                a.last_take = take
                if k == p - 1 and q == 1:
                    a.tap_end.append(take)
            b.final_I, b.final_O = i, o
        b.tap_end.append(b.final_I)

    def free_columns(pe, f):
        """Retire the ring columns output ``f`` is done with whose taps' last issues are
        known: the RTL frees column ``f*U + s`` at the last issue of tap ``s``, so a
        chain's top frees the columns of its earlier taps before the GON takes its psums
        (other chains' ifmaps can wait on them)."""
        for s_ in range(len(pe.ret) - f * U, U):
            if min(s_, S - 1) >= len(pe.tap_end):
                return
            pe.ret.append(pe.tap_end[min(s_, S - 1)])

    def start_phases():
        """Run each chain whose next output has all its inputs up to its GON requests."""
        moved = False
        for k, chain in enumerate(chains):
            f = phase[k]
            if f == F or busy[k] is not None:
                continue
            need = f * U + S - 1
            b = chain[0]
            if any(len(pe.A) <= need for pe in chain) or (b.gin and b.np != (f + 1) * p):
                continue
            plain(b, f)
            for lvl in range(len(chain) - 1):
                hand_over(chain[lvl], chain[lvl + 1], f)
                plain(chain[lvl + 1], f)
            t = chain[-1]
            busy[k] = _Top(t, p, t.A[f * U + last_col] if last_col >= 0 else 0)
            gon.tops.append(busy[k])
            for pe in chain:
                free_columns(pe, f)
            moved = True
        return moved

    def finish_phases():
        moved = False
        for k, tp in enumerate(busy):
            if tp is None or not tp.done:
                continue
            tp.pe.tap_end.append(tp.pe.final_I)
            for pe in chains[k]:
                if len(pe.tap_end) != S:
                    raise _Unordered()
                free_columns(pe, phase[k])
                pe.tap_end = []
                pe.prune()
            busy[k] = None
            phase[k] += 1
            moved = True
        return moved

    def horizon():
        """No chain without GON requests can make one before this cycle."""
        h = 1 << 62
        for k, chain in enumerate(chains):
            if busy[k] is None and phase[k] < F:
                h = min(h, chain[-1].prev + L - p + 5)
        return h

    while True:
        moved = deliver_ifmaps()
        moved |= send_psums()
        moved |= start_phases()
        moved |= gon.step(horizon())
        moved |= finish_phases()
        if all(f == F for f in phase) and ifm.n == ifm.N:
            break
        if not moved and not gon.step(1 << 62):
            raise _Unordered()
    for pe in pes.values():
        if len(pe.A) <= (F - 1) * U + S - 1:
            raise _Unordered()
    ends = [1]
    W = run["W"]
    pe_stalls = 0
    for pe in pes.values():
        if len(pe.A) != W:
            raise ValueError(f"PE ({pe.r}, {pe.c}) receives {len(pe.A)} ifmap columns, the run "
                             f"needs W = {W}")
        ends.append(max(pe.final_O + 1, pe.A[-1]) + 1)
        pe_stalls += pe.final_I + 1 - pe.C0 - F * L
        if run["load_filter"]:
            pe_stalls += pe.C0 - 1 - run["filter_count"]
    for s in snd:
        if s.N:
            ends.append(s.d + 1)
    if regs["gon_desc"]["count"]:
        ends.append(gon.y_last + 3)
    granted = [(s.last_grant, e) for e, s in enumerate(snd) if s.N]
    glb = max(granted)[1] if granted else rr[0]
    return _PassTime(max(ends) + 4, (glb, tuple(gon.xptr), gon.yptr), pe_stalls,
                     sum(s.stalls for s in snd)), port.log


# ---------------------------------------------------------------------------
# Pass timing: cycle-level reference (fallback)


class _RefPE:
    __slots__ = ("acc", "state", "computing", "loading", "f", "j", "loaded", "load_c",
                 "load_limit", "filter_load", "pipe", "issue", "take", "advance", "state0",
                 "loaded0", "stalls")

    def __init__(self, acc):
        self.acc = acc
        self.state = 0
        self.computing = self.loading = False
        self.f = self.j = self.loaded = self.load_c = self.load_limit = self.filter_load = 0
        self.pipe = [None] * 4
        self.issue = self.take = False
        self.stalls = 0


def _reference_pass(cfg, regs, streams, rr) -> _PassTime:
    """The same rules simulated cycle by cycle (slow; for passes `_pass_timing` cannot
    order, and for tests)."""
    run = regs["run"]
    S, W, F, U, p, q, ring = (run[k] for k in ("S", "W", "F", "U", "p", "q", "ring"))
    rows, cols = cfg.rows, cfg.cols
    grid = _pe_grid(cfg, regs)
    pes = {rc: _RefPE(pe.acc) for rc, pe in grid.items()}
    order = sorted(pes)
    snd = []
    for kind in _KINDS:
        st = streams[kind]
        snd.append({"word": st["word"], "tag": st["tag"], "targets": st["targets"],
                    "n": 0, "N": len(st["word"]), "o": False, "pkt": 0, "done": set(),
                    "cache": None, "wait": False, "glbv": False, "req": None, "stalls": 0})
    for s in snd:
        s["running"] = s["N"] > 0
    links = {rc: False for rc, pe in grid.items() if not pe.top}
    xo, xptr, yo, yptr = [False] * rows, list(rr[1]), False, rr[2]
    count = regs["gon_desc"]["count"]
    rx_running, rx_glb, rx_total = count != 0, False, 0
    glb_last, pending, t = rr[0], True, 0

    def out_valid(pe):
        return pe.pipe[3] is not None and pe.pipe[3]

    while True:
        if not (pending or rx_running or rx_glb or any(pe.state for pe in pes.values())
                or any(s["running"] or s["o"] for s in snd)):
            break
        reqs = []
        for e, s in enumerate(snd):
            s["hit"] = False
            if s["running"]:
                w = s["word"][s["n"]]
                s["hit"] = (s["glbv"] and s["req"] == w) or s["cache"] == w
                if not s["hit"] and not s["wait"]:
                    reqs.append(e)
        grant = None
        for j in range(1, 6):
            if (glb_last + j) % 5 in reqs:
                grant = glb_last = (glb_last + j) % 5
                break
        y_room = (not yo) or rx_running
        yg = None
        if y_room and any(xo):
            valid = [r for r in range(rows) if xo[r]]
            after = [r for r in valid if r >= yptr]
            yg = after[0] if after else valid[0]
        xg = {}
        for r in range(rows):
            if (not xo[r]) or yg == r:
                valid = [c for c in range(cols) if (r, c) in pes and grid[r, c].top
                         and pes[r, c].state == 2 and out_valid(pes[r, c])]
                if valid:
                    after = [c for c in valid if c >= xptr[r]]
                    xg[r] = after[0] if after else valid[0]
        ps = snd[2]
        for rc in order:
            pe, g = pes[rc], grid[rc]
            pe.issue = pe.take = False
            pe.advance = True
            pe.state0, pe.loaded0 = pe.state, pe.loaded
            if pe.state != 2:
                continue
            if out_valid(pe):
                if g.top:
                    ready = xg.get(rc[0]) == rc[1]
                else:
                    ready = (not links[rc]) or pes[rc[0] - 1, rc[1]].take
            else:
                ready = True
            pe.advance = not (out_valid(pe) and not ready)
            need = pe.acc and pe.j < p
            if need:
                if g.below is not None:
                    pin = links[rc[0] + 1, rc[1]]
                else:
                    pin = ps["o"] and rc in ps["targets"][ps["tag"][ps["pkt"]]] \
                        and rc not in ps["done"]
            else:
                pin = True
            column = pe.f * U + pe.j // (q * p)
            can = pe.computing and pe.loaded > column and pin
            pe.issue = can and pe.advance
            pe.take = pe.issue and need
            if pe.computing and not pe.issue:
                pe.stalls += 1
        for e, s in enumerate(snd):
            s["ready"], s["takers"] = False, []
            if not s["o"]:
                continue
            ok_all = True
            for rc in s["targets"][s["tag"][s["pkt"]]]:
                if rc in s["done"]:
                    continue
                pe = pes[rc]
                if e == 0:
                    ok = pe.state == 1
                elif e == 1:
                    ok = pe.loading and pe.loaded < W and pe.loaded < pe.load_limit
                else:
                    ok = pe.take
                if ok:
                    s["takers"].append(rc)
                else:
                    ok_all = False
            s["ready"] = ok_all
            if not ok_all:
                s["stalls"] += 1
        for s in snd:
            s["emit"] = s["running"] and s["hit"] and ((not s["o"]) or s["ready"])
        for e, s in enumerate(snd):
            for rc in s["takers"]:
                pe = pes[rc]
                if e == 0:
                    pe.filter_load += 1
                    if pe.filter_load == run["filter_count"]:
                        pe.computing, pe.state = True, 2
                elif e == 1:
                    pe.load_c += 1
                    if pe.load_c == q:
                        pe.load_c, pe.loaded = 0, pe.loaded + 1
            if s["o"]:
                s["done"] = set() if s["ready"] else s["done"] | set(s["takers"])
            if s["glbv"]:
                s["cache"], s["wait"] = s["req"], False
            s["glbv"] = False
            if s["ready"]:
                s["o"] = False
            if s["emit"]:
                s["o"], s["pkt"] = True, s["n"]
                s["n"] += 1
                s["running"] = s["n"] < s["N"]
            elif s["running"] and not s["hit"] and not s["wait"] and grant == e:
                s["wait"], s["req"], s["glbv"] = True, s["word"][s["n"]], True
        for rc in links:
            pe, above = pes[rc], pes[rc[0] - 1, rc[1]]
            if pe.state0 == 2 and out_valid(pe) and ((not links[rc]) or above.take):
                links[rc] = True
            elif above.take:
                links[rc] = False
        rx_accept = rx_running and yo
        if y_room:
            yo = yg is not None
            if yg is not None:
                yptr = 0 if yg == rows - 1 else yg + 1
        for r in range(rows):
            if (not xo[r]) or yg == r:
                xo[r] = r in xg
                if r in xg:
                    xptr[r] = 0 if xg[r] == cols - 1 else xg[r] + 1
        rx_glb = rx_accept
        if rx_accept:
            rx_total += 1
            rx_running = rx_total < count
        for pe in pes.values():
            if pe.state0 == 0:
                if pending:
                    pe.loading, pe.load_limit = True, ring
                    if run["load_filter"]:
                        pe.state = 1
                    else:
                        pe.state, pe.computing = 2, True
                continue
            if pe.state0 == 1:
                if pe.state == 1:
                    pe.stalls += 0 if any(pe is pes[x] for x in snd[0]["takers"]) else 1
                continue
            if pe.advance:
                pe.pipe = [(pe.j >= (S * q - 1) * p) if pe.issue else None] + pe.pipe[:3]
            if pe.issue:
                s_, c_, k_ = pe.j // (q * p), (pe.j // p) % q, pe.j % p
                if c_ == q - 1 and k_ == p - 1:
                    if s_ < U:
                        pe.load_limit = pe.f * U + s_ + 1 + ring
                    if s_ == S - 1:
                        pe.load_limit = pe.f * U + U + ring
                pe.j += 1
                if pe.j == S * q * p:
                    pe.j, pe.f = 0, pe.f + 1
                    pe.computing = pe.f < F
            elif not pe.computing and all(x is None for x in pe.pipe) and pe.loaded0 == W:
                pe.state, pe.loading = 0, False
        pending = False
        t += 1
    return _PassTime(t + 4, (glb_last, tuple(xptr), yptr),
                     sum(pe.stalls for pe in pes.values()), sum(s["stalls"] for s in snd))


# ---------------------------------------------------------------------------
# The machine: registers, GLB contents, commands


def rlc_words(values, fmt) -> int:
    """Words of the canonical RLC code of ``values`` (what `ommatidia.hw.rlc.RLCEncoder`
    emits): a pair per non-zero value, per ``max_run + 1`` zeros of a run, and for the
    last value; ``pairs_per_word`` pairs a word; one word when empty."""
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        return 1
    z = np.concatenate(([0], (v == 0).astype(np.int8), [0]))
    d = np.diff(z)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    lengths = ends - starts
    span = fmt.max_run + 1
    pairs = int(np.count_nonzero(v))
    if v[-1] == 0:
        pairs += (int(lengths[-1]) - 1) // span + 1
        lengths = lengths[:-1]
    pairs += int(np.sum(lengths // span))
    return -(-pairs // fmt.pairs_per_word)


def _rlc_decode(words: list, n: int, fmt) -> np.ndarray:
    """The ``n`` values of an RLC stream (vectorised; the reference decoder of
    `ommatidia.sim.rlc` for word widths above 64 bits and for malformed streams,
    which it reports)."""
    from ommatidia.sim.rlc import decode as reference
    if fmt.word_bits > 64 or not words or n == 0:
        return np.asarray(reference(words, n, fmt), dtype=np.int64)
    w = np.array(words, dtype=np.uint64)
    k = np.arange(fmt.pairs_per_word, dtype=np.uint64) * np.uint64(fmt.pair_bits)
    runs = ((w[:, None] >> k) & np.uint64(fmt.max_run)).astype(np.int64).reshape(-1)
    levels = _signed(((w[:, None] >> (k + np.uint64(fmt.run_bits)))
                      & np.uint64((1 << fmt.level_bits) - 1)).astype(np.int64).reshape(-1),
                     fmt.level_bits)
    ends = np.cumsum(runs + 1)
    j = int(np.searchsorted(ends, n))
    if j >= len(ends) or ends[j] != n or j // fmt.pairs_per_word != len(words) - 1:
        return np.asarray(reference(words, n, fmt), dtype=np.int64)
    out = np.zeros(n, dtype=np.int64)
    out[ends[:j + 1] - 1] = levels[:j + 1]
    return out


def _signed(x, bits: int):
    """``x`` reduced to signed ``bits``-bit two's complement."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    x = x & ((1 << bits) - 1)
    return np.where(x >= 1 << (bits - 1), x - (1 << bits), x)


@dataclass(frozen=True)
class Prediction:
    """What `predict` gives for a program.

    ``commands`` lists (opcode, cycles) per command in program order; ``by_op`` sums
    them per opcode; ``counters`` predicts `ommatidia.hw.top.COUNTERS`; ``accesses``
    and ``energy`` are per memory level (see the module docstring); ``exact`` is False
    when some data-dependent counter is a worst case (``values=False``);
    ``fallback_passes`` counts passes timed by the cycle-level reference; ``state`` is
    the arbiter state the run leaves (`reset_state` layout), which ``start`` does not
    clear: pass it as ``state`` to predict a program run after this one.
    """

    cycles: int
    commands: tuple
    by_op: dict
    counters: dict
    accesses: dict
    energy: dict
    pe_utilization: float
    passes: int
    exact: bool = True
    fallback_passes: int = 0
    state: tuple = ()

    def table(self) -> list[tuple[str, int, int]]:
        """(opcode, count, cycles) per opcode, for reports."""
        counts = {}
        for op, _ in self.commands:
            counts[op] = counts.get(op, 0) + 1
        return [(op, counts[op], self.by_op[op]) for op in self.by_op]


class _Machine:
    """The accelerator's architectural state as the program changes it."""

    def __init__(self, cfg, words: dict, values: bool, reference: bool = False):
        from ommatidia.hw.engines import data_bits, tag_depth
        from ommatidia.hw.glb import elem_addr_bits, glb_words, slot_bits
        from ommatidia.hw.top import REGISTERS, register_shapes
        self.cfg, self.values, self.reference = cfg, values, reference
        self.dram = dict(words)
        shapes = register_shapes(cfg)
        self.unpack = {name: _unpacker(shapes[name]) for name in REGISTERS}
        self.regs = {name: self.unpack[name](0) for name in REGISTERS}
        self.raw = {name: 0 for name in REGISTERS}
        self.tags = [dict() for _ in _KINDS]
        self.bias = [0] * cfg.pe.psum_spad_depth
        self.bits = data_bits(cfg)
        self.slot = {k: slot_bits(b, cfg.dram_bits) for k, b in self.bits.items()}
        self.per = {k: cfg.dram_bits // s for k, s in self.slot.items()}
        self.abits = elem_addr_bits(cfg)
        self.tag_depth = tag_depth(cfg)
        self.glb = np.zeros(glb_words(cfg), dtype=np.uint64)
        self.filters = ((), np.zeros((0, 0), dtype=np.int64))
        self.filter_rows = {}
        self.rr = reset_state(cfg)
        self.cache = {}
        self.targets_cache = {}
        self.route_cache = {}
        self.grid_cache = {}
        self.shape_cache = {}
        self.count = {k: 0 for k in ("macs", "mac_cycles", "gated_macs", "pe_stall_cycles",
                                     "noc_stall_cycles", "glb_reads", "glb_writes",
                                     "dram_words_read", "dram_words_written", "program_words")}
        self.acc = {"glb": 0, "noc": 0, "spad": 0}
        self.exact = True
        self.fallbacks = 0

    # -- GLB elements

    def _read(self, kind: str, addr: np.ndarray) -> np.ndarray:
        """Elements ``addr`` of ``kind``'s slots, sign-extended from the element width."""
        per, slot = self.per[kind], self.slot[kind]
        word = self.glb[(addr // per) % len(self.glb)]
        shift = ((addr % per) * slot).astype(np.uint64)
        raw = ((word >> shift) & np.uint64((1 << slot) - 1)).astype(np.int64)
        return _signed(raw, self.bits[kind])

    def _write_slots(self, kind: str, addr: np.ndarray, values) -> None:
        """Masked writes of ``values`` into elements ``addr`` of ``kind``'s slots."""
        per, slot = self.per[kind], self.slot[kind]
        mask = np.uint64((1 << slot) - 1)
        words = (addr // per) % len(self.glb)
        shift = ((addr % per) * slot).astype(np.uint64)
        v = (np.asarray(values, dtype=np.int64).astype(np.uint64) & mask) << shift
        np.bitwise_and.at(self.glb, words, ~(mask << shift))
        np.bitwise_or.at(self.glb, words, v)

    # -- commands

    def set(self, name: str, value: int) -> None:
        self.raw[name] = value
        self.regs[name] = self.unpack[name](value)

    def dma_in(self) -> int:
        cmd, cfg = self.regs["dma_in"], self.cfg
        nwords = cmd["words"]
        self.count["dram_words_read"] += nwords
        if cmd["rlc"] and cfg.rlc_codec:
            n, per = cmd["n"], self.per["ifmap"]
            fmt = cfg.rlc
            stream = [self.dram.get(cmd["dram"] + k, 0) for k in range(nwords)]
            end = next((k for k, w in enumerate(stream) if w >> (fmt.word_bits - 1)), nwords - 1)
            if self.values and n:
                vals = _signed(_rlc_decode(stream[:end + 1], n, fmt), cfg.pe.act_bits)
                self._write_slots("ifmap", cmd["glb"] * per + np.arange(n), vals)
            self.count["glb_writes"] += -(-n // per)
            self.acc["glb"] += n
            if not nwords:
                return 4
            cycles = n + 4
            if nwords > end + 1:
                before = 0
                for w in stream[:end]:
                    for k in range(fmt.pairs_per_word):
                        before += ((w >> (k * fmt.pair_bits)) & fmt.max_run) + 1
                cycles = max(cycles, before + nwords - end - 1 + 3)
            return 3 + cycles
        if self.values and nwords:
            for k in range(nwords):
                self.glb[(cmd["glb"] + k) % len(self.glb)] = self.dram.get(cmd["dram"] + k, 0)
        self.count["glb_writes"] += nwords
        self.acc["glb"] += cmd["n"] if cmd["n"] else nwords
        return 3 + (nwords + 3 if nwords else 1)

    def dma_out(self) -> int:
        cmd, cfg = self.regs["dma_out"], self.cfg
        n, per = cmd["n"], self.per["psum"]
        self.rr = (4,) + self.rr[1:]
        if not cmd["rlc"]:
            self.count["glb_reads"] += n
            self.count["dram_words_written"] += n
            self.acc["glb"] += n * per
            if self.values:
                for k in range(n):
                    self.dram[cmd["dram"] + k] = int(self.glb[(cmd["glb"] + k) % len(self.glb)])
            return 3 + 3 * n + 2 if n else 4
        words = -(-n // per)
        self.count["glb_reads"] += words
        self.acc["glb"] += n
        if self.values:
            from ommatidia.gen.program import pack_slots
            from ommatidia.sim.golden import saturate, wrap
            from ommatidia.sim.rlc import encode
            st = cmd["stage"]
            x = self._read("psum", cmd["glb"] * per + np.arange(n))
            b = np.array(self.bias[:max(st["p"], 1)], dtype=np.int64)
            y = wrap(x + b[np.arange(n) % len(b)], cfg.pe.psum_bits)
            if st["relu"]:
                y = np.maximum(y, 0)
            if st["shift"]:
                y = (y + (1 << (st["shift"] - 1))) >> st["shift"]
            z = saturate(y, cfg.pe.act_bits)
            coded = encode(z, cfg.rlc) if cfg.rlc_codec else pack_slots(cfg, "ifmap", z)
            for k, w in enumerate(coded):
                self.dram[cmd["dram"] + k] = w
            self.count["dram_words_written"] += len(coded)
        else:
            self.exact = False
            self.count["dram_words_written"] += (
                (-(-n // cfg.rlc.pairs_per_word) if n else 1) if cfg.rlc_codec
                else -(-n // self.per["ifmap"]))
        if not n:
            return 3 + 6 if cfg.rlc_codec else 4
        r = n - (words - 1) * per
        return (words - 1) * (per + 2) + r + (9 if cfg.rlc_codec else 7)

    def _targets(self, kind: str, entry) -> tuple:
        """The PEs whose multicast controllers take a packet tagged like ``entry``."""
        ids = (self.raw[f"{kind}_row_id"], self.raw[f"{kind}_col_id"])
        cache = self.targets_cache.get(kind)
        if cache is None or cache[0] != ids[0] or cache[1] != ids[1]:
            cache = self.targets_cache[kind] = (ids[0], ids[1], {})
        key = (entry["row"], entry["col"])
        got = cache[2].get(key)
        if got is None:
            noc = self.cfg.noc
            rb, cb = (1 << noc.row_id_bits) - 1, (1 << noc.col_id_bits) - 1
            rid, cid = self.regs[f"{kind}_row_id"], self.regs[f"{kind}_col_id"]
            got = tuple((r, c) for r in range(self.cfg.rows)
                        if key[0] in (rid[r], rb)
                        for c in range(self.cfg.cols) if key[1] in (cid[r][c], cb))
            cache[2][key] = got
        return got

    def _shape(self, desc) -> dict:
        """The part of a sender's stream fixed by its loop counts, strides and tag
        cycling (cached): the address pattern, the tag index of each packet, the tags
        used, and a key naming them."""
        key = (tuple(desc["count"]), tuple(desc["stride"]), desc["repeat"], desc["tags"])
        got = self.shape_cache.get(key)
        if got is None:
            c0, c1, c2 = desc["count"]
            s0, s1, s2 = desc["stride"]
            n = c0 * c1 * c2
            i = np.arange(n, dtype=np.int64)
            tag = (i // max(desc["repeat"], 1)) % max(desc["tags"], 1)
            got = {"n": n, "key": key, "tag": tag, "tags": tag.tolist(),
                   "pattern": (i // max(c1 * c2, 1)) * s0 + ((i // max(c2, 1)) % max(c1, 1)) * s1
                   + (i % max(c2, 1)) * s2,
                   "used": sorted(set(tag.tolist()))}
            self.shape_cache[key] = got
        return got

    def _streams(self) -> dict:
        """Per sender: element addresses, GLB words, word misses, tag indices and the PEs
        each tag index reaches."""
        out = {}
        amask = (1 << self.abits) - 1
        blank = {"row": 0, "col": 0, "offset": 0}
        for e, kind in enumerate(_KINDS):
            desc, table = self.regs[f"{kind}_desc"], self.tags[e]
            shape = self._shape(desc)
            entries = [table.get(t, blank) for t in range(max(desc["tags"], 1))]
            off = np.array([x["offset"] for x in entries], dtype=np.int64)
            addr = (desc["base"] + shape["pattern"] + off[shape["tag"]]) & amask
            word = addr // self.per[kind]
            miss = np.ones(shape["n"], dtype=bool)
            if shape["n"]:
                miss[1:] = word[1:] != word[:-1]
            targets = {t: self._targets(kind, entries[t]) for t in shape["used"]}
            key = (kind, shape["key"], tuple(targets.items()))
            out[kind] = {"addr": addr, "word": word, "miss": miss, "tag": shape["tags"],
                         "targets": targets, "shape": shape["key"],
                         "route": self._route(key, shape["tag"], targets)}
        return out

    def _route(self, key, tag: np.ndarray, targets: dict) -> dict:
        """Per PE the indices of the packets it receives, in order, and the values
        delivered in all (cached: passes of one shape share it)."""
        got = self.route_cache.get(key)
        if got is not None:
            return got
        ids = sorted({rc for group in targets.values() for rc in group})
        index = {rc: k for k, rc in enumerate(ids)}
        ntags = max(targets, default=-1) + 1
        fan = max((len(g) for g in targets.values()), default=0)
        table = np.full((ntags, max(fan, 1)), -1, dtype=np.int64)
        for t, group in targets.items():
            table[t, :len(group)] = [index[rc] for rc in group]
        if len(tag) and fan:
            dest = table[tag]
            pkt = np.broadcast_to(np.arange(len(tag))[:, None], dest.shape)
            keep = dest >= 0
            dest, pkt = dest[keep], pkt[keep]
            order = np.argsort(dest, kind="stable")
            dest, pkt = dest[order], pkt[order]
            bounds = np.searchsorted(dest, np.arange(len(ids) + 1))
            per_pe = {rc: pkt[bounds[k]:bounds[k + 1]] for k, rc in enumerate(ids)}
            delivered = int(keep.sum())
        else:
            per_pe, delivered = {}, 0
        got = {"per_pe": per_pe, "delivered": delivered}
        self.route_cache[key] = got
        return got

    def _timing(self, streams) -> _PassTime:
        keys = [self.raw[name] for name in ("run", "enable", "up", "filter_row_id",
                                            "filter_col_id", "ifmap_row_id", "ifmap_col_id",
                                            "psum_row_id", "psum_col_id")]
        for kind in _KINDS:
            st = streams[kind]
            keys.append((st["shape"], st["miss"].tobytes(), tuple(st["targets"].items())))
        key = (tuple(keys), self.regs["gon_desc"]["count"], self.rr)
        got = self.cache.get(key)
        if got is None:
            try:
                if self.reference:
                    raise _Unordered()
                got = (_pass_timing(self.cfg, self.regs, streams, self.rr), False)
            except _Unordered:
                got = (_reference_pass(self.cfg, self.regs, streams, self.rr), True)
            self.cache[key] = got
        self.fallbacks += got[1]
        return got[0]

    def run_pass(self) -> int:
        regs, cfg = self.regs, self.cfg
        run = regs["run"]
        streams = self._streams()
        timing = self._timing(streams)
        self.rr = timing.rr
        S, W, F, U, p, q = (run[k] for k in ("S", "W", "F", "U", "p", "q"))
        key = (self.raw["enable"], self.raw["up"], run["accumulate"])
        grid = self.grid_cache.get(key)
        if grid is None:
            grid = self.grid_cache[key] = _pe_grid(cfg, regs)
        n_pe = len(grid)
        ops = F * S * q * p
        for kind in _KINDS:
            st = streams[kind]
            self.count["glb_reads"] += int(st["miss"].sum())
            self.acc["glb"] += len(st["word"])
            self.acc["noc"] += st["route"]["delivered"]
        links = sum(1 for pe in grid.values() if not pe.top)
        gon = regs["gon_desc"]["count"]
        self.count["glb_writes"] += gon
        self.acc["glb"] += gon
        self.acc["noc"] += links * F * p + gon
        self.count["macs"] += n_pe * ops
        self.count["pe_stall_cycles"] += timing.pe_stalls
        self.count["noc_stall_cycles"] += timing.noc_stalls
        loads = n_pe * (W * q + (run["filter_count"] if run["load_filter"] else 0))
        zeros = self._compute(streams, grid) if self.values else 0
        if not self.values:
            self.exact = False
        self.count["gated_macs"] += zeros
        self.count["mac_cycles"] += n_pe * ops - zeros
        self.acc["spad"] += n_pe * (F * S * q + 3 * ops - 2 * F * p) - zeros + loads
        return timing.cycles

    def _compute(self, streams, grid) -> int:
        """Runs the pass on the data, psums into the GLB; returns the zero-gated MACs."""
        regs, cfg = self.regs, self.cfg
        run = regs["run"]
        S, W, F, U, p, q = (run[k] for k in ("S", "W", "F", "U", "p", "q"))
        rcs = sorted(grid)
        empty = np.zeros(0, dtype=np.int64)

        def gather(kind, need):
            st = streams[kind]
            if not len(st["word"]) or not need:
                return np.zeros((len(rcs), need), dtype=np.int64)
            route = st["route"]
            key = (tuple(rcs), need)
            idx = route.get(key)
            if idx is None:
                idx = np.full((len(rcs), need), len(st["word"]), dtype=np.int64)
                for n, rc in enumerate(rcs):
                    got = route["per_pe"].get(rc, empty)[:need]
                    idx[n, :len(got)] = got
                route[key] = idx
            vals = np.append(self._read(kind, st["addr"]), 0)
            return vals[idx]

        X = gather("ifmap", W * q).reshape(len(rcs), W, q)
        if run["load_filter"]:
            loaded = gather("filter", run["filter_count"])
            self.filters = (tuple(rcs), loaded)
            self.filter_rows.update(zip(rcs, loaded))
        held_rcs, held = self.filters
        if held_rcs == tuple(rcs) and held.shape[1] >= S * q * p:
            Wt = held[:, :S * q * p]
        else:
            Wt = np.zeros((len(rcs), S * q * p), dtype=np.int64)
            for n, rc in enumerate(rcs):
                w = self.filter_rows.get(rc, empty)[:S * q * p]
                Wt[n, :len(w)] = w
        Wt = Wt.reshape(len(rcs), S, q, p)
        cols = np.arange(F)[:, None] * U + np.arange(S)[None, :]
        win = X[:, cols, :]
        own = np.einsum("nfsc,nsck->nfk", win, Wt)
        zeros = int(np.count_nonzero(win == 0)) * p
        pin = gather("psum", F * p).reshape(len(rcs), F, p) \
            if any(pe.gin for pe in grid.values()) else None
        index = {rc: n for n, rc in enumerate(rcs)}
        out = {}
        for rc in sorted(rcs, key=lambda x: (x[1], -x[0])):
            pe, n = grid[rc], index[rc]
            if pe.below is not None:
                out[rc] = own[n] + out.pop((rc[0] + 1, rc[1]))
            elif pe.gin:
                out[rc] = own[n] + pin[n]
            else:
                out[rc] = own[n]
        gd = regs["gon_desc"]
        amask = (1 << self.abits) - 1
        counts = {}
        for rc in sorted(out):
            c = rc[1]
            psums = _signed(out[rc].reshape(-1), cfg.pe.psum_bits)
            k0 = counts.get(c, 0)
            addr = (gd["base"] + (c - gd["col0"]) * gd["stride"] + k0
                    + np.arange(len(psums))) & amask
            counts[c] = k0 + len(psums)
            self._write_slots("psum", addr, psums)
        return zeros


def reset_state(cfg) -> tuple:
    """Arbiter state after reset: GLB reader last granted (the `DMAOut`, 4), the GON's
    X-bus round-robin pointers (one per row) and its Y-bus pointer."""
    return (4, (0,) * cfg.rows, 0)


def predict_words(cfg, words: dict, *, values: bool = True, reference: bool = False,
                  state: tuple | None = None) -> Prediction:
    """`predict` for a raw DRAM image ``words`` (address -> 64-bit word) on ``cfg``."""
    from .energy import energy
    m = _Machine(cfg, words, values, reference)
    if state is not None:
        m.rr = (state[0], tuple(state[1]), state[2])
    commands = []
    for cmd in decode(cfg, words):
        m.count["program_words"] += cmd.words
        if cmd.op == "SET":
            m.set(cmd.reg, cmd.value)
            cycles = 1 + 2 * cmd.words
        elif cmd.op == "TAG":
            index, engine = cmd.value["index"], cmd.value["engine"]
            if engine < 3 and index < m.tag_depth:
                m.tags[engine][index] = cmd.value["entry"]
            cycles = 3
        elif cmd.op == "BIAS":
            if cmd.value["index"] < len(m.bias):
                m.bias[cmd.value["index"]] = cmd.value["value"]
            cycles = 3
        elif cmd.op == "DMA_IN":
            cycles = m.dma_in()
        elif cmd.op == "DMA_OUT":
            cycles = m.dma_out()
        elif cmd.op == "PASS":
            cycles = m.run_pass()
        else:
            cycles = 3
        commands.append((cmd.op, cycles))
    total = sum(c for _, c in commands)
    by_op = {}
    for op, c in commands:
        by_op[op] = by_op.get(op, 0) + c
    counters = {"cycles": total, **m.count}
    dram_words = counters["dram_words_read"] + counters["dram_words_written"]
    accesses = {"dram": dram_words * cfg.dram_bits // cfg.pe.act_bits, "glb": m.acc["glb"],
                "noc": m.acc["noc"], "spad": m.acc["spad"], "mac": counters["mac_cycles"]}
    util = counters["macs"] / (cfg.rows * cfg.cols * total) if total else 0.0
    return Prediction(total, tuple(commands), by_op, counters, accesses, energy(accesses), util,
                      sum(1 for op, _ in commands if op == "PASS"), m.exact,
                      m.fallbacks, m.rr)


def predict(prog, *, values: bool = True, reference: bool = False,
            state: tuple | None = None) -> Prediction:
    """Cycles, counters, accesses and energy of a `ommatidia.gen.program.LayerProgram`
    (anything with ``cfg`` and ``words``), interpreted from its DRAM image.

    ``values=False`` skips the data (faster): ``gated_macs`` is then 0 and the
    ofmap's RLC words a worst case. ``reference=True`` times every pass with the
    cycle-level reference of the same rules instead (slow; for checking). ``state``
    is the arbiter state left by the previous run (`Prediction.state`), reset state
    (`reset_state`) by default: layers run one after another without a reset take
    it from the one before. Raises
    ValueError where the accelerator would stop with ``error`` or hang (unknown
    opcode, a tag reaching a PE that is not enabled, too few ifmap columns for a
    run).
    """
    return predict_words(prog.cfg, prog.words, values=values, reference=reference,
                         state=state)
