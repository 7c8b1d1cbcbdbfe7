"""The report of a network run: what each layer reads, and the markdown and plots of it.

`ommatidia net run` adds `net_layer_stats` to each layer of its JSON report;
`ommatidia report` turns that JSON into a folder (`write_report`): a markdown
summary and PNG plots of PE utilization, energy per memory level, activation
sparsity against gated MACs, and RLC compression against its entropy bounds.

The statistics are taken on the values a layer's DMA reads from DRAM: the
RLC-coded ifmap regions of the layer programs (`LayerProgram.inputs`,
decoded), that is the ifmap with its zero padding over the rows the PE sets
read, one stream per (image, channel group, row strip). The first layer's
ifmap is stored raw on the accelerator
(`ommatidia.sim.accelerator.input_coding`): its statistics are those of the
same layer compiled with RLC-coded ifmaps, what RLC would make of it, and its
``coding`` says ``raw``; its accesses are those of the raw programs. With ``n`` values of
``b = act_bits`` bits (raw size ``n * b``, as the RLC ratio counts it):

- value-entropy bound: ``H0 = -sum_v p_v log2 p_v`` with ``p_v`` the empirical
  frequency of value ``v`` over the layer. A code spending one codeword per
  value needs at least ``H0`` bits per value on average (Kraft-McMillan), so
  its best ratio is ``n * b / (n * H0) = b / H0``; unbounded (None) when
  ``H0 = 0``. Codes that use the order of the values, RLC among them, are not
  bound by it: runs of zeros can beat it.
- pair-entropy bound: RLC codes each stream as canonical (run, level) pairs
  (`ommatidia.gen.rlc.encode_pairs`). With ``k`` pairs of empirical joint
  entropy ``Hp`` bits, no code of the pairs as independent symbols beats
  ``k * Hp`` bits: ratio ``n * b / (k * Hp)``. The Eyeriss format spends
  ``word_bits / pairs_per_word`` bits per pair plus the free slots of each
  stream's last word; RLC ratio over this bound is its efficiency.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np

from ommatidia.gen.energy import EYERISS_COST, LEVELS, energy

__all__ = ["entropy_bits", "entropy_bound", "rlc_streams", "layer_input_stats",
           "net_layer_stats", "predicted_accesses", "write_report", "SUMMARY", "PLOTS"]

SUMMARY = "summary.md"
PLOTS = {"pe_utilization": "pe_utilization.png", "energy": "energy.png",
         "sparsity": "sparsity.png", "compression": "compression.png"}


# ---------------------------------------------------------------------------------------------
# Statistics

def entropy_bits(symbols) -> float:
    """Empirical zeroth-order entropy, in bits per symbol, of a sequence of ``symbols``
    (integers, or equal-length tuples such as (run, level) pairs); 0 for none."""
    a = np.asarray(symbols)
    if a.size == 0:
        return 0.0
    _, counts = np.unique(a.reshape(a.shape[0], -1), axis=0, return_counts=True)
    p = counts / counts.sum()
    return max(0.0, float(-(p * np.log2(p)).sum()))


def entropy_bound(streams, value_bits: int, fmt) -> dict:
    """Value- and pair-entropy bounds (module docstring) of the integer ``streams`` of
    ``value_bits``-bit values RLC-coded one by one in ``fmt`` (an `RLCFormat`).

    Ratios are ``math.inf`` when the entropy is 0; raises ValueError without values.
    """
    from ommatidia.gen.rlc import encode_pairs
    streams = [np.asarray(s, dtype=np.int64).reshape(-1) for s in streams]
    values = np.concatenate(streams) if streams else np.zeros(0, dtype=np.int64)
    if not values.size:
        raise ValueError("entropy_bound needs at least one value")
    if value_bits < 1:
        raise ValueError(f"value_bits must be at least 1, not {value_bits}")
    pairs = [pair for s in streams for pair in encode_pairs(s, fmt)]
    raw = values.size * value_bits
    h0, hp = entropy_bits(values), entropy_bits(pairs)
    return {
        "values": int(values.size), "zeros": float(np.count_nonzero(values == 0) / values.size),
        "raw_bits": int(raw), "entropy_bits": h0,
        "bound_ratio": value_bits / h0 if h0 else math.inf,
        "pairs": len(pairs), "pair_entropy_bits": hp,
        "pair_bound_ratio": raw / (len(pairs) * hp) if hp else math.inf,
    }


def rlc_streams(prog) -> list[tuple[np.ndarray, int]]:
    """(values, coded words) of each RLC-coded input region of a `LayerProgram`, decoded
    from its DRAM words as the DMA reads them."""
    from ommatidia.gen.rlc import decode
    out = []
    for where in prog.inputs.values():
        if where["rlc"]:
            words = [prog.words[where["dram"] + k] for k in range(where["words"])]
            out.append((decode(words, where["n"], prog.cfg.rlc), where["words"]))
    return out


def _finite(x: float):
    return None if math.isinf(x) else x


def layer_input_stats(progs, x) -> dict:
    """The JSON ``input`` entry of a layer: `entropy_bound` of the RLC streams of
    ``progs``, their RLC ratio, and ``zeros_unpadded``, the zero fraction of the
    layer's input ``x`` without padding. Unbounded ratios are None."""
    cfg = progs[0].cfg
    streams = [s for prog in progs for s in rlc_streams(prog)]
    out = entropy_bound([v for v, _ in streams], cfg.pe.act_bits, cfg.rlc)
    coded = sum(w for _, w in streams) * cfg.rlc.word_bits
    x = np.asarray(x)
    out.update(bound_ratio=_finite(out["bound_ratio"]),
               pair_bound_ratio=_finite(out["pair_bound_ratio"]),
               streams=len(streams), coded_bits=int(coded), rlc_ratio=out["raw_bits"] / coded,
               zeros_unpadded=float(np.count_nonzero(x == 0) / x.size))
    return out


