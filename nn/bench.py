"""`make bench`: AlexNet on the `eyeriss` preset's Verilog, beside the model and Eyeriss.

Each layer (`ommatidia.nn.alexnet.ALEXNET`) is mapped and compiled, run on
the generated `System` under Verilator, compared bit-exact with the golden
model, and predicted by the analytical model (`ommatidia.gen.model`). The
ifmaps are random with Eyeriss's measured sparsity per layer (docs/architecture.md,
"The reference": ~0 % zeros in CONV1, 39 % in CONV2, 73-79 % in CONV3-5), the
weights random 8-bit values, the output stage ReLU and a shift of 8. CONV1's
ifmap, the network's input that the host writes, is stored raw in DRAM; the
others RLC-coded, as the ``DMA_OUT`` of the layer before writes them
(`RAW_INPUT`).

FC6-FC8 are weight-bound (one DMA word per four weights and no reuse at batch
1): at full size FC6 alone streams 9.4 M DRAM words, hours in the simulator, so
they run with their filter count M divided by ``--fc-divisor`` (16 by default)
and the table says so.

Writes ``alexnet.json`` and ``alexnet.md`` into ``--out`` and prints the
table; progress goes to stdout per layer, and a bar of the running layer's cycles
against the model's to standard error when it is a terminal (not with ``--quiet``,
nor with ``--jobs`` above 1: then that many processes, 2 by default, each build the
`System` once in ``--build``/w<k> and simulate a layer at a time).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import time

import numpy as np

__all__ = ["SPARSITY", "RAW_INPUT", "BENCH_DRAM_WORDS", "run_bench", "main"]

BENCH_DRAM_WORDS = 1 << 20
"""Simulated DRAM of the bench (8 MiB): every layer runs on one Verilator build."""

SPARSITY = {"CONV1": 0.0, "CONV2": 0.39, "CONV3": 0.73, "CONV4": 0.79, "CONV5": 0.78,
            "FC6": 0.5, "FC7": 0.5, "FC8": 0.5}
"""Fraction of zero ifmap values per layer (Eyeriss's measurements for CONV1-5)."""

RAW_INPUT = frozenset({"CONV1"})
"""Layers whose ifmap the host writes (the network's input, no zeros to code), stored
raw (``ifmap_coding="raw"``); every other layer's is RLC-coded."""


def compile_bench_layer(cfg, name, layer, *, seed: int):
    """``layer`` compiled with the bench's data: random 8-bit ifmaps with Eyeriss's measured
    sparsity for ``name`` (`SPARSITY`), stored raw for the first layer (`RAW_INPUT`), and
    random weights drawn with ``seed``, ReLU and a shift of 8."""
    from ommatidia.gen.compiler import compile_layer
    from ommatidia.sim.array_model import random_values
    rng = np.random.default_rng(seed)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), SPARSITY[name])
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S))
    return compile_layer(cfg, layer, x, w, relu=True, shift=8,
                         ifmap_coding="raw" if name in RAW_INPUT else "rlc")


