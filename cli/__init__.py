"""The `ommatidia` command line: parse the arguments, call one function of the package
that owns the work, print the result.

`ommatidia.cli.parser` builds the parser; the commands live by area in
`ommatidia.cli.hardware` (presets, generate, pe, synth, build), `ommatidia.cli.layers`
(rlc, map, run) and `ommatidia.cli.nets` (net train/import/run, report).
"""

from __future__ import annotations

import sys

from .error import CLIError
from .parser import build_parser

__all__ = ["main", "build_parser", "CLIError"]


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default: ``sys.argv``); its exit status. A user error
    (`CLIError`, ValueError, FileNotFoundError) prints one line and gives 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        print(f"ommatidia {args.command}: error: {exc}", file=sys.stderr)
        return 2