def predicted_accesses(progs) -> dict:
    """Accesses per level (`ommatidia.gen.energy.LEVELS`) of ``progs`` summed, from
    `ommatidia.gen.model.predict`."""
    from ommatidia.gen.model import predict
    total = dict.fromkeys(LEVELS, 0)
    for prog in progs:
        acc = predict(prog).accesses
        for level in LEVELS:
            total[level] += acc[level]
    return {k: v.item() if hasattr(v, "item") else v for k, v in total.items()}


def _programs(qnet, index: int, x, images_per_run: int, ifmap_coding: str | None = None) -> list:
    """The programs of layer ``index`` on input ``x``, ``images_per_run`` images each, as
    `ommatidia.sim.accelerator.hardware_conv` compiles them (the ifmap stored as
    ``ifmap_coding`` says if given)."""
    from ommatidia.gen.compiler import compile_layer
    from ommatidia.sim.accelerator import input_coding
    layer, shape = qnet.layers[index], qnet.conv_layers(1)[index]
    coding = ifmap_coding or input_coding(index)
    return [compile_layer(qnet.config, dataclasses.replace(shape, N=len(chunk)), chunk[:, cs],
                          g.weights, bias=g.bias, relu=g.relu, shift=g.shift,
                          ifmap_coding=coding)
            for cs, g in layer.accelerator_layers()
            for chunk in (x[n0:n0 + images_per_run] for n0 in range(0, len(x), images_per_run))]


