"""Open synthesis of Ommatidia components: Yosys + nextpnr resource and Fmax reports.

`synthesize` wraps a component in a `Harness`, runs YoWASP Yosys
(``synth_ice40 -dsp`` or ``synth_ecp5``) and nextpnr (``--freq``, ``--report``)
and returns a report: the component's own resources after synthesis, the
utilisation of the placed design, and Fmax per clock with whether it meets
the requested frequency.

The harness
-----------
A PE has far more port bits than an FPGA has pins, so the component is not
connected to pins. Every input bit is driven by one flip-flop of a shift
register fed from one pin (``din``); every output bit is folded into a
multiple-input signature register (``sig[i] <= out[i] ^ sig[i+1]``) whose
last bit drives one pin (``dout``). Each input is thus a distinct,
non-constant register, and each output reaches a pin, so Yosys can neither
fold constants into the design nor remove any of it; and every path into or
out of the component starts or ends at a flip-flop, as it would next to a
neighbouring block, with one 2-input XOR after an output. The component is
kept as its own module (``keep_hierarchy``) through synthesis, so its
resources are counted apart from the harness's (reported separately), and
flattened before place and route.

Timing honesty on iCE40
-----------------------
nextpnr-ice40 treats every SB_MAC16 port as a register, so the multiplier
delay of a DSP whose input or output registers are bypassed is not timed at
all and the Fmax it reports is too high (docs/fpga.md, Synthesis). When the
netlist holds such a SB_MAC16, every clock's Fmax is capped at
`ICE40_UNREGISTERED_DSP_FMAX_MHZ` (Lattice's figure for a 16x16 multiply
bypassing the DSP registers), ``fmax_capped`` is set and the cells are listed
in ``unregistered_dsps``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from amaranth import Cat, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ommatidia.toolchain import YOWASP_WASM, prepare, setup_env

__all__ = [
    "Target", "TARGETS", "target", "Harness", "SynthError", "ICE40_UNREGISTERED_DSP_FMAX_MHZ",
    "RESOURCE_KEYS", "PORT_ALIAS_FIX", "synthesize", "run_yosys", "run_nextpnr",
    "module_resources", "unregistered_sb_mac16", "clock_timing", "write_report", "format_report",
]

ICE40_UNREGISTERED_DSP_FMAX_MHZ = 50.0
"""Fmax of a 16x16 SB_MAC16 multiply that bypasses the DSP registers (Lattice datasheet)."""

TOP_NAME = "ommatidia_synth"
DUT_NAME = "dut"
DUT_MODULE = f"{TOP_NAME}.{DUT_NAME}"

RESOURCE_KEYS = ("luts", "ffs", "carries", "dsps", "ebr", "spram", "lutram")

PORT_ALIAS_FIX = f"rename -hide {DUT_MODULE}/w:*[[]* {DUT_MODULE}/x:* %d"
"""Unname the component's non-port wires whose names hold ``[``.

