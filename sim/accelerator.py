"""Run compiled layers (`ommatidia.gen.program.LayerProgram`) on the generated Verilog.

`run_layers` writes the Verilog of a `ommatidia.hw.system.System` for the
preset once, builds it under cocotb (Verilator or Icarus; the build is
reused while the Verilog is unchanged) and runs every layer inside the
simulator (`ommatidia.sim.tb.tb_system`). Each result carries the ofmap read
back from DRAM, the hardware counters, the golden comparison and a report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import pathlib
import re
import shutil
from dataclasses import dataclass

import numpy as np

from ommatidia.hw.system import DRAM_WORDS
from ommatidia.sim.array_model import layer_gated_macs
from ommatidia.sim.golden import layer_ofmap

__all__ = ["DRAM_WORDS", "PROGRESS", "LayerRun", "check_counters", "run_layers", "report",
           "hardware_conv", "input_coding"]


@dataclass
class LayerRun:
    """What one layer's run gave: ofmap, counters, status bits and the report."""

    ofmap: np.ndarray | None
    counters: dict
    status: int
    report: dict
    interrupted: dict | None = None
    loaded: dict | None = None
    """With ``verify_load``: the DRAM image's words read back after the load, in address
    order, through the host port (``"port"``) and by the harness's dump (``"bulk"``)."""

    @property
    def bit_exact(self) -> bool:
        return bool(self.report["bit_exact"])


def report(prog, counters: dict, ofmap_words: int, bit_exact: bool) -> dict:
    """The JSON report of a run: layer, mapping, counters and derived figures."""
    cfg, layer = prog.cfg, prog.layer
    peak = cfg.macs_per_cycle
    ofmap_values = layer.N * layer.M * layer.E * layer.F
    out = {
        "preset": cfg.name,
        "layer": {k: getattr(layer, k) for k in ("N", "C", "M", "H", "W", "R", "S", "U", "P")},
        "E": layer.E, "F": layer.F,
        "mapping": {**prog.mapping.describe(layer), "passes": prog.passes},
        "output_stage": {"bias": bool(prog.stage.bias), "relu": prog.stage.relu,
                         "shift": prog.stage.shift},
        **{k: int(v) for k, v in counters.items()},
        "layer_macs": layer.macs,
        "expected_gated_macs": layer_gated_macs(layer, prog.ifmap),
        "pe_utilization": (counters["macs"] / (peak * counters["cycles"])
                           if counters["cycles"] else 0.0),
        "gated_fraction": counters["gated_macs"] / counters["macs"] if counters["macs"] else 0.0,
        "rlc_ratio": (prog.ifmap_values * cfg.pe.act_bits) / (prog.ifmap_rlc_words * cfg.dram_bits)
        if prog.ifmap_rlc_words else 0.0,
        "rlc_ratio_ofmap": (ofmap_values * cfg.pe.act_bits) / (ofmap_words * cfg.dram_bits)
        if ofmap_words else 0.0,
        "dram_words_per_mac": (counters["dram_words_read"] + counters["dram_words_written"])
        / layer.macs,
        "bit_exact": bool(bit_exact),
    }
    return out


PROGRESS = 1_000_000
"""Cycles between the progress lines of long runs (`ommatidia run`, the bench)."""

CLOCK_NS = 10
"""The clock period of the simulated `System`, made in the Verilog of its harness
(`ommatidia.sim.harness`): the simulator runs cycles without calling Python."""

OPTIMIZE_PES = 64
"""Arrays of at least this many PEs are built with Verilator's ``-O3`` and their PE as a
hierarchical block (`OPTIMIZE_BLOCKS`, `ommatidia.sim.runner.run_cocotb`); the test
suite's tiny and small arrays keep the quicker build (docs/speed.md)."""

