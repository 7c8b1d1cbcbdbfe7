"""The board synthesis report: each board's build beside the closest open peer on its FPGA.

``python -m ommatidia.boards.synth_report`` (``make synth-report``) builds every
board of `ommatidia.boards.board.BOARDS` (or reads the reports of earlier
builds with ``--reuse``) and writes a markdown table: resources, Fmax, PEs,
MACs per cycle, LUT4 per MAC, peak GMAC/s (MACs per cycle x the PLL's clock) and,
where a report carries it, effective GMAC/s (a real layer's MACs over its cycles
at that clock), beside the same figures of the closest open design on the same
part (`PEERS`). Accelerators differ in what a PE is, so the comparison is in MACs
per cycle and GMAC/s, not in PEs.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
from dataclasses import dataclass

from ommatidia.boards.board import BOARDS, larger_arrays
from ommatidia.boards.build import build_or_error, default_build_dir, format_build
from ommatidia.boards.nextpnr import (DEFAULT_ROUTER, ROUTER2_PATIENCE, ROUTERS,
                                      overfull_summary, unplaceable_summary,
                                      unroutable_summary)

__all__ = ["Peer", "PEERS", "report_row", "board_rows", "markdown", "sweep_markdown",
           "effective", "main"]


@dataclass(frozen=True)
class Peer:
    """An open accelerator's published figures on one FPGA."""

    name: str
    device: str
    summary: str
    macs_per_cycle: int
    clock_mhz: float
    multipliers: str = ""
    luts: int | None = None

    @property
    def peak_gmacs(self) -> float:
        return self.macs_per_cycle * self.clock_mhz / 1000


PEERS: dict[str, Peer] = {
    "LFE5U-25F": Peer("Eyeriss-ECP5", "LFE5U-25F",
                      "2x2 PEs of four INT8 MACs, 20 of 28 multipliers", 16, 48.0, "20/28"),
}
"""The closest open peer per FPGA device; parts without one are left out."""


