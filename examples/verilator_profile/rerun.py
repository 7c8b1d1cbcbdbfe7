"""Run the cocotb test of existing `ommatidia run` builds again, in turn, to compare their
speed on the same machine load (docs/speed.md): prints each layer's cycles over its CPU
seconds. Usage::

    python examples/verilator_profile/rerun.py 2 B1/system_eyeriss_verilator B2/...
"""

import json
import os
import pathlib
import sys

from cocotb_tools.runner import get_runner

from ommatidia.sim.accelerator import CLOCK_NS, HOST_MEMORY
from ommatidia.sim.runner import HARNESS_CLOCK_ENV, HARNESS_MEMORY_ENV
from ommatidia.toolchain import setup_env


def rerun(build: pathlib.Path) -> str:
    """One run of the jobs in ``build`` (left there by `ommatidia run`)."""
    results = build / "results.json"
    results.unlink(missing_ok=True)
    env = {"OMMATIDIA_JOBS": str(build / "jobs.json"), "OMMATIDIA_RESULTS": str(results),
           HARNESS_CLOCK_ENV: str(CLOCK_NS), HARNESS_MEMORY_ENV: HOST_MEMORY}
    cwd = os.getcwd()
    try:
        get_runner("verilator").test(test_module="ommatidia.sim.tb.tb_system",
                                     hdl_toplevel="system_harness", hdl_toplevel_lang="verilog",
                                     build_dir=build, test_dir=build, extra_env=env,
                                     results_xml=str(build / "rerun.xml"),
                                     log_file=build / "rerun.log")
    finally:
        os.chdir(cwd)
    run = json.loads(results.read_text())[0]
    cycles = run["counters"]["cycles"]
    return (f"{build}: {cycles} cycles, {run['run_cpu_s']:.3f} s of CPU, "
            f"{cycles / run['run_cpu_s']:,.0f} cycles/s; {run['run_wall_s']:.3f} s wall, "
            f"{cycles / run['run_wall_s']:,.0f} cycles/s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    setup_env()
    for _ in range(int(sys.argv[1])):
        for folder in sys.argv[2:]:
            print(rerun(pathlib.Path(folder).resolve()), flush=True)
