"""The compiler wrapper of Verilator builds (its makefile's ``OBJCACHE`` hook, meant for
ccache, which a fresh machine lacks): Verilator's run-time library compiled once.

Every Verilator build compiles the run-time library (``verilated.cpp``,
``verilated_vpi.cpp``, ...) again: the same objects from the same command, about a third
of the C++ time of a `tiny` `System` (docs/speed.md). This wrapper keeps each such object
(and its ``.d``) in a cache keyed by the command, the source and the Verilator release,
and copies it out on the next build. It also skips the precompiled headers (``.gch``),
which the builds never read (`ommatidia.toolchain.setup_env` clears their include flag).
Every other command runs unchanged.

Run as ``python objcache.py CXX ARGS...``; plain standard library, so the make's many
compiler calls start it fast.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys

CACHE_ENV = "OMMATIDIA_OBJCACHE"
"""The environment variable holding the cache's folder (`default_cache` otherwise)."""


def default_cache() -> pathlib.Path:
    """``$XDG_CACHE_HOME/ommatidia/verilator`` (``~/.cache`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "ommatidia" / "verilator"


def command() -> str:
    """The ``OBJCACHE`` value that runs this wrapper with this interpreter."""
    return f"{sys.executable} {pathlib.Path(__file__).resolve()}"


def _output(args: list[str]) -> pathlib.Path | None:
    """The object a ``-c`` compile of ``args`` writes: its ``-o``, or the source's stem."""
    if "-o" in args:
        return pathlib.Path(args[args.index("-o") + 1])
    sources = [a for a in args if a.endswith(".cpp")]
    if "-c" in args and sources:
        return pathlib.Path(pathlib.Path(sources[-1]).with_suffix(".o").name)
    return None


def _headers_unread() -> bool:
    """Whether the make runs with the precompiled headers' include flags empty
    (`ommatidia.toolchain.setup_env`), so that no compile reads a ``.gch``."""
    flags = os.environ.get("MAKEFLAGS", "")
    return all(re.search(rf"(^|\s){name}=(\s|$)", flags)
               for name in ("VK_PCH_I_FAST", "VK_PCH_I_SLOW"))


def _library_source(args: list[str]) -> pathlib.Path | None:
    """The run-time library source ``args`` compiles, or None."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or "-c" not in args:
        return None
    include = pathlib.Path(root).resolve() / "include"
    sources = [pathlib.Path(arg).resolve() for arg in args if arg.endswith(".cpp")]
    return next((source for source in sources if source.parent == include), None)


def _key(args: list[str], source: pathlib.Path, out: pathlib.Path) -> str:
    """The cache key of compiling ``source`` to ``out`` with ``args``: the command (the
    object's own name, not its folder), the source, the Verilator release and the
    compiler's file."""
    digest = hashlib.sha1()
    for arg in args:
        digest.update((out.name if arg == str(out) else arg).encode() + b"\0")
    digest.update(source.read_bytes())
    config = source.parent / "verilated_config.h"
    if config.exists():
        digest.update(config.read_bytes())
    compiler = shutil.which(args[0])
    if compiler:
        stat = pathlib.Path(compiler).resolve().stat()
        digest.update(f"{compiler} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _store(files: list[pathlib.Path], folder: pathlib.Path) -> None:
    """Copy ``files`` into ``folder``, each atomically (other builds read it meanwhile)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        tmp = folder / f".{path.name}.{os.getpid()}"
        shutil.copyfile(path, tmp)
        os.replace(tmp, folder / path.name)


def main(args: list[str]) -> int:
    """Run the compile ``args`` (a compiler and its arguments) through the cache."""
    if not args:
        print("usage: objcache.py CXX ARGS...", file=sys.stderr)
        return 2
    out = _output(args)
    if out is not None and out.name.endswith(".gch") and _headers_unread():
        out.write_bytes(b"")
        return 0
    source = _library_source(args)
    if source is None or out is None:
        return subprocess.call(args)
    depend = out.with_suffix(".d")
    folder = pathlib.Path(os.environ.get(CACHE_ENV) or default_cache()) \
        / _key(args, source, out)
    cached = folder / out.name
    if cached.exists():
        shutil.copyfile(cached, out)
        if (folder / depend.name).exists():
            shutil.copyfile(folder / depend.name, depend)
        return 0
    status = subprocess.call(args)
    if status == 0 and out.exists():
        try:
            _store([depend, out] if depend.exists() else [out], folder)
        except OSError:
            pass
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
