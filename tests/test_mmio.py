"""`MmapTransport` and the host driver against file-backed maps standing in for a SoC's
register window and DRAM window (docs/axi.md, Linux)."""

import mmap

import numpy as np
import pytest

from ommatidia.boards.mmio import MmapTransport
from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY
from ommatidia.host.driver import Driver, DriverError
from ommatidia.gen.layer import ConvLayer
from ommatidia.hw import axi_regs as regs
from ommatidia.sim.array_model import random_values

REG_BYTES, MEM_BYTES = 4096, 1 << 16


def _maps(tmp_path):
    files = []
    for name, size in (("regs", REG_BYTES), ("mem", MEM_BYTES)):
        path = tmp_path / name
        path.write_bytes(bytes(size))
        files.append(path)
    return files


def _reg(path, offset):
    return int.from_bytes(path.read_bytes()[offset:offset + 4], "little")


def _device(transport, status=regs.STATUS_DONE, counters=()):
    """What the accelerator would show: ID, STATUS, the counters."""
    transport.write_reg(regs.offset("ID"), regs.ID_VALUE)
    transport.write_reg(regs.offset("STATUS"), status)
    transport.write_reg(regs.offset("NUM_COUNTERS"), len(counters))
    for k, value in enumerate(counters):
        transport.write_reg(regs.counter_offset(k), value & 0xFFFF_FFFF)
        transport.write_reg(regs.counter_offset(k) + 4, value >> 32)


def test_registers_and_words_reach_the_files(tmp_path):
    """32-bit registers at their byte offsets, DRAM words little-endian at addr * 8, both
    visible in the files after the maps are closed; bad offsets and spans are refused."""
    regs_path, mem_path = _maps(tmp_path)
    t = MmapTransport.open(str(regs_path), 0, str(mem_path), 0, MEM_BYTES, 0x8000_0000)
    t.write_reg(0x14, 0x1234_5678)
    t.write_words(3, [0x0102_0304_0506_0708, (1 << 64) - 1])
    assert t.read_reg(0x14) == 0x1234_5678
    assert t.read_words(2, 3) == [0, 0x0102_0304_0506_0708, (1 << 64) - 1]
    for bad in (2, REG_BYTES, -4):
        with pytest.raises(ValueError, match="register offset"):
            t.read_reg(bad)
    with pytest.raises(ValueError, match="outside"):
        t.read_words(MEM_BYTES // 8 - 1, 2)
    with pytest.raises(ValueError, match="value"):
        t.write_reg(0, 1 << 32)
    t.close()
    assert _reg(regs_path, 0x14) == 0x1234_5678
    assert mem_path.read_bytes()[24:40] == bytes(range(8, 0, -1)) + b"\xff" * 8


def test_driver_over_mmap(tmp_path, seed):
    """The driver loads a compiled layer's image word for word, sets DRAM_BASE and PROG,
    starts, returns on DONE, reads 48-bit counters from two registers; ERROR, AXI_ERROR
    and a wrong ID raise DriverError."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=2, M=3, H=4, W=6, R=3, S=3, U=1, P=1)
    prog = compile_layer(TINY, layer, random_values(rng, 8, (1, 2, 4, 6), 0.3),
                         random_values(rng, 8, (3, 2, 3, 3)))
    regs_path, mem_path = _maps(tmp_path)
    with open(regs_path, "r+b") as fr, open(mem_path, "r+b") as fm:
        t = MmapTransport(mmap.mmap(fr.fileno(), 0), mmap.mmap(fm.fileno(), 0),
                          0x1_2345_6000, poll=0)
        values = [int(v) for v in rng.integers(0, 1 << 48, len(regs.counter_names()))]
        _device(t, counters=values)
        driver = Driver(t)
        driver.load_program(prog)
        assert _reg(regs_path, regs.offset("DRAM_BASE_LO")) == 0x2345_6000
        assert _reg(regs_path, regs.offset("DRAM_BASE_HI")) == 0x1
        assert t.read_words(0, max(prog.words) + 1) == [prog.words.get(a, 0)
                                                        for a in range(max(prog.words) + 1)]
        driver.start(irq=True)
        assert _reg(regs_path, regs.offset("CTRL")) == regs.CTRL_START | regs.CTRL_IRQ_ENABLE
        assert driver.wait(timeout=1) == regs.STATUS_DONE
        assert driver.counters() == dict(zip(regs.counter_names(), values))
        for bad in (regs.STATUS_ERROR, regs.STATUS_AXI_ERROR):
            t.write_reg(regs.offset("STATUS"), bad)
            with pytest.raises(DriverError, match="error"):
                driver.wait(timeout=1)
        t.write_reg(regs.offset("STATUS"), regs.STATUS_BUSY)
        with pytest.raises(TimeoutError):
            driver.wait(timeout=0.01)
        t.write_reg(regs.offset("ID"), 0)
        with pytest.raises(DriverError, match="ID"):
            Driver(t)
        t.close()
