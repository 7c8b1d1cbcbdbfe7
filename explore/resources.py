"""FPGA resources of a configuration, estimated from components measured by synthesis.

The table ``resources.json`` beside this module holds the Yosys cell counts of a few
parameter points per FPGA family (``python -m ommatidia.explore.measure_resources``
made it): the PE, the PE array at two sizes and the whole ``tiny`` accelerator. A
configuration is estimated as ``rows * cols`` PEs, plus the NoC, plus the rest
(docs/sweep.md, Resources):

- the PE: the measured PE nearest in activation width, with the measured growth per
  ifmap spad entry and per psum spad entry (from the ``tiny`` PE with each spad
  doubled; a growth below zero, synthesis noise, counts as none) times the widths'
  ratio; each MAC lane past the first (`PEConfig.lanes`) adds `LANE` and takes a DSP
  block, or `LUT_MUL` instead of the DSP for a lane of ``lut_mul_lanes``;
- the NoC (GINs, GON, psum links): the measured arrays less their PEs, a line
  through the two sizes in the number of PEs, times the ratio of the buses' widths
  (weights, activations, two psum buses);
- the rest (GLB, senders, DMA with RLC, controller): the measured accelerator less its
  array, its block RAM scaled by the GLB's bytes (filters included).
"""

from __future__ import annotations

import functools
import json
import math
import pathlib

__all__ = ["FAMILIES", "RESOURCE_COLUMNS", "table", "estimate"]

TABLE = pathlib.Path(__file__).with_name("resources.json")

FAMILIES = ("ecp5", "ice40")

RESOURCE_COLUMNS = {"lut4": "luts", "ff": "ffs", "dsp": "dsps", "bram": "ebr"}
"""Sweep column -> resource key of `ommatidia.boards.synth.RESOURCE_KEYS` (block RAM:
DP16KD on ECP5, SB_RAM40_4K on iCE40)."""

_KEYS = tuple(RESOURCE_COLUMNS.values())

LANE = {"ecp5": {"luts": 200, "ffs": 60, "dsps": 1, "ebr": 0},
        "ice40": {"luts": 165, "ffs": 67, "dsps": 1, "ebr": 0}}
"""What a MAC lane adds to a PE: Yosys (``synth_ecp5``, ``synth_ice40 -dsp``) of one PE
without counters (`tiny`'s on ECP5: 472 -> 1071 LUT4, 346 -> 525 FF, 1 -> 4 MULT18X18D;
`icebreaker`'s with 4 psum spad entries on iCE40: 336 -> 830 LUT4, 284 -> 486 FF, 1 -> 4
SB_MAC16), over the 3 lanes added."""

LUT_MUL = {"ecp5": {"luts": 320, "ffs": 0, "dsps": -1, "ebr": 0},
           "ice40": {"luts": 168, "ffs": 28, "dsps": -1, "ebr": 0}}
"""What a lane of ``lut_mul_lanes`` adds to a lane: the same PEs with 2 of their 4 lanes
multiplying in logic (ECP5: 1711 LUT4, 2 MULT18X18D; iCE40: 1166 LUT4, 2 SB_MAC16)."""


@functools.cache
def table() -> dict:
    """The measured table (``resources.json``)."""
    return json.loads(TABLE.read_text())


def _points(family: str, top: str) -> list[dict]:
    try:
        points = table()["families"][family]["points"]
    except KeyError:
        raise ValueError(f"no resource table for FPGA family {family!r}; the families are "
                         f"{', '.join(sorted(table()['families']))}") from None
    return [p for p in points if p["top"] == top]


def _sub(a: dict, b: dict, k: float = 1.0) -> dict:
    return {key: a[key] - k * b[key] for key in _KEYS}


def _pe(family: str, pe) -> dict:
    """The estimated resources of one PE of `PEConfig` ``pe``."""
    points = _points(family, "pe")
    tiny = points[0]
    base = min(points, key=lambda p: (abs(p["pe"]["act_bits"] - pe.act_bits),
                                      abs(p["pe"]["psum_bits"] - pe.psum_bits)))
    out = dict(base["resources"])
    for field, width in (("ifmap_spad_depth", "act_bits"), ("psum_spad_depth", "psum_bits")):
        grown = next(p for p in points[1:] if p["pe"][field] != tiny["pe"][field])
        entries = grown["pe"][field] - tiny["pe"][field]
        scale = getattr(pe, width) / tiny["pe"][width]
        delta = getattr(pe, field) - base["pe"][field]
        for key in ("luts", "ffs"):
            per_entry = max(0.0, (grown["resources"][key] - tiny["resources"][key]) / entries)
            out[key] += per_entry * scale * delta
    for key in _KEYS:
        out[key] += (pe.lanes - 1) * LANE[family][key] + pe.lut_mul_lanes * LUT_MUL[family][key]
    return {key: max(0.0, out[key]) for key in _KEYS}


def _bus_bits(pe) -> int:
    return pe.weight_bits + pe.act_bits + 2 * pe.psum_bits


def _noc(family: str, cfg) -> dict:
    """The estimated resources of the NoC of ``cfg``: a line through the measured arrays
    less their PEs, in the number of PEs, scaled by the buses' widths."""
    (small, large), pe = _points(family, "array")[:2], _points(family, "pe")[0]
    n0, n1 = small["rows"] * small["cols"], large["rows"] * large["cols"]
    noc0 = _sub(small["resources"], pe["resources"], n0)
    noc1 = _sub(large["resources"], pe["resources"], n1)
    scale = _bus_bits(cfg.pe) / (pe["pe"]["weight_bits"] + pe["pe"]["act_bits"]
                                 + 2 * pe["pe"]["psum_bits"])
    n = cfg.rows * cfg.cols
    return {key: max(0.0, (noc0[key] + (noc1[key] - noc0[key]) * (n - n0) / (n1 - n0)) * scale)
            for key in _KEYS}


def _rest(family: str, cfg) -> dict:
    """The estimated resources of everything but the array: as measured, block RAM scaled
    by the GLB's bytes."""
    acc = _points(family, "accelerator")[0]
    array = next(p for p in _points(family, "array")
                 if (p["rows"], p["cols"]) == (acc["rows"], acc["cols"]))
    rest = _sub(acc["resources"], array["resources"])
    glb = cfg.glb_bytes + cfg.filter_glb_bytes
    rest["ebr"] = math.ceil(rest["ebr"] * glb / (acc["glb_bytes"] + acc["filter_glb_bytes"]))
    return {key: max(0.0, v) for key, v in rest.items()}


def estimate(cfg, family: str) -> dict:
    """Estimated LUT4, flip-flops, DSP blocks and block RAMs of ``cfg``'s accelerator on
    FPGA ``family`` (one of `FAMILIES`), as `RESOURCE_COLUMNS` -> integer."""
    pe, noc, rest = _pe(family, cfg.pe), _noc(family, cfg), _rest(family, cfg)
    n = cfg.rows * cfg.cols
    return {col: int(round(n * pe[key] + noc[key] + rest[key]))
            for col, key in RESOURCE_COLUMNS.items()}
