"""The AXI top's registers and DRAM through ``mmap``: the driver's transport on a Linux SoC.

On a Zynq, a LiteX SoC with Linux or any SoC that maps
`ommatidia.hw.axi.AXIAccelerator`'s AXI4-Lite port into the CPU's address
space, `MmapTransport` gives `ommatidia.host.driver.Driver` the registers
(a UIO device's map 0, or ``/dev/mem`` at the port's physical address) and
the DRAM window the accelerator reads and writes (memory set aside for it,
e.g. a ``reserved-memory`` node, through ``/dev/mem`` or a UIO map): see
docs/axi.md. Registers are read and written as aligned 32-bit words, never
byte by byte.
"""

from __future__ import annotations

import mmap
import os
import time

from ommatidia.gen.config import check_int

__all__ = ["MmapTransport"]


class MmapTransport:
    """Driver transport over two buffers: ``regs`` (the register window) and ``mem`` (the DRAM
    window, whose byte 0 is bus address ``dram_base``).

    Parameters
    ----------
    regs, mem
        Writable buffers, ``mmap.mmap`` objects on a device or on files.
    dram_base : int
        Bus byte address of ``mem[0]``, written to ``DRAM_BASE``.
    word_bits : int
        The accelerator's DRAM word (``ArrayConfig.dram_bits``).
    poll : float
        Seconds between two status polls.
    """

    def __init__(self, regs, mem, dram_base: int, *, word_bits: int = 64, poll: float = 1e-4):
        check_int("MmapTransport", "dram_base", dram_base, 0, (1 << 64) - 1)
        check_int("MmapTransport", "word_bits", word_bits, 8, 1024)
        if word_bits % 8:
            raise ValueError(f"MmapTransport.word_bits must be a multiple of 8, not {word_bits}")
        self._regs = memoryview(regs).cast("B").cast("I")
        self._mem = memoryview(mem).cast("B")
        self.dram_base = dram_base
        self.word_bytes = word_bits // 8
        self.poll = poll
        self._maps = []

    @classmethod
    def open(cls, regs_path: str, regs_offset: int, mem_path: str, mem_offset: int,
             mem_bytes: int, dram_base: int, *, regs_bytes: int = 4096, **kwargs):
        """Map ``regs_bytes`` of ``regs_path`` at ``regs_offset`` and ``mem_bytes`` of
        ``mem_path`` at ``mem_offset`` (page multiples), e.g. ``/dev/uio0`` at 0 and
        ``/dev/mem`` at the reserved memory's physical address."""
        maps = []
        for path, offset, size in ((regs_path, regs_offset, regs_bytes),
                                   (mem_path, mem_offset, mem_bytes)):
            fd = os.open(path, os.O_RDWR | os.O_SYNC)
            try:
                maps.append(mmap.mmap(fd, size, mmap.MAP_SHARED,
                                      mmap.PROT_READ | mmap.PROT_WRITE, offset=offset))
            finally:
                os.close(fd)
        transport = cls(maps[0], maps[1], dram_base, **kwargs)
        transport._maps = maps
        return transport

    def _reg_index(self, offset: int) -> int:
        if offset % 4 or not 0 <= offset < 4 * len(self._regs):
            raise ValueError(f"register offset must be a multiple of 4 below "
                             f"{4 * len(self._regs)}, not {offset}")
        return offset // 4

    def read_reg(self, offset: int) -> int:
        return self._regs[self._reg_index(offset)]

    def write_reg(self, offset: int, value: int) -> None:
        check_int("MmapTransport.write_reg", "value", value, 0, (1 << 32) - 1)
        self._regs[self._reg_index(offset)] = value

    def _span(self, addr: int, n: int) -> slice:
        wb = self.word_bytes
        if addr < 0 or n < 0 or (addr + n) * wb > len(self._mem):
            raise ValueError(f"DRAM words {addr}..{addr + n - 1} are outside the "
                             f"{len(self._mem) // wb}-word window")
        return slice(addr * wb, (addr + n) * wb)

    def read_words(self, addr: int, n: int) -> list:
        raw = bytes(self._mem[self._span(addr, n)])
        wb = self.word_bytes
        return [int.from_bytes(raw[k:k + wb], "little") for k in range(0, len(raw), wb)]

    def write_words(self, addr: int, words) -> None:
        words = list(words)
        wb = self.word_bytes
        self._mem[self._span(addr, len(words))] = b"".join(
            int(w).to_bytes(wb, "little") for w in words)

    def pause(self) -> None:
        time.sleep(self.poll)

    def close(self) -> None:
        """Release the views and the maps `open` made."""
        self._regs.release()
        self._mem.release()
        for m in self._maps:
            m.close()
