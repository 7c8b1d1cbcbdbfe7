"""Pass timing by per-output max-plus recurrences over the PEs (the fast model).

Each PE follows the rules of `ommatidia.gen.model.pe`; the senders deliver one
packet a cycle to every target that has room; psum chains (columns of PEs
linked by ``up``) run their outputs as soon as their inputs are known; the GON
(`ommatidia.gen.model.arbiters.Gon`) grants the tops' psums in cycle order. GLB
read-port conflicts between the senders (per bank with ``cfg.glb_bank_reads``) are
settled in cycle order as the recurrences go (`ommatidia.gen.model.causal`), else by
replaying each round's requests through the round-robin arbiter until the grants
agree (`pass_timing`). Passes the recurrences cannot order raise `Unordered` (no fixed
point of the port in 10 rounds; a GON request that comes after the GON, with nothing
else known, granted its cycle to another): the cycle-level reference
(`ommatidia.gen.model.reference`) times them.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from .arbiters import Gon, Port, agrees, round_robin
from .bounds import _LAST, _PLAIN, Bounds
from .causal import CausalPort, Sender
from .decode import KINDS
from .pe import PIPELINE_STAGES, PEState, Schedule, pe_grid

__all__ = ["Unordered", "PassTime", "PEState", "pe_grid", "pass_timing"]


class Unordered(Exception):
    """The recurrences cannot order this pass; use the cycle-level reference."""


@dataclass
class PassTime:
    """What the timing of one pass gives: ``PASS`` command cycles, the arbiter state
    after it (GLB reader last granted, X-bus pointers, Y-bus pointer), stall counters;
    ``picks``: what the recurrences read of the arbiter state they started from (with
    the port granted in cycle order; None otherwise, `ommatidia.gen.model.memo.picks_hold`)."""

    cycles: int
    rr: tuple
    pe_stalls: int
    noc_stalls: int
    picks: tuple | None = field(default=None, compare=False)


class Top:
    """The GON request of a chain's top PE: its psum out waiting at the accumulate stage
    (``acc``); ``done`` while it has none. A grant hands the cycle to the chain.
    ``held``: the psum does not end its packet (`ommatidia.hw.noc.GonPacker`, psum ``j``
    of ``total`` at slot ``phase + j`` of a group of ``values``), so the packer takes it
    at ``acc`` without the GON. With a GON queue (`ommatidia.hw.noc.GonQueue`) the grant
    is the packet's entry into it."""

    def __init__(self, pe: PEState, chain):
        self.pe, self.chain = pe, chain
        self.acc = 0
        self.done = True
        self.held = False
        self.values, self.phase, self.total = 1, 0, 0
        # with `NoCConfig.gon_queue`: the cycles its queued packets entered, and the cycles
        # the X-bus took the packets that left
        self.queue, self.taken = [], []

    def grant(self, t: int) -> None:
        self.done = True
        self.chain.granted(t)


def _chains(pes: dict) -> list:
    """The psum chains, bottom PE first, in column order."""
    chains = []
    for pe in sorted(pes.values(), key=lambda x: (x.c, -x.r)):
        if pe.below is None:
            chain = [pe]
            while not chain[-1].top:
                chain.append(chain[-1].above)
            chains.append(chain)
    return chains


