"""FPGA boards: the board table, the build-only platforms, the generated build files, the report.

The bitstream builds themselves take minutes each (``ommatidia build``,
``make synth-report``); these tests check everything up to running the tools.
"""

import dataclasses
import functools
import json
import os
import pathlib
import re
import subprocess
import time

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import io

from ommatidia.boards import board, build, nextpnr, pll, synth, synth_report
from ommatidia.boards.board import BOARDS, LOADER_TOOLS
from ommatidia.gen.config import PRESETS, preset


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_table(name):
    b = BOARDS[name]
    assert b.preset in PRESETS and board.board(name) is b
    platform = b.make_platform()
    assert platform.device == synth.TARGETS[b.target].device
    assert platform.default_clk_frequency == b.osc_mhz * 1e6
    # The PLL makes the board's clock exactly, above or below the oscillator (or the
    # oscillator is it); the preset's nominal clock, used for its peak figures, is it.
    if b.pll is None:
        assert b.clock_mhz == b.osc_mhz
    else:
        assert b.pll.f_out_mhz == b.clock_mhz != b.osc_mhz and b.pll.error == 0
    assert PRESETS[b.preset].clock_mhz == b.config.clock_mhz == b.clock_mhz
    uart = platform.lookup("uart", 0)
    assert {sub.name for sub in uart.ios} >= {"rx", "tx"}
    assert not set(LOADER_TOOLS) & set(platform.required_tools)
    assert not any(t in c for c in platform.command_templates for t in LOADER_TOOLS)
    assert {"yosys", f"nextpnr-{b.family}"} <= set(platform.required_tools)


def test_board_validation():
    good = BOARDS["icebreaker"]
    with pytest.raises(ValueError, match=r"clock_mhz: ice40_pll f_out_mhz 20 MHz cannot be made "
                                         r"from 12 MHz .* nearest is 19\.8750 MHz"):
        dataclasses.replace(good, clock_mhz=20.0)
    with pytest.raises(ValueError, match="target ecp5-25f is a LFE5U-25F"):
        dataclasses.replace(good, target="ecp5-25f")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        dataclasses.replace(good, preset="nope")
    with pytest.raises(ValueError, match="dram_words must be at least 1"):
        dataclasses.replace(good, dram_words=0)
    with pytest.raises(ValueError, match=r"synth_script must be a tuple of strings, not 'x'"):
        dataclasses.replace(good, synth_script="x")
    with pytest.raises(ValueError, match="unknown board 'nope'"):
        board.board("nope")


def test_board_array_override(capsys):
    """``array`` (``ommatidia build --array``) resizes the preset's PE array and widens
    the NoC IDs only as far as the new size needs: rows 0..R-1 below the broadcast ID."""
    b = BOARDS["ulx3s-85f"]
    base = b.config
    for rows, cols in ((2, 3), (7, 7), (8, 8), (16, 5)):
        cfg = dataclasses.replace(b, array=(rows, cols)).config
        assert (cfg.rows, cfg.cols) == (rows, cols)
        assert cfg.noc.row_broadcast > rows - 1 and cfg.noc.col_broadcast > cols - 1
        assert cfg.noc.row_id_bits in (base.noc.row_id_bits, (rows + 1).bit_length())
        assert dataclasses.replace(cfg, rows=base.rows, cols=base.cols, noc=base.noc) == base
    wide = dataclasses.replace(b, preset="eyeriss", array=(8, 8)).config
    eyeriss = preset("eyeriss")
    assert wide.noc.filter_gin_values == eyeriss.noc.filter_gin_values > 1
    assert dataclasses.replace(wide.noc, row_id_bits=eyeriss.noc.row_id_bits,
                               col_id_bits=eyeriss.noc.col_id_bits) == eyeriss.noc
    with pytest.raises(ValueError, match="array must be"):
        dataclasses.replace(b, array=(7,))
    with pytest.raises(ValueError, match="array rows"):
        dataclasses.replace(b, array=(0, 4))
    from ommatidia.cli import main
    assert main(["build", "--board", "ulx3s-85f", "--array", "7by7"]) != 0
    assert "--array must be ROWSxCOLS" in capsys.readouterr().err


