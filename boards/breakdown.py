"""Resources per module: where a design's logic goes (`ommatidia synth --breakdown`).

The component is synthesised a second time with its hierarchy kept (``synth_ecp5
-noflatten``, ``synth_ice40 -noflatten``) and Yosys ``stat`` counts the cells of each
module with its submodules. Submodules that differ only in their indices (``cell_0_1``,
``xbus_2``, ``col_mc_3``) make one row with their count, so a 12x14 array reads as one
``cell_*`` row of 168. Without optimisation across module boundaries the rows add up to a
little more than the flat synthesis of `ommatidia.boards.synth.synthesize` reports.
"""

from __future__ import annotations

import json
import pathlib
import re

from .synth import DUT_MODULE, RESOURCE_KEYS, TOP_NAME, Target, module_resources, run_yosys, \
    target

__all__ = ["BREAKDOWN_KEYS", "breakdown_script", "breakdown_rows", "run_breakdown",
           "format_breakdown"]

BREAKDOWN_KEYS = ("luts", "ffs", "carries", "dsps", "ebr", "lutram")
"""Columns of the table (`RESOURCE_KEYS` less the iCE40's SPRAM, which no module uses)."""

_HEADINGS = {"luts": "LUT4", "ffs": "FF", "carries": "carry", "dsps": "DSP", "ebr": "EBR",
             "lutram": "LUTRAM", "spram": "SPRAM"}


def breakdown_script(tgt: Target, *, dsp: bool = True) -> str:
    """The Yosys script: synthesis with the hierarchy kept, then ``stat -json``. Wires
    named with ``[`` lose their names first, in every module (`synth.PORT_ALIAS_FIX`
    does it for the component alone): ABC9 fails on them otherwise."""
    if tgt.family == "ice40":
        synth = f"synth_ice40 -top {TOP_NAME} -noflatten" + (" -dsp" if dsp else "")
    else:
        synth = f"synth_ecp5 -top {TOP_NAME} -noflatten" + ("" if dsp else " -nodsp")
    return "\n".join(["read_rtlil design.il", "chformal -remove",
                      "rename -hide w:*[[]* x:* %d", synth,
                      "tee -q -o stat.json stat -json", ""])


def _pattern(name: str) -> str:
    return re.sub(r"\d+", "*", name)


def breakdown_rows(stat: dict, tgt: Target, *, root: str = DUT_MODULE,
                   depth: int = 3) -> list[dict]:
    """Rows of the table from Yosys ``stat -json`` of a hierarchical synthesis.

    Each row: ``path`` (the module's name below ``root``, indices as ``*``), ``level``
    (0 for ``root``), ``count`` (modules the row stands for) and ``resources`` (their
    sum, with submodules, per `RESOURCE_KEYS`). A module with submodules shown gets a
    row ``(own logic)`` after them. Levels deeper than ``depth`` are summed into their
    parent.
    """
    names = [name.lstrip("\\") for name in stat["modules"]]
    if root not in names:
        raise ValueError(f"module {root} is not in the Yosys statistics "
                         f"(modules: {', '.join(sorted(names)[:5])}, ...)")

    def total(modules: list[str]) -> dict:
        sums = dict.fromkeys(RESOURCE_KEYS, 0)
        for name in modules:
            for key, n in module_resources(stat, name, tgt)[0].items():
                sums[key] += n
        return sums

    rows = []

    def visit(modules: list[str], path: str, level: int) -> None:
        rows.append({"path": path, "level": level, "count": len(modules),
                     "resources": total(modules)})
        if level == depth:
            return
        groups: dict = {}
        for parent in modules:
            for name in names:
                if name.startswith(parent + ".") and "." not in name[len(parent) + 1:]:
                    groups.setdefault(_pattern(name[len(parent) + 1:]), []).append(name)
        if not groups:
            return
        start = len(rows)
        for child, members in sorted(groups.items()):
            visit(members, f"{path}.{child}" if path else child, level + 1)
        own = dict(rows[start - 1]["resources"])
        for row in rows[start:]:
            if row["level"] == level + 1:
                for key in own:
                    own[key] -= row["resources"][key]
        rows.append({"path": f"{path} (own logic)" if path else "(own logic)",
                     "level": level + 1, "count": len(modules), "resources": own})

    visit([root], "", 0)
    return rows


def run_breakdown(component, target_name: str, build_dir, *, dsp: bool = True,
                  depth: int = 3, env: dict | None = None,
                  timeout: float | None = None) -> dict:
    """Synthesise ``component`` (in the synthesis harness) with its hierarchy kept; the
    rows (`breakdown_rows`), the Yosys runtime and the statistics' path."""
    tgt = target(target_name)
    ys = run_yosys(component, tgt, build_dir, dsp=dsp, env=env, timeout=timeout,
                   script=breakdown_script(tgt, dsp=dsp))
    stat = json.loads(pathlib.Path(ys["stat"]).read_text())
    return {"rows": breakdown_rows(stat, tgt, depth=depth), "seconds": ys["seconds"],
            "stat": str(ys["stat"]), "target": target_name}


def format_breakdown(rows: list[dict], keys=BREAKDOWN_KEYS) -> str:
    """The rows as an indented text table, a module and its count per line."""
    width = max(len("  " * r["level"] + r["path"].rsplit(".", 1)[-1]) + 6 for r in rows)
    lines = ["  ".join([f"{'module':<{width}}"] + [f"{_HEADINGS[k]:>7}" for k in keys])]
    for r in rows:
        name = r["path"].rsplit(".", 1)[-1] if "(own" not in r["path"] else "(own logic)"
        label = "  " * r["level"] + (name or "component")
        if r["count"] > 1:
            label += f" x{r['count']}"
        lines.append("  ".join([f"{label:<{width}}"]
                               + [f"{r['resources'][k]:>7}" for k in keys]))
    return "\n".join(lines)