def net_layer_stats(qnet, images, ofmaps, images_per_run: int) -> list[dict]:
    """Per layer of ``qnet`` run on ``images`` with outputs ``ofmaps``
    (`ommatidia.nn.quant.infer`; the golden model's are the hardware's when it is
    bit-exact): ``shape`` (one image), ``input`` (`layer_input_stats`) and ``accesses``
    (`predicted_accesses`) (of the programs of ``images_per_run`` images each that
    ``hardware_conv`` runs, every group of a grouped layer). Without the RLC codec
    (`ArrayConfig.rlc_codec`) the input's RLC figures are those it would have coded."""
    from ommatidia.gen.packing import raw_ifmap
    from .hostops import pad
    from .net import host_after
    from .quant import quantize_input
    x = quantize_input(qnet, images)
    with_codec = dataclasses.replace(qnet, config=dataclasses.replace(qnet.config,
                                                                      rlc_codec=True))
    out = []
    for i, (layer, shape) in enumerate(zip(qnet.layers, qnet.conv_layers(1))):
        progs = _programs(qnet, i, pad(x, layer.host_pad), images_per_run)
        coded = progs if progs[0].ifmap_coding == "rlc" and qnet.config.rlc_codec else \
            _programs(with_codec, i, pad(x, layer.host_pad), images_per_run, "rlc")
        row = {"shape": {**{k: getattr(shape, k) for k in "CHWMRSUP"}, "E": shape.E,
                         "F": shape.F},
               "input": {**layer_input_stats(coded, x),
                         "coding": "raw" if raw_ifmap(qnet.config, progs[0].ifmap_coding)
                         else "rlc"}}
        row["accesses"] = predicted_accesses(progs)
        out.append(row)
        x = host_after(layer, ofmaps[i], integer=True)
    return out


# ---------------------------------------------------------------------------------------------
# Markdown and plots

LEVEL_NAMES = {"dram": "DRAM", "glb": "GLB", "noc": "NoC", "spad": "spad", "mac": "MAC"}
LEVEL_COLORS = {"dram": "#b2182b", "glb": "#ef8a62", "noc": "#fddbc7", "spad": "#67a9cf",
                "mac": "#2166ac"}

DEFINITIONS = """\
## Definitions

- **Values read**: the input activations each layer's DMA reads from DRAM, decoded
  from the RLC-coded ifmap regions of the layer programs: the ifmap *with* its zero
  padding, over the rows the PE sets read, one stream per (image, channel group, row
  strip). Layer 0 reads the quantized image; later layers read the ReLU outputs of the
  previous layer after host max-pooling.
- **Zeros incl. padding**: zero values / values read (what the PEs see and gate on).
  **Zeros excl. padding**: zero values / values of the layer's unpadded input.
- **Gated MACs**: `gated_macs / macs` from the accelerator's counters: MACs skipped
  because the activation is zero (padding included).
- **PE utilization**: `macs / (PEs x cycles)` from the counters (gated MACs count as
  MACs: the slot was the PE's).
- **RLC ratio**: raw bits / coded bits over all streams of the layer; raw is `act_bits`
  per value, coded is `word_bits` per RLC word (partly filled last words included).
- **Value-entropy bound** `b / H0`: `H0 = -sum_v p_v log2 p_v` is the empirical
  zeroth-order entropy of the values read (`p_v`: frequency of value `v` in the layer),
  `b` = `act_bits`. No code spending one codeword per value averages fewer than `H0`
  bits per value (Kraft-McMillan), so raw / (n x H0) is the best ratio such a code gets
  on these values, even with its table sent for free. It does not bound codes that use
  the order of the values: RLC codes runs of zeros and can beat it when zeros cluster
  (padding rows, dead channels). Infinite when all values are equal.
- **Pair-entropy bound** `raw / (k x Hp)`: RLC turns each stream into `k` canonical
  (run, level) pairs; `Hp` is the empirical entropy of those pairs as joint symbols. No
  code of the pairs as independent symbols needs fewer than `k x Hp` bits. The Eyeriss
  format spends `word_bits / pairs_per_word` bits on every pair (64 / 3 = 21.3 by
  default) plus the free slots of each stream's last word; RLC ratio / pair bound is
  the format's efficiency on the pairs it makes.
- **Energy**: accesses per level times Eyeriss's normalised cost (DRAM 200, GLB 6,
  NoC 2, spad 1, MAC 1; `ommatidia.gen.energy`), in units of one MAC's energy.
"""


