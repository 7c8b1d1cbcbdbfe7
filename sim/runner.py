"""Build generated Verilog and run a cocotb testbench on it (Verilator or Icarus).

One build directory per (top, simulator, parameter set); the testbench reads
its parameters from environment variables, so the same testbench serves the
pytest wrappers and the CLI.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pathlib
import re

from ommatidia.gen.ports import VERILATOR_WAIVERS
from ommatidia.sim import objcache
from ommatidia.sim.harness import TIMING_ARGS, harness_name, public_vlt, wrap
from ommatidia.toolchain import SIMULATORS, have_icarus, setup_env

__all__ = ["VERILATOR_WARNINGS", "HARNESS_CLOCK_ENV", "HARNESS_MEMORY_ENV", "run_cocotb",
           "hier_block_source", "CocotbFailure", "locked"]

HARNESS_CLOCK_ENV = "OMMATIDIA_HARNESS_CLOCK_NS"
"""The testbench's environment variable holding the period of the harness's own clock."""

HARNESS_MEMORY_ENV = "OMMATIDIA_HARNESS_MEMORY"
"""The testbench's environment variable naming the memory the harness loads and dumps in
bulk (`ommatidia.sim.harness.wrap` ``memory``)."""

VERILATOR_WARNINGS = [f"-Wno-{rule}" for rule in VERILATOR_WAIVERS]
"""`ommatidia.gen.ports.VERILATOR_WAIVERS` as Verilator options: warnings Amaranth's
netlists raise by design."""


OPTIMIZE_ARGS = ["-O3"]
"""Verilator's arguments for an ``optimize`` build (`run_cocotb`; docs/speed.md). ``-O3``
is ``--inline-mult -1``: every module inlined but the hierarchical blocks, each inlined
PE's logic written out again. Keeping the PE out of line (Verilator's default inlining,
``no_inline``, ``-fno-inline``) or verilating it once as a hierarchical block built the
12x14 `System` 1.1-3.1x faster but simulated it 14-38 % slower (docs/speed.md):
Verilator still writes a function per PE instance, or calls each PE through DPI. The
block pays for any layer below some 20 M cycles, so the `System`'s ``optimize`` builds
take it (`ommatidia.sim.accelerator.OPTIMIZE_BLOCKS`)."""

OPTIMIZE_MAKE: list[str] = []
"""make variables for the C++ compilation of an ``optimize`` build (`run_cocotb`), such as
``OPT_FAST=-O2``: cocotb runs Verilator's makefile itself, so they go through ``MAKEFLAGS``.
None by default: the model compiled ``-O2`` instead of Verilator's ``-Os`` ran the 12x14
`System` about 20 % slower (1.86 MB of evaluation code against 1.51; docs/speed.md)."""

QUICK_MAKE = ["VM_PARALLEL_BUILDS=0"]
"""make variables for the C++ compilation of a build that is not ``optimize``: the model
compiled as one file. Verilator splits the C++ of even a `tiny` `System` into some 15
files, and each of them parses Verilator's headers again (the builds read no
precompiled header, `ommatidia.toolchain.setup_env`): one file takes about a third of the
compiler's time (docs/speed.md)."""

QUICK_OPT_ENV = "OMMATIDIA_VERILATOR_OPT"
"""The environment variable that sets the C++ optimization (``-O0``, ``-Os``...) of the
model in builds that are not ``optimize``; Verilator's ``-Os`` without it. The test suite
sets ``-O0``: its short simulations do not repay an optimizing compiler."""


def quick_opt() -> list[str]:
    """The make variables of `QUICK_OPT_ENV` (none when unset)."""
    opt = os.environ.get(QUICK_OPT_ENV, "").strip()
    if not opt:
        return []
    if not re.fullmatch(r"-O[0-3sgz]|-Ofast", opt):
        raise ValueError(f"{QUICK_OPT_ENV} must be a compiler optimization such as -O0 "
                         f"or -Os, not {opt!r}")
    return [f"OPT_FAST={opt}", f"OPT_SLOW={opt}"]


@contextlib.contextmanager
def _make_env(assignments: list[str]):
    """For the make that cocotb runs in this block: ``MAKEFLAGS`` with ``assignments``
    added, and ``OBJCACHE`` (unless set) running `ommatidia.sim.objcache`, which compiles
    Verilator's run-time library once for all builds."""
    old = {name: os.environ.get(name) for name in ("MAKEFLAGS", "OBJCACHE")}
    if assignments:
        os.environ["MAKEFLAGS"] = " ".join([old["MAKEFLAGS"] or "", *assignments]).strip()
    os.environ.setdefault("OBJCACHE", objcache.command())
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class CocotbFailure(AssertionError):
    """A cocotb testbench reported failing tests, or the simulator died."""


