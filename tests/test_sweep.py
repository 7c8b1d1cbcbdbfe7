"""`ommatidia sweep` (ommatidia.explore): the grid, the rows, the rerun, the Pareto front,
the resource estimate, the command line, and the RTL check on the Verilog."""

import csv
import dataclasses

import numpy as np
import pytest

from ommatidia.cli import main
from ommatidia.explore.networks import network_layers
from ommatidia.explore.pareto import config_totals, pareto_front
from ommatidia.explore.resources import estimate, table
from ommatidia.explore.sweep import COLUMNS, grid, parse_vary, read_rows, run_sweep
from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY, configure
from ommatidia.gen.model import predict
from ommatidia.sim.array_model import random_values


def test_pareto_front_of_known_points():
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5), (4, 2), (1, 6)]
    # (3, 4) loses to (2, 3); (5, 5) to all of the front; (4, 2) to (4, 1); (1, 6) to (1, 5);
    # the two (2, 3) tie and both stay
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([]) == []
    assert pareto_front([(7, 7)]) == [0]
    assert pareto_front([(1, 2), (2, 1)]) == [0, 1]


def test_config_totals_need_every_layer_ok():
    rows = [{"config": "a", "name": "A", "layer": "l0", "status": "ok", "cycles": "10",
             "energy_total": "5.5"},
            {"config": "a", "name": "A", "layer": "l1", "status": "ok", "cycles": "20",
             "energy_total": "1"},
            {"config": "b", "name": "B", "layer": "l0", "status": "ok", "cycles": "1",
             "energy_total": "1"},
            {"config": "b", "name": "B", "layer": "l1", "status": "no_mapping", "cycles": "",
             "energy_total": ""},
            {"config": "c", "name": "C", "layer": "l0", "status": "ok", "cycles": "1",
             "energy_total": "1"}]
    totals = config_totals(rows, ["l0", "l1"])
    assert [(t["config"], t["cycles"], t["energy"]) for t in totals] == [("a", 30, 6.5)]


