"""DRAM timing for the model: how long the accelerator's DRAM port takes to answer.

`DramTiming()` is the ``System``'s behavioural DRAM (hw/system.py), for which the
model's cycle formulas are written (`ommatidia.gen.model`): a read request is
answered ``read_latency = 1`` cycle later, requests pipelined one a cycle, writes
taken at once. The model adds to those formulas only what another port costs more,
so the default adds nothing.

``bus="axi"`` is the AXI top (hw/axi.py, docs/axi.md): the port goes through the
AXI4 master (hw/axi_master.py) to a slave that answers a read burst
``read_latency`` cycles after its AR handshake, one beat a cycle, and a write burst
``write_latency`` cycles after its last W beat. From the master's behaviour:

- a block of program words (`ommatidia.gen.model.fetch`) is asked for one a cycle
  and goes out as one burst (or several, where it crosses a page or ``max_burst``)
  when the requests stop, like a ``DMA_IN``'s words;
- a ``DMA_IN`` run of words is collected one request a cycle and issued when the
  requests stop, at ``max_burst`` beats or at a 4 KiB page (which depend on the
  byte address ``base`` of DRAM word 0), at most ``max_reads`` bursts
  outstanding; the slave answers bursts in order, and a serial one
  (``read_queue``, AxiRam's read process) turns to the next burst, and starts
  its latency, only once it has queued the last beat of the one before;
- ``DMA_OUT``'s words are collected into write bursts (`Writes`); the last one
  goes out at the next read request (a block of program words or a ``DMA_IN``), or
  when the accelerator goes idle, and that read waits for every B response.

``read_interval`` is the slave's bandwidth: at most one DRAM word every
``read_interval`` cycles (the tests run 1, the accelerator's own rate).

Parameters
----------
read_latency : int
    Port: cycles from a request to its word (1 to 4096). AXI: from the AR
    handshake to the first R beat (0 to 4096).
write_latency : int
    AXI: cycles from the last W beat to the B response (0 to 4096).
read_interval : int
    Cycles per DRAM word read, 1 to 64.
bus : str
    ``"port"`` (the System's word port) or ``"axi"``.
word_bits, data_width : int
    AXI: DRAM word and bus width in bits (``data_width`` = ``word_bits`` times a
    power of two).
max_burst, max_reads : int
    AXI: beats a burst (1 to 256), read bursts outstanding (1 to 16).
base : int
    AXI: byte address of DRAM word 0 (only its offset in a 4 KiB page matters).
read_queue : int or None
    AXI: None for a slave that overlaps bursts; else the R beats and the ARs a
    serial slave queues (0 to 256; cocotbext-axi's AxiRam: 2): it queues a beat
    once all but ``read_queue`` of the beats before are on the bus, turns to the
    next burst once it has queued the last one's beats, and refuses an AR while
    ``read_queue`` wait for it to turn to them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DramTiming", "SYSTEM_DRAM", "Writes"]

PAGE = 4096
LIMIT = 4096


def _check(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"DramTiming {name} must be an integer in {lo}..{hi}, not {value!r}")


@dataclass(frozen=True)
class DramTiming:
    __doc__ = __doc__

    read_latency: int = 1
    write_latency: int = 0
    read_interval: int = 1
    bus: str = "port"
    word_bits: int = 64
    data_width: int = 64
    max_burst: int = 256
    max_reads: int = 4
    base: int = 0
    read_queue: int | None = None

    def __post_init__(self):
        if self.bus not in ("port", "axi"):
            raise ValueError(f"DramTiming bus must be 'port' or 'axi', not {self.bus!r}")
        _check("read_latency", self.read_latency, 1 if self.bus == "port" else 0, LIMIT)
        _check("write_latency", self.write_latency, 0, LIMIT)
        _check("read_interval", self.read_interval, 1, 64)
        _check("word_bits", self.word_bits, 8, 1024)
        _check("data_width", self.data_width, self.word_bits, 1024)
        ratio = self.data_width // self.word_bits
        if self.data_width % self.word_bits or ratio & (ratio - 1):
            raise ValueError(f"DramTiming data_width must be word_bits ({self.word_bits}) times "
                             f"a power of two, not {self.data_width}")
        _check("max_burst", self.max_burst, 1, 256)
        _check("max_reads", self.max_reads, 1, 16)
        _check("base", self.base, 0, (1 << 64) - 1)
        if self.base % (self.word_bits // 8):
            raise ValueError(f"DramTiming base must be a multiple of {self.word_bits // 8} "
                             f"bytes, not {self.base}")
        if self.read_queue is not None:
            _check("read_queue", self.read_queue, 0, 256)

    @property
    def is_system(self) -> bool:
        """True when the model's own formulas hold unchanged (``write_latency`` is only
        the AXI top's: ``ommatidia map`` passes its default 2 on the word port too)."""
        return self == SYSTEM_DRAM or (self.bus == "port" and self.read_latency == 1
                                       and self.read_interval == 1)

    @property
    def lanes(self) -> int:
        return self.data_width // self.word_bits

    # -- reads

    def _bursts(self, addr: int, n: int) -> list[tuple[int, int]]:
        """The read or write bursts of words ``addr .. addr + n - 1``: (words, beats)."""
        wb = self.word_bits // 8
        out = []
        i = 0
        while i < n:
            beats, j = 1, i + 1
            while j < n:
                byte = self.base + (addr + j) * wb
                if byte % PAGE == 0:
                    break
                if (byte // wb) % self.lanes == 0:
                    if beats == self.max_burst:
                        break
                    beats += 1
                j += 1
            out.append((j - i, beats))
            i = j
        return out

    def taken(self, addr: int, steps: list[int], not_before: int | None = None,
              asks: list | None = None) -> list[int]:
        """The cycle each word read from ``addr`` on is taken, counted from the first
        request (requests one a cycle), by a consumer that takes word ``k`` no sooner than
        ``steps[k - 1]`` cycles after word ``k - 1`` (``len(steps)`` words); on the AXI
        top no read burst goes out before cycle ``not_before`` (write bursts). ``asks``
        gets the cycle each request is taken: on AXI a burst's first request waits until
        the burst before it is issued."""
        n = len(steps)
        if self.bus == "port":
            out = []
            if asks is not None:
                asks += range(n)
            for k in range(n):
                t = self.read_latency + k * self.read_interval
                out.append(max(t, out[-1] + steps[k - 1]) if k else t)
            return out
        wb = self.word_bits // 8
        qd = self.read_queue
        out, ars, starts, ends = [], [], [], []
        drive, shake = [], []   # per beat: first cycle on the bus, cycle taken
        q = 0                   # the cycle the burst's first request is taken
        queued = None           # the cycle a serial slave queued its last beat so far
        for words, beats in self._bursts(addr, n):
            # Issued when the next request does not extend it (the cycle after its last
            # request if it is the last burst), once the previous AR has gone and fewer
            # than max_reads bursts are outstanding; its AR goes the next cycle, unless a
            # serial slave holds read_queue ARs it has not turned to yet.
            issue = q + words
            if not_before is not None:
                issue = max(issue, not_before)
            if ars:
                issue = max(issue, ars[-1] + 1)
            if len(ends) >= self.max_reads:
                issue = max(issue, ends[-self.max_reads] + 1)
            ar = issue + 1
            if qd is not None and len(starts) >= max(qd, 1):
                ar = max(ar, starts[-max(qd, 1)] + 2)
            # A serial slave turns to the burst once it has queued the last one's beats.
            start = ar if queued is None else max(ar, queued)
            first = start + self.read_latency
            j = 0
            while j < words:
                lane = (self.base // wb + addr + len(out)) % self.lanes
                span = min(self.lanes - lane, words - j)
                if qd is None:
                    on_bus = first + j * self.read_interval
                else:
                    # Queued after the latency and once beat m - read_queue has gone on
                    # the bus; on the bus the cycle after, once the beat before is taken.
                    m = len(drive)
                    # AxiRam's read process queues a burst's first beat at the end of its
                    # latency (read_latency - 2 cycles after it turns to it), the next beats
                    # once beat m - read_queue is on the bus; its R source puts a queued
                    # beat on the bus the cycle after the one before is taken, or two
                    # cycles after it is queued onto an idle bus.
                    if j == 0:
                        queued = start + max(self.read_latency - 2, 0)
                    if m >= qd and qd:
                        queued = max(queued, drive[m - qd] - 1)
                    on_bus = (shake[-1] + 1 if shake and queued < shake[-1]
                              else queued + 2)
                drive.append(on_bus)
                for i in range(span):
                    t = max(on_bus, first + (j + i) * self.read_interval)
                    if out:
                        t = max(t, out[-1] + steps[len(out) - 1])
                    out.append(t)
                    on_bus = t + 1
                shake.append(out[-1])
                j += span
            if asks is not None:
                asks += range(q, q + words)
            ars.append(ar)
            starts.append(start)
            ends.append(out[-1])
            q = issue
        return out



class Writes:
    """The AXI master's write bursts not yet answered: each burst collects consecutive
    words and closes at the first word that does not extend it (a break, a 4 KiB page,
    ``max_burst`` beats), the last one at the next read request (or when the
    accelerator goes idle); a read burst goes out only once every write has its B."""

    def __init__(self, timing: DramTiming):
        self.timing = timing
        self.words: list[tuple[int, int]] = []

    def add(self, addr: int, times: list[int]) -> None:
        """Words ``addr ..`` written at cycles ``times``."""
        self.words += [(addr + k, t) for k, t in enumerate(times)]

    def read_at(self, cycle: int) -> int | None:
        """A read (or the idle accelerator) closes the last burst at ``cycle``: the first
        cycle a read burst may go out, None if no write is pending."""
        if not self.words:
            return None
        t = self.timing
        wb = t.word_bits // 8
        bursts = []
        prev = None
        for addr, when in self.words:
            byte = t.base + addr * wb
            lane0 = (byte // wb) % t.lanes == 0
            if (prev is not None and addr == prev + 1 and byte % PAGE
                    and not (lane0 and bursts[-1][2] == t.max_burst)):
                bursts[-1][2] += lane0
            else:
                if bursts:
                    bursts[-1][0] = when
                bursts.append([None, when, 1])
            prev = addr
        bursts[-1][0] = cycle
        end, w_end = None, None
        for close, _, beats in bursts:
            start = close + 2 if w_end is None else max(close + 2, w_end + 1)
            w_end = start + beats - 1
            done = w_end + t.write_latency + 1
            end = done if end is None else max(end, done)
        self.words = []
        return end


SYSTEM_DRAM = DramTiming()
"""The System's DRAM, the model's default."""
