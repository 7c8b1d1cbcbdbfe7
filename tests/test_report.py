"""`ommatidia report` and the statistics `ommatidia net run` adds for it (nn/report.py)."""

import collections
import json
import math

import numpy as np
import pytest

from ommatidia.cli import main
from ommatidia.gen.config import RLCFormat, preset
from ommatidia.gen.energy import EYERISS_COST
from ommatidia.nn import digits, net, quant, report as report_module
from ommatidia.nn.report import (PLOTS, SUMMARY, entropy_bits, entropy_bound,
                                 layer_input_stats, rlc_streams, write_report)

FMT = RLCFormat(run_bits=5, level_bits=8, pairs_per_word=3, word_bits=64)
PNG = b"\x89PNG\r\n\x1a\n"


def _counter_entropy(symbols) -> float:
    counts = collections.Counter(symbols).values()
    n = sum(counts)
    return -sum(c / n * math.log2(c / n) for c in counts)


# ---------------------------------------------------------------------------------------------
# Entropy bounds

def test_entropy_of_hand_checked_inputs():
    assert entropy_bits([0] * 17) == 0.0
    assert entropy_bits([5, -3, 0, 7] * 6) == pytest.approx(2.0)
    assert entropy_bits([0, 0, 0, 1]) == pytest.approx(-(0.75 * math.log2(0.75)
                                                         + 0.25 * math.log2(0.25)))
    assert entropy_bits([(1, 7), (1, 7), (0, 3), (2, 7)]) == pytest.approx(1.5)
    assert entropy_bits([]) == 0.0


def test_entropy_bound_all_zero_is_unbounded():
    b = entropy_bound([np.zeros(10, dtype=int)], 8, FMT)
    assert b["entropy_bits"] == 0.0 and b["bound_ratio"] == math.inf
    assert b["pairs"] == 1 and b["pair_bound_ratio"] == math.inf
    assert b["zeros"] == 1.0 and b["raw_bits"] == 80


def test_entropy_bound_uniform_over_four_values_is_two_bits():
    """Four distinct non-zero values: 2 bits per value (ratio 8 / 2), and RLC makes one
    pair (0, v) per value, four distinct pairs: 2 bits per pair, ratio 32 / (4 * 2)."""
    b = entropy_bound([[1, 2, 3, 4]], 8, FMT)
    assert b["entropy_bits"] == pytest.approx(2.0)
    assert b["bound_ratio"] == pytest.approx(4.0)
    assert b["pairs"] == 4 and b["pair_entropy_bits"] == pytest.approx(2.0)
    assert b["pair_bound_ratio"] == pytest.approx(4.0)


def test_pair_bound_can_beat_the_value_bound():
    """Two streams 0 0 5 0 0 5: values have entropy H(1/3) but the pairs are all (2, 5),
    entropy 0: a run-aware code is not bound by the value entropy."""
    b = entropy_bound([[0, 0, 5, 0, 0, 5]] * 2, 8, FMT)
    h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert b["entropy_bits"] == pytest.approx(h)
    assert b["bound_ratio"] == pytest.approx(8 / h)
    assert b["pairs"] == 4 and b["pair_bound_ratio"] == math.inf


def test_pairs_are_counted_per_stream():
    """Each stream is coded on its own: 5 0 | 0 5 gives pairs (0, 5) (0, 0) | (1, 5)."""
    b = entropy_bound([[5, 0], [0, 5]], 8, FMT)
    assert b["pairs"] == 3 and b["pair_entropy_bits"] == pytest.approx(math.log2(3))
    assert b["pair_bound_ratio"] == pytest.approx(32 / (3 * math.log2(3)))


def test_entropy_bound_matches_a_direct_count(seed):
    rng = np.random.default_rng(seed)
    streams = [np.where(rng.random(n) < 0.6, 0, rng.integers(-8, 8, n))
               for n in rng.integers(1, 200, 5)]
    b = entropy_bound(streams, 8, FMT)
    values = [int(v) for s in streams for v in s]
    assert b["values"] == len(values)
    assert b["entropy_bits"] == pytest.approx(_counter_entropy(values))
    assert b["bound_ratio"] == pytest.approx(8 / _counter_entropy(values))
    assert b["zeros"] == pytest.approx(values.count(0) / len(values))


def test_entropy_bound_rejects_no_values():
    with pytest.raises(ValueError, match="at least one value"):
        entropy_bound([[]], 8, FMT)