def _layers(net_report) -> list[dict]:
    if not isinstance(net_report, dict):
        raise ValueError(f"the net report must be a dict (the JSON of `ommatidia net run "
                         f"--report`), not {type(net_report).__name__}")
    layers = net_report.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError("the net report has no layers: give the JSON that `ommatidia net run "
                         "--report` writes (a non-empty 'layers' list)")
    for i, row in enumerate(layers):
        if not isinstance(row, dict):
            raise ValueError(f"layer {i} of the net report must be a dict, not {row!r}")
    return layers


def _label(i: int, row: dict) -> str:
    s = row.get("shape")
    if not s:
        return f"layer {i}"
    kind = "FC" if (s["H"], s["W"], s["P"]) == (s["R"], s["S"], 0) else "CONV"
    return f"layer {i}\n{kind} {s['C']}\u2192{s['M']} {s['R']}x{s['S']}"


def _all(layers, *keys) -> bool:
    """Whether every layer has the entry at path ``keys`` (a None value counts)."""
    def has(row):
        for k in keys:
            if not isinstance(row, dict) or k not in row:
                return False
            row = row[k]
        return True
    return all(has(row) for row in layers)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _num(x, digits=2) -> str:
    if x is None:
        return "\u221e"
    return f"{x:.{digits}f}"


def _figure(width=7.0, height=4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _bar_labels(ax, bars, texts):
    for bar, text in zip(bars, texts):
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8)


def _subtitle(net_report) -> str:
    parts = [f"{net_report.get('images', '?')} images"]
    if net_report.get("preset"):
        arr = net_report.get("array")
        parts.insert(0, f"preset {net_report['preset']}"
                        + (f" ({arr[0]}x{arr[1]} PEs)" if arr else ""))
    if net_report.get("sim"):
        parts.append(f"sim {net_report['sim']}")
    return ", ".join(parts)


def _plot_utilization(layers, labels, sub, path):
    fig = _figure()
    ax = fig.add_subplot()
    u = [100 * row["pe_utilization"] for row in layers]
    bars = ax.bar(labels, u, color="#4393c3", label="MACs / (PEs x cycles)")
    _bar_labels(ax, bars, [f"{v:.1f} %\n{row['cycles']} cycles" for v, row in zip(u, layers)])
    ax.set_ylim(0, max(max(u) * 1.35, 1))
    ax.set_ylabel("PE utilization (% of PE-cycles with a MAC)")
    ax.set_xlabel("layer")
    ax.set_title(f"PE utilization per layer\n{sub}")
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)


def _plot_energy(layers, labels, sub, path):
    fig = _figure(width=10.0)
    ax, share = fig.subplots(1, 2, width_ratios=(3, 2))
    energies = [energy(row["accesses"]) for row in layers]
    totals = np.array([en["total"] for en in energies], dtype=float)
    bottom, low = np.zeros(len(layers)), np.zeros(len(layers))
    for level in LEVELS:
        e = np.array([en[level] for en in energies], dtype=float)
        style = {"color": LEVEL_COLORS[level], "edgecolor": "white", "linewidth": 0.5}
        ax.bar(labels, e, bottom=bottom, label=f"{LEVEL_NAMES[level]} "
                                               f"({EYERISS_COST[level]:g}x)", **style)
        frac = np.divide(100 * e, totals, out=np.zeros_like(e), where=totals > 0)
        share.bar(labels, frac, bottom=low, **style)
        bottom += e
        low += frac
    for k, total in enumerate(totals):
        ax.annotate(f"{total:.3g}", (k, total), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(totals.max() * 1.15, 1))
    ax.set_ylabel("energy (units of one MAC's energy)")
    ax.set_title("energy per layer")
    share.set_ylim(0, 100)
    share.set_ylabel("share of the layer's energy (%)")
    share.set_title("share per memory level")
    for a in (ax, share):
        a.set_xlabel("layer")
        a.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Energy per memory level (Eyeriss normalised costs)\n{sub}")
    fig.legend(title="memory level (energy per access, in MACs)", loc="outside lower center",
               ncols=len(LEVELS), fontsize=8, title_fontsize=8)
    fig.savefig(path)


