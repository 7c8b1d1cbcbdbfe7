"""The accelerator with its DRAM: a behavioural (or on-chip) DRAM and a host port.

`System` puts the `Accelerator` beside a DRAM of ``dram_words`` words
(`amaranth.lib.memory`, so it is block RAM on an FPGA and an array in a
simulator) and gives a host the DRAM and the run: writes and reads of DRAM
words while the accelerator is idle, ``start``, ``status`` and the counters.
A simulation testbench loads the program image through ``mem_w``, pulses
``start`` and waits for ``done``: the whole layer runs inside the simulator.
The UART bridge of a board (`ommatidia.hw.bridge`) drives the same port.

With ``stall_rate`` non-zero a 16-bit LFSR seeded with ``stall_seed`` at
``start`` refuses DRAM read requests, withholds read responses and refuses
writes, each on a cycle with probability ``stall_rate / 256``, so tests
exercise every back-pressure path of the DMA and the program fetch.
"""

from __future__ import annotations

from types import SimpleNamespace as _Port

from amaranth import Cat, ClockSignal, Instance, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import ArrayConfig

from .dma import dram_write_layout
from .top import COUNTERS, Accelerator

__all__ = ["System", "DRAM_WORDS", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR", "DRAM_MODULE",
           "dram_verilog"]

STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1, 2, 4
"""Bits of `System.status`."""

DRAM_MODULE = "ommatidia_sim_dram"


def dram_verilog() -> str:
    """The Verilog of the DRAM a ``verilog_dram`` `System` instantiates: the same ports and
    timing as an `amaranth.lib.memory.Memory` with one synchronous, non-transparent read
    port and one write port, zeroed by a loop rather than by one initial value per word
    as Amaranth writes them (which a DRAM of millions of words cannot afford)."""
    return f"""
module {DRAM_MODULE} #(parameter WORDS = 1024, parameter ABITS = 10, parameter WIDTH = 64) (
  input clk,
  input rd_en, input [ABITS-1:0] rd_addr, output reg [WIDTH-1:0] rd_data,
  input wr_en, input [ABITS-1:0] wr_addr, input [WIDTH-1:0] wr_data);
  reg [WIDTH-1:0] mem [0:WORDS-1];
  integer i;
  initial for (i = 0; i < WORDS; i = i + 1) mem[i] = {{WIDTH{{1'b0}}}};
  always @(posedge clk) begin
    if (rd_en) rd_data <= mem[rd_addr];
    if (wr_en) mem[wr_addr] <= wr_data;
  end
endmodule
"""


DRAM_WORDS = 1 << 16
"""Default depth of the behavioural DRAM in 64-bit words (512 KiB)."""


