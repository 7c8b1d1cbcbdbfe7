"""The register map of the AXI4-Lite control port of `ommatidia.hw.axi.AXIAccelerator`.

One definition, read by the hardware (`ommatidia.hw.axi`), by the generated C
header and Python module (`ommatidia.gen.regmap`), by the host driver
(`ommatidia.host.driver`) and by docs/axi.md. Registers are 32 bits wide at
byte offsets; the performance counters follow at `COUNTER_BASE`, two
registers each (low word, then high word), in the order of `counter_names`.
Plain Python: no hardware is built here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Register", "REGISTERS", "ID_VALUE", "CTRL_START", "CTRL_IRQ_ENABLE", "STATUS_BUSY",
           "STATUS_DONE", "STATUS_ERROR", "STATUS_AXI_ERROR", "COUNTER_BASE", "AXI_COUNTERS",
           "ADDR_BITS", "offset", "counter_names", "counter_offset", "config_value"]


@dataclass(frozen=True)
class Register:
    """One 32-bit register: name, byte offset, access (``r``, ``w``, ``rw``), description."""

    name: str
    offset: int
    access: str
    doc: str

    def __post_init__(self):
        if self.access not in ("r", "w", "rw"):
            raise ValueError(f"Register {self.name}: access must be r, w or rw, not "
                             f"{self.access!r}")
        if self.offset % 4 or not 0 <= self.offset < COUNTER_BASE:
            raise ValueError(f"Register {self.name}: offset must be a multiple of 4 below "
                             f"0x{COUNTER_BASE:x}, not 0x{self.offset:x}")


ID_VALUE = 0x4F4D4D41
"""Value of ``ID``: ASCII 'OMMA'."""

CTRL_START, CTRL_IRQ_ENABLE = 1 << 0, 1 << 1
"""Bits of ``CTRL``: a write with START set starts a run (ignored while busy);
IRQ_ENABLE (kept) lets ``irq`` follow STATUS DONE | ERROR."""

STATUS_BUSY, STATUS_DONE, STATUS_ERROR, STATUS_AXI_ERROR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
"""Bits of ``STATUS``. BUSY: a run, or a DRAM write it left, is under way. DONE: the
program reached ``DONE`` and every write has its response. ERROR: the controller stopped
on a bad command or RLC stream (docs/program.md). AXI_ERROR: a read or write response
was not OKAY (the run goes on). All but BUSY hold until the next start."""

COUNTER_BASE = 0x100
"""Byte offset of the first counter's low word; counter ``k`` is at ``COUNTER_BASE + 8 k``."""

ADDR_BITS = 12
"""Width of ``s_axil_awaddr`` / ``s_axil_araddr``: a 4 KiB window."""

REGISTERS = (
    Register("ID", 0x00, "r", f"0x{ID_VALUE:08X} (ASCII 'OMMA')"),
    Register("CONFIG", 0x04, "r", "bits 7..0 PE rows, 15..8 PE columns, 23..16 DRAM word "
                                  "bytes, 31..24 AXI data bytes"),
    Register("CTRL", 0x08, "rw", "bit 0 START (write 1: start, when not busy; reads 0), "
                                 "bit 1 IRQ_ENABLE"),
    Register("STATUS", 0x0C, "r", "bit 0 BUSY, 1 DONE, 2 ERROR, 3 AXI_ERROR"),
    Register("PROG", 0x10, "rw", "DRAM word address of the program, relative to DRAM_BASE"),
    Register("DRAM_BASE_LO", 0x14, "rw", "byte address of DRAM word 0, bits 31..0 (the "
                                         "low bits below a DRAM word read 0)"),
    Register("DRAM_BASE_HI", 0x18, "rw", "bits 63..32 of DRAM_BASE (used up to the AXI "
                                         "address width)"),
    Register("NUM_COUNTERS", 0x1C, "r", "number of counters at COUNTER_BASE"),
    Register("COUNTER_BITS", 0x20, "r", "width of the counters (they wrap); 0: no counters"),
)
"""The registers below `COUNTER_BASE`; other offsets read 0 and ignore writes."""

AXI_COUNTERS = ("axi_read_bursts", "axi_read_beats", "axi_write_bursts", "axi_write_beats",
                "axi_read_wait_cycles")
"""Counters of the AXI4 master, after the accelerator's: AR and AW handshakes, R and W
beats, and cycles with a read burst outstanding and no R beat offered (the DRAM's read
latency as the accelerator sees it). They restart at start and count until BUSY falls."""


def offset(name: str) -> int:
    """Byte offset of register ``name``."""
    for reg in REGISTERS:
        if reg.name == name:
            return reg.offset
    raise ValueError(f"no register {name!r}; the registers are "
                     f"{', '.join(r.name for r in REGISTERS)}")


def counter_names() -> tuple:
    """The accelerator's counters (`ommatidia.hw.top.COUNTERS`) then `AXI_COUNTERS`."""
    from .top import COUNTERS
    return tuple(COUNTERS) + AXI_COUNTERS


def counter_offset(index: int) -> int:
    """Byte offset of the low word of counter ``index``; the high word is 4 bytes on."""
    return COUNTER_BASE + 8 * index


def config_value(rows: int, cols: int, word_bits: int, data_width: int) -> int:
    """The value of ``CONFIG``."""
    return rows | cols << 8 | (word_bits // 8) << 16 | (data_width // 8) << 24