Amaranth names the elements of an `ArrayLayout` port ``counters`` as wires
``counters[0]``, ``counters[1]``, ...; Yosys names bit ``i`` of the port
``counters[i]`` too, and in a module that keeps its ports (the component,
under ``keep_hierarchy``) Yosys 0.70's ABC9 reintegration then creates a
wire whose name exists and stops with ``Assert `count_id(wire->name) == 0'
failed`` (the accelerator's ``counters`` port; YosysHQ/yosys#4349). Such a
wire is only a name for part of a port, so dropping the name changes no logic.
"""


class SynthError(RuntimeError):
    """A synthesis tool failed or is missing; the message names its log."""


@dataclass(frozen=True)
class Target:
    """An FPGA that `synthesize` can build for.

    ``cells`` maps each key of `RESOURCE_KEYS` to the Yosys cell types counted
    under it (a trailing ``*`` matches a prefix); ``logic_cell`` is the nextpnr
    BEL type that counts logic (LUT + flip-flop) cells.
    """

    name: str
    family: str
    device: str
    package: str
    nextpnr_args: tuple
    cells: dict
    logic_cell: str

    @property
    def nextpnr_var(self) -> str:
        return f"NEXTPNR_{self.family.upper()}"

    @property
    def yosys_synth(self) -> str:
        return f"synth_{self.family}"


_ICE40_CELLS = {
    "luts": ("SB_LUT4",), "ffs": ("SB_DFF*",), "carries": ("SB_CARRY",),
    "dsps": ("SB_MAC16",), "ebr": ("SB_RAM40_4K*",), "spram": ("SB_SPRAM256KA",),
    "lutram": (),
}
_ECP5_CELLS = {
    "luts": ("LUT4",), "ffs": ("TRELLIS_FF",), "carries": ("CCU2C",),
    "dsps": ("MULT18X18D",), "ebr": ("DP16KD", "PDPW16KD"), "spram": (),
    "lutram": ("TRELLIS_DPR16X4",),
}

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ice40-up5k", "ice40", "iCE40UP5K", "sg48",
           ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
           _ICE40_CELLS, "ICESTORM_LC"),
    Target("ecp5-25f", "ecp5", "LFE5U-25F", "CABGA256",
           ("--25k", "--package", "CABGA256"), _ECP5_CELLS, "TRELLIS_COMB"),
    Target("ecp5-85f", "ecp5", "LFE5U-85F", "CABGA381",
           ("--85k", "--package", "CABGA381"), _ECP5_CELLS, "TRELLIS_COMB"),
)}


def target(name: str) -> Target:
    """Look up a target by name."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None


class Harness(wiring.Component):
    """Drives every input of ``dut`` from a shift register and folds every output
    into a signature register, so a wide component synthesises behind two pins.

    Inputs reach the component ``n`` cycles after they enter ``din`` (``n`` =
    input bit index + 1); the harness is for synthesis, not for simulation.

    Parameters
    ----------
    dut : wiring.Component
        The component; all its ports are driven or observed.

    Members
    -------
    din : In(1)
        Serial input of the shift register that drives the component's inputs.
    dout : Out(1)
        Last bit of the signature register over the component's outputs.
    """

    def __init__(self, dut):
        self._dut = dut
        self.in_bits = self.out_bits = 0
        for _, member, value in dut.signature.flatten(dut):
            if member.flow == In:
                self.in_bits += len(Value.cast(value))
            else:
                self.out_bits += len(Value.cast(value))
        super().__init__({"din": In(1), "dout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules[DUT_NAME] = dut = self._dut
        inputs, outputs = [], []
        for _, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == In else outputs).append(Value.cast(value))

        if inputs:
            shift = Signal(len(Cat(*inputs)), reset_less=True)
            m.d.sync += shift.eq(Cat(self.din, shift[:-1]))
            m.d.comb += Cat(*inputs).eq(shift)
        if outputs:
            out = Cat(*outputs)
            sig = Signal(len(out), reset_less=True)
            m.d.sync += sig.eq(out ^ Cat(sig[1:], self.din))
            m.d.comb += self.dout.eq(sig[0])
        return m


def _tool(var: str, env: dict) -> str:
    """Absolute path of the tool named by ``env[var]`` (a YoWASP tool by default)."""
    name = env[var]
    path = shutil.which(name, path=env.get("PATH"))
    if path is None:
        raise SynthError(f"{name} (${var}) not found on PATH; run 'make install' to get the "
                         f"YoWASP tools into .venv")
    if name in YOWASP_WASM:
        prepare(name, env)
    return path


def error_line(log: str) -> str | None:
    """The last error a Yosys or nextpnr log reports: an ``ERROR`` line, else an ``error:``
    line; not a summary such as ``0 warnings, 1 error``."""
    lines = log.splitlines()
    for found in ([line for line in lines if line.lstrip().startswith("ERROR")],
                  [line for line in lines if re.search(r"\berror:", line, re.I)]):
        if found:
            return found[-1].strip()
    return None


def format_fmax(clock: dict) -> str:
    """A clock's Fmax for a summary line, saying when it is capped below nextpnr's figure."""
    fmax = f"{clock['fmax_mhz']:.2f} MHz"
    if clock["fmax_mhz"] < clock["nextpnr_fmax_mhz"]:
        fmax += f" (capped; nextpnr says {clock['nextpnr_fmax_mhz']:.2f})"
    return fmax


def _run(cmd: list, log_path: pathlib.Path, env: dict, cwd: pathlib.Path,
         timeout: float | None) -> float:
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{pathlib.Path(cmd[0]).name} timed out after {timeout} s; "
                         f"see {log_path}") from None
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        if log_path.exists():
            text += log_path.read_text(errors="replace")
        lines = text.splitlines()
        detail = error_line(text) or (text.strip().splitlines() or ["no output"])[-1]
        if "check -assert" in detail:
            warnings = [line.strip() for line in lines if line.startswith("Warning:")]
            detail += f" First: {warnings[0]}" if warnings else ""
        raise SynthError(f"{pathlib.Path(cmd[0]).name} failed (exit {proc.returncode}): "
                         f"{detail} (log: {log_path})")
    return time.monotonic() - start


def yosys_script(tgt: Target, *, dsp: bool = True) -> str:
    """The Yosys script: formal cells removed, the component kept apart for `stat`.

    ``check -assert`` runs after the coarse (DSP inference) and the mapping
    halves of ``synth_*``: Yosys 0.70's ice40_dsp leaves two drivers on a
    multiplier followed by two registers, which later passes resolve by
    deleting the logic, so a silent wrong netlist becomes an error.

    The component's wires with ``[`` in their names, other than its ports,
    lose their names first (`PORT_ALIAS_FIX`).
    """
    if tgt.family == "ice40":
        synth = f"synth_ice40 -top {TOP_NAME}" + (" -dsp" if dsp else "")
    else:
        synth = f"synth_ecp5 -top {TOP_NAME}" + ("" if dsp else " -nodsp")
    return "\n".join([
        "read_rtlil design.il",
        "chformal -remove",
        f"setattr -mod -set keep_hierarchy 1 {DUT_MODULE}",
        PORT_ALIAS_FIX,
        f"{synth} -run :map_ram",
        "check -assert",
        f"{synth} -run map_ram:",
        "check -assert",
        "select -assert-none t:$check t:$assert t:$assume t:$cover t:$live t:$fair",
        "tee -q -o stat.json stat -json",
        f"setattr -mod -unset keep_hierarchy {DUT_MODULE}",
        "flatten",
        "write_json netlist.json",
        "",
    ])


def run_yosys(component, tgt: Target, build_dir, *, dsp: bool = True, env: dict | None = None,
              timeout: float | None = None, script: str | None = None) -> dict:
    """Write the harnessed design as RTLIL and synthesise it with Yosys.

    Returns the paths and the runtime; ``stat.json`` holds per-module cell
    counts and ``netlist.json`` the flattened netlist for nextpnr. ``script``
    replaces `yosys_script` (`ommatidia.boards.breakdown` keeps the hierarchy).
    """
    build_dir = pathlib.Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    env = setup_env(dict(os.environ) if env is None else env)
    harness = Harness(component)
    (build_dir / "design.il").write_text(rtlil.convert(harness, name=TOP_NAME))
    yosys = _tool("YOSYS", env)
    (build_dir / "synth.ys").write_text(script or yosys_script(tgt, dsp=dsp))
    for stale in ("stat.json", "netlist.json"):
        (build_dir / stale).unlink(missing_ok=True)
    log = build_dir / "yosys.log"
    seconds = _run([yosys, "-q", "-l", log.name, "-s", "synth.ys"], log, env, build_dir, timeout)
    version = next((line.strip() for line in log.read_text(errors="replace").splitlines()
                    if line.startswith("Yosys ")), "unknown")
    return {"yosys": yosys, "yosys_version": version, "seconds": seconds,
            "in_bits": harness.in_bits, "out_bits": harness.out_bits,
            "stat": build_dir / "stat.json", "netlist": build_dir / "netlist.json", "log": log}


def run_nextpnr(tgt: Target, build_dir, freq_mhz: float, *, seed: int = 1,
                env: dict | None = None, timeout: float | None = None) -> dict:
    """Place and route ``netlist.json`` at ``freq_mhz``; timing failure is not an error here."""
    build_dir = pathlib.Path(build_dir)
    env = setup_env(dict(os.environ) if env is None else env)
    nextpnr = _tool(tgt.nextpnr_var, env)
    log = build_dir / "nextpnr.log"
    report = build_dir / "nextpnr_report.json"
    report.unlink(missing_ok=True)
    cmd = [nextpnr, *tgt.nextpnr_args, "--json", "netlist.json", "--freq", f"{freq_mhz:g}",
           "--report", report.name, "--seed", str(seed), "--timing-allow-fail",
           "-q", "-l", log.name]
    seconds = _run(cmd, log, env, build_dir, timeout)
    return {"nextpnr": nextpnr, "seconds": seconds, "report": report, "log": log}


def _matches(cell_type: str, patterns) -> bool:
    return any(cell_type.startswith(p[:-1]) if p.endswith("*") else cell_type == p
               for p in patterns)


def module_resources(stat: dict, module: str, tgt: Target) -> tuple[dict, dict]:
    """Resources of ``module`` and its submodules from Yosys ``stat -json`` output.

    Returns ``(resources, cells)``: counts per `RESOURCE_KEYS` and raw counts
    per primitive cell type.
    """
    modules = stat["modules"]

    def cells_of(name: str) -> dict:
        counts: dict = {}
        for cell_type, n in modules[name]["num_cells_by_type"].items():
            sub = "\\" + cell_type
            if cell_type == "$scopeinfo":
                continue
            if sub in modules:
                for t, k in cells_of(sub).items():
                    counts[t] = counts.get(t, 0) + n * k
            else:
                counts[cell_type] = counts.get(cell_type, 0) + n
        return counts

    cells = cells_of("\\" + module)
    resources = {key: sum(n for t, n in cells.items() if _matches(t, tgt.cells[key]))
                 for key in RESOURCE_KEYS}
    return resources, dict(sorted(cells.items()))


def _param(value) -> int | None:
    """Integer value of a Yosys JSON parameter (a binary string or an integer)."""
    if isinstance(value, int):
        return value
    try:
        return int(value, 2)
    except (TypeError, ValueError):
        return None


def _output_half_registered(params: dict, half: str) -> bool:
    select = _param(params.get(f"{half}OUTPUT_SELECT", 0))
    if select == 1:
        return True
    if select == 2:
        return _param(params.get(f"{half}_8x8_MULT_REG", 0)) == 1
    if select == 3:
        return _param(params.get("PIPELINE_16x16_MULT_REG2", 0)) == 1
    return False


def unregistered_sb_mac16(netlist: dict) -> list[str]:
    """Names of SB_MAC16 cells with an untimed path through their multiplier.

    A SB_MAC16 is fully registered when its A and B input registers and the
    register of each output half are in use; otherwise the multiplier sits on
    a fabric path that nextpnr-ice40 does not time.
    """
    names = []
    for module in netlist["modules"].values():
        for name, cell in module.get("cells", {}).items():
            if cell["type"] != "SB_MAC16":
                continue
            p = cell.get("parameters", {})
            inputs = _param(p.get("A_REG", 0)) == 1 and _param(p.get("B_REG", 0)) == 1
            outputs = _output_half_registered(p, "TOP") and _output_half_registered(p, "BOT")
            if not (inputs and outputs):
                names.append(name)
    return sorted(names)


def _clock_name(net: str) -> str:
    """``clk`` from nextpnr's global clock net names (``clk$SB_IO_IN_$glb_clk``,
    ``$glbnet$clk$TRELLIS_IO_IN``)."""
    if net.startswith("$glbnet$"):
        net = net[len("$glbnet$"):]
    return net.split("$", 1)[0] or net


def _critical_paths(report: dict) -> dict:
    """Per clock: the register-to-register critical path (endpoints and delay)."""
    paths = {}
    for cp in report.get("critical_paths", []):
        src, dst = cp.get("from", ""), cp.get("to", "")
        if src != dst or "<async>" in src or not cp.get("path"):
            continue
        steps = cp["path"]
        first, last = steps[0]["from"], steps[-1]["to"]
        paths[_clock_name(src.split(" ", 1)[-1])] = {
            "from": f"{first['cell']}.{first['port']}",
            "to": f"{last['cell']}.{last['port']}",
            "delay_ns": round(sum(step["delay"] for step in steps), 3),
        }
    return paths


def clock_timing(report: dict, freq_mhz: float, cap_mhz: float | None) -> dict:
    """Per clock of a nextpnr ``--report``: Fmax (capped at ``cap_mhz``), constraint, met, path."""
    paths = _critical_paths(report)
    clocks = {}
    for net, entry in report.get("fmax", {}).items():
        if net.startswith("$PACKER"):
            continue
        name = _clock_name(net)
        raw = float(entry["achieved"])
        fmax = raw if cap_mhz is None else min(raw, cap_mhz)
        constraint = float(entry.get("constraint", freq_mhz))
        clocks[name] = {
            "fmax_mhz": round(fmax, 2),
            "nextpnr_fmax_mhz": round(raw, 2),
            "constraint_mhz": constraint,
            "met": fmax >= constraint,
            "critical_path": paths.get(name),
        }
    return dict(sorted(clocks.items()))


def synthesize(component, target_name: str, freq_mhz: float, build_dir, *, dsp: bool = True,
               seed: int = 1, info: dict | None = None, log=None,
               timeout: float | None = None) -> dict:
    """Synthesise, place and route ``component`` for ``target_name`` at ``freq_mhz``.

    Parameters
    ----------
    component : wiring.Component
        Synthesised inside a `Harness`.
    target_name : str
        A key of `TARGETS`.
    freq_mhz : float
        Clock constraint for nextpnr; ``met`` compares each clock's Fmax with it.
    build_dir : path
        Receives ``design.il``, ``synth.ys``, the logs, ``stat.json``,
        ``netlist.json`` and ``nextpnr_report.json``.
    dsp : bool
        Map multipliers to DSP blocks.
    seed : int
        nextpnr placement seed.
    info : dict
        Extra fields copied to the report (top, preset).
    log : callable(str)
        Receives progress lines.

    Returns
    -------
    dict
        ``resources`` (the component alone, post-synthesis, per `RESOURCE_KEYS`),
        ``cells``, ``harness`` (the harness's own resources), ``harness_bits``
        (input and output bits it drives and observes), ``placed``
        (nextpnr utilisation of the whole design), ``clocks`` (per clock:
        ``fmax_mhz``, ``nextpnr_fmax_mhz``, ``constraint_mhz``, ``met``,
        ``critical_path``), ``timing_met``, ``fmax_capped``,
        ``unregistered_dsps``, ``notes``, ``tools``, ``files``, ``seconds``.
    """
    tgt = target(target_name)
    if isinstance(freq_mhz, bool) or not isinstance(freq_mhz, (int, float)) or not freq_mhz > 0:
        raise ValueError(f"frequency must be a positive number of MHz, not {freq_mhz!r}")
    build_dir = pathlib.Path(build_dir)
    say = log or (lambda line: None)
    env = setup_env(dict(os.environ))

    flags = " -dsp" if dsp and tgt.family == "ice40" else ("" if dsp else " -nodsp")
    say(f"running {env['YOSYS']} ({tgt.yosys_synth}{flags}) in {build_dir}")
    ys = run_yosys(component, tgt, build_dir, dsp=dsp, env=env, timeout=timeout)
    say(f"  yosys done in {ys['seconds']:.1f} s")
    say(f"running {env[tgt.nextpnr_var]} ({tgt.device} {tgt.package} at {freq_mhz:g} MHz)")
    pnr = run_nextpnr(tgt, build_dir, freq_mhz, seed=seed, env=env, timeout=timeout)
    say(f"  nextpnr done in {pnr['seconds']:.1f} s")

    stat = json.loads(ys["stat"].read_text())
    resources, cells = module_resources(stat, DUT_MODULE, tgt)
    harness, _ = module_resources(stat, TOP_NAME, tgt)
    harness = {k: harness[k] - resources[k] for k in RESOURCE_KEYS}
    netlist = json.loads(ys["netlist"].read_text())
    pnr_report = json.loads(pnr["report"].read_text())

    notes = []
    unregistered = unregistered_sb_mac16(netlist) if tgt.family == "ice40" else []
    cap = ICE40_UNREGISTERED_DSP_FMAX_MHZ if unregistered else None
    clocks = clock_timing(pnr_report, freq_mhz, cap)
    capped = any(c["nextpnr_fmax_mhz"] > c["fmax_mhz"] for c in clocks.values())
    if unregistered:
        notes.append(
            f"{len(unregistered)} SB_MAC16 with bypassed input/output registers: nextpnr does "
            f"not time paths through them, so Fmax is capped at "
            f"{ICE40_UNREGISTERED_DSP_FMAX_MHZ:g} MHz (Lattice's figure for an unregistered "
            f"16x16 multiply)")

    utilisation = {bel: {"used": int(v["used"]), "available": int(v["available"])}
                   for bel, v in sorted(pnr_report.get("utilization", {}).items())}
    logic = utilisation.get(tgt.logic_cell, {"used": 0, "available": 0})
    report = {
        **(info or {}),
        "target": tgt.name, "device": tgt.device, "package": tgt.package,
        "freq_mhz": float(freq_mhz), "dsp_inference": dsp, "seed": seed,
        "resources": resources,
        "cells": cells,
        "harness": harness,
        "harness_bits": {"in": ys["in_bits"], "out": ys["out_bits"]},
        "placed": {
            "logic_cell": tgt.logic_cell,
            "logic_cells": logic["used"], "logic_cells_available": logic["available"],
            "utilisation": utilisation,
        },
        "clocks": clocks,
        "timing_met": all(c["met"] for c in clocks.values()),
        "fmax_capped": capped,
        "unregistered_dsps": unregistered,
        "notes": notes,
        "tools": {"yosys": ys["yosys"], "yosys_version": ys["yosys_version"],
                  "nextpnr": pnr["nextpnr"]},
        "files": {"rtlil": str(build_dir / "design.il"), "yosys_log": str(ys["log"]),
                  "netlist": str(ys["netlist"]), "nextpnr_log": str(pnr["log"]),
                  "nextpnr_report": str(pnr["report"])},
        "seconds": {"yosys": round(ys["seconds"], 2), "nextpnr": round(pnr["seconds"], 2)},
    }
    return report


def write_report(report: dict, path) -> pathlib.Path:
    """Write ``report`` as JSON to ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


_LABELS = {
    "ice40": {"luts": "LUT4 (SB_LUT4)", "ffs": "FF (SB_DFF*)", "carries": "carry (SB_CARRY)",
              "dsps": "DSP (SB_MAC16)", "ebr": "EBR (SB_RAM40_4K)",
              "spram": "SPRAM (SB_SPRAM256KA)", "lutram": None},
    "ecp5": {"luts": "LUT4", "ffs": "FF (TRELLIS_FF)", "carries": "carry (CCU2C)",
             "dsps": "DSP (MULT18X18D)", "ebr": "EBR (DP16KD)", "spram": None,
             "lutram": "LUTRAM (TRELLIS_DPR16X4)"},
}


def format_report(report: dict) -> str:
    """A small text table of ``report``."""
    tgt = target(report["target"])
    what = report.get("top", "design")
    if "preset" in report:
        what += f" (preset {report['preset']})"
    lines = [f"{what} on {tgt.name} ({tgt.device} {tgt.package}), "
             f"constraint {report['freq_mhz']:g} MHz",
             f"  {'resource':<26}{'component':>10}{'harness':>10}"]
    for key in RESOURCE_KEYS:
        label = _LABELS[tgt.family][key]
        if label is not None:
            lines.append(f"  {label:<26}{report['resources'][key]:>10}"
                         f"{report['harness'][key]:>10}")
    placed = report["placed"]
    used = [f"{placed['logic_cell']} {placed['logic_cells']}/{placed['logic_cells_available']}"]
    used += [f"{bel} {v['used']}/{v['available']}" for bel, v in placed["utilisation"].items()
             if v["used"] and bel != placed["logic_cell"]]
    lines.append("  placed with harness: " + ", ".join(used))
    for name, clock in report["clocks"].items():
        lines.append(f"  clock {name}: Fmax {format_fmax(clock)}, "
                     f"target {clock['constraint_mhz']:g} MHz: "
                     f"{'met' if clock['met'] else 'NOT MET'}")
        if clock["critical_path"]:
            cp = clock["critical_path"]
            lines.append(f"    critical path {cp['delay_ns']:.2f} ns: {cp['from']} -> {cp['to']}")
    lines += [f"  note: {note}" for note in report["notes"]]
    return "\n".join(lines)
