"""Commands on one layer or one stream: ``rlc``, ``map``, ``run``."""

from __future__ import annotations

from .configure import config_of
from .error import CLIError
from .files import (input_file, int_array, load_npy, output_dir, output_file, save_npy,
                    write_text)

__all__ = ["LAYER_KEYS", "LAYER_HELP", "parse_layer", "cmd_rlc", "cmd_map", "cmd_run"]

LAYER_KEYS = ("N", "C", "M", "H", "W", "R", "S", "U", "P")


LAYER_HELP = ("N=1,C=3,M=8,H=12,W=12,R=3,S=3,U=1,P=1 (a CONV layer; N and U default to 1, "
              "P to 0), fc:N=1,C=256,M=4096,H=6,W=6 (an FC layer; H and W default to 1) or an "
              "AlexNet layer by name (alexnet:CONV1 .. alexnet:FC8)")


def parse_layer(text: str):
    """A `ConvLayer` from ``N=1,C=3,M=8,H=12,W=12,R=3,S=3,U=1,P=1`` (N, U default to 1, P
    to 0), ``fc:N=1,C=256,M=4096,H=6,W=6`` (an FC layer as a CONV layer with R = H,
    S = W) or ``alexnet:NAME``."""
    from ommatidia.gen.layer import ConvLayer
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower() if sep else "conv"
    if kind == "alexnet":
        from ommatidia.nn.alexnet import ALEXNET
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
        if key in fields:
            raise CLIError(f"--layer gives {key} twice ({text!r})")
        try:
            fields[key] = int(value)
        except ValueError:
            raise CLIError(f"--layer {key} must be an integer, not {value!r}") from None
    if kind == "fc":
        missing = [k for k in ("C", "M") if k not in fields]
        if missing:
            raise CLIError(f"--layer fc: is missing {', '.join(missing)}")
        from ommatidia.gen.layer import fc_layer
        return fc_layer(**{"N": 1, "H": 1, "W": 1, **fields})
    missing = [k for k in ("C", "M", "H", "W", "R", "S") if k not in fields]
    if missing:
        raise CLIError(f"--layer is missing {', '.join(missing)}")
    return ConvLayer(**{"N": 1, "U": 1, "P": 0, **fields})


def _rlc_word_bytes(fmt) -> int:
    return (fmt.word_bits + 7) // 8


def _rlc_read_words(path, fmt) -> list[int]:
    data = input_file(path, "IN.bin", empty=True).read_bytes()
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

    from ommatidia.gen import rlc
    from ommatidia.gen.config import RLCFormat

    fmt = RLCFormat.parse(args.format)
    count_limit = (1 << 24) - 1
    output_file(args.output, "OUT")
    if args.hw:
        output_dir(args.build, "--build")
    if args.action == "encode":
        array = load_npy(args.input, "IN.npy")
        if array.dtype.kind == "u":
            array = int_array(array, "IN.npy", args.input)
        values = rlc.check_values(array, fmt)
        if args.hw:
            if len(values) > count_limit:
                raise CLIError(f"--hw takes at most {count_limit} values, not {len(values)}")
            from ommatidia.sim.tb.tb_rlc import run_encoder_hw
            words = run_encoder_hw(fmt, [values], sim=args.sim, build_root=args.build)[0]["words"]
        else:
            words = rlc.encode(values, fmt)
        size = _rlc_word_bytes(fmt)
        out = pathlib.Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"".join(w.to_bytes(size, "little") for w in words))
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
    save_npy(args.output, values.astype(dtype))
    print(f"{len(words)} words -> {args.n} values ({np.dtype(dtype).name})"
          f"{' on the ' + args.sim + ' Verilog' if args.hw else ''}: {args.output}")
    return 0