def test_layer_input_stats_read_the_programs_ifmap_streams(seed):
    """The streams decoded from a compiled layer's DRAM words are the padded ifmap
    (every row is read here), and their RLC ratio is the one the run report gives."""
    from ommatidia.gen.compiler import compile_layer
    from ommatidia.gen.layer import ConvLayer
    rng = np.random.default_rng(seed)
    cfg = preset("tiny")
    layer = ConvLayer(N=2, C=2, M=4, H=3, W=6, R=3, S=3, U=1, P=1)
    x = np.where(rng.random((2, 2, 3, 6)) < 0.5, 0, rng.integers(-100, 100, (2, 2, 3, 6)))
    w = rng.integers(-50, 50, (4, 2, 3, 3))
    prog = compile_layer(cfg, layer, x, w)
    streams = rlc_streams(prog)
    got = np.sort(np.concatenate([v for v, _ in streams]))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert np.array_equal(got, np.sort(padded.reshape(-1)))
    s = layer_input_stats([prog], x)
    assert s["values"] == padded.size == prog.ifmap_values
    assert s["zeros"] == pytest.approx(np.mean(padded == 0))
    assert s["zeros_unpadded"] == pytest.approx(np.mean(x == 0))
    assert s["rlc_ratio"] == pytest.approx(prog.ifmap_values * cfg.pe.act_bits
                                           / (prog.ifmap_rlc_words * cfg.dram_bits))
    assert s["entropy_bits"] == pytest.approx(_counter_entropy(padded.reshape(-1).tolist()))


# ---------------------------------------------------------------------------------------------
# The report writer

