"""The generated GIN and GON Verilog under cocotb (Verilator, and Icarus).

Verilator builds cost about 10-20 s of CPU each (40 s for the 12x14 GIN), so
Verilator runs the 3x4 GIN and GON and Icarus, which compiles in a second,
runs the 1x1, 3x4 and 12x14 GINs.
"""

import time

import pytest
from amaranth import signed

from ommatidia.gen.verilog import write
from ommatidia.hw.noc import GIN, GON
from ommatidia.sim.runner import run_cocotb


def run_gin(rows, cols, rb, cb, sim, seed, build_dir, packets, stride=1, data_bits=12):
    start = time.monotonic()
    path = write(GIN(rows, cols, signed(data_bits), rb, cb), "gin", build_dir)
    ran = run_cocotb(path, "gin", "ommatidia.sim.tb.tb_noc", sim=sim, build_dir=build_dir,
                     testcase="gin_random,gin_throughput,gin_generated_ids",
                     env={"OMMATIDIA_ROWS": rows, "OMMATIDIA_COLS": cols,
                          "OMMATIDIA_ROW_BITS": rb, "OMMATIDIA_COL_BITS": cb,
                          "OMMATIDIA_DATA_BITS": data_bits, "OMMATIDIA_PACKETS": packets,
                          "OMMATIDIA_STRIDE": stride, "OMMATIDIA_SEED": seed})
    print(f"GIN {rows}x{cols} on {sim}: {ran} tests in {time.monotonic() - start:.1f} s")
    return ran


@pytest.mark.verilog
@pytest.mark.parametrize("rows, cols, rb, cb, packets, stride", [
    (3, 4, 3, 3, 80, 2),
])
def test_gin_verilator(rows, cols, rb, cb, packets, stride, seed, build_dir):
    assert run_gin(rows, cols, rb, cb, "verilator", seed, build_dir, packets, stride) == 3


@pytest.mark.verilog
@pytest.mark.icarus
@pytest.mark.parametrize("rows, cols, rb, cb, packets, stride", [
    (1, 1, 1, 1, 40, 1),
    (3, 4, 3, 3, 40, 2),
    (12, 14, 4, 5, 30, 4),
])
def test_gin_icarus(rows, cols, rb, cb, packets, stride, seed, build_dir):
    assert run_gin(rows, cols, rb, cb, "icarus", seed, build_dir, packets, stride) == 3


@pytest.mark.verilog
def test_gon_verilator(seed, build_dir):
    path = write(GON(3, 4, signed(24)), "gon", build_dir)
    assert run_cocotb(path, "gon", "ommatidia.sim.tb.tb_noc", sim="verilator",
                      build_dir=build_dir, testcase="gon_random",
                      env={"OMMATIDIA_ROWS": 3, "OMMATIDIA_COLS": 4,
                           "OMMATIDIA_DATA_BITS": 24, "OMMATIDIA_PACKETS": 10,
                           "OMMATIDIA_SEED": seed}) == 1


@pytest.mark.verilog
def test_optimize_build_compiles_with_the_make_variables(seed, tmp_path, monkeypatch):
    """`run_cocotb(optimize=True)` hands `OPTIMIZE_MAKE` to the make that cocotb runs (gcc
    would otherwise compile the model at Verilator's default -Os)."""
    from ommatidia.sim import runner
    monkeypatch.setattr(runner, "OPTIMIZE_MAKE", ["OPT_FAST=-O1"])
    path = write(GON(2, 2, signed(24)), "gon", tmp_path)
    assert run_cocotb(path, "gon", "ommatidia.sim.tb.tb_noc", sim="verilator",
                      build_dir=tmp_path, testcase="gon_random", optimize=True,
                      env={"OMMATIDIA_ROWS": 2, "OMMATIDIA_COLS": 2,
                           "OMMATIDIA_DATA_BITS": 24, "OMMATIDIA_PACKETS": 10,
                           "OMMATIDIA_SEED": seed}) == 1
    model = ("Vtop__ALL.cpp", "Vtop___024root__")
    compiles = [line for line in (tmp_path / "build.log").read_text().splitlines()
                if line.startswith("c++ ") and "Slow" not in line
                and line.split()[-1].startswith(model)]
    assert compiles and all(" -O1 " in line for line in compiles), compiles
