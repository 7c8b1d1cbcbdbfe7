"""The accelerator on standard buses: an AXI4 master for DRAM, an AXI4-Lite slave for control.

`AXIAccelerator` wraps `ommatidia.hw.top.Accelerator`: its DRAM port goes
through `ommatidia.hw.axi_master.AXI4Master` (INCR bursts, 4 KiB splits,
several reads outstanding) to the ``m_axi_*`` ports, and a host reaches its
start, status, program address, DRAM base and performance counters through
the ``s_axil_*`` ports, at the offsets of `ommatidia.hw.axi_regs`
(docs/axi.md). The ports are flat, so the Verilog names them exactly
``m_axi_arvalid``, ``s_axil_awaddr``, ...: what cocotbext-axi's
``AxiBus.from_prefix(dut, "m_axi")`` and SoC integrators connect by name.
Clock ``clk``, reset ``rst`` (active high, synchronous); ``irq`` is high while
``CTRL.IRQ_ENABLE`` and STATUS DONE or ERROR.

The AXI4-Lite slave takes a write when address and data are both valid and
answers OKAY one cycle later; a read answers in the cycle after its address.
Registers other than those listed read 0 and ignore writes. Counters are
``ArrayConfig.counter_bits`` wide, read as two registers (low word first);
they hold after a run, so reads after DONE are consistent.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from . import axi_regs as regs
from .axi_master import AXI4Master, axi4_members
from .top import COUNTERS, Accelerator

__all__ = ["AXIAccelerator", "axil_members"]


def axil_members(addr_width: int = regs.ADDR_BITS, prefix: str = "s_axil") -> dict:
    """The flat ports of a 32-bit AXI4-Lite slave, ``<prefix>_<signal>`` (``In`` = from the
    master)."""
    sig = {
        "awaddr": In(addr_width), "awprot": In(3), "awvalid": In(1), "awready": Out(1),
        "wdata": In(32), "wstrb": In(4), "wvalid": In(1), "wready": Out(1),
        "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
        "araddr": In(addr_width), "arprot": In(3), "arvalid": In(1), "arready": Out(1),
        "rdata": Out(32), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
    }
    return {f"{prefix}_{name}": member for name, member in sig.items()}


class AXIAccelerator(wiring.Component):
    """`Accelerator` + AXI4 DRAM master + AXI4-Lite control slave.

    Parameters
    ----------
    cfg : ArrayConfig
    data_width : int
        AXI4 data width: ``cfg.dram_bits`` times a power of two (64 or 128 with 64-bit
        words).
    addr_width : int
        AXI4 address width, 12 to 64.
    max_burst : int
        Most beats of a burst, 1 to 256.
    max_reads : int
        Most read bursts outstanding, 1 to 16.

    Members
    -------
    m_axi_* : the AXI4 master port (`ommatidia.hw.axi_master.axi4_members`)
    s_axil_* : the AXI4-Lite slave port (`axil_members`)
    irq : Out(1)
    """

    def __init__(self, cfg: ArrayConfig, *, data_width: int = 64, addr_width: int = 32,
                 max_burst: int = 256, max_reads: int = 4):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"AXIAccelerator takes an ArrayConfig, not {cfg!r}")
        self._cfg = cfg
        # The master issues a read burst only once every write has its response, so a
        # DMA_IN beside a draining DMA_OUT would wait for it burst by burst: DMA_OUT runs
        # in the foreground here (docs/program.md).
        self._accel = Accelerator(cfg, overlap=False)
        self._master = AXI4Master(cfg.dram_bits, cfg.dram_addr_bits, data_width=data_width,
                                  addr_width=addr_width, max_burst=max_burst,
                                  max_reads=max_reads)
        self._data_width, self._addr_width = data_width, addr_width
        super().__init__({**axi4_members(data_width, addr_width), **axil_members(),
                          "irq": Out(1)})

    @property
    def data_width(self) -> int:
        return self._data_width

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.accel = acc = self._accel
        m.submodules.master = mst = self._master
        wiring.connect(m, acc.dram_addr, mst.rd_addr)
        wiring.connect(m, mst.rd_data, acc.dram_data)
        m.d.comb += [mst.wr.valid.eq(acc.dram_w.valid), acc.dram_w.ready.eq(mst.wr.ready),
                     mst.wr.payload.addr.eq(acc.dram_w.payload.addr),
                     mst.wr.payload.data.eq(acc.dram_w.payload.data)]
        for name, member in axi4_members(self._data_width, self._addr_width).items():
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(getattr(mst, name))
            else:
                m.d.comb += getattr(mst, name).eq(getattr(self, name))

        ctrl_irq = Signal()
        prog = Signal(cfg.dram_addr_bits)
        base = Signal(64)
        busy = Signal()
        start = Signal()
        m.d.comb += [busy.eq(acc.busy | mst.pending), acc.prog.eq(prog),
                     acc.start.eq(start & ~busy), mst.base.eq(base),
                     mst.flush.eq(~acc.busy), mst.clear.eq(start & ~busy)]
        status = Signal(4)
        m.d.comb += status.eq(Cat(busy, acc.done & ~mst.pending, acc.error, mst.error))
        m.d.comb += self.irq.eq(ctrl_irq & (status[1] | status[2]))

        counters = self._counters(m, acc, mst, start & ~busy, busy)
        values = {
            "ID": Const(regs.ID_VALUE, 32),
            "CONFIG": Const(regs.config_value(cfg.rows, cfg.cols, cfg.dram_bits,
                                              self._data_width), 32),
            "CTRL": Cat(Const(0, 1), ctrl_irq),
            "STATUS": status,
            "PROG": prog,
            "DRAM_BASE_LO": base[:32],
            "DRAM_BASE_HI": base[32:],
            "NUM_COUNTERS": Const(len(counters), 32),
            "COUNTER_BITS": Const(cfg.counter_bits, 32),
        }
        self._read_port(m, values, counters)
        writes = {"CTRL": (start, ctrl_irq), "PROG": prog, "DRAM_BASE_LO": base[:32],
                  "DRAM_BASE_HI": base[32:self._addr_width] if self._addr_width > 32 else None}
        self._write_port(m, writes)
        return m

    def _counters(self, m, acc, mst, start, busy) -> list:
        """The accelerator's counters, then the master's (`ommatidia.hw.axi_regs.AXI_COUNTERS`),
        each ``counter_bits`` wide (none when 0: they read 0)."""
        bits = self._cfg.counter_bits
        out = [acc.counters[i] for i in range(len(COUNTERS))]
        events = {"axi_read_bursts": mst.ar_fire, "axi_read_beats": mst.r_fire,
                  "axi_write_bursts": mst.aw_fire, "axi_write_beats": mst.w_fire,
                  "axi_read_wait_cycles": mst.read_wait}
        for name in regs.AXI_COUNTERS:
            count = Signal(max(bits, 1), name=f"count_{name}")
            if bits:
                with m.If(start):
                    m.d.sync += count.eq(0)
                with m.Elif(busy):
                    m.d.sync += count.eq(count + events[name])
            out.append(count if bits else Const(0, 1))
        return out

    def _read_port(self, m, values: dict, counters: list) -> None:
        """AXI4-Lite reads: address taken when no answer waits, data one cycle later."""
        ar_ok = self.s_axil_arvalid & ~self.s_axil_rvalid
        m.d.comb += [self.s_axil_arready.eq(~self.s_axil_rvalid), self.s_axil_rresp.eq(0)]
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        with m.If(ar_ok):
            m.d.sync += [self.s_axil_rvalid.eq(1), self.s_axil_rdata.eq(0)]
            word = self.s_axil_araddr[2:]
            with m.Switch(word):
                for reg in regs.REGISTERS:
                    if reg.access != "w":
                        with m.Case(reg.offset // 4):
                            m.d.sync += self.s_axil_rdata.eq(values[reg.name])
                for k, value in enumerate(counters):
                    lo = regs.counter_offset(k) // 4
                    with m.Case(lo):
                        m.d.sync += self.s_axil_rdata.eq(value[:32])
                    with m.Case(lo + 1):
                        m.d.sync += self.s_axil_rdata.eq(value[32:] if len(value) > 32 else 0)

    def _write_port(self, m, writes: dict) -> None:
        """AXI4-Lite writes: address and data taken together, OKAY one cycle later; byte
        strobes honoured; CTRL's START is a one-cycle pulse."""
        take = self.s_axil_awvalid & self.s_axil_wvalid & ~self.s_axil_bvalid
        m.d.comb += [self.s_axil_awready.eq(take), self.s_axil_wready.eq(take),
                     self.s_axil_bresp.eq(0)]
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        with m.If(take):
            m.d.sync += self.s_axil_bvalid.eq(1)
        word = self.s_axil_awaddr[2:]
        start, ctrl_irq = writes["CTRL"]
        with m.If(take):
            with m.Switch(word):
                with m.Case(regs.offset("CTRL") // 4):
                    with m.If(self.s_axil_wstrb[0]):
                        m.d.comb += start.eq(self.s_axil_wdata[0])
                        m.d.sync += ctrl_irq.eq(self.s_axil_wdata[1])
                for name in ("PROG", "DRAM_BASE_LO", "DRAM_BASE_HI"):
                    target = writes[name]
                    if target is None:
                        continue
                    with m.Case(regs.offset(name) // 4):
                        for k in range(4):
                            if 8 * k >= len(target):
                                break
                            with m.If(self.s_axil_wstrb[k]):
                                m.d.sync += target[8 * k:8 * k + 8].eq(
                                    self.s_axil_wdata[8 * k:8 * k + 8])