class _Loopback(Elaboratable):
    """UART rx to tx through a register: the board's pins and clock, no accelerator."""

    def elaborate(self, platform):
        m = Module()
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.sync += tx.o.eq(rx.i)
        return m


def test_board_design():
    b = BOARDS["icebreaker"]
    design = build.BoardDesign(b)
    rtlil = build.plan(b, design=design).files[f"{build.design_name(b)}.il"]
    assert design.top.rx.init == 1
    # The whole system is in the design: PEs of the preset's array, the UART bridge.
    cfg = b.config
    for r in range(cfg.rows):
        for c in range(cfg.cols):
            assert f"top.system.accel.engine.array.cell_{r}_{c}.pe" in rtlil
    assert "top.bridge" in rtlil


@pytest.mark.parametrize("name, rx, tx, clock", [
    ("icebreaker", "6", "9", "set_frequency clk12_0__io 12.0"),
    ("orangecrab-25f", "N17", "M18", 'FREQUENCY PORT "clk_0__io" 48000000.0 HZ'),
    ("ulx3s-85f", "M1", "L4", 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ'),
])
def test_build_plan(name, rx, tx, clock):
    b = BOARDS[name]
    plan = build.plan(b, seed=7, design=_Loopback())
    top = build.design_name(b)
    constraints = plan.files[f"{top}.pcf" if b.family == "ice40" else f"{top}.lpf"]
    if b.family == "ice40":
        assert f"set_io uart_0__rx__io {rx}" in constraints
        assert f"set_io uart_0__tx__io {tx}" in constraints
    else:
        assert f'LOCATE COMP "uart_0__rx__io" SITE "{rx}"' in constraints
        assert f'LOCATE COMP "uart_0__tx__io" SITE "{tx}"' in constraints
    assert clock in constraints
    # Two halves with check -assert around DSP inference, as in `ommatidia synth`.
    script = plan.files[f"{top}.ys"]
    dsp = (" -dsp" if b.family == "ice40" else "") + "".join(f" {o}" for o in b.synth_opts)
    assert re.search(rf"synth_{b.family}{dsp} -run :map_ram -top {top}\n", script)
    assert f"synth_{b.family}{dsp} -top {top} -run map_ram:" in script
    if name == "icebreaker":
        assert "-dffe_min_ce_use 8" in dsp
        # The memory directives run on the design as read, before synthesis.
        head = script[:script.index(f"synth_{b.family}")]
        assert "select -assert-count 4 *.top.system/t:$memrd_v2" in head
        assert "setparam -set COLLISION_X_MASK 1'1 *.top.system/t:$memrd_v2" in head
        assert 'setattr -set ram_style "block" m:filter_spad_*' in head
    else:
        assert "COLLISION_X_MASK" not in script
    assert script.count("check -assert") == 2 and "chformal -remove" in script
    shell = plan.files[f"build_{top}.sh"]
    assert f"--report {top}_report.json --seed 7 --router router1" in shell
    assert "--timing-allow-fail" not in shell
    assert not any(k.endswith(".debug.v") for k in plan.files)
    shell = build.plan(b, allow_timing_fail=True, router="router2",
                       design=_Loopback()).files[f"build_{top}.sh"]
    assert "--timing-allow-fail" in shell and "--router router2" in shell
    with pytest.raises(ValueError, match="router must be one of router1, router2"):
        build.plan(b, router="router3")


def test_overfull_parse(tmp_path):
    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:   13825/   5280   261%\n"
           "Info: \t        ICESTORM_RAM:      17/     30    56%\n"
           "ERROR: Unable to place cell 'x', no BELs remaining\n")
    (tmp_path / "t.tim").write_text(log)
    exc = build._failure(tmp_path, "t", RuntimeError("exit 1"))
    assert exc.overfull == {"ICESTORM_LC": {"used": 13825, "available": 5280}}
    assert "needs 13825 ICESTORM_LC of 5280" in str(exc) and exc.unplaceable is None


