"""Lower bounds on when a pass's PEs and ifmap sender act next, for the GLB port that
grants in cycle order (`ommatidia.gen.model.causal`): a sender's next request waits
for its targets to take its packet, which waits for a PE's issue or an ifmap column.
Each bound holds whatever the recurrences time later; a loose one only makes a grant
wait (and, when nothing else moves, the pass go to the rounds of `pass_timing`)."""

from __future__ import annotations

__all__ = ["Bounds"]

_PLAIN, _LAST = 0, 1
"""A psum chain's stage in an output (`ommatidia.gen.model.timing._Chain`)."""


class Bounds:
    """The bounds, as methods of `ommatidia.gen.model.timing._Round`."""

    def issue_lb(self, pe) -> int:
        """A lower bound on the cycle of ``pe``'s next issue not timed yet (after its last
        weight: at least two cycles after the filter sender's next emission; a streaming
        PE's first operation after the weights it reads)."""
        if self.stream and self._first_untimed(pe):
            return self.op_lb(pe, 0)
        if pe.loaded:
            return pe.prev + 1
        return max(self.fs.e, 0) + 3

    def _first_untimed(self, pe) -> bool:
        """Whether no operation of ``pe``'s first output is timed yet (its chain times
        them once every PE of it has its weights)."""
        ch = pe.ch
        return ch.f == 0 and ch.stage == _PLAIN

    def op_lb(self, pe, j: int) -> int:
        """A lower bound on the cycle a streaming ``pe`` issues operation ``j`` of its first
        output, not timed yet: ``j`` cycles after its first operation, and after the
        weights ``j`` reads are counted (two cycles after the filter packet that
        completes them; a packet not sent yet comes a cycle or more after the sender's
        last one and carries at most `_fs_most` weights)."""
        need = self.sch.weights_read(j)
        wl = pe.wl
        first = wl[0][1] if wl else max(self.fs.e, 0) + 3
        for n, t in wl:
            if n >= need:
                return max(t, first + j)
        packets = -(-(need - pe.nf) // self._fs_most)
        return max(max(self.fs.e, 0) + packets + 2, first + j)

    def _take_lb(self, pe) -> int:
        """A lower bound on the cycle the bottom ``pe`` takes its next psum: one of an
        output's last ``p`` operations, after the plain ones, the last of which waits for
        column ``need`` (delivered at least two cycles after the ifmap sender's next
        emission)."""
        lb = self.issue_lb(pe)
        ch, sch = pe.ch, self.sch
        if self.stream and ch.f == 0 and ch.stage == _PLAIN:
            lb = max(lb, self.op_lb(pe, sch.first_out))
        if pe.loaded and ch.stage == _PLAIN and sch.first_out and ch.f < sch.F:
            need = sch.column(ch.f, sch.first_out - 1)
            a = pe.A[need] if len(pe.A) > need else self._ifmap_emit_lb() + 2
            if a > lb:
                lb = a
        return lb

    def _ifmap_emit_lb(self) -> int:
        """A lower bound on the ifmap sender's next emission (its word granted no earlier
        than the first cycle its bank has not granted)."""
        ifm = self.ifm
        n = ifm.n
        if n >= ifm.N:
            return 1 << 62
        if n == 0 or ifm.miss[n]:
            g = ifm.gq.get(n)
            if g is None:
                g = max(ifm.e if n else 0, self.port.t.get(ifm.bank_of(n), 0))
            return max(g + 1, ifm.d)
        return max(ifm.e + 1, ifm.d)

    def _ifmap_ready_lb(self) -> int:
        """A lower bound on the cycle the targets of the next ifmap packet take it: each
        takes it once its ring has room (`_deliver_ifmaps`), the issue freeing the column
        known, or held by a tap's last issue not yet in ``ret``, or still to come."""
        ifm = self.ifm
        q, ring, U, last = self.sch.q, self.sch.ring, self.sch.U, self.sch.S - 1
        lb = 0
        for pe in self.groups[1][ifm.tag[ifm.n]]:
            y = pe.nv // q - ring
            if y < 0:
                continue
            if y < len(pe.ret):
                r = pe.ret[y]
            else:
                x = len(pe.ret) - pe.ch.f * U
                s = x if x < last else last
                ends = pe.tap_end
                if 0 <= x < U and s < len(ends):
                    r = ends[s]
                elif 0 <= x < U and self.stream and self._first_untimed(pe):
                    r = self.op_lb(pe, self.sch.tap_start(s + 1) - 1)
                else:
                    r = self.issue_lb(pe)
            if r + 1 > lb:
                lb = r + 1
        return lb

    def _psum_ready_lb(self) -> int:
        """A lower bound on the cycle the bottoms of the next psum packet take it: an issue
        of theirs (into their queue: the cycle after they took a psum)."""
        psm = self.psm
        lb = 0
        for pe in self.groups[2][psm.tag[psm.n]]:
            if self.queues is not None:
                q = self.queues[id(pe)]
                m = len(q["last"]) - self.psum_depth
                r = 0 if m < 0 else q["done"][m] + 1 if m < len(q["done"]) else \
                    self._take_lb(pe) + 1
            else:
                r = self._take_lb(pe)
            if r > lb:
                lb = r
        return lb
