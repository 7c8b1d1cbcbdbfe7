"""Open synthesis (Yosys + nextpnr): resource and Fmax reports, timing enforcement.

Every figure the report gives is checked against another output of the tools
(nextpnr's log, the netlist JSON), and the harness is checked to keep every
port of the component.
"""

import json
import os
import pathlib
import re

import pytest
from amaranth import Instance, Module, Shape, Signal, signed, unsigned, ClockSignal
from amaranth._unused import MustUse
from amaranth.back import rtlil
from amaranth.hdl import Assert
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.boards import synth
from ommatidia.cli import main
from ommatidia.gen.config import preset
from ommatidia.gen.tops import build_top

from helpers import ROOT

# The components `make test` synthesises on iCE40, so a change that breaks synthesis
# fails the tests: a PE, and the iCEBreaker preset's 1x1 array with its NoC (the tiny
# 3x4 array needs 12 SB_MAC16, the UP5K has 8).
MAKE_TEST_TOPS = [("pe", "tiny"), ("array", "icebreaker")]

LOW_MHZ = 12.0
"""A constraint every Ommatidia component should meet (the iCEBreaker's oscillator)."""


def _build(name: str) -> pathlib.Path:
    """A build folder per xdist worker, so module fixtures run on two workers don't collide."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = ROOT / "build" / "tests" / "test_synth" / worker / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _silence(obj, seen=None):
    """Mark ``obj`` and the elaboratables it holds (an array's PEs) as deliberately unused."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, MustUse):
        obj._MustUse__silence = True
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _silence(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            _silence(item, seen)
    elif isinstance(obj, MustUse):
        for item in vars(obj).values():
            _silence(item, seen)


def _port_bits(component) -> tuple[int, int]:
    """Input and output bits of ``component``'s signature (which is not elaborated)."""
    _silence(component)
    ins = outs = 0
    for _, member in component.signature.members.flatten():
        if member.is_port:
            width = Shape.cast(member.shape).width
            if member.flow == In:
                ins += width
            else:
                outs += width
    return ins, outs


def _log_utilisation(log: str, bel: str) -> tuple[int, int]:
    found = re.findall(rf"^Info:\s+{bel}:\s+(\d+)/\s*(\d+)", log, re.M)
    assert found, f"no {bel} line in the nextpnr log"
    used, available = found[-1]
    return int(used), int(available)


def _log_fmax(log: str, clock: str) -> float:
    found = re.findall(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz", log)
    values = [float(f) for net, f in found if synth._clock_name(net) == clock]
    assert values, f"no Fmax line for clock {clock} in the nextpnr log"
    return values[-1]


def _netlist_cells(report) -> dict:
    """Cell counts of the flattened netlist: (component cells, harness cells) by type."""
    netlist = json.loads(pathlib.Path(report["files"]["netlist"]).read_text())
    module = netlist["modules"][synth.TOP_NAME]
    dut, harness = {}, {}
    for name, cell in module["cells"].items():
        side = dut if name.startswith(synth.DUT_NAME + ".") else harness
        side[cell["type"]] = side.get(cell["type"], 0) + 1
    return dut, harness


def _check_against_tools(report, tgt: synth.Target):
    """Cross-check the report's figures with nextpnr's log and Yosys's netlist."""
    log = pathlib.Path(report["files"]["nextpnr_log"]).read_text()
    used, available = _log_utilisation(log, tgt.logic_cell)
    assert report["placed"]["logic_cells"] == used > 0
    assert report["placed"]["logic_cells_available"] == available
    for name, clock in report["clocks"].items():
        assert clock["nextpnr_fmax_mhz"] == pytest.approx(_log_fmax(log, name), abs=0.01)

    dut, harness = _netlist_cells(report)
    for key in synth.RESOURCE_KEYS:
        types = tgt.cells[key]
        count = lambda cells: sum(n for t, n in cells.items() if synth._matches(t, types))
        assert report["resources"][key] == count(dut), key
        assert report["harness"][key] == count(harness), key

    total = {k: report["resources"][k] + report["harness"][k] for k in synth.RESOURCE_KEYS}
    if tgt.family == "ice40":
        # An iCE40 logic cell holds one LUT4, one flip-flop and one carry.
        assert max(total["luts"], total["ffs"]) <= used
        assert used <= total["luts"] + total["ffs"] + total["carries"]
        for key, bel in (("dsps", "ICESTORM_DSP"), ("ebr", "ICESTORM_RAM"),
                         ("spram", "ICESTORM_SPRAM")):
            assert report["placed"]["utilisation"][bel]["used"] == total[key]
            assert _log_utilisation(log, bel)[0] == total[key]
    else:
        assert report["placed"]["utilisation"]["TRELLIS_FF"]["used"] == total["ffs"]
        assert report["placed"]["utilisation"].get("MULT18X18D", {"used": 0})["used"] \
            == total["dsps"]


def _ice40_run(top: str, name: str):
    """One `ommatidia synth` run on iCE40 at a low clock."""
    out = _build(f"{top}_{name}_ice40_low")
    report_path = out / "report.json"
    report_path.unlink(missing_ok=True)
    rc = main(["synth", "--preset", name, "--target", "ice40-up5k", "--top", top,
               "--freq", str(LOW_MHZ), "--report", str(report_path), "-o", str(out)])
    return rc, json.loads(report_path.read_text())


@pytest.mark.synth
@pytest.mark.parametrize("top, name", MAKE_TEST_TOPS, ids=lambda v: v)
def test_ice40_synthesis(top, name):
    """One run (synthesis is the slow part), three checks: figures, timing, harness."""
    rc, report = _ice40_run(top, name)
    print(synth.format_report(report))
    assert rc == 0
    assert (report["top"], report["preset"], report["target"]) == (top, name, "ice40-up5k")
    _check_ice40_resources(report)
    _check_ice40_timing(report)
    _check_harness(report, build_top(top, preset(name)))


def _check_ice40_resources(report):
    res = report["resources"]
    assert res["luts"] > 0 and res["ffs"] > 0 and res["carries"] > 0
    assert res["dsps"] >= 1, "the multiplier should use a SB_MAC16 with -dsp"
    _check_against_tools(report, synth.TARGETS["ice40-up5k"])


def _check_ice40_timing(report):
    assert set(report["clocks"]) == {"clk"}
    clk = report["clocks"]["clk"]
    assert clk["constraint_mhz"] == LOW_MHZ
    assert clk["fmax_mhz"] > LOW_MHZ and clk["met"] and report["timing_met"]
    assert clk["fmax_mhz"] <= clk["nextpnr_fmax_mhz"]
    # The critical path's delay is the clock period at Fmax.
    assert clk["critical_path"]["delay_ns"] == pytest.approx(
        1000 / clk["nextpnr_fmax_mhz"], rel=0.02)
    if report["unregistered_dsps"]:
        assert report["fmax_capped"] == (clk["nextpnr_fmax_mhz"] > 50)
        assert clk["fmax_mhz"] <= synth.ICE40_UNREGISTERED_DSP_FMAX_MHZ


def _check_harness(report, component):
    ins, outs = _port_bits(component)
    # One shift-register flip-flop per input bit, one signature flip-flop and one
    # XOR per output bit: no port was optimised away.
    assert report["harness"]["ffs"] == ins + outs
    assert report["harness"]["luts"] == outs
    assert report["harness"]["dsps"] == report["harness"]["ebr"] == 0
    assert report["placed"]["utilisation"]["SB_IO"]["used"] == 4  # clk, rst, din, dout


@pytest.mark.synth
def test_impossible_frequency_fails_unless_allowed(capsys):
    out = _build("pe_tiny_ice40_1000")
    report_path = out / "report.json"
    args = ["synth", "--preset", "tiny", "--target", "ice40-up5k", "--top", "pe",
            "--freq", "1000", "--report", str(report_path), "-o", str(out)]
    report_path.unlink(missing_ok=True)
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "timing not met" in captured.err and "--allow-timing-fail" in captured.err
    report = json.loads(report_path.read_text())
    assert report["timing_met"] is False and report["clocks"]["clk"]["met"] is False
    assert report["clocks"]["clk"]["fmax_mhz"] < 1000

    report_path.unlink()
    assert main(args + ["--allow-timing-fail"]) == 0
    captured = capsys.readouterr()
    assert "NOT MET" in captured.out and "accepted" in captured.out
    assert json.loads(report_path.read_text())["timing_met"] is False


@pytest.mark.synth
def test_ecp5_pe():
    report = synth.synthesize(build_top("pe", preset("tiny")), "ecp5-25f", LOW_MHZ,
                              _build("pe_tiny_ecp5"))
    print(synth.format_report(report))
    assert report["resources"]["luts"] > 0 and report["resources"]["ffs"] > 0
    assert report["resources"]["dsps"] >= 1
    assert report["timing_met"] and report["clocks"]["clk"]["fmax_mhz"] > LOW_MHZ
    assert not report["fmax_capped"]
    _check_against_tools(report, synth.TARGETS["ecp5-25f"])


class _MAC16(wiring.Component):
    """A 16x16 multiply in a hand-instantiated SB_MAC16, with or without its registers."""

    def __init__(self, registered: bool):
        self._reg = int(registered)
        super().__init__({"a": In(16), "b": In(16), "p": Out(32)})

    def elaborate(self, platform):
        m = Module()
        r = self._reg
        m.submodules.mac = Instance(
            "SB_MAC16",
            p_A_REG=r, p_B_REG=r, p_C_REG=0, p_D_REG=0, p_TOP_8x8_MULT_REG=0,
            p_BOT_8x8_MULT_REG=0, p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=r,
            p_TOPOUTPUT_SELECT=3, p_BOTOUTPUT_SELECT=3, p_A_SIGNED=0, p_B_SIGNED=0,
            i_CLK=ClockSignal(), i_CE=1, i_A=self.a, i_B=self.b, i_C=0, i_D=0,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0, i_IRSTTOP=0, i_IRSTBOT=0,
            i_ORSTTOP=0, i_ORSTBOT=0, i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0,
            i_ADDSUBBOT=0, i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=self.p)
        return m


@pytest.mark.synth
def test_unregistered_sb_mac16_caps_fmax():
    # dsp=False: Yosys 0.70's ice40_dsp rewrites the register parameters of
    # hand-instantiated SB_MAC16 cells.
    comb = synth.synthesize(_MAC16(False), "ice40-up5k", 40, _build("mac16_comb"), dsp=False)
    regd = synth.synthesize(_MAC16(True), "ice40-up5k", 40, _build("mac16_reg"), dsp=False)
    print(synth.format_report(comb))
    print(synth.format_report(regd))
    for report in (comb, regd):
        assert report["resources"]["dsps"] == 1
        _check_against_tools(report, synth.TARGETS["ice40-up5k"])
    # nextpnr times neither multiply: it sees a combinational 16x16 multiply as
    # fast as a registered one, far above the datasheet's 50 MHz.
    raw = comb["clocks"]["clk"]["nextpnr_fmax_mhz"]
    assert raw > synth.ICE40_UNREGISTERED_DSP_FMAX_MHZ
    assert comb["unregistered_dsps"] == ["dut.mac"] and comb["fmax_capped"]
    assert comb["clocks"]["clk"]["fmax_mhz"] == synth.ICE40_UNREGISTERED_DSP_FMAX_MHZ
    assert any("SB_MAC16" in note for note in comb["notes"])
    assert regd["unregistered_dsps"] == [] and not regd["fmax_capped"]
    assert regd["clocks"]["clk"]["fmax_mhz"] == regd["clocks"]["clk"]["nextpnr_fmax_mhz"]


class _Asserting(wiring.Component):
    """A counter with a formal assertion in it."""

    def __init__(self):
        super().__init__({"en": In(1), "count": Out(8)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        m.d.comb += Assert(self.count != 200)
        return m


@pytest.mark.synth
def test_formal_cells_removed():
    out = _build("formal")
    result = synth.run_yosys(_Asserting(), synth.TARGETS["ice40-up5k"], out)
    assert "$check" in (out / "design.il").read_text()
    netlist = json.loads(result["netlist"].read_text())
    types = {c["type"] for c in netlist["modules"][synth.TOP_NAME]["cells"].values()}
    # $scopeinfo records the flattened hierarchy; every other cell is an iCE40 primitive.
    assert types and all(t.startswith("SB_") for t in types - {"$scopeinfo"}), types
    stat = json.loads(result["stat"].read_text())
    resources, cells = synth.module_resources(stat, synth.DUT_MODULE, synth.TARGETS["ice40-up5k"])
    assert "$check" not in cells
    assert resources["ffs"] == 8 and resources["luts"] > 0


class _CounterArray(wiring.Component):
    """Two counters on an ArrayLayout port, like the accelerator's ``counters``."""

    def __init__(self):
        super().__init__({"en": In(2), "counters": Out(data.ArrayLayout(unsigned(8), 2))})

    def elaborate(self, platform):
        m = Module()
        for i in range(2):
            with m.If(self.en[i]):
                m.d.sync += self.counters[i].eq(self.counters[i] + 1)
        return m


@pytest.mark.synth
@pytest.mark.parametrize("tgt", ["ecp5-25f", "ice40-up5k"])
def test_array_layout_port(tgt):
    # Amaranth names the elements ``counters[0]`` and ``counters[1]``, which are also
    # Yosys's names of bits 0 and 1 of the port; without PORT_ALIAS_FIX Yosys 0.70's
    # ABC9 stops with "Assert `count_id(wire->name) == 0' failed".
    out = _build(f"array_layout_port_{tgt}")
    assert "wire width 8 \\counters[0]" in rtlil.convert(synth.Harness(_CounterArray()),
                                                          name=synth.TOP_NAME)
    result = synth.run_yosys(_CounterArray(), synth.TARGETS[tgt], out)
    assert synth.PORT_ALIAS_FIX in (out / "synth.ys").read_text()
    stat = json.loads(result["stat"].read_text())
    resources, _ = synth.module_resources(stat, synth.DUT_MODULE, synth.TARGETS[tgt])
    assert resources["ffs"] == 16
    # The port keeps its name: the harness still reads all 16 bits.
    netlist = json.loads(result["netlist"].read_text())
    assert result["out_bits"] == 16 and "dut.counters" in \
        netlist["modules"][synth.TOP_NAME]["netnames"]


class _DoubleRegisteredMultiply(wiring.Component):
    """A registered multiply with a second output register (trips Yosys 0.70's ice40_dsp)."""

    def __init__(self):
        super().__init__({"a": In(signed(16)), "b": In(signed(16)), "p": Out(signed(32))})

    def elaborate(self, platform):
        m = Module()
        a, b = (Signal(signed(16), reset_less=True) for _ in range(2))
        p1, p2 = (Signal(signed(32), reset_less=True) for _ in range(2))
        m.d.sync += [a.eq(self.a), b.eq(self.b), p1.eq(a * b), p2.eq(p1)]
        m.d.comb += self.p.eq(p2)
        return m


@pytest.mark.synth
def test_multiply_never_silently_dropped():
    out = _build("double_registered")
    try:
        result = synth.run_yosys(_DoubleRegisteredMultiply(), synth.TARGETS["ice40-up5k"], out)
    except synth.SynthError as exc:
        assert "check -assert" in str(exc) and "conflicting drivers" in str(exc)
    else:
        stat = json.loads(result["stat"].read_text())
        resources, _ = synth.module_resources(stat, synth.DUT_MODULE,
                                              synth.TARGETS["ice40-up5k"])
        assert resources["dsps"] == 1


def _mac16_params(**params):
    return {"modules": {"top": {"cells": {"m": {"type": "SB_MAC16", "parameters": {
        k: format(v, "b") for k, v in params.items()}}}}}}


@pytest.mark.parametrize("params, registered", [
    # Output select per cells_sim.v: 0 adder, 1 accumulator register,
    # 2 8x8 product (TOP/BOT_8x8_MULT_REG), 3 16x16 product (PIPELINE_16x16_MULT_REG2).
    (dict(A_REG=1, B_REG=1, TOPOUTPUT_SELECT=1, BOTOUTPUT_SELECT=1), True),
    (dict(A_REG=1, B_REG=1, TOPOUTPUT_SELECT=0, BOTOUTPUT_SELECT=1), False),
    (dict(A_REG=1, B_REG=1, TOPOUTPUT_SELECT=2, BOTOUTPUT_SELECT=2,
          TOP_8x8_MULT_REG=1, BOT_8x8_MULT_REG=1), True),
    (dict(A_REG=1, B_REG=1, TOPOUTPUT_SELECT=2, BOTOUTPUT_SELECT=2, TOP_8x8_MULT_REG=1), False),
    (dict(A_REG=1, B_REG=1, TOPOUTPUT_SELECT=3, BOTOUTPUT_SELECT=3,
          PIPELINE_16x16_MULT_REG1=1), False),
    (dict(A_REG=0, B_REG=1, TOPOUTPUT_SELECT=3, BOTOUTPUT_SELECT=3,
          PIPELINE_16x16_MULT_REG2=1), False),
])
def test_sb_mac16_register_detection(params, registered):
    assert synth.unregistered_sb_mac16(_mac16_params(**params)) == ([] if registered else ["m"])


def test_clock_names():
    assert synth._clock_name("clk$SB_IO_IN_$glb_clk") == "clk"
    assert synth._clock_name("$glbnet$clk$TRELLIS_IO_IN") == "clk"
    assert synth._clock_name("sync_clk") == "sync_clk"


def test_unknown_target_and_bad_frequency():
    with pytest.raises(ValueError, match="unknown target 'ice40-hx8k'"):
        synth.target("ice40-hx8k")
    component = _Asserting()
    component._MustUse__silence = True
    with pytest.raises(ValueError, match="positive"):
        synth.synthesize(component, "ice40-up5k", 0, _build("never"))
    with pytest.raises(SystemExit):
        main(["synth", "--preset", "tiny", "--target", "ice40-hx8k"])
    assert main(["synth", "--preset", "tiny", "--target", "ice40-up5k", "--freq", "-5"]) == 2


@pytest.mark.parametrize("log, expected", [
    ("Info: placing\nERROR: Unable to place cell 'x'\n0 warnings, 1 error\n",
     "ERROR: Unable to place cell 'x'"),
    ("design.v:3: error: syntax\n1 error\n", "design.v:3: error: syntax"),
    ("Info: done\n0 warnings, 1 error\n", None),
    ("", None),
])
def test_error_line_is_the_tools_error_not_its_summary(log, expected):
    assert synth.error_line(log) == expected


class _Counter(wiring.Component):
    """An 8-bit counter: 8 flip-flops."""

    en: In(1)
    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


class _TwoCounters(wiring.Component):
    """Two `_Counter`s, ``unit_0`` and ``unit_1``, and a 3-bit register of its own."""

    en: In(2)
    count: Out(16)
    last: Out(3)

    def elaborate(self, platform):
        m = Module()
        for i in range(2):
            m.submodules[f"unit_{i}"] = unit = _Counter()
            m.d.comb += [unit.en.eq(self.en[i]), self.count[8 * i:8 * i + 8].eq(unit.count)]
        m.d.sync += self.last.eq(self.last + self.en)
        return m


@pytest.mark.synth
@pytest.mark.parametrize("tgt", ["ecp5-25f", "ice40-up5k"])
def test_breakdown_per_module(tgt):
    from ommatidia.boards.breakdown import format_breakdown, run_breakdown
    result = run_breakdown(_TwoCounters(), tgt, _build(f"breakdown_{tgt}"))
    rows = {r["path"]: r for r in result["rows"]}
    assert list(rows) == ["", "unit_*", "(own logic)"]
    assert rows[""]["resources"]["ffs"] == 19
    assert (rows["unit_*"]["count"], rows["unit_*"]["resources"]["ffs"]) == (2, 16)
    assert rows["(own logic)"]["resources"]["ffs"] == 3
    for key, n in rows[""]["resources"].items():
        assert n == rows["unit_*"]["resources"][key] + rows["(own logic)"]["resources"][key]
    assert "unit_* x2" in format_breakdown(result["rows"]).splitlines()[2]


def test_breakdown_rows_need_the_component():
    from ommatidia.boards.breakdown import breakdown_rows
    stat = {"modules": {"\\ommatidia_synth": {"num_cells_by_type": {}}}}
    with pytest.raises(ValueError, match="module ommatidia_synth.dut is not in the Yosys"):
        breakdown_rows(stat, synth.TARGETS["ecp5-25f"])
