"""A sweep: every (configuration, layer) of a grid through the mapper and the model, on Dask.

`grid` crosses the values given for some configuration fields (``--vary rows=8,12,16``)
on a preset; each configuration that validates meets each layer of a network
(`ommatidia.explore.networks`) in `evaluate`, which compiles the layer on random data
(`ommatidia.gen.compiler.compile_layer`, as ``ommatidia map`` does) and runs the
analytical model on its program (`ommatidia.gen.model.predict`). `run_sweep` sends the
points to a Dask cluster (a `LocalCluster` of worker processes, or a scheduler's
address), writes each result as a row of ``DIR/sweep.csv`` as it arrives, skips the
points the CSV already holds, adds the estimated FPGA resources
(`ommatidia.explore.resources`) and draws the Pareto front (`ommatidia.explore.pareto`)
to ``DIR/pareto.png``. ``--rtl K`` runs K random layers per configuration on the
Verilog on the same workers (`ommatidia.explore.rtl`). docs/sweep.md has the columns.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import os
import pathlib
import time
from dataclasses import dataclass

from ommatidia.gen.config import EYERISS, ArrayConfig, config_fields, configure, parse_sets

from .networks import NetLayer, network_layers
from .pareto import config_totals, pareto_front, plot_pareto
from .resources import FAMILIES, RESOURCE_COLUMNS, estimate
from .rtl import RTL_COLUMNS, rtl_check

__all__ = ["STATUSES", "LEVELS", "COLUMNS", "ConfigPoint", "parse_vary", "grid", "evaluate",
           "read_rows", "run_sweep"]

STATUSES = {
    "ok": "modelled",
    "invalid": "the configuration does not validate (its ValueError is the reason)",
    "no_mapping": "the layer does not compile on the configuration (no mapping fits)",
    "too_large": "the layer needs more passes than the model interprets in about a minute",
    "error": "anything else went wrong (retried by the next run)",
}
"""The ``status`` column's values."""

LEVELS = ("dram", "glb", "noc", "spad", "mac")
LAYER_FIELDS = ("N", "C", "M", "H", "W", "R", "S", "U", "P")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


CONFIG_COLUMNS = tuple(_flat(config_fields(EYERISS)))
"""The configuration's fields as columns (``pe.``, ``noc.``, ``rlc.`` prefixed)."""

METRIC_COLUMNS = ("cycles", "pe_utilization", "passes", "dram_words_read",
                  "dram_words_written", "program_words",
                  *(f"accesses_{level}" for level in LEVELS),
                  *(f"energy_{level}" for level in (*LEVELS, "total")))

COLUMNS = ("config", "network", "layer", "status", "reason", *CONFIG_COLUMNS, *LAYER_FIELDS,
           "groups", "macs", *METRIC_COLUMNS, "family", *RESOURCE_COLUMNS, "zeros", "seed",
           "seconds")
"""The columns of ``sweep.csv``, in order."""


def field_key(name: str) -> str:
    """The configuration column of ``name``: a field of `ArrayConfig` (``rows``), a nested
    one given as ``pe.ifmap_spad_depth`` or by its own name when only one section has it
    (``ifmap_spad_depth``)."""
    fields = config_fields(EYERISS)
    sections = [s for s, v in fields.items() if isinstance(v, dict)]
    if name in CONFIG_COLUMNS and name != "name":
        return name
    owners = [s for s in sections if name in fields[s]]
    if len(owners) == 1:
        return f"{owners[0]}.{name}"
    raise ValueError(f"--vary {name} is not a configuration field; the fields are "
                     f"{', '.join(c for c in CONFIG_COLUMNS if c != 'name')} (a nested one "
                     f"also by its own name)")


def parse_vary(items) -> dict[str, tuple[str, ...]]:
    """``KEY=V1,V2,...`` strings as {configuration column: values (strings)}."""
    out = {}
    for item in items:
        key, sep, values = item.partition("=")
        vals = tuple(v.strip() for v in values.split(","))
        if not sep or not key.strip() or not all(vals):
            raise ValueError(f"--vary takes KEY=V1,V2,... (rows=8,12,16), not {item!r}")
        key = field_key(key.strip())
        if key in out:
            raise ValueError(f"--vary {key} is given twice")
        if len(set(vals)) != len(vals):
            raise ValueError(f"--vary {key} gives a value twice ({values})")
        out[key] = vals
    return out


@dataclass(frozen=True, eq=False)
class ConfigPoint:
    """One configuration of a grid: the varied ``settings`` (column, value text), all its
    ``fields`` (column -> value), its ``key`` (a hash of the fields but the name), and the
    `ArrayConfig`, or None and the ``reason`` it does not validate."""

    settings: tuple
    fields: dict
    key: str
    config: ArrayConfig | None
    reason: str = ""

    @property
    def label(self) -> str:
        return " ".join(f"{k.rpartition('.')[2]}={v}" for k, v in self.settings)


