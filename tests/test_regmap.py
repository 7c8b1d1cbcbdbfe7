"""The AXI top's register map: one definition (`ommatidia.hw.axi_regs`), the same offsets in
the generated Python module and C header, and `generate --top axi` writes both."""

import shutil
import subprocess

import pytest

from ommatidia.gen.config import TINY
from ommatidia.gen.regmap import constants, files
from ommatidia.hw import axi_regs as regs


def test_map_is_consistent():
    """Offsets distinct, aligned, below the counters; counters fit the 4 KiB window."""
    offsets = [r.offset for r in regs.REGISTERS]
    assert len(set(offsets)) == len(offsets)
    assert regs.counter_offset(len(regs.counter_names()) - 1) + 8 <= 1 << regs.ADDR_BITS
    with pytest.raises(ValueError, match="no register 'NOPE'"):
        regs.offset("NOPE")
    with pytest.raises(ValueError, match="offset must be a multiple of 4"):
        regs.Register("X", 0x102, "r", "")


@pytest.mark.parametrize("data_width", [64, 128])
def test_python_module_matches(data_width):
    namespace = {}
    exec(files(TINY, data_width)["ommatidia_axi_regs.py"], namespace)
    for reg in regs.REGISTERS:
        assert namespace[reg.name] == reg.offset
    assert namespace["COUNTERS"] == regs.counter_names()
    assert namespace["COUNTER_DRAM_WORDS_READ"] == regs.counter_offset(
        regs.counter_names().index("dram_words_read"))
    assert namespace["CONFIG_VALUE"] == 3 | 4 << 8 | 8 << 16 | (data_width // 8) << 24
    assert namespace["STATUS_AXI_ERROR"] == regs.STATUS_AXI_ERROR


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_header_matches(tmp_path):
    """A C program built against the header prints every constant as the module has it."""
    (tmp_path / "ommatidia_axi_regs.h").write_text(files(TINY, 64)["ommatidia_axi_regs.h"])
    names = [name for name, _, _ in constants(TINY, 64)]
    body = "\n".join(f'  printf("%u\\n", (unsigned)OMMATIDIA_AXI_{n});' for n in names)
    (tmp_path / "main.c").write_text(f'#include <stdio.h>\n#include "ommatidia_axi_regs.h"\n'
                                     f'int main(void) {{\n{body}\n  return 0;\n}}\n')
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(tmp_path / "main"),
                    str(tmp_path / "main.c")], check=True)
    out = subprocess.run([str(tmp_path / "main")], check=True, capture_output=True, text=True)
    assert [int(v) for v in out.stdout.split()] == [v for _, v, _ in constants(TINY, 64)]


def test_generate_writes_the_map(tmp_path):
    from ommatidia.cli import main
    assert main(["generate", "--preset", "tiny", "--top", "axi", "-o", str(tmp_path)]) == 0
    verilog = (tmp_path / "ommatidia_axi.v").read_text()
    for port in ("m_axi_arvalid", "m_axi_rdata", "m_axi_rlast", "m_axi_awlen", "m_axi_wstrb",
                 "s_axil_awaddr", "s_axil_rdata", "s_axil_bresp", "irq"):
        assert f" {port};" in verilog, port
    assert "m_axi__" not in verilog and "s_axil__" not in verilog
    assert (tmp_path / "ommatidia_axi_regs.h").read_text() == \
        files(TINY, 64)["ommatidia_axi_regs.h"]
    assert (tmp_path / "ommatidia_axi_regs.py").exists()