def cmd_map(args) -> int:
    """Print the mapper's choice for a layer and the analytical model's prediction."""
    import json

    from ommatidia.gen.prediction import check_scale, layer_prediction
    from ommatidia.hw.glb import glb_words
    from ommatidia.sim.array_model import model_data
    cfg = config_of(args)
    layer = parse_layer(args.layer)
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be in 0..1, not {args.zeros}")
    check_scale(cfg, layer)
    _check_ifmap_coding(args)
    x, w = model_data(cfg, layer, args.zeros, args.seed)
    dram = _dram_timing(args, cfg)
    out = layer_prediction(cfg, layer, x, w, p=args.p, q=args.q,
                           data={"zeros": args.zeros, "seed": args.seed}, dram=dram,
                           ifmap_coding=args.ifmap_coding)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    d, model = out["mapping"], out["model"]
    acc, en = model["accesses"], model["energy"]
    print(f"{layer} on {cfg.name} ({cfg.rows}x{cfg.cols} PEs): E={layer.E} F={layer.F}, "
          f"{layer.macs} MACs")
    print(f"  PE set        {layer.R}x{layer.E} -> strips of {d['strips']} ofmap rows, "
          f"segments of {d['segments']} filter rows")
    print(f"  replication   x{d['replication']['channels']} on channels (stacked), "
          f"x{d['replication']['filters']} on filters (side by side): "
          f"{d['pe_set_on_array'][0]}x{d['pe_set_on_array'][1]} PEs in use")
    print(f"  p, q          {d['p']} filters, {d['q']} channels per PE; {args.ifmap_coding} "
          f"ifmap in DRAM")
    r = d["rounds"]
    print(f"  passes        {out['passes']} in {out['rounds']} rounds ({r['images']} image(s), "
          f"{r['filter_groups']} filter group(s), {r['channel_groups_per_load']} channel "
          f"group(s) per load); GLB {out['glb_words_used']} of {glb_words(cfg)} words")
    print(f"  model         {model['cycles']} cycles, PE utilization "
          f"{model['pe_utilization']:.1%} (random data, {args.zeros:.0%} zeros, seed {args.seed})")
    print(f"  DRAM          {_dram_text(dram)}")
    print("  accesses      " + ", ".join(f"{k} {acc[k]}" for k in acc))
    print("  energy (MAC=1) " + ", ".join(f"{k} {en[k]:.3g}" for k in en))
    return 0


def _check_ifmap_coding(args) -> None:
    from ommatidia.gen.packing import IFMAP_CODINGS
    if args.ifmap_coding not in IFMAP_CODINGS:
        raise CLIError(f"--ifmap-coding must be one of {', '.join(IFMAP_CODINGS)}, "
                       f"not {args.ifmap_coding!r}")


def _dram_timing(args, cfg):
    """The `ommatidia.gen.model.DramTiming` of ``map``'s DRAM options."""
    from ommatidia.gen.model import DramTiming
    axi = args.axi is not None
    fields = {"read_latency": args.dram_latency, "write_latency": args.dram_write_latency,
              "read_interval": args.dram_interval}
    if axi:
        fields.update(bus="axi", word_bits=cfg.dram_bits, data_width=args.axi,
                      max_burst=args.axi_burst, read_queue=2, base=args.dram_base)
    elif args.axi_burst != 256 or args.dram_base:
        raise CLIError("--axi-burst and --dram-base need --axi")
    if fields["read_latency"] is None:
        fields["read_latency"] = 2 if axi else 1
    try:
        return DramTiming(**fields)
    except ValueError as err:
        text = str(err)
        for field, option in (("read_latency", "--dram-latency"),
                              ("read_interval", "--dram-interval"),
                              ("write_latency", "--dram-write-latency"), ("data_width", "--axi"),
                              ("max_burst", "--axi-burst"), ("base", "--dram-base")):
            text = text.replace(f"DramTiming {field} ", f"{option} ")
        raise CLIError(text) from None


def _dram_text(t) -> str:
    if t.bus == "port":
        text = f"the System's word port, {t.read_latency} cycle(s) from a request to its word"
    else:
        text = (f"the AXI top, {t.data_width}-bit bursts of up to {t.max_burst} beats, "
                f"{t.read_latency} cycles from AR to R, {t.write_latency} from the last W to B")
    return text + (f", a word every {t.read_interval} cycles" if t.read_interval > 1 else "")


def _load_int_array(path: str, name: str, shape: tuple):
    return int_array(load_npy(path, name), name, path, shape)


