"""The senders' packets as the recurrences time them (`Sender`), and the GLB read
port(s) granted in cycle order while they do (`CausalPort`).

`ommatidia.gen.model.timing` times each sender's packets as far as their inputs are
known, not cycle by cycle, so a bank that two senders read cannot be granted as the
requests come in. `CausalPort` grants such a bank round-robin (`round_robin`'s rules)
one cycle after another, and only once no sender can still request it at that cycle:
each sender's next request whose cycle is not known yet has a lower bound (`_view`:
a request goes out when the packet before it is emitted, a packet at least a cycle
after the one before and after the targets have room for the one before). When a
bound does not clear the cycle the grant waits (the sender stops, the other loops go
on and come back). A bank only one sender reads grants each request at once.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from .arbiters import SENDER_ORDER

__all__ = ["Sender", "CausalPort", "request_index"]

NEVER = 1 << 62


def request_index(stream) -> tuple:
    """Of a sender's stream (cached in it): per packet ``j`` the first packet from ``j``
    that requests a GLB word (the first one and each ``miss``; ``N`` if none), and per bank
    the packets requesting it, in order."""
    got = stream.get("requests")
    if got is None:
        miss = np.asarray(stream["miss"], dtype=bool).copy()
        N = len(miss)
        if N:
            miss[0] = True
        idx = np.flatnonzero(miss)
        nxt = np.full(N + 2, N, dtype=np.int64)
        pos = np.searchsorted(idx, np.arange(N + 2))
        ok = pos < len(idx)
        nxt[ok] = idx[pos[ok]]
        bank = stream.get("bank")
        if bank is None:
            per_bank = {0: idx.tolist()}
        else:
            b = np.asarray(bank)[idx]
            per_bank = {int(x): idx[b == x].tolist() for x in np.unique(b)}
        got = stream["requests"] = (nxt.tolist(), per_bank)
    return got


def _listed(a):
    """``a`` (a numpy array, a list or None) as a list of Python values (None kept)."""
    return None if a is None else a.tolist() if isinstance(a, np.ndarray) else list(a)


class Sender:
    """Timing of one sender's packets: emission ``e`` (registered, valid from ``e + 1``)
    and delivery ``d`` (the cycle the last target takes it)."""

    def __init__(self, stream, port, index: int):
        self.index = index
        self.word, self.tag, self.targets = stream["word"], stream["tag"], stream["targets"]
        # per packet Python values, not numpy scalars: the recurrences index them per packet
        self.values = _listed(stream["n"])
        self.N = len(self.word)
        self.miss = _listed(stream["miss"])
        # with `ArrayConfig.glb_bank_reads`, each packet's GLB bank (its word's port)
        self.bank = _listed(stream.get("bank"))
        self.port = port
        self.n = 0
        self.e = self.d = -1
        self.stalls = 0
        self.last_grant = -1
        self.gq = {}  # packet -> the grant of its word request, made before it is emitted
        self.requests = request_index(stream)
        self.bound = 0
        self.ready_lb = None  # a lower bound on when the targets take packet ``n``

    def emit(self) -> int | None:
        """Packet ``n``'s emission; None while the port cannot grant its word yet."""
        n = self.n
        if n == 0 or self.miss[n]:
            g = self.port.take(self, n)
            if g is None:
                return None
            if g > self.last_grant:
                self.last_grant = g
            e = max(g + 1, self.d)
        else:
            e = max(self.e + 1, self.d)
        self.e = e
        return e

    def bank_of(self, n: int) -> int:
        return 0 if self.bank is None else self.bank[n]

    def deliver(self, d: int) -> None:
        self.stalls += d - self.e - 1
        self.d = d
        self.n += 1


