"""The board build: the accelerator behind a UART, built to a bitstream with amaranth-boards.

`build` elaborates a `ommatidia.hw.board.BoardTop` for a `ommatidia.boards.board.Board`
and runs ``platform.build`` with the YoWASP Yosys, nextpnr and icepack/ecppack from
the virtual environment, in the same two halves with ``check -assert`` as
`ommatidia.boards.synth`. nextpnr checks the board clock's constraint (from the
platform's clock resource) and fails the build when it is missed, unless
``allow_timing_fail``; the report gives the netlist's cells, the placed
utilisation and Fmax (on iCE40 capped as in `ommatidia.boards.synth` when a
SB_MAC16 bypasses its registers).

A build reads nextpnr's log as it runs: it says every `HEARTBEAT_SECONDS` that it
is still running, and with router2 it stops nextpnr as unroutable once
`ommatidia.boards.nextpnr.router2_stall` says so.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io

from ommatidia.boards import nextpnr, synth
from ommatidia.boards.board import BOARDS, Board
from ommatidia.boards.nextpnr import DEFAULT_ROUTER, ROUTER2_PATIENCE, ROUTERS
from ommatidia.boards.pll import PLLClock
from ommatidia.gen.config import check_int
from ommatidia.toolchain import YOWASP_WASM, prepare, setup_env

__all__ = ["BoardDesign", "BoardBuildError", "plan", "build", "build_or_error",
           "failure_report", "format_build", "design_name", "default_build_dir",
           "LOG_POLL_SECONDS", "HEARTBEAT_SECONDS"]


class BoardBuildError(RuntimeError):
    """A board build failed; the message names the failing tool's log.

    ``overfull`` maps each BEL type the design needs more of than the device
    has to ``{"used": n, "available": m}`` (empty for other failures);
    ``unroutable`` is `ommatidia.boards.nextpnr.router2_stall`'s verdict when router2
    was stopped;
    ``unplaceable`` is ``{"bel", "used", "available"}`` of the fullest BEL type
    when every type fits but nextpnr found no legal placement.
    """

    def __init__(self, message: str, overfull: dict | None = None,
                 unroutable: dict | None = None, unplaceable: dict | None = None):
        super().__init__(message)
        self.overfull = overfull or {}
        self.unroutable = unroutable
        self.unplaceable = unplaceable


def default_build_dir(b: Board, root="build/boards") -> pathlib.Path:
    """``root/<board>``, or ``root/<board>-<rows>x<cols>`` for an `Board.array` override,
    ``root/<board>-<configuration name>`` for a `Board.custom` configuration; then
    ``-<clock>mhz`` for a clock other than the board's."""
    suffix = f"-{b.array[0]}x{b.array[1]}" if b.array is not None else ""
    if b.custom is not None:
        suffix = f"-{b.custom.name}"
    own = BOARDS.get(b.name)
    if own is not None and b.clock_mhz != own.clock_mhz:
        suffix += f"-{b.clock_mhz:g}mhz"
    return pathlib.Path(root) / (b.name + suffix)


def design_name(b: Board) -> str:
    """The top module and file name of the board's build."""
    return "ommatidia_" + b.name.replace("-", "_")


class BoardDesign(Elaboratable):
    """`BoardTop` for ``board``, its ``rx``/``tx`` on the board's UART pins, clocked at
    `Board.clock_mhz` by the FPGA's PLL (`ommatidia.boards.pll.PLLClock`) from the board
    oscillator, or by the oscillator itself (the platform's default ``sync``) when
    `Board.pll` is None; the UART divisor is of that clock."""

    def __init__(self, b: Board):
        from ommatidia.hw.board import BoardTop
        from ommatidia.hw.uart import uart_divisor
        self.board = b
        self.top = BoardTop(b.config, b.dram_words, uart_divisor(b.clock_mhz * 1e6, b.baud))

    def elaborate(self, platform):
        m = Module()
        if self.board.pll is not None:
            m.domains.sync = ClockDomain("sync")
            m.submodules.clock = PLLClock(self.board.pll,
                                          platform.request(platform.default_clk, dir="-"))
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        return m


def _overrides(b: Board, name: str, seed: int, allow_timing_fail: bool,
               router: str = DEFAULT_ROUTER) -> dict:
    synth_cmd = " ".join([f"synth_{b.family}", *(["-dsp"] if b.family == "ice40" else []),
                          *b.synth_opts])
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    nextpnr_opts = ["--report", f"{name}_report.json", "--seed", str(seed), "--router", router]
    if allow_timing_fail:
        nextpnr_opts.append("--timing-allow-fail")
    return {
        "script_after_read": "\n".join(["chformal -remove", *b.synth_script]),
        "synth_opts": synth_cmd.split()[1:] + ["-run", ":map_ram"],
        "script_after_synth": "\n".join([
            "check -assert", f"{synth_cmd} -top {name} -run map_ram:", "check -assert",
            "select -assert-none t:$check t:$assert t:$assume t:$cover t:$live t:$fair",
            f"tee -q -o {name}_stat.json stat -json"]),
        "nextpnr_opts": nextpnr_opts,
    }