def _grouped(ax, labels, series, width=0.8):
    """Bars of each (name, values, color) of ``series`` side by side; returns the bars."""
    k = len(series)
    x = np.arange(len(labels))
    out = []
    for j, (name, values, color) in enumerate(series):
        out.append(ax.bar(x + (j - (k - 1) / 2) * width / k, values, width / k, label=name,
                          color=color))
    ax.set_xticks(x, labels)
    return out


def _plot_sparsity(layers, labels, sub, path):
    fig = _figure()
    ax = fig.add_subplot()
    series = [("zeros, excl. padding", [100 * r["input"]["zeros_unpadded"] for r in layers],
               "#92c5de"),
              ("zeros, incl. padding (values read)", [100 * r["input"]["zeros"] for r in layers],
               "#4393c3")]
    if _all(layers, "gated_fraction"):
        series.append(("gated MACs (counters)", [100 * r["gated_fraction"] for r in layers],
                       "#d6604d"))
    for bars, (_, values, _) in zip(_grouped(ax, labels, series), series):
        _bar_labels(ax, bars, [f"{v:.0f}" for v in values])
    ax.set_ylim(0, 100)
    ax.set_ylabel("fraction (%)")
    ax.set_xlabel("layer")
    ax.set_title(f"Activation sparsity and gated-MAC fraction\n{sub}")
    fig.legend(loc="outside lower center", ncols=len(series), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)


def _plot_compression(layers, labels, sub, path):
    fig = _figure()
    ax = fig.add_subplot()
    ins = [r["input"] for r in layers]
    series = [("RLC (Eyeriss format)", [i["rlc_ratio"] for i in ins], "#4393c3"),
              ("pair-entropy bound", [i["pair_bound_ratio"] for i in ins], "#f4a582"),
              ("value-entropy bound", [i["bound_ratio"] for i in ins], "#b2182b")]
    finite = [v for _, vals, _ in series for v in vals if v is not None]
    top = max(finite + [1.0]) * 1.3
    drawn = [(name, [top if v is None else v for v in vals], color)
             for name, vals, color in series]
    for bars, (_, vals, _) in zip(_grouped(ax, labels, drawn), series):
        _bar_labels(ax, bars, [_num(v) if v is not None else "\u221e (H = 0)" for v in vals])
        for bar, v in zip(bars, vals):
            if v is None:
                bar.set_hatch("//")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="1 (no compression)")
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("compression ratio (raw bits / coded bits)")
    ax.set_xlabel("layer")
    ax.set_title(f"RLC compression of the activations read vs. entropy bounds\n{sub}")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)


