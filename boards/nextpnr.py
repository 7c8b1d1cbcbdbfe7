"""Reading nextpnr's log: router2's progress, the device utilisation, and why a build failed.

nextpnr's router2 (PathFinder-style negotiated congestion) never gives up on a
design it cannot route: its count of overused wires stops falling and it runs
on. `router2_stall` reads nextpnr's log and calls the design unroutable once
the count has risen `ROUTER2_PATIENCE` iterations running. A placement that
fails is summarised from the utilisation lines: the BEL types the design needs
more of than the device has (`overfull`), or, when every type fits, the fullest
one (`fullest`).
"""

from __future__ import annotations

import re

from ommatidia.gen.config import check_int

__all__ = ["ROUTERS", "DEFAULT_ROUTER", "ROUTER2_PATIENCE", "router2_stall",
           "router2_iterations", "stalled", "unroutable_summary", "utilisation", "overfull",
           "overfull_summary", "fullest", "unplaceable_summary"]

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
    return stalled(router2_iterations(log), patience)


def router2_iterations(log: str) -> list[tuple[int, int]]:
    """``(iteration, overused wires)`` of each router2 iteration in nextpnr log ``log``."""
    return [(int(i), int(n)) for i, n in _ROUTER2_ITERATION.findall(log)]


def stalled(iterations: list[tuple[int, int]], patience: int) -> dict | None:
    """`router2_stall`'s verdict on ``(iteration, overused wires)`` pairs."""
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


def utilisation(log: str) -> dict:
    """``{bel: {"used", "available"}}`` from nextpnr's device utilisation lines."""
    found = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log, re.M)
    return {bel: {"used": int(u), "available": int(a)} for bel, u, a in found}


def overfull(util: dict) -> dict:
    """BELs a design needs more of than the device has."""
    return {bel: v for bel, v in util.items() if v["used"] > v["available"]}


def overfull_summary(overfull: dict) -> str:
    """One phrase for the BEL types a design needs more of than the device has."""
    return ", ".join(f"{v['used']} {bel} of {v['available']}" for bel, v in overfull.items())


def fullest(util: dict) -> dict | None:
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
