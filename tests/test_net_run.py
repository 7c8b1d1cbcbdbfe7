"""`ommatidia net run`: every layer of the digits CNN on the accelerator's Verilog."""

import json

import pytest

from ommatidia.cli import main
from ommatidia.nn import digits, quant


@pytest.mark.verilog
@pytest.mark.xdist_group("system_small")
def test_net_run_on_verilog_is_bit_exact(tmp_path, small_system_build, capsys):
    """Six held-out digits through CONV1, CONV2 and FC on the `small` preset's Verilog:
    each layer's ofmap equals the golden model's, and the predictions are the golden ones."""
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
    assert all(0 < layer["pe_utilization"] <= 1 for layer in rep["layers"])


def test_net_run_rejects_a_model_for_another_preset(tmp_path, capsys):
    _, qnet, _ = digits.train_digits(seed=0, epochs=1)
    model = quant.save(qnet, tmp_path / "digits.npz")
    assert main(["net", "run", "--model", str(model), "--preset", "tiny", "--sim",
                 "golden"]) == 2
    assert "quantized for preset small, not tiny" in capsys.readouterr().err