def test_unplaceable_parse(tmp_path):
    """Every BEL type fits but the placer gives up (the iCEBreaker 2x1): the verdict names
    the fullest type, and the sweep row says so."""
    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    5273/   5280    99%\n"
           "Info: \t        ICESTORM_RAM:      26/     30    86%\n"
           "Info: \t               SB_IO:       8/     96     8%\n"
           "ERROR: Unable to find legal placement for all cells, design is probably at "
           "utilisation limit.\n")
    (tmp_path / "t.tim").write_text(log)
    exc = build._failure(tmp_path, "t", RuntimeError("exit 1"))
    assert exc.overfull == {} and exc.unroutable is None
    assert exc.unplaceable == {"bel": "ICESTORM_LC", "used": 5273, "available": 5280}
    assert str(exc).startswith("the design does not place: nextpnr found no legal placement "
                               "with 5273/5280 ICESTORM_LC in use (log: ")
    b = BOARDS["icebreaker"]
    row = synth_report.report_row(b, build.failure_report(b, exc))
    assert row["error"] == ("does not place: nextpnr found no legal placement with "
                            "5273/5280 ICESTORM_LC in use")
    # Another nextpnr error stays the tool's own line.
    (tmp_path / "t.tim").write_text(log.replace("Unable to find legal placement for all cells",
                                                "Unconstrained IO"))
    exc = build._failure(tmp_path, "t", RuntimeError("exit 1"))
    assert exc.unplaceable is None and str(exc).startswith("nextpnr failed: ERROR: Unconstrained")


def _router2_log(overused):
    """nextpnr's router2 lines, one per iteration, with these counts of overused wires."""
    return "Info: Running main router loop...\n" + "".join(
        f"Info:     iter={i} wires={1000 + i} overused={n} overuse={n + 3} archfail=NA\n"
        for i, n in enumerate(overused, start=1))


def test_router2_stall():
    """router2 is stuck once its overused wires rose ``patience`` iterations running; a
    falling count, a bump, or a flat tail of a few wires is not a stall."""
    assert nextpnr.router2_stall("Info: Running router1...\n") is None
    falling = [900, 500, 300, 310, 320, 330, 200, 90, 12, 0]
    for n in range(1, len(falling) + 1):
        assert nextpnr.router2_stall(_router2_log(falling[:n]), patience=4) is None
    stuck = [1000, 700, 520, 500, 505, 530, 540, 560]
    assert nextpnr.router2_stall(_router2_log(stuck[:-1]), patience=4) is None
    assert nextpnr.router2_stall(_router2_log(stuck), patience=4) == {
        "router": "router2", "iteration": 8, "overused": 560, "fewest_overused": 500,
        "fewest_at": 4, "patience": 4}
    # The ULX3S 8x8's router2 tail (iterations 50-72): down to 2 wires, then flat.
    tail = [27, 32, 33, 23, 20, 20, 18, 17, 13, 14, 10, 7, 5, 5, 3, 3, 3, 2, 2, 2, 2, 2, 2]
    for n in range(1, len(tail) + 1):
        assert nextpnr.router2_stall(_router2_log(tail[:n]), patience=5) is None
    with pytest.raises(ValueError, match="router2_stall.patience must be at least 1"):
        nextpnr.router2_stall("", patience=0)


def _running(pid):
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _script(path, body):
    (path / "b.sh").write_text(body)
    return path


