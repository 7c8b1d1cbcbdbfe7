"""`ommatidia` (the CLI) with Verilator arguments added, to measure a build variant
(docs/speed.md). Usage::

    OMMATIDIA_VL_EXTRA="--inline-mult 2000" python examples/verilator_profile/variant.py \\
        run --preset eyeriss --layer ... --build B1

``OMMATIDIA_VL_EXTRA`` (split as a shell would) goes after
`ommatidia.sim.runner.OPTIMIZE_ARGS`, or after ``VERILATOR_WARNINGS`` for the quick
builds of arrays under ``OPTIMIZE_PES`` when ``OMMATIDIA_VL_QUICK`` is set.
``OMMATIDIA_VL_HIER`` (module names, comma-separated; empty: none) replaces
`ommatidia.sim.accelerator.OPTIMIZE_BLOCKS`, the modules the large arrays' builds
verilate once as hierarchical blocks (``system__PE`` by default; ``OMMATIDIA_VL_HIER=``
inlines every PE, as the builds did before d702faa).
"""

import os
import shlex
import sys

from ommatidia.cli import main
from ommatidia.sim import accelerator, runner


if __name__ == "__main__":
    args = runner.VERILATOR_WARNINGS if os.environ.get("OMMATIDIA_VL_QUICK") \
        else runner.OPTIMIZE_ARGS
    args += shlex.split(os.environ.get("OMMATIDIA_VL_EXTRA", ""))
    if "OMMATIDIA_VL_HIER" in os.environ:
        accelerator.OPTIMIZE_BLOCKS = tuple(
            m for m in os.environ["OMMATIDIA_VL_HIER"].split(",") if m)
    print(f"OPTIMIZE_ARGS {runner.OPTIMIZE_ARGS}, VERILATOR_WARNINGS "
          f"{runner.VERILATOR_WARNINGS}, OPTIMIZE_BLOCKS {accelerator.OPTIMIZE_BLOCKS}",
          file=sys.stderr)
    sys.exit(main())
