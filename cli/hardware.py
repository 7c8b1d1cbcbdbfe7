"""Commands on the hardware: ``presets``, ``generate``, ``pe``, ``synth``, ``build``."""

from __future__ import annotations

import dataclasses
import sys

from ommatidia.gen.config import PRESETS

from .configure import config_of

from .error import CLIError
from .files import output_dir, output_file

__all__ = ["cmd_presets", "cmd_generate", "cmd_pe", "cmd_synth", "cmd_build"]


def _log(line: str) -> None:
    """A line on standard error that does not tear a progress bar there."""
    from ommatidia.sim.progress import echo
    echo(line, file=sys.stderr)


def cmd_presets(args) -> int:
    """List the presets and their parameters."""
    for name in sorted(PRESETS):
        print(f"{name}:")
        for key, value in PRESETS[name].describe().items():
            if key != "name":
                print(f"  {key:<26} {value}")
    return 0


def cmd_generate(args) -> int:
    """Write a component's Verilog, its Verilator waivers and its ports document; with
    ``--lint``, check it with Verilator."""
    from ommatidia.gen.ports import write_interface
    from ommatidia.gen.tops import build_verilog_top, write_companions
    from ommatidia.gen.verilog import write
    cfg = config_of(args)
    output_dir(args.output, "--output")
    component, extra = build_verilog_top(args.top, cfg)
    name = args.name or f"ommatidia_{args.top.replace('-', '_')}"
    path = write(component, name, args.output, extra=extra)
    print(f"wrote {path} (top module {name}, preset {cfg.name})")
    for extra in write_interface(component, path, cfg):
        print(f"wrote {extra}")
    for extra in write_companions(args.top, cfg, component, args.output):
        print(f"wrote {extra}")
    if args.lint:
        from ommatidia.sim.runner import lint_verilog
        ok, messages = lint_verilog(path, name)
        print(messages.strip())
        if not ok:
            raise CLIError(f"verilator --lint-only rejected {path}")
        print(f"verilator --lint-only accepts {path}")
    return 0


def cmd_synth(args) -> int:
    """Synthesise a component for an FPGA family: resources, Fmax, timing."""
    from ommatidia.boards.synth import SynthError, format_report, synthesize, write_report
    from ommatidia.gen.tops import build_top
    cfg = config_of(args)
    freq = args.freq if args.freq is not None else cfg.clock_mhz
    if not freq > 0:
        raise CLIError(f"--freq must be a positive number of MHz, not {freq:g}")
    output_file(args.report, "--report")
    output_dir(args.output, "--output")
    if args.breakdown is not None and not 1 <= args.breakdown <= 8:
        raise CLIError(f"--breakdown DEPTH must be 1..8, not {args.breakdown}")
    component = build_top(args.top, cfg)
    out = args.output or f"build/synth/{args.top}_{cfg.name}_{args.target}"
    try:
        report = synthesize(component, args.target, freq, out, dsp=not args.no_dsp,
                            seed=args.seed, info={"top": args.top, "preset": cfg.name},
                            log=_log)
        if args.breakdown is not None:
            report["breakdown"] = _breakdown(args, cfg, out)
    except SynthError as exc:
        raise CLIError(str(exc)) from None
    if args.report:
        write_report(report, args.report)
    print(format_report(report))
    if args.breakdown is not None:
        from ommatidia.boards.breakdown import format_breakdown
        print(f"per module, hierarchy kept (yosys {report['breakdown']['seconds']:.0f} s; "
              f"rows with submodules):")
        print(format_breakdown(report["breakdown"]["rows"]))
    if args.report:
        print(f"report: {args.report}")
    if not report["timing_met"]:
        failed = ", ".join(f"{name} {c['fmax_mhz']:.2f} MHz"
                           for name, c in report["clocks"].items() if not c["met"])
        if args.allow_timing_fail:
            print(f"timing not met ({failed} < {freq:g} MHz); accepted (--allow-timing-fail)")
        else:
            print(f"ommatidia synth: error: timing not met: {failed} < {freq:g} MHz "
                  f"(use --allow-timing-fail to accept)", file=sys.stderr)
            return 1
    return 0


