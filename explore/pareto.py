"""The Pareto front of a sweep: energy against cycles per configuration.

`config_totals` sums a network's layers per configuration (only configurations whose
every layer was modelled), `pareto_front` finds the configurations no other beats on
both counts, and `plot_pareto` draws them (docs/sweep.md).
"""

from __future__ import annotations

__all__ = ["pareto_front", "config_totals", "plot_pareto"]


def pareto_front(points) -> list[int]:
    """Indices, in the order given, of the (x, y) ``points`` that no other point dominates
    (another at most as large in both and smaller in one); both are minimised, and equal
    points are all on the front."""
    pts = [(float(x), float(y)) for x, y in points]
    order = sorted(range(len(pts)), key=lambda i: pts[i])
    front, best_y, last = set(), float("inf"), None
    for i in order:
        x, y = pts[i]
        if y < best_y or (last is not None and pts[i] == last):
            front.add(i)
            best_y, last = min(best_y, y), pts[i]
    return sorted(front)


def config_totals(rows, layers) -> list[dict]:
    """Per configuration (``config`` column, in first-seen order) whose rows hold every one
    of ``layers`` with status ``ok``: its ``config``, ``name``, the row itself under
    ``first`` and the sums of ``cycles`` and ``energy_total`` over the layers."""
    by_config: dict[str, dict] = {}
    for row in rows:
        entry = by_config.setdefault(row["config"], {"rows": {}, "first": row})
        entry["rows"][row["layer"]] = row
    out = []
    for key, entry in by_config.items():
        got = entry["rows"]
        if not all(name in got and got[name]["status"] == "ok" for name in layers):
            continue
        out.append({"config": key, "name": entry["first"]["name"], "first": entry["first"],
                    "cycles": sum(int(float(got[n]["cycles"])) for n in layers),
                    "energy": sum(float(got[n]["energy_total"]) for n in layers)})
    return out


def plot_pareto(totals, front, path, *, title: str, label=None) -> None:
    """Energy against cycles of ``totals`` (`config_totals`), the ``front`` (indices)
    joined and labelled with ``label(total)`` (default: the configuration's name)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    label = label or (lambda t: t["name"])
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [t["cycles"] for t in totals]
    ys = [t["energy"] for t in totals]
    ax.scatter(xs, ys, color="0.6", label="configurations")
    on = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in on], [ys[i] for i in on], "o-", color="C3", drawstyle="steps-post",
            label="Pareto front")
    for i in on:
        ax.annotate(label(totals[i]), (xs[i], ys[i]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    ax.set_xlabel("cycles (sum over the layers)")
    ax.set_ylabel("energy, MAC = 1 (sum over the layers)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
