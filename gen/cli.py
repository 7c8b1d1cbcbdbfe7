"""The `ommatidia` command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import PRESETS, preset

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def cmd_presets(args) -> int:
    for name in sorted(PRESETS):
        print(f"{name}:")
        for key, value in PRESETS[name].describe().items():
            if key != "name":
                print(f"  {key:<26} {value}")
    return 0


def cmd_generate(args) -> int:
    from .tops import build_top
    from .verilog import write
    cfg = preset(args.preset)
    component = build_top(args.top, cfg)
    name = args.name or f"ommatidia_{args.top.replace('-', '_')}"
    path = write(component, name, args.output)
    print(f"wrote {path} (top module {name}, preset {cfg.name})")
    if args.lint:
        from ommatidia.sim.runner import lint_verilog
        ok, messages = lint_verilog(path, name)
        print(messages.strip())
        if not ok:
            raise CLIError(f"verilator --lint-only rejected {path}")
        print(f"verilator --lint-only accepts {path}")
    return 0


def cmd_synth(args) -> int:
    from .synth import SynthError, format_report, synthesize, write_report
    from .tops import build_top
    cfg = preset(args.preset)
    freq = args.freq if args.freq is not None else cfg.clock_mhz
    if not freq > 0:
        raise CLIError(f"--freq must be a positive number of MHz, not {freq:g}")
    component = build_top(args.top, cfg)
    out = args.output or f"build/synth/{args.top}_{cfg.name}_{args.target}"
    try:
        report = synthesize(component, args.target, freq, out, dsp=not args.no_dsp,
                            seed=args.seed, info={"top": args.top, "preset": cfg.name},
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    except SynthError as exc:
        raise CLIError(str(exc)) from None
    if args.report:
        write_report(report, args.report)
    print(format_report(report))
    if args.report:
        print(f"report: {args.report}")
    if not report["timing_met"]:
        failed = ", ".join(f"{name} {c['fmax_mhz']:.2f} MHz"
                           for name, c in report["clocks"].items() if not c["met"])
        if args.allow_timing_fail:
            print(f"timing not met ({failed} < {freq:g} MHz); accepted (--allow-timing-fail)")
        else:
            print(f"ommatidia synth: error: timing not met: {failed} < {freq:g} MHz "
                  f"(use --allow-timing-fail to accept)", file=sys.stderr)
            return 1
    return 0


def cmd_build(args) -> int:
    from ommatidia.boards.boards import board, build_or_error, default_build_dir, format_build
    b = board(args.board)
    if args.array:
        try:
            rows, cols = (int(v) for v in args.array.lower().split("x"))
            b = dataclasses.replace(b, array=(rows, cols))
        except ValueError as exc:
            raise CLIError(f"--array must be ROWSxCOLS, e.g. 7x7, not {args.array!r} ({exc})") \
                from None
    out = args.output or default_build_dir(b)
    path = args.report or f"{out}/report.json"
    report = build_or_error(b, out, report_path=path, seed=args.seed,
                            allow_timing_fail=args.allow_timing_fail, router=args.router,
                            route_patience=args.route_patience,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    if "error" in report:
        raise CLIError(report["error"])
    print(format_build(report))
    print(f"report: {path}")
    if not report["timing_met"]:
        print(f"timing not met at {b.clock_mhz:g} MHz; accepted (--allow-timing-fail)")
    return 0


def cmd_pe(args) -> int:
    """One PE run on the generated Verilog against the golden row convolution."""
    import json
    import pathlib
    import random

    from ommatidia.hw.pe import PE, PERun
    from ommatidia.sim.runner import run_cocotb
    from .verilog import write
    cfg = preset(args.preset)
    if not cfg.pe.counter_bits:
        raise CLIError(f"the PE run checks the PE's MAC counters, and preset {cfg.name} has "
                       f"none (PEConfig.counter_bits = 0)")
    run = PERun(S=args.S, W=args.W, U=args.U, p=args.p, q=args.q, accumulate=args.accumulate)
    run.check(cfg.pe)
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be a fraction from 0 to 1, not {args.zeros}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"PE run {run} on preset {cfg.name}, {args.sim}, seed {seed}", flush=True)
    build = pathlib.Path(args.build) / f"pe_{cfg.name}_{args.sim}"
    path = write(PE(cfg.pe), "pe", build)
    report_path = pathlib.Path(args.report or build / "report.json").resolve()
    spec = {"S": run.S, "W": run.W, "U": run.U, "p": run.p, "q": run.q,
            "accumulate": run.accumulate, "zeros": args.zeros}
    try:
        run_cocotb(path, "pe", "ommatidia.sim.tb.tb_pe_run", sim=args.sim, build_dir=build,
                   env={"OMMATIDIA_PRESET": cfg.name, "OMMATIDIA_SEED": seed,
                        "OMMATIDIA_RUN": json.dumps(spec), "OMMATIDIA_REPORT": report_path})
    finally:
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    if report is None:
        raise CLIError(f"the simulation wrote no report; see {build}/test.log")
    macs, cycles = report["macs"], report["cycles"]
    print(f"  outputs        {run.p} filters x {run.F} columns, bit-exact: {report['bit_exact']}")
    print(f"  MACs           {macs} ({report['gated_macs']} gated by zero activations, "
          f"{report['gated_macs'] / macs:.1%})")
    print(f"  cycles         {cycles} ({report['filter_loads']} filter loads, "
          f"MAC utilisation {macs / cycles:.1%})")
    print(f"  report         {report_path}")
    return 0


LAYER_KEYS = ("N", "C", "M", "H", "W", "R", "S", "U", "P")


LAYER_HELP = ("N=1,C=3,M=8,H=12,W=12,R=3,S=3,U=1,P=1 (a CONV layer; N and U default to 1, "
              "P to 0), fc:N=1,C=256,M=4096,H=6,W=6 (an FC layer; H and W default to 1) or an "
              "AlexNet layer by name (alexnet:CONV1 .. alexnet:FC8)")


def parse_layer(text: str):
    """A `ConvLayer` from ``N=1,C=3,M=8,H=12,W=12,R=3,S=3,U=1,P=1`` (N, U default to 1, P
    to 0), ``fc:N=1,C=256,M=4096,H=6,W=6`` (an FC layer as a CONV layer with R = H,
    S = W) or ``alexnet:NAME``."""
    from ommatidia.sim.array_model import ConvLayer
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower() if sep else "conv"
    if kind == "alexnet":
        from .alexnet import ALEXNET
        name = rest.strip().upper()
        if name not in ALEXNET:
            raise CLIError(f"AlexNet has layers {', '.join(ALEXNET)}, not {rest!r}")
        return ALEXNET[name]
    if kind not in ("conv", "fc"):
        raise CLIError(f"--layer kind must be conv (the default), fc or alexnet, not {kind!r}")
    keys = LAYER_KEYS if kind == "conv" else ("N", "C", "M", "H", "W")
    fields = {}
    for item in (rest if sep else text).split(","):
        key, sep2, value = item.partition("=")
        key = key.strip()
        if not sep2 or key not in keys:
            raise CLIError(f"--layer {kind} takes {','.join(k + '=..' for k in keys)}; "
                           f"{item!r} is not one of them")
        try:
            fields[key] = int(value)
        except ValueError:
            raise CLIError(f"--layer {key} must be an integer, not {value!r}") from None
    if kind == "fc":
        missing = [k for k in ("C", "M") if k not in fields]
        if missing:
            raise CLIError(f"--layer fc: is missing {', '.join(missing)}")
        from .mapper import fc_layer
        return fc_layer(**{"N": 1, "H": 1, "W": 1, **fields})
    missing = [k for k in ("C", "M", "H", "W", "R", "S") if k not in fields]
    if missing:
        raise CLIError(f"--layer is missing {', '.join(missing)}")
    return ConvLayer(**{"N": 1, "U": 1, "P": 0, **fields})


def cmd_map(args) -> int:
    """Print the mapper's choice for a layer and the analytical model's prediction."""
    import json

    import numpy as np

    from ommatidia.gen.energy import energy
    from ommatidia.gen.model import predict
    from ommatidia.gen.program import compile_layer
    from ommatidia.sim.array_model import random_values
    cfg = preset(args.preset)
    layer = parse_layer(args.layer)
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be in 0..1, not {args.zeros}")
    rng = np.random.default_rng(args.seed)
    bits = min(8, cfg.pe.act_bits)
    x = random_values(rng, bits, (layer.N, layer.C, layer.H, layer.W), args.zeros)
    w = random_values(rng, min(8, cfg.pe.weight_bits), (layer.M, layer.C, layer.R, layer.S))
    prog = compile_layer(cfg, layer, x, w, p=args.p, q=args.q)
    model = predict(prog)
    d = prog.mapping.describe(layer)
    out = {
        "preset": cfg.name, "array": [cfg.rows, cfg.cols],
        "layer": {k: getattr(layer, k) for k in LAYER_KEYS}, "E": layer.E, "F": layer.F,
        "macs": layer.macs, "mapping": d, "passes": prog.passes, "rounds": len(prog.rounds),
        "glb_words_used": max(r.glb_words for r in prog.rounds),
        "program_words": prog.program_words,
        "zeros": args.zeros, "seed": args.seed,
        "model": {"cycles": model.cycles, "pe_utilization": model.pe_utilization,
                  "accesses": model.accesses, "energy": energy(model.accesses)},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    acc, en = out["model"]["accesses"], out["model"]["energy"]
    print(f"{layer} on {cfg.name} ({cfg.rows}x{cfg.cols} PEs): E={layer.E} F={layer.F}, "
          f"{layer.macs} MACs")
    print(f"  PE set        {layer.R}x{layer.E} -> strips of {d['strips']} ofmap rows, "
          f"segments of {d['segments']} filter rows")
    print(f"  replication   x{d['replication']['channels']} on channels (stacked), "
          f"x{d['replication']['filters']} on filters (side by side): "
          f"{d['pe_set_on_array'][0]}x{d['pe_set_on_array'][1]} PEs in use")
    print(f"  p, q          {d['p']} filters, {d['q']} channels per PE")
    r = d["rounds"]
    print(f"  passes        {prog.passes} in {len(prog.rounds)} rounds ({r['images']} image(s), "
          f"{r['filter_groups']} filter group(s), {r['channel_groups_per_load']} channel "
          f"group(s) per load); GLB {out['glb_words_used']} of {_glb_total(cfg)} words")
    print(f"  model         {model.cycles} cycles, PE utilization {model.pe_utilization:.1%} "
          f"(random data, {args.zeros:.0%} zeros, seed {args.seed})")
    print("  accesses      " + ", ".join(f"{k} {acc[k]}" for k in acc))
    print("  energy (MAC=1) " + ", ".join(f"{k} {en[k]:.3g}" for k in en))
    return 0


def _glb_total(cfg) -> int:
    from ommatidia.hw.glb import glb_words
    return glb_words(cfg)


def _load_int_array(path: str, name: str, shape: tuple):
    import numpy as np
    x = np.load(path)
    if not np.issubdtype(x.dtype, np.integer):
        raise CLIError(f"{name} {path} holds {x.dtype}, not integers")
    if x.shape != shape:
        raise CLIError(f"{name} {path} has shape {x.shape}, the layer needs {shape}")
    return x.astype(np.int64)


def cmd_run(args) -> int:
    """One CONV layer on the generated Verilog of the whole accelerator, checked bit-exact."""
    import json
    import pathlib
    import random
    import time

    import numpy as np

    from ommatidia.gen.program import compile_layer
    from ommatidia.sim.accelerator import PROGRESS, run_layers
    from ommatidia.sim.array_model import random_values
    cfg = preset(args.preset)
    layer = parse_layer(args.layer)
    if (args.ifmap is None) != (args.weights is None):
        raise CLIError("give both --ifmap and --weights, or neither for random data")
    if not 0 <= args.stall_rate <= 255:
        raise CLIError(f"--stall-rate must be in 0..255, not {args.stall_rate}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = np.random.default_rng(seed)
    if args.ifmap is None:
        ifmap = random_values(rng, cfg.pe.act_bits, (layer.N, layer.C, layer.H, layer.W),
                              args.zeros)
        weights = random_values(rng, cfg.pe.weight_bits, (layer.M, layer.C, layer.R, layer.S))
        print(f"random ifmap ({args.zeros:.0%} zeros) and weights, seed {seed}")
    else:
        ifmap = _load_int_array(args.ifmap, "--ifmap", (layer.N, layer.C, layer.H, layer.W))
        weights = _load_int_array(args.weights, "--weights", (layer.M, layer.C, layer.R, layer.S))
    bias = _load_int_array(args.bias, "--bias", (layer.M,)) if args.bias else None
    prog = compile_layer(cfg, layer, ifmap, weights, bias=bias, relu=args.relu, shift=args.shift)
    d = prog.mapping.describe(layer)
    print(f"layer {args.layer} on {cfg.name} ({cfg.rows}x{cfg.cols} PEs): E={layer.E} F={layer.F},"
          f" {layer.macs} MACs; PE set {layer.R}x{layer.E} as {d['pe_set_on_array'][0]}x"
          f"{d['pe_set_on_array'][1]} on the array (strips {d['strips']}, segments "
          f"{d['segments']}, replicated x{d['replication']['channels']} on channels, "
          f"x{d['replication']['filters']} on filters), p={d['p']} q={d['q']}, "
          f"{prog.passes} passes in {len(prog.rounds)} rounds; program {prog.program_words} words, "
          f"DRAM image {prog.dram_words} words", flush=True)
    print(f"building and simulating the Verilog ({args.sim}; progress every "
          f"{PROGRESS:,} cycles in {args.build}/system_*/test.log) ...", flush=True)
    start = time.monotonic()
    (run,) = run_layers(cfg, [prog], sim=args.sim, build_dir=args.build,
                        stall_rate=args.stall_rate, stall_seed=seed & 0xffff or 1,
                        vcd=args.vcd, progress=PROGRESS)
    rep = run.report
    rep["seed"] = seed
    rep["total_wall_s"] = round(time.monotonic() - start, 1)
    if run.ofmap is not None:
        np.save(args.out, run.ofmap)
    if args.report:
        pathlib.Path(args.report).write_text(json.dumps(rep, indent=2) + "\n")
    print(f"  cycles          {rep['cycles']}")
    print(f"  MACs            {rep['macs']} ({rep['gated_macs']} gated, "
          f"{rep['gated_fraction']:.1%})")
    print(f"  PE utilization  {rep['pe_utilization']:.1%}")
    print(f"  DRAM words      {rep['dram_words_read']} read, {rep['dram_words_written']} written "
          f"(+{rep['program_words']} program); RLC ratio {rep['rlc_ratio']:.2f} in, "
          f"{rep['rlc_ratio_ofmap']:.2f} out")
    print(f"  GLB words       {rep['glb_reads']} read, {rep['glb_writes']} written")
    print(f"  simulation      {rep['wall_s']:.1f} s in the simulator, "
          f"{rep['total_wall_s']:.1f} s with the build")
    if run.status != 2:
        raise CLIError(f"the accelerator stopped with status {run.status:#x} (error), not done")
    if not run.bit_exact:
        bad = int(np.count_nonzero(run.ofmap != prog.golden())) if run.ofmap is not None else -1
        raise CLIError(f"the ofmap differs from the golden model in {bad} values")
    print(f"  ofmap           {run.ofmap.shape} bit-exact with the golden model -> {args.out}")
    return 0


def cmd_net_train(args) -> int:
    """Train the digits CNN in numpy, quantize it for a preset, save it."""
    import json
    from . import net
    _, qnet, report = net.train_digits(seed=args.seed, epochs=args.epochs, cfg=args.preset)
    path = net.save(qnet, args.output)
    print(f"digits: {report['train_images']} training, {report['held_out_images']} held-out "
          f"images; {report['epochs']} epochs in {report['train_seconds']:.1f} s "
          f"(seed {report['seed']})")
    print(f"held-out accuracy: float {report['float_accuracy']:.2%}, "
          f"quantized {report['quantized_accuracy']:.2%} ({qnet.preset}: "
          f"{qnet.act_bits}-bit activations, {qnet.weight_bits}-bit weights)")
    for i, (layer, shape) in enumerate(zip(qnet.layers, qnet.shapes)):
        m, c, r, s = layer.weights.shape
        print(f"  layer {i}: {c}x{shape[1]}x{shape[2]} -> M={m} {r}x{s} U={layer.stride} "
              f"P={layer.padding} relu={int(layer.relu)} shift={layer.shift} pool={layer.pool}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    print(f"wrote {path}")
    return 0


def cmd_net_import(args) -> int:
    """Import a float CNN from ONNX, quantize it on calibration images, save it."""
    import dataclasses

    import numpy as np
    from . import net
    from .onnx_import import from_onnx
    fnet = from_onnx(args.input)
    if args.calib == "digits":
        xtr, _, xte, yte = net.digits_data()
        scale = net.DIGITS_INPUT_SCALE if args.input_scale is None else args.input_scale
    else:
        xtr, xte, yte = np.load(args.calib, allow_pickle=False), None, None
        scale = args.input_scale
    qnet = net.quantize(fnet, xtr, args.preset, input_scale=scale,
                        info={"source": str(args.input)})
    if yte is not None:
        fa = float((fnet.predict(xte) == yte).mean())
        qa = float((net.infer(qnet, xte)[0] == yte).mean())
        print(f"digits held-out accuracy: float {fa:.2%}, quantized {qa:.2%}")
        qnet = dataclasses.replace(qnet, info={**qnet.info, "float_accuracy": fa,
                                               "quantized_accuracy": qa})
    print(f"wrote {net.save(qnet, args.output)} ({len(qnet.layers)} layers, {qnet.preset})")
    return 0


def cmd_net_run(args) -> int:
    """Run a saved network on held-out digits, layer by layer, on the generated Verilog,
    and check every layer bit for bit against the golden model."""
    import json
    import time

    import numpy as np
    from ommatidia.sim.accelerator import hardware_conv
    from . import net
    from .report import net_layer_stats
    run_images = 16
    qnet = net.load(args.model)
    if args.preset and args.preset != qnet.preset:
        raise CLIError(f"{args.model} is quantized for preset {qnet.preset}, not {args.preset}")
    _, _, xte, yte = net.digits_data()
    if args.images is not None:
        if args.images < 1:
            raise CLIError(f"--images must be at least 1, not {args.images}")
        xte, yte = xte[:args.images], yte[:args.images]
    ref_preds, ref = net.infer(qnet, xte)
    stats = net_layer_stats(qnet, xte, ref, run_images)
    conv, start = None, time.monotonic()
    if args.sim != "golden":
        conv = hardware_conv(qnet, sim=args.sim, build_dir=args.build,
                             images_per_run=run_images)
    print(f"{len(yte)} held-out digits through {len(qnet.layers)} layers on {qnet.preset} "
          f"({args.sim})", flush=True)

    def progress(i, done, total):
        print(f"  layer {i}: {done}/{total} images ({time.monotonic() - start:.0f} s)",
              flush=True)
    preds, ofmaps = net.infer(qnet, xte, conv=conv, progress=progress)
    exact = [bool(np.array_equal(a, b)) for a, b in zip(ofmaps, ref)]
    acc = float((preds == yte).mean())
    layers = []
    for i, ok in enumerate(exact):
        row = {"layer": i, "bit_exact": ok}
        if conv is not None:
            reps = conv.reports[i]
            total = {k: sum(r[k] for r in reps) for k in
                     ("cycles", "macs", "gated_macs", "dram_words_read", "dram_words_written")}
            pes = qnet.config.rows * qnet.config.cols
            row.update(total, pe_utilization=total["macs"] / (pes * total["cycles"])
                       if total["cycles"] else 0.0,
                       gated_fraction=total["gated_macs"] / total["macs"] if total["macs"] else 0.0,
                       rlc_ratio=float(np.mean([r["rlc_ratio"] for r in reps])))
            print(f"layer {i}: {'bit-exact' if ok else 'DIFFERS'}; {total['cycles']} cycles, "
                  f"PE utilization {row['pe_utilization']:.1%}, gated MACs "
                  f"{row['gated_fraction']:.1%}, RLC ratio {row['rlc_ratio']:.2f}, DRAM words "
                  f"{total['dram_words_read']} read {total['dram_words_written']} written")
        else:
            print(f"layer {i}: {'bit-exact with' if ok else 'DIFFERS from'} the golden model")
        row.update(stats[i])
        s = row["input"]
        bounds = [f"{b:.2f}" if b is not None else "inf"
                  for b in (s["pair_bound_ratio"], s["bound_ratio"])]
        print(f"  input: {s['values']} values read, zeros {s['zeros']:.1%} with padding "
              f"({s['zeros_unpadded']:.1%} without); RLC ratio {s['rlc_ratio']:.2f}, entropy "
              f"bounds {bounds[0]} (run/level pairs) {bounds[1]} (values)")
        layers.append(row)
    print(f"predicted: {' '.join(str(int(p)) for p in preds[:32])}"
          f"{' ...' if len(preds) > 32 else ''}")
    print(f"accuracy on {len(yte)} held-out digits ({args.sim}): {acc:.2%} "
          f"(golden {float((ref_preds == yte).mean()):.2%})")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"model": args.model, "preset": qnet.preset,
                       "array": [qnet.config.rows, qnet.config.cols], "sim": args.sim,
                       "images": len(yte),
                       "accuracy": acc, "predictions": [int(p) for p in preds],
                       "layers": layers}, f, indent=1)
    return 0 if all(exact) else 1


def cmd_report(args) -> int:
    """Markdown summary and plots of a `net run` JSON report."""
    import json
    import pathlib
    from .report import write_report
    try:
        net_report = json.loads(pathlib.Path(args.input).read_text())
    except json.JSONDecodeError as exc:
        raise CLIError(f"{args.input} is not JSON: {exc}") from None
    files = write_report(net_report, args.output)
    for path in files:
        print(f"wrote {path}")
    return 0


def _rlc_word_bytes(fmt) -> int:
    return (fmt.word_bits + 7) // 8


def _rlc_read_words(path, fmt) -> list[int]:
    import pathlib
    data = pathlib.Path(path).read_bytes()
    size = _rlc_word_bytes(fmt)
    if len(data) % size:
        raise CLIError(f"{path} holds {len(data)} bytes, not a whole number of "
                       f"{size}-byte words (word_bits = {fmt.word_bits})")
    words = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]
    for i, w in enumerate(words):
        if w >> fmt.word_bits:
            raise CLIError(f"{path}: word {i} = {w:#x} has bits above word_bits = {fmt.word_bits}")
    return words


def cmd_rlc(args) -> int:
    """Run-length encode an .npy array to little-endian words, or decode them back."""
    import pathlib

    import numpy as np

    from ommatidia.sim import rlc
    from .config import RLCFormat

    fmt = RLCFormat.parse(args.format)
    count_limit = (1 << 24) - 1
    if args.action == "encode":
        try:
            array = np.load(args.input, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError) as exc:
            raise CLIError(f"cannot read {args.input} as a .npy array: {exc}") from None
        values = rlc.check_values(array, fmt)
        if args.hw:
            if len(values) > count_limit:
                raise CLIError(f"--hw takes at most {count_limit} values, not {len(values)}")
            from ommatidia.sim.tb.tb_rlc import run_encoder_hw
            words = run_encoder_hw(fmt, [values], sim=args.sim, build_root=args.build)[0]["words"]
        else:
            words = rlc.encode(values, fmt)
        size = _rlc_word_bytes(fmt)
        pathlib.Path(args.output).write_bytes(b"".join(w.to_bytes(size, "little") for w in words))
        raw, coded = len(values) * fmt.level_bits, len(words) * fmt.word_bits
        print(f"{len(values)} values -> {len(words)} words of {fmt.word_bits} bits "
              f"({raw / coded:.2f}x smaller than {fmt.level_bits}-bit values)"
              f"{' on the ' + args.sim + ' Verilog' if args.hw else ''}: {args.output}")
        return 0

    if args.n < 0:
        raise CLIError(f"N must be a non-negative number of values, not {args.n}")
    words = _rlc_read_words(args.input, fmt)
    if args.hw:
        if args.n > count_limit:
            raise CLIError(f"--hw takes at most {count_limit} values, not {args.n}")
        from ommatidia.sim.tb.tb_rlc import run_decoder_hw
        res = run_decoder_hw(fmt, [(words, args.n)], sim=args.sim, build_root=args.build)[0]
        values = rlc.check_result(rlc.DecodeResult(
            np.array(res["values"], dtype=np.int64), rlc.RLCFault(res["fault"]),
            res["fault_word"], res["words_used"],
            res["done"]), len(words), args.n)
    else:
        values = rlc.decode(words, args.n, fmt)
    dtype = np.int8 if fmt.level_bits <= 8 else np.int16 if fmt.level_bits <= 16 else np.int32
    np.save(args.output, values.astype(dtype))
    print(f"{len(words)} words -> {args.n} values ({np.dtype(dtype).name})"
          f"{' on the ' + args.sim + ' Verilog' if args.hw else ''}: {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .tops import TOPS
    parser = argparse.ArgumentParser(
        prog="ommatidia",
        description="Generate, simulate and build Eyeriss-like row-stationary DNN accelerators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("presets", help="list the configuration presets and their parameters")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("generate", help="write the Verilog of a component for a preset")
    p.add_argument("--preset", default="eyeriss", choices=sorted(PRESETS))
    p.add_argument("--top", default="pe", choices=list(TOPS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in TOPS.items()))
    p.add_argument("-o", "--output", default="build", help="output folder (default: build)")
    p.add_argument("--name", help="top module name (default: ommatidia_<top>)")
    p.add_argument("--lint", action="store_true",
                   help="check the Verilog with verilator --lint-only")
    p.set_defaults(func=cmd_generate)

    from .synth import TARGETS
    p = sub.add_parser("pe", help="run one PE on its generated Verilog against the golden model")
    p.add_argument("--preset", default="eyeriss", choices=sorted(PRESETS))
    p.add_argument("--S", type=int, default=3, help="filter row length (default 3)")
    p.add_argument("--W", type=int, default=64, help="ifmap row length (default 64)")
    p.add_argument("--U", type=int, default=1, help="stride (default 1)")
    p.add_argument("--p", type=int, default=4, help="filters per PE (default 4)")
    p.add_argument("--q", type=int, default=4, help="channels per PE (default 4)")
    p.add_argument("--accumulate", action="store_true", help="add random incoming psums")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations (default 0.5)")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--seed", type=int)
    p.add_argument("--report", help="JSON report path")
    p.add_argument("--build", default="build", help="build folder (default: build)")
    p.set_defaults(func=cmd_pe)

    p = sub.add_parser("synth", help="synthesise a component with Yosys and nextpnr: "
                                     "resources, Fmax, timing")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--target", required=True, choices=list(TARGETS))
    p.add_argument("--top", default="pe", choices=list(TOPS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in TOPS.items()))
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="clock constraint in MHz (default: the preset's clock_mhz)")
    p.add_argument("--report", metavar="R.json", help="write the report as JSON")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when a clock misses the constraint")
    p.add_argument("--no-dsp", action="store_true", help="build multipliers from LUTs")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    p.add_argument("-o", "--output", metavar="BUILD_DIR",
                   help="build folder (default: build/synth/<top>_<preset>_<target>)")
    p.set_defaults(func=cmd_synth)

    from ommatidia.boards.boards import BOARDS, DEFAULT_ROUTER, ROUTER2_PATIENCE, ROUTERS
    p = sub.add_parser("build", help="build a board's bitstream with amaranth-boards, Yosys "
                                     "and nextpnr: the accelerator behind a UART")
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
    p.add_argument("--router", choices=ROUTERS, default=DEFAULT_ROUTER,
                   help=f"nextpnr router (default: {DEFAULT_ROUTER}, nextpnr's default)")
    p.add_argument("--route-patience", type=int, default=ROUTER2_PATIENCE, metavar="N",
                   help="with router2, stop as unroutable once the overused wires rose N "
                        f"iterations running (default: {ROUTER2_PATIENCE})")
    p.set_defaults(func=cmd_build)

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
        q.add_argument("--sim", default="verilator", choices=["verilator", "icarus"],
                       help="simulator for --hw (default: verilator)")
        q.add_argument("--build", default="build", metavar="DIR",
                       help="build folder for --hw (default: build)")
        q.set_defaults(func=cmd_rlc)

    p = sub.add_parser("map", help="map a CONV or FC layer on a preset's array and predict its "
                                   "cycles, accesses and energy (analytical model)")
    p.add_argument("--preset", default="eyeriss", choices=sorted(PRESETS))
    p.add_argument("--layer", required=True, metavar="SHAPE", help=LAYER_HELP)
    p.add_argument("--p", type=int, help="filters per PE (default: the mapper's choice)")
    p.add_argument("--q", type=int, help="channels per PE (default: the mapper's choice)")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations in the random data the model sees "
                        "(RLC sizes; default 0.5)")
    p.add_argument("--seed", type=int, default=1, help="random data seed (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("run", help="run a CONV or FC layer on the generated accelerator "
                                   "Verilog, bit-exact against the golden model")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--layer", required=True, metavar="SHAPE", help=LAYER_HELP)
    p.add_argument("--ifmap", metavar="X.npy", help="(N, C, H, W) integers (default: random)")
    p.add_argument("--weights", metavar="W.npy", help="(M, C, R, S) integers (default: random)")
    p.add_argument("--bias", metavar="B.npy", help="(M,) integers")
    p.add_argument("--relu", action="store_true")
    p.add_argument("--shift", type=int, default=0, help="output shift right (round half up)")
    p.add_argument("--out", required=True, metavar="Y.npy", help="ofmap, int64 NCHW")
    p.add_argument("--report", metavar="PERF.json")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--vcd", metavar="FILE", help="write the waveform there")
    p.add_argument("--seed", type=int, help="random data and DRAM stall seed")
    p.add_argument("--zeros", type=float, default=0.5,
                   help="fraction of zero activations in random data (default 0.5)")
    p.add_argument("--stall-rate", type=int, default=0, metavar="K",
                   help="stall the DRAM port K/256 of the cycles (default 0)")
    p.add_argument("--build", default="build", help="build folder (default: build)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("net", help="a quantized CNN on handwritten digits: train, import, run")
    net_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = net_sub.add_parser("train", help="train the digits CNN in numpy and quantize it")
    q.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed "
                                                        "(default 0; the split is fixed)")
    q.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    q.add_argument("--preset", default="small", choices=sorted(PRESETS))
    q.add_argument("-o", "--output", default="build/digits.npz", metavar="MODEL.npz",
                   help="model file (default: build/digits.npz)")
    q.add_argument("--report", metavar="R.json", help="write the training report as JSON")
    q.set_defaults(func=cmd_net_train)
    q = net_sub.add_parser("import", help="quantize a float CNN from ONNX (Conv, Relu, MaxPool, "
                                          "Flatten/Reshape, Gemm/MatMul, Add)")
    q.add_argument("input", metavar="MODEL.onnx")
    q.add_argument("-o", "--output", required=True, metavar="MODEL.npz")
    q.add_argument("--calib", default="digits", metavar="digits|IMAGES.npy",
                   help="calibration images (default: the digits training split)")
    q.add_argument("--input-scale", type=float, metavar="S",
                   help="real value of one input LSB (default: 1/7 for digits, else from "
                        "the calibration images)")
    q.add_argument("--preset", default="small", choices=sorted(PRESETS))
    q.set_defaults(func=cmd_net_import)
    q = net_sub.add_parser("run", help="run a saved network on held-out digits, layer by "
                                       "layer, against the golden model")
    q.add_argument("--model", required=True, metavar="MODEL.npz")
    q.add_argument("--preset", choices=sorted(PRESETS),
                   help="check that the model was quantized for this preset")
    q.add_argument("--images", type=int, metavar="N",
                   help="the first N held-out images (default: all 359)")
    q.add_argument("--sim", default="verilator", choices=["golden", "verilator", "icarus"])
    q.add_argument("--build", default="build", metavar="DIR")
    q.add_argument("--report", metavar="R.json")
    q.set_defaults(func=cmd_net_run)

    p = sub.add_parser("report", help="markdown summary and PNG plots of a `net run --report` "
                                      "JSON: PE utilization, energy, sparsity, RLC")
    p.add_argument("--from", dest="input", required=True, metavar="NET.json",
                   help="the JSON that `ommatidia net run --report` wrote")
    p.add_argument("-o", "--output", default="report", metavar="DIR",
                   help="output folder (default: report)")
    p.set_defaults(func=cmd_report)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        print(f"ommatidia {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
