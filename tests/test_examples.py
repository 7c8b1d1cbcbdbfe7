"""The examples under examples/ run as a user would run them."""

import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.verilog
def test_pe_cocotb_example(build_dir, seed):
    """examples/pe_cocotb: the generated PE under cocotb's runner, from the generated files
    only (Verilog, .vlt waivers, ports document)."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "pe_cocotb" / "run.py"),
                           "--build", str(build_dir), "--seed", str(seed)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 of 1 tests passed" in proc.stdout
    for suffix in (".v", ".vlt", ".ports.json", ".ports.md"):
        assert (build_dir / f"ommatidia_pe{suffix}").exists()
