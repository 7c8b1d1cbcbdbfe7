"""The argument parser of the `ommatidia` command line: one function per subcommand."""

from __future__ import annotations

import argparse

from ommatidia.gen.config import PRESETS
from ommatidia.gen.packing import IFMAP_CODINGS
from ommatidia.toolchain import SIMULATORS

from .configure import add_config_options, cmd_config
from .explore import cmd_sweep
from .hardware import cmd_build, cmd_generate, cmd_pe, cmd_presets, cmd_synth
from .layers import LAYER_HELP, cmd_map, cmd_rlc, cmd_run
from .nets import cmd_net_import, cmd_net_run, cmd_net_train, cmd_report

__all__ = ["build_parser"]

QUIET_HELP = "no progress bar (one is drawn on standard error when it is a terminal)"


def _tops_help(tops) -> str:
    return "; ".join(f"{k}: {v[1]}" for k, v in tops.items())


def _add_presets(sub) -> None:
    p = sub.add_parser("presets", help="list the configuration presets and their parameters")
    p.set_defaults(func=cmd_presets)


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="print the configuration of --preset, --config and --set "
                                      "(TOML, which --config reads back)")
    add_config_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    p.set_defaults(func=cmd_config)


def _add_generate(sub, tops) -> None:
    p = sub.add_parser("generate", help="write the Verilog of a component for a preset")
    add_config_options(p)
    p.add_argument("--top", default="pe", choices=list(tops), help=_tops_help(tops))
    p.add_argument("-o", "--output", default="build", help="output folder (default: build)")
    p.add_argument("--name", help="top module name (default: ommatidia_<top>)")
    p.add_argument("--lint", action="store_true",
                   help="check the Verilog with verilator --lint-only")
    p.set_defaults(func=cmd_generate)


def _add_pe(sub) -> None:
    p = sub.add_parser("pe", help="run one PE on its generated Verilog against the golden model")
    add_config_options(p)
    p.add_argument("--S", type=int, default=3, help="filter row length (default 3)")
    p.add_argument("--W", type=int, default=64, help="ifmap row length (default 64)")
    p.add_argument("--U", type=int, default=1, help="stride (default 1)")
    p.add_argument("--p", type=int, default=4, help="filters per PE (default 4)")
    p.add_argument("--q", type=int, default=4, help="channels per PE (default 4)")
    p.add_argument("--accumulate", action="store_true", help="add random incoming psums")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations (default 0.5)")
    p.add_argument("--sim", default="verilator", choices=list(SIMULATORS))
    p.add_argument("--seed", type=int)
    p.add_argument("--report", help="JSON report path")
    p.add_argument("--build", default="build", help="build folder (default: build)")
    p.set_defaults(func=cmd_pe)


def _add_synth(sub, tops, full: bool = True) -> None:
    p = sub.add_parser("synth", help="synthesise a component with Yosys and nextpnr: "
                                     "resources, Fmax, timing")
    if not full:
        return
    from ommatidia.boards.synth import TARGETS
    add_config_options(p, None, preset=False)
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--target", required=True, choices=list(TARGETS))
    p.add_argument("--top", default="pe", choices=list(tops), help=_tops_help(tops))
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="clock constraint in MHz (default: the preset's clock_mhz)")
    p.add_argument("--report", metavar="R.json", help="write the report as JSON")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when a clock misses the constraint")
    p.add_argument("--no-dsp", action="store_true", help="build multipliers from LUTs")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    p.add_argument("--breakdown", type=int, nargs="?", const=3, metavar="DEPTH",
                   help="also synthesise with the hierarchy kept and print the resources "
                        "of each module, DEPTH levels deep (default 3; another Yosys run)")
    p.add_argument("-o", "--output", metavar="BUILD_DIR",
                   help="build folder (default: build/synth/<top>_<preset>_<target>)")
    p.set_defaults(func=cmd_synth)


