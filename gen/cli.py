"""The `ommatidia` command line."""

from __future__ import annotations

import argparse
import sys

from .config import PRESETS, preset

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def cmd_presets(args) -> int:
    for name in sorted(PRESETS):
        print(f"{name}:")
        for key, value in PRESETS[name].describe().items():
            if key != "name":
                print(f"  {key:<26} {value}")
    return 0


def cmd_generate(args) -> int:
    from .tops import build_top
    from .verilog import write
    cfg = preset(args.preset)
    component = build_top(args.top, cfg)
    name = args.name or f"ommatidia_{args.top.replace('-', '_')}"
    path = write(component, name, args.output)
    print(f"wrote {path} (top module {name}, preset {cfg.name})")
    if args.lint:
        from ommatidia.sim.runner import lint_verilog
        ok, messages = lint_verilog(path, name)
        print(messages.strip())
        if not ok:
            raise CLIError(f"verilator --lint-only rejected {path}")
        print(f"verilator --lint-only accepts {path}")
    return 0


def cmd_synth(args) -> int:
    from .synth import SynthError, format_report, synthesize, write_report
    from .tops import build_top
    cfg = preset(args.preset)
    freq = args.freq if args.freq is not None else cfg.clock_mhz
    if not freq > 0:
        raise CLIError(f"--freq must be a positive number of MHz, not {freq:g}")
    component = build_top(args.top, cfg)
    out = args.output or f"build/synth/{args.top}_{cfg.name}_{args.target}"
    try:
        report = synthesize(component, args.target, freq, out, dsp=not args.no_dsp,
                            seed=args.seed, info={"top": args.top, "preset": cfg.name},
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    except SynthError as exc:
        raise CLIError(str(exc)) from None
    if args.report:
        write_report(report, args.report)
    print(format_report(report))
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


def cmd_pe(args) -> int:
    """One PE run on the generated Verilog against the golden row convolution."""
    import json
    import pathlib
    import random

    from ommatidia.hw.pe import PE, PERun
    from ommatidia.sim.runner import run_cocotb
    from .verilog import write
    cfg = preset(args.preset)
    run = PERun(S=args.S, W=args.W, U=args.U, p=args.p, q=args.q, accumulate=args.accumulate)
    run.check(cfg.pe)
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be a fraction from 0 to 1, not {args.zeros}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"PE run {run} on preset {cfg.name}, {args.sim}, seed {seed}", flush=True)
    build = pathlib.Path(args.build) / f"pe_{cfg.name}_{args.sim}"
    path = write(PE(cfg.pe), "pe", build)
    report_path = pathlib.Path(args.report or build / "report.json").resolve()
    spec = {"S": run.S, "W": run.W, "U": run.U, "p": run.p, "q": run.q,
            "accumulate": run.accumulate, "zeros": args.zeros}
    try:
        run_cocotb(path, "pe", "ommatidia.sim.tb.tb_pe_run", sim=args.sim, build_dir=build,
                   env={"OMMATIDIA_PRESET": cfg.name, "OMMATIDIA_SEED": seed,
                        "OMMATIDIA_RUN": json.dumps(spec), "OMMATIDIA_REPORT": report_path})
    finally:
        report = json.loads(report_path.read_text()) if report_path.exists() else None
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


def build_parser() -> argparse.ArgumentParser:
    from .tops import TOPS
    parser = argparse.ArgumentParser(
        prog="ommatidia",
        description="Generate, simulate and build Eyeriss-like row-stationary DNN accelerators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("presets", help="list the configuration presets and their parameters")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("generate", help="write the Verilog of a component for a preset")
    p.add_argument("--preset", default="eyeriss", choices=sorted(PRESETS))
    p.add_argument("--top", default="pe", choices=list(TOPS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in TOPS.items()))
    p.add_argument("-o", "--output", default="build", help="output folder (default: build)")
    p.add_argument("--name", help="top module name (default: ommatidia_<top>)")
    p.add_argument("--lint", action="store_true", help="check the Verilog with verilator --lint-only")
    p.set_defaults(func=cmd_generate)

    from .synth import TARGETS
    p = sub.add_parser("pe", help="run one PE on its generated Verilog against the golden model")
    p.add_argument("--preset", default="eyeriss", choices=sorted(PRESETS))
    p.add_argument("--S", type=int, default=3, help="filter row length (default 3)")
    p.add_argument("--W", type=int, default=64, help="ifmap row length (default 64)")
    p.add_argument("--U", type=int, default=1, help="stride (default 1)")
    p.add_argument("--p", type=int, default=4, help="filters per PE (default 4)")
    p.add_argument("--q", type=int, default=4, help="channels per PE (default 4)")
    p.add_argument("--accumulate", action="store_true", help="add random incoming psums")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations (default 0.5)")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--seed", type=int)
    p.add_argument("--report", help="JSON report path")
    p.add_argument("--build", default="build", help="build folder (default: build)")
    p.set_defaults(func=cmd_pe)

    p = sub.add_parser("synth", help="synthesise a component with Yosys and nextpnr: "
                                     "resources, Fmax, timing")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--target", required=True, choices=list(TARGETS))
    p.add_argument("--top", default="pe", choices=list(TOPS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in TOPS.items()))
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="clock constraint in MHz (default: the preset's clock_mhz)")
    p.add_argument("--report", metavar="R.json", help="write the report as JSON")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when a clock misses the constraint")
    p.add_argument("--no-dsp", action="store_true", help="build multipliers from LUTs")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    p.add_argument("-o", "--output", metavar="BUILD_DIR",
                   help="build folder (default: build/synth/<top>_<preset>_<target>)")
    p.set_defaults(func=cmd_synth)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        print(f"ommatidia {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
