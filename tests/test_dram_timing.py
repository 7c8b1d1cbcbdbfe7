"""`ommatidia.gen.model.DramTiming`: its checks, its bursts, and what it adds to the model.

The model on the AXI top is checked against the RTL in tests/test_axi_verilog.py;
these are the fast checks: the default is the System's DRAM (the model's own
formulas, unchanged), a slower word port adds its latency to every word fetched
and every ``DMA_IN``, and the AXI master's bursts split where the hardware's do.
"""

import dataclasses

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.model import SYSTEM_DRAM, DramTiming, predict, predict_words
from ommatidia.gen.program import pack_command
from ommatidia.hw.top import Opcode
from ommatidia.sim.array_model import random_values


@pytest.mark.parametrize("field, value, limit", [
    ("read_latency", 0, "1..4096"), ("read_latency", 5000, "1..4096"),
    ("write_latency", -1, "0..4096"), ("read_interval", 0, "1..64"),
    ("max_burst", 257, "1..256"), ("max_reads", 0, "1..16"), ("read_queue", -1, "0..256"),
    ("data_width", 96, "power of two"), ("base", 4, "multiple of 8"), ("bus", "pci", "'axi'"),
    ("read_latency", True, "1..4096")])
def test_checks(field, value, limit):
    with pytest.raises(ValueError, match=field) as err:
        DramTiming(**{field: value})
    assert limit in str(err.value)


def _tags(n=20):
    """``n`` ``TAG`` commands and a ``DONE``."""
    words = {k: pack_command(Opcode.TAG) for k in range(n)}
    words[n] = pack_command(Opcode.DONE)
    return words


@pytest.mark.parametrize("latency", [0, 9])
def test_axi_prefetch_counted_by_hand(latency):
    """20 ``TAG`` and a ``DONE`` on the AXI top, L cycles from AR to R: words 0..15 asked
    for at cycles 0..15 are one burst, issued at 16 (AR at 17), beats at 17 + L .. 32 + L,
    each word run two cycles after its beat (the FIFO's output register); the next block
    (words 16..31: the fetch cannot know the program ends) starts at 33 + L, AR at 50 + L,
    its beats at 50 + 2L .. 65 + 2L: ``DONE`` runs at 56 + 2L and the run ends when the
    last word has come, 66 + 2L cycles, with 32 program words read."""
    pred = predict_words(TINY, _tags(), dram=DramTiming(bus="axi", read_latency=latency,
                                                        base=0x2000))
    assert pred.cycles == 66 + 2 * latency
    assert pred.counters["program_words"] == 32


def test_port_prefetch_counted_by_hand():
    """The same program on a word port 3 cycles late: ``TAG`` k at k + 5 for the first
    block (a word comes 3 cycles after its request, runs 2 after that), the second block
    asks from 19 (when word 15 has come) for words 16 ..; the ``DONE`` (asked at 23) comes
    at 26, so words 21 and 22 were asked for too; ``DONE`` runs at 28, word 22 is in at 29."""
    pred = predict_words(TINY, _tags(), dram=DramTiming(read_latency=3))
    assert pred.cycles == 29 and pred.counters["program_words"] == 23


def _prog(seed):
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=3, M=5, H=4, W=10, R=3, S=3, U=1, P=1)
    x = random_values(rng, 8, (1, 3, 4, 10), 0.4)
    w = random_values(rng, 8, (5, 3, 3, 3))
    return compile_layer(TINY, layer, x, w, bias=rng.integers(-500, 500, 5), relu=True, shift=3)


def test_default_is_the_system(seed):
    prog = _prog(seed)
    assert DramTiming().is_system and SYSTEM_DRAM.taken(0, [1, 1, 1]) == [1, 2, 3]
    assert predict(prog, dram=DramTiming()) == predict(prog)
    assert not dataclasses.replace(SYSTEM_DRAM, read_latency=2).is_system


