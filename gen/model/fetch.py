"""The controller's program fetch: when each program word is in its FIFO.

`ommatidia.hw.top.Accelerator` asks for program words ahead of the command it
runs, in blocks of ``block`` (`ommatidia.hw.top.FETCH_BLOCK`) words one a cycle,
a block once every word asked for has come and the FIFO has room for it
(``depth``, `ommatidia.hw.top.PREFETCH_WORDS`, words held or asked for); it asks
for none from the cycle a ``DMA_IN`` or foreground ``DMA_OUT`` is next to run until
it has ended (a block is cut there; a background ``DMA_IN`` too, it uses the read
port), and none once the ``DONE`` has come. Such a
command runs once every word asked for has come; a background ``DMA_OUT`` holds
nothing (it does not use the read port).

The model runs the commands in order, a command word and its operands one a cycle
each once it is in the FIFO; `Fetch.ready` of word ``k`` needs only the runs of
the words before it and the DMA commands before it, which the model has then run.
On a word port a word asked for at ``r`` comes at ``r + read_latency``, is in the
FIFO's output register two cycles later and runs then at the soonest; on the AXI top a
block's words come as `DramTiming.taken` says for a run of requests one a cycle (a
burst, or several where it crosses a page or ``max_burst``), from an idle bus, after any
write bursts still open.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Fetch"]


class Fetch:
    """The program words asked for, when they come, when they run."""

    def __init__(self, depth: int, block: int, timing, done: int, writes=None):
        self.depth, self.block, self.timing, self.end = depth, block, timing, done
        self.writes = writes
        self.asked: list[int] = []
        self.came: list[int] = []
        self.ran: list[int] = []
        self.holds: deque = deque()
        self.first = self.start = 0     # the current block's first word, first request
        self.after = None               # its reads wait for write bursts until then

    def _hold_after(self, start: int):
        """The first cycle from ``start`` on that a hold begins, or None."""
        for first, _ in self.holds:
            if first >= start:
                return first
        return None

    def _start(self):
        """The cycle the next block starts, or None if a word before it has yet to run."""
        k = len(self.asked)
        if k > self.end:
            return None
        s = self.came[-1] if self.came else 0
        room = k + self.block - self.depth - 1
        if room >= len(self.ran):
            return None
        if room >= 0:
            s = max(s, self.ran[room])
        for first, last in self.holds:
            if last is not None and first <= s <= last:
                s = last + 1
        return s

    def _begin(self, s: int) -> None:
        """Asks for the next block from cycle ``s`` on."""
        while self.holds and self.holds[0][1] is not None and self.holds[0][1] < s:
            self.holds.popleft()
        k = len(self.asked)
        cut = self._hold_after(s)
        n = self.block if cut is None else min(self.block, cut - s)
        self.first, self.start = k, s
        self.after = self.writes.read_at(s) if self.writes is not None and n else None
        self._ask(n)
        if cut is not None:
            self._trim(cut)
        if k <= self.end < len(self.asked):
            self._trim(self.came[self.end] - 1)

    def _ask(self, n: int) -> None:
        """The current block's words: ``n`` from ``self.first``, asked for from
        ``self.start`` on; when each is asked for and comes."""
        k, s, t = self.first, self.start, self.timing
        del self.asked[k:], self.came[k:]
        if t.bus == "port":
            self.asked += [s + i for i in range(n)]
            self.came += [s + i * t.read_interval + t.read_latency + 1 for i in range(n)]
            return
        asks = []
        after = None if self.after is None else self.after - s
        self.came += [s + c + 1 for c in t.taken(k, [1] * n, asks=asks, not_before=after)]
        self.asked += [s + a for a in asks]

    def _trim(self, limit: int) -> None:
        """The current block ends before cycle ``limit``: no word asked for from then on
        (on AXI its last burst is shorter, so its words come at other cycles)."""
        n = sum(1 for a in self.asked[self.first:] if a < limit)
        if self.first + n < len(self.asked):
            self._ask(n)

    def ready(self, k: int) -> int:
        """The first cycle word ``k`` can run: the FIFO's output register takes it the cycle
        after it has come."""
        while len(self.asked) <= k:
            self._begin(self._start())
        return self.came[k] + 1

    def run(self, k: int, cycle: int) -> None:
        """Word ``k`` (the next) leaves the FIFO at ``cycle``."""
        self.ran.append(cycle)

    def hold(self, first: int) -> int:
        """No word is asked for from ``first`` on (a DMA command is next) until `release`;
        the block being asked for ends there. Returns the first cycle the DMA may start:
        every word asked for has come."""
        self._trim(first)
        self.holds.append([first, None])
        while (s := self._start()) is not None and s < first:
            self._begin(s)
        return max(first, self.came[-1] if self.came else 0)

    def release(self, last: int) -> None:
        """The DMA ends: words may be asked for again from ``last + 1``."""
        self.holds[-1][1] = last

    def done(self) -> tuple[int, int]:
        """The words asked for past ``DONE`` (none once it has come) and the cycle after
        the last of them has come."""
        return len(self.asked) - self.end - 1, self.came[-1]
