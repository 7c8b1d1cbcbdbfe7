"""Commands on whole networks: ``net train``, ``net import``, ``net run``, ``report``."""

from __future__ import annotations

from .configure import config_of
from .error import CLIError
from .files import input_file, load_npy, output_dir, output_file

__all__ = ["RUN_IMAGES", "cmd_net_train", "cmd_net_import", "cmd_net_run", "cmd_report"]

RUN_IMAGES = 16
"""Images per accelerator run of ``net run``."""


def cmd_net_train(args) -> int:
    """Train the digits CNN in numpy, quantize it for a preset, save it."""
    import json

    from ommatidia.nn.digits import train_digits
    from ommatidia.nn.quant import save
    cfg = config_of(args)
    output_file(args.output, "--output")
    output_file(args.report, "--report")
    _, qnet, report = train_digits(seed=args.seed, epochs=args.epochs, cfg=cfg)
    path = save(qnet, args.output)
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
    from ommatidia.nn.calibration import calibrate
    from ommatidia.nn.net import host_work
    from ommatidia.nn.onnx_import import from_onnx
    from ommatidia.nn.quant import save
    cfg = config_of(args)
    output_file(args.output, "--output")
    fnet = from_onnx(input_file(args.input, "MODEL.onnx"))
    images = None if args.calib == "digits" else load_npy(args.calib, "--calib")
    qnet = calibrate(fnet, cfg, images, input_scale=args.input_scale,
                     info={"source": str(args.input)})
    for i, (layer, p) in enumerate(zip(qnet.layers, qnet.info["psums"])):
        print(f"layer {i}: shift {layer.shift}, |psum| up to {p['calibration']} on the "
              f"calibration images (worst case {p['worst_case']}; {qnet.psum_bits}-bit psums "
              f"hold {p['limit']})")
        for text in host_work(layer):
            print(f"layer {i} on the host: {text}")
    if images is None:
        print(f"digits held-out accuracy: float {qnet.info['float_accuracy']:.2%}, "
              f"quantized {qnet.info['quantized_accuracy']:.2%}")
    print(f"wrote {save(qnet, args.output)} ({len(qnet.layers)} layers, {qnet.preset})")
    return 0


def _run_config(qnet, args):
    """``qnet`` on the configuration of ``--preset`` (default: the one it was quantized
    for, which its file records) with ``--config`` and ``--set`` on top, checked again."""
    import dataclasses
    if args.preset is None and args.config is None and not args.sets:
        return qnet
    cfg = config_of(args, args.preset or qnet.config)
    if cfg == qnet.config:
        return qnet
    try:
        return dataclasses.replace(qnet, config=cfg, preset=cfg.name)
    except ValueError as exc:
        raise CLIError(f"{args.model} is quantized for preset {qnet.preset}, not {cfg.name}: "
                       f"{exc}") from None


class _LayerBars:
    """A bar of the images of each layer on standard error while the simulator runs
    them: `watch` goes to `ommatidia.sim.accelerator.hardware_conv`, `wrap` around the
    ``conv`` it gives."""

    def __init__(self, quiet: bool):
        self.quiet, self.bars = quiet, {}

    def watch(self, index: int, done: int, total: int) -> None:
        bar = self.bars.get(index)
        if bar is not None:
            bar.update(done - bar.n)

    def wrap(self, conv):
        from ommatidia.sim.progress import progress

        def run(index, layer, x):
            with progress(len(x), desc=f"layer {index}", unit="images",
                          quiet=self.quiet) as bar:
                self.bars[index] = bar
                try:
                    return conv(index, layer, x)
                finally:
                    del self.bars[index]
        run.reports = conv.reports
        return run


