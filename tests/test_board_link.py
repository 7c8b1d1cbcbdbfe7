"""The whole host path in simulation: `Host` -> UART line -> `BoardTop` (UART bridge,
accelerator, on-chip DRAM) -> UART line -> `Host`, running a real layer bit-exact."""

import numpy as np
import pytest

from amaranth.sim import Simulator

from ommatidia.boards.host import Host, run_layer
from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import ICEBREAKER, TINY
from ommatidia.gen.layer import ConvLayer
from ommatidia.hw.board import BoardTop
from ommatidia.sim.array_model import layer_gated_macs, random_values
from ommatidia.sim.golden import layer_ofmap
from ommatidia.sim.uart_model import SimTransport

DIVISOR = 4


@pytest.mark.parametrize("cfg", [TINY, ICEBREAKER], ids=lambda c: c.name)
def test_layer_over_uart(seed, cfg):
    """The icebreaker preset has the lean settings: no counters, no RLC codec (ifmaps and
    ofmaps packed raw), 9-bit DRAM addresses, 4-entry tag tables."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=2, M=2, H=3, W=4, R=2, S=2, U=1, P=0)
    x = random_values(rng, 8, (1, 2, 3, 4), 0.4)
    w = random_values(rng, 8, (2, 2, 2, 2))
    prog = compile_layer(cfg, layer, x, w, bias=[100, -100], relu=True, shift=2)
    dut = BoardTop(cfg, 256, DIVISOR)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    transport = SimTransport(sim, dut.rx, dut.tx, DIVISOR, timeout_cycles=1 << 16)
    host = Host(transport)
    ofmap, counters = run_layer(host, prog, timeout=600)
    print(f"{len(prog.words)} DRAM words over the line, {transport.cycles} cycles, "
          f"counters {counters}")
    assert np.array_equal(ofmap, layer_ofmap(prog))
    if not cfg.counter_bits:
        assert set(counters.values()) == {0}
        return
    assert counters["macs"] == layer.macs
    assert counters["gated_macs"] == layer_gated_macs(layer, x)
    assert counters["program_words"] == prog.program_words
