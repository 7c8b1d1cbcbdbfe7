"""docs/speed.md, "A C++ main": write the System's Verilog, its harness without the Verilog clock
and the DRAM image of `ommatidia run --seed 1`'s layer into OUT; print the ofmap regions
(address, words) the C++ main takes. Usage: prep.py PRESET OUT"""
import pathlib
import sys

import numpy as np
from ommatidia.gen.config import preset
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.compiler import compile_layer
from ommatidia.sim.array_model import random_values
from ommatidia.sim.accelerator import HOST_MEMORY, _verilog
from ommatidia.sim.harness import HOST_LOAD_FILE, memh, wrap

name, out = sys.argv[1], pathlib.Path(sys.argv[2])
cfg = preset(name)
layer = ConvLayer(N=1, C=32, M=16, H=16, W=16, R=3, S=3, U=1, P=1)
rng = np.random.default_rng(1)
x = random_values(rng, cfg.pe.act_bits, (1, 32, 16, 16), 0.5)
w = random_values(rng, cfg.pe.weight_bits, (16, 32, 3, 3))
prog = compile_layer(cfg, layer, x, w)
path = _verilog(cfg, out, 1 << 16, "verilator")
(out / "harness.v").write_text(wrap(path.read_text(), "system", None, HOST_MEMORY))
(out / HOST_LOAD_FILE).write_text(memh(prog.words.items()))
print(" ".join(f"{r.dram} {r.words}" for r in prog.outputs))