def _add_build(sub, full: bool = True) -> None:
    p = sub.add_parser("build", help="build a board's bitstream with amaranth-boards, Yosys "
                                     "and nextpnr: the accelerator behind a UART")
    if not full:
        return
    from ommatidia.boards.board import BOARDS
    from ommatidia.boards.nextpnr import DEFAULT_ROUTER, ROUTER2_PATIENCE, ROUTERS
    p.add_argument("--board", required=True, choices=list(BOARDS),
                   help="; ".join(f"{k}: {v.title}, preset {v.preset}, {v.clock_mhz:g} MHz"
                                  for k, v in BOARDS.items()))
    p.add_argument("-o", "--output", metavar="BUILD_DIR",
                   help="build folder (default: build/boards/<board>[-<array>])")
    p.add_argument("--report", metavar="R.json",
                   help="write the report as JSON (default: BUILD_DIR/report.json)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="finish the bitstream even when the board clock is not met")
    p.add_argument("--array", metavar="ROWSxCOLS",
                   help="another PE array than the board preset's, to find the largest "
                        "that fits and meets the clock")
    p.add_argument("--clock", type=float, metavar="MHZ",
                   help="another clock than the board's, made by the FPGA's PLL from the "
                        "board oscillator, to find the highest that meets timing")
    p.add_argument("--router", choices=ROUTERS, default=DEFAULT_ROUTER,
                   help=f"nextpnr router (default: {DEFAULT_ROUTER}, nextpnr's default)")
    p.add_argument("--route-patience", type=int, default=ROUTER2_PATIENCE, metavar="N",
                   help="with router2, stop as unroutable once the overused wires rose N "
                        f"iterations running (default: {ROUTER2_PATIENCE})")
    add_config_options(p, preset=False)
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_build)


def _add_rlc(sub) -> None:
    p = sub.add_parser("rlc", help="run-length code activations (Eyeriss RLC): encode an .npy "
                                   "array to words, decode words back")
    rlc_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fmt_help = "R,L,P,W: run bits, level bits, pairs per word, word bits (default: 5,16,3,64)"
    for action, help_text in (("encode", "IN.npy -> OUT.bin"), ("decode", "IN.bin N -> OUT.npy")):
        q = rlc_sub.add_parser(action, help=help_text,
                               description=".bin files hold the words as little-endian "
                                           "unsigned integers of ceil(word_bits/8) bytes.")
        if action == "encode":
            q.add_argument("input", metavar="IN.npy", help="integer array (flattened in C order)")
            q.add_argument("output", metavar="OUT.bin")
        else:
            q.add_argument("input", metavar="IN.bin")
            q.add_argument("n", metavar="N", type=int, help="number of values in the stream")
            q.add_argument("output", metavar="OUT.npy")
        q.add_argument("--format", default="5,16,3,64", metavar="R,L,P,W", help=fmt_help)
        q.add_argument("--hw", action="store_true",
                       help="run the generated Verilog instead of the reference codec")
        q.add_argument("--sim", default="verilator", choices=list(SIMULATORS),
                       help="simulator for --hw (default: verilator)")
        q.add_argument("--build", default="build", metavar="DIR",
                       help="build folder for --hw (default: build)")
        q.set_defaults(func=cmd_rlc)