class _Chain:
    """One psum chain (a column of PEs linked by ``up``, bottom first) working through its
    outputs: each output's plain operations on every PE (`_PLAIN`), then its last ``p``
    operations psum by psum (`_LAST`): psum ``j`` issued at the bottom (taken from the
    psum sender when it accumulates), handed up each link to the same operation of the
    PE above, and sent to the GON by the top, whose grant lets the top's psum ``j + 1``
    go. A level runs ahead of the one above while its link is known: level ``L`` issues
    psum ``j`` once level ``L + 1`` has taken psum ``j - 1`` (a link holds one psum), so
    the levels below a top waiting for the GON go on (and free their psum queues).

    ``f``: the output being timed; ``ks``: per level the next psum to issue; ``link``:
    per level the cycle its last psum entered the link above; ``taken``: the bottom's
    issue of its next psum when the psum sender delivered it; ``top``: the GON request
    of the top PE."""

    def __init__(self, rnd, pes: list):
        self.rnd, self.pes = rnd, pes
        self.f = 0
        self.stage = _PLAIN
        self.ks = [0] * len(pes)
        self.link = [0] * len(pes)
        self.taken = None
        self.top = Top(pes[-1], self)
        self.loaded = False  # every PE has its weights
        self._output(0)
        # ifmap columns came in since `advance` last ran from the main loop: its only input
        # no caller of `advance` hands it (psum packets and GON grants call it)
        self.dirty = True

    def _output(self, f: int) -> None:
        """On to output ``f``: ``col``, the column its first psum's operation waits for
        (-1: none, the last ``p`` operations do not start a tap); ``need``, the last
        column its plain operations read (-1: none)."""
        self.f = f
        rnd, sch = self.rnd, self.rnd.sch
        self.col = sch.column(f, sch.first_out) if rnd.out_starts_tap else -1
        self.need = sch.column(f, sch.first_out - 1) if sch.first_out else -1

    @property
    def finished(self) -> bool:
        return self.f == self.rnd.sch.F

    def _bottom_free(self) -> bool:
        """Whether the bottom may issue its next psum: the level above took the one
        before (or, a lone PE, the GON took it)."""
        ks = self.ks
        return self.top.done if len(ks) == 1 else ks[1] == ks[0]

    def wants_psum(self, pe: PEState) -> bool:
        """Whether the bottom ``pe`` is at the psum the psum sender's packet brings it."""
        sch = self.rnd.sch
        j = self.ks[0]
        return (self.stage == _LAST and j < sch.p and self.taken is None
                and self._bottom_free() and divmod(pe.np, sch.p) == (self.f, j)
                and self.column_ready(pe, j))

    def column_ready(self, pe: PEState, j: int) -> bool:
        """Whether the column psum ``j``'s operation waits for is in (only when the last
        ``p`` operations start a tap)."""
        return j != 0 or self.col < 0 or len(pe.A) > self.col

    def column_wait(self, pe: PEState, j: int) -> int:
        return pe.A[self.col] if j == 0 and self.col >= 0 else 0

    def advance(self, levels=None) -> bool:
        """Time as much of the chain as the known inputs allow; whether anything moved.
        ``levels``: the only levels new inputs may let go (all by default)."""
        if not self.loaded:
            if not all(pe.loaded for pe in self.pes):
                return False
            self.loaded = True
        rnd, sch = self.rnd, self.rnd.sch
        moved = False
        F = sch.F
        while self.f != F:
            if self.stage == _PLAIN:
                need = self.need
                for pe in self.pes:
                    if len(pe.A) <= need:
                        return moved
                for pe in self.pes:
                    rnd.plain(pe, self.f)
                    rnd.free_columns(pe, self.f)
                self.stage = _LAST
                levels = None
                moved = True
                continue
            todo = list(range(len(self.pes) - 1, -1, -1)) if levels is None else list(levels)
            return self._climb(todo) or moved
        return moved

    def _climb(self, todo: list) -> bool:
        """The psums the levels can issue with what is known, from the levels of ``todo``
        (a stack) on: a level that issues lets the one above (its psum in the link) and
        the one below (the link free) go. `column_ready`, `column_wait`,
        `PEState.issue_one` and the link or the GON (the top's request: psum ``n`` of the
        pass waits at the accumulate stage from ``acc``) in one loop. Whether any issued."""
        pes, ks, link, rnd = self.pes, self.ks, self.link, self.rnd
        sch, top, gon = rnd.sch, self.top, rnd.gon
        p, T = sch.p, len(pes) - 1
        col = self.col
        q = self.q0  # the bottom's psum queue (None: it takes psums as they come)
        gin = pes[0].gin  # the bottom takes psums from the psum sender
        if q is not None:
            avail, ends, done = q["avail"], q["last"], q["done"]
        streaming = rnd.stream and not self.f  # `weights_in` is 0 otherwise
        pop, push = todo.pop, todo.append
        moved = False
        while todo:
            lvl = pop()
            j = ks[lvl]
            if j == p:
                continue
            if lvl == T:
                if not top.done:
                    continue
            elif ks[lvl + 1] != j:
                continue
            pe = pes[lvl]
            tmin = 0
            if j == 0 and col >= 0:
                A = pe.A
                if len(A) <= col:
                    continue
                tmin = A[col]
            if lvl:
                if ks[lvl - 1] == j:
                    continue
                t = link[lvl - 1]
                if t >= tmin:
                    tmin = t + 1
            elif gin:
                if q is not None:
                    n = pe.np
                    if len(avail) <= n:
                        continue
                    if avail[n] > tmin:
                        tmin = avail[n]
                elif self.taken is None:
                    continue
            if streaming:
                w = rnd.weights_in(pe, 0, sch.first_out + j)
                if w > tmin:
                    tmin = w
            fr = pe.fr
            if lvl == 0 and gin and q is None:
                i, self.taken = self.taken, None
            else:
                i = pe.prev + 1
                if tmin > i:
                    i = tmin
                if fr and (fr[-1][1] > i or not pe.ordered):
                    i = pe.next_free(i)
                pe.prev = i
                if lvl:
                    pe.last_take = i
                elif gin and q is not None:
                    if pe.np in ends:
                        done.append(i)
                    pe.np += 1
            acc = pe.acc_time(i) if fr and (fr[-1][0] > i or not pe.ordered) \
                else i + PIPELINE_STAGES
            if j == p - 1:  # the last psum of the output (`_result` reads the pass's last)
                pe.tap_end.append(i)
                pe.final_I = i
            j += 1
            ks[lvl] = j
            moved = True
            # the level below waits for this link and has its next psum (else it would not
            # go; what lets it go later pushes it)
            if lvl and ks[lvl - 1] == j and j != p and (lvl == 1 or ks[lvl - 2] != j):
                push(lvl - 1)
            if lvl == T:
                if acc < gon.t:  # the GON granted its cycle without it (`Gon.step` once)
                    raise Unordered()
                n = self.f * p + j - 1  # the request of psum n of the pass
                top.acc, top.done = acc, False
                v = top.values
                top.held = v > 1 and (top.phase + n) % v != v - 1 and n + 1 != top.total
                if top not in gon.tops:
                    gon.tops.append(top)
                continue
            o = pes[lvl + 1].last_take
            if acc > o:
                o = acc
            elif o > acc:
                pe.freeze(acc, o)
            if j == p:
                pe.final_O = o
            link[lvl] = o
            if top.done if lvl + 1 == T else ks[lvl + 2] == j - 1:
                push(lvl + 1)
        return moved

    def granted(self, t: int) -> None:
        """The GON took the top's psum at ``t``: on to its next psum, or to the next
        output."""
        rnd, sch = self.rnd, self.rnd.sch
        top = self.pes[-1]
        top.freeze(self.top.acc, t)
        if self.ks[-1] == sch.p:
            top.final_O = t
            for pe in self.pes:
                if len(pe.tap_end) != sch.S:
                    raise Unordered()
                rnd.free_columns(pe, self.f)
                pe.tap_end = []
                pe.prune()
            self._output(self.f + 1)
            if self.f == sch.F:
                rnd.finished += 1
            self.stage = _PLAIN
            self.ks = [0] * len(self.pes)
            self.advance((len(self.pes) - 1,))
        else:  # `advance` at the same output's last p: the top's next psum
            self._cascade()

    def _cascade(self) -> None:
        """`_climb` from the top just granted: its next psum (not the output's first, so no
        level waits for a column), then down the chain while the level below waits for the
        link (the top waiting for the GON, no level above goes); the generic `_climb` where
        a level above would go, where the bottom takes its psums as they come, for a lone
        PE and for streaming filters."""
        pes, rnd, ks = self.pes, self.rnd, self.ks
        T = len(pes) - 1
        j = ks[T]
        if not T or not j or rnd.stream and not self.f:
            self._climb([T])
            return
        if ks[T - 1] == j:  # psum j is not in the link yet
            return
        link, top, gon, p = self.link, self.top, rnd.gon, rnd.sch.p
        pe = pes[T]
        i, t = pe.prev + 1, link[T - 1] + 1
        if t > i:
            i = t
        fr = pe.fr
        if fr and (fr[-1][1] > i or not pe.ordered):
            i = pe.next_free(i)
        pe.prev = pe.last_take = i
        acc = pe.acc_time(i) if fr and (fr[-1][0] > i or not pe.ordered) \
            else i + PIPELINE_STAGES
        if j == p - 1:
            pe.tap_end.append(i)
            pe.final_I = i
        ks[T] = j + 1
        if acc < gon.t:  # the GON granted its cycle without it (`Gon.step` once)
            raise Unordered()
        n = self.f * p + j  # the request of psum n of the pass
        top.acc, top.done = acc, False
        v = top.values
        top.held = v > 1 and (top.phase + n) % v != v - 1 and n + 1 != top.total
        if top not in gon.tops:
            gon.tops.append(top)
        lvl = T - 1
        q = self.q0
        while ks[lvl] == j + 1:  # the level below waits for the link the one above freed
            j = ks[lvl]
            if j == p:
                return
            pe = pes[lvl]
            if lvl:
                if ks[lvl - 1] == j:
                    return
                tmin = link[lvl - 1] + 1
            elif pe.gin:
                if q is None:
                    self._climb([0])
                    return
                if len(q["avail"]) <= pe.np:
                    return
                tmin = q["avail"][pe.np]
            else:
                tmin = 0
            i = pe.prev + 1
            if tmin > i:
                i = tmin
            fr = pe.fr
            if fr and (fr[-1][1] > i or not pe.ordered):
                i = pe.next_free(i)
            pe.prev = i
            if lvl:
                pe.last_take = i
            elif pe.gin:
                if pe.np in q["last"]:
                    q["done"].append(i)
                pe.np += 1
            acc = pe.acc_time(i) if fr and (fr[-1][0] > i or not pe.ordered) \
                else i + PIPELINE_STAGES
            o = pes[lvl + 1].last_take
            if acc > o:
                o = acc
            elif o > acc:
                pe.freeze(acc, o)
            link[lvl] = o
            if j == p - 1:
                pe.tap_end.append(i)
                pe.final_I, pe.final_O = i, o
            ks[lvl] = j + 1
            if lvl + 1 != T and ks[lvl + 2] == j:  # the level above goes too
                self._climb([lvl - 1, lvl + 1] if lvl and ks[lvl - 1] == j + 1 else [lvl + 1])
                return
            if not lvl:
                return
            lvl -= 1


