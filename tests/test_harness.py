"""The simulation harness (`ommatidia.sim.harness`): the generated top's ports, ``rst``
registered, the clock made inside on request, only the ports public to Verilator."""

import re

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ommatidia.sim.harness import harness_name, public_vlt, wrap
from ommatidia.sim.runner import lint_verilog


class Counter(wiring.Component):
    en: In(1)
    step: In(4)
    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + self.step)
        return m


def counter_verilog() -> str:
    return verilog.convert(Counter(), name="counter", emit_src=False)


def test_harness_has_the_tops_ports_and_registers_rst():
    text = wrap(counter_verilog(), "counter")
    assert "module counter_harness(" in text
    for decl in ("input clk;", "input rst;", "input en;", "input [3:0] step;",
                 "output [7:0] count;"):
        assert decl in text
    assert "always @(posedge clk) rst_q <= rst;" in text
    assert re.search(r"\.rst\(rst_q\)", text) and re.search(r"\.step\(step\)", text)


def test_harness_clock_is_made_inside():
    text = wrap(counter_verilog(), "counter", clock_ns=10)
    assert "input clk;" not in text and "reg clk = 1'b1;" in text
    assert "always #5 clk = ~clk;" in text
    header = text[text.index("module counter_harness("):text.index(");")]
    assert "clk" not in header and "rst" in header


@pytest.mark.parametrize("clock_ns", [None, 10])
def test_harness_lints_with_the_design(tmp_path, clock_ns):
    path = tmp_path / "counter.v"
    design = counter_verilog()
    path.write_text(design + wrap(design, "counter", clock_ns))
    ok, messages = lint_verilog(path, harness_name("counter"))
    assert ok, messages


def test_only_the_ports_are_public():
    lines = public_vlt(counter_verilog(), "counter").splitlines()
    assert lines[0] == "`verilator_config"
    assert sorted(re.findall(r'-var "(\w+)"', "\n".join(lines))) == \
        ["clk", "count", "en", "rst", "step"]
    assert all('-module "counter_harness"' in line for line in lines[1:])


def test_harness_rejects_what_it_cannot_wrap():
    with pytest.raises(ValueError, match="no module nothere"):
        wrap(counter_verilog(), "nothere")
    no_rst = "module comb(a, y);\n  input a;\n  output y;\n  assign y = a;\nendmodule\n"
    with pytest.raises(ValueError, match="no clk input"):
        wrap(no_rst, "comb")
    with pytest.raises(ValueError, match="clock_ns must be an even number"):
        wrap(counter_verilog(), "counter", clock_ns=5)