class System(wiring.Component):
    """`Accelerator` + DRAM + host port.

    Parameters
    ----------
    cfg : ArrayConfig
    dram_words : int
        DRAM depth in ``dram_bits`` words; addresses wrap modulo the depth.
    verilog_dram : bool
        Instantiate the DRAM as `DRAM_MODULE` (its Verilog: `dram_verilog`) instead of an
        `amaranth.lib.memory.Memory`, for simulating large DRAMs.

    Members
    -------
    mem_w : In(stream of dram_write_layout(cfg))
        Host DRAM writes; taken while the accelerator is idle.
    mem_raddr : In(stream of unsigned(cfg.dram_addr_bits))
    mem_rdata : Out(stream of unsigned(dram_bits))
        Host DRAM reads, while the accelerator is idle; one response per request, in order.
    start : In(1)
        Runs the program at DRAM word 0.
    status : Out(8)
        ``STATUS_BUSY | STATUS_DONE | STATUS_ERROR`` bits.
    stall_rate : In(8), stall_seed : In(16)
        DRAM stall probability in 1/256 and the LFSR seed (latched at ``start``).
    counters : Out(ArrayLayout(unsigned(64), len(COUNTERS)))
    """

    def __init__(self, cfg: ArrayConfig, dram_words: int, *, verilog_dram: bool = False):
        if isinstance(dram_words, bool) or not isinstance(dram_words, int) or \
                not 1 <= dram_words <= 1 << 22:
            raise ValueError(f"dram_words must be an integer in 1..{1 << 22}, not {dram_words!r}")
        self._cfg = cfg
        self._dram_words = dram_words
        self._verilog_dram = verilog_dram
        self._accel = Accelerator(cfg)
        self._dram = None if verilog_dram else Memory(
            shape=unsigned(cfg.dram_bits), depth=dram_words, init=[])
        super().__init__({
            "mem_w": In(stream.Signature(dram_write_layout(cfg))),
            "mem_raddr": In(stream.Signature(unsigned(cfg.dram_addr_bits))),
            "mem_rdata": Out(stream.Signature(unsigned(cfg.dram_bits))),
            "start": In(1),
            "status": Out(8),
            "stall_rate": In(8),
            "stall_seed": In(16),
            "counters": Out(data.ArrayLayout(unsigned(64), len(COUNTERS))),
        })

    @property
    def dram_words(self) -> int:
        return self._dram_words

    @property
    def dram(self) -> Memory | None:
        """The behavioural DRAM (None with ``verilog_dram``); a testbench may read and write
        its ``data`` directly instead of through the host port."""
        return self._dram

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.accel = acc = self._accel
        abits = max(1, (self._dram_words - 1).bit_length())
        if self._verilog_dram:
            rd = _Port(addr=Signal(abits), en=Signal(), data=Signal(cfg.dram_bits))
            wr = _Port(addr=Signal(abits), en=Signal(), data=Signal(cfg.dram_bits))
            m.submodules.dram = Instance(
                DRAM_MODULE, p_WORDS=self._dram_words, p_ABITS=abits, p_WIDTH=cfg.dram_bits,
                i_clk=ClockSignal(), i_rd_en=rd.en, i_rd_addr=rd.addr, o_rd_data=rd.data,
                i_wr_en=wr.en, i_wr_addr=wr.addr, i_wr_data=wr.data)
        else:
            m.submodules.dram = dram = self._dram
            rd, wr = dram.read_port(), dram.write_port()

        lfsr = Signal(16, init=1)
        with m.If(self.start & ~acc.busy):
            m.d.sync += lfsr.eq(self.stall_seed | ~self.stall_seed.any())
        with m.Else():
            m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
        stall = [Signal(name=f"stall_{k}") for k in range(3)]
        for k, s in enumerate(stall):
            byte = Signal(8, name=f"lfsr_byte_{k}")
            m.d.comb += [byte.eq(Cat(lfsr[(k * 5 + j) % 16] for j in range(8))),
                         s.eq(acc.busy & (byte < self.stall_rate))]

        host = ~acc.busy
        m.d.comb += [acc.start.eq(self.start), acc.prog.eq(0),
                     self.status.eq(Cat(acc.busy, acc.done, acc.error))]

        resp_valid = Signal()
        resp_ready = Signal()
        req_valid, req_addr, req_ready = Signal(), Signal(cfg.dram_addr_bits), Signal()
        with m.If(host):
            m.d.comb += [req_valid.eq(self.mem_raddr.valid), req_addr.eq(self.mem_raddr.payload),
                         self.mem_raddr.ready.eq(req_ready),
                         self.mem_rdata.valid.eq(resp_valid), self.mem_rdata.payload.eq(rd.data),
                         resp_ready.eq(self.mem_rdata.ready)]
        with m.Else():
            m.d.comb += [req_valid.eq(acc.dram_addr.valid), req_addr.eq(acc.dram_addr.payload),
                         acc.dram_addr.ready.eq(req_ready),
                         acc.dram_data.valid.eq(resp_valid & ~stall[1]),
                         acc.dram_data.payload.eq(rd.data),
                         resp_ready.eq(acc.dram_data.ready & ~stall[1])]
        taken = resp_valid & resp_ready
        m.d.comb += [req_ready.eq((~resp_valid | taken) & ~stall[0]),
                     rd.addr.eq(req_addr[:abits]), rd.en.eq(req_valid & req_ready)]
        with m.If(req_valid & req_ready):
            m.d.sync += resp_valid.eq(1)
        with m.Elif(taken):
            m.d.sync += resp_valid.eq(0)

        with m.If(host):
            m.d.comb += [wr.addr.eq(self.mem_w.payload.addr[:abits]),
                         wr.data.eq(self.mem_w.payload.data),
                         wr.en.eq(self.mem_w.valid), self.mem_w.ready.eq(1)]
        with m.Else():
            m.d.comb += [wr.addr.eq(acc.dram_w.payload.addr[:abits]),
                         wr.data.eq(acc.dram_w.payload.data),
                         wr.en.eq(acc.dram_w.valid & ~stall[2]),
                         acc.dram_w.ready.eq(~stall[2])]
        for i in range(len(COUNTERS)):
            m.d.comb += self.counters[i].eq(acc.counters[i])
        return m