class _Round(Bounds):
    """One round of the timing of a ``PASS`` from its registers and sender streams
    (``Machine._streams`` of `ommatidia.gen.model.machine`), the GLB port answering
    from ``plan`` (None: in cycle order, `CausalPort`).

    Filters in stream order (never refused; a PE computes from the cycle after its last
    weight), and, as far as the known times allow: the ifmap packets in stream order
    (each waits until every target has room in its ring: the issue of the operation
    that freed column ``x - ring``); each chain's outputs (`_Chain`): the plain
    operations once their columns are in, then the last ``p`` operations psum by psum,
    the bottom's taken from the psum sender's packets in stream order, each handed up
    the links, the top's registered with the GON, which grants them in cycle order.
    """

    def __init__(self, cfg, regs, streams, rr, plan, shift: bool):
        self.run, self.regs, self.rr = regs["run"], regs, rr
        self.sch = sch = Schedule.of(self.run, cfg.pe.lanes)
        self.pes = pes = pe_grid(cfg, regs)
        self.port = Port(plan, shift) if plan is not None else None
        self.snd = [Sender(streams[kind], self.port, e) for e, kind in enumerate(KINDS)]
        for kind, s in zip(KINDS, self.snd):
            for group in s.targets.values():
                for rc in group:
                    if rc not in pes:
                        raise ValueError(f"a {kind} tag reaches PE {rc}, which is not enabled")
        if self.port is None:
            self.port = CausalPort(self.snd, rr[0])
            for s in self.snd:
                s.port = s.port or self.port
        else:  # at the pass start every sender with packets requests a GLB word
            for e, s in enumerate(self.snd):
                if s.N:
                    s.gq[0] = s.port.grant(e, 0, s.bank_of(0))
        self.groups = [{t: [pes[rc] for rc in g] for t, g in s.targets.items()}
                       for s in self.snd]  # per sender and tag index, the PEs it reaches
        self.fs, self.ifm, self.psm = self.snd
        self._fs_most = 1 if self.fs.values is None else int(max(self.fs.values, default=1))
        self.fs.ready_lb = lambda: 0
        self.ifm.ready_lb = self._ifmap_ready_lb
        self.psm.ready_lb = self._psum_ready_lb
        self._start_filters()
        self.segments = sch.segments()
        # the operations of each segment when every segment is a whole tap (0: not so)
        n = self.segments[0][0] if self.segments else 0
        self.taps = n if self.segments == [(n, s, True) for s in range(len(self.segments))] \
            else 0
        self.out_starts_tap = sch.starts_tap(sch.first_out)
        self.gon = Gon(cfg.rows, cfg.cols, rr[1], rr[2], cfg.noc.gon_queue)
        self.chains = [_Chain(self, chain) for chain in _chains(pes)]
        gd, values = regs["gon_desc"], cfg.noc.gon_values
        for ch in self.chains:
            top = ch.top
            top.values, top.total = values, sch.F * sch.p
            top.phase = (gd["base"] + (top.pe.c - gd["col0"]) * gd["stride"]) % values
        self.ifm_wait = None  # (PE, column) the next ifmap packet waits to free
        self.dirty = True  # some chain's `_Chain.dirty`
        self.psum_wait = None  # (a bottom's queue's takes, the one the next psum packet waits for)
        self.finished = sum(ch.finished for ch in self.chains)
        for ch in self.chains:
            for pe in ch.pes:
                pe.ch = ch
        # with psum GIN packets, each bottom's `PsumUnpacker`: per psum the cycle it can be
        # taken, the psums ending a packet and the cycles they were taken
        self.stream = cfg.pe.stream_filters and self.run["load_filter"]
        self.psum_depth = cfg.noc.psum_gin_queue
        self.queues = {id(pe): {"avail": [], "last": set(), "done": []} for pe in pes.values()
                       if pe.gin} if cfg.noc.psum_gin_values > 1 else None
        for ch in self.chains:  # the bottom's queue
            ch.q0 = None if self.queues is None else self.queues.get(id(ch.pes[0]))

    def _start_filters(self) -> None:
        """Every PE computes from the cycle after its last weight is taken (cycle 1
        without a filter load); until then it is not ``loaded``."""
        for pe in self.pes.values():
            pe.C0, pe.prev = 1, 0
            pe.loaded = not (self.run["load_filter"] and self.fs.N)
        self.loading = not all(pe.loaded for pe in self.pes.values())

    def _send_filters(self) -> bool:
        """The filter packets, never refused, as far as the GLB port grants them."""
        if not self.loading:
            return False
        pes, fs = self.pes, self.fs
        count = self.run["filter_count"]
        values = fs.values
        moved = False
        while fs.n < fs.N:
            e = fs.emit()
            if e is None:
                return moved
            n = 1 if values is None else values[fs.n]
            for rc in fs.targets[fs.tag[fs.n]]:
                pe = pes[rc]
                if pe.nf < count:
                    pe.fp += 1
                    pe.wl.append((pe.nf + n, e + 2))
                    if count <= pe.nf + n:
                        if not self.stream:
                            pe.C0, pe.prev = e + 2, e + 1
                        pe.loaded = pe.ch.dirty = self.dirty = True
                pe.nf += n
            fs.deliver(e + 1)
            moved = True
        for pe in pes.values():
            if not pe.loaded:
                pe.loaded = pe.ch.dirty = self.dirty = True
        self.loading = False
        return True

    def _deliver_ifmaps(self) -> bool:
        ifm = self.ifm
        q, ring = self.sch.q, self.sch.ring
        moved = False
        if self.ifm_wait is not None:
            pe, y = self.ifm_wait
            if y >= len(pe.ret):  # the packet still waits for that PE's ring slot
                return False
            self.ifm_wait = None
        groups, tags, N, values = self.groups[1], ifm.tag, ifm.N, ifm.values
        while ifm.n < N:
            group = groups[tags[ifm.n]]
            ready = []
            for pe in group:
                y = pe.nv // q - ring  # `Schedule.waits_for`
                if y < 0:
                    ready.append(1)
                elif y < len(pe.ret):
                    ready.append(pe.ret[y] + 1)
                else:
                    self.ifm_wait = (pe, y)
                    return moved
            n = 1 if values is None else values[ifm.n]
            e = ifm.emit()
            if e is None:
                return moved
            d = e + 1
            for pe, rv in zip(group, ready):
                take = rv if rv > e + 1 else e + 1
                if take > d:
                    d = take
                pe.nv += n
                if pe.nv % q == 0:
                    pe.A.append(take + 1)
                    pe.ch.dirty = self.dirty = True
            ifm.deliver(d)
            moved = True
        return moved

    def _send_psums(self) -> bool:
        """The psum sender's packets, in stream order, each taken by its bottom PEs at
        the issue of the operation that adds it (with packets of several psums: into the
        bottom's queue when it has room, `_queue_psums`)."""
        if self.queues is not None:
            return self._queue_psums()
        psm = self.psm
        moved = False
        while psm.n < psm.N:
            group = self.groups[2][psm.tag[psm.n]]
            if not all(pe.ch.wants_psum(pe) for pe in group):
                return moved
            e = psm.emit()
            if e is None:
                return moved
            d = e + 1
            for pe in group:
                ch = pe.ch
                ch.taken = pe.issue_one(max(e + 1, ch.column_wait(pe, ch.ks[0]), self.weights_in(
                    pe, ch.f, self.sch.first_out + ch.ks[0])))
                pe.np += 1
                d = max(d, ch.taken)
            psm.deliver(d)
            for pe in group:
                pe.ch.advance((0,))
            moved = True
        return moved

    def _queue_psums(self) -> bool:
        """The psum sender's packets, in stream order, each taken by a bottom's queue of
        ``noc.psum_gin_queue`` packets once it has room (the cycle after the bottom took
        the last psum of the packet that many before); its psums can be taken from the
        cycle after."""
        if self.psum_wait is not None:
            done, m = self.psum_wait
            if m >= len(done):  # the packet still waits for that queue's room
                return False
            self.psum_wait = None
        psm, values = self.psm, self.psm.values
        depth, queues, groups, tags = self.psum_depth, self.queues, self.groups[2], psm.tag
        moved = False
        while psm.n < psm.N:
            group = groups[tags[psm.n]]
            room = []
            for pe in group:
                q = queues[id(pe)]
                m = len(q["last"]) - depth
                if m < 0:
                    room.append(0)
                elif m < len(q["done"]):
                    room.append(q["done"][m] + 1)
                else:
                    self.psum_wait = (q["done"], m)
                    return moved
            n = 1 if values is None else values[psm.n]
            e = psm.emit()
            if e is None:
                return moved
            d = e + 1
            for pe, r in zip(group, room):
                t = r if r > e + 1 else e + 1
                if t > d:
                    d = t
                q = queues[id(pe)]
                avail = q["avail"]
                avail.extend([t + 1] * n)
                q["last"].add(len(avail) - 1)
                pe.ch.dirty = self.dirty = True
            psm.deliver(d)
            moved = True
        return moved

    def weights_in(self, pe: PEState, f: int, j: int) -> int:
        """First cycle operation ``j`` of output ``f`` may issue for its weights (0 unless
        the PE streams its filters and ``f`` is the first output)."""
        if not self.stream or f:
            return 0
        wl = pe.wl  # (weights in, cycle), the weights growing
        return wl[bisect_left(wl, (self.sch.weights_read(j),))][1]

    def plain(self, pe: PEState, f: int) -> None:
        """Issue the operations of output ``f`` before its last ``p``."""
        A, base, ends = pe.A, f * self.sch.U, pe.tap_end  # `Schedule.column(f, 0)`
        if self.stream and not f:
            # `weights_in` of operation j, ``group`` weights an operation before the last p:
            # the first packet that brings ``(j + 1) * group`` weights in
            wl, group, w, j = pe.wl, self.sch.group, 0, 0
            prev, fr = pe.prev, pe.fr  # `PEState.issue_one` inline (no freeze comes)
            for n, col, ends_tap in self.segments:
                t = A[base + col] if col >= 0 else 0
                for j in range(j, j + n):
                    need = (j + 1) * group
                    while wl[w][0] < need:
                        w += 1
                    if wl[w][1] > t:
                        t = wl[w][1]
                    if prev + 1 > t:
                        t = prev + 1
                    if fr:
                        t = pe.next_free(t)
                    prev = t
                j += 1
                if ends_tap:
                    ends.append(t)
            pe.prev = prev
            return
        if not pe.fr or pe.fr[-1][1] <= pe.prev + 1:
            t = pe.prev + 1
            if self.taps:  # a segment a tap, each waiting for its column
                n = self.taps
                for a in A[base:base + len(self.segments)]:
                    t = (a if a > t else t) + n
                    ends.append(t - 1)
                pe.prev = t - 1
                return
            for n, col, ends_tap in self.segments:
                if col >= 0 and A[base + col] > t:
                    t = A[base + col]
                t += n
                if ends_tap:
                    ends.append(t - 1)
            pe.prev = t - 1
            return
        for n, col, ends_tap in self.segments:
            last = pe.issue_block(n, A[base + col] if col >= 0 else 0)
            if ends_tap:
                ends.append(last)

    def free_columns(self, pe: PEState, f: int) -> None:
        """Free the ring columns output ``f`` is done with whose freeing taps' last
        issues are known."""
        U, ret = self.sch.U, pe.ret
        x = len(ret) - f * U  # the first not freed, from `Schedule.column(f, 0)`
        if x >= U:
            return
        last, ends = self.sch.S - 1, pe.tap_end
        for x in range(x, U):
            s = x if x < last else last  # `Schedule.freeing_tap`
            if s >= len(ends):
                return
            ret.append(ends[s])

    def _horizon(self) -> int:
        """No GON request can come before this cycle: a chain that is not finished and
        whose top has no psum waiting issues its next one after its top's last issue
        (and after the output's plain operations when it is at them) and the pipeline."""
        h, F, ahead = 1 << 62, self.sch.F, self.sch.first_out + PIPELINE_STAGES + 1
        for ch in self.chains:
            if ch.f != F and ch.top.done:
                top = ch.pes[-1]
                prev = top.prev if top.loaded else self.issue_lb(top) - 1
                v = prev + (ahead if ch.stage == _PLAIN else PIPELINE_STAGES + 1)
                if v < h:
                    h = v
        return h

    def time(self) -> tuple[PassTime, Port]:
        """The `PassTime` and the GLB port (its request log)."""
        ifm, chains = self.ifm, self.chains
        while True:
            moved = self._send_filters()
            moved |= self._deliver_ifmaps()
            moved |= self._send_psums()
            if self.dirty:  # some chain has new inputs (a chain without would not move)
                self.dirty = False
                for ch in chains:
                    if ch.dirty:
                        ch.dirty = False
                        moved |= ch.advance()
            moved |= self.gon.step(self._horizon)
            if self.finished == len(chains) and ifm.n == ifm.N and not self.gon.queued \
                    and not self.loading:
                break
            if not moved and not self.gon.step(1 << 62, once=True):
                raise Unordered()
        return self._result(), self.port

    def _result(self) -> PassTime:
        sch, run, pes = self.sch, self.run, self.pes
        for pe in pes.values():
            if len(pe.A) <= sch.column(sch.F - 1, sch.issues - 1):
                raise Unordered()
        ends = [1]
        W = run["W"]
        pe_stalls = 0
        for pe in pes.values():
            if len(pe.A) != W:
                raise ValueError(f"PE ({pe.r}, {pe.c}) receives {len(pe.A)} ifmap columns, "
                                 f"the run needs W = {W}")
            ends.append(max(pe.final_O + 1, pe.A[-1]) + 1)
            pe_stalls += pe.final_I + 1 - pe.C0 - sch.F * sch.issues
            if run["load_filter"] and not self.stream:
                pe_stalls += pe.C0 - 1 - pe.fp
        for s in self.snd:
            if s.N:
                ends.append(s.d + 1)
        if self.regs["gon_desc"]["count"]:
            ends.append(self.gon.y_last + 3)
        if isinstance(self.rr[0], tuple):
            glb = list(self.rr[0])
            for b, (_, e) in self.port.last.items():
                glb[b] = e
            glb = tuple(glb)
        else:
            granted = [(s.last_grant, e) for e, s in enumerate(self.snd) if s.N]
            glb = max(granted)[1] if granted else self.rr[0]
        gon = self.gon
        picks = (self.port.picks, gon.picks) if self.port.causal else None
        return PassTime(max(ends) + 4, (glb, tuple(gon.xptr), gon.yptr), pe_stalls,
                        sum(s.stalls for s in self.snd), picks)


