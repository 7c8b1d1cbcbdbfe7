"""Design-space exploration: ``sweep``."""

from __future__ import annotations

from .configure import config_of
from .error import CLIError
from .files import output_dir

__all__ = ["cmd_sweep"]


def cmd_sweep(args) -> int:
    """Sweep configurations over a network's layers on Dask (`ommatidia.explore.sweep`)."""
    from ommatidia.explore.sweep import parse_vary, run_sweep
    base = config_of(args)
    vary = parse_vary(args.vary)
    if not vary:
        raise CLIError("give at least one --vary KEY=V1,V2,...")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, not {args.workers}")
    if args.workers is not None and args.scheduler:
        raise CLIError("--workers sizes the local cluster; a --scheduler's cluster has its own")
    if args.rtl < 0:
        raise CLIError(f"--rtl must be at least 0, not {args.rtl}")
    if not 0 <= args.zeros <= 1:
        raise CLIError(f"--zeros must be in 0..1, not {args.zeros}")
    output_dir(args.out, "--out")
    s = run_sweep(base, vary, args.network, args.out, scheduler=args.scheduler,
                  workers=args.workers, family=args.family, zeros=args.zeros, seed=args.seed,
                  rtl=args.rtl, quiet=args.quiet)
    print(f"{s['network']}: {s['configs']} configurations ({s['valid_configs']} valid) x "
          f"{s['layers']} layers = {s['points']} points; {s['ran']} run, {s['skipped']} "
          f"already in {s['csv']}")
    print("  status        " + ", ".join(f"{k} {v}" for k, v in sorted(s["statuses"].items())))
    print(f"  Pareto front  {len(s['front'])} of {s['modelled_configs']} configurations with "
          f"every layer modelled -> {s['pareto']}")
    for f in s["front"]:
        r = f["resources"]
        print(f"    {f['label']:<36} {f['cycles']:>11} cycles {f['energy']:>11.4g} energy  "
              f"{s['family']}: {r['lut4']} LUT4, {r['dsp']} DSP, {r['bram']} block RAM")
    if "rtl" in s:
        r = s["rtl"]
        print(f"  RTL           {r['ok']} of {r['rows']} random layers bit-exact with the model's "
              f"cycles ({r['ran']} run now) -> {r['csv']}")
        if r["ok"] != r["rows"]:
            raise CLIError(f"{r['rows'] - r['ok']} RTL runs failed or differ from the model; "
                           f"see {r['csv']}")
    return 0