OPTIMIZE_BLOCKS = ("system__PE",)
"""The modules of those arrays' `System` that Verilator verilates once, as hierarchical
blocks (`ommatidia.sim.runner.run_cocotb`): the PE, in every cell of the array. On the
12x14 `System` (the same load for both, docs/speed.md) the build took 307 s of CPU
instead of 964 with every PE inlined, and the layer ran 15-20 % slower (5,457-6,323
cycles/s against 6,808-7,429): the block pays for any layer under some 20 M cycles. A
run that writes a waveform inlines them, so the PE's signals are in it."""

HOST_MEMORY = "dram.mem"
"""The `System`'s DRAM (`ommatidia.hw.system.dram_verilog`), which the harness loads and
dumps in bulk (`ommatidia.sim.harness.wrap` ``memory``)."""

HOSTS = ("bulk", "port")

_CYCLES_LINE = re.compile(r"([\d,]+) cycles, [\d,]+ cycles/s")
_JOB_LINE = re.compile(r"job (\d+)/\d+: status \d+, (\d+) cycles")


def _watcher(watch):
    """The ``on_line`` of a `ommatidia.sim.progress.LogFollower` on the testbench's log
    (`ommatidia.sim.tb.tb_system`): ``watch(jobs done, cycles)`` on each progress line
    (the running job's cycles so far) and each finished job (its cycles)."""
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if (m := _JOB_LINE.search(line)) is not None:
            done = int(m[1])
            watch(done, int(m[2]))
        elif (m := _CYCLES_LINE.search(line)) is not None:
            watch(done, int(m[1].replace(",", "")))
    return on_line


@functools.lru_cache(maxsize=2)
def _system_verilog(cfg, dram_words: int) -> str:
    """The System's Verilog text, written once per process for a configuration (the
    12x14 array's takes about half a CPU minute; the bench runs eight layers on it)."""
    from ommatidia.gen.verilog import emit
    from ommatidia.hw.system import System, dram_verilog
    return emit(System(cfg, dram_words, verilog_dram=True), "system") + dram_verilog()


def _verilog(cfg, build_dir: pathlib.Path, dram_words: int, sim: str) -> pathlib.Path:
    """The System's Verilog, its DRAM a plain Verilog array (`System` ``verilog_dram``: no
    initial values to elaborate, a million words for the bench)."""
    text = _system_verilog(cfg, dram_words)
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / "system.v"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def check_counters(cfg) -> None:
    """ValueError unless ``cfg`` has the performance counters a simulation reads its cycles
    and counters from (and checks against the model's): the lean `icebreaker` preset has
    none, and its Verilog then holds zero-width ports that Verilator refuses."""
    if not cfg.counter_bits or not cfg.pe.counter_bits:
        raise ValueError(
            f"preset {cfg.name} has no performance counters (ArrayConfig.counter_bits = "
            f"{cfg.counter_bits}, PEConfig.counter_bits = {cfg.pe.counter_bits}), which a "
            f"simulation reads its cycles from: simulate it with them "
            f"(--set counter_bits=32 --set pe.counter_bits=24)")


