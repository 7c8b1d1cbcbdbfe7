"""Where a Verilated `System` spends its time, by the design's blocks (docs/speed.md).

Verilator flattens the design into one class whose evaluation functions mix every
instance, so a profile by function says little. This script maps each `perf` sample in
those functions to the design variable the nearest preceding instruction reads or
writes (an offset from the model's ``this``), and sums the samples by instance kind
(``array/pe_N``: all PEs; ``--detail pe_`` splits them by variable). Usage, on a build
folder of `ommatidia run` (``BUILD/system_<preset>_verilator``)::

    perf record -F 4000 -o perf.data -- ommatidia run --preset eyeriss ... --build BUILD
    python examples/verilator_profile/attribute.py BUILD/system_eyeriss_verilator perf.data

The variable offsets come from a small C++ program compiled against the build's header
(``offsetof`` on each member, written to ``offsets.txt`` in the build folder). A sample
on an instruction that touches no variable (arithmetic, branches) goes to the last
variable touched before it, so the figures are approximate at the scale of a few
instructions; the sums over many instances are not.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import pathlib
import re
import subprocess

from ommatidia.toolchain import setup_env

ROOT = "Vtop___024root"
MEMBER = re.compile(r"^\s+(?:[\w:<>,/*\s]|\[|\]|\d)+?[\s>/](\w+);\s*$")
OPERAND = re.compile(r"(-?0x[0-9a-f]+)?\(%(r\w+)")
SAMPLE = re.compile(r"\s(\S+)\+0x([0-9a-f]+) \(")
SHADOW = ("__VdlySet__", "__VdlyVal__", "__VdlyDim0__")


def offsets(build: pathlib.Path) -> list[tuple[int, int, str]]:
    """(offset, size, name) of every member of the model's root class, sorted."""
    out = build / "offsets.txt"
    if not out.exists():
        names = [m[1] for line in (build / f"{ROOT}.h").read_text().splitlines()
                 if (m := MEMBER.match(line)) and "(" not in line and "VL_" not in line]
        src = build / "offsets.cpp"
        src.write_text(f'#include "Vtop__pch.h"\n#include "{ROOT}.h"\n#include <cstdio>\n'
                       "int main() {\n" + "".join(
                           f'  printf("%zu %zu {n}\\n", offsetof({ROOT}, {n}), '
                           f"sizeof((({ROOT}*)0)->{n}));\n" for n in names) + "}\n")
        inc = pathlib.Path(setup_env(dict(os.environ))["VERILATOR_ROOT"]) / "include"
        subprocess.run(["g++", "-std=gnu++20", "-fcoroutines", "-w", "-I", str(build),
                        "-I", str(inc), "-I", str(inc / "vltstd"), str(src), "-o",
                        str(build / "offsets")], check=True)
        out.write_text(subprocess.run([str(build / "offsets")], check=True,
                                      capture_output=True, text=True).stdout)
    rows = [(int(o), int(s), n) for o, s, n in (line.split() for line in
                                                   out.read_text().splitlines())]
    return sorted(rows)


def kind(name: str, detail: str | None) -> str:
    """The instance kind of variable ``name``: its hierarchy, indices folded to ``N``."""
    for prefix in SHADOW:
        name = name.replace(prefix, "")
    parts = name.split("__DOT__")
    path = "/".join(re.sub(r"_\d+(_\d+)?$", "_N", p) for p in parts[1:-1][:5])
    return path + (f"::{parts[-1]}" if detail and detail in name else "")


def attribute(binary: pathlib.Path, perf_data: pathlib.Path, members, detail=None):
    """Samples of ``binary`` in ``perf_data`` by instance kind."""
    script = subprocess.run(["perf", "script", "-i", str(perf_data), "-F", "ip,sym,symoff,dso"],
                            capture_output=True, text=True, check=True).stdout
    symbols = {}
    for line in subprocess.run(["nm", "-C", str(binary)], capture_output=True,
                               text=True).stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[1] in "tTwW":
            symbols.setdefault(fields[2].split("(")[0], int(fields[0], 16))
    hits = collections.Counter()
    for line in script.splitlines():
        if f"({binary.resolve()})" in line and (m := SAMPLE.search(line)) and m[1] in symbols:
            hits[m[1], symbols[m[1]] + int(m[2], 16)] += 1
    starts = [o for o, _, _ in members]
    totals = collections.Counter()
    for func in {f for f, _ in hits}:
        code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary),
                               f"--start-address={symbols[func]}",
                               f"--stop-address={symbols[func] + 0x400000}"],
                              capture_output=True, text=True).stdout.splitlines()
        insns = []
        for line in code[7:]:
            m = re.match(r"\s+([0-9a-f]+):\s+(.*)", line)
            if m:
                insns.append((int(m[1], 16), m[2]))
            elif line.strip() and insns:
                break
        addrs = [a for a, _ in insns]
        for (f, addr), n in hits.items():
            if f == func:
                totals[_variable(insns, bisect.bisect_right(addrs, addr) - 1, members,
                                 starts, detail) or f"({func})"] += n
    return totals


def _variable(insns, i, members, starts, detail):
    """The kind of the variable instruction ``i`` or the last one before it touches."""
    for j in range(i, max(-1, i - 40), -1):
        for disp, reg in OPERAND.findall(insns[j][1]):
            if reg in ("rsp", "rbp", "rip"):
                continue
            off = int(disp, 16) if disp else 0
            k = bisect.bisect_right(starts, off) - 1
            if k >= 0 and off < members[k][0] + members[k][1]:
                return kind(members[k][2], detail)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("build", type=pathlib.Path, help="the Verilator build folder")
    p.add_argument("perf_data", type=pathlib.Path)
    p.add_argument("--binary", default="system_harness")
    p.add_argument("--detail", help="split the kinds whose variables contain this by variable")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    totals = attribute(args.build / args.binary, args.perf_data, offsets(args.build),
                       args.detail)
    n = sum(totals.values())
    print(f"{n} samples in {args.binary}")
    for name, count in totals.most_common(args.top):
        print(f"{100 * count / n:5.1f} %  {count:6d}  {name or '(top level)'}")


if __name__ == "__main__":
    main()
