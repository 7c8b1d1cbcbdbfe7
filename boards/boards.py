"""FPGA boards: the accelerator behind a UART, built to a bitstream with amaranth-boards.

`BOARDS` maps a board name to a `Board`: its amaranth-boards platform, the
preset sized to fit its FPGA (`ommatidia.gen.config.PRESETS`), the clock the
design runs at (the board's oscillator, no PLL), the depth of the on-chip
block RAM that stands in for DRAM, and the UART pins of the host link.

`build` elaborates a `ommatidia.hw.board.BoardTop` for a board and runs
``platform.build`` with the YoWASP Yosys, nextpnr and icepack/ecppack from
the virtual environment, in the same two halves with ``check -assert`` as
`ommatidia.gen.synth`. nextpnr checks the board clock's constraint (from the
platform's clock resource) and fails the build when it is missed, unless
``allow_timing_fail``; the report gives the netlist's cells, the placed
utilisation and Fmax (on iCE40 capped as in `ommatidia.gen.synth` when a
SB_MAC16 bypasses its registers).

nextpnr's router2 (PathFinder-style negotiated congestion) never gives up on a
design it cannot route: its count of overused wires stops falling and it runs
on. A build with router2 reads nextpnr's log as it runs and stops it as
unroutable once the count has risen `ROUTER2_PATIENCE` iterations running
(`router2_stall`).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time
import dataclasses
from dataclasses import dataclass

from amaranth import Elaboratable, Module
from amaranth.build import Attrs
from amaranth.lib import io
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform
from amaranth_boards.resources import UARTResource
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ommatidia.gen import synth
from ommatidia.gen.config import ArrayConfig, NoCConfig, check_int, preset
from ommatidia.sim.tools import setup_env

__all__ = ["Board", "BOARDS", "board", "BoardDesign", "BoardBuildError", "LOADER_TOOLS",
           "ROUTERS", "DEFAULT_ROUTER", "ROUTER2_PATIENCE", "router2_stall", "unroutable_summary",
           "unplaceable_summary", "overfull_summary", "plan", "build", "build_or_error",
           "failure_report", "design_name", "default_build_dir", "larger_arrays", "format_build"]

LOADER_TOOLS = ("dfu-suffix", "openFPGALoader", "iceprog")
"""Tools a platform runs to load or wrap a bitstream; not on PyPI, and not needed to build one."""


class BoardBuildError(RuntimeError):
    """A board build failed; the message names the failing tool's log.

    ``overfull`` maps each BEL type the design needs more of than the device
    has to ``{"used": n, "available": m}`` (empty for other failures);
    ``unroutable`` is `router2_stall`'s verdict when router2 was stopped;
    ``unplaceable`` is ``{"bel", "used", "available"}`` of the fullest BEL type
    when every type fits but nextpnr found no legal placement.
    """

    def __init__(self, message: str, overfull: dict | None = None,
                 unroutable: dict | None = None, unplaceable: dict | None = None):
        super().__init__(message)
        self.overfull = overfull or {}
        self.unroutable = unroutable
        self.unplaceable = unplaceable


@dataclass(frozen=True)
class Board:
    """A board `ommatidia build` makes a bitstream for.

    Parameters
    ----------
    name : str
        Board name on the command line.
    title : str
        Board and FPGA, for reports.
    platform : type
        The amaranth-boards platform class.
    preset : str
        Name of the `ArrayConfig` preset sized for the FPGA.
    clock_mhz : float
        Clock of the design: the platform's default clock, used directly.
    dram_words : int
        Depth of the on-chip DRAM (block RAM) in 64-bit words.
    target : str
        The `ommatidia.gen.synth` target of the same FPGA (``ommatidia synth``).
    uart_pins : tuple or None
        ``(rx, tx, connector)`` for a UART on a connector, when the platform has
        no ``uart`` resource; None uses the platform's ``uart`` 0.
    uart_note : str
        Where the host plugs in.
    baud : int
        UART baud rate.
    synth_opts : tuple
        Extra ``synth_ice40``/``synth_ecp5`` options of the board's build.
    array : tuple or None
        ``(rows, cols)`` replacing the preset's PE array (NoC IDs widened to fit), to
        find how large an array the part takes; None keeps the preset's.
    """

    name: str
    title: str
    platform: type
    preset: str
    clock_mhz: float
    dram_words: int
    target: str
    uart_note: str
    uart_pins: tuple | None = None
    baud: int = 115200
    synth_opts: tuple = ()
    array: tuple | None = None

    def __post_init__(self):
        own = f"Board({self.name!r})"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name or ""):
            raise ValueError(f"{own}.name must be lower-case letters, digits and '-'")
        preset(self.preset)
        check_int(own, "dram_words", self.dram_words, 1, 1 << 22)
        check_int(own, "baud", self.baud, 1)
        tgt = synth.target(self.target)
        platform = self.platform()
        if tgt.device != platform.device:
            raise ValueError(f"{own}.target {self.target} is a {tgt.device}, the board has a "
                             f"{platform.device}")
        if platform.default_clk_frequency != self.clock_mhz * 1e6:
            raise ValueError(f"{own}.clock_mhz must be the platform's default clock "
                             f"{platform.default_clk_frequency / 1e6:g} MHz, "
                             f"not {self.clock_mhz:g}")
        if self.uart_pins is not None and len(self.uart_pins) != 3:
            raise ValueError(f"{own}.uart_pins must be (rx, tx, connector), "
                             f"not {self.uart_pins!r}")
        if not isinstance(self.synth_opts, tuple) or \
                not all(isinstance(o, str) for o in self.synth_opts):
            raise ValueError(f"{own}.synth_opts must be a tuple of strings, "
                             f"not {self.synth_opts!r}")
        if self.array is not None:
            if not (isinstance(self.array, tuple) and len(self.array) == 2):
                raise ValueError(f"{own}.array must be (rows, cols), not {self.array!r}")
            check_int(own, "array rows", self.array[0], 1, 256)
            check_int(own, "array cols", self.array[1], 1, 256)

    @property
    def config(self) -> ArrayConfig:
        cfg = preset(self.preset)
        if self.array is None:
            return cfg
        rows, cols = self.array
        noc = NoCConfig(row_id_bits=max(cfg.noc.row_id_bits, (rows + 1).bit_length()),
                        col_id_bits=max(cfg.noc.col_id_bits, (cols + 1).bit_length()))
        return dataclasses.replace(cfg, rows=rows, cols=cols, noc=noc)

    @property
    def family(self) -> str:
        return synth.target(self.target).family

    def make_platform(self):
        """A build-only instance of the platform (no loader tools) with the UART resource."""
        cls = type(f"{self.platform.__name__}Build", (_BuildOnly, self.platform), {})
        platform = cls()
        if self.uart_pins is not None:
            rx, tx, conn = self.uart_pins
            platform.add_resources([UARTResource(0, rx=rx, tx=tx, conn=conn,
                                                 attrs=Attrs(IO_TYPE="LVCMOS33"))])
        return platform


class _BuildOnly:
    """Drops `LOADER_TOOLS` from a platform's required tools and build commands, and the
    debug Verilog from its files (``ommatidia generate`` writes Verilog)."""

    @property
    def file_templates(self):
        return {k: v for k, v in super().file_templates.items() if not k.endswith(".debug.v")}

    @property
    def required_tools(self):
        return [t for t in super().required_tools if t not in LOADER_TOOLS]

    @property
    def command_templates(self):
        return [c for c in super().command_templates if not any(t in c for t in LOADER_TOOLS)]


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("icebreaker", "iCEBreaker (iCE40UP5K-SG48)", ICEBreakerPlatform,
          preset="icebreaker", clock_mhz=12.0, dram_words=512, target="ice40-up5k",
          uart_note="FTDI channel B (rx pin 6, tx pin 9), the board's USB port",
          synth_opts=("-dffe_min_ce_use", "8")),
    Board("orangecrab-25f", "OrangeCrab r0.2 25F (LFE5U-25F-8MG285)",
          OrangeCrabR0_2_25FPlatform,
          preset="orangecrab", clock_mhz=48.0, dram_words=4096, target="ecp5-25f",
          uart_pins=("0", "1", ("io", 0)),
          uart_note="3.3 V USB-serial adapter on Feather pins 0 (rx, N17) and 1 (tx, M18)"),
    Board("ulx3s-85f", "ULX3S 85F (LFE5U-85F-6BG381)", ULX3S_85F_Platform,
          preset="ulx3s", clock_mhz=25.0, dram_words=16384, target="ecp5-85f",
          uart_note="FTDI FT231X (rx M1, tx L4), the board's US1 USB port"),
)}


def board(name: str) -> Board:
    """Look up a board by name."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}") from None