def test_run_script_stops_a_stuck_router(tmp_path, monkeypatch):
    """The build script runs in its own process group; when the log shows router2 stuck,
    the whole group is stopped at once, the tool and what it started alike."""
    monkeypatch.setattr(build, "LOG_POLL_SECONDS", 0.05)
    lines = _router2_log([50, 40, 30, 31, 32, 33]).splitlines()
    _script(tmp_path, "".join(f"echo '{line}' >> t.tim\n" for line in lines)
            + "sleep 60 &\necho $! > child\nwait\necho finished > after\n")
    stall = functools.partial(nextpnr.router2_stall, patience=3)
    start = time.monotonic()
    verdict = build._run_script(tmp_path, "b", dict(os.environ), tmp_path / "t.tim", stall)
    assert time.monotonic() - start < 30
    assert verdict["iteration"] == 6 and verdict["fewest_at"] == 3
    assert not (tmp_path / "after").exists()
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)
    # Without a verdict the script runs to its end; a failing script raises.
    _script(tmp_path, "echo 'Info:     iter=1 wires=9 overused=0 overuse=0' > t.tim\n"
                      "echo finished > after\n")
    assert build._run_script(tmp_path, "b", dict(os.environ), tmp_path / "t.tim",
                             stall) is None
    assert (tmp_path / "after").read_text() == "finished\n"
    _script(tmp_path, "exit 3\n")
    with pytest.raises(subprocess.CalledProcessError):
        build._run_script(tmp_path, "b", dict(os.environ), tmp_path / "t.tim", stall)


def test_build_reports_an_unroutable_design(tmp_path, monkeypatch):
    """`build` with router2 turns a stuck router into a `BoardBuildError` whose report
    says so; `build_or_error` saves it and the sweep table reads it."""
    b = dataclasses.replace(BOARDS["ulx3s-85f"], array=(8, 9))

    class Plan:
        script = "b"

        def extract(self, root):
            lines = _router2_log([900, 600, 610, 620]).splitlines()
            _script(tmp_path, "".join(f"echo '{line}' >> {build.design_name(b)}.tim\n"
                                      for line in lines) + "sleep 60\n")
            return pathlib.Path(root)

    seen = {}

    def fake_plan(board, **kwargs):
        seen.update(kwargs)
        return Plan()

    monkeypatch.setattr(build, "plan", fake_plan)
    monkeypatch.setattr(build, "LOG_POLL_SECONDS", 0.05)
    with pytest.raises(ValueError, match="build.route_patience must be at least 1"):
        build.build(b, tmp_path, router="router2", route_patience=0)
    said = []
    report = build.build_or_error(b, tmp_path, router="router2", route_patience=2,
                                  log=said.append)
    assert said[1:] == ["  router2 iteration 1: 900 overused wires",
                        "  router2 iteration 2: 600 overused wires",
                        "  router2 iteration 3: 610 overused wires",
                        "  router2 iteration 4: 620 overused wires"]
    assert seen["router"] == "router2"
    assert report["unroutable"] == {"router": "router2", "iteration": 4, "overused": 620,
                                    "fewest_overused": 600, "fewest_at": 2, "patience": 2}
    assert report["error"].startswith("the design does not route: nextpnr router2 still had "
                                      "620 overused wires at iteration 4")
    assert json.loads((tmp_path / "report.json").read_text()) == report
    row = synth_report.sweep_markdown([(b, report)]).splitlines()[-1]
    assert ("| 8x9 | 72 | does not route: nextpnr router2 still had 620 overused wires at "
            "iteration 4, fewest 600 at iteration 2 |") in row
    # router1 is never stopped, however its log reads, but a long build says where it is.
    monkeypatch.setattr(build, "_run_script", lambda *a: seen.update(watch=a[4]) or None)
    with pytest.raises(FileNotFoundError):
        build.build(b, tmp_path, router="router1", log=said.append)
    del said[:]
    assert seen["watch"](_router2_log([900, 600, 610, 620, 630, 640])) is None
    assert said == []
    monkeypatch.setattr(build, "HEARTBEAT_SECONDS", 0.0)
    with pytest.raises(FileNotFoundError):
        build.build(b, tmp_path, router="router1", log=said.append)
    assert seen["watch"]("") is None
    assert seen["watch"]("Info: Packing..\nInfo: Running main analytical placer.\n\n") is None
    assert [line.split(" min ")[1] for line in said[-2:]] == [
        "(yosys)", "(nextpnr: Info: Running main analytical placer.)"]
    assert all(line.startswith("  still running after ") for line in said[-2:])