def _key(fields: dict) -> str:
    text = json.dumps({k: v for k, v in fields.items() if k != "name"}, sort_keys=True,
                      default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _typed(key: str, value: str):
    """``value`` as the field's type when it reads as one, else the text."""
    try:
        return _flat(parse_sets([f"{key}={value}"]))[key]
    except ValueError:
        return value


def grid(base: ArrayConfig, vary: dict) -> list[ConfigPoint]:
    """Every combination of the ``vary`` values (`parse_vary`) on preset ``base``, in
    order (the last key varies fastest)."""
    keys = list(vary)
    out = []
    for values in itertools.product(*(vary[k] for k in keys)):
        settings = tuple(zip(keys, values))
        try:
            cfg = configure(base, None, [f"{k}={v}" for k, v in settings])
        except ValueError as exc:
            fields = {**_flat(config_fields(base)), **{k: _typed(k, v) for k, v in settings}}
            fields["name"] = f"{base.name}-invalid"
            out.append(ConfigPoint(settings, fields, _key(fields), None, str(exc)))
            continue
        fields = _flat(config_fields(cfg))
        out.append(ConfigPoint(settings, fields, _key(fields), cfg))
    return out


def evaluate(cfg: ArrayConfig, layer, groups: int = 1, zeros: float = 0.5,
             seed: int = 1) -> dict:
    """The model's figures of ``layer`` on ``cfg`` (times ``groups``: one run per group),
    on random data (8-bit at most, a ``zeros`` share of zero activations, ``seed``) as
    ``ommatidia map`` draws it: the metric columns, ``status`` and ``reason``. A layer that
    does not compile or is too large is a status, not an exception."""
    from ommatidia.gen.compiler import compile_layer
    from ommatidia.gen.model import predict
    from ommatidia.gen.prediction import check_scale
    from ommatidia.sim.array_model import model_data
    start = time.monotonic()
    try:
        check_scale(cfg, layer)
    except ValueError as exc:
        return {"status": "too_large", "reason": str(exc)}
    x, w = model_data(cfg, layer, zeros, seed)
    try:
        prog = compile_layer(cfg, layer, x, w)
        pred = predict(prog)
    except ValueError as exc:
        return {"status": "no_mapping", "reason": str(exc)}
    c = pred.counters
    return {
        "status": "ok", "reason": "", "cycles": groups * pred.cycles,
        "pe_utilization": round(pred.pe_utilization, 6), "passes": groups * prog.passes,
        **{k: groups * int(c[k]) for k in ("dram_words_read", "dram_words_written",
                                           "program_words")},
        **{f"accesses_{level}": groups * int(pred.accesses[level]) for level in LEVELS},
        **{f"energy_{level}": groups * float(pred.energy[level]) for level in (*LEVELS, "total")},
        "seconds": round(time.monotonic() - start, 3),
    }


def _safe_evaluate(*args) -> dict:
    """`evaluate`, any other exception as status ``error`` (its type and message)."""
    try:
        return evaluate(*args)
    except Exception as exc:  # a bug in one point must not stop a long sweep
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}


def read_rows(path) -> list[dict]:
    """The rows of a CSV written by a sweep (none when there is no file)."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _Table:
    """A CSV file with ``columns`` that starts with the ``rows`` kept from a previous run
    and gets each new row appended and flushed (an interrupted sweep keeps its rows)."""

    def __init__(self, path, columns, rows):
        self.path, self.columns = pathlib.Path(path), columns
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, columns, extrasaction="ignore")

    def add(self, row: dict) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _row(point: ConfigPoint, network: str, nl: NetLayer, family: str, resources: dict,
         zeros: float, seed: int, result: dict) -> dict:
    return {"config": point.key, "network": network, "layer": nl.name, **point.fields,
            **{k: getattr(nl.layer, k) for k in LAYER_FIELDS}, "groups": nl.groups,
            "macs": nl.groups * nl.layer.macs, "family": family,
            **resources.get(point.key, {}), "zeros": zeros, "seed": seed, **result}


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A Dask client: on the scheduler at ``scheduler`` (``tcp://HOST:8786``), else on a
    `LocalCluster` of ``workers`` processes (default: the CPUs) of one thread each."""
    from dask.distributed import Client, LocalCluster
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    # the scheduler's HTTP server on a free local port: a second sweep does not warn that
    # the first one holds the default port
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def _todo(points, layers, done) -> list:
    return [(p, nl) for p in points for nl in layers if (p.key, nl.name) not in done]