def cmd_run(args) -> int:
    """One CONV layer on the generated Verilog of the whole accelerator, checked bit-exact."""
    import json
    import random
    import time

    import numpy as np

    from ommatidia.gen.compiler import compile_layer
    from ommatidia.sim.accelerator import PROGRESS, check_counters, run_layers
    from ommatidia.sim.array_model import random_values
    from ommatidia.sim.progress import progress
    cfg = config_of(args)
    check_counters(cfg)
    layer = parse_layer(args.layer)
    if (args.ifmap is None) != (args.weights is None):
        raise CLIError("give both --ifmap and --weights, or neither for random data")
    if not 0 <= args.stall_rate <= 255:
        raise CLIError(f"--stall-rate must be in 0..255, not {args.stall_rate}")
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be in 0..1, not {args.zeros}")
    _check_ifmap_coding(args)
    output_file(args.out, "--out")
    output_file(args.report, "--report")
    output_file(args.vcd, "--vcd")
    output_dir(args.build, "--build")
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
    prog = compile_layer(cfg, layer, ifmap, weights, bias=bias, relu=args.relu, shift=args.shift,
                         ifmap_coding=args.ifmap_coding)
    d = prog.mapping.describe(layer)
    print(f"layer {args.layer} on {cfg.name} ({cfg.rows}x{cfg.cols} PEs): E={layer.E} F={layer.F},"
          f" {layer.macs} MACs; PE set {layer.R}x{layer.E} as {d['pe_set_on_array'][0]}x"
          f"{d['pe_set_on_array'][1]} on the array (strips {d['strips']}, segments "
          f"{d['segments']}, replicated x{d['replication']['channels']} on channels, "
          f"x{d['replication']['filters']} on filters), p={d['p']} q={d['q']}, "
          f"{prog.passes} passes in {len(prog.rounds)} rounds; program {prog.program_words} words, "
          f"DRAM image {prog.dram_words} words ({args.ifmap_coding} ifmap)", flush=True)
    print(f"building and simulating the Verilog ({args.sim}; progress every "
          f"{PROGRESS:,} cycles in {args.build}/system_*/test.log) ...", flush=True)
    start = time.monotonic()
    with progress(desc="simulating", unit=" cycles", quiet=args.quiet) as bar:
        (run,) = run_layers(cfg, [prog], sim=args.sim, build_dir=args.build,
                            stall_rate=args.stall_rate, stall_seed=seed & 0xffff or 1,
                            vcd=args.vcd, progress=PROGRESS,
                            watch=lambda jobs, cycles: bar.update(cycles - bar.n))
    rep = run.report
    rep["seed"] = seed
    rep["total_wall_s"] = round(time.monotonic() - start, 1)
    if run.ofmap is not None:
        save_npy(args.out, run.ofmap)
    if args.report:
        write_text(args.report, json.dumps(rep, indent=2) + "\n")
    print(f"  cycles          {rep['cycles']}")
    print(f"  model           {rep['model_cycles']} cycles, "
          + ("cycles and counters equal to the RTL's" if rep["model_exact"] else
             f"RTL - model = {rep['cycles'] - rep['model_cycles']:+d} cycles"
             + (" (the model assumes no DRAM stalls)" if args.stall_rate else "")))
    print(f"  MACs            {rep['macs']} ({rep['gated_macs']} gated, "
          f"{rep['gated_fraction']:.1%})")
    print(f"  PE utilization  {rep['pe_utilization']:.1%}")
    print(f"  DRAM words      {rep['dram_words_read']} read, {rep['dram_words_written']} written "
          f"(+{rep['program_words']} program); "
          + ("raw ifmap in" if prog.ifmap_coding == "raw" else
             f"RLC ratio {rep['rlc_ratio']:.2f} in")
          + f", {rep['rlc_ratio_ofmap']:.2f} out")
    print(f"  GLB words       {rep['glb_reads']} read, {rep['glb_writes']} written")
    print(f"  simulation      {rep['wall_s']:.1f} s in the simulator "
          f"({rep['cpu_s']:.1f} s of CPU, {rep['cycles'] / max(rep['cpu_s'], 1e-3):,.0f} "
          f"cycles/s; the layer alone {rep['run_cpu_s']:.2f} s, "
          f"{rep['cycles'] / max(rep['run_cpu_s'], 1e-3):,.0f} cycles/s without the DRAM "
          f"load and read-back), {rep['total_wall_s']:.1f} s with the build")
    if run.status != 2:
        raise CLIError(f"the accelerator stopped with status {run.status:#x} (error), not done")
    if not run.bit_exact:
        from ommatidia.sim.golden import layer_ofmap
        bad = int(np.count_nonzero(run.ofmap != layer_ofmap(prog))) if run.ofmap is not None else -1
        raise CLIError(f"the ofmap differs from the golden model in {bad} values")
    print(f"  ofmap           {run.ofmap.shape} bit-exact with the golden model -> {args.out}")
    return 0