def test_port_latency(seed):
    """A word port L cycles late: every DMA_IN's words come L - 1 cycles later than on the
    System, the program words mostly ahead of their commands, so the layer takes at least
    (L - 1) per DMA_IN more and less than (L - 1) per program word and DMA_IN more."""
    prog = _prog(seed)
    base = predict(prog)
    for latency in (2, 7):
        got = predict(prog, dram=DramTiming(read_latency=latency))
        dma_in = sum(1 for op, _ in got.commands if op == "DMA_IN")
        assert (latency - 1) * dma_in <= got.cycles - base.cycles \
            < (latency - 1) * (prog.program_words + dma_in)
        same = ("program_words", "cycles")
        assert got.counters | dict.fromkeys(same) == base.counters | dict.fromkeys(same)


def test_port_bandwidth(seed):
    """One word every 3 cycles: the words come 3 cycles apart and the layer takes longer
    (a raw DMA_IN of n words ends 2 (n - 1) cycles later; an RLC one hardly, its decoder
    taking at least 3 cycles a word)."""
    prog = _prog(seed)
    slow = DramTiming(read_interval=3)
    assert slow.taken(0, [1, 5, 1, 1]) == [1, 4, 9, 10]
    raw = [r["words"] for r in prog.inputs.values() if not r["rlc"]]
    assert raw
    assert (predict(prog, dram=slow).cycles - predict(prog).cycles
            >= sum(2 * (n - 1) for n in raw))


def test_axi_bursts():
    """Bursts split where `ommatidia.hw.axi_master.AXI4Master` splits them: at a 4 KiB page
    and at max_burst beats, counting a beat of two words on a 128-bit bus from the lane the
    run starts in."""
    t = DramTiming(bus="axi", base=0x1000 - 3 * 8)
    assert t._bursts(0, 5) == [(3, 3), (2, 2)]
    t = DramTiming(bus="axi", data_width=128, max_burst=4, base=0x2000)
    assert t._bursts(1, 17) == [(7, 4), (8, 4), (2, 1)]
    assert t._bursts(0, 9) == [(8, 4), (1, 1)]


def test_axi_single_burst(seed):
    """On the AXI top with no burst split, a layer takes longer than on the System by at
    least a read latency per DMA_IN (its words come after its requests are collected) and a
    write latency per DMA_OUT but the last (the read after it waits for its B); the
    program words, fetched in bursts of 16 ahead, cost far less than a latency each."""
    prog = _prog(seed)
    lat, wlat = 9, 2
    t = DramTiming(bus="axi", read_latency=lat, write_latency=wlat, base=0x2000)
    assert all(len(t._bursts(r["dram"], r["words"])) == 1 for r in prog.inputs.values())
    got, base = predict(prog, dram=t), predict(prog)
    ops = [op for op, _ in base.commands]
    extra = got.cycles - base.cycles
    assert extra >= lat * ops.count("DMA_IN") + wlat * (ops.count("DMA_OUT") - 1)
    assert extra < (3 + lat) * prog.program_words


def _map_cycles(capsys, *extra):
    import json

    from ommatidia.cli import main
    assert main(["map", "--preset", "tiny", "--layer", "N=1,C=3,M=5,H=4,W=10,R=3,S=3,P=1",
                 "--json", *extra]) == 0
    out = json.loads(capsys.readouterr().out)
    return out["model"]["cycles"], out["program_words"]


def test_map_options(capsys):
    """``ommatidia map --dram-latency N`` makes the DRAM's words N - 1 cycles later (the
    layer's DMA_IN at least); ``--axi`` models the AXI top, slower still (each DMA_IN's
    requests are collected into a burst before its AR)."""
    base, words = _map_cycles(capsys)
    slow, _ = _map_cycles(capsys, "--dram-latency", "3")
    assert base < slow < base + 2 * words
    axi, _ = _map_cycles(capsys, "--axi")
    assert axi > slow


@pytest.mark.parametrize("extra, words", [
    (["--dram-latency", "0"], "--dram-latency must be an integer in 1..4096"),
    (["--axi", "96"], "--axi must be word_bits (64) times a power of two"),
    (["--axi", "--axi-burst", "300"], "--axi-burst must be an integer in 1..256"),
    (["--dram-base", "8"], "--axi-burst and --dram-base need --axi")])
def test_map_option_errors(capsys, extra, words):
    from ommatidia.cli import main
    assert main(["map", "--preset", "tiny", "--layer", "N=1,C=3,M=5,H=4,W=10,R=3,S=3,P=1",
                 *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ommatidia map: error: ") and words in err