def effective(sweep_csv, clock_mhz: float) -> dict:
    """Effective GMAC/s of the layers of an ``ommatidia sweep`` CSV (the model's cycles,
    equal to the RTL's) at ``clock_mhz``: their MACs over their cycles, ``{"gmacs",
    "layers", "mapped", "network"}``; ``gmacs`` is None when no layer maps."""
    with open(sweep_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    ok = [r for r in rows if r["status"] == "ok"]
    macs = sum(int(r["macs"]) for r in ok)
    cycles = sum(int(r["cycles"]) for r in ok)
    return {"gmacs": round(macs * clock_mhz / cycles / 1000, 4) if cycles else None,
            "layers": len(rows), "mapped": len(ok),
            "network": rows[0]["network"] if rows else ""}


def _fmt_res(report: dict) -> dict:
    res, util = report["resources"], report["placed"]["utilisation"]
    logic = util.get(report["placed"]["logic_cell"], {"used": 0, "available": 0})
    ice40 = report["placed"]["logic_cell"] == "ICESTORM_LC"
    dsp_bel, ram_bel = ("ICESTORM_DSP", "ICESTORM_RAM") if ice40 else ("MULT18X18D", "DP16KD")
    dsp = util.get(dsp_bel, {"used": res["dsps"], "available": 0})
    ram = util.get(ram_bel, {"used": res["ebr"], "available": 0})
    return {
        "logic": f"{logic['used']}/{logic['available']} {'LC' if ice40 else 'LUT4 slots'}",
        "luts": str(res["luts"]), "ffs": str(res["ffs"]),
        "dsp": f"{dsp['used']}/{dsp['available']}",
        "ram": f"{ram['used']}/{ram['available']} EBR"
               + (f", {res['spram']} SPRAM" if ice40 else "")
               + (f", {res['lutram']} LUTRAM" if res["lutram"] else ""),
    }


def report_row(b, report: dict) -> dict:
    """The table cells of board ``b``'s `ommatidia.boards.build.build` report (or of a
    failed build's ``{"error": ...}``)."""
    cfg = b.config
    row = {"board": b.title, "preset": f"`{cfg.name}` {cfg.rows}x{cfg.cols}",
           "array": f"{cfg.rows}x{cfg.cols}", "pes": cfg.num_pes, "macs": cfg.macs_per_cycle,
           "clock": f"{b.clock_mhz:g}", "osc": f"{b.osc_mhz:g}",
           "peer": PEERS.get(b.make_platform().device)}
    if "error" in report:
        overfull = report.get("overfull") or {}
        stall = report.get("unroutable")
        if overfull:
            row["error"] = f"does not fit: {overfull_summary(overfull)}"
        elif stall:
            row["error"] = f"does not route: {unroutable_summary(stall)}"
        elif report.get("unplaceable"):
            row["error"] = f"does not place: {unplaceable_summary(report['unplaceable'])}"
        else:
            row["error"] = f"does not build: {report['error']}"
    else:
        row.update(_fmt_res(report))
        row["fmax"] = f"{report['fmax_mhz']:.1f}" + (" (capped)" if report["fmax_capped"]
                                                      else "")
        row["met"] = "met" if report["timing_met"] else "NOT MET"
        row["gmacs"] = f"{report['peak_gmacs']:.2f}"
        row["gmacs_fmax"] = f"{report['peak_gmacs_at_fmax']:.2f}"
        row["luts_per_mac"] = f"{report['resources']['luts'] / row['macs']:.0f}"
        eff = report.get("effective")
        if eff is None:
            row["effective"] = "-"
        elif eff["gmacs"] is None:
            row["effective"] = f"{eff['network']}: no layer maps"
        else:
            row["effective"] = (f"{eff['gmacs']:.3f} ({eff['network']}, {eff['mapped']} of "
                                f"{eff['layers']} layers)")
    return row


def board_rows(reports: dict) -> list[dict]:
    """One row per board name of ``reports`` (see `report_row`)."""
    return [report_row(BOARDS[name], report) for name, report in reports.items()]


def _peer_lines(row: dict) -> list[str]:
    """Ommatidia's board beside the peer on its part, one row each."""
    peer = row["peer"]
    if "error" in row:
        ours = [row["error"], "", "", "", "", ""]
    else:
        ours = [str(row["macs"]), f"{row['clock']} (PLL from {row['osc']})", row["gmacs"],
                row["luts_per_mac"], row["dsp"], row["effective"]]
    theirs = [str(peer.macs_per_cycle), f"{peer.clock_mhz:g}", f"{peer.peak_gmacs:.2f}",
              "-" if peer.luts is None else f"{peer.luts / peer.macs_per_cycle:.0f}",
              peer.multipliers or "-", "-"]
    return [f"| {peer.device} | Ommatidia, {row['board']} | " + " | ".join(ours) + " |",
            f"| {peer.device} | {peer.name}: {peer.summary} | " + " | ".join(theirs) + " |"]


def markdown(reports: dict) -> str:
    """The report as markdown: the boards' table and the peers beside them."""
    head = ["board", "preset", "PEs", "MACs/cycle", "logic", "LUT4", "LUT4/MAC", "FF", "DSP",
            "block RAM", "clock MHz", "Fmax MHz", "timing", "peak GMAC/s (clock)",
            "peak GMAC/s (Fmax)", "effective GMAC/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    peers = []
    for row in board_rows(reports):
        if "error" in row:
            cells = [row["board"], row["preset"], str(row["pes"]), str(row["macs"]),
                     row["error"]] + [""] * 5 + [row["clock"]] + [""] * 5
        else:
            cells = [row["board"], row["preset"], str(row["pes"]), str(row["macs"]),
                     row["logic"], row["luts"], row["luts_per_mac"], row["ffs"], row["dsp"],
                     row["ram"], row["clock"], row["fmax"], row["met"], row["gmacs"],
                     row["gmacs_fmax"], row["effective"]]
        lines.append("| " + " | ".join(cells) + " |")
        if row["peer"] is not None:
            peers += _peer_lines(row)
    out = ["## Boards", "", "Clock: the FPGA's PLL from the board oscillator; peak GMAC/s = "
           "MACs/cycle x clock; effective GMAC/s = the network's MACs / (cycles / clock), the "
           "cycles of `ommatidia sweep` (the model, equal to the RTL's) on the board's preset "
           "(`--effective`).", "", *lines, ""]
    if peers:
        out += ["Closest open peer on the same part (a PE is not the same unit in both; "
                "the peer's LUT count is not published):", "",
                "| part | design | MACs/cycle | clock MHz | peak GMAC/s | LUT4/MAC | "
                "multipliers | effective GMAC/s |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |", *peers, ""]
    return "\n".join(out)


def sweep_markdown(builds: list) -> str:
    """The check that each preset's array is the largest: ``builds`` lists ``(board,
    report)`` for each preset and its `ommatidia.boards.board.larger_arrays` (built with
    timing failures allowed, so their Fmax is known)."""
    head = ["board", "array", "PEs", "logic", "DSP", "block RAM", "Fmax MHz", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for b, report in builds:
        row = report_row(b, report)
        if "error" in row:
            cells = [row["error"], "", "", "", ""]
        else:
            verdict = "meets" if row["met"] == "met" else "misses"
            router = report.get("router", DEFAULT_ROUTER)
            cells = [row["logic"], row["dsp"], row["ram"], row["fmax"],
                     f"{verdict} {row['clock']} MHz"
                     + ("" if router == DEFAULT_ROUTER else f" (nextpnr {router})")]
        lines.append("| " + " | ".join([row["board"], row["array"], str(row["pes"])] + cells)
                     + " |")
    return "\n".join(["## Largest PE array per board", "",
                      "Each preset beside the arrays one PE row and one PE column larger "
                      "(`--sweep`): when none of those fits and meets the clock, the preset is "
                      "the largest array grown from it.", "", *lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ommatidia.boards.synth_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--boards", nargs="+", choices=list(BOARDS), default=list(BOARDS))
    parser.add_argument("--build-root", default="build/boards", metavar="DIR",
                        help="one build folder per board under DIR (default: build/boards)")
    parser.add_argument("--reuse", action="store_true",
                        help="read DIR/<board>/report.json where it exists instead of building")
    parser.add_argument("--sweep", action="store_true",
                        help="also build each board with one PE row and one PE column more "
                             "(in DIR/<board>-<rows>x<cols>, timing failures allowed) to show "
                             "the preset's array is the largest that fits and meets the clock")
    parser.add_argument("--router", choices=ROUTERS, default=DEFAULT_ROUTER,
                        help="nextpnr router of the builds this run makes "
                             f"(default: {DEFAULT_ROUTER})")
    parser.add_argument("--route-patience", type=int, default=ROUTER2_PATIENCE, metavar="N",
                        help="with router2, stop a build as unroutable once the overused "
                             f"wires rose N iterations running (default: {ROUTER2_PATIENCE})")
    parser.add_argument("--effective", action="append", default=[], metavar="BOARD=SWEEP.csv",
                        help="effective GMAC/s of BOARD from the sweep.csv of `ommatidia sweep "
                             "--preset P --network N` (repeatable)")
    parser.add_argument("-o", "--output", default="build/synth-report.md", metavar="FILE.md")
    args = parser.parse_args(argv)

    def report(b, **kwargs):
        out = default_build_dir(b, args.build_root)
        r = build_or_error(b, out, reuse=args.reuse, router=args.router,
                           route_patience=args.route_patience,
                           log=lambda line: print(line, file=sys.stderr, flush=True), **kwargs)
        print(f"{b.name} {r['array']}: {r['error']}" if "error" in r else format_build(r),
              file=sys.stderr if "error" in r else sys.stdout, flush=True)
        return r

    sweeps = {}
    for item in args.effective:
        name, sep, path = item.partition("=")
        if not sep or name not in BOARDS or not pathlib.Path(path).is_file():
            parser.error(f"--effective {item}: need BOARD=SWEEP.csv with BOARD one of "
                         f"{', '.join(BOARDS)} and an existing file")
        sweeps[name] = path
    reports = {name: report(BOARDS[name]) for name in args.boards}
    for name, path in sweeps.items():
        if name in reports and "error" not in reports[name]:
            reports[name]["effective"] = effective(path, BOARDS[name].clock_mhz)
    text = markdown(reports)
    if args.sweep:
        text += "\n" + sweep_markdown([
            (b, reports[name] if b.array is None else report(b, allow_timing_fail=True))
            for name in args.boards for b in [BOARDS[name], *larger_arrays(BOARDS[name])]])
    path = pathlib.Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print(f"wrote {path}")
    return 0 if all("error" not in r for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
