"""cocotb testbench of the generated `ommatidia.hw.axi.AXIAccelerator` with cocotbext-axi.

cocotbext-axi's ``AxiRam`` is the DRAM on ``m_axi_*`` and ``AxiLiteMaster``
the host on ``s_axil_*``; `ommatidia.host.driver.Driver` runs each job of the
pickled list named by OMMATIDIA_AXI_JOBS (`ommatidia.sim.axi_run.AxiJob`)
through `AxiTransport`, in a thread bridged to the simulator
(``cocotb.task.bridge``; each register access resumes the simulation until
it completes). A job may pause every AXI channel, the RAM's and the
host's, on a random share of the cycles (cocotbext-axi's pause generators)
and delay each read burst by a random ``latency // 2`` to ``latency``
cycles before the RAM answers it. A monitor records every AR and AW burst, counts R and W beats
and tracks the read bursts outstanding. Results go, pickled, to
OMMATIDIA_AXI_RESULTS; checking them is the caller's job.
"""

import os
import pickle
import random
import warnings

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from ommatidia.host.driver import Driver

# cocotbext-axi 0.1.28 uses cocotb APIs that cocotb 2 deprecates (Event.data, task.kill, ...).
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")

POLL_CYCLES = 64
RAM_BYTES = 1 << 20


class AxiTransport:
    """The driver's transport: registers through ``AxiLiteMaster``, DRAM words straight into
    the ``AxiRam``'s memory at ``dram_base``. Call it from a bridged thread."""

    def __init__(self, tb, dram_base: int, word_bits: int):
        self.tb = tb
        self.dram_base = dram_base
        self.word_bytes = word_bits // 8

    def read_reg(self, offset: int) -> int:
        return resume(self.tb.axil.read_dword)(offset)

    def write_reg(self, offset: int, value: int) -> None:
        resume(self.tb.axil.write_dword)(offset, value)

    def read_words(self, addr: int, n: int) -> list:
        wb = self.word_bytes
        raw = self.tb.ram.read(self.dram_base + addr * wb, n * wb)
        return [int.from_bytes(raw[k:k + wb], "little") for k in range(0, len(raw), wb)]

    def write_words(self, addr: int, words) -> None:
        wb = self.word_bytes
        raw = b"".join(int(w).to_bytes(wb, "little") for w in words)
        self.tb.ram.write(self.dram_base + addr * wb, raw)

    def pause(self) -> None:
        resume(self.tb.cycles)(POLL_CYCLES)


def _pauses(rng: random.Random, share: float):
    while True:
        yield rng.random() < share