def _breakdown(args, cfg, out) -> dict:
    """`ommatidia.boards.breakdown.run_breakdown` of the top in ``out``/breakdown."""
    from ommatidia.boards.breakdown import run_breakdown
    from ommatidia.gen.tops import build_top
    _log(f"running yosys again with the hierarchy kept, in {out}/breakdown")
    return run_breakdown(build_top(args.top, cfg), args.target, f"{out}/breakdown",
                         dsp=not args.no_dsp, depth=args.breakdown)


def cmd_build(args) -> int:
    """Build a board's bitstream: the accelerator behind a UART."""
    from ommatidia.boards.board import board
    from ommatidia.boards.build import build_or_error, default_build_dir, format_build
    from ommatidia.sim.progress import progress
    b = board(args.board)
    if args.array:
        try:
            rows, cols = (int(v) for v in args.array.lower().split("x"))
            b = dataclasses.replace(b, array=(rows, cols))
        except ValueError as exc:
            raise CLIError(f"--array must be ROWSxCOLS, e.g. 7x7, not {args.array!r} ({exc})") \
                from None
    if args.clock is not None:
        try:
            b = dataclasses.replace(b, clock_mhz=args.clock)
        except ValueError as exc:
            raise CLIError(f"--clock {args.clock:g}: {exc}") from None
    if args.config or args.sets:
        b = dataclasses.replace(b, custom=config_of(args, b.config))
    out = output_dir(args.output or default_build_dir(b), "--output")
    path = output_file(args.report or f"{out}/report.json", "--report")
    with progress(desc=f"building {b.name}", elapsed_only=True, quiet=args.quiet):
        report = build_or_error(b, out, report_path=path, seed=args.seed,
                                allow_timing_fail=args.allow_timing_fail, router=args.router,
                                route_patience=args.route_patience, log=_log)
    if "error" in report:
        raise CLIError(report["error"])
    print(format_build(report))
    print(f"report: {path}")
    if not report["timing_met"]:
        print(f"timing not met at {b.clock_mhz:g} MHz; accepted (--allow-timing-fail)")
    return 0


def cmd_pe(args) -> int:
    """One PE run on the generated Verilog against the golden row convolution."""
    import random

    from ommatidia.hw.pe import PERun
    from ommatidia.sim.pe_run import run_pe
    cfg = config_of(args)
    if not cfg.pe.counter_bits:
        raise CLIError(f"the PE run checks the PE's MAC counters, and preset {cfg.name} has "
                       f"none (PEConfig.counter_bits = 0)")
    run = PERun(S=args.S, W=args.W, U=args.U, p=args.p, q=args.q, accumulate=args.accumulate)
    run.check(cfg.pe)
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be a fraction from 0 to 1, not {args.zeros}")
    output_file(args.report, "--report")
    output_dir(args.build, "--build")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"PE run {run} on preset {cfg.name}, {args.sim}, seed {seed}", flush=True)
    report, report_path, build = run_pe(cfg, run, zeros=args.zeros, seed=seed, sim=args.sim,
                                        build_root=args.build, report_path=args.report)
    if report is None:
        raise CLIError(f"the simulation wrote no report; see {build}/test.log")
    macs, cycles = report["macs"], report["cycles"]
    print(f"  outputs        {run.p} filters x {run.F} columns, bit-exact: {report['bit_exact']}")
    print(f"  MACs           {macs} ({report['gated_macs']} gated by zero activations, "
          f"{report['gated_macs'] / macs:.1%})")
    print(f"  cycles         {cycles} ({report['filter_loads']} filter loads, "
          f"MAC utilisation {macs / cycles:.1%})")
    print(f"  report         {report_path}")
    return 0