@contextlib.contextmanager
def locked(folder):
    """Hold an exclusive lock on build folder ``folder`` (created if missing), so that
    processes sharing it (pytest workers, two CLI runs) build and simulate in turn."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_ZERO_TIME_REG = re.compile(r"^(\s*)reg "
                            r"(\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$",
                            re.M)


def _icarus_source(verilog_path: pathlib.Path, build_dir: pathlib.Path) -> pathlib.Path:
    """A copy of the Verilog whose combinational blocks run at time zero under Icarus.

    Yosys starts each ``always @*`` block with a read of a register declared ``= 0``,
    so that the block runs once at time zero; Icarus (``-g2012``) gives a declaration's
    value no event, so a block whose inputs never change (an FSM output in its initial
    state) stays X (amaranth-lang/amaranth#1629). The copy sets that register in an
    ``initial #0``, after every block waits on it. (``always_comb`` runs at time zero
    too, but Icarus 11 makes such a block sensitive to all bits of each constant
    part-select, and the `System` then spun at the first busy cycle of a layer
    forever.)
    """
    text = _ZERO_TIME_REG.sub(lambda m: f"{m[1]}reg {m[2]};\n{m[1]}initial #0 {m[2]} = 1'b0;",
                              verilog_path.read_text())
    out = build_dir / f"{verilog_path.stem}_icarus.v"
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


def _harness_source(verilog_path: pathlib.Path, top: str, build_dir: pathlib.Path,
                    clock_ns: int | None, memory: str | None) -> pathlib.Path:
    """The harness of ``top`` (`ommatidia.sim.harness.wrap`), written beside the build."""
    text = wrap(verilog_path.read_text(), top, clock_ns, memory)
    out = build_dir / f"{harness_name(top)}.v"
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


def _block_name(module: str) -> str:
    """The name a hierarchical block goes by in `hier_block_source`'s copy."""
    return module.replace("__", "_hb_")


def hier_block_source(verilog_path: pathlib.Path, build_dir: pathlib.Path,
                      modules) -> tuple[pathlib.Path, pathlib.Path]:
    """A copy of the Verilog whose ``modules`` are renamed for Verilator's hierarchical
    blocks (`_block_name`: without ``__``, as Verilator inlined a block named
    ``system__PE`` without a word), and the path of the control file naming them
    (written by `run_cocotb` after it cleans the build). ValueError for a module the
    Verilog does not hold."""
    text = verilog_path.read_text()
    for module in modules:
        if not re.search(rf"^module {re.escape(module)}\b", text, re.M):
            raise ValueError(f"hier_blocks: {verilog_path.name} has no module {module}")
        text = re.sub(rf"\b{re.escape(module)}\b", _block_name(module), text)
    out = build_dir / f"{verilog_path.stem}_hier.v"
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out, build_dir / "hier.vlt"


def _clean_stale_build(build_dir: pathlib.Path, sources: list[pathlib.Path], sim: str,
                       build_args: list, waves: bool) -> str:
    """Empty the simulator's build products when the Verilog (``sources``) or the flags
    changed.

    An incremental Verilator build over the objects of different Verilog can
    trip over a stale precompiled header; a fresh build of a changed design
    costs the same.
    """
    import shutil
    key = hashlib.sha1(b"".join(path.read_bytes() for path in sources)
                       + repr((sim, build_args, waves)).encode())
    stamp = build_dir / ".design"
    if stamp.exists() and stamp.read_text() == key.hexdigest():
        return key.hexdigest()
    stamp.unlink(missing_ok=True)
    keep = {path.name for path in sources} | {".lock"}
    for item in build_dir.iterdir():
        if item.name in keep or item.suffix in (".json", ".v"):
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    return key.hexdigest()


