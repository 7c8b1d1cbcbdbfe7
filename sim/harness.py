"""The simulation harness around a generated top: its reset registered, its ports only.

Amaranth ends every next-state block with ``if (rst)``. When ``rst`` is a top-level
input written by cocotb, Verilator evaluates all that logic in its
input-combinational region on every evaluation, several times a cycle; with ``rst``
registered inside a wrapper it becomes clocked logic like the rest. `wrap` writes
that wrapper: a module named ``<top>_harness`` with the top's ports, which
registers ``rst`` on the rising edge of ``clk`` and instantiates the top. A
testbench drives it by the same port names; the design sees reset one cycle later
than the testbench writes it, in both directions (`RESET_LATENCY`). With
``clock_ns``, the harness also makes the clock itself (``clk`` is then no port but
a register the testbench can still wait on): the simulator advances the clock
without calling into Python or VPI on every edge. Verilator needs ``--timing``
for that (`TIMING_ARGS`).

With ``memory`` (the hierarchical name of a memory inside the top, such as the
`ommatidia.hw.system.System`'s DRAM ``dram.mem``), the harness also loads and dumps
that memory in bulk, in the simulator: a rising edge of ``host_load`` reads
`HOST_LOAD_FILE` into it (``$readmemh``: only the words the file lists change), one of
``host_dump`` writes words ``host_dump_first`` to ``host_dump_last`` to
`HOST_DUMP_FILE` (``$writememh``). Both files are named relative to the
simulator's working directory, which is also the testbench's (cocotb runs in the
simulator's process). A testbench then loads an image in a cycle instead of a word a
cycle with Python awake (`memh`, `read_memh`).

`public_vlt` is the Verilator configuration that makes only the wrapper's
ports visible to VPI, so Verilator optimizes everything inside.
"""

from __future__ import annotations

import re

__all__ = ["RESET_LATENCY", "TIMING_ARGS", "HOST_LOAD_FILE", "HOST_DUMP_FILE", "harness_name",
           "wrap", "public_vlt", "memh", "read_memh"]

RESET_LATENCY = 1
"""Cycles between the testbench's ``rst`` and the design's reset."""

TIMING_ARGS = ("--timing", "-CFLAGS", "-fcoroutines", "-CFLAGS", "-std=gnu++20")
"""Verilator options for a harness that makes its clock: the delay of the clock's
``always`` block needs ``--timing``, whose C++ coroutines need gcc's
``-fcoroutines`` with C++20 (the PyPI wheel's makefiles do not add them)."""

HOST_LOAD_FILE = "host_load.hex"
"""The ``$readmemh`` file a harness with a ``memory`` loads on ``host_load``."""

HOST_DUMP_FILE = "host_dump.hex"
"""The ``$writememh`` file a harness with a ``memory`` writes on ``host_dump``."""

_HOST_PORTS = [("input", "", "host_load"), ("input", "", "host_dump"),
               ("input", "[31:0]", "host_dump_first"), ("input", "[31:0]", "host_dump_last")]

_DECL = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(\[\d+:\d+\]\s*)?(\w+)\s*;", re.M)


def harness_name(top: str) -> str:
    return f"{top}_harness"


def _ports(verilog: str, top: str) -> list[tuple[str, str, str]]:
    """(direction, range or '', name) of each port of Amaranth's Verilog module ``top``."""
    start = re.search(rf"^module {re.escape(top)}\s*\(", verilog, re.M)
    if start is None:
        raise ValueError(f"the Verilog has no module {top}")
    body = verilog[start.end():verilog.index("endmodule", start.end())]
    return [(d, (r or "").strip(), name) for d, r, name in _DECL.findall(body)]


def wrap(verilog: str, top: str, clock_ns: int | None = None,
         memory: str | None = None) -> str:
    """The Verilog of ``top``'s harness (to be compiled with ``verilog``): ``rst``
    registered on ``clk``, every other port passed through; with ``clock_ns`` (an
    even number of time units of the simulation, ns for `ommatidia.sim.runner`),
    ``clk`` made inside: high from time 0, falling at half the period; with
    ``memory``, the ``host_*`` ports that load and dump it in bulk."""
    ports = _ports(verilog, top)
    names = [name for _, _, name in ports]
    for need in ("clk", "rst"):
        if need not in names:
            raise ValueError(f"module {top} has no {need} input to register the reset on")
    if clock_ns is not None and (clock_ns < 2 or clock_ns % 2):
        raise ValueError(f"clock_ns must be an even number of at least 2, not {clock_ns}")
    if memory is not None and not re.fullmatch(r"\w+(\.\w+)*", memory):
        raise ValueError(f"memory must be a hierarchical name such as dram.mem, not {memory!r}")
    outer = [p for p in ports if clock_ns is None or p[2] != "clk"]
    if memory is not None:
        outer += _HOST_PORTS
    decls = "\n".join(f"  {d}{' ' + r if r else ''} {name};" for d, r, name in outer)
    clock = "" if clock_ns is None else (f"  reg clk = 1'b1;\n"
                                         f"  always #{clock_ns // 2} clk = ~clk;\n")
    host = "" if memory is None else (
        f'  always @(posedge host_load) $readmemh("{HOST_LOAD_FILE}", dut.{memory});\n'
        f'  always @(posedge host_dump) $writememh("{HOST_DUMP_FILE}", dut.{memory}, '
        f'host_dump_first, host_dump_last);\n')
    conns = ",\n".join(f"    .{name}({'rst_q' if name == 'rst' else name})" for name in names)
    return (f"\nmodule {harness_name(top)}({', '.join(p[2] for p in outer)});\n{decls}\n"
            f"{clock}"
            f"  reg rst_q = 1'b0;\n"
            f"  always @(posedge clk) rst_q <= rst;\n"
            f"{host}"
            f"  {top} dut (\n{conns}\n  );\nendmodule\n")


def public_vlt(verilog: str, top: str, memory: str | None = None) -> str:
    """A Verilator configuration making the ports of ``top``'s harness (with ``memory``,
    its ``host_*`` ports too), and nothing else, readable and writable through VPI."""
    ports = _ports(verilog, top) + (_HOST_PORTS if memory is not None else [])
    lines = [f'public_flat_rw -module "{harness_name(top)}" -var "{name}"'
             for _, _, name in ports]
    return "`verilator_config\n" + "\n".join(lines) + "\n"


def memh(words) -> str:
    """``$readmemh`` text setting the words of ``words`` ((address, value) pairs) and
    no others: an ``@address`` line wherever the addresses jump."""
    lines, expect = [], None
    for addr, value in sorted(words):
        if addr != expect:
            lines.append(f"@{addr:x}")
        lines.append(f"{value:x}")
        expect = addr + 1
    return "\n".join(lines) + "\n"


def read_memh(text: str) -> list[int]:
    """The words of a ``$writememh`` file, in order (its comments and ``@`` lines
    skipped: the dump is one contiguous range)."""
    words = []
    for line in text.splitlines():
        line = line.split("//")[0].strip()
        if line and not line.startswith("@"):
            words.append(int(line, 16))
    return words
