"""cocotb testbench: one PE run on the generated Verilog, for `ommatidia pe`.

Environment: OMMATIDIA_CONFIG (or OMMATIDIA_PRESET), OMMATIDIA_SEED, OMMATIDIA_RUN
(JSON of `PERun` fields plus "zeros", the fraction of zero activations),
OMMATIDIA_REPORT (the JSON file written).
"""

import json
import os

import cocotb
import numpy as np

from ommatidia.hw.pe import PERun
from ommatidia.sim.pe_model import PECase
from ommatidia.sim.tb.tb_pe import TB

@cocotb.test()
async def single_run(dut):
    """One run with random data; the report says whether it was bit-exact."""
    spec = json.loads(os.environ["OMMATIDIA_RUN"])
    seed = int(os.environ["OMMATIDIA_SEED"])
    tb = TB(dut, seed, idle=0, stall=0)
    await tb.reset()
    cfg = tb.cfg
    zeros = spec.pop("zeros")
    run = PERun(**spec)
    run.check(cfg)
    rng = np.random.default_rng(seed)
    amax, wmax = 1 << (cfg.act_bits - 1), 1 << (cfg.weight_bits - 1)
    ifmap = rng.integers(-amax, amax, (run.q, run.W))
    ifmap[rng.random(ifmap.shape) < zeros] = 0
    filters = rng.integers(-wmax, wmax, (run.p, run.q, run.S))
    psum_in = (rng.integers(-amax, amax, (run.p, run.F)) if run.accumulate else None)
    case = PECase(run, ifmap, filters, psum_in, cfg.psum_bits)
    results, cycles = await tb.execute([case])
    expected = case.expected().tolist()
    report = {
        "run": {**spec, "F": run.F}, "seed": seed, "macs": run.macs, "cycles": cycles,
        "mac_cycles": tb.counter("mac_cycles"), "gated_macs": tb.counter("gated_macs"),
        "stall_cycles": tb.counter("stall_cycles"), "filter_loads": run.p * run.q * run.S,
        "expected_gated": case.expected_gated(), "bit_exact": results[0] == expected,
    }
    with open(os.environ["OMMATIDIA_REPORT"], "w") as fp:
        json.dump(report, fp, indent=2)
    assert report["bit_exact"], "PE psums differ from the golden row convolution"
    assert report["gated_macs"] == report["expected_gated"]
