"""One PE run on the generated Verilog, checked against the golden row convolution.

`run_pe` writes the Verilog of a preset's PE, runs the cocotb testbench
`ommatidia.sim.tb.tb_pe_run` on it (random filters, an ifmap with a fraction of
zero activations, random incoming psums when the run accumulates) and reads
back the report the testbench wrote: bit-exact or not, MACs, MACs gated by zero
activations, cycles and filter loads.
"""

from __future__ import annotations

import json
import pathlib

from ommatidia.gen.config import config_fields
from ommatidia.gen.verilog import write
from ommatidia.hw.pe import PE

from .runner import run_cocotb

__all__ = ["run_pe"]


def run_pe(cfg, run, *, zeros: float, seed: int, sim: str = "verilator", build_root="build",
           report_path=None) -> tuple[dict | None, pathlib.Path, pathlib.Path]:
    """Run ``run`` (a `ommatidia.hw.pe.PERun`) on ``cfg``'s PE under ``sim``.

    The build goes to ``<build_root>/pe_<preset>_<sim>``, the report to
    ``report_path`` (default: ``report.json`` in the build folder). Returns the
    report (None when the simulation wrote none), its path and the build folder.
    """
    build = pathlib.Path(build_root) / f"pe_{cfg.name}_{sim}"
    path = write(PE(cfg.pe, cfg.noc.filter_gin_values, cfg.noc.ifmap_gin_values), "pe", build)
    report_path = pathlib.Path(report_path or build / "report.json").resolve()
    report_path.parent.mkdir(parents=True, exist_ok=True)
    spec = {"S": run.S, "W": run.W, "U": run.U, "p": run.p, "q": run.q,
            "accumulate": run.accumulate, "zeros": zeros}
    try:
        run_cocotb(path, "pe", "ommatidia.sim.tb.tb_pe_run", sim=sim, build_dir=build,
                   env={"OMMATIDIA_CONFIG": json.dumps(config_fields(cfg)),
                        "OMMATIDIA_SEED": seed,
                        "OMMATIDIA_RUN": json.dumps(spec), "OMMATIDIA_REPORT": report_path})
    finally:
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    return report, report_path, build
