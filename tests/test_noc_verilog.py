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
                if "c++" in line.split() and "Slow" not in line
                and line.split()[-1].startswith(model)]
    assert compiles and all(" -O1 " in line for line in compiles), compiles


@pytest.mark.verilog
def test_quick_build_compiles_the_model_as_one_file(seed, tmp_path, monkeypatch):
    """A build that is not ``optimize`` compiles the model as one file
    (`ommatidia.sim.runner.QUICK_MAKE`) at `QUICK_OPT_ENV`'s level, and takes Verilator's
    run-time library from the object cache: a second build compiles none of it."""
    from ommatidia.sim import objcache, runner
    monkeypatch.setenv(runner.QUICK_OPT_ENV, "-O0")
    monkeypatch.setenv(objcache.CACHE_ENV, str(tmp_path / "cache"))
    path = write(GON(2, 2, signed(24)), "gon", tmp_path / "gon")
    logs, stored = [], []
    for build in ("first", "second"):
        assert run_cocotb(path, "gon", "ommatidia.sim.tb.tb_noc", sim="verilator",
                          build_dir=tmp_path / build, testcase="gon_random",
                          env={"OMMATIDIA_ROWS": 2, "OMMATIDIA_COLS": 2,
                               "OMMATIDIA_DATA_BITS": 24, "OMMATIDIA_PACKETS": 10,
                               "OMMATIDIA_SEED": seed}) == 1
        logs.append((tmp_path / build / "build.log").read_text().splitlines())
        stored.append({path: (path.stat().st_ino, path.stat().st_mtime_ns)
                       for path in (tmp_path / "cache").glob("*/*")})
    for log in logs:
        compiles = [line for line in log if "c++" in line.split() and " -c " in line]
        model = [line for line in compiles if "Vtop__ALL.cpp" in line.split()]
        assert len(model) == 1 and " -O0 " in model[0], compiles
        assert not any("Vtop___024root__0.cpp" in line.split() for line in compiles)
        assert all(line.split()[1].endswith("objcache.py") for line in compiles), compiles
    library = sorted(p.name for p in (tmp_path / "first").glob("verilated*.o"))
    assert "verilated.o" in library
    assert sorted(p.name for p in stored[0] if p.suffix == ".o") == library
    assert stored[1] == stored[0], "the second build stored its library objects again"
    for name in library:
        assert (tmp_path / "second" / name).read_bytes() == (tmp_path / "first" / name).read_bytes()