def _fake_report(name, **over):
    b = BOARDS[name]
    ice40 = b.family == "ice40"
    lc = "ICESTORM_LC" if ice40 else "TRELLIS_COMB"
    report = {
        "resources": {"luts": 100, "ffs": 90, "carries": 10, "dsps": 3, "ebr": 2, "spram": 0,
                      "lutram": 0},
        "placed": {"logic_cell": lc, "utilisation": {lc: {"used": 150, "available": 5280}}},
        "fmax_mhz": 61.0, "fmax_capped": False, "timing_met": True,
        "peak_gmacs": b.config.macs_per_cycle * b.clock_mhz / 1000,
        "peak_gmacs_at_fmax": b.config.macs_per_cycle * 61.0 / 1000,
    }
    report.update(over)
    return report


def test_report_markdown():
    text = synth_report.markdown({
        "icebreaker": {"error": "x", "overfull": {"ICESTORM_LC": {"used": 9000,
                                                                  "available": 5280}}},
        "orangecrab-25f": _fake_report("orangecrab-25f"),
    })
    lines = text.splitlines()
    oc = BOARDS["orangecrab-25f"]
    row = next(line for line in lines if line.startswith(f"| {oc.title}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    macs = oc.config.num_pes * oc.config.pe.lanes
    assert cells[2] == str(oc.config.num_pes) and cells[3] == str(macs)
    assert cells[6] == f"{100 / macs:.0f}"
    assert cells[11] == "61.0" and cells[12] == "met" and cells[15] == "-"
    assert cells[13] == f"{macs * oc.clock_mhz / 1000:.2f}"
    assert "does not fit: 9000 ICESTORM_LC of 5280" in text
    # The published peer: 16 INT8 MACs per cycle at 48 MHz, 0.77 GMAC/s, 20 of 28
    # multipliers; beside it the OrangeCrab at its PLL clock.
    peer = next(line for line in lines if "Eyeriss-ECP5" in line)
    assert [c.strip() for c in peer.strip("|").split("|")][2:] == \
        ["16", "48", "0.77", "-", "20/28", "-"]
    ours = next(line for line in lines if line.startswith("| LFE5U-25F | Ommatidia"))
    assert f"| {oc.clock_mhz:g} (PLL from 48) |" in ours
    assert synth_report.PEERS["LFE5U-25F"].peak_gmacs == pytest.approx(0.768)


def test_larger_arrays_and_build_folders():
    """The sweep's candidates are the preset with one PE row and one PE column more, each in
    its own build folder beside the preset's."""
    for b in BOARDS.values():
        cfg = b.config
        bigger = board.larger_arrays(b)
        assert [(c.config.rows, c.config.cols) for c in bigger] == \
            [(cfg.rows + 1, cfg.cols), (cfg.rows, cfg.cols + 1)]
        assert str(build.default_build_dir(b, "r")) == f"r/{b.name}"
        assert str(build.default_build_dir(bigger[0], "r")) == \
            f"r/{b.name}-{cfg.rows + 1}x{cfg.cols}"
    square = dataclasses.replace(BOARDS["icebreaker"], array=(1, 1))
    assert [c.array for c in board.larger_arrays(square)] == [(2, 1), (1, 2)]


def test_build_or_error_saves_failures(tmp_path, monkeypatch):
    """A failed build leaves a report naming the error and what overflowed; ``reuse`` reads
    a saved report instead of building again."""
    b = dataclasses.replace(BOARDS["icebreaker"], array=(2, 2))
    overfull = {"ICESTORM_LC": {"used": 6480, "available": 5280}}
    calls = []

    def failing(board, build_dir, **kwargs):
        calls.append(build_dir)
        raise build.BoardBuildError("the design does not fit", overfull)

    monkeypatch.setattr(build, "build", failing)
    report = build.build_or_error(b, tmp_path)
    assert report == {"board": "icebreaker", "array": "2x2", "pes": 4,
                      "error": "the design does not fit", "overfull": overfull,
                      "unroutable": None, "unplaceable": None}
    assert build.build_or_error(b, tmp_path, reuse=True) == report
    assert len(calls) == 1
    build.build_or_error(b, tmp_path)
    assert len(calls) == 2
    assert "does not fit: 6480 ICESTORM_LC of 5280" in synth_report.sweep_markdown([(b, report)])
    from ommatidia.cli import main
    assert main(["build", "--board", "icebreaker", "--array", "2x2",
                 "-o", str(tmp_path / "cli")]) != 0
    assert json.loads((tmp_path / "cli" / "report.json").read_text()) == report


def test_sweep_markdown():
    """One row per build: the preset meeting its clock, a larger array missing it (its Fmax
    still shown), and one that does not fit."""
    b = BOARDS["ulx3s-85f"]
    rows_more, cols_more = board.larger_arrays(b)
    text = synth_report.sweep_markdown([
        (b, _fake_report("ulx3s-85f")),
        (rows_more, {**_fake_report("ulx3s-85f", fmax_mhz=21.5, timing_met=False),
                     "router": "router2"}),
        (cols_more, {"error": "x", "overfull": {"TRELLIS_COMB": {"used": 90000,
                                                                 "available": 83640}}}),
    ])
    table = [[c.strip() for c in line.strip("|").split("|")]
             for line in text.splitlines() if line.startswith(f"| {b.title}")]
    cfg = b.config
    assert [row[1:3] for row in table] == [
        [f"{cfg.rows}x{cfg.cols}", str(cfg.num_pes)],
        [f"{cfg.rows + 1}x{cfg.cols}", str((cfg.rows + 1) * cfg.cols)],
        [f"{cfg.rows}x{cfg.cols + 1}", str(cfg.rows * (cfg.cols + 1))]]
    assert table[0][6:] == ["61.0", f"meets {b.clock_mhz:g} MHz"]
    assert table[1][6:] == ["21.5", f"misses {b.clock_mhz:g} MHz (nextpnr router2)"]
    assert table[2][3] == "does not fit: 90000 TRELLIS_COMB of 83640"


@pytest.mark.parametrize("f_in, f_out, params, pfd, vco", [
    # f_out = f_in (DIVF + 1) / ((DIVR + 1) 2^DIVQ): 12 x 46 / 32; only DIVR 0 keeps the
    # PFD at 10 MHz or more, and only DIVQ 5 puts 17.25 x 2^DIVQ between 533 and 1066.
    (12, 17.25, {"DIVR": 0, "DIVF": 45, "DIVQ": 5, "FILTER_RANGE": 1}, 12, 552),
    # icepll -i 12 -o 96 and -i 16 -o 50 (the only solutions), -i 100 -o 20 (PFD 20, the
    # first of DIVR 4 and 9, which both give VCO 640): icepll's dividers and filter.
    (12, 96, {"DIVR": 0, "DIVF": 63, "DIVQ": 3, "FILTER_RANGE": 1}, 12, 768),
    (16, 50, {"DIVR": 0, "DIVF": 49, "DIVQ": 4, "FILTER_RANGE": 1}, 16, 800),
    (100, 20, {"DIVR": 4, "DIVF": 31, "DIVQ": 5, "FILTER_RANGE": 2}, 20, 640),
])
def test_ice40_pll(f_in, f_out, params, pfd, vco):
    made = pll.ice40_pll(f_in, f_out)
    assert dict(made.params) == params
    assert (made.f_out_mhz, made.pfd_mhz, made.vco_mhz, made.error) == (f_out, pfd, vco, 0)


@pytest.mark.parametrize("f_in, f_out, params, pfd, vco", [
    # f_out = f_in CLKFB_DIV / CLKI_DIV, CLKOP_DIV the largest keeping VCO <= 800:
    # 54/48 = 9/8 (PFD 6), 800 // 54 = 14; 28.125/25 = 9/8 (PFD 3.125, the least allowed),
    # 800 // 28.125 = 28; 48/12 = 4/1, 800 // 48 = 16.
    (48, 54, {"CLKI_DIV": 8, "CLKFB_DIV": 9, "CLKOP_DIV": 14}, 6, 756),
    (25, 28.125, {"CLKI_DIV": 8, "CLKFB_DIV": 9, "CLKOP_DIV": 28}, 3.125, 787.5),
    (12, 48, {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 16}, 12, 768),
    (48, 52.8, {"CLKI_DIV": 10, "CLKFB_DIV": 11, "CLKOP_DIV": 15}, 4.8, 792),
])
def test_ecp5_pll(f_in, f_out, params, pfd, vco):
    made = pll.ecp5_pll(f_in, f_out)
    assert dict(made.params) == params
    assert made.f_out_mhz == f_out and made.error == 0
    assert (made.pfd_mhz, made.vco_mhz) == pytest.approx((pfd, vco))


def test_pll_errors():
    # 50/48 = 25/24 needs CLKI_DIV 24, a 2 MHz PFD; with CLKI_DIV <= 15 (PFD >= 3.2) the
    # nearest is 48 x 16/15 = 51.2, 2.4 % off.
    with pytest.raises(ValueError, match=r"ecp5_pll f_out_mhz 50 MHz cannot be made from 48 "
                                         r"MHz within 0\.100%: the nearest is 51\.2000 MHz"):
        pll.ecp5_pll(48, 50)
    made = pll.ecp5_pll(48, 50, tolerance=0.03)
    assert made.f_out_mhz == 51.2 and made.error == pytest.approx(0.024)
    with pytest.raises(ValueError, match="ice40_pll f_out_mhz 300 MHz is outside the SB_PLL40 "
                                         "output range 16-275 MHz"):
        pll.ice40_pll(12, 300)
    with pytest.raises(ValueError, match="ice40_pll f_out_mhz 12 MHz is outside"):
        pll.ice40_pll(12, 12)
    with pytest.raises(ValueError, match="ecp5_pll f_in_mhz 5 MHz is outside the EHXPLLL "
                                         "input range 8-400 MHz"):
        pll.ecp5_pll(5, 30)
    with pytest.raises(ValueError, match="ecp5_pll tolerance must be at least 0"):
        pll.ecp5_pll(48, 54, tolerance=-1)
    with pytest.raises(ValueError, match="pll family must be one of ecp5, ice40"):
        pll.pll("xilinx", 12, 24)


def test_lock_reset():
    """``sync`` stays in reset while the PLL is unlocked and ``delay`` cycles after it locks,
    and falls back into reset when the lock is lost."""
    from amaranth import ClockDomain, ClockSignal, ResetSignal, Signal
    from amaranth.sim import Simulator
    m = Module()
    m.domains.sync = ClockDomain()
    m.domains.por = ClockDomain(reset_less=True)
    m.d.comb += ClockSignal("por").eq(ClockSignal("sync"))
    m.submodules.dut = dut = pll.LockReset(5)
    rst = Signal()
    m.d.comb += rst.eq(ResetSignal("sync"))
    seen = []

    async def bench(ctx):
        for cycle in range(30):
            ctx.set(dut.locked, 3 <= cycle < 22)
            await ctx.tick()
            seen.append(ctx.get(rst))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    released = seen.index(0)
    # Lock seen after 2 synchroniser stages, 5 counted, 1 to register, 2 reset stages.
    assert 3 + 5 + 2 <= released <= 3 + 2 + 5 + 1 + 2 + 1
    assert not any(seen[released:22]) and all(seen[26:])


def test_board_clock_from_the_pll():
    """A board's design runs on the PLL's output with the dividers `Board.pll` chose; at the
    oscillator's own frequency there is no PLL and the platform's clock serves (both on a
    2x2 array, which the clock does not depend on)."""
    oc = dataclasses.replace(BOARDS["orangecrab-25f"], array=(2, 2))
    rtlil = build.plan(oc).files[f"{build.design_name(oc)}.il"]
    p = oc.pll
    assert "cell \\EHXPLLL" in rtlil
    for key, value in p.params:
        assert f"parameter \\{key} {value}\n" in rtlil
    # 48 MHz x CLKFB_DIV / CLKI_DIV is the board clock.
    assert 48 * p.param("CLKFB_DIV") / p.param("CLKI_DIV") == oc.clock_mhz
    plain = dataclasses.replace(BOARDS["icebreaker"], clock_mhz=12.0, array=(2, 2))
    assert plain.pll is None
    rtlil = build.plan(plain).files[f"{build.design_name(plain)}.il"]
    assert "SB_PLL40" not in rtlil and "top.bridge" in rtlil


def test_effective_gmacs(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("config,network,layer,status,reason,macs,cycles\n"
                    "a,digits,layer0,ok,,1000,500\n"
                    "a,digits,layer1,ok,,3000,1500\n"
                    "a,digits,layer2,no_mapping,too big,99,\n")
    # (1000 + 3000) MACs in (500 + 1500) cycles at 50 MHz: 2 x 50e6 = 0.1 GMAC/s.
    eff = synth_report.effective(path, 50.0)
    assert eff == {"gmacs": 0.1, "layers": 3, "mapped": 2, "network": "digits"}
    text = synth_report.markdown({"orangecrab-25f": {**_fake_report("orangecrab-25f"),
                                                     "effective": eff}})
    assert "| 0.100 (digits, 2 of 3 layers) |" in text
    path.write_text("config,network,layer,status,reason,macs,cycles\n"
                    "a,digits,layer0,no_mapping,too big,1000,\n")
    assert synth_report.effective(path, 50.0)["gmacs"] is None


def test_build_clock_override(tmp_path, monkeypatch, capsys):
    """``ommatidia build --clock`` builds at another PLL clock, in its own default folder;
    a clock the PLL cannot make exactly is a clear error before any build."""
    from ommatidia.cli import main
    b = BOARDS["ulx3s-85f"]
    fast = dataclasses.replace(b, clock_mhz=30.0)
    params = dict(fast.pll.params)
    assert fast.pll.f_out_mhz == 30.0 and (params["CLKI_DIV"], params["CLKFB_DIV"]) == (5, 6)
    assert build.default_build_dir(fast) == pathlib.Path("build/boards/ulx3s-85f-30mhz")
    assert build.default_build_dir(b) == pathlib.Path("build/boards/ulx3s-85f")
    seen = []

    def fake(board_, out, **kwargs):
        seen.append((board_.clock_mhz, out))
        return {"error": "stopped by the test"}

    monkeypatch.setattr(build, "build_or_error", fake)
    assert main(["build", "--board", "ulx3s-85f", "--clock", "30",
                 "-o", str(tmp_path / "b")]) != 0
    assert seen == [(30.0, tmp_path / "b")]
    assert main(["build", "--board", "ulx3s-85f", "--clock", "29"]) != 0
    err = capsys.readouterr().err
    assert "--clock 29: Board('ulx3s-85f').clock_mhz" in err
    assert len(seen) == 1


def test_board_clock_reaches_its_config():
    """A build at another clock (`ommatidia build --clock`) reports its array at that clock."""
    b = dataclasses.replace(BOARDS["ulx3s-85f"], clock_mhz=28.125)
    assert b.config.clock_mhz == 28.125
    assert b.config == dataclasses.replace(PRESETS[b.preset], clock_mhz=28.125)
    assert dataclasses.replace(b, array=(4, 4)).config.clock_mhz == 28.125
