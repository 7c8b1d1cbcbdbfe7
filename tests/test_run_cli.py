"""`ommatidia run`: a CONV layer on the accelerator's Verilog from the command line."""

import json

import numpy as np
import pytest

from ommatidia.cli import main
from ommatidia.sim.golden import conv2d

LAYER = "N=1,C=2,M=3,H=4,W=6,R=3,S=3,U=1,P=1"


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_run_given_data_bit_exact_with_report(tmp_path, system_build, seed, capsys):
    """Given ifmap, weights and bias files: the ofmap file equals `golden.conv2d` (computed
    here), and the report has every field the issue asks for, consistent with the layer."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, 2, 4, 6))
    x[rng.random(x.shape) < 0.5] = 0
    w, b = rng.integers(-128, 128, (3, 2, 3, 3)), rng.integers(-2000, 2000, 3)
    for name, value in (("x", x), ("w", w), ("b", b)):
        np.save(tmp_path / f"{name}.npy", value)
    out, report = tmp_path / "y.npy", tmp_path / "perf.json"
    assert main(["run", "--preset", "tiny", "--layer", LAYER, "--ifmap", str(tmp_path / "x.npy"),
                 "--weights", str(tmp_path / "w.npy"), "--bias", str(tmp_path / "b.npy"),
                 "--relu", "--shift", "3", "--out", str(out), "--report", str(report),
                 "--stall-rate", "50", "--build", str(system_build)]) == 0
    y = np.load(out)
    assert y.dtype == np.int64 and y.shape == (1, 3, 4, 6)
    assert np.array_equal(y, conv2d(x, w, b, stride=1, padding=1, psum_bits=24, relu=True,
                                    shift=3, act_bits=8))
    rep = json.loads(report.read_text())
    for key in ("cycles", "macs", "mac_cycles", "gated_macs", "pe_utilization",
                "dram_words_read", "dram_words_written", "glb_reads", "glb_writes", "rlc_ratio"):
        assert key in rep, key
    assert rep["macs"] == 1 * 3 * 2 * 4 * 6 * 3 * 3
    assert rep["pe_utilization"] == pytest.approx(rep["macs"] / (12 * rep["cycles"]))
    assert rep["bit_exact"] is True
    # the DRAM port stalls 50/256 of the cycles: the model, which assumes none, is faster
    assert rep["model_cycles"] < rep["cycles"] and rep["model_exact"] is False
    for key in ("macs", "mac_cycles", "gated_macs", "glb_reads", "glb_writes",
                "dram_words_read", "dram_words_written", "program_words"):
        assert rep["model_counters"][key] == rep[key], key
    out = capsys.readouterr().out
    assert "bit-exact with the golden model" in out
    assert "(the model assumes no DRAM stalls)" in out


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_run_with_a_raw_ifmap(tmp_path, system_build, capsys):
    """``--ifmap-coding raw`` (a first layer's input): bit-exact, the model's cycles and
    counters equal to the RTL's, and fewer DRAM words read than RLC on data without
    zeros."""
    read = {}
    for coding in ("rlc", "raw"):
        report = tmp_path / f"{coding}.json"
        assert main(["run", "--preset", "tiny", "--layer", LAYER, "--seed", "3", "--zeros", "0",
                     "--out", str(tmp_path / "y.npy"), "--report", str(report),
                     "--ifmap-coding", coding, "--build", str(system_build)]) == 0
        rep = json.loads(report.read_text())
        assert rep["bit_exact"] is True and rep["model_exact"] is True
        read[coding] = rep["dram_words_read"]
    out = capsys.readouterr().out
    assert "raw ifmap)" in out and "raw ifmap in" in out
    assert read["raw"] < read["rlc"]


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_run_random_data_prints_seed(tmp_path, system_build, capsys):
    assert main(["run", "--preset", "tiny", "--layer", "C=1,M=2,H=3,W=5,R=2,S=2",
                 "--seed", "1234", "--out", str(tmp_path / "y.npy"),
                 "--build", str(system_build), "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "seed 1234" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["model_exact"] is True and rep["model_cycles"] == rep["cycles"]
    assert {k: rep[k] for k in rep["model_counters"]} == rep["model_counters"]
    assert f"model           {rep['cycles']} cycles, cycles and counters equal" in out


@pytest.mark.parametrize("args, message", [
    (["--layer", "C=1,M=2,H=3,W=5,R=2"], "--layer is missing S"),
    (["--layer", "C=1,M=2,H=3,W=5,R=2,S=2,Q=3"], "'Q=3' is not one of them"),
    (["--layer", "C=1,M=2,H=3,W=5,R=2,S=x"], "S must be an integer"),
    (["--layer", "C=1,M=1,H=9,W=9,R=3,S=7"], "S = 7 exceeds the PE's max_filter_width = 5"),
    (["--layer", "C=1,M=1,H=3,W=50,R=3,S=3"], "exceeds the PE's max_ifmap_width = 32"),
    (["--layer", "fc:C=3"], "fc: is missing M"),
    (["--layer", "alexnet:CONV9"], "AlexNet has layers"),
    (["--layer", "C=1,M=1,H=3,W=5,R=3,S=3", "--shift", "-2"], "shift must be"),
])
def test_run_rejects_bad_layers_before_simulating(tmp_path, capsys, args, message):
    assert main(["run", "--preset", "tiny", *args, "--out", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert "ommatidia run: error:" in err
    import re
    assert re.search(message, err), err


def test_run_rejects_data_that_does_not_fit(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.full((1, 1, 3, 5), 300))
    np.save(tmp_path / "w.npy", np.zeros((1, 1, 2, 2), dtype=np.int64))
    np.save(tmp_path / "f.npy", np.zeros((1, 1, 3, 5), dtype=np.float32))
    base = ["run", "--preset", "tiny", "--layer", "C=1,M=1,H=3,W=5,R=2,S=2",
            "--out", str(tmp_path / "y.npy"), "--weights", str(tmp_path / "w.npy")]
    assert main(base + ["--ifmap", str(tmp_path / "x.npy")]) == 2
    assert "ifmap values 300..300 do not fit 8-bit signed" in capsys.readouterr().err
    assert main(base + ["--ifmap", str(tmp_path / "f.npy")]) == 2
    assert "holds float32, not integers" in capsys.readouterr().err
    assert main(base[:-2] + ["--ifmap", str(tmp_path / "x.npy")]) == 2
    assert "give both --ifmap and --weights" in capsys.readouterr().err
