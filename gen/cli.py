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
    p.set_defaults(func=cmd_generate)

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