def test_vary_names_fields_and_rejects_others():
    vary = parse_vary(["rows=8,12,16", "ifmap_spad_depth=12,24", "counter_bits=0,48"])
    assert vary == {"rows": ("8", "12", "16"), "pe.ifmap_spad_depth": ("12", "24"),
                    "counter_bits": ("0", "48")}
    for bad in ("nope=1", "rows", "rows=", "rows=1,1", "pe.nope=3", "name=a,b"):
        with pytest.raises(ValueError, match="--vary"):
            parse_vary([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_vary(["rows=1", "rows=2"])


def test_grid_crosses_values_and_keeps_invalid_points():
    points = grid(TINY, parse_vary(["rows=2,8", "ifmap_spad_depth=12,24"]))
    assert [tuple(v for _, v in p.settings) for p in points] == [
        ("2", "12"), ("2", "24"), ("8", "12"), ("8", "24")]
    assert all([k for k, _ in p.settings] == ["rows", "pe.ifmap_spad_depth"] for p in points)
    ok, bad = points[1], points[2]
    assert ok.config == configure("tiny", None, ["rows=2", "pe.ifmap_spad_depth=24"])
    assert ok.fields["rows"] == 2 and ok.fields["pe.ifmap_spad_depth"] == 24
    # tiny's 3-bit row IDs address 7 rows: 8 does not validate
    assert bad.config is None and "rows = 8" in bad.reason
    assert bad.fields["rows"] == 8 and bad.fields["cols"] == TINY.cols
    assert len({p.key for p in points}) == 4


def test_resource_estimate_follows_the_table():
    fam = table()["families"]["ecp5"]
    fields = dataclasses.asdict(TINY.pe)
    pe, = [p for p in fam["points"]
           if p["top"] == "pe" and all(fields[k] == v for k, v in p["pe"].items())]
    acc, = [p for p in fam["points"] if p["top"] == "accelerator"]
    tiny = estimate(TINY, "ecp5")
    # at the measured point the estimate is the measurement
    assert tiny["lut4"] == acc["resources"]["luts"] and tiny["bram"] == acc["resources"]["ebr"]
    assert tiny["dsp"] == acc["resources"]["dsps"]
    big = estimate(dataclasses.replace(TINY, rows=6, cols=7, noc=dataclasses.replace(
        TINY.noc, col_id_bits=4)), "ecp5")
    assert big["lut4"] > tiny["lut4"] + 30 * pe["resources"]["luts"] * 0.9
    assert big["dsp"] == tiny["dsp"] + 30 * pe["resources"]["dsps"]
    # four MAC lanes, one multiplying in logic: three more DSP blocks a PE, and more LUT4
    lanes = estimate(dataclasses.replace(
        TINY, pe=dataclasses.replace(TINY.pe, lanes=4, lut_mul_lanes=1),
        noc=dataclasses.replace(TINY.noc, filter_gin_values=4)), "ecp5")
    assert lanes["dsp"] == tiny["dsp"] + 12 * 2
    assert lanes["lut4"] > tiny["lut4"] + 12 * 3 * 100
    with pytest.raises(ValueError, match="family"):
        estimate(TINY, "virtex")


def _model(cfg, layer, zeros=0.5, seed=1):
    """The model's cycles and energy of ``layer`` as ``ommatidia map`` draws the data."""
    rng = np.random.default_rng(seed)
    x = random_values(rng, min(8, cfg.pe.act_bits), (layer.N, layer.C, layer.H, layer.W), zeros)
    w = random_values(rng, min(8, cfg.pe.weight_bits), (layer.M, layer.C, layer.R, layer.S))
    pred = predict(compile_layer(cfg, layer, x, w))
    return pred.cycles, pred.energy["total"]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_sweep_on_two_workers_reruns_and_keeps_invalid_points(tmp_path):
    vary = parse_vary(["rows=2,8", "ifmap_spad_depth=12,24"])
    out = tmp_path / "sweep"
    s = run_sweep(TINY, vary, "digits", out, workers=2, quiet=True)
    _, layers = network_layers("digits")
    assert (s["configs"], s["valid_configs"], s["points"]) == (4, 2, 4 * len(layers))
    assert (s["ran"], s["skipped"]) == (4 * len(layers), 0)
    rows = read_rows(out / "sweep.csv")
    assert _csv(out / "sweep.csv")[0] == list(COLUMNS)
    assert len(rows) == 4 * len(layers)
    invalid = [r for r in rows if r["rows"] == "8"]
    assert len(invalid) == 2 * len(layers)
    assert all(r["status"] == "invalid" and "rows = 8" in r["reason"] and r["cycles"] == ""
               for r in invalid)
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(int(r["cycles"]) > 0 and r["lut4"] for r in ok)
    # every modelled row is the model's own figure for that configuration and layer
    by_name = {nl.name: nl.layer for nl in layers}
    for r in ok:
        cfg = configure("tiny", None, [f"rows={r['rows']}",
                                       f"pe.ifmap_spad_depth={r['pe.ifmap_spad_depth']}"])
        cycles, energy = _model(cfg, by_name[r["layer"]])
        assert int(r["cycles"]) == cycles and float(r["energy_total"]) == pytest.approx(energy)
    totals = config_totals(rows, list(by_name))
    assert [f["config"] for f in s["front"]] == \
        [totals[i]["config"] for i in pareto_front([(t["cycles"], t["energy"]) for t in totals])]
    assert (out / "pareto.png").stat().st_size > 1000

    # a rerun skips every point; with one row gone it runs that one alone
    before = _csv(out / "sweep.csv")
    again = run_sweep(TINY, vary, "digits", out, workers=2, quiet=True)
    assert (again["ran"], again["skipped"]) == (0, 4 * len(layers))
    assert _csv(out / "sweep.csv") == before
    gone = ok[0]
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([r for r in before if not (r[0] == gone["config"] and r[2] == gone["layer"])])
    third = run_sweep(TINY, vary, "digits", out, workers=2, quiet=True)
    assert (third["ran"], third["skipped"]) == (1, 4 * len(layers) - 1)
    # the same rows again (but the seconds each took)
    assert sorted(r[:-1] for r in _csv(out / "sweep.csv")[1:]) == sorted(r[:-1] for r in before[1:])
    # another --family re-estimates the resources of the rows it skips
    run_sweep(TINY, vary, "digits", out, workers=2, family="ice40", quiet=True)
    for r in read_rows(out / "sweep.csv"):
        if r["status"] == "ok":
            cfg = configure("tiny", None, [f"rows={r['rows']}",
                                           f"pe.ifmap_spad_depth={r['pe.ifmap_spad_depth']}"])
            assert r["family"] == "ice40" and int(r["lut4"]) == estimate(cfg, "ice40")["lut4"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    base = ["sweep", "--preset", "tiny", "--network", "digits", "--out", str(tmp_path / "o")]
    for extra, message in (([], "at least one --vary"),
                           (["--vary", "nope=1"], "--vary nope is not a configuration field"),
                           (["--vary", "rows=2", "--workers", "0"], "--workers must be"),
                           (["--vary", "rows=2", "--network", str(tmp_path / "x.npz")],
                            "neither alexnet nor digits")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ommatidia sweep: error: ")
        assert message in err


@pytest.mark.verilog
def test_sweep_rtl_runs_random_layers_on_the_verilog(build_dir, capsys):
    out = build_dir  # kept between runs for its Verilator build; the CSVs start over
    for name in ("sweep.csv", "rtl.csv"):
        (out / name).unlink(missing_ok=True)
    assert main(["sweep", "--preset", "tiny", "--vary", "rows=3", "--network", "digits",
                 "--out", str(out), "--workers", "1", "--rtl", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "RTL           1 of 1 random layers" in printed
    (row,) = read_rows(out / "rtl.csv")
    assert row["status"] == "ok" and row["bit_exact"] == "True" and row["model_exact"] == "True"
    assert row["cycles"] == row["model_cycles"] and int(row["cycles"]) > 0
    assert (out / "build" / row["config"]).is_dir()


def test_a_model_files_layers_count_their_groups(tmp_path):
    from ommatidia.explore.sweep import evaluate
    from ommatidia.gen.layer import ConvLayer
    from ommatidia.nn.quant import QLayer, QNet, save
    rng = np.random.default_rng(0)
    qnet = QNet((QLayer(rng.integers(-3, 4, (4, 1, 3, 3)), np.zeros(4, dtype=np.int64),
                        relu=True, pool=2, groups=2),
                 QLayer(rng.integers(-3, 4, (3, 4, 2, 2)), np.zeros(3, dtype=np.int64))),
                (2, 6, 6), 1.0, preset="tiny")
    name, layers = network_layers(str(save(qnet, tmp_path / "two.npz")))
    assert name == "two"
    assert [(nl.name, nl.layer, nl.groups) for nl in layers] == [
        ("layer0", ConvLayer(N=1, C=1, M=2, H=6, W=6, R=3, S=3), 2),
        ("layer1", ConvLayer(N=1, C=4, M=3, H=2, W=2, R=2, S=2), 1)]
    one, two = (evaluate(TINY, layers[0].layer, g) for g in (1, 2))
    assert one["status"] == two["status"] == "ok"
    assert two["cycles"] == 2 * one["cycles"] and two["energy_total"] == 2 * one["energy_total"]
    assert two["pe_utilization"] == one["pe_utilization"]
    with pytest.raises(ValueError, match="not a model file"):
        (tmp_path / "junk.npz").write_bytes(b"junk")
        network_layers(str(tmp_path / "junk.npz"))