def default_build_dir(b: Board, root="build/boards") -> pathlib.Path:
    """``root/<board>``, or ``root/<board>-<rows>x<cols>`` for an `Board.array` override."""
    suffix = f"-{b.array[0]}x{b.array[1]}" if b.array is not None else ""
    return pathlib.Path(root) / (b.name + suffix)


def larger_arrays(b: Board) -> list[Board]:
    """``b`` with one PE row more and with one PE column more: when neither fits and meets
    the clock, ``b``'s array is the largest grown from it."""
    cfg = b.config
    shapes = dict.fromkeys([(cfg.rows + 1, cfg.cols), (cfg.rows, cfg.cols + 1)])
    return [dataclasses.replace(b, array=shape) for shape in shapes]


def design_name(b: Board) -> str:
    """The top module and file name of the board's build."""
    return "ommatidia_" + b.name.replace("-", "_")


class BoardDesign(Elaboratable):
    """`BoardTop` for ``board``, its ``rx``/``tx`` on the board's UART pins."""

    def __init__(self, b: Board):
        from ommatidia.hw.board import BoardTop
        from ommatidia.hw.uart import uart_divisor
        self.board = b
        self.top = BoardTop(b.config, b.dram_words, uart_divisor(b.clock_mhz * 1e6, b.baud))

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        return m


