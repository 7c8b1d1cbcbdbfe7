"""Pass timing simulated cycle by cycle: the cycle-level reference of the rules the
recurrences of `ommatidia.gen.model.timing` follow (slow; for the passes they
cannot order, and for checking them).

Each cycle first decides, from the registered state, the GLB port grant, the GON
grants, what every PE issues (`ommatidia.gen.model.pe`) and which sender packets
every target takes; then it updates the senders, the psum links, the GON and the
PEs, as the RTL's registers do at the clock edge.
"""

from __future__ import annotations

from .arbiters import glb_bank
from .decode import KINDS
from .pe import PIPELINE_STAGES, Schedule
from .timing import PassTime, pe_grid

__all__ = ["reference_pass"]

_IDLE, _LOADING, _COMPUTING = 0, 1, 2


class _RefPE:
    """One PE's registers: state (idle, loading filters, computing), issue cursor
    (output ``f``, operation ``j``), ifmap columns loaded and the load limit, the
    pipeline (per stage: None, or whether the operation emits a psum out)."""

    __slots__ = ("acc", "state", "computing", "loading", "f", "j", "loaded", "load_c",
                 "load_limit", "filter_load", "pipe", "issue", "take", "advance", "state0",
                 "loaded0", "stalls")

    def __init__(self, acc):
        self.acc = acc
        self.state = _IDLE
        self.computing = self.loading = False
        self.f = self.j = self.loaded = self.load_c = self.load_limit = self.filter_load = 0
        self.pipe = [None] * PIPELINE_STAGES
        self.issue = self.take = False
        self.stalls = 0

    def out_valid(self) -> bool:
        """Whether a psum out waits at the accumulate stage."""
        return self.pipe[-1] is not None and self.pipe[-1]


def _sender(stream) -> dict:
    """A sender's registers: packet cursor, output register (``o``, packet ``pkt``,
    targets ``done``), its GLB word cache and request."""
    s = {"word": stream["word"], "tag": stream["tag"], "targets": stream["targets"],
         "values": stream["n"],
         "n": 0, "N": len(stream["word"]), "o": False, "pkt": 0, "done": set(),
         "cache": None, "wait": False, "glbv": False, "req": None, "stalls": 0}
    s["running"] = s["N"] > 0
    return s


