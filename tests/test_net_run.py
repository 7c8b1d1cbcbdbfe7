"""`ommatidia net run`: every layer of the digits CNN on the accelerator's Verilog."""

import json

import numpy as np
import pytest

from helpers import ROOT
from ommatidia.cli import main
from ommatidia.gen.config import SMALL, configure
from ommatidia.nn import digits, quant
from ommatidia.nn.onnx_import import from_onnx

DATA = ROOT / "tests" / "data"


@pytest.mark.verilog
@pytest.mark.xdist_group("system_small")
def test_net_run_on_verilog_is_bit_exact(tmp_path, small_system_build, capsys):
    """Six held-out digits through CONV1, CONV2 and FC on the `small` preset's Verilog,
    CONV1's ifmap stored raw: each layer's ofmap equals the golden model's, and the
    predictions are the golden ones."""
    _, qnet, _ = digits.train_digits(seed=0, epochs=2)
    model = quant.save(qnet, tmp_path / "digits.npz")
    report = tmp_path / "net.json"
    assert main(["net", "run", "--model", str(model), "--preset", "small", "--images", "6",
                 "--build", str(small_system_build), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert out.count("bit-exact;") == 3
    rep = json.loads(report.read_text())
    golden, _ = quant.infer(qnet, digits.digits_data()[2][:6])
    assert rep["predictions"] == [int(p) for p in golden]
    assert all(layer["bit_exact"] for layer in rep["layers"])
    assert [layer["input"]["coding"] for layer in rep["layers"]] == ["raw", "rlc", "rlc"]
    assert all(0 < layer["pe_utilization"] <= 1 for layer in rep["layers"])


def test_net_run_rejects_a_preset_of_other_widths(tmp_path, capsys):
    _, qnet, _ = digits.train_digits(seed=0, epochs=1)
    model = quant.save(qnet, tmp_path / "digits.npz")
    assert main(["net", "run", "--model", str(model), "--preset", "eyeriss", "--sim",
                 "golden"]) == 2
    err = capsys.readouterr().err
    assert "quantized for preset small, not eyeriss: QNet.act_bits = 8 differs from preset " \
           "'eyeriss', whose act_bits is 16" in err, err


def test_net_commands_take_a_configuration(tmp_path, capsys):
    """``net train --set`` quantizes for a custom configuration, the model file records it
    and ``net run`` runs on it; ``--preset`` and ``--set`` on ``net run`` change the array
    the same model runs on."""
    custom = configure("small", None, ["cols=5", "glb_bytes=16384"])
    model = tmp_path / "m.npz"
    assert main(["net", "train", "--epochs", "1", "--set", "cols=5", "--set",
                 "glb_bytes=16384", "-o", str(model)]) == 0
    assert f"({custom.name}: 8-bit activations" in capsys.readouterr().out
    assert quant.load(model).config == custom
    for extra, cfg in (([], custom), (["--preset", "small"], SMALL),
                       (["--set", "rows=4"], configure(custom, None, ["rows=4"]))):
        report = tmp_path / "r.json"
        assert main(["net", "run", "--model", str(model), "--sim", "golden", "--images", "4",
                     "--report", str(report), *extra]) == 0
        out = capsys.readouterr().out
        assert f"4 held-out digits through 3 layers on {cfg.name} (golden)" in out, out
        rep = json.loads(report.read_text())
        assert (rep["preset"], rep["array"]) == (cfg.name, [cfg.rows, cfg.cols])


def test_net_import_takes_a_configuration_file(tmp_path, capsys, seed):
    fnet = from_onnx(DATA / "grouped.onnx")
    rng = np.random.default_rng(seed)
    np.save(tmp_path / "calib.npy", rng.random((8, *fnet.input_shape)))
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"rows": 4, "pe": {"ifmap_spad_depth": 16}}))
    model = tmp_path / "m.npz"
    assert main(["net", "import", str(DATA / "grouped.onnx"), "-o", str(model), "--calib",
                 str(tmp_path / "calib.npy"), "--config", str(conf)]) == 0
    want = configure("small", conf)
    assert f"layers, {want.name})" in capsys.readouterr().out
    assert quant.load(model).config == want
