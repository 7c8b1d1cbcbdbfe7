"""The round-robin arbiters a pass contends for: the GLB read port shared by the
three senders (and `DMAOut`), one per GLB bank with ``cfg.glb_bank_reads`` (and the
filter GLB's, which only the filter sender reads), and the
GON's X-bus and Y-bus arbiters.

Their pointers survive ``start``, so the arbiter state (`reset_state` layout)
is carried from pass to pass and from one program to the next.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reset_state", "read_ports", "glb_bank", "Port", "round_robin", "agrees", "Gon",
           "SENDER_ORDER"]


def reset_state(cfg) -> tuple:
    """Arbiter state after reset: GLB reader last granted (the `DMAOut`, 4; with
    ``glb_bank_reads`` a tuple of it per bank), the GON's X-bus round-robin pointers
    (one per row) and its Y-bus pointer."""
    return ((4,) * read_ports(cfg) if cfg.glb_bank_reads else 4, (0,) * cfg.rows, 0)


def read_ports(cfg) -> int:
    """The read arbiters with ``glb_bank_reads``: one per GLB bank, and the filter GLB's
    (`ommatidia.hw.filter_glb`; only the filter sender reads it, so it grants at once)."""
    return cfg.glb_banks + (cfg.filter_glb_bytes * 8 // cfg.dram_bits > 0)


def glb_bank(cfg, word):
    """The read arbiter (`read_ports`) of word address ``word`` (an int or a numpy
    array): its GLB bank, the filter GLB's (``glb_banks``) for a word past the GLB's
    when there is one, else the last bank (`ommatidia.hw.glb.GLB`)."""
    last = read_ports(cfg) - 1
    if isinstance(word, int):
        return min(word // cfg.glb_bank_words, last)
    return np.minimum(np.asarray(word, dtype=np.int64) // cfg.glb_bank_words, last)


class Port:
    """The GLB read port (per bank: ``bank`` in `grant` says which): one grant a cycle. A
    request waits as long as ``plan`` says (the round-robin wait of the same request in
    a previous round; with ``shift`` False only if it comes in the same cycle), then for
    a free cycle of its bank; ``log`` records per sender (request cycle, grant) in
    request order, ``banks`` its banks, ``last`` per bank the last (grant, sender)."""

    def __init__(self, plan=None, shift: bool = True):
        self.used = {}
        self.plan = plan or {}
        self.shift = shift
        self.log = [[], [], []]
        self.banks = [[], [], []]
        self.last = {}

    causal = False

    def take(self, s, n: int) -> int:
        """The grant of sender ``s``'s word request for packet ``n`` (at ``s.e``)."""
        g = s.gq.pop(n, None)
        return self.grant(s.index, s.e, s.bank_of(n)) if g is None else g

    def grant(self, sender: int, t: int, bank: int = 0) -> int:
        k = len(self.log[sender])
        planned = self.plan.get((sender, k))
        g = t
        if planned is not None and (self.shift or planned[0] == t):
            g += planned[1] - planned[0]
        used = self.used.setdefault(bank, set())
        while g in used:
            g += 1
        used.add(g)
        self.log[sender].append((t, g))
        self.banks[sender].append(bank)
        self.last[bank] = max(self.last.get(bank, (-1, 0)), (g, sender))
        return g


def round_robin(log, last, banks=None) -> dict:
    """The grants the RTL's round-robin port makes for the requests of ``log`` (per
    sender, its request cycles in order; each waits for the previous one's grant):
    (sender, k) -> (request cycle, grant). With ``banks`` (per sender, each request's
    bank) one port per bank, ``last`` per bank."""
    if banks is None:
        return _round_robin([[(k, t) for k, (t, _) in enumerate(reqs)] for reqs in log], last)
    queues = {}  # bank -> per sender its (k, request cycle) in that bank
    for e, (reqs, bs) in enumerate(zip(log, banks)):
        for k, ((t, _), x) in enumerate(zip(reqs, bs)):
            q = queues.get(x)
            if q is None:
                q = queues[x] = [[] for _ in log]
            q[e].append((k, t))
    out = {}
    for b in sorted(queues):
        out.update(_round_robin(queues[b], last[b]))
    return out


