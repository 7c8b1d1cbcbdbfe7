"""The generated PE Verilog under cocotb (Verilator, and Icarus) against the golden model."""

import pytest

from ommatidia.gen.config import preset
from ommatidia.gen.verilog import write
from ommatidia.hw.pe import PE
from ommatidia.sim.runner import run_cocotb


def run_pe(preset_name, sim, seed, build_dir, cases=8):
    """The preset's PE as the array holds it: eyeriss takes 8 weights a filter packet and 4
    activations of a column an ifmap packet."""
    cfg = preset(preset_name)
    path = write(PE(cfg.pe, cfg.noc.filter_gin_values, cfg.noc.ifmap_gin_values), "pe",
                 build_dir)
    return run_cocotb(path, "pe", "ommatidia.sim.tb.tb_pe", sim=sim, build_dir=build_dir,
                      env={"OMMATIDIA_PRESET": preset_name, "OMMATIDIA_SEED": seed,
                           "OMMATIDIA_CASES": cases})


@pytest.mark.verilog
@pytest.mark.parametrize("preset_name", ["tiny", "eyeriss"])
def test_pe_verilator(preset_name, seed, build_dir):
    assert run_pe(preset_name, "verilator", seed, build_dir) == 2


@pytest.mark.verilog
@pytest.mark.icarus
def test_pe_icarus(seed, build_dir):
    assert run_pe("tiny", "icarus", seed, build_dir, cases=4) == 2