ROUTERS = ("router1", "router2")
DEFAULT_ROUTER = ROUTERS[0]
"""nextpnr's own default, and the one every build before ``--router`` used."""
ROUTER2_PATIENCE = 5
"""router2 iterations of rising overuse after which a build stops as unroutable."""

_ROUTER2_ITERATION = re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+)", re.M)


def router2_stall(log: str, patience: int = ROUTER2_PATIENCE) -> dict | None:
    """Whether router2, in nextpnr log ``log``, has stopped converging: its count of
    overused wires rose in each of its last ``patience`` iterations. A count that stays
    flat (the last few wires of a design that routes) is not a stall.

    Returns ``{"router", "iteration", "overused", "fewest_overused", "fewest_at",
    "patience"}`` then, else None.
    """
    check_int("router2_stall", "patience", patience, 1)
    return _stall(_router2_iterations(log), patience)


def _router2_iterations(log: str) -> list[tuple[int, int]]:
    """``(iteration, overused wires)`` of each router2 iteration in nextpnr log ``log``."""
    return [(int(i), int(n)) for i, n in _ROUTER2_ITERATION.findall(log)]


def _stall(iterations: list[tuple[int, int]], patience: int) -> dict | None:
    if not iterations:
        return None
    recent = [n for _, n in iterations[-(patience + 1):]]
    if len(recent) <= patience or any(b <= a for a, b in zip(recent, recent[1:])):
        return None
    fewest_at, fewest = min(iterations, key=lambda it: (it[1], it[0]))
    iteration, overused = iterations[-1]
    return {"router": "router2", "iteration": iteration, "overused": overused,
            "fewest_overused": fewest, "fewest_at": fewest_at, "patience": patience}


def unroutable_summary(verdict: dict) -> str:
    """One line of a `router2_stall` verdict, for the build error and the sweep table."""
    return (f"nextpnr {verdict['router']} still had {verdict['overused']} overused wires at "
            f"iteration {verdict['iteration']}, fewest {verdict['fewest_overused']} at "
            f"iteration {verdict['fewest_at']}")


def _overrides(b: Board, name: str, seed: int, allow_timing_fail: bool,
               router: str = DEFAULT_ROUTER) -> dict:
    synth_cmd = " ".join([f"synth_{b.family}", *(["-dsp"] if b.family == "ice40" else []),
                          *b.synth_opts])
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    nextpnr = ["--report", f"{name}_report.json", "--seed", str(seed), "--router", router]
    if allow_timing_fail:
        nextpnr.append("--timing-allow-fail")
    return {
        "script_after_read": "chformal -remove",
        "synth_opts": synth_cmd.split()[1:] + ["-run", ":map_ram"],
        "script_after_synth": "\n".join([
            "check -assert", f"{synth_cmd} -top {name} -run map_ram:", "check -assert",
            "select -assert-none t:$check t:$assert t:$assume t:$cover t:$live t:$fair",
            f"tee -q -o {name}_stat.json stat -json"]),
        "nextpnr_opts": nextpnr,
    }


