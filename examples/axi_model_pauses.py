"""How far the analytical model is from the AXI top under bus pauses (docs/axi.md).

Runs a `tiny` CONV and FC layer on the AXI top's Verilog under cocotbext-axi
(`ommatidia.sim.axi_run`) with a fixed read latency of 0 or 16 cycles and 0, 10, 30
or 50 % pauses on every AXI channel (three pause seeds each), and prints the RTL's
cycles beside the model's (`ommatidia.gen.model.predict` with
`ommatidia.sim.axi_run.axi_timing`). About three minutes on Verilator:

    .venv/bin/python examples/axi_model_pauses.py
"""

import numpy as np

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY
from ommatidia.gen.layer import ConvLayer, fc_layer
from ommatidia.gen.model import predict
from ommatidia.sim.array_model import random_values
from ommatidia.sim.axi_run import AxiJob, axi_timing, run_axi_layers


def _layer(rng, layer, zeros):
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), zeros)
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S))
    return compile_layer(TINY, layer, x, w, bias=rng.integers(-500, 500, layer.M), relu=True,
                         shift=3)


def main():
    rng = np.random.default_rng(5)
    layers = [("conv", _layer(rng, ConvLayer(N=1, C=3, M=5, H=4, W=10, R=3, S=3, U=1, P=1),
                              0.4), 0x2000),
              ("fc", _layer(rng, fc_layer(1, 12, 6, 2, 2), 0.2), 0x5008)]
    jobs = [(name, AxiJob(prog, dram_base=base, pause=pause, latency=latency,
                          fixed_latency=True, seed=seed))
            for name, prog, base in layers for latency in (0, 16)
            for pause in (0.0, 0.1, 0.3, 0.5) for seed in ((1,) if not pause else (1, 2, 3))]
    runs = run_axi_layers(TINY, [job for _, job in jobs], build_dir="build/axi_pauses")
    for (name, job), run in zip(jobs, runs):
        model = predict(job.prog, dram=axi_timing(job)).cycles
        rtl = run.counters["cycles"]
        print(f"{name} latency {job.latency:2d} pause {job.pause:.1f} seed {job.seed}: RTL {rtl}, "
              f"model {model}, RTL - model {rtl - model:+d} ({(rtl - model) / model:+.1%})"
              f"{'' if run.bit_exact else ', ofmap DIFFERS'}")


if __name__ == "__main__":
    main()