def _table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def write_report(net_report: dict, out_dir) -> list[pathlib.Path]:
    """Write the summary (`SUMMARY`) and the plots (`PLOTS`) the data of ``net_report``
    (the JSON of ``ommatidia net run --report``) allows into ``out_dir``; returns the
    files written, summary first. A plot whose data some layer lacks is left out, and
    the summary says why. Raises ValueError when the report has no layers."""
    layers = _layers(net_report)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [_label(i, row) for i, row in enumerate(layers)]
    flat = [t.replace("\n", " ") for t in labels]
    sub = _subtitle(net_report)
    plots = [
        ("pe_utilization", "PE utilization per layer", _plot_utilization,
         _all(layers, "pe_utilization") and _all(layers, "cycles"),
         "no per-layer `pe_utilization` (a run on the Verilog gives it; `--sim golden` does not)"),
        ("energy", "Energy per memory level per layer", _plot_energy, _all(layers, "accesses"),
         "no per-layer `accesses` (`ommatidia net run` adds them with "
         "`ommatidia.gen.model.predict`; `--sim golden` runs too)"),
        ("sparsity", "Activation sparsity vs. gated-MAC fraction", _plot_sparsity,
         _all(layers, "input", "zeros") and _all(layers, "input", "zeros_unpadded"),
         "no per-layer `input` statistics (run `ommatidia net run` again)"),
        ("compression", "RLC compression vs. entropy bounds", _plot_compression,
         _all(layers, "input", "rlc_ratio") and _all(layers, "input", "bound_ratio")
         and _all(layers, "input", "pair_bound_ratio"),
         "no per-layer `input` statistics (run `ommatidia net run` again)"),
    ]
    written, sections = [], []
    for key, title, plot, ok, why in plots:
        if ok:
            path = out / PLOTS[key]
            plot(layers, labels, sub, path)
            written.append(path)
            sections.append(f"### {title}\n\n![{title}]({PLOTS[key]})\n")
        else:
            sections.append(f"### {title}\n\nNot plotted: {why}.\n")

    md = ["# Digits CNN on the generated accelerator", ""]
    info = [("model", net_report.get("model")), ("preset", net_report.get("preset")),
            ("simulator", net_report.get("sim")), ("images", net_report.get("images"))]
    if net_report.get("accuracy") is not None:
        info.append(("accuracy", _pct(net_report["accuracy"])))
    info.append(("bit-exact layers", f"{sum(bool(r.get('bit_exact')) for r in layers)} of "
                                     f"{len(layers)}"))
    md += [f"- {k}: {v}" for k, v in info if v is not None] + [""]

    md += ["## Performance (accelerator counters)", ""]
    if _all(layers, "cycles"):
        md += _table(["layer", "cycles", "MACs", "PE utilization", "gated MACs",
                      "DRAM words read", "DRAM words written"],
                     [[t, r["cycles"], r["macs"], _pct(r["pe_utilization"]),
                       _pct(r["gated_fraction"]), r["dram_words_read"], r["dram_words_written"]]
                      for t, r in zip(flat, layers)])
    else:
        md.append("No counters: the run did not use the Verilog (`--sim golden`).")
    md.append("")

    md += ["## Activations read and their compression", ""]
    if _all(layers, "input"):
        md += _table(["layer", "values read", "zeros incl. padding", "zeros excl. padding",
                      "H0 (bits/value)", "value-entropy bound", "RLC pairs",
                      "Hp (bits/pair)", "pair-entropy bound", "RLC ratio",
                      "RLC / pair bound"],
                     [[t, i["values"], _pct(i["zeros"]), _pct(i["zeros_unpadded"]),
                       _num(i["entropy_bits"], 3), _num(i["bound_ratio"]), i["pairs"],
                       _num(i["pair_entropy_bits"], 3), _num(i["pair_bound_ratio"]),
                       _num(i["rlc_ratio"]),
                       _pct(i["rlc_ratio"] / i["pair_bound_ratio"])
                       if i["pair_bound_ratio"] else "n/a"]
                      for t, i in ((t, r["input"]) for t, r in zip(flat, layers))])
    else:
        md.append("No per-layer `input` statistics in this report.")
    md.append("")

    md += ["## Energy (Eyeriss normalised costs, units of one MAC)", ""]
    if _all(layers, "accesses"):
        rows = []
        for t, r in zip(flat, layers):
            e = energy(r["accesses"])
            rows.append([t] + [f"{r['accesses'][lv]:.4g} / {e[lv]:.4g}" for lv in LEVELS]
                        + [f"{e['total']:.4g}"])
        md += ["Accesses / energy per level:", ""]
        md += _table(["layer"] + [f"{LEVEL_NAMES[lv]} ({EYERISS_COST[lv]:g}x)" for lv in LEVELS]
                     + ["total energy"], rows)
    else:
        md.append(f"Not available: {plots[1][4]}.")
    md += ["", "## Plots", ""] + sections + [DEFINITIONS]
    summary = out / SUMMARY
    summary.write_text("\n".join(md))
    return [summary] + written