def run_cocotb(verilog_path, toplevel: str, test_module: str, *, sim: str = "verilator",
               build_dir, env: dict | None = None, seed: int | None = None,
               waves: bool = False, testcase: str | None = None, quiet: bool = True,
               ports_only: bool = False, harness: bool = False,
               clock_ns: int | None = None, memory: str | None = None,
               optimize: bool = False, hier_blocks: tuple = ()) -> int:
    """Build ``verilog_path`` and run the cocotb tests of ``test_module`` on it.

    ``ports_only`` (Verilator) makes only the top level's ports visible to cocotb
    instead of every signal: a much smaller and faster model for testbenches that
    touch nothing else (the 12x14 `System`'s C++ shrinks several times).
    ``harness`` runs the testbench on `ommatidia.sim.harness`'s wrapper of
    ``toplevel`` (same ports, ``rst`` registered: the design leaves reset
    `ommatidia.sim.harness.RESET_LATENCY` cycles after the testbench does); with
    ``ports_only``, only the wrapper's ports are visible; with ``clock_ns`` (and
    ``harness``) the wrapper makes a clock of that period itself and the testbench
    finds the period in `HARNESS_CLOCK_ENV`, so it starts none; with ``memory`` (and
    ``harness``) the wrapper loads and dumps that memory of ``toplevel`` in bulk (the
    ``host_*`` ports of `ommatidia.sim.harness.wrap`) and the testbench finds its name
    in `HARNESS_MEMORY_ENV`. ``optimize`` builds with Verilator's ``-O3``: about twice
    the build time for about 1.3x the cycles a second on the 12x14 `System`
    (docs/speed.md), worth it only for long runs. ``hier_blocks`` (Verilator) names
    modules verilated once each as hierarchical blocks (`hier_block_source`), which every
    instance then calls: the 12x14 `System` with its PE a block builds with a third of the
    CPU and simulates 15-20 % slower (docs/speed.md).

    Returns the number of tests that ran; raises `CocotbFailure` when any failed.
    """
    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if sim == "icarus" and not have_icarus():
        raise RuntimeError("Icarus Verilog (iverilog, vvp) is not on PATH; "
                           "install it (Debian: apt-get install iverilog) or use --sim verilator")
    setup_env()
    verilog_path = pathlib.Path(verilog_path).resolve()
    build_dir = pathlib.Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    if sim == "icarus":
        verilog_path = _icarus_source(verilog_path, build_dir)
    blocks = hier_block_source(verilog_path, build_dir, hier_blocks) \
        if sim == "verilator" and hier_blocks else None
    if blocks is not None:
        verilog_path, hier_vlt = blocks
    if clock_ns is not None and not harness:
        raise ValueError("only a harness (harness=True) makes its clock (clock_ns)")
    if memory is not None and not harness:
        raise ValueError("only a harness (harness=True) loads a memory in bulk (memory)")
    sources, design_top = [verilog_path], toplevel
    if harness:
        sources.append(_harness_source(verilog_path, toplevel, build_dir, clock_ns, memory))
        toplevel = harness_name(toplevel)
    build_args = list(VERILATOR_WARNINGS) if sim == "verilator" else []
    if sim == "verilator" and clock_ns is not None:
        build_args += TIMING_ARGS
    make_vars = []
    if sim == "verilator":
        make_vars = list(OPTIMIZE_MAKE) if optimize else list(QUICK_MAKE) + quick_opt()
    if sim == "verilator" and optimize:
        build_args += OPTIMIZE_ARGS
    if blocks is not None:
        build_args += ["--hierarchical", str(hier_vlt)]
    if sim == "verilator" and waves:
        build_args.append("--trace")
    config = build_dir / "ports.vlt"
    if sim == "verilator" and ports_only:
        build_args += ["--no-public-flat-rw", str(config)]

    def clean():
        design = _clean_stale_build(build_dir, sources, sim, build_args + make_vars, waves)
        if blocks is not None:
            hier_vlt.write_text("`verilator_config\n" + "".join(
                f'hier_block -module "{_block_name(name)}"\n' for name in hier_blocks))
        if sim == "verilator" and ports_only:
            config.write_text(public_vlt(verilog_path.read_text(), design_top, memory)
                              if harness else f'`verilator_config\npublic_flat_rw -module '
                              f'"{toplevel}" -var "*"\n')
        return design
    design = clean()
    runner = get_runner(sim)
    log = build_dir / "build.log"
    def build():
        with _make_env(make_vars):
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                         always=False, log_file=log if quiet else None)
    try:
        build()
    except RuntimeError:
        # One clean rebuild: a compiler that dies on a half-written object (a crash,
        # an interrupted run) leaves files that fail every later incremental build.
        (build_dir / ".design").unlink(missing_ok=True)
        clean()
        try:
            build()
        except RuntimeError:
            tail = log.read_text().splitlines()[-15:] if log.exists() else []
            raise CocotbFailure(f"building {verilog_path.name} for {sim} failed; log "
                                f"{log}:\n" + "\n".join(tail)) from None
    (build_dir / ".design").write_text(design)
    results = build_dir / f"results_{hashlib.sha1(test_module.encode()).hexdigest()[:8]}.xml"
    extra_env = {k: str(v) for k, v in (env or {}).items()}
    if clock_ns is not None:
        extra_env[HARNESS_CLOCK_ENV] = str(clock_ns)
    if memory is not None:
        extra_env[HARNESS_MEMORY_ENV] = memory
    extra_env.setdefault("PYTHONWARNINGS", os.environ.get("PYTHONWARNINGS", "default"))
    cwd = os.getcwd()
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    test_dir=build_dir, extra_env=extra_env, seed=seed, waves=waves,
                    testcase=testcase, results_xml=str(results),
                    log_file=build_dir / "test.log" if quiet else None)
    except SystemExit as exc:
        raise CocotbFailure(f"{test_module} on {toplevel} ({sim}) failed: exit {exc.code}; "
                            f"log in {build_dir}") from None
    finally:
        os.chdir(cwd)
    try:
        num_tests, num_failed = get_results(results)
    except RuntimeError as exc:
        raise CocotbFailure(f"{exc}; log in {build_dir}") from None
    if num_failed or not num_tests:
        raise CocotbFailure(f"{test_module} on {toplevel} ({sim}): {num_failed} of {num_tests} "
                            f"tests failed; log in {build_dir}/test.log")
    return num_tests


def lint_verilog(verilog_path, top: str | None = None) -> tuple[bool, str]:
    """``verilator --lint-only`` with only the `VERILATOR_WARNINGS` waived.

    Returns (accepted, Verilator's messages).
    """
    import subprocess
    env = setup_env(dict(os.environ))
    cmd = [str(pathlib.Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--lint-only",
           *VERILATOR_WARNINGS, str(verilog_path)]
    if top:
        cmd += ["--top-module", top]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return proc.returncode == 0, proc.stdout + proc.stderr
