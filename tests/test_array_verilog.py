"""The generated Verilog of the tiny PE array under cocotb: a CONV layer, bit-exact.

The Verilator build of the 3x4 array costs about 40 s of CPU, so it runs once;
Icarus compiles it in about a second and runs the same layer in about 2 s.
"""

import time

import pytest

from ommatidia.gen.config import preset
from ommatidia.gen.verilog import write
from ommatidia.hw.array import PEArray
from ommatidia.sim.runner import run_cocotb


def run_array(sim, seed, build_dir):
    start = time.monotonic()
    path = write(PEArray(preset("tiny")), "array", build_dir)
    ran = run_cocotb(path, "array", "ommatidia.sim.tb.tb_array", sim=sim, build_dir=build_dir,
                     env={"OMMATIDIA_PRESET": "tiny", "OMMATIDIA_SEED": seed})
    print(f"tiny array on {sim}: {ran} test in {time.monotonic() - start:.1f} s")
    return ran


@pytest.mark.verilog
def test_array_verilator(seed, build_dir):
    assert run_array("verilator", seed, build_dir) == 1


@pytest.mark.verilog
@pytest.mark.icarus
def test_array_icarus(seed, build_dir):
    assert run_array("icarus", seed, build_dir) == 1
