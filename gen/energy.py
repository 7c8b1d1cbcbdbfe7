"""Normalised energy of a run with Eyeriss's cost table (docs/architecture.md, "The reference").

Chen et al. (ISCA 2016, JSSC 2017) normalise the energy of one access at each
level of the memory hierarchy to one MAC: DRAM 200x, GLB 6x, NoC (array, PE to
PE) 2x, spad (RF) 1x, MAC 1x. `energy` weighs access counts with this table;
the counts come from the analytical model (`ommatidia.gen.model`) or from the
accelerator's counters.
"""

from __future__ import annotations

__all__ = ["EYERISS_COST", "LEVELS", "energy"]

EYERISS_COST = {"dram": 200.0, "glb": 6.0, "noc": 2.0, "spad": 1.0, "mac": 1.0}
"""Energy of one access (one MAC) at each level, in units of one MAC."""

LEVELS = tuple(EYERISS_COST)


def energy(accesses: dict, cost: dict = EYERISS_COST) -> dict:
    """Energy per level (``accesses[level] * cost[level]``) and their ``"total"``.

    ``accesses`` maps each of `LEVELS` to a count; raises ValueError on a
    missing level, an unknown one or a negative count.
    """
    unknown = set(accesses) - set(cost)
    if unknown:
        raise ValueError(f"unknown memory levels {sorted(unknown)}; levels are {list(cost)}")
    out = {}
    for level, unit in cost.items():
        if level not in accesses:
            raise ValueError(f"accesses has no count for level {level!r}")
        count = accesses[level]
        if count < 0:
            raise ValueError(f"accesses[{level!r}] must not be negative, not {count}")
        out[level] = count * unit
    out["total"] = sum(out.values())
    return out