def agrees(log, last, banks=None) -> bool:
    """Whether the grants of ``log`` are those `round_robin` makes of its requests (a bank
    one sender reads checked as it goes: each request granted once it and the last grant
    allow)."""
    if banks is None:
        plan = round_robin(log, last)
        return all(plan[e, k][1] == g for e, reqs in enumerate(log) for k, (_, g) in enumerate(reqs))
    readers = {}
    for e, bs in enumerate(banks):
        for b in set(bs):
            readers[b] = readers.get(b, 0) + 1
    queues = {b: [[] for _ in log] for b, n in readers.items() if n > 1}
    prev = {}
    for e, (reqs, bs) in enumerate(zip(log, banks)):
        for k, ((t, g), b) in enumerate(zip(reqs, bs)):
            q = queues.get(b)
            if q is not None:
                q[e].append((k, t))
                continue
            p = prev.get(b, -1)
            if g != (t if t > p else p + 1):
                return False
            prev[b] = g
    for b, q in queues.items():
        plan = _round_robin(q, last[b])
        if any(plan[e, k][1] != log[e][k][1] for e, qe in enumerate(q) for k, _ in qe):
            return False
    return True


def _round_robin(queues, last: int) -> dict:
    """`round_robin` of one port: ``queues`` per sender its (k, request cycle)."""
    busy = [e for e, q in enumerate(queues) if q]
    if len(busy) == 1:  # one sender: each request granted once it and the last grant allow
        e, out, g = busy[0], {}, -1
        for k, req in queues[e]:
            g = req if req > g else g + 1
            out[e, k] = (req, g)
        return out
    pos, out, never = [0, 0, 0], {}, 1 << 62
    heads = [q[0][1] if q else never for q in queues]
    t = min(heads)
    while t < never:
        for e in SENDER_ORDER[last]:
            if heads[e] <= t:
                break
        else:
            t = min(heads)
            continue
        k, req = queues[e][pos[e]]
        out[e, k] = (req, t)
        last = e
        pos[e] += 1
        heads[e] = max(queues[e][pos[e]][1], t + 1) if pos[e] < len(queues[e]) else never
        t += 1
    return out


SENDER_ORDER = [[c for c in ((last + j) % 5 for j in range(1, 6)) if c < 3] for last in range(5)]
"""The senders in the round-robin order after ``last`` (the port's requesters are the
three senders and `DMAOut`, 4)."""