def pass_timing(cfg, regs, streams, rr, rounds: int = 10) -> PassTime:
    """Cycles of one ``PASS``: first with the GLB port granting in cycle order
    (`ommatidia.gen.model.causal.CausalPort`; kept when its grants are the round-robin
    replay of its requests), else, when a grant waits for a sender whose next request
    cannot be bounded, its GLB port grants iterated to the round-robin fixed
    point: each round replays the previous round's fetch requests through the RTL's
    round-robin arbiter. Rounds keep each request's wait; after half of them only
    for requests in the same cycle, which converges, a conflict at a time. A pass
    whose rounds never agree with their replay raises `Unordered` (the senders
    contend for the port too often: the filter and ifmap senders both reading a
    new GLB word nearly every packet); so does one whose second round still
    disagrees on more than `GIVE_UP` grants (such passes were never seen to converge,
    and the rounds cost half as much as the reference)."""
    try:
        got, port = _Round(cfg, regs, streams, rr, None, True).time()
        if _agrees(cfg, port, rr):
            return got
    except Unordered:
        pass
    plan = {}
    for n in range(rounds):
        got, port = _Round(cfg, regs, streams, rr, plan, n < rounds // 2).time()
        log = port.log
        rr_plan = round_robin(log, rr[0], port.banks if cfg.glb_bank_reads else None)
        used = {(e, k): x for e in range(3) for k, x in enumerate(log[e])}
        miss = sum(used.get(k) != x for k, x in rr_plan.items())
        if not miss:
            return got
        if n and miss > GIVE_UP:
            break
        plan = rr_plan
    raise Unordered()


def _agrees(cfg, port, rr) -> bool:
    """Whether the grants ``port`` made are the RTL's round-robin grants of its requests."""
    return agrees(port.log, rr[0], port.banks if cfg.glb_bank_reads else None)


GIVE_UP = 64
"""GLB grants a second round may still disagree on before `pass_timing` gives up."""
