"""The pass timings shared by every prediction in a process, so that each distinct
``PASS`` is timed once: by the mapper's probes (`ommatidia.gen.compiler.ModelCost`),
by the whole-layer predictions that rank its shortlist and by the final one.

`ommatidia.gen.model.machine.Machine` keys a pass on everything its timing
(`ommatidia.gen.model.timing.pass_timing`, or the cycle-level
`ommatidia.gen.model.reference.reference_pass`) reads, and on nothing else:

- the configuration (array size, spad depths, NoC ID widths, values per filter packet
  and per GON packet, the GON and psum GIN queues' depths: a frozen `ArrayConfig`) and
  whether the reference times it;
- the raw ``run``, ``enable`` and ``up`` registers and the six multicast ID registers;
- per sender the loop counts, strides, tag repeat and tag count of its descriptor (the
  packet count and each packet's tag index), which packets start a new GLB word and
  how many values each packet carries (the only uses of the addresses: the data never
  changes a pass's cycles, a zero activation still takes its cycle) and the PEs each
  tag index reaches;
- the GON receiver's psum count and, with GON packets of ``gon_values`` > 1 psums, its
  base and stride modulo ``gon_values`` and ``col0`` (each top PE's first slot in its
  group: where its `ommatidia.hw.noc.GonPacker` cuts packets);
- with `ArrayConfig.glb_bank_reads`, the label of the GLB bank of each packet that reads
  a word (`Machine._banks_read`: which reads share a bank, not which bank it is);
- the arbiter state the pass starts from (`reset_state` layout): the GLB read port's
  (per bank) and the GON's round-robin pointers, which carry over from the command
  before. The recurrences read only part of it (`arbiter_key`), so a pass they time is
  keyed on that part: a layer's passes of one shape, entered from the states other
  commands leave, are then timed once, not once per state.

DMA commands are not memoized: their cycles depend on the DRAM data (RLC runs).
"""

from __future__ import annotations

import contextlib
import dataclasses

from .arbiters import SENDER_ORDER

__all__ = ["PassMemo", "PASS_MEMO", "unmemoized", "arbiter_key", "carry_state", "picks_hold"]


class PassMemo:
    """Pass key -> (`ommatidia.gen.model.timing.PassTime`, timed by the reference), at
    most ``most`` of them (all forgotten when full); ``enabled`` False times every pass."""

    def __init__(self, most: int = 1024):
        self.most = most
        self.enabled = True
        self.hits = self.misses = 0
        self._got = {}

    def get(self, *keys, picks=None):
        """The value of the first of ``keys`` held, else (``picks``: a key and an arbiter
        state) the first value added (`add`) under that key whose ``picks`` hold from the
        state (`picks_hold`); None if none: one hit or miss."""
        got = None
        if self.enabled:
            for key in keys:
                got = self._got.get(key)
                if got is not None:
                    break
            if got is None and picks is not None:
                got = next((v for v in self._got.get(picks[0], ())
                            if picks_hold(v[0].picks, picks[1])), None)
        if got is None:
            self.misses += 1
        else:
            self.hits += 1
        return got

    def put(self, key, value) -> None:
        if not self.enabled:
            return
        if len(self._got) >= self.most:
            self._got.clear()
        self._got[key] = value

    def add(self, key, value) -> None:
        """``value`` one more of those held under ``key``."""
        if self.enabled:
            self.put(key, self._got.get(key, []) + [value])

    def clear(self) -> None:
        self._got.clear()
        self.hits = self.misses = 0


def arbiter_key(rr: tuple, active, tops: dict, banks=None) -> tuple | None:
    """What of the arbiter state ``rr`` the recurrences (`ommatidia.gen.model.timing`)
    read, for a pass whose senders ``active[e]`` have packets and whose top PEs sit in
    ``tops`` (row -> sorted columns); None when it has no packets or no top (their
    state then goes through unchanged). ``banks``: with `ArrayConfig.glb_bank_reads`,
    per sender the set of GLB banks it reads.

    - the GLB port's last grant only orders the senders in `round_robin`: the order of
      the active ones after it (per bank: of those reading the bank, for the banks
      read);
    - an X-bus pointer grants the first requesting top at or after it, else the first:
      only the first top column at or after it (else the first) matters, and only on a
      row with tops;
    - the Y-bus pointer is not read (the recurrences give the Y-bus its first free
      cycle).

    The recurrences then take every decision alike from any state of one key; the state
    they leave differs only where they leave the state as it was (`carry_state`)."""
    if not any(active) or not tops:
        return None
    last, xptr, _ = rr
    if banks is None:
        order = tuple(e for e in SENDER_ORDER[last] if active[e])
    else:
        order = tuple((b, tuple(e for e in SENDER_ORDER[last[b]] if b in banks[e]))
                      for b in sorted(set().union(*banks)))
    x = tuple((r, next((c for c in cols if c >= xptr[r]), cols[0]))
              for r, cols in sorted(tops.items()))
    return order, x


def picks_hold(picks, rr: tuple) -> bool:
    """Whether the recurrences, started from arbiter state ``rr`` (`arbiter_key`'s, one GLB
    bank per label), take the decisions ``picks`` records of the state they started from
    (`ommatidia.gen.model.timing.PassTime.picks`): per bank whose first grant chose among
    senders, the one it chose; per X-bus row whose first grant chose among tops, the one
    it chose (later decisions read only the pass's own grants). They then time the pass
    alike from ``rr``."""
    glb, rows = picks
    last = rr[0]
    for b, (ready, chosen) in glb.items():
        if next(e for e in SENDER_ORDER[last[b] if isinstance(last, tuple) else last]
                if e in ready) != chosen:
            return False
    for r, (cols, chosen) in rows.items():
        if next((c for c in cols if c >= rr[1][r]), cols[0]) != chosen:
            return False
    return True


def carry_state(time, rr: tuple, tops: dict, banks=None):
    """``time`` (a `ommatidia.gen.model.timing.PassTime` of a pass keyed by
    `arbiter_key`) entered from state ``rr``: the X-bus pointers of rows without a top
    are ``rr``'s (the recurrences grant every top's last psum, so the GLB port's last
    grant, the Y-bus pointer and the other X-bus pointers are the pass's own); with
    ``banks`` (`arbiter_key`) so are the last grants of the GLB banks no sender reads."""
    glb, xptr, yptr = time.rr
    if banks is not None:
        read = set().union(*banks)
        glb = tuple(g if b in read else rr[0][b] for b, g in enumerate(glb))
    xptr = tuple(x if r in tops else rr[1][r] for r, x in enumerate(xptr))
    return dataclasses.replace(time, rr=(glb, xptr, yptr))


PASS_MEMO = PassMemo()
"""The process's memo, used by every `ommatidia.gen.model.predict`."""


@contextlib.contextmanager
def unmemoized():
    """Within it every pass is timed afresh (to check that the memo changes nothing)."""
    enabled = PASS_MEMO.enabled
    PASS_MEMO.enabled = False
    try:
        yield
    finally:
        PASS_MEMO.enabled = enabled
