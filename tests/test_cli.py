"""The `ommatidia` command line: help, presets, generate."""

import subprocess
import sys

import pytest

from ommatidia.cli import main
from ommatidia.sim.runner import lint_verilog


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("presets", "generate"):
        assert command in out


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "ommatidia.cli", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "generate" in proc.stdout


def test_presets_lists_eyeriss_parameters(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "eyeriss:" in out and "tiny:" in out
    assert "12x14" in out and "224/12/24" in out and "100 KiB in 25 banks + 8 KiB" in out


@pytest.mark.verilog
@pytest.mark.parametrize("preset_name", ["tiny", "eyeriss"])
def test_generate_pe_passes_verilator_lint(preset_name, build_dir, capsys):
    assert main(["generate", "--preset", preset_name, "--top", "pe", "-o", str(build_dir),
                 "--lint"]) == 0
    path = build_dir / "ommatidia_pe.v"
    text = path.read_text()
    assert "module ommatidia_pe" in text and "psum_out__payload" in text
    assert "verilator --lint-only accepts" in capsys.readouterr().out


@pytest.mark.verilog
def test_lint_rejects_broken_verilog(build_dir):
    path = build_dir / "broken.v"
    path.write_text("module broken(input a, output b); assign b = c; endmodule\n")
    ok, messages = lint_verilog(path)
    assert not ok and "c" in messages


def test_generate_rejects_unknown_preset(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--preset", "nope"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.verilog
def test_pe_command_runs_the_verilog_bit_exact(build_dir, seed, capsys):
    report = build_dir / "pe.json"
    assert main(["pe", "--preset", "tiny", "--S", "3", "--W", "20", "--p", "2", "--q", "2",
                 "--U", "2", "--accumulate", "--zeros", "0.6", "--seed", str(seed),
                 "--build", str(build_dir), "--report", str(report)]) == 0
    import json
    data = json.loads(report.read_text())
    assert data["bit_exact"] and data["macs"] == 9 * 2 * 2 * 3
    assert data["gated_macs"] == data["expected_gated"]
    assert "bit-exact: True" in capsys.readouterr().out


def test_pe_command_rejects_a_run_that_does_not_fit(capsys):
    assert main(["pe", "--preset", "tiny", "--S", "3", "--W", "16", "--p", "1", "--q", "5"]) == 2
    assert "ifmap_spad_depth" in capsys.readouterr().err