class _Reference:
    """The state of the array, the senders, the GLB port and the GON during a pass."""

    def __init__(self, cfg, regs, streams, rr):
        self.run = regs["run"]
        self.sch = Schedule.of(self.run, cfg.pe.lanes)
        self.rows, self.cols = cfg.rows, cfg.cols
        self.stream = cfg.pe.stream_filters
        self.grid = pe_grid(cfg, regs)
        self.pes = {rc: _RefPE(pe.acc) for rc, pe in self.grid.items()}
        self.order = sorted(self.pes)
        self.snd = [_sender(streams[kind]) for kind in KINDS]
        self.links = {rc: False for rc, pe in self.grid.items() if not pe.top}
        self.xo, self.xptr, self.yo, self.yptr = [False] * self.rows, list(rr[1]), False, rr[2]
        self.count = regs["gon_desc"]["count"]
        gd, v = regs["gon_desc"], cfg.noc.gon_values
        self.values, self.total = v, self.sch.F * self.sch.p
        self.pack = {rc: [(gd["base"] + (rc[1] - gd["col0"]) * gd["stride"]) % v, 0, 0]
                     for rc, pe in self.grid.items() if pe.top}  # phase, psum j, held
        self.xn, self.xn_next, self.yn = [1] * self.rows, [1] * self.rows, 1
        # with `NoCConfig.gon_queue`, each top's queue of GON packets (their psum counts)
        self.depth = cfg.noc.gon_queue
        self.gq = {rc: [] for rc in self.pack}
        # with psum GIN packets, each bottom's `PsumUnpacker`: psums left per packet
        self.psum_depth = cfg.noc.psum_gin_queue
        self.queues = {rc: [] for rc, pe in self.grid.items() if pe.gin} \
            if cfg.noc.psum_gin_values > 1 else None
        self.rx_running, self.rx_glb, self.rx_total = self.count != 0, False, 0
        self.pending, self.t = True, 0
        # the GLB reader last granted; with `ArrayConfig.glb_bank_reads` per bank, and the
        # bank of each sender's packet words
        self.banked = cfg.glb_bank_reads
        self.glb_last = list(rr[0]) if self.banked else rr[0]
        for s in self.snd:
            s["bank"] = [int(b) for b in glb_bank(cfg, s["word"])] if self.banked else None

    def run_pass(self) -> PassTime:
        while self._busy():
            self._hits()
            y_room, yg, xg = self._gon_grants()
            self._pe_issues(xg)
            self._sender_takers()
            grant = self._glb_grant()
            self._update_senders(grant)
            self._update_links()
            self._update_gon(y_room, yg, xg)
            self._update_pes()
            self.pending = False
            self.t += 1
        glb = tuple(self.glb_last) if self.banked else self.glb_last
        return PassTime(self.t + 4, (glb, tuple(self.xptr), self.yptr),
                        sum(pe.stalls for pe in self.pes.values()),
                        sum(s["stalls"] for s in self.snd))

    def _busy(self) -> bool:
        return (self.pending or self.rx_running or self.rx_glb
                or any(pe.state for pe in self.pes.values())
                or any(s["running"] or s["o"] for s in self.snd))

    def _hits(self) -> None:
        """Per sender: whether its next packet's word is at hand (arriving or cached)."""
        for s in self.snd:
            s["hit"] = False
            if s["running"]:
                w = s["word"][s["n"]]
                s["hit"] = (s["glbv"] and s["req"] == w) or s["cache"] == w

    def _glb_grant(self) -> set:
        """The senders the GLB port grants this cycle (round-robin over 5; with
        `ArrayConfig.glb_bank_reads` one per bank, among those requesting its words): a
        sender requests the word of its next packet when it is not at hand, or, while
        it sends a packet, the word of the packet after it when that differs."""
        reqs = {}
        for e, s in enumerate(self.snd):
            s["ahead"] = s["emit"] and s["n"] + 1 < s["N"] \
                and s["word"][s["n"] + 1] != s["word"][s["n"]]
            if s["ahead"] or (s["running"] and not s["hit"] and not s["wait"]):
                bank = 0 if s["bank"] is None else s["bank"][s["n"] + s["ahead"]]
                reqs.setdefault(bank, []).append(e)
        if not self.banked:
            last = self.glb_last
            for j in range(1, 6):
                if (last + j) % 5 in reqs.get(0, ()):
                    self.glb_last = (last + j) % 5
                    return {self.glb_last}
            return set()
        grant = set()
        for bank, senders in reqs.items():
            last = self.glb_last[bank]
            for j in range(1, 6):
                if (last + j) % 5 in senders:
                    self.glb_last[bank] = (last + j) % 5
                    grant.add(self.glb_last[bank])
                    break
        return grant

    def _gon_grants(self):
        """Whether the Y-bus has room, the row it grants, and per row the column its
        X-bus grants."""
        pes, grid = self.pes, self.grid
        y_room = (not self.yo) or self.rx_running
        yg = None
        if y_room and any(self.xo):
            valid = [r for r in range(self.rows) if self.xo[r]]
            after = [r for r in valid if r >= self.yptr]
            yg = after[0] if after else valid[0]
        xg = {}
        for r in range(self.rows):
            if (not self.xo[r]) or yg == r:
                if self.depth:
                    valid = [c for c in range(self.cols) if self.gq.get((r, c))]
                else:
                    valid = [c for c in range(self.cols) if (r, c) in pes and grid[r, c].top
                             and pes[r, c].state == _COMPUTING and pes[r, c].out_valid()
                             and self._closes((r, c))]
                if valid:
                    after = [c for c in valid if c >= self.xptr[r]]
                    xg[r] = after[0] if after else valid[0]
        return y_room, yg, xg

    def _closes(self, rc) -> bool:
        """Whether the top PE's psum out ends its GON packet (`GonPacker`): the last slot
        of its group, or the pass's last psum; the packer takes the others at once."""
        phase, j, _ = self.pack[rc]
        v = self.values
        return v == 1 or (phase + j) % v == v - 1 or j + 1 == self.total

    def _pe_issues(self, xg) -> None:
        """Per PE: whether its pipeline advances, it issues, it takes a psum in."""
        sch, pes, links, ps = self.sch, self.pes, self.links, self.snd[2]
        for rc in self.order:
            pe, g = pes[rc], self.grid[rc]
            pe.issue = pe.take = False
            pe.advance = True
            pe.state0, pe.loaded0 = pe.state, pe.loaded
            if pe.state != _COMPUTING:
                continue
            out = pe.out_valid()
            if out:
                if g.top:
                    closes = self._closes(rc)
                    if not closes:
                        ready = True
                    elif self.depth:
                        ready = len(self.gq[rc]) < self.depth
                    else:
                        ready = xg.get(rc[0]) == rc[1]
                    if ready:
                        pack = self.pack[rc]
                        if closes:
                            if self.depth:
                                self.gq[rc].append(pack[2] + 1)
                            else:
                                self.xn_next[rc[0]] = pack[2] + 1
                            pack[2] = 0
                        else:
                            pack[2] += 1
                        pack[1] = 0 if pack[1] + 1 == self.total else pack[1] + 1
                else:
                    ready = (not links[rc]) or pes[rc[0] - 1, rc[1]].take
            else:
                ready = True
            pe.advance = not (out and not ready)
            need = pe.acc and sch.takes_psum(pe.j)
            if need:
                if g.below is not None:
                    pin = links[rc[0] + 1, rc[1]]
                elif self.queues is not None:
                    pin = bool(self.queues[rc])
                else:
                    pin = ps["o"] and rc in ps["targets"][ps["tag"][ps["pkt"]]] \
                        and rc not in ps["done"]
            else:
                pin = True
            can = pe.computing and pe.loaded > sch.column(pe.f, pe.j) and pin \
                and (not self.stream or pe.filter_load >= sch.weights_read(pe.j))
            pe.issue = can and pe.advance
            pe.take = pe.issue and need
            if pe.computing and not pe.issue:
                pe.stalls += 1

    def _sender_takers(self) -> None:
        """Per sender: the targets that take its packet this cycle, whether all have."""
        W = self.run["W"]
        for e, s in enumerate(self.snd):
            s["ready"], s["takers"] = False, []
            if not s["o"]:
                continue
            ok_all = True
            for rc in s["targets"][s["tag"][s["pkt"]]]:
                if rc in s["done"]:
                    continue
                pe = self.pes[rc]
                if e == 0:
                    ok = pe.state == _LOADING or self.stream and pe.state == _COMPUTING \
                        and pe.filter_load < self.run["filter_count"]
                elif e == 1:
                    ok = pe.loading and pe.loaded < W and pe.loaded < pe.load_limit
                elif self.queues is not None:
                    ok = len(self.queues[rc]) < self.psum_depth
                else:
                    ok = pe.take
                if ok:
                    s["takers"].append(rc)
                else:
                    ok_all = False
            s["ready"] = ok_all
            if not ok_all:
                s["stalls"] += 1
        for s in self.snd:
            s["emit"] = s["running"] and s["hit"] and ((not s["o"]) or s["ready"])

    def _take(self, e: int, takers) -> None:
        """Filter weights and ifmap values into the PEs that took them."""
        values = self.snd[e]["values"]
        n = 1 if values is None else int(values[self.snd[e]["pkt"]])
        for rc in takers:
            pe = self.pes[rc]
            if e == 0:
                pe.filter_load += n
                if pe.filter_load >= self.run["filter_count"] and not self.stream:
                    pe.computing, pe.state = True, _COMPUTING
            elif e == 2:
                if self.queues is not None:
                    self.queues[rc].append(n)
            elif e == 1:
                pe.load_c += n
                if pe.load_c == self.sch.q:
                    pe.load_c, pe.loaded = 0, pe.loaded + 1

    def _update_senders(self, grant) -> None:
        for e, s in enumerate(self.snd):
            self._take(e, s["takers"])
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
                if s["ahead"] and e in grant:
                    s["wait"], s["req"], s["glbv"] = True, s["word"][s["n"]], True
            elif s["running"] and not s["hit"] and not s["wait"] and e in grant:
                s["wait"], s["req"], s["glbv"] = True, s["word"][s["n"]], True

    def _update_links(self) -> None:
        """A link holds one psum: filled by the PE below, emptied by the PE above."""
        links, pes = self.links, self.pes
        for rc in links:
            pe, above = pes[rc], pes[rc[0] - 1, rc[1]]
            if pe.state0 == _COMPUTING and pe.out_valid() and ((not links[rc]) or above.take):
                links[rc] = True
            elif above.take:
                links[rc] = False

    def _update_gon(self, y_room: bool, yg, xg) -> None:
        rx_accept = self.rx_running and self.yo
        if rx_accept:
            self.rx_total += self.yn
            self.rx_running = self.rx_total < self.count
        if y_room:
            self.yo = yg is not None
            if yg is not None:
                self.yn = self.xn[yg]
                self.yptr = 0 if yg == self.rows - 1 else yg + 1
        for r in range(self.rows):
            if (not self.xo[r]) or yg == r:
                self.xo[r] = r in xg
                self.xn[r] = self.xn_next[r]
                if r in xg and self.depth:
                    self.xn[r] = self.gq[r, xg[r]].pop(0)
                if r in xg:
                    self.xptr[r] = 0 if xg[r] == self.cols - 1 else xg[r] + 1
        self.rx_glb = rx_accept

    def _update_pes(self) -> None:
        pes, filter_takers = self.pes, self.snd[0]["takers"]
        if self.queues is not None:
            for rc, queue in self.queues.items():
                if pes[rc].take:
                    queue[0] -= 1
                    if not queue[0]:
                        queue.pop(0)
        for pe in pes.values():
            if pe.state0 == _IDLE:
                if self.pending:
                    pe.loading, pe.load_limit = True, self.sch.ring
                    if self.run["load_filter"] and not self.stream:
                        pe.state = _LOADING
                    else:
                        pe.state, pe.computing = _COMPUTING, True
                        if not self.run["load_filter"]:
                            pe.filter_load = self.run["filter_count"]
                continue
            if pe.state0 == _LOADING:
                if pe.state == _LOADING:
                    pe.stalls += 0 if any(pe is pes[x] for x in filter_takers) else 1
                continue
            self._step(pe)

    def _step(self, pe: _RefPE) -> None:
        """A computing PE's pipeline and issue loop (f, s, c, k) at the clock edge."""
        sch = self.sch
        if pe.advance:
            pe.pipe = [sch.emits_psum(pe.j) if pe.issue else None] + pe.pipe[:-1]
        if pe.issue:
            if sch.ends_tap(pe.j):
                pe.load_limit = sch.load_limit(pe.f, sch.tap(pe.j))
            pe.j += 1
            if pe.j == sch.issues:
                pe.j, pe.f = 0, pe.f + 1
                pe.computing = pe.f < sch.F
        elif not pe.computing and all(x is None for x in pe.pipe) \
                and pe.loaded0 == self.run["W"]:
            pe.state, pe.loading = _IDLE, False


def reference_pass(cfg, regs, streams, rr) -> PassTime:
    """The timing of one ``PASS`` simulated cycle by cycle (`timing.pass_timing`'s
    arguments and result)."""
    return _Reference(cfg, regs, streams, rr).run_pass()