def _failure(build_dir: pathlib.Path, name: str, exc: Exception) -> BoardBuildError:
    nextpnr_log, yosys_log = build_dir / f"{name}.tim", build_dir / f"{name}.rpt"
    for path, tool in ((nextpnr_log, "nextpnr"), (yosys_log, "yosys")):
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        error = synth.error_line(text)
        if error is None:
            continue
        util = nextpnr.utilisation(text) if tool == "nextpnr" else {}
        overfull = nextpnr.overfull(util)
        if overfull:
            return BoardBuildError(f"the design does not fit: it needs "
                                   f"{nextpnr.overfull_summary(overfull)} (log: {path})",
                                   overfull)
        fullest = nextpnr.fullest(util)
        if "legal placement" in error and fullest:
            return BoardBuildError(f"the design does not place: "
                                   f"{nextpnr.unplaceable_summary(fullest)} (log: {path})",
                                   unplaceable=fullest)
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
        f"{b.dram_words} DRAM words, {b.clock_mhz:g} MHz "
        f"({'the oscillator' if b.pll is None else f'PLL from {b.osc_mhz:g} MHz'}), "
        f"in {build_dir}")
    platform = b.make_platform()
    for tool in platform.required_tools:
        var = tool.upper().replace("-", "_")
        if shutil.which(env.get(var, tool), path=env["PATH"]) is None:
            raise BoardBuildError(f"{env.get(var, tool)} (${var}) not found on PATH; run "
                                  f"'make install' to get the YoWASP tools into .venv")
        if env.get(var, tool) in YOWASP_WASM:
            prepare(env.get(var, tool), env, say=say)
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
        iterations = nextpnr.router2_iterations(text)
        for iteration, overused in iterations[said:]:
            say(f"  router2 iteration {iteration}: {overused} overused wires")
        said = len(iterations)
        return nextpnr.stalled(iterations, route_patience)

    nextpnr_log = build_dir / f"{name}.tim"
    start = time.monotonic()
    try:
        verdict = _run_script(build_plan.extract(str(build_dir)), build_plan.script, env,
                              nextpnr_log, watch)
    except subprocess.CalledProcessError as exc:
        raise _failure(build_dir, name, exc) from None
    seconds = time.monotonic() - start
    if verdict is not None:
        raise BoardBuildError(f"the design does not route: "
                              f"{nextpnr.unroutable_summary(verdict)}; "
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
    cells = _cell_counts(netlist, name, tgt)
    bitstream = build_dir / (f"{name}.bin" if b.family == "ice40" else f"{name}.bit")
    return {
        "board": b.name, "title": b.title, "device": platform.device,
        "package": platform.package, "target": b.target,
        "preset": cfg.name, "array": f"{cfg.rows}x{cfg.cols}", "pes": cfg.num_pes,
        "macs_per_cycle": cfg.macs_per_cycle,
        "act_bits": cfg.pe.act_bits, "weight_bits": cfg.pe.weight_bits,
        "dram_words": b.dram_words, "clock_mhz": b.clock_mhz, "osc_mhz": b.osc_mhz,
        "pll": None if b.pll is None else {"vco_mhz": b.pll.vco_mhz, "pfd_mhz": b.pll.pfd_mhz,
                                           **dict(b.pll.params)},
        "baud": b.baud,
        "uart": b.uart_note, "seed": seed, "router": router,
        "resources": cells,
        "placed": {"logic_cell": tgt.logic_cell, "utilisation": utilisation},
        "clocks": clocks,
        "fmax_mhz": fmax,
        "timing_met": all(c["met"] for c in clocks.values()),
        "fmax_capped": bool(unregistered),
        "unregistered_dsps": len(unregistered),
        "peak_gmacs": round(cfg.macs_per_cycle * b.clock_mhz / 1000, 3),
        "peak_gmacs_at_fmax": round(cfg.macs_per_cycle * fmax / 1000, 3),
        "luts_per_mac": round(cells["luts"] / cfg.macs_per_cycle, 1),
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
                 + ("(the board oscillator) " if report.get("pll") is None
                    else f"(PLL from {report['osc_mhz']:g} MHz) ")
                 + f"({report['peak_gmacs_at_fmax']:.3f} at Fmax)")
    lines.append(f"  bitstream: {report['bitstream']}")
    return "\n".join(lines)