def bench_layer(cfg, name, layer, *, seed: int, sim: str, build_dir, log=print,
                quiet: bool = False) -> dict:
    """Compile, run and predict one layer; the row of the table. While the simulator runs,
    a bar of its cycles against the model's is drawn on standard error when that is a
    terminal and not ``quiet`` (`ommatidia.sim.progress.progress`)."""
    from ommatidia.gen.model import predict
    from ommatidia.sim.accelerator import PROGRESS, run_layers
    from ommatidia.sim.progress import progress

    if not cfg.counter_bits:
        raise ValueError(f"the bench compares the cycle counter with the model; preset "
                         f"{cfg.name} has no counters (ArrayConfig.counter_bits = 0)")
    t0 = time.monotonic()
    prog = compile_bench_layer(cfg, name, layer, seed=seed)
    mapping = prog.mapping.describe(layer)
    model = predict(prog)
    log(f"{name}: {layer.macs / 1e6:.1f} M MACs, mapped as {mapping['pe_set_on_array']} "
        f"(strips {mapping['strips']}, x{mapping['replication']['channels']} on channels, "
        f"x{mapping['replication']['filters']} on filters), p={mapping['p']} q={mapping['q']}, "
        f"{prog.passes} passes; model: {model.cycles} cycles; compiled in "
        f"{time.monotonic() - t0:.0f} s; simulating (progress every {PROGRESS:,} cycles in "
        f"{build_dir}/system_*/test.log) ...", flush=True)
    t1 = time.monotonic()
    with progress(model.cycles, desc=name, unit=" cycles", quiet=quiet) as bar:
        (run,) = run_layers(cfg, [prog], sim=sim, build_dir=build_dir,
                            dram_words=BENCH_DRAM_WORDS, progress=PROGRESS,
                            watch=lambda jobs, cycles: bar.update(cycles - bar.n))
    wall = time.monotonic() - t1
    rep = run.report
    dram = rep["dram_words_read"] + rep["dram_words_written"]
    row = {
        "layer": name, "shape": dataclasses.asdict(layer), "macs": layer.macs,
        "mapping": mapping, "active_pes": _active_pes(prog),
        "cycles": rep["cycles"], "model_cycles": model.cycles,
        "model_error": (model.cycles - rep["cycles"]) / rep["cycles"],
        "pe_utilization": rep["pe_utilization"], "gated_fraction": rep["gated_fraction"],
        "dram_words": dram, "dram_words_per_mac": dram / layer.macs,
        "dram_values_per_mac": dram * cfg.dram_bits / cfg.pe.act_bits / layer.macs,
        "bit_exact": run.bit_exact, "status": run.status, "sim_wall_s": round(wall, 1),
        "energy": model.energy,
    }
    log(f"{name}: {rep['cycles']} cycles (model {model.cycles}, {row['model_error']:+.2%}), "
        f"utilization {rep['pe_utilization']:.1%}, bit-exact {run.bit_exact}, "
        f"{wall:.0f} s in {sim}", flush=True)
    return row


def _active_pes(prog) -> int:
    """PEs enabled in the pass that enables the most."""
    return max(bin(ps.config["enable"]).count("1") for r in prog.rounds for ld in r.loads
               for ps in ld.passes)