def run_layers(cfg, progs, *, sim: str = "verilator", build_dir="build/run",
               stall_rate: int = 0, stall_seed: int = 1, reset_after=None, dram_words=None,
               vcd: str | None = None, limit: int = 50_000_000,
               progress: int = 0, watch=None, host: str = "bulk",
               verify_load: bool = False) -> list[LayerRun]:
    """Run every `LayerProgram` of ``progs`` on the Verilog of ``cfg``'s `System`.

    The simulated DRAM holds ``dram_words`` words (default: `DRAM_WORDS`, or the next
    power of two above the largest image). ``stall_rate`` (0..255) stalls the DRAM
    port that many 256ths of the cycles; ``reset_after`` (a list, one entry per layer,
    or None) interrupts a layer with a reset after that many cycles and reruns it from a
    fresh load. ``vcd`` copies the simulator's waveform there. ``progress`` logs the cycle
    count every that many cycles into the build folder's ``test.log``; ``watch(jobs_done,
    cycles)``, if given, is called from a thread as that log grows: on each progress line
    with the running layer's cycles so far, and when a layer is done with its cycles.
    ``host`` is how the DRAM image goes in and the ofmap comes out: ``"bulk"`` in a cycle
    each by the harness (``$readmemh``, ``$writememh``), ``"port"`` a word a cycle through
    the `System`'s host port as a host would. ``verify_load`` reads the image back both
    ways after the load (`LayerRun.loaded`).
    """
    from ommatidia.sim.progress import LogFollower
    from ommatidia.hw.top import COUNTERS
    from ommatidia.sim.runner import locked, run_cocotb

    check_counters(cfg)
    if not 0 <= stall_rate <= 255:
        raise ValueError(f"stall_rate must be in 0..255, not {stall_rate}")
    if host not in HOSTS:
        raise ValueError(f"host must be one of {', '.join(HOSTS)}, not {host!r}")
    for k, prog in enumerate(progs):
        if prog.cfg != cfg:
            raise ValueError(f"layer {k} was compiled for preset {prog.cfg.name}, not {cfg.name}")
    need = max([DRAM_WORDS] + [1 << (p.dram_words - 1).bit_length() for p in progs])
    if dram_words is None:
        dram_words = need
    elif dram_words < need:
        raise ValueError(f"the layers need {need} DRAM words, dram_words is {dram_words}")
    name = f"system_{cfg.name}_{sim}" + (f"_dram{dram_words}" if dram_words != DRAM_WORDS else "")
    build_dir = pathlib.Path(build_dir).resolve() / name
    jobs = []
    for k, prog in enumerate(progs):
        jobs.append({"words": [[a, f"{w:x}"] for a, w in sorted(prog.words.items())],
                     "stall_rate": stall_rate, "stall_seed": stall_seed,
                     "reset_after": reset_after[k] if reset_after else None,
                     "read": [[r.dram, r.words] for r in prog.outputs], "limit": limit,
                     "progress": progress, "host": host, "verify_load": verify_load})
    jobs_path, results_path = build_dir / "jobs.json", build_dir / "results.json"
    with locked(build_dir):
        jobs_path.write_text(json.dumps(jobs))
        results_path.unlink(missing_ok=True)
        path = _verilog(cfg, build_dir, dram_words, sim)
        follower = contextlib.nullcontext()
        if watch is not None:
            (build_dir / "test.log").unlink(missing_ok=True)
            follower = LogFollower(build_dir / "test.log", _watcher(watch))
        optimize = cfg.num_pes >= OPTIMIZE_PES
        with follower:
            run_cocotb(path, "system", "ommatidia.sim.tb.tb_system", sim=sim,
                       build_dir=build_dir, waves=vcd is not None, ports_only=vcd is None,
                       harness=True, clock_ns=CLOCK_NS, memory=HOST_MEMORY,
                       optimize=optimize,
                       hier_blocks=OPTIMIZE_BLOCKS if optimize and vcd is None else (),
                       env={"OMMATIDIA_JOBS": jobs_path, "OMMATIDIA_RESULTS": results_path})
        if vcd is not None:
            dumps = sorted(build_dir.glob("*.vcd")) + sorted(build_dir.glob("*.fst"))
            if not dumps:
                raise RuntimeError(f"the simulator wrote no waveform in {build_dir}")
            shutil.copy(max(dumps, key=lambda p: p.stat().st_mtime), vcd)
        results = json.loads(results_path.read_text())
    runs, state = [], None
    for prog, res in zip(progs, results):
        counters = {name: res["counters"][name] for name in COUNTERS}
        regions = {r.dram: words for r, words in zip(prog.outputs, res["regions"])}
        ofmap, coded = None, 0
        if res["status"] == 2:
            try:
                ofmap, coded = prog.ofmap(lambda a, n: regions[a][:n])
            except ValueError:
                ofmap = None
        exact = ofmap is not None and np.array_equal(ofmap, layer_ofmap(prog))
        rep = report(prog, counters, coded, exact)
        state = _predicted(rep, prog, state, stalls=bool(stall_rate or reset_after))
        rep["wall_s"] = round(res["wall_s"], 3)
        rep["cpu_s"] = round(res["cpu_s"], 3)
        rep["run_cpu_s"] = round(res["run_cpu_s"], 3)
        rep["sim"] = sim
        runs.append(LayerRun(ofmap, counters, res["status"], rep, res["interrupted"],
                             res["loaded"]))
    return runs


