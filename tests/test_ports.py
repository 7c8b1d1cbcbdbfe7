"""The ports document and the Verilator waiver file `ommatidia generate` writes beside the
Verilog (`ommatidia.gen.ports`)."""

import json
import os
import pathlib
import subprocess

import pytest

from ommatidia.cli import main
from ommatidia.gen.config import EYERISS, PRESETS
from ommatidia.gen.ports import VERILATOR_WAIVERS, ports
from ommatidia.gen.tops import build_top
from ommatidia.gen.verilog import emit
from ommatidia.hw.pe import PERun, pe_run_layout


@pytest.mark.parametrize("name", ["tiny", "eyeriss"])
def test_pe_run_payload_fields_pack_like_the_layout(name):
    cfg = PRESETS[name]
    pe = build_top("pe", cfg)
    doc = ports(pe, "pe", emit(pe, "pe"))
    run = next(p for p in doc["ports"] if p["name"] == "run__payload")
    layout = pe_run_layout(cfg.pe)
    assert run["width"] == layout.size
    fields = run["fields"]
    assert [f["name"] for f in fields] == [n for n, _ in layout]
    assert fields[0]["lsb"] == 0 and fields[-1]["msb"] == layout.size - 1
    assert all(a["msb"] + 1 == b["lsb"] for a, b in zip(fields, fields[1:]))
    values = PERun(S=3, W=9, U=2, p=2, q=1, accumulate=True).fields(cfg.pe)
    packed = sum(values[f["name"]] << f["lsb"] for f in fields)
    assert packed == layout.const(values).as_value().value


def test_streams_clock_and_reset_of_the_pe():
    pe = build_top("pe", EYERISS)
    doc = ports(pe, "pe", emit(pe, "pe"))
    streams = {s["name"]: s for s in doc["streams"]}
    assert set(streams) == {"run", "filter", "ifmap", "psum_in", "psum_out"}
    assert streams["psum_out"] == {"name": "psum_out", "payload": "psum_out__payload",
                                   "valid": "psum_out__valid", "ready": "psum_out__ready",
                                   "direction": "output"}
    by_name = {p["name"]: p for p in doc["ports"]}
    assert by_name["psum_out__ready"]["direction"] == "input"
    # eyeriss's ifmap GIN packet: the count n (1..4), then 4 signed 16-bit activations.
    ifmap = by_name["ifmap__payload"]
    assert (ifmap["direction"], ifmap["width"], ifmap["signed"]) == ("input", 3 + 4 * 16, False)
    assert [(f["name"], f["lsb"], f["width"], f["signed"]) for f in ifmap["fields"]] == \
        [("n", 0, 3, False)] + [(f"values.{j}", 3 + 16 * j, 16, True) for j in range(4)]
    # eyeriss's filter GIN packet: the count n (1..8), then 8 signed 16-bit weights.
    filt = by_name["filter__payload"]
    assert (filt["width"], filt["signed"]) == (4 + 8 * 16, False)
    assert [(f["name"], f["lsb"], f["width"], f["signed"]) for f in filt["fields"]] == \
        [("n", 0, 4, False)] + [(f"values.{j}", 4 + 16 * j, 16, True) for j in range(8)]
    assert doc["clock"]["port"] == "clk" and doc["reset"]["active"] == "high"
    assert "valid and ready" in doc["handshake"]


def test_a_port_missing_from_the_verilog_is_an_error():
    pe = build_top("pe", EYERISS)
    text = emit(pe, "pe").replace("output done;", "output [1:0] done;")
    with pytest.raises(ValueError, match="port done"):
        ports(pe, "pe", text)


@pytest.mark.parametrize("top", ["pe", "gin", "gon", "glb", "rlc-encoder", "uart-bridge"])
def test_every_top_has_a_ports_document(top):
    component = build_top(top, PRESETS["tiny"])
    name = top.replace("-", "_")
    doc = ports(component, name, emit(component, name))
    assert doc["ports"] and doc["clock"]["port"] == "clk"


@pytest.mark.verilog
def test_generate_writes_waivers_verilator_accepts(tmp_path, capsys):
    from ommatidia.toolchain import setup_env
    assert main(["generate", "--preset", "tiny", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for suffix in (".vlt", ".ports.json", ".ports.md"):
        assert f"ommatidia_pe{suffix}" in out
    vlt = (tmp_path / "ommatidia_pe.vlt").read_text()
    assert all(f"lint_off -rule {rule}" in vlt for rule in VERILATOR_WAIVERS)
    doc = json.loads((tmp_path / "ommatidia_pe.ports.json").read_text())
    assert doc["configuration"]["pe"]["psum_bits"] == 24
    env = setup_env(dict(os.environ))
    verilator = str(pathlib.Path(env["VERILATOR_ROOT"]) / "bin" / "verilator")
    v = str(tmp_path / "ommatidia_pe.v")
    bare = subprocess.run([verilator, "--lint-only", v], env=env, capture_output=True, text=True)
    assert bare.returncode != 0 and "%Warning-WIDTH" in bare.stderr
    waived = subprocess.run([verilator, "--lint-only", str(tmp_path / "ommatidia_pe.vlt"), v],
                            env=env, capture_output=True, text=True)
    assert waived.returncode == 0, waived.stderr[-2000:]
