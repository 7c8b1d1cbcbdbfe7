"""The `ommatidia` command line: parse the arguments, call one function of the package
that owns the work, print the result.

`ommatidia.cli.parser` builds the parser; the commands live by area in
`ommatidia.cli.hardware` (presets, generate, pe, synth, build), `ommatidia.cli.layers`
(rlc, map, run), `ommatidia.cli.nets` (net train/import/run, report),
`ommatidia.cli.explore` (sweep) and `ommatidia.cli.configure` (the --preset/--config/--set
options, config).
"""

from __future__ import annotations

import os
import sys

from .error import CLIError
from .parser import build_parser

__all__ = ["main", "build_parser", "CLIError"]


class _ClosedPipeSafe:
    """A text stream that forwards to ``stream`` until the reader goes away (a
    BrokenPipeError, as in ``ommatidia map ... | head -1``), then drops what is written:
    the command still finishes its work and writes its files."""

    def __init__(self, stream):
        self._stream, self.broken = stream, False

    def _gone(self) -> None:
        self.broken = True
        try:  # the interpreter's last flush of the real stream must not fail either
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, self._stream.fileno())
            os.close(fd)
        except (AttributeError, OSError, ValueError):
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default: ``sys.argv``); its exit status. A user error
    (`CLIError`, ValueError, OSError such as FileNotFoundError) prints one line and gives
    2; a closed standard output (``| head``) only silences the rest of the output."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    args = parser.parse_args(argv)
    stdout = sys.stdout
    sys.stdout = _ClosedPipeSafe(stdout)
    try:
        return args.func(args)
    except (CLIError, ValueError, OSError) as exc:
        print(f"ommatidia {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        sys.stdout.flush()
        sys.stdout = stdout


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` (an OSError as the file it names and the reason)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)