def cmd_net_run(args) -> int:
    """Run a saved network on held-out digits or the images of ``--input``, layer by layer,
    on the generated Verilog, and check every layer bit for bit against the golden
    model."""
    import json
    import time

    from ommatidia.nn.digits import digits_data
    from ommatidia.nn.evaluation import evaluate
    from ommatidia.nn.net import host_work
    from ommatidia.nn.quant import load
    from ommatidia.sim.accelerator import check_counters, hardware_conv
    from ommatidia.sim.progress import echo
    output_file(args.report, "--report")
    output_dir(args.build, "--build")
    qnet = _run_config(load(input_file(args.model, "--model")), args)
    check_counters(qnet.config)
    if args.input is None:
        if args.labels is not None:
            raise CLIError("--labels needs --input (the digits come with their labels)")
        _, _, xte, yte = digits_data()
        what = "held-out digits"
    else:
        xte, yte = _images(qnet, args)
        what = f"images of {args.input}"
    if args.images is not None:
        if args.images < 1:
            raise CLIError(f"--images must be at least 1, not {args.images}")
        xte = xte[:args.images]
        yte = None if yte is None else yte[:args.images]
    for i, layer in enumerate(qnet.layers):
        for text in host_work(layer):
            print(f"layer {i} on the host: {text}")
    conv = None
    if args.sim != "golden":
        bars = _LayerBars(args.quiet)
        conv = bars.wrap(hardware_conv(qnet, sim=args.sim, build_dir=args.build,
                                       images_per_run=RUN_IMAGES, watch=bars.watch))
    started = time.monotonic()

    def start():
        nonlocal started
        started = time.monotonic()
        print(f"{len(xte)} {what} through {len(qnet.layers)} layers on {qnet.preset} "
              f"({args.sim})", flush=True)

    def progress(i, done, total):
        echo(f"  layer {i}: {done}/{total} images ({time.monotonic() - started:.0f} s)")
    result = evaluate(qnet, xte, yte, conv=conv, start=start, progress=progress,
                      images_per_run=RUN_IMAGES)
    for row in result["layers"]:
        i, ok = row["layer"], row["bit_exact"]
        raw = row["input"]["coding"] == "raw"
        if conv is not None:
            coding = "raw ifmap" if raw else f"RLC ratio {row['rlc_ratio']:.2f}"
            print(f"layer {i}: {'bit-exact' if ok else 'DIFFERS'}; {row['cycles']} cycles, "
                  f"PE utilization {row['pe_utilization']:.1%}, gated MACs "
                  f"{row['gated_fraction']:.1%}, {coding}, DRAM words "
                  f"{row['dram_words_read']} read {row['dram_words_written']} written")
        else:
            print(f"layer {i}: {'bit-exact with' if ok else 'DIFFERS from'} the golden model")
        s = row["input"]
        bounds = [f"{b:.2f}" if b is not None else "inf"
                  for b in (s["pair_bound_ratio"], s["bound_ratio"])]
        print(f"  input: {s['values']} values read, zeros {s['zeros']:.1%} with padding "
              f"({s['zeros_unpadded']:.1%} without); RLC ratio {s['rlc_ratio']:.2f}"
              f"{' if coded (stored raw)' if raw else ''}, entropy "
              f"bounds {bounds[0]} (run/level pairs) {bounds[1]} (values)")
    preds = result["predictions"]
    print(f"predicted: {' '.join(str(int(p)) for p in preds[:32])}"
          f"{' ...' if len(preds) > 32 else ''}")
    if yte is not None:
        print(f"accuracy on {len(yte)} {what} ({args.sim}): {result['accuracy']:.2%} "
              f"(golden {result['golden_accuracy']:.2%})")
    else:
        same = float((preds == result["golden_predictions"]).mean())
        print(f"predictions of {len(xte)} {what} ({args.sim}): {same:.2%} equal to the golden "
              f"model's")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"model": args.model, "preset": qnet.preset,
                       "array": [qnet.config.rows, qnet.config.cols], "sim": args.sim,
                       "images": len(xte),
                       "accuracy": result["accuracy"], "predictions": [int(p) for p in preds],
                       "layers": result["layers"]}, f, indent=1)
    return 0 if all(row["bit_exact"] for row in result["layers"]) else 1


def _images(qnet, args):
    """The images of ``--input`` as (N, C, H, W) and the labels of ``--labels`` (or None)."""
    import numpy as np

    from ommatidia.nn.net import as_images
    x = load_npy(args.input, "--input")
    try:
        x = as_images("--input", x, qnet.input_shape)
    except ValueError as exc:
        raise CLIError(f"{args.input}: {exc}") from None
    if not (np.issubdtype(x.dtype, np.number) and np.isfinite(x).all()):
        raise CLIError(f"--input {args.input} must hold finite numbers")
    if args.labels is None:
        return x, None
    y = load_npy(args.labels, "--labels")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise CLIError(f"--labels {args.labels} must hold {len(x)} integers (one per image), "
                       f"not {y.dtype} of shape {y.shape}")
    return x, y


def cmd_report(args) -> int:
    """Markdown summary and plots of a `net run` JSON report."""
    import json

    from ommatidia.nn.report import write_report
    output_dir(args.output, "--output")
    try:
        net_report = json.loads(input_file(args.input, "--from").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"{args.input} is not JSON: {exc}") from None
    files = write_report(net_report, args.output)
    for path in files:
        print(f"wrote {path}")
    return 0