def _utilisation(log: str) -> dict:
    """``{bel: {"used", "available"}}`` from nextpnr's device utilisation lines."""
    found = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log, re.M)
    return {bel: {"used": int(u), "available": int(a)} for bel, u, a in found}


def _overfull(util: dict) -> dict:
    """BELs a design needs more of than the device has."""
    return {bel: v for bel, v in util.items() if v["used"] > v["available"]}


def overfull_summary(overfull: dict) -> str:
    """One phrase for the BEL types a design needs more of than the device has."""
    return ", ".join(f"{v['used']} {bel} of {v['available']}" for bel, v in overfull.items())


def _fullest(util: dict) -> dict | None:
    """The BEL type the design uses the largest share of, as ``{"bel", "used", "available"}``."""
    shares = {bel: v["used"] / v["available"] for bel, v in util.items() if v["available"]}
    if not shares:
        return None
    bel = max(shares, key=shares.get)
    return {"bel": bel, **util[bel]}


def unplaceable_summary(fullest: dict) -> str:
    """One phrase for a design nextpnr could not place though every BEL type fits."""
    return (f"nextpnr found no legal placement with {fullest['used']}/{fullest['available']} "
            f"{fullest['bel']} in use")


def _failure(build_dir: pathlib.Path, name: str, exc: Exception) -> BoardBuildError:
    nextpnr_log, yosys_log = build_dir / f"{name}.tim", build_dir / f"{name}.rpt"
    for path, tool in ((nextpnr_log, "nextpnr"), (yosys_log, "yosys")):
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        error = synth.error_line(text)
        if error is None:
            continue
        util = _utilisation(text) if tool == "nextpnr" else {}
        overfull = _overfull(util)
        if overfull:
            return BoardBuildError(f"the design does not fit: it needs "
                                   f"{overfull_summary(overfull)} (log: {path})", overfull)
        fullest = _fullest(util)
        if "legal placement" in error and fullest:
            return BoardBuildError(f"the design does not place: {unplaceable_summary(fullest)}"
                                   f" (log: {path})", unplaceable=fullest)
        return BoardBuildError(f"{tool} failed: {error} (log: {path})")
    return BoardBuildError(f"build failed: {exc}")


LOG_POLL_SECONDS = 10.0
"""How often a build reads nextpnr's log for `router2_stall` and `HEARTBEAT_SECONDS`."""

HEARTBEAT_SECONDS = 300.0
"""How often a build says it is still running, with the last line nextpnr logged."""