def _add_map(sub) -> None:
    p = sub.add_parser("map", help="map a CONV or FC layer on a preset's array and predict its "
                                   "cycles, accesses and energy (analytical model)")
    add_config_options(p)
    p.add_argument("--layer", required=True, metavar="SHAPE", help=LAYER_HELP)
    p.add_argument("--p", type=int, help="filters per PE (default: the mapper's choice)")
    p.add_argument("--q", type=int, help="channels per PE (default: the mapper's choice)")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations in the random data the model sees "
                        "(RLC sizes; default 0.5)")
    p.add_argument("--seed", type=int, default=1, help="random data seed (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_ifmap_coding(p)
    p.add_argument("--dram-latency", type=int, metavar="N",
                   help="DRAM read latency: cycles from a request to its word (default 1, the "
                        "System's DRAM); with --axi from the AR to the first R beat (default 2, "
                        "cocotbext-axi's AxiRam)")
    p.add_argument("--dram-interval", type=int, default=1, metavar="K",
                   help="DRAM bandwidth: a word read every K cycles (default 1)")
    p.add_argument("--dram-write-latency", type=int, default=2, metavar="N",
                   help="with --axi: cycles from the last W beat to B (default 2)")
    p.add_argument("--axi", type=int, nargs="?", const=64, metavar="WIDTH",
                   help="model the AXI top (docs/axi.md) on a WIDTH-bit bus (default 64)")
    p.add_argument("--axi-burst", type=int, default=256, metavar="BEATS",
                   help="with --axi: most beats a burst (default 256)")
    p.add_argument("--dram-base", type=lambda v: int(v, 0), default=0, metavar="ADDR",
                   help="with --axi: byte address of DRAM word 0 (4 KiB pages split bursts)")
    p.set_defaults(func=cmd_map)


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a CONV or FC layer on the generated accelerator "
                                   "Verilog, bit-exact against the golden model")
    add_config_options(p, "tiny")
    p.add_argument("--layer", required=True, metavar="SHAPE", help=LAYER_HELP)
    p.add_argument("--ifmap", metavar="X.npy", help="(N, C, H, W) integers (default: random)")
    p.add_argument("--weights", metavar="W.npy", help="(M, C, R, S) integers (default: random)")
    p.add_argument("--bias", metavar="B.npy", help="(M,) integers")
    p.add_argument("--relu", action="store_true")
    p.add_argument("--shift", type=int, default=0, help="output shift right (round half up)")
    p.add_argument("--out", required=True, metavar="Y.npy", help="ofmap, int64 NCHW")
    p.add_argument("--report", metavar="PERF.json")
    p.add_argument("--sim", default="verilator", choices=list(SIMULATORS))
    p.add_argument("--vcd", metavar="FILE", help="write the waveform there")
    p.add_argument("--seed", type=int, help="random data and DRAM stall seed")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations in random data (default 0.5)")
    p.add_argument("--stall-rate", type=int, default=0, metavar="K",
                   help="stall the DRAM port K/256 of the cycles (default 0)")
    p.add_argument("--build", default="build", help="build folder (default: build)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    _add_ifmap_coding(p)
    p.set_defaults(func=cmd_run)


def _add_ifmap_coding(p) -> None:
    p.add_argument("--ifmap-coding", default="rlc", metavar="{" + ",".join(IFMAP_CODINGS) + "}",
                   help="how the layer's ifmap is stored in DRAM: rlc (RLC-coded, as a layer "
                        "before writes it; the default) or raw (packed, as the host writes a "
                        "first layer's input)")


def _add_net(sub) -> None:
    p = sub.add_parser("net", help="a quantized CNN on handwritten digits: train, import, run")
    net_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = net_sub.add_parser("train", help="train the digits CNN in numpy and quantize it")
    q.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed "
                                                        "(default 0; the split is fixed)")
    q.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    add_config_options(q, "small")
    q.add_argument("-o", "--output", default="build/digits.npz", metavar="MODEL.npz",
                   help="model file (default: build/digits.npz)")
    q.add_argument("--report", metavar="R.json", help="write the training report as JSON")
    q.set_defaults(func=cmd_net_train)
    q = net_sub.add_parser("import", help="quantize a float CNN from ONNX (docs/networks.md "
                                          "lists the operators)")
    q.add_argument("input", metavar="MODEL.onnx")
    q.add_argument("-o", "--output", required=True, metavar="MODEL.npz")
    q.add_argument("--calib", default="digits", metavar="digits|IMAGES.npy",
                   help="calibration images (default: the digits training split)")
    q.add_argument("--input-scale", type=float, metavar="S",
                   help="real value of one input LSB (default: 1/7 for digits, else from "
                        "the calibration images)")
    add_config_options(q, "small")
    q.set_defaults(func=cmd_net_import)
    q = net_sub.add_parser("run", help="run a saved network on held-out digits or given images, "
                                       "layer by layer, against the golden model")
    q.add_argument("--model", required=True, metavar="MODEL.npz")
    q.add_argument("--input", metavar="X.npy",
                   help="images (N, C, H, W), or (N, C*H*W), in the units of the model's input "
                        "(default: the held-out digits)")
    q.add_argument("--labels", metavar="Y.npy", help="their labels (N,), for the accuracy")
    add_config_options(q, None, preset_help="run on this preset instead of the configuration "
                                            "the model was quantized for (its widths must "
                                            "be the model's); --config and --set go on top")
    q.add_argument("--images", type=int, metavar="N",
                   help="the first N images (default: all; 359 held-out digits)")
    q.add_argument("--sim", default="verilator", choices=["golden", *SIMULATORS])
    q.add_argument("--build", default="build", metavar="DIR")
    q.add_argument("--report", metavar="R.json")
    q.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    q.set_defaults(func=cmd_net_run)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="markdown summary and PNG plots of a `net run --report` "
                                      "JSON: PE utilization, energy, sparsity, RLC")
    p.add_argument("--from", dest="input", required=True, metavar="NET.json",
                   help="the JSON that `ommatidia net run --report` wrote")
    p.add_argument("-o", "--output", default="report", metavar="DIR",
                   help="output folder (default: report)")
    p.set_defaults(func=cmd_report)