class Gon:
    """The GON: a round-robin X-bus arbiter per row into the Y-bus arbiter, each one psum
    a cycle, and the receiver taking one a cycle. An X-bus grant at ``g`` holds the
    X-bus until the Y-bus takes the psum (``g + 1`` when it is free). Grants are made
    in cycle order, up to a horizon before which no unscheduled request can come.

    ``tops`` holds the outputs waiting for the GON (`ommatidia.gen.model.timing.Top`:
    ``pe``, ``acc``, ``done``, ``held``, ``grant``); a held psum (its packer takes it,
    the GON carries it in the packet of a later one) is granted at ``acc``. With a queue
    of ``depth`` packets after each top (`ommatidia.hw.noc.GonQueue`), a top's packet
    enters its queue at the first cycle from ``acc`` the queue has room (``grant``: the
    top's pipeline runs on) and the X-bus arbiter takes queue heads from the cycle after
    they entered; a slot frees the cycle after its packet is taken."""

    def __init__(self, rows: int, cols: int, xptr, yptr: int, depth: int = 0):
        self.rows, self.cols = rows, cols
        self.depth = depth
        self.xbusy = [set() for _ in range(rows)]
        self.ybusy = set()
        self.xptr, self.yptr = list(xptr), yptr
        # the rows whose pointer is still the pass's first; per row the requests its
        # pointer chose among then (columns) and the one it chose
        self.fresh, self.picks = set(range(rows)), {}
        self.y_last = -1
        self.t = 0
        self.tops = []
        self.queued = []  # with a queue: the tops whose queue holds packets

    def step(self, horizon, once: bool = False) -> bool:
        """Make the grants of the cycles with requests before ``horizon`` (a cycle, or a
        function giving it, called only when a grant needs it) until a top's output is
        done (``once``: only the first such cycle's); whether it granted anything."""
        tops = [tp for tp in self.tops if not tp.done]
        self.tops = tops
        if self.depth:
            return self._step_queued(tops, horizon, once)
        if not tops:
            return False
        if callable(horizon):
            horizon = horizon()
        if max(self.t, min(tp.acc for tp in tops)) >= horizon:
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
            for tp in tops:
                if tp.held and tp.acc <= t and not tp.done:
                    tp.grant(t)
                    finished = True
            for r, row in rows.items():
                busy = self.xbusy[r]
                if t in busy:
                    continue
                g = self._pick(r, [tp for tp in row if tp.acc <= t and not tp.done
                                   and not tp.held])
                if g is None:
                    continue
                self._take(r, g, t)
                g.grant(t)
                finished |= g.done
            self.t = t + 1
            moved = True
            if finished or once:
                self.tops = [tp for tp in tops if not tp.done]
                return True

    def _pick(self, r: int, row):
        """The X-bus arbiter's grant among ``row`` (in column order), round-robin."""
        ptr, g = self.xptr[r], None
        for tp in row:
            if tp.pe.c >= ptr:
                g = tp
                break
            if g is None:
                g = tp
        if g is not None and len(row) > 1 and r in self.fresh:
            self.picks[r] = (tuple(tp.pe.c for tp in row), g.pe.c)
        return g

    def _take(self, r: int, g, t: int) -> None:
        """Row ``r``'s X-bus takes ``g``'s packet at ``t``; the Y-bus the first free cycle
        after."""
        self.xptr[r] = 0 if g.pe.c == self.cols - 1 else g.pe.c + 1
        self.fresh.discard(r)
        y = t + 1
        while y in self.ybusy:
            y += 1
        self.ybusy.add(y)
        self.xbusy[r].update(range(t, y))
        if y > self.y_last:
            self.y_last = y
            self.yptr = 0 if r == self.rows - 1 else r + 1

    def _enter(self, tops) -> bool:
        """Every request whose queue entry is known, entered (held ones taken by the
        packer at ``acc``): a top's packet enters at ``acc`` once its queue has room,
        the cycle after the take of the packet ``depth`` before it. Entries of different
        tops do not interact, so this needs no horizon. Whether any entered."""
        moved = False
        depth, queued = self.depth, self.queued
        for tp in tops:
            queue = tp.queue
            while not tp.done and (tp.held or len(queue) < depth):
                t = tp.acc
                if not tp.held:
                    m = len(tp.taken) + len(queue) - depth
                    if m >= 0 and tp.taken[m] >= t:
                        t = tp.taken[m] + 1
                    if not queue:
                        queued.append(tp)
                    queue.append(t)
                tp.grant(t)
                moved = True
        return moved

    def _step_queued(self, tops, horizon: int, once: bool) -> bool:
        """`step` with a queue after each top: the requests whose entries are known enter
        their queues; then, cycle by cycle, each X-bus takes a queue head that entered
        before the cycle, until a take lets a waiting request enter (only a top taken
        from can: the others could not enter before)."""
        if self._enter(tops):
            self.tops = [tp for tp in self.tops if not tp.done]
            return True
        moved = False
        queued, xbusy = self.queued, self.xbusy
        if queued and callable(horizon):  # nothing entered: the state it was asked in
            horizon = horizon()
        while queued:
            # the cycle: the first after the earliest head, not before ``t``; the heads
            # before it, in ``queued`` order: those before ``t``, else the earliest
            st, m, first, early = self.t, 1 << 62, [], []
            for tp in queued:
                h = tp.queue[0]
                if h < st:
                    early.append(tp)
                if h < m:
                    m, first = h, [tp]
                elif h == m:
                    first.append(tp)
            t, heads = (m + 1, first) if m + 1 >= st else (st, early)
            if t >= horizon:
                return moved
            if len(heads) == 1:
                g = heads[0]
                if t in xbusy[g.pe.r]:
                    taken = []
                else:
                    self._take(g.pe.r, g, t)
                    self._taken(g, t)
                    taken = [g] if g in tops else []
            else:
                taken = self._take_heads(heads, t, tops)
            self.t = t + 1
            moved = True
            if once or (taken and self._enter(taken)):
                self.tops = [tp for tp in self.tops if not tp.done]
                return True
        return moved

    def _taken(self, g, t: int) -> None:
        """The X-bus took the head of ``g``'s queue at ``t``."""
        g.queue.pop(0)
        g.taken.append(t)
        if not g.queue:
            self.queued.remove(g)

    def _take_heads(self, heads, t: int, tops) -> list:
        """Each X-bus takes one of ``heads`` (queue heads from several tops) at ``t``; the
        tops of ``tops`` taken from, in ``tops`` order."""
        rows = {}
        for tp in heads:
            r = tp.pe.r
            if r in rows:
                rows[r].append(tp)
            else:
                rows[r] = [tp]
        taken = []
        for r, row in rows.items():
            if t in self.xbusy[r]:
                continue
            if len(row) == 1:
                g = row[0]
            elif r in self.fresh:  # `_pick` records the choice
                row.sort(key=_column)
                g = self._pick(r, row)
            else:
                g = _next(row, self.xptr[r])
            self._take(r, g, t)
            self._taken(g, t)
            taken.append(g)
        if len(taken) > 1:
            return [tp for tp in tops if tp in taken]
        return taken if taken and taken[0] in tops else []


def _column(tp) -> int:
    return tp.pe.c


def _next(row, ptr: int):
    """`Gon._pick` of ``row`` in any order: the first column from ``ptr`` on, else the
    first."""
    g = w = None
    for tp in row:
        c = tp.pe.c
        if c >= ptr:
            if g is None or c < g.pe.c:
                g = tp
        elif w is None or c < w.pe.c:
            w = tp
    return w if g is None else g
