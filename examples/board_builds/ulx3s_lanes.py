"""Build the ULX3S 85F with 6x6 PEs of 4 MAC lanes (issue 19's experiment, docs/fpga.md).

    python examples/board_builds/ulx3s_lanes.py MHZ [--gon-queue N] [-o DIR]

The `ulx3s` preset at 6 x 6 PEs, 4 lanes a PE (144 MACs a cycle: 144 of the 85F's 156
MULT18X18D), filter packets of 4 weights (a filter spad bank a lane, as the `orangecrab`
preset), 3-bit NoC IDs, optionally a GON queue of N packets after each PE; the clock MHZ
from the EHXPLLL (25: the oscillator). Timing failures are accepted, so the build
reports the Fmax it routed at.
"""

import argparse
import dataclasses
import time

from ommatidia.boards.board import board
from ommatidia.boards.build import build_or_error, format_build
from ommatidia.gen.config import PRESETS, NoCConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mhz", type=float)
    ap.add_argument("--gon-queue", type=int, default=0)
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    ulx3s = PRESETS["ulx3s"]
    cfg = dataclasses.replace(
        ulx3s, rows=6, cols=6, clock_mhz=args.mhz,
        noc=NoCConfig(row_id_bits=3, col_id_bits=3, filter_gin_values=4,
                      gon_queue=args.gon_queue),
        pe=dataclasses.replace(ulx3s.pe, lanes=4))
    b = dataclasses.replace(board("ulx3s-85f"), clock_mhz=args.mhz, custom=cfg)
    out = args.output or f"build/boards/ulx3s-85f-6x6x4-q{args.gon_queue}-{args.mhz:g}mhz"
    start = time.time()
    report = build_or_error(b, out, allow_timing_fail=True, log=lambda s: print(s, flush=True))
    print(format_build(report) if "error" not in report else report["error"])
    print(f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