def _last_line(log: str) -> str:
    """The last non-empty line of a log, or ``""``."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run_script(build_dir: pathlib.Path, script: str, env: dict, log_path: pathlib.Path,
                watch=None) -> dict | None:
    """Run a build script in its own process group. Every `LOG_POLL_SECONDS` ``watch``
    reads the nextpnr log (``""`` before nextpnr starts); when it returns a verdict the
    whole group is stopped and the verdict returned. Raises
    `subprocess.CalledProcessError` when the script fails."""
    proc = subprocess.Popen(["sh", f"{script}.sh"], cwd=build_dir, env=env,
                            start_new_session=True)
    try:
        while True:
            try:
                proc.wait(timeout=LOG_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if watch is not None:
                text = log_path.read_text(errors="replace") if log_path.exists() else ""
                verdict = watch(text)
                if verdict is not None:
                    return verdict
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, ["sh", f"{script}.sh"])
    return None


def _cell_counts(netlist: dict, name: str, tgt: synth.Target) -> dict:
    cells: dict = {}
    for cell in netlist["modules"][name]["cells"].values():
        cells[cell["type"]] = cells.get(cell["type"], 0) + 1
    return {key: sum(n for t, n in cells.items() if synth._matches(t, tgt.cells[key]))
            for key in synth.RESOURCE_KEYS}


def plan(b: Board, *, seed: int = 1, allow_timing_fail: bool = False,
         router: str = DEFAULT_ROUTER, platform=None, design=None):
    """The amaranth `BuildPlan` of ``design`` (default: `BoardDesign`) on ``b``: the
    RTLIL, constraints and tool scripts, not run."""
    platform = platform or b.make_platform()
    overrides = _overrides(b, design_name(b), seed, allow_timing_fail, router)
    return platform.prepare(BoardDesign(b) if design is None else design, design_name(b),
                            **overrides)


def build(b: Board, build_dir, *, seed: int = 1, allow_timing_fail: bool = False,
          router: str = DEFAULT_ROUTER, route_patience: int = ROUTER2_PATIENCE,
          log=None) -> dict:
    """Build ``b``'s bitstream in ``build_dir`` and return the report.

    Raises `BoardBuildError` when a tool fails, which includes nextpnr missing
    the board clock unless ``allow_timing_fail``, and router2's overused wires
    rising ``route_patience`` iterations running (`router2_stall`).
    """
    check_int("build", "route_patience", route_patience, 1)
    build_dir = pathlib.Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    env = setup_env(dict(os.environ))
    cfg = b.config
    name = design_name(b)
    tgt = synth.target(b.target)
    for stale in (f"{name}_report.json", f"{name}.json", f"{name}.bin", f"{name}.bit"):
        (build_dir / stale).unlink(missing_ok=True)
    say(f"building {b.title}: preset {cfg.name} ({cfg.rows}x{cfg.cols} PEs), "
        f"{b.dram_words} DRAM words, {b.clock_mhz:g} MHz, in {build_dir}")
    platform = b.make_platform()
    for tool in platform.required_tools:
        var = tool.upper().replace("-", "_")
        if shutil.which(env.get(var, tool), path=env["PATH"]) is None:
            raise BoardBuildError(f"{env.get(var, tool)} (${var}) not found on PATH; run "
                                  f"'make install' to get the YoWASP tools into .venv")
    build_plan = plan(b, seed=seed, allow_timing_fail=allow_timing_fail, router=router,
                      platform=platform)
    said, heartbeat = 0, HEARTBEAT_SECONDS

    def watch(text: str) -> dict | None:
        """Says where a long build is; with router2, its iterations and `router2_stall`."""
        nonlocal said, heartbeat
        elapsed = time.monotonic() - start
        if elapsed >= heartbeat:
            where = f"nextpnr: {_last_line(text)}" if text else "yosys"
            say(f"  still running after {elapsed / 60:.0f} min ({where})")
            heartbeat += HEARTBEAT_SECONDS
        if router != "router2":
            return None
        iterations = _router2_iterations(text)
        for iteration, overused in iterations[said:]:
            say(f"  router2 iteration {iteration}: {overused} overused wires")
        said = len(iterations)
        return _stall(iterations, route_patience)

    nextpnr_log = build_dir / f"{name}.tim"
    start = time.monotonic()
    try:
        verdict = _run_script(build_plan.extract(str(build_dir)), build_plan.script, env,
                              nextpnr_log, watch)
    except subprocess.CalledProcessError as exc:
        raise _failure(build_dir, name, exc) from None
    seconds = time.monotonic() - start
    if verdict is not None:
        raise BoardBuildError(f"the design does not route: {unroutable_summary(verdict)}; "
                              f"stopped after {seconds:.0f} s (log: {nextpnr_log})",
                              unroutable=verdict)
    say(f"  done in {seconds:.0f} s")

    netlist = json.loads((build_dir / f"{name}.json").read_text())
    pnr = json.loads((build_dir / f"{name}_report.json").read_text())
    unregistered = synth.unregistered_sb_mac16(netlist) if b.family == "ice40" else []
    cap = synth.ICE40_UNREGISTERED_DSP_FMAX_MHZ if unregistered else None
    clocks = synth.clock_timing(pnr, b.clock_mhz, cap)
    utilisation = {bel: {"used": int(v["used"]), "available": int(v["available"])}
                   for bel, v in sorted(pnr.get("utilization", {}).items())}
    fmax = min(c["fmax_mhz"] for c in clocks.values())
    bitstream = build_dir / (f"{name}.bin" if b.family == "ice40" else f"{name}.bit")
    return {
        "board": b.name, "title": b.title, "device": platform.device,
        "package": platform.package, "target": b.target,
        "preset": cfg.name, "array": f"{cfg.rows}x{cfg.cols}", "pes": cfg.num_pes,
        "macs_per_cycle": cfg.num_pes,
        "act_bits": cfg.pe.act_bits, "weight_bits": cfg.pe.weight_bits,
        "dram_words": b.dram_words, "clock_mhz": b.clock_mhz, "baud": b.baud,
        "uart": b.uart_note, "seed": seed, "router": router,
        "resources": _cell_counts(netlist, name, tgt),
        "placed": {"logic_cell": tgt.logic_cell, "utilisation": utilisation},
        "clocks": clocks,
        "fmax_mhz": fmax,
        "timing_met": all(c["met"] for c in clocks.values()),
        "fmax_capped": bool(unregistered),
        "unregistered_dsps": len(unregistered),
        "peak_gmacs": round(cfg.num_pes * b.clock_mhz / 1000, 3),
        "peak_gmacs_at_fmax": round(cfg.num_pes * fmax / 1000, 3),
        "bitstream": str(bitstream) if bitstream.exists() else None,
        "files": {"yosys_log": str(build_dir / f"{name}.rpt"),
                  "nextpnr_log": str(build_dir / f"{name}.tim"),
                  "nextpnr_report": str(build_dir / f"{name}_report.json")},
        "seconds": round(seconds, 1),
    }


def build_or_error(b: Board, build_dir, *, reuse: bool = False, report_path=None,
                   **kwargs) -> dict:
    """`build` into ``build_dir`` and save the report as ``report_path`` (default
    ``build_dir/report.json``); a failed build's report is ``{"board", "array", "pes",
    "error", "overfull", "unroutable", "unplaceable"}``. With ``reuse``, an existing report is
    read instead of building."""
    saved = pathlib.Path(report_path or pathlib.Path(build_dir) / "report.json")
    if reuse and saved.exists():
        return json.loads(saved.read_text())
    try:
        report = build(b, build_dir, **kwargs)
    except BoardBuildError as exc:
        report = failure_report(b, exc)
    synth.write_report(report, saved)
    return report


def failure_report(b: Board, exc: BoardBuildError) -> dict:
    """The report of a failed build of ``b``: what failed, and what overflowed the part."""
    cfg = b.config
    return {"board": b.name, "array": f"{cfg.rows}x{cfg.cols}", "pes": cfg.num_pes,
            "error": str(exc), "overfull": exc.overfull, "unroutable": exc.unroutable,
            "unplaceable": exc.unplaceable}


def format_build(report: dict) -> str:
    """A few lines summarising a `build` report."""
    res, util = report["resources"], report["placed"]["utilisation"]
    logic = util.get(report["placed"]["logic_cell"], {"used": 0, "available": 0})
    used = [f"{bel} {v['used']}/{v['available']}" for bel, v in util.items() if v["used"]]
    lines = [
        f"{report['title']}: preset {report['preset']}, {report['array']} PEs "
        f"({report['macs_per_cycle']} MACs/cycle), DRAM {report['dram_words']} words",
        f"  cells: LUT4 {res['luts']}, FF {res['ffs']}, carry {res['carries']}, "
        f"DSP {res['dsps']}, EBR {res['ebr']}, SPRAM {res['spram']}, LUTRAM {res['lutram']}",
        f"  placed: {report['placed']['logic_cell']} {logic['used']}/{logic['available']}; "
        + ", ".join(u for u in used if not u.startswith(report["placed"]["logic_cell"] + " ")),
    ]
    for clock_name, c in report["clocks"].items():
        lines.append(f"  clock {clock_name}: Fmax {synth.format_fmax(c)}, "
                     f"constraint {c['constraint_mhz']:g} MHz:"
                     f" {'met' if c['met'] else 'NOT MET'}")
    lines.append(f"  peak {report['peak_gmacs']:.3f} GMAC/s at {report['clock_mhz']:g} MHz "
                 f"({report['peak_gmacs_at_fmax']:.3f} at Fmax)")
    lines.append(f"  bitstream: {report['bitstream']}")
    return "\n".join(lines)