def _add_sweep(sub, full: bool = True) -> None:
    p = sub.add_parser("sweep", help="sweep configurations over a network's layers through the "
                                     "mapper and the model on Dask: CSV, Pareto front, FPGA "
                                     "resources (docs/sweep.md)")
    if not full:
        return
    from ommatidia.explore.resources import FAMILIES
    add_config_options(p)
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a configuration field and its values (repeatable; every combination "
                        "is swept): rows=8,12,16, ifmap_spad_depth=12,24")
    p.add_argument("--network", required=True, metavar="alexnet|digits|MODEL.npz",
                   help="the layers: AlexNet CONV1-FC8, the digits CNN or a model file's")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="sweep.csv, pareto.png, rtl.csv and build/ go there; a rerun skips the "
                        "points its sweep.csv holds")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a Dask scheduler (tcp://HOST:8786) instead of a local cluster")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: the CPUs)")
    p.add_argument("--rtl", type=int, default=0, metavar="K",
                   help="also run K random layers per configuration on its Verilog "
                        "(Verilator), checked bit-exact and against the model's cycles")
    p.add_argument("--family", choices=FAMILIES, default="ecp5",
                   help="FPGA family of the resource estimate (default: ecp5)")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations in the random data (default 0.5)")
    p.add_argument("--seed", type=int, default=1, help="random data seed (default 1)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_sweep)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, each with its command in ``func``; given the
    ``command`` to run, ``synth``, ``build`` and ``sweep`` (unless it is one of them) only
    by name and help: their options import the board, synthesis and resource back-ends,
    which the other commands do not need."""
    from ommatidia.gen.tops import TOPS
    parser = argparse.ArgumentParser(
        prog="ommatidia",
        description="Generate, simulate and build Eyeriss-like row-stationary DNN accelerators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_presets(sub)
    _add_config(sub)
    _add_generate(sub, TOPS)
    _add_pe(sub)
    _add_synth(sub, TOPS, command in (None, "synth"))
    _add_build(sub, command in (None, "build"))
    _add_rlc(sub)
    _add_map(sub)
    _add_run(sub)
    _add_net(sub)
    _add_report(sub)
    _add_sweep(sub, command in (None, "sweep"))
    return parser