def _predicted(rep: dict, prog, state, *, stalls: bool):
    """Add the analytical model's prediction of the run to its report: ``model_cycles``,
    ``model_counters`` and ``model_exact`` (cycles and every counter equal to the RTL's;
    the model assumes a DRAM port that never stalls, so with ``stalls`` it is a bound).
    Returns the arbiter state the next layer of the same simulation starts from."""
    from ommatidia.gen.model import predict
    pred = predict(prog, state=state)
    rep["model_cycles"] = pred.cycles
    rep["model_counters"] = {k: int(v) for k, v in pred.counters.items()}
    rep["model_exact"] = (not stalls and pred.cycles == rep["cycles"]
                          and all(rep[k] == v for k, v in rep["model_counters"].items()))
    return pred.state


def input_coding(index: int) -> str:
    """How layer ``index`` of a network stores its ifmap in DRAM
    (`ommatidia.gen.compiler.compile_layer`'s ``ifmap_coding``): the first layer's is the
    network's input, which the host writes, raw; every later layer's is what the
    ``DMA_OUT`` of the layer before writes, RLC-coded."""
    return "raw" if index == 0 else "rlc"


def hardware_conv(qnet, *, sim: str = "verilator", build_dir="build/run", images_per_run=16,
                  watch=None):
    """A ``conv`` callable for `ommatidia.nn.quant.infer` that runs each layer on the
    generated Verilog: the images are cut into runs of ``images_per_run`` (so a run's
    ifmaps, filters and psums fit the GLB), all runs of a layer go to the simulator
    in one call (every group of a grouped layer, `QLayer.accelerator_layers`, a run of
    its own), its ifmap stored as `input_coding` says, and each run's ofmap is checked
    against the golden model. The
    reports of every call are kept in ``conv.reports`` (layer index -> list).
    ``watch(layer index, images done, images)``, if given, is called from a thread as
    the simulator finishes runs (`run_layers`)."""
    from ommatidia.gen.compiler import compile_layer
    cfg = qnet.config
    reports = {}

    def conv(index, layer, x):
        shape = qnet.conv_layers(1)[index]
        progs = []
        groups = layer.accelerator_layers()
        for n0 in range(0, len(x), images_per_run):
            chunk = x[n0:n0 + images_per_run]
            cl = dataclasses.replace(shape, N=len(chunk))
            progs.extend(compile_layer(cfg, cl, chunk[:, cs], g.weights, bias=g.bias,
                                       relu=g.relu, shift=g.shift,
                                       ifmap_coding=input_coding(index)) for cs, g in groups)
        def on_jobs(jobs_done, cycles):
            watch(index, min(len(x), jobs_done // len(groups) * images_per_run), len(x))
        runs = run_layers(cfg, progs, sim=sim, build_dir=build_dir,
                          watch=on_jobs if watch is not None else None)
        for k, run in enumerate(runs):
            if run.status != 2 or not run.bit_exact:
                raise AssertionError(f"layer {index}, run {k}: the Verilog's ofmap differs from "
                                     f"the golden model (status {run.status})")
        reports.setdefault(index, []).extend(run.report for run in runs)
        g = len(groups)
        return np.concatenate([np.concatenate([run.ofmap for run in runs[k:k + g]], axis=1)
                               for k in range(0, len(runs), g)])

    conv.reports = reports
    return conv
