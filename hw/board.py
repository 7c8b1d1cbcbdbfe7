"""A board's top: the `System` (accelerator + on-chip DRAM) behind a UART host link.

`BoardTop` connects a `ommatidia.hw.bridge.UARTBridge` to the host port of a
`ommatidia.hw.system.System` whose DRAM lives in on-chip block RAM, so a host
(`ommatidia.boards.host.Host`) loads a layer's image over the serial line,
starts it, waits for ``done`` and reads the counters and the ofmap back.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .bridge import UARTBridge
from .system import System
from .top import COUNTERS

__all__ = ["BoardTop"]


class BoardTop(wiring.Component):
    """`System` + `UARTBridge`; the only ports are the UART pins.

    Parameters
    ----------
    cfg : ArrayConfig
    dram_words : int
        On-chip DRAM depth in ``dram_bits`` words.
    divisor : int
        Clock cycles per UART bit.

    Members
    -------
    rx : In(1, init=1)
    tx : Out(1, init=1)
    """

    def __init__(self, cfg: ArrayConfig, dram_words: int, divisor: int):
        self._system = System(cfg, dram_words)
        self._bridge = UARTBridge(len(COUNTERS), cfg.dram_bits, cfg.dram_addr_bits,
                                  divisor=divisor)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.system = system = self._system
        m.submodules.bridge = bridge = self._bridge
        for name in ("mem_w", "mem_raddr"):
            wiring.connect(m, getattr(bridge, name), getattr(system, name))
        wiring.connect(m, system.mem_rdata, bridge.mem_rdata)
        m.d.comb += [system.start.eq(bridge.start), bridge.status.eq(system.status),
                     bridge.counters.eq(system.counters),
                     bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        return m
