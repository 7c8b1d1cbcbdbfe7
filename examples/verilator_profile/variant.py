"""`ommatidia` (the CLI) with Verilator arguments added, to measure a build variant
(docs/speed.md). Usage::

    OMMATIDIA_VL_EXTRA="--inline-mult 2000" python examples/verilator_profile/variant.py \\
        run --preset eyeriss --layer ... --build B1

``OMMATIDIA_VL_EXTRA`` (split as a shell would) goes after
`ommatidia.sim.runner.OPTIMIZE_ARGS`, or after ``VERILATOR_WARNINGS`` for the quick
builds of arrays under ``OPTIMIZE_PES`` when ``OMMATIDIA_VL_QUICK`` is set.
``OMMATIDIA_VL_HIER`` (module names, comma-separated) makes those modules Verilator
hierarchical blocks (``--hierarchical`` and a ``hier_block`` control file): the build's
Verilog names them without ``__``, as Verilator silently inlined a block named
``system__PE`` instead.
"""

import os
import pathlib
import re
import shlex
import sys

from ommatidia.cli import main
from ommatidia.sim import runner


def _hierarchical(modules: list[str], args: list[str]) -> None:
    """Make ``modules`` hierarchical blocks of every build this process runs."""
    names = {m: m.replace("__", "_hb_") for m in modules}
    vlt = pathlib.Path(f"/tmp/ommatidia_hier_{os.getpid()}.vlt")
    vlt.write_text("`verilator_config\n" +
                   "".join(f'hier_block -module "{n}"\n' for n in names.values()))
    args += ["--hierarchical", str(vlt)]
    run_cocotb = runner.run_cocotb

    def renamed(path, *rest, **kw):
        text = pathlib.Path(path).read_text()
        for old, new in names.items():
            text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        pathlib.Path(path).write_text(text)
        return run_cocotb(path, *rest, **kw)
    runner.run_cocotb = renamed


if __name__ == "__main__":
    args = runner.VERILATOR_WARNINGS if os.environ.get("OMMATIDIA_VL_QUICK") \
        else runner.OPTIMIZE_ARGS
    args += shlex.split(os.environ.get("OMMATIDIA_VL_EXTRA", ""))
    if hier := [m for m in os.environ.get("OMMATIDIA_VL_HIER", "").split(",") if m]:
        _hierarchical(hier, args)
    print(f"OPTIMIZE_ARGS {runner.OPTIMIZE_ARGS}, VERILATOR_WARNINGS "
          f"{runner.VERILATOR_WARNINGS}", file=sys.stderr)
    sys.exit(main())
