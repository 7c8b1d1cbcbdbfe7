"""A sweep's check on the Verilog: random layers of a configuration run under Verilator.

`rtl_check` draws layers that fit the array (`random_layer`, as the tests draw them),
compiles them on random data and runs them in one simulation of the configuration's
`System` (`ommatidia.sim.accelerator.run_layers`, its build kept in the folder given);
each must be bit-exact with the golden model and its cycles and counters equal to the
analytical model's.
"""

from __future__ import annotations

import time

import numpy as np

from ommatidia.gen.layer import ConvLayer

__all__ = ["RTL_COLUMNS", "random_layer", "rtl_check"]

LAYER_FIELDS = ("N", "C", "M", "H", "W", "R", "S", "U", "P")

RTL_COLUMNS = ("config", "name", "index", "status", "reason", *LAYER_FIELDS, "zeros", "cycles",
               "model_cycles", "bit_exact", "model_exact", "seed", "seconds")
"""The columns of ``rtl.csv``: status ``ok`` when bit-exact and the model exact,
``mismatch`` otherwise, ``no_mapping`` for a drawn layer that does not compile,
``error`` for a failed build or simulation."""


def random_layer(cfg, rng) -> ConvLayer:
    """A small layer whose R x E PE set fits the array and whose rows fit the PE (the
    tests draw theirs with it too, tests/helpers.py)."""
    R = int(rng.integers(1, min(3, cfg.rows, cfg.pe.max_filter_width) + 1))
    U = int(rng.integers(1, 3))
    P = int(rng.integers(0, 2))
    E = int(rng.integers(1, min(4, cfg.cols) + 1))
    F = int(rng.integers(1, 6))
    H = max(1, (E - 1) * U + R - 2 * P + int(rng.integers(0, U)))
    W = max(1, (F - 1) * U + R - 2 * P + int(rng.integers(0, U)))
    return ConvLayer(N=int(rng.integers(1, 3)), C=int(rng.integers(1, 5)),
                     M=int(rng.integers(1, 6)), H=H, W=W, R=R, S=R, U=U, P=P)


def rtl_check(cfg, count: int, indexes, seed: int, build_dir) -> list[dict]:
    """Rows (`RTL_COLUMNS` less the configuration's) of layers ``indexes`` of the
    ``count`` drawn from ``seed`` for ``cfg``, run on its Verilog (Verilator) in
    ``build_dir``."""
    from ommatidia.gen.compiler import compile_layer
    from ommatidia.sim.accelerator import run_layers
    from ommatidia.sim.array_model import random_values
    rng = np.random.default_rng(seed)
    drawn = []
    for k in range(count):
        layer = random_layer(cfg, rng)
        zeros = round(float(rng.uniform(0, 0.9)), 3)
        x = random_values(rng, cfg.pe.act_bits, (layer.N, layer.C, layer.H, layer.W), zeros)
        w = random_values(rng, cfg.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S), 0.1)
        drawn.append((k, layer, zeros, x, w))
    rows, progs = {}, []
    for k, layer, zeros, x, w in drawn:
        if k not in indexes:
            continue
        rows[k] = {"index": k, **{f: getattr(layer, f) for f in LAYER_FIELDS}, "zeros": zeros,
                   "seed": seed}
        try:
            progs.append((k, compile_layer(cfg, layer, x, w)))
        except ValueError as exc:
            rows[k].update(status="no_mapping", reason=str(exc))
    start = time.monotonic()
    runs = run_layers(cfg, [p for _, p in progs], sim="verilator", build_dir=build_dir) \
        if progs else []
    for (k, _), run in zip(progs, runs):
        rep = run.report
        ok = run.status == 2 and run.bit_exact and rep["model_exact"]
        reasons = [] if ok else [
            *([f"status {run.status:#x}"] if run.status != 2 else []),
            *(["ofmap differs from the golden model"] if not run.bit_exact else []),
            *([f"RTL - model = {rep['cycles'] - rep['model_cycles']:+d} cycles or a counter "
               f"differs"] if not rep["model_exact"] else [])]
        rows[k].update(status="ok" if ok else "mismatch", reason="; ".join(reasons),
                       cycles=rep["cycles"], model_cycles=rep["model_cycles"],
                       bit_exact=run.bit_exact, model_exact=rep["model_exact"],
                       seconds=round(time.monotonic() - start, 1))
    return [rows[k] for k in sorted(rows)]