def table(rows, fc_divisor: int) -> str:
    """The markdown table of ``rows``."""
    from ommatidia.nn.alexnet import EYERISS_ALEXNET, eyeriss_figures
    lines = ["| layer | MACs (M) | active PEs (Eyeriss) | cycles | model cycles | model error "
             "| PE utilization | gated MACs | DRAM words/MAC | DRAM 16-bit values/MAC (Eyeriss) "
             "| bit-exact | sim wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = eyeriss_figures(r["layer"]) if r["layer"] in EYERISS_ALEXNET else None
        name = r["layer"] if not r["layer"].startswith("FC") else \
            f"{r['layer']} (M/{fc_divisor})"
        pes = f"{r['active_pes']}" + (f" ({ref['active_pes']})" if ref else "")
        dram = f"{r['dram_values_per_mac']:.4f}" + \
            (f" ({ref['dram_values_per_mac']:.4f})" if ref else "")
        lines.append(
            f"| {name} | {r['macs'] / 1e6:.1f} | {pes} | {r['cycles']} | {r['model_cycles']} "
            f"| {r['model_error']:+.2%} | {r['pe_utilization']:.1%} | {r['gated_fraction']:.1%} "
            f"| {r['dram_words_per_mac']:.5f} | {dram} | {r['bit_exact']} "
            f"| {r['sim_wall_s']} |")
    return "\n".join(lines) + "\n"


def model_row(cfg, name, layer, *, seed: int) -> dict:
    """One layer mapped, compiled and predicted by the analytical model alone (no RTL):
    cycles, PE utilization and DRAM traffic, program words counted."""
    from ommatidia.gen.model import predict
    prog = compile_bench_layer(cfg, name, layer, seed=seed)
    pred = predict(prog)
    c = pred.counters
    words = c["dram_words_read"] + c["dram_words_written"] + c["program_words"]
    return {"layer": name, "batch": layer.N, "macs": layer.macs, "cycles": pred.cycles,
            "pe_utilization": layer.macs / (cfg.num_pes * pred.cycles),
            "dram_words": words, "program_words": c["program_words"],
            "dram_values_per_mac": words * cfg.dram_bits / 16 / layer.macs,
            "mapping": prog.mapping.describe(layer), "passes": prog.passes,
            "commands": dict(pred.by_op)}


def model_table(rows, cfg) -> str:
    """The markdown table of `model_row` rows with a MAC-weighted overall row."""
    from ommatidia.nn.alexnet import EYERISS_ALEXNET, eyeriss_figures
    lines = ["| layer | batch | MACs (M) | PE set on the array, p, q | cycles (model) "
             "| PE utilization | DRAM 16-bit values/MAC, program counted (Eyeriss) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = eyeriss_figures(r["layer"]) if r["layer"] in EYERISS_ALEXNET else None
        d = r["mapping"]
        lines.append(
            f"| {r['layer']} | {r['batch']} | {r['macs'] / 1e6:.1f} | {d['pe_set_on_array']}, "
            f"{d['p']}, {d['q']} | {r['cycles']:,} | {r['pe_utilization']:.1%} "
            f"| {r['dram_values_per_mac']:.4f}"
            + (f" ({ref['dram_values_per_mac']:.4f})" if ref else "") + " |")
    macs = sum(r["macs"] for r in rows)
    cycles = sum(r["cycles"] for r in rows)
    values = sum(r["dram_words"] for r in rows) * cfg.dram_bits / 16
    lines.append(f"| overall | | {macs / 1e6:.1f} | | {cycles:,} "
                 f"| {macs / (cfg.num_pes * cycles):.1%} | {values / macs:.4f} (0.0029) |")
    return "\n".join(lines) + "\n"


def run_model(names, *, batch: int = 1, seed: int = 1, out="build/bench", log=print):
    """`model_row` for each layer at ``batch`` images; writes alexnet_model_b<batch>.md."""
    from ommatidia.gen.config import EYERISS
    from ommatidia.nn.alexnet import ALEXNET
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        layer = dataclasses.replace(ALEXNET[name], N=batch)
        t0 = time.monotonic()
        rows.append(model_row(EYERISS, name, layer, seed=seed + list(ALEXNET).index(name)))
        r = rows[-1]
        shares = ", ".join(f"{op} {c / r['cycles']:.1%}" for op, c in
                           sorted(r["commands"].items(), key=lambda kv: -kv[1]) if c)
        log(f"{name}: {r['cycles']} cycles, {r['pe_utilization']:.1%} "
            f"({time.monotonic() - t0:.0f} s); cycles by command: {shares}", flush=True)
    (out / f"alexnet_model_b{batch}.md").write_text(model_table(rows, EYERISS))
    return rows


def run_bench(names, *, fc_divisor: int = 16, seed: int = 1, sim: str = "verilator",
              build_dir="build/bench", out="build/bench", log=print,
              quiet: bool = False, jobs: int = 1, bench=None) -> list[dict]:
    """`bench_layer` on each AlexNet layer of ``names``, the rows in that order. With
    ``jobs`` > 1 the layers run in that many processes, each on its own build of the
    `System` in ``build_dir/w<k>`` (a simulator runs on one core; the builds share
    Verilator's run-time library, `ommatidia.sim.objcache`), taking the next layer as
    they finish one; without progress bars. ``bench`` replaces `_bench` (a module-level
    function, which the processes import)."""
    from ommatidia.nn.alexnet import ALEXNET
    bench = bench or _bench
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers = {}
    for name in names:
        layer = ALEXNET[name]
        if name.startswith("FC"):
            layer = dataclasses.replace(layer, M=layer.M // fc_divisor)
        layers[name] = layer
    rows = {}

    def done(name: str, row: dict) -> None:
        rows[name] = row
        ordered = [rows[n] for n in names if n in rows]
        (out / "alexnet.json").write_text(json.dumps(ordered, indent=2) + "\n")
        (out / "alexnet.md").write_text(table(ordered, fc_divisor))

    jobs = min(jobs, len(names))
    if jobs <= 1:
        for k, name in enumerate(names):
            log(f"[{k + 1}/{len(names)}] {name} {layers[name]}", flush=True)
            done(name, bench(name, layers[name], seed, sim, build_dir, log, quiet))
        return [rows[n] for n in names]
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Value("i", 0)
    log(f"{len(names)} layers in {jobs} processes, builds in {build_dir}/w0..w{jobs - 1}",
        flush=True)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker,
                                                initargs=(started, str(build_dir))) as pool:
        futures = {pool.submit(bench, name, layers[name], seed, sim, None, None, True): name
                   for name in names}
        for k, future in enumerate(concurrent.futures.as_completed(futures)):
            name = futures[future]
            done(name, future.result())
            log(f"[{k + 1}/{len(names)}] {name} done", flush=True)
    return [rows[n] for n in names]


_WORKER_BUILD = None
"""This worker process's build folder (`_worker`)."""


def _worker(started, build_dir: str) -> None:
    """A bench worker's start: the next free build folder ``build_dir/w<k>``."""
    global _WORKER_BUILD
    with started.get_lock():
        _WORKER_BUILD = pathlib.Path(build_dir) / f"w{started.value}"
        started.value += 1


def worker_build(build_dir=None) -> pathlib.Path:
    """``build_dir``, or in a bench process without it its own folder (`_worker`)."""
    return pathlib.Path(build_dir or _WORKER_BUILD)


def _bench(name, layer, seed, sim, build_dir, log, quiet) -> dict:
    """`bench_layer` of AlexNet's ``name`` (its data seeded by its place in the network)
    in `worker_build` (``build_dir``), logging to stdout when ``log`` is None."""
    from ommatidia.gen.config import EYERISS
    from ommatidia.nn.alexnet import ALEXNET
    return bench_layer(EYERISS, name, layer, seed=seed + list(ALEXNET).index(name), sim=sim,
                       build_dir=worker_build(build_dir), log=log or print, quiet=quiet)


def main(argv=None) -> int:
    from ommatidia.nn.alexnet import ALEXNET
    parser = argparse.ArgumentParser(prog="python -m ommatidia.nn.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default=",".join(ALEXNET),
                        help="comma-separated AlexNet layers (default: all)")
    parser.add_argument("--fc-divisor", type=int, default=16,
                        help="divide the FC layers' filter count M by this (default 16)")
    parser.add_argument("--seed", type=int, default=1,
                        help="layer i of AlexNet draws its data with seed + i, so a run of "
                             "some layers repeats the full bench's rows (default 1)")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    parser.add_argument("--build", default="build/bench")
    parser.add_argument("--out", default="build/bench")
    parser.add_argument("--model", action="store_true",
                        help="the analytical model only (no RTL): cycles, PE utilization and "
                             "DRAM traffic per layer, at --batch images")
    parser.add_argument("--batch", type=int, default=1,
                        help="images per layer with --model (default 1; Eyeriss: 4)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="layers simulated at once, each process on its own build "
                             "(default: 2, or 1 on one core)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (one is drawn on standard error when it is a "
                             "terminal)")
    args = parser.parse_args(argv)
    names = [n.strip().upper() for n in args.layers.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALEXNET]
    if unknown:
        parser.error(f"unknown layers {unknown}; AlexNet has {list(ALEXNET)}")
    if args.fc_divisor < 1:
        parser.error("--fc-divisor must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.model:
        from ommatidia.gen.config import EYERISS
        print(model_table(run_model(names, batch=args.batch, seed=args.seed, out=args.out),
                          EYERISS))
        return 0
    rows = run_bench(names, fc_divisor=args.fc_divisor, seed=args.seed, sim=args.sim,
                     build_dir=args.build, out=args.out, quiet=args.quiet, jobs=args.jobs)
    print(table(rows, args.fc_divisor))
    bad = [r["layer"] for r in rows if not r["bit_exact"]]
    if bad:
        print(f"NOT bit-exact: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
