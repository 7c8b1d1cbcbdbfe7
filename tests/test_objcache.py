"""The Verilator builds' compiler wrapper (`ommatidia.sim.objcache`): the run-time library
compiled once per command, everything else compiled as asked."""

import pathlib
import sys

import pytest

from ommatidia.sim import objcache

COMPILER = """import pathlib, sys
args = sys.argv[1:]
log = pathlib.Path(__file__).with_suffix(".log")
log.write_text(log.read_text() + " ".join(args) + "\\n" if log.exists() else " ".join(args) + "\\n")
out = args[args.index("-o") + 1] if "-o" in args else pathlib.Path(args[-1]).stem + ".o"
pathlib.Path(out).write_text("object of " + " ".join(args))
pathlib.Path(out).with_suffix(".d").write_text(out + ": " + args[-1])
"""


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """A Verilator kit with one library source, a compiler that logs its calls, and an
    empty cache; returns (compiler command, library source, call log)."""
    include = tmp_path / "verilator" / "include"
    include.mkdir(parents=True)
    (include / "verilated.cpp").write_text("int library;\n")
    (include / "verilated_config.h").write_text('#define VERILATOR_VERSION "5"\n')
    compiler = tmp_path / "cxx.py"
    compiler.write_text(COMPILER)
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "verilator"))
    monkeypatch.setenv(objcache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv("MAKEFLAGS", raising=False)
    return [sys.executable, str(compiler)], include / "verilated.cpp", compiler.with_suffix(".log")


def calls(log: pathlib.Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_library_objects_compile_once_per_command(kit, tmp_path, monkeypatch):
    """Two builds of the same library object: the second copies the first's object and
    dependency file; other flags or another source compile again."""
    cxx, source, log = kit
    first, second = tmp_path / "a", tmp_path / "b"
    for build in (first, second):
        build.mkdir()
        monkeypatch.chdir(build)
        assert objcache.main([*cxx, "-Os", "-c", "-o", "verilated.o", str(source)]) == 0
    assert calls(log) == 1
    for name in ("verilated.o", "verilated.d"):
        assert (second / name).read_text() == (first / name).read_text()
    assert objcache.main([*cxx, "-O0", "-c", "-o", "verilated.o", str(source)]) == 0
    assert calls(log) == 2
    source.write_text("int library_changed;\n")
    assert objcache.main([*cxx, "-Os", "-c", "-o", "verilated.o", str(source)]) == 0
    assert calls(log) == 3


def test_design_objects_always_compile(kit, tmp_path, monkeypatch):
    """A source outside the kit's include folder (the design's C++) compiles every time."""
    cxx, _, log = kit
    monkeypatch.chdir(tmp_path)
    design = tmp_path / "Vtop__ALL.cpp"
    design.write_text("int design;\n")
    for _ in range(2):
        assert objcache.main([*cxx, "-Os", "-c", str(design)]) == 0
    assert calls(log) == 2 and (tmp_path / "Vtop__ALL.o").exists()


def test_precompiled_headers_skipped_only_when_unread(kit, tmp_path, monkeypatch):
    """A ``.gch`` is written empty without compiling when the make's flags leave the
    precompiled headers unread (`ommatidia.toolchain.setup_env`), compiled otherwise."""
    cxx, _, log = kit
    monkeypatch.chdir(tmp_path)
    header = ["-x", "c++-header", "Vtop__pch.h.fast", "-o", "Vtop__pch.h.fast.gch"]
    assert objcache.main([*cxx, *header]) == 0
    assert calls(log) == 1
    monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include VK_PCH_I_FAST= VK_PCH_I_SLOW=")
    assert objcache.main([*cxx, *header]) == 0
    assert calls(log) == 1 and (tmp_path / "Vtop__pch.h.fast.gch").read_bytes() == b""


def test_a_failed_compile_is_not_cached(kit, tmp_path, monkeypatch):
    """A compiler that fails passes its status on and leaves nothing in the cache."""
    _, source, _ = kit
    monkeypatch.chdir(tmp_path)
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert objcache.main([*failing, "-c", "-o", "verilated.o", str(source)]) == 3
    assert not (tmp_path / "cache").exists()


def test_quick_builds_take_a_compiler_optimization(monkeypatch):
    """`ommatidia.sim.runner.QUICK_OPT_ENV` names a compiler optimization or is refused."""
    from ommatidia.sim.runner import QUICK_OPT_ENV, quick_opt
    monkeypatch.setenv(QUICK_OPT_ENV, "-O0")
    assert quick_opt() == ["OPT_FAST=-O0", "OPT_SLOW=-O0"]
    monkeypatch.setenv(QUICK_OPT_ENV, "")
    assert quick_opt() == []
    monkeypatch.setenv(QUICK_OPT_ENV, "-O0; rm -rf /")
    with pytest.raises(ValueError, match=QUICK_OPT_ENV):
        quick_opt()
