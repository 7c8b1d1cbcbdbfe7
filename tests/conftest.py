"""Shared fixtures: seeded randomness (the seed is printed) and build folders."""

import os
import pathlib
import random

import pytest

from helpers import ROOT

BUILD = ROOT / "build" / "tests"

# The suite's simulations are short: its Verilator models compile without optimizing,
# about half the compiler's time (ommatidia.sim.runner.QUICK_OPT_ENV).
os.environ.setdefault("OMMATIDIA_VERILATOR_OPT", "-O0")


@pytest.fixture
def seed(request) -> int:
    """A random seed, printed so a failure can be replayed with OMMATIDIA_SEED=<seed>."""
    value = int(os.environ.get("OMMATIDIA_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"seed {request.node.nodeid}: OMMATIDIA_SEED={value}")
    return value


@pytest.fixture
def build_dir(request) -> pathlib.Path:
    """A build folder of this test's own under build/tests/."""
    name = request.node.nodeid.replace("/", "_").replace("::", "__")
    for ch in "[]= ,":
        name = name.replace(ch, "_")
    path = BUILD / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def system_build() -> pathlib.Path:
    """The build folder of the accelerator Verilog shared by the tests of the
    ``system_tiny`` xdist group (they run on one worker, one after another)."""
    path = BUILD / "system"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def small_system_build() -> pathlib.Path:
    """Like `system_build`, for the ``system_small`` xdist group."""
    path = BUILD / "system_small"
    path.mkdir(parents=True, exist_ok=True)
    return path
