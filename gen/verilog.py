"""Verilog emission of Ommatidia components (through Amaranth's Yosys backend)."""

from __future__ import annotations

import pathlib

from amaranth.back import verilog

__all__ = ["emit", "write"]


def emit(component, name: str) -> str:
    """Verilog text of ``component`` with top module ``name``, ports ``clk``/``rst``."""
    return verilog.convert(component, name=name, emit_src=False)


def write(component, name: str, out_dir) -> pathlib.Path:
    """Write ``<out_dir>/<name>.v`` and return its path."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(emit(component, name))
    return path
