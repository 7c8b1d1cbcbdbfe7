"""The host driver: runs compiled layers on an accelerator over a register-and-memory transport.

`Driver` speaks the register map of `ommatidia.hw.axi_regs` (docs/axi.md)
through a *transport*, any object with

- ``read_reg(offset) -> int`` and ``write_reg(offset, value)``: 32-bit registers at
  byte offsets of the map;
- ``read_words(addr, n) -> list[int]`` and ``write_words(addr, words)``: DRAM words
  (``dram_bits`` wide) at the accelerator's word addresses, word 0 at bus byte address
  ``dram_base``;
- ``dram_base``: that byte address, which the driver writes to ``DRAM_BASE``;
- ``pause()``: let some time pass between two status polls.

Transports: a cocotb one over cocotbext-axi's ``AxiLiteMaster`` and
``AxiRam`` (`ommatidia.sim.tb.tb_axi`), one over a board's UART bridge
(`ommatidia.boards.host.BridgeTransport`) and one over ``mmap`` for a Linux
SoC through UIO or ``/dev/mem`` (`ommatidia.boards.mmio.MmapTransport`). A
session: `load_program`, `start`, `wait`, then `counters` and `read_ofmap`,
or all of it with `run`.
"""

from __future__ import annotations

import time

from ommatidia.hw import axi_regs as regs

__all__ = ["DriverError", "Driver"]


class DriverError(RuntimeError):
    """The accelerator reported an error, or is not what the driver expects."""


def _runs(words: dict):
    """(first address, [words]) of each run of consecutive addresses of ``words``."""
    addrs = sorted(words)
    start = 0
    for k in range(1, len(addrs) + 1):
        if k == len(addrs) or addrs[k] != addrs[k - 1] + 1:
            yield addrs[start], [words[a] for a in addrs[start:k]]
            start = k


class Driver:
    """Runs `ommatidia.gen.program.LayerProgram` images through ``transport``.

    Parameters
    ----------
    transport
        See the module's docstring.
    check_id : bool
        Read ``ID`` first and raise DriverError if it is not `ommatidia.hw.axi_regs.ID_VALUE`.
    """

    def __init__(self, transport, *, check_id: bool = True):
        self.transport = transport
        if check_id:
            found = transport.read_reg(regs.offset("ID"))
            if found != regs.ID_VALUE:
                raise DriverError(f"register ID reads 0x{found:08x}, not the accelerator's "
                                  f"0x{regs.ID_VALUE:08x}")

    def load_program(self, prog) -> None:
        """Write the DRAM image of ``prog`` (runs of consecutive words), set ``DRAM_BASE`` to
        the transport's ``dram_base`` and ``PROG`` to the program (word 0 of the image)."""
        t = self.transport
        base = t.dram_base
        if not 0 <= base < 1 << 64:
            raise ValueError(f"the transport's dram_base must be in 0..2**64-1, not {base}")
        t.write_reg(regs.offset("DRAM_BASE_LO"), base & 0xFFFF_FFFF)
        t.write_reg(regs.offset("DRAM_BASE_HI"), base >> 32)
        for addr, words in _runs(prog.words):
            t.write_words(addr, words)
        t.write_reg(regs.offset("PROG"), 0)

    def start(self, *, irq: bool = False) -> None:
        """Start a run (CTRL.START), with CTRL.IRQ_ENABLE as ``irq``."""
        self.transport.write_reg(regs.offset("CTRL"),
                                 regs.CTRL_START | (regs.CTRL_IRQ_ENABLE if irq else 0))

    def status(self) -> int:
        """The STATUS register (`ommatidia.hw.axi_regs` STATUS_* bits)."""
        return self.transport.read_reg(regs.offset("STATUS"))

    def wait(self, timeout: float = 60.0) -> int:
        """Poll STATUS until DONE; DriverError on ERROR or AXI_ERROR, TimeoutError after
        ``timeout`` seconds of wall time. Returns the status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status & (regs.STATUS_ERROR | regs.STATUS_AXI_ERROR):
                raise DriverError(f"the accelerator reports an error (STATUS 0x{status:x})")
            if status & regs.STATUS_DONE and not status & regs.STATUS_BUSY:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"the accelerator is not done after {timeout} s "
                                   f"(STATUS 0x{status:x})")
            self.transport.pause()

    def counters(self) -> dict:
        """The performance counters by name (`ommatidia.hw.axi_regs.counter_names`), as many
        as NUM_COUNTERS says."""
        t = self.transport
        count = t.read_reg(regs.offset("NUM_COUNTERS"))
        names = regs.counter_names()
        if count > len(names):
            raise DriverError(f"NUM_COUNTERS is {count}; the driver knows {len(names)}")
        out = {}
        for k in range(count):
            lo = t.read_reg(regs.counter_offset(k))
            hi = t.read_reg(regs.counter_offset(k) + 4)
            out[names[k]] = hi << 32 | lo
        return out

    def read_ofmap(self, prog):
        """The (N, M, E, F) ofmap of ``prog`` read back from DRAM, and the words it took
        (`ommatidia.gen.program.LayerProgram.ofmap`)."""
        return prog.ofmap(self.transport.read_words)

    def run(self, prog, *, timeout: float = 60.0):
        """Load, start, wait; returns (ofmap, counters by name)."""
        self.load_program(prog)
        self.start()
        self.wait(timeout)
        counters = self.counters()
        ofmap, _ = self.read_ofmap(prog)
        return ofmap, counters
