"""The pass timings shared by every prediction in a process, so that each distinct
``PASS`` is timed once: by the mapper's probes (`ommatidia.gen.compiler.ModelCost`),
by the whole-layer predictions that rank its shortlist and by the final one.

`ommatidia.gen.model.machine.Machine` keys a pass on everything its timing
(`ommatidia.gen.model.timing.pass_timing`, or the cycle-level
`ommatidia.gen.model.reference.reference_pass`) reads, and on nothing else:

- the configuration (array size, spad depths, NoC ID widths, values per filter packet
  and per GON packet, the GON queue's depth: a frozen `ArrayConfig`) and whether the reference times it;
- the raw ``run``, ``enable`` and ``up`` registers and the six multicast ID registers;
- per sender the loop counts, strides, tag repeat and tag count of its descriptor (the
  packet count and each packet's tag index), which packets start a new GLB word and
  how many values each packet carries (the only uses of the addresses: the data never
  changes a pass's cycles, a zero activation still takes its cycle) and the PEs each
  tag index reaches;
- the GON receiver's psum count and, with GON packets of ``gon_values`` > 1 psums, its
  base and stride modulo ``gon_values`` and ``col0`` (each top PE's first slot in its
  group: where its `ommatidia.hw.noc.GonPacker` cuts packets);
- the arbiter state the pass starts from (`reset_state` layout): the GLB read port's and
  the GON's round-robin pointers, which carry over from the command before.

DMA commands are not memoized: their cycles depend on the DRAM data (RLC runs).
"""

from __future__ import annotations

import contextlib

__all__ = ["PassMemo", "PASS_MEMO", "unmemoized"]


class PassMemo:
    """Pass key -> (`ommatidia.gen.model.timing.PassTime`, timed by the reference), at
    most ``most`` of them (all forgotten when full); ``enabled`` False times every pass."""

    def __init__(self, most: int = 1024):
        self.most = most
        self.enabled = True
        self.hits = self.misses = 0
        self._got = {}

    def get(self, key):
        got = self._got.get(key) if self.enabled else None
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

    def clear(self) -> None:
        self._got.clear()
        self.hits = self.misses = 0


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