class CausalPort:
    """The GLB read port (per bank with ``glb_bank_reads``) of one pass's recurrences:
    grants of the senders' word requests in cycle order (see the module docstring).
    ``last``: the read arbiters' last grants (an int, or a tuple per bank); ``log``,
    ``banks`` and ``last`` as `ommatidia.gen.model.arbiters.Port` keeps them."""

    causal = True

    def __init__(self, senders, last):
        self.snd = senders
        self.rr0 = last
        self.t, self.prev = {}, {}
        self.log, self.banks, self.last = [[], [], []], [[], [], []], {}
        readers = {}
        for s in senders:
            if s.N:
                for b in s.requests[1]:
                    readers[b] = readers.get(b, 0) + 1
        self.shared = {b for b, k in readers.items() if k > 1}
        # per bank whose first grant chose between requests: the senders and the one chosen
        self.picks = {}

    def take(self, s, n: int):
        """The grant of sender ``s``'s word request for packet ``n`` (the one it waits for),
        or None while it cannot be known yet."""
        g = s.gq.pop(n, None)
        if g is not None:
            return g
        b = s.bank_of(n)
        if b not in self.shared:
            req = s.e if n else 0
            self._grant(s, n, b, req, req)
        elif not self._decide(b, s, n):
            return None
        return s.gq.pop(n)

    def _grant(self, s, n: int, b: int, req: int, c: int) -> None:
        s.gq[n] = c
        e = s.index
        self.log[e].append((req, c))
        self.banks[e].append(b)
        self.t[b] = c + 1
        self.prev[b] = e
        self.last[b] = max(self.last.get(b, (-1, 0)), (c, e))

    def _decide(self, b: int, want, n: int) -> bool:
        """Grant bank ``b`` cycle by cycle until ``want``'s request for packet ``n`` is
        granted (True) or a cycle cannot be decided yet (False)."""
        order = SENDER_ORDER
        while True:
            cands, c, bound = [], NEVER, NEVER
            for s in self.snd:
                pend, later = _view(s, b)
                if pend is not None:
                    k, req = pend
                    pb = s.bank_of(k)
                    if pb == b:
                        # its later requests come after this one's grant, after the cycle
                        cands.append((s, k, req))
                        if req < c:
                            c = req
                        continue
                    if pb not in self.shared:  # granted at once: its next request is known
                        self._grant(s, k, pb, req, req)
                        cands = None
                        break
                if later < bound:
                    bound = later
            if cands is None:
                continue
            c = max(c, self.t.get(b, 0))
            if bound <= c:
                return False
            last = self.prev.get(b)
            if last is None:
                last = self.rr0[b] if isinstance(self.rr0, tuple) else self.rr0
            ready = {s.index: (s, k, req) for s, k, req in cands if req <= c}
            for e in order[last]:
                if e in ready:
                    s, k, req = ready[e]
                    break
            if len(ready) > 1 and b not in self.prev:
                self.picks[b] = (frozenset(ready), e)
            self._grant(s, k, b, req, c)
            if s is want and k == n:
                return True


def _view(s, b: int) -> tuple:
    """Sender ``s`` as the port sees it for bank ``b``: its first word request not
    granted yet when its cycle is known, as (packet, cycle), else None; and a lower
    bound on the cycle of its next request for ``b`` whose cycle is not known
    (`NEVER`: none). ``s.ready_lb()``: a lower bound on the cycle the targets take
    packet ``s.n`` (the next to be delivered)."""
    n, N = s.n, s.N
    if n >= N:
        return None, NEVER
    nxt, per_bank = s.requests
    on_b = per_bank.get(b)
    if on_b is None:
        return None, NEVER
    if nxt[n] == n:  # packet n requests a word
        g = s.gq.get(n)
        if g is None:
            req = s.e if n else 0
            after = _first(on_b, n + 1)
            bound = NEVER if after is None else req + after - n
            return (n, req), bound
        en = max(g + 1, s.d)
    else:
        en = max(s.e + 1, s.d)
    k = nxt[n + 1]
    if k >= N:
        return None, NEVER
    if k == n + 1:
        g = s.gq.get(k)
        if g is None:
            after = _first(on_b, k + 1)
            bound = NEVER if after is None else en + after - k
            return (k, en), bound
        e1 = max(g + 1, en + 1, s.ready_lb())
    else:
        e1 = max(en + 1, s.ready_lb())
    after = _first(on_b, n + 2)
    return None, (NEVER if after is None else e1 + after - n - 2)


def _first(indices: list, j: int):
    """The first of the sorted ``indices`` at or after ``j`` (None if none)."""
    i = bisect_left(indices, j)
    return indices[i] if i < len(indices) else None
