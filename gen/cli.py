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


def _rlc_word_bytes(fmt) -> int:
    return (fmt.word_bits + 7) // 8


def _rlc_read_words(path, fmt) -> list[int]:
    import pathlib
    data = pathlib.Path(path).read_bytes()
    size = _rlc_word_bytes(fmt)
    if len(data) % size:
        raise CLIError(f"{path} holds {len(data)} bytes, not a whole number of "
                       f"{size}-byte words (word_bits = {fmt.word_bits})")
    words = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]
    for i, w in enumerate(words):
        if w >> fmt.word_bits:
            raise CLIError(f"{path}: word {i} = {w:#x} has bits above word_bits = {fmt.word_bits}")
    return words


def cmd_rlc(args) -> int:
    """Run-length encode an .npy array to little-endian words, or decode them back."""
    import pathlib

    import numpy as np

    from ommatidia.sim import rlc
    from .config import RLCFormat

    fmt = RLCFormat.parse(args.format)
    count_limit = (1 << 24) - 1
    if args.action == "encode":
        try:
            array = np.load(args.input, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError) as exc:
            raise CLIError(f"cannot read {args.input} as a .npy array: {exc}") from None
        values = rlc.check_values(array, fmt)
        if args.hw:
            if len(values) > count_limit:
                raise CLIError(f"--hw takes at most {count_limit} values, not {len(values)}")
            from ommatidia.sim.tb.tb_rlc import run_encoder_hw
            words = run_encoder_hw(fmt, [values], sim=args.sim, build_root=args.build)[0]["words"]
        else:
            words = rlc.encode(values, fmt)
        size = _rlc_word_bytes(fmt)
        pathlib.Path(args.output).write_bytes(b"".join(w.to_bytes(size, "little") for w in words))
        raw, coded = len(values) * fmt.level_bits, len(words) * fmt.word_bits
        print(f"{len(values)} values -> {len(words)} words of {fmt.word_bits} bits "
              f"({raw / coded:.2f}x smaller than {fmt.level_bits}-bit values)"
              f"{' on the ' + args.sim + ' Verilog' if args.hw else ''}: {args.output}")
        return 0

    if args.n < 0:
        raise CLIError(f"N must be a non-negative number of values, not {args.n}")
    words = _rlc_read_words(args.input, fmt)
    if args.hw:
        if args.n > count_limit:
            raise CLIError(f"--hw takes at most {count_limit} values, not {args.n}")
        from ommatidia.sim.tb.tb_rlc import run_decoder_hw
        res = run_decoder_hw(fmt, [(words, args.n)], sim=args.sim, build_root=args.build)[0]
        values = rlc.check_result(rlc.DecodeResult(
            np.array(res["values"], dtype=np.int64), rlc.RLCFault(res["fault"]),
            res["fault_word"], res["words_used"],
            res["done"]), len(words), args.n)
    else:
        values = rlc.decode(words, args.n, fmt)
    dtype = np.int8 if fmt.level_bits <= 8 else np.int16 if fmt.level_bits <= 16 else np.int32
    np.save(args.output, values.astype(dtype))
    print(f"{len(words)} words -> {args.n} values ({np.dtype(dtype).name})"
          f"{' on the ' + args.sim + ' Verilog' if args.hw else ''}: {args.output}")
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

    p = sub.add_parser("rlc", help="run-length code activations (Eyeriss RLC): encode an .npy "
                                   "array to words, decode words back")
    rlc_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fmt_help = "R,L,P,W: run bits, level bits, pairs per word, word bits (default: 5,16,3,64)"
    for action, help_text in (("encode", "IN.npy -> OUT.bin"), ("decode", "IN.bin N -> OUT.npy")):
        q = rlc_sub.add_parser(action, help=help_text,
                               description=".bin files hold the words as little-endian "
                                           "unsigned integers of ceil(word_bits/8) bytes.")
        if action == "encode":
            q.add_argument("input", metavar="IN.npy", help="integer array (flattened in C order)")
            q.add_argument("output", metavar="OUT.bin")
        else:
            q.add_argument("input", metavar="IN.bin")
            q.add_argument("n", metavar="N", type=int, help="number of values in the stream")
            q.add_argument("output", metavar="OUT.npy")
        q.add_argument("--format", default="5,16,3,64", metavar="R,L,P,W", help=fmt_help)
        q.add_argument("--hw", action="store_true",
                       help="run the generated Verilog instead of the reference codec")
        q.add_argument("--sim", default="verilator", choices=["verilator", "icarus"],
                       help="simulator for --hw (default: verilator)")
        q.add_argument("--build", default="build", metavar="DIR",
                       help="build folder for --hw (default: build)")
        q.set_defaults(func=cmd_rlc)

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
