"""Verilog emission that keeps the hierarchy (`ommatidia.gen.verilog`): each distinct
component is written once and instantiated wherever it appears.

That the hierarchical Verilog still computes bit for bit what the Amaranth design does is
shown by the cocotb tests that simulate it: tests/test_array_verilog.py (the tiny array,
Verilator and Icarus), tests/test_noc_verilog.py, tests/test_system_verilog.py and
tests/test_axi_verilog.py all write their Verilog through `emit`.
"""

import dataclasses
import re

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import preset
from ommatidia.gen.ports import _verilog_ports
from ommatidia.gen.verilog import emit, module_count
from ommatidia.hw.array import PEArray
from ommatidia.hw.pe import PE


def test_the_array_writes_one_cell_module_and_instantiates_it_at_every_pe():
    cfg = preset("tiny")
    text = emit(PEArray(cfg), "array")
    counts = module_count(text)
    pe_modules = [name for name in counts if name.startswith("array__PE")]
    assert sorted(pe_modules) == ["array__PE", "array__PECell"]
    assert len(re.findall(r"^module array__PECell\(", text, re.M)) == 1
    assert len(re.findall(r"^module array__PE\(", text, re.M)) == 1
    assert counts["array__PECell"] == cfg.rows * cfg.cols
    assert counts["array__PE"] == 1
    assert counts["array"] == 0
    flat = emit(PEArray(cfg), "array", flat=True)
    assert len(re.findall(r"^module ", flat, re.M)) > 3 * len(counts)
    assert len(text) < len(flat) // 2


def test_the_top_module_has_the_ports_of_the_flat_one():
    cfg = preset("tiny")
    text, flat = emit(PEArray(cfg), "array"), emit(PEArray(cfg), "array", flat=True)
    assert _verilog_ports(text, "array") == _verilog_ports(flat, "array")
    ports = _verilog_ports(text, "array__PE")
    assert ports["clk"] == ("input", 1) and ports["rst"] == ("input", 1)


def test_the_text_is_the_same_on_every_run():
    cfg = preset("tiny")
    assert emit(PEArray(cfg), "array") == emit(PEArray(cfg), "array")


class _ThreePEs(wiring.Component):
    """Two PEs of one configuration and one whose filter spad is deeper (same ports)."""

    done: Out(3)
    busy: In(1)

    def __init__(self, a, b):
        self._pes = [PE(a), PE(a), PE(b)]
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        for k, pe in enumerate(self._pes):
            m.submodules[f"pe{k}"] = pe
            m.d.comb += self.done[k].eq(pe.done)
        return m


def test_components_with_other_parameters_but_the_same_ports_are_other_modules():
    a = preset("tiny").pe
    b = dataclasses.replace(a, filter_spad_depth=a.filter_spad_depth + 8)
    three = _ThreePEs(a, b)
    assert three._pes[0].signature == three._pes[2].signature
    counts = module_count(emit(three, "three"))
    assert counts == {"three": 0, "three__PE": 2, "three__PE_1": 1}


def test_memories_are_written_as_amaranth_writes_them_and_zeroed_by_a_loop():
    from amaranth.back import rtlil
    from ommatidia.gen import verilog
    from ommatidia.hw.glb import GLB
    cfg = preset("tiny")
    amaranth_text = rtlil.convert(GLB(cfg, readers=2, writers=1), name="glb", emit_src=False)
    with verilog._fast_memory_init():
        fast_text = rtlil.convert(GLB(cfg, readers=2, writers=1), name="glb", emit_src=False)
    assert fast_text == amaranth_text
    text = emit(GLB(cfg, readers=2, writers=1), "glb")
    flat = emit(GLB(cfg, readers=2, writers=1), "glb", flat=True)
    depth = len(re.findall(r"^    bank0\[\d+\] = 64'h0+;$", flat, re.M))
    assert depth > 1 and "bank0[0] =" not in text
    assert f"for (i = 0; i < {depth}; i = i + 1) bank0[i] = 64'h0000000000000000;" in text


def test_generate_writes_the_system_with_the_dram_of_the_simulation_tests(tmp_path, capsys):
    from ommatidia.cli import main
    from ommatidia.hw.system import DRAM_MODULE, DRAM_WORDS
    assert main(["generate", "--preset", "tiny", "--top", "system", "-o", str(tmp_path)]) == 0
    text = (tmp_path / "ommatidia_system.v").read_text()
    assert module_count(text)[DRAM_MODULE] == 1
    assert f".WORDS(32'd{DRAM_WORDS})" in text
    assert len(text) < 1_000_000


def test_view_fields_read_nowhere_are_not_written_but_read_ones_are():
    from amaranth.lib import data

    class Pair(wiring.Component):
        i: In(data.ArrayLayout(8, 2))
        o: Out(8)
        unread: Out(1)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.o.eq(self.i[1])
            return m

    text = emit(Pair(), "pair")
    assert "i[0]" not in text
    assert re.search(r"assign o = i\[15:8\];", text)
    assert re.search(r"^\s*input \[15:0\] i;", text, re.M)
    assert re.search(r"^\s*output unread;", text, re.M)
    rtlil = ("module \\m\n  wire width 8 input 0 \\a\n  wire width 4 \\a.lo\n"
             "  wire width 4 \\a.hi\n  wire width 4 output 1 \\b\n"
             "connect \\a.lo \\a [3:0]\nconnect \\a.hi \\a [7:4]\nconnect \\b \\a.hi\nend\n")
    from ommatidia.gen.verilog import _drop_aliases
    kept = _drop_aliases(rtlil)
    assert "\\a.lo" not in kept
    assert kept.count("\\a.hi") == 3


def test_one_wire_a_signal_gives_the_same_verilog(monkeypatch):
    """`_whole_signals` (no alias wire per view field or array element) changes no byte of
    a `tiny` accelerator's Verilog: views, arrays, enum-shaped signals, memories."""
    import contextlib
    from ommatidia.gen import verilog
    from ommatidia.hw.top import Accelerator
    cfg = preset("tiny")
    fast = emit(Accelerator(cfg), "acc")
    monkeypatch.setattr(verilog, "_whole_signals", contextlib.nullcontext)
    assert emit(Accelerator(cfg), "acc") == fast
    assert "enum_base_type" in fast