class TB:
    """Clock, reset, the RAM, the host and the bus monitor."""

    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=RAM_BYTES)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.latency = 0
        self.fixed = False
        self.rng = random.Random(1)
        recv = self.ram.read_if.ar_channel.recv

        async def delayed_recv():
            ar = await recv()
            if self.latency:
                await ClockCycles(dut.clk, self.latency if self.fixed
                                  else self.rng.randint(self.latency // 2, self.latency))
            return ar
        self.ram.read_if.ar_channel.recv = delayed_recv
        level = os.environ.get("OMMATIDIA_AXI_LOG", "WARNING")
        self.ram.read_if.log.setLevel(level)
        self.ram.write_if.log.setLevel(level)
        self.axil.read_if.log.setLevel("WARNING")
        self.axil.write_if.log.setLevel("WARNING")
        self.clear_stats()
        cocotb.start_soon(self._monitor())

    async def cycles(self, n: int) -> None:
        await ClockCycles(self.dut.clk, n)

    async def reset(self):
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def configure(self, pause: float, latency: int, seed: int, fixed: bool = False) -> None:
        """Pauses on every channel with probability ``pause``; read bursts delayed by
        ``latency // 2`` to ``latency`` cycles, or by ``latency`` when ``fixed``."""
        self.rng = random.Random(seed)
        self.latency, self.fixed = latency, fixed
        channels = [self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                    self.ram.read_if.r_channel, self.axil.write_if.aw_channel,
                    self.axil.write_if.w_channel, self.axil.write_if.b_channel,
                    self.axil.read_if.ar_channel, self.axil.read_if.r_channel]
        for k, channel in enumerate(channels):
            channel.set_pause_generator(_pauses(random.Random(seed * 31 + k), pause)
                                        if pause else None)
            if not pause:
                # Clearing the generator leaves a channel paused if it was (cocotbext-axi
                # 0.1.28, StreamPause.set_pause_generator).
                channel.pause = False

    def clear_stats(self) -> None:
        self.stats = {"ar": [], "aw": [], "r_beats": 0, "w_beats": 0, "max_reads": 0,
                      "events": []}
        self._reads = 0

    async def _monitor(self):
        """Every AR and AW burst (address, beats), R and W beats, most reads outstanding, and
        the cycle of each handshake (``events``: (cycle, channel) for "ar", "r", "aw", "w",
        "b")."""
        dut, s, cycle = self.dut, None, 0
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            cycle += 1
            s = self.stats
            if dut.m_axi_arvalid.value and dut.m_axi_arready.value:
                s["ar"].append((int(dut.m_axi_araddr.value), int(dut.m_axi_arlen.value) + 1))
                s["events"].append((cycle, "ar"))
                self._reads += 1
                s["max_reads"] = max(s["max_reads"], self._reads)
            if dut.m_axi_rvalid.value and dut.m_axi_rready.value:
                s["r_beats"] += 1
                s["events"].append((cycle, "r"))
                if dut.m_axi_rlast.value:
                    self._reads -= 1
            if dut.m_axi_awvalid.value and dut.m_axi_awready.value:
                s["aw"].append((int(dut.m_axi_awaddr.value), int(dut.m_axi_awlen.value) + 1))
                s["events"].append((cycle, "aw"))
            if dut.m_axi_wvalid.value and dut.m_axi_wready.value:
                s["w_beats"] += 1
                s["events"].append((cycle, "w"))
            if dut.m_axi_bvalid.value and dut.m_axi_bready.value:
                s["events"].append((cycle, "b"))


def _run_job(transport, job):
    """The driver's session, in the bridged thread."""
    driver = Driver(transport)
    driver.load_program(job.prog)
    driver.start(irq=True)
    status = driver.wait(timeout=600)
    counters = driver.counters()
    ofmap, coded = driver.read_ofmap(job.prog)
    return status, counters, ofmap, coded


@cocotb.test()
async def layers(dut):
    """Every job of OMMATIDIA_AXI_JOBS, one after another, on one build."""
    with open(os.environ["OMMATIDIA_AXI_JOBS"], "rb") as fp:
        jobs = pickle.load(fp)
    tb = TB(dut)
    await tb.reset()
    results = []
    for job in jobs:
        wb = job.prog.cfg.dram_bits // 8
        tb.ram.write(job.dram_base, bytes(job.prog.dram_words * wb))
        tb.configure(job.pause, job.latency, job.seed, job.fixed_latency)
        tb.clear_stats()
        transport = AxiTransport(tb, job.dram_base, job.prog.cfg.dram_bits)
        status, counters, ofmap, coded = await bridge(_run_job)(transport, job)
        await ReadOnly()
        irq = int(dut.irq.value)
        await RisingEdge(dut.clk)
        results.append({"status": status, "counters": counters, "ofmap": ofmap,
                        "coded": coded, "irq": irq, **tb.stats})
        dut._log.info(f"job {len(results)}/{len(jobs)}: status {status}, "
                      f"{counters['cycles']} cycles, {len(tb.stats['ar'])} read and "
                      f"{len(tb.stats['aw'])} write bursts")
    with open(os.environ["OMMATIDIA_AXI_RESULTS"], "wb") as fp:
        pickle.dump(results, fp)
