"""The simulation harness (`ommatidia.sim.harness`): the generated top's ports, ``rst``
registered, the clock made inside on request, only the ports public to Verilator."""

import re

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ommatidia.hw.system import DRAM_MODULE, dram_verilog
from ommatidia.sim.harness import (HOST_DUMP_FILE, HOST_LOAD_FILE, harness_name, memh,
                                   public_vlt, read_memh, wrap)
from ommatidia.sim.runner import hier_block_source, lint_verilog


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
    with pytest.raises(ValueError, match="memory must be a hierarchical name"):
        wrap(counter_verilog(), "counter", memory="dram.mem; $finish")


def memory_top() -> str:
    """A top holding the `System`'s Verilog DRAM as ``dram``, read on its output."""
    return dram_verilog() + f"""
module memtop(clk, rst, addr, data);
  input clk;
  input rst;
  input [3:0] addr;
  output [63:0] data;
  {DRAM_MODULE} #(.WORDS(16), .ABITS(4), .WIDTH(64)) dram (
    .clk(clk), .rd_en(~rst), .rd_addr(addr), .rd_data(data),
    .wr_en(1'b0), .wr_addr(4'd0), .wr_data(64'd0));
endmodule
"""


def test_harness_loads_and_dumps_a_memory_in_bulk():
    text = wrap(memory_top(), "memtop", clock_ns=10, memory="dram.mem")
    for decl in ("input host_load;", "input host_dump;", "input [31:0] host_dump_first;",
                 "input [31:0] host_dump_last;"):
        assert decl in text
    assert f'always @(posedge host_load) $readmemh("{HOST_LOAD_FILE}", dut.dram.mem);' in text
    assert (f'always @(posedge host_dump) $writememh("{HOST_DUMP_FILE}", dut.dram.mem, '
            f'host_dump_first, host_dump_last);') in text
    assert "host_load" not in wrap(memory_top(), "memtop", clock_ns=10)
    names = re.findall(r'-var "(\w+)"', public_vlt(memory_top(), "memtop", "dram.mem"))
    assert sorted(names) == ["addr", "clk", "data", "host_dump", "host_dump_first",
                             "host_dump_last", "host_load", "rst"]


@pytest.mark.parametrize("clock_ns", [None, 10])
def test_bulk_harness_lints_with_the_design(tmp_path, clock_ns):
    path = tmp_path / "memtop.v"
    design = memory_top()
    path.write_text(design + wrap(design, "memtop", clock_ns, "dram.mem"))
    ok, messages = lint_verilog(path, harness_name("memtop"))
    assert ok, messages


def test_memh_sets_the_listed_words_only(seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    addrs = sorted(set(int(a) for a in rng.integers(0, 1 << 20, 50)) | {0, 1, 2, 7})
    words = {a: int(rng.integers(0, 1 << 63)) * 2 + int(rng.integers(2)) for a in addrs}
    text = memh(reversed(list(words.items())))
    lines = text.splitlines()
    assert lines[:5] == ["@0", f"{words[0]:x}", f"{words[1]:x}", f"{words[2]:x}", "@7"]
    assert sum(line.startswith("@") for line in lines) == 1 + sum(
        b != a + 1 for a, b in zip(addrs, addrs[1:]))
    at, seen = None, {}
    for line in lines:
        if line.startswith("@"):
            at = int(line[1:], 16)
        else:
            seen[at] = int(line, 16)
            at += 1
    assert seen == words
    assert read_memh("// 0x00000004\n00000000000000ff\n@5\nDEADBEEF\n\n") == [255, 0xDEADBEEF]


def test_hier_block_source_renames_the_block(tmp_path):
    """`hier_block_source` renames a module and its instances, not a module whose name it
    starts, and refuses a module the Verilog lacks."""
    src = tmp_path / "d.v"
    src.write_text("module top(a);\n  system__PE pe0 ();\n  system__PECell c ();\n"
                   "endmodule\nmodule system__PE(a);\nendmodule\n"
                   "module system__PECell(a);\n  system__PE pe ();\nendmodule\n")
    out, vlt = hier_block_source(src, tmp_path, ["system__PE"])
    text = out.read_text()
    assert text.count("system_hb_PE ") == 2 and "module system_hb_PE(" in text
    assert "module system__PECell(" in text and "system__PE " not in text
    assert vlt.parent == tmp_path and src.read_text().count("system__PE ") == 2
    with pytest.raises(ValueError, match="d.v has no module system__GLB"):
        hier_block_source(src, tmp_path, ["system__GLB"])
