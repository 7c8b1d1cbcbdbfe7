"""Run compiled layers on the generated `ommatidia.hw.axi.AXIAccelerator` under cocotbext-axi.

`run_axi_layers` writes the Verilog of the AXI top for a preset and data
width once, builds it under cocotb (the build is reused while the Verilog
is unchanged) and runs every `AxiJob` in the simulator
(`ommatidia.sim.tb.tb_axi`): the host driver (`ommatidia.host.driver`) loads
the image into an ``AxiRam`` at the job's DRAM base, starts the
accelerator over AXI4-Lite, waits and reads the counters and the ofmap
back. Each `AxiRun` carries them with the bursts seen on the bus and the
golden comparison.
"""

from __future__ import annotations

import pathlib
import pickle
from dataclasses import dataclass

import numpy as np

from ommatidia.sim.golden import layer_ofmap

__all__ = ["AXIRAM_READ_LATENCY", "AXIRAM_WRITE_LATENCY", "AxiJob", "AxiRun", "axi_timing",
           "run_axi_layers"]

AXIRAM_READ_LATENCY = 2
"""Cycles from an AR handshake to the first R beat of cocotbext-axi's ``AxiRam`` (0.1.28)
with no added latency, measured on the bus (`AxiRun.events`)."""
AXIRAM_WRITE_LATENCY = 2
"""Cycles from the last W beat to the B handshake of ``AxiRam``."""
AXIRAM_QUEUE = 2
"""R beats ``AxiRam``'s serial read process queues ahead (its R channel's occupancy limit)."""


@dataclass(frozen=True)
class AxiJob:
    """One layer run: its `ommatidia.gen.program.LayerProgram`, the byte address of its DRAM
    word 0, the share of cycles each AXI channel pauses, the most cycles a read burst
    waits before the RAM answers (uniform from half that, or exactly that with
    ``fixed_latency``), and the seed of both."""

    prog: object
    dram_base: int = 0
    pause: float = 0.0
    latency: int = 0
    seed: int = 1
    fixed_latency: bool = False

    def __post_init__(self):
        if self.dram_base < 0 or self.dram_base % 8:
            raise ValueError(f"AxiJob.dram_base must be a non-negative multiple of 8, not "
                             f"{self.dram_base}")
        if not 0 <= self.pause < 1:
            raise ValueError(f"AxiJob.pause must be in [0, 1), not {self.pause}")
        if self.latency < 0:
            raise ValueError(f"AxiJob.latency must be >= 0, not {self.latency}")


@dataclass
class AxiRun:
    """What a job gave: STATUS, counters by name, ofmap, bursts ``(byte address, beats)`` of
    each AR and AW handshake, R and W beats, most read bursts outstanding, ``irq``, and
    ``events``: (cycle, channel) of every AR, R, W, AW and B handshake."""

    status: int
    counters: dict
    ofmap: np.ndarray
    ar: list
    aw: list
    r_beats: int
    w_beats: int
    max_reads: int
    irq: int
    bit_exact: bool
    events: tuple = ()


def axi_timing(job: AxiJob, *, data_width: int = 64, max_burst: int = 256,
               max_reads: int = 4):
    """The `ommatidia.gen.model.DramTiming` of the AXI top (``data_width``, ``max_burst``,
    ``max_reads``) on the tests' ``AxiRam`` with ``job``'s DRAM base and its read latency
    (the mean of the random one unless ``fixed_latency``; pauses are not modelled)."""
    from ommatidia.gen.model import DramTiming
    latency = job.latency
    if latency and not job.fixed_latency:
        latency = round((latency // 2 + latency) / 2)
    return DramTiming(bus="axi", read_latency=AXIRAM_READ_LATENCY + latency,
                      write_latency=AXIRAM_WRITE_LATENCY, read_queue=AXIRAM_QUEUE,
                      word_bits=job.prog.cfg.dram_bits, data_width=data_width,
                      max_burst=max_burst, max_reads=max_reads, base=job.dram_base)


def _verilog(cfg, data_width: int, max_burst: int, build_dir: pathlib.Path) -> pathlib.Path:
    from ommatidia.gen.verilog import write
    from ommatidia.hw.axi import AXIAccelerator
    return write(AXIAccelerator(cfg, data_width=data_width, max_burst=max_burst),
                 "ommatidia_axi", build_dir)


def run_axi_layers(cfg, jobs, *, data_width: int = 64, max_burst: int = 256,
                   build_dir="build/axi", sim: str = "verilator") -> list[AxiRun]:
    """Run every `AxiJob` of ``jobs`` on the Verilog of ``cfg``'s AXI top (``data_width``
    bits, bursts of up to ``max_burst`` beats), one build."""
    from ommatidia.sim.runner import locked, run_cocotb
    for k, job in enumerate(jobs):
        if job.prog.cfg != cfg:
            raise ValueError(f"job {k} was compiled for preset {job.prog.cfg.name}, not "
                             f"{cfg.name}")
    build_dir = (pathlib.Path(build_dir).resolve()
                 / f"axi_{cfg.name}_{data_width}_b{max_burst}_{sim}")
    # Beside the build folder: run_cocotb empties it of files it does not know.
    jobs_path = build_dir.parent / f"{build_dir.name}_jobs.pkl"
    results_path = build_dir.parent / f"{build_dir.name}_results.pkl"
    with locked(build_dir):
        jobs_path.write_bytes(pickle.dumps(list(jobs)))
        results_path.unlink(missing_ok=True)
        path = _verilog(cfg, data_width, max_burst, build_dir)
        run_cocotb(path, "ommatidia_axi", "ommatidia.sim.tb.tb_axi", sim=sim,
                   build_dir=build_dir, ports_only=True,
                   env={"OMMATIDIA_AXI_JOBS": jobs_path, "OMMATIDIA_AXI_RESULTS": results_path})
        results = pickle.loads(results_path.read_bytes())
    runs = []
    for job, res in zip(jobs, results):
        exact = bool(np.array_equal(res["ofmap"], layer_ofmap(job.prog)))
        runs.append(AxiRun(res["status"], res["counters"], res["ofmap"], res["ar"], res["aw"],
                           res["r_beats"], res["w_beats"], res["max_reads"], res["irq"], exact,
                           tuple(res["events"])))
    return runs
