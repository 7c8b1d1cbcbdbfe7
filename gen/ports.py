"""What a testbench needs beside a component's Verilog: the Verilator waivers and the
ports document.

`ports` reads the component's `amaranth.lib.wiring` signature: every port with its
direction and width, the streams (``x__valid``/``x__ready``/``x__payload``) and the
fields of a `amaranth.lib.data` payload with their bit ranges, checked against the
Verilog's port declarations. `write_interface` writes ``<name>.vlt`` (a Verilator
configuration file waiving `VERILATOR_WAIVERS` in the generated file only),
``<name>.ports.json`` and ``<name>.ports.md``.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import re

from amaranth.hdl import Shape
from amaranth.lib import data, wiring

__all__ = ["VERILATOR_WAIVERS", "HANDSHAKE", "ports", "vlt_text", "ports_markdown",
           "write_interface"]

VERILATOR_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "UNOPTFLAT", "CASEINCOMPLETE", "CASEOVERLAP")
"""Verilator warnings Amaranth's netlists raise by design: implicit width changes,
combinational loops Verilator sees through packed struct signals, FSM ``casez``
statements without a default (the default assignment precedes them), and ``casez``
statements whose patterns overlap (If/Elif chains: the first match wins, as in Verilog)."""

HANDSHAKE = ("A stream transfers one payload at a rising clock edge where valid and ready "
             "are both high. Once valid is high, it stays high and the payload holds until "
             "the transfer; valid never waits for ready (Amaranth's lib.stream rules). "
             "ready may depend on valid combinationally.")

_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;", re.M)


def _verilog_ports(text: str, module: str) -> dict[str, tuple[str, int]]:
    """Port name -> (direction, width) from the declarations of Amaranth's Verilog
    ``module``."""
    start = re.search(rf"^module {re.escape(module)}\s*\(", text, re.M)
    if start is None:
        raise ValueError(f"the Verilog has no module {module}")
    body = text[start.end():text.index("endmodule", start.end())]
    return {name: (d, int(hi) - int(lo) + 1 if hi else 1)
            for d, hi, lo, name in _DECL.findall(body)}


def _fields(layout: data.Layout, prefix: str = "") -> list[dict]:
    """The fields of ``layout`` (nested ones flattened as ``a.b``) with their bit ranges."""
    out = []
    for name, field in layout:
        path = f"{prefix}{name}"
        if isinstance(field.shape, data.Layout):
            sub = _fields(field.shape, f"{path}.")
            out += [{**f, "lsb": f["lsb"] + field.offset, "msb": f["msb"] + field.offset}
                    for f in sub]
            continue
        shape = Shape.cast(field.shape)
        out.append({"name": path, "lsb": field.offset, "msb": field.offset + field.width - 1,
                    "width": field.width, "signed": shape.signed})
    return out


def ports(component: wiring.Component, name: str, verilog: str) -> dict:
    """The ports document of ``component`` whose Verilog (top module ``name``) is
    ``verilog``: clock and reset, every port, the streams and their payload fields.

    Raises ValueError when a port of the signature is missing from the Verilog or has
    another direction or width there.
    """
    declared = _verilog_ports(verilog, name)
    rows, streams = [], {}
    flows = {path: m.flow for path, m in component.signature.members.flatten() if m.is_port}
    for path, _, value in component.signature.flatten(component):
        port = "__".join(str(p) for p in path)
        flow = flows[tuple(p for p in path if not isinstance(p, int))]
        direction = "input" if flow == wiring.In else "output"
        shape = value.shape()
        layout = shape if isinstance(shape, data.Layout) else None
        shape = Shape.cast(shape)
        width = shape.width
        if declared.get(port) != (direction, width):
            raise ValueError(f"port {port} ({direction}, {width} bits) of the signature is "
                             f"{declared.get(port, 'missing')} in the Verilog of {name}")
        row = {"name": port, "direction": direction, "width": width, "signed": shape.signed}
        if layout is not None:
            row["fields"] = _fields(layout)
        rows.append(row)
        if len(path) >= 2 and path[-1] in ("valid", "ready", "payload"):
            stream = "__".join(str(p) for p in path[:-1])
            s = streams.setdefault(stream, {"name": stream})
            s[path[-1]] = port
            if path[-1] == "valid":
                s["direction"] = direction
    doc = type(component).__doc__ or ""
    module_doc = inspect.getmodule(type(component)).__doc__ or ""
    return {
        "module": name, "component": f"{type(component).__module__}.{type(component).__name__}",
        "clock": ({"port": "clk", "edge": "rising"} if "clk" in declared else None),
        "reset": ({"port": "rst", "active": "high", "kind": "synchronous",
                   "note": "hold it high for at least one rising clock edge"}
                  if "rst" in declared else None),
        "handshake": HANDSHAKE,
        "streams": [s for s in streams.values() if {"valid", "ready", "payload"} <= set(s)],
        "ports": rows,
        "description": inspect.cleandoc(doc),
        "module_description": inspect.cleandoc(module_doc),
    }


def vlt_text(verilog_name: str) -> str:
    """A Verilator configuration file waiving `VERILATOR_WAIVERS` in file ``verilog_name``."""
    lines = ["`verilator_config",
             "// Warnings Amaranth's netlists raise by design (ommatidia.gen.ports); pass this",
             "// file to Verilator beside the Verilog."]
    lines += [f'lint_off -rule {rule} -file "*{verilog_name}"' for rule in VERILATOR_WAIVERS]
    return "\n".join(lines) + "\n"


def ports_markdown(doc: dict) -> str:
    """The ports document as markdown."""
    out = [f"# `{doc['module']}`: ports", "",
           f"Generated from the signature of `{doc['component']}`.", ""]
    if doc["clock"]:
        out.append(f"- Clock: `{doc['clock']['port']}`, every register on its rising edge.")
    if doc["reset"]:
        out.append(f"- Reset: `{doc['reset']['port']}`, active high, synchronous "
                   f"({doc['reset']['note']}).")
    out += [f"- Handshake: {doc['handshake']}",
            "- Payloads are flat vectors; struct fields sit at the bit ranges below "
            "(bit 0 is the least significant). Signed values are two's complement.", "",
            "## Streams", "", "| stream | direction | valid | ready | payload |",
            "| --- | --- | --- | --- | --- |"]
    for s in doc["streams"]:
        out.append(f"| `{s['name']}` | {s['direction']} | `{s['valid']}` | `{s['ready']}` | "
                   f"`{s['payload']}` |")
    out += ["", "## Ports", "", "| port | direction | width | signed |",
            "| --- | --- | --- | --- |"]
    for p in doc["ports"]:
        out.append(f"| `{p['name']}` | {p['direction']} | {p['width']} | "
                   f"{'yes' if p['signed'] else 'no'} |")
    for p in doc["ports"]:
        if "fields" not in p:
            continue
        out += ["", f"## `{p['name']}` fields ({p['width']} bits)", "",
                "| field | bits | width | signed |", "| --- | --- | --- | --- |"]
        for f in p["fields"]:
            out.append(f"| `{f['name']}` | [{f['msb']}:{f['lsb']}] | {f['width']} | "
                       f"{'yes' if f['signed'] else 'no'} |")
    if "configuration" in doc:
        out += ["", f"The configuration ({doc['configuration']['name']}) is in "
                f"`{doc['module']}.ports.json` under `configuration`."]
    for title, key in (("The component", "description"), ("Its module", "module_description")):
        if doc[key]:
            out += ["", f"## {title}", "", "```text", doc[key], "```"]
    return "\n".join(out) + "\n"


def write_interface(component: wiring.Component, verilog_path, cfg=None) -> list[pathlib.Path]:
    """Write ``<name>.vlt``, ``<name>.ports.json`` and ``<name>.ports.md`` beside
    ``verilog_path`` (``<name>.v``, the Verilog of ``component``, built from
    `ArrayConfig` ``cfg``, whose fields the JSON also holds); their paths."""
    from .config import config_fields
    verilog_path = pathlib.Path(verilog_path)
    name = verilog_path.stem
    doc = ports(component, name, verilog_path.read_text())
    if cfg is not None:
        doc["configuration"] = config_fields(cfg)
    files = {verilog_path.with_suffix(".vlt"): vlt_text(verilog_path.name),
             verilog_path.with_name(f"{name}.ports.json"): json.dumps(doc, indent=2) + "\n",
             verilog_path.with_name(f"{name}.ports.md"): ports_markdown(doc)}
    for path, text in files.items():
        path.write_text(text)
    return list(files)