def run_sweep(base: ArrayConfig, vary: dict, network: str, out_dir, *,
              scheduler: str | None = None, workers: int | None = None, family: str = "ecp5",
              zeros: float = 0.5, seed: int = 1, rtl: int = 0, quiet: bool = False) -> dict:
    """Sweep the `grid` of ``vary`` on ``base`` over ``network``'s layers into ``out_dir``.

    Returns a summary: ``points`` (configurations x layers), ``skipped`` (done by an
    earlier run), ``ran``, ``statuses`` (count per status over the CSV), ``configs``,
    ``front`` (the Pareto front's totals), the paths, and with ``rtl`` the RTL rows run.
    """
    from ommatidia.sim.progress import progress
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if rtl < 0:
        raise ValueError(f"--rtl must be at least 0, not {rtl}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name, layers = network_layers(network)
    points = grid(base, vary)
    resources = {p.key: estimate(p.config, family) for p in points if p.config is not None}
    csv_path, rtl_path = out / "sweep.csv", out / "rtl.csv"
    kept = [r for r in read_rows(csv_path) if r.get("status") in STATUSES
            and r["status"] != "error"]
    for r in kept:  # the resource estimate follows --family on every row of the grid
        if r["config"] in resources:
            r.update(family=family, **resources[r["config"]])
    done = {(r["config"], r["layer"]) for r in kept if r["network"] == name}
    todo = _todo(points, layers, done)
    rtl_kept = [r for r in read_rows(rtl_path) if r.get("status") != "error"]
    rtl_done = {(r["config"], int(r["index"])) for r in rtl_kept}
    rtl_todo = [(p, [k for k in range(rtl) if (p.key, k) not in rtl_done])
                for p in points if p.config is not None] if rtl else []
    rtl_todo = [(p, ks) for p, ks in rtl_todo if ks]
    table = _Table(csv_path, COLUMNS, kept)
    rtl_table = _Table(rtl_path, RTL_COLUMNS, rtl_kept) if rtl or rtl_kept else None
    ran = rtl_ran = 0
    try:
        for p, nl in todo:
            if p.config is None:
                table.add(_row(p, name, nl, family, resources, zeros, seed,
                               {"status": "invalid", "reason": p.reason}))
                ran += 1
        work = [(p, nl) for p, nl in todo if p.config is not None]
        if work or rtl_todo:
            with dask_client(scheduler, workers) as client, \
                    progress(len(work) + len(rtl_todo), desc="sweep", unit=" points",
                             quiet=quiet) as bar:
                from dask.distributed import as_completed
                futures = {}
                for p, nl in work:
                    f = client.submit(_safe_evaluate, p.config, nl.layer, nl.groups, zeros,
                                      seed, pure=False)
                    futures[f] = ("model", p, nl)
                for p, ks in rtl_todo:
                    f = client.submit(rtl_check, p.config, rtl, ks, _rtl_seed(p, seed),
                                      str(out / "build" / p.key), pure=False)
                    futures[f] = ("rtl", p, ks)
                for f in as_completed(futures):
                    kind, p, what = futures.pop(f)
                    if kind == "model":
                        table.add(_row(p, name, what, family, resources, zeros, seed,
                                       _result(f)))
                        ran += 1
                    else:
                        for row in _rtl_rows(f, p, what):
                            rtl_table.add(row)
                            rtl_ran += 1
                    bar.update(1)
    finally:
        table.close()
        if rtl_table is not None:
            rtl_table.close()
    summary = _summary(points, layers, name, csv_path, rtl_path if rtl_table else None,
                       len(points) * len(layers) - len(todo), ran, rtl_ran, out)
    for f in summary["front"]:
        f["resources"] = resources[f["config"]]
    return {**summary, "family": family}


def _result(future) -> dict:
    """A model future's result, or status ``error`` when its worker failed."""
    try:
        return future.result()
    except Exception as exc:  # a worker that died (KilledWorker) or a lost connection
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}


def _rtl_seed(point: ConfigPoint, seed: int) -> int:
    return int(hashlib.sha1(f"{point.key}/{seed}".encode()).hexdigest()[:8], 16)


def _rtl_rows(future, point: ConfigPoint, indexes) -> list[dict]:
    try:
        rows = future.result()
    except Exception as exc:  # a failed build or simulation: one error row per layer
        rows = [{"index": k, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
                for k in indexes]
    return [{"config": point.key, "name": point.fields["name"], **row} for row in rows]


def _summary(points, layers, name, csv_path, rtl_path, skipped, ran, rtl_ran, out) -> dict:
    rows = [r for r in read_rows(csv_path) if r["network"] == name]
    keys = {p.key for p in points}
    rows = [r for r in rows if r["config"] in keys]
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    totals = config_totals(rows, [nl.name for nl in layers])
    labels = {p.key: p.label for p in points}
    front = pareto_front([(t["cycles"], t["energy"]) for t in totals])
    png = out / "pareto.png"
    plot_pareto(totals, front, png, title=f"{name}: energy against cycles per configuration",
                label=lambda t: labels.get(t["config"], t["name"]))
    summary = {"network": name, "layers": len(layers), "configs": len(points),
               "valid_configs": sum(p.config is not None for p in points),
               "points": len(points) * len(layers), "skipped": skipped, "ran": ran,
               "statuses": statuses, "modelled_configs": len(totals),
               "front": [{"config": totals[i]["config"], "label": labels[totals[i]["config"]],
                          "cycles": totals[i]["cycles"], "energy": totals[i]["energy"]}
                         for i in front],
               "csv": str(csv_path), "pareto": str(png)}
    if rtl_path is not None:
        rtl_rows = [r for r in read_rows(rtl_path) if r["config"] in keys]
        summary["rtl"] = {"csv": str(rtl_path), "ran": rtl_ran, "rows": len(rtl_rows),
                          "ok": sum(r["status"] == "ok" for r in rtl_rows)}
    return summary