def _synthetic(seed: int) -> dict:
    """A net report shaped like `net run`'s with made-up numbers (tests only)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(3):
        layers.append({
            "layer": i, "bit_exact": True,
            "shape": {"C": 1 + i, "H": 8, "W": 8, "M": 4 + i, "R": 3, "S": 3, "U": 1, "P": 1,
                      "E": 8, "F": 8},
            "cycles": int(rng.integers(1000, 99999)), "macs": int(rng.integers(1000, 9999)),
            "gated_macs": 100, "dram_words_read": int(rng.integers(10, 999)),
            "dram_words_written": int(rng.integers(10, 999)),
            "pe_utilization": float(rng.uniform(0.01, 0.99)),
            "gated_fraction": float(rng.uniform(0, 1)), "rlc_ratio": 1.0,
            "input": {"values": int(rng.integers(100, 999)), "zeros": float(rng.uniform(0, 1)),
                      "zeros_unpadded": float(rng.uniform(0, 1)),
                      "raw_bits": 800, "entropy_bits": float(rng.uniform(0.5, 7)),
                      "bound_ratio": float(rng.uniform(1, 9)), "pairs": 50,
                      "pair_entropy_bits": 3.0, "pair_bound_ratio": float(rng.uniform(1, 9)),
                      "streams": 2, "coded_bits": 640, "rlc_ratio": float(rng.uniform(0.5, 3))},
            "accesses": {k: int(rng.integers(1, 10**6)) for k in EYERISS_COST},
        })
    layers[2]["input"].update(bound_ratio=None, pair_bound_ratio=None, entropy_bits=0.0)
    return {"model": "m.npz", "preset": "small", "array": [6, 7], "sim": "verilator",
            "images": 4, "accuracy": 0.75, "layers": layers}


def test_write_report_writes_the_summary_and_every_plot(tmp_path, seed):
    rep = _synthetic(seed)
    files = write_report(rep, tmp_path / "out")
    assert [f.name for f in files] == [SUMMARY] + list(PLOTS.values())
    for f in files[1:]:
        assert f.read_bytes()[:8] == PNG and f.stat().st_size > 10_000
    md = files[0].read_text()
    for row in rep["layers"]:
        assert f"| {row['cycles']} | {row['macs']} | {100 * row['pe_utilization']:.1f} % |" in md
        i = row["input"]
        assert f"{100 * i['zeros_unpadded']:.1f} %" in md
        assert f"{i['rlc_ratio']:.2f}" in md
        acc = row["accesses"]
        total = sum(acc[k] * c for k, c in EYERISS_COST.items())
        assert f"| {total:.4g} |" in md
        assert f"{acc['dram']:.4g} / {200 * acc['dram']:.4g}" in md
    assert f"{rep['layers'][0]['input']['bound_ratio']:.2f}" in md
    assert "| 0.000 | \u221e |" in md
    assert "Not plotted" not in md


def test_write_report_leaves_out_what_the_report_lacks(tmp_path, seed):
    """A golden run has no counters and no accesses: only the statistics plots."""
    rep = _synthetic(seed)
    for row in rep["layers"]:
        for key in ("cycles", "macs", "gated_macs", "dram_words_read", "dram_words_written",
                    "pe_utilization", "gated_fraction", "accesses"):
            del row[key]
    files = write_report(rep, tmp_path)
    assert [f.name for f in files] == [SUMMARY, PLOTS["sparsity"], PLOTS["compression"]]
    md = files[0].read_text()
    assert md.count("Not plotted") == 2 and "gen.model.predict" in md


@pytest.mark.parametrize("bad", [{}, {"layers": []}, {"model": "x", "layers": None}, []])
def test_write_report_rejects_a_report_without_layers(tmp_path, bad):
    with pytest.raises(ValueError, match="no layers|must be a dict"):
        write_report(bad, tmp_path)
    assert not list(tmp_path.iterdir())


def test_report_cli_rejects_a_report_without_layers(tmp_path, capsys):
    src = tmp_path / "net.json"
    src.write_text(json.dumps({"model": "m.npz", "layers": []}))
    assert main(["report", "--from", str(src), "-o", str(tmp_path / "out")]) == 2
    assert "the net report has no layers" in capsys.readouterr().err


def test_net_run_golden_adds_the_statistics_and_report_reads_them(tmp_path, capsys):
    """`net run --sim golden` records each layer's input statistics; layer 0 reads the
    quantized images unpadded, so its entropy is that of those pixels (as RLC would
    code them: its ifmap is stored raw, and its ``coding`` says so)."""
    _, qnet, _ = digits.train_digits(seed=0, epochs=1)
    model = quant.save(qnet, tmp_path / "digits.npz")
    out = tmp_path / "net.json"
    assert main(["net", "run", "--model", str(model), "--images", "3", "--sim", "golden",
                 "--report", str(out)]) == 0
    rep = json.loads(out.read_text())
    x = quant.quantize_input(qnet, digits.digits_data()[2][:3])
    pixels = x.reshape(-1)
    first = rep["layers"][0]["input"]
    read = [int(v) for prog in report_module._programs(qnet, 0, x, 16, "rlc")
            for key, where in prog.inputs.items() if where["rlc"]
            for v in prog.ifmap[key[1], key[2]:key[2] + where["n"] // (
                prog.layer.W * key[4]), key[3]:key[3] + key[4]].transpose(2, 1, 0).reshape(-1)]
    assert first["values"] == len(read) >= pixels.size
    assert first["zeros_unpadded"] == pytest.approx(np.mean(pixels == 0))
    assert first["zeros"] == pytest.approx(np.mean(np.array(read) == 0))
    assert first["entropy_bits"] == pytest.approx(_counter_entropy(read))
    assert [row["input"]["coding"] for row in rep["layers"]] == ["raw", "rlc", "rlc"]
    assert rep["preset"] == "small" and len(rep["layers"]) == 3
    assert all(0 < row["input"]["rlc_ratio"] for row in rep["layers"])
    capsys.readouterr()
    assert main(["report", "--from", str(out), "-o", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / SUMMARY).exists()
    assert (tmp_path / "report" / PLOTS["compression"]).exists()


def test_net_layer_stats_sum_the_model_accesses_over_the_runs():
    """Each layer's ``accesses`` sum the model's predictions over its runs of
    ``images_per_run`` images: the MACs that are not gated add up to the layer's MACs on
    all images minus those with a zero activation (counted on the golden data)."""
    import dataclasses

    from ommatidia.nn.report import net_layer_stats
    from ommatidia.sim.array_model import layer_gated_macs
    _, qnet, _ = digits.train_digits(seed=0, epochs=1)
    images = digits.digits_data()[2][:7]
    _, ofmaps = quant.infer(qnet, images)
    rows = net_layer_stats(qnet, images, ofmaps, images_per_run=3)
    x = quant.quantize_input(qnet, images)
    for k, (row, layer) in enumerate(zip(rows, qnet.layers)):
        shape = dataclasses.replace(qnet.conv_layers(1)[k], N=len(x))
        assert row["accesses"]["mac"] == shape.macs - layer_gated_macs(shape, x)
        x = net.max_pool(ofmaps[k], layer.pool)


def test_net_layer_stats_without_the_rlc_codec():
    """On a configuration without the RLC codec (`icebreaker`'s) every layer's input is
    stored raw, and its RLC figures are what the codec would have made of it: the same
    as on that configuration with the codec."""
    import dataclasses

    from ommatidia.nn.report import net_layer_stats
    _, qnet, _ = digits.train_digits(seed=0, epochs=1)
    images = digits.digits_data()[2][:2]
    _, ofmaps = quant.infer(qnet, images)
    bare = dataclasses.replace(qnet, config=dataclasses.replace(qnet.config, rlc_codec=False))
    rows = net_layer_stats(bare, images, ofmaps, images_per_run=2)
    coded = net_layer_stats(qnet, images, ofmaps, images_per_run=2)
    assert [r["input"]["coding"] for r in rows] == ["raw"] * len(qnet.layers)
    assert [r["input"]["coding"] for r in coded][1:] == ["rlc"] * (len(qnet.layers) - 1)
    for row, ref in zip(rows, coded):
        assert row["input"]["rlc_ratio"] == ref["input"]["rlc_ratio"] > 0
        assert row["input"]["pairs"] == ref["input"]["pairs"]
