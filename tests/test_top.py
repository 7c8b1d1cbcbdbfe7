"""The accelerator (`hw/top.py`) in its `System` under the Amaranth simulator.

The testbench only loads the DRAM image that `gen.compiler.compile_layer`
emits, pulses ``start`` and waits; the controller fetches the program,
configures the array, runs the DMA, the passes and the output stage. The
ofmap read back from DRAM is compared bit-exact with `golden.conv2d`, and the
counters with what the layer and the image imply.
"""

import dataclasses

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.model import decode, predict, predict_words
from ommatidia.gen.program import _packer, pack_command
from ommatidia.hw.system import STATUS_DONE, STATUS_ERROR
from ommatidia.hw.top import REGISTERS, Opcode, register_shapes
from ommatidia.sim.array_model import layer_gated_macs, random_values
from ommatidia.sim.golden import layer_ofmap

from helpers import (assert_golden_ofmap, assert_same_under_dram_stalls, beside_program,
                     region_addrs, run_layer_golden, simulate_system, split_program)


def random_program(seed, **overrides):
    rng = np.random.default_rng(seed)
    layer = ConvLayer(**{"N": 2, "C": 3, "M": 5, "H": 4, "W": 7, "R": 3, "S": 3, "U": 1,
                         "P": 1, **overrides})
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), rng.uniform(0, 0.9))
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.1)
    bias = rng.integers(-3000, 3000, layer.M)
    return compile_layer(TINY, layer, x, w, bias=bias, relu=bool(rng.integers(2)),
                         shift=int(rng.integers(0, 6)), p=2, q=2)


def test_layer_bit_exact_with_counters(seed):
    """Two images, three filter groups, two channel groups, padding, bias, ReLU, shift,
    25 % DRAM stalls: the ofmap is the golden one and the counters add up; a second
    start reruns the program with the same counters (they restart at start)."""
    prog = random_program(seed)
    runs = simulate_system(TINY, prog.words, region_addrs(prog), stall_rate=64,
                           stall_seed=seed % 65535, runs=2)
    for status, counters, mem in runs:
        assert status == STATUS_DONE
        ofmap, coded = prog.ofmap(lambda a, n: [mem[a + k] for k in range(n)])
        assert np.array_equal(ofmap, layer_ofmap(prog))
        layer = prog.layer
        assert counters["macs"] == layer.macs
        assert counters["gated_macs"] == layer_gated_macs(layer, prog.ifmap)
        assert counters["macs"] == counters["mac_cycles"] + counters["gated_macs"]
        assert counters["program_words"] == prog.program_words
        assert counters["dram_words_read"] == len(prog.words) - prog.program_words
        assert counters["dram_words_written"] == coded
        assert counters["cycles"] * TINY.rows * TINY.cols >= layer.macs
        assert counters["glb_writes"] >= counters["dram_words_read"] - prog.ifmap_rlc_words
    print(f"{runs[0][1]}")
    assert runs[0][1] == runs[1][1]


def test_stride_two_and_one_filter_per_pass(seed):
    prog = random_program(seed, N=1, C=2, M=3, H=9, W=9, R=2, S=3, U=2, P=0)
    (status, counters, mem), = simulate_system(TINY, prog.words, region_addrs(prog),
                                               stall_rate=128, stall_seed=7)
    assert status == STATUS_DONE
    assert_golden_ofmap(prog, mem)


def test_raw_ifmap_is_packed_and_bit_exact(seed):
    """``ifmap_coding="raw"`` (a first layer's input): each ifmap region holds the values
    its RLC region (default coding, same mapping) decodes to, packed eight 8-bit values
    a word lowest byte first, no RLC, fewer words (no zeros but the padding); on the
    System (DRAM stalls) the ofmap is the golden one, the DMA reads the whole image and
    the model's cycles and counters equal the RTL's."""
    from ommatidia.gen.rlc import decode
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=2, C=3, M=3, H=4, W=7, R=3, S=3, U=1, P=1)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W))
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.1)
    coded = compile_layer(TINY, layer, x, w, relu=True, shift=3, p=2, q=2)
    prog = compile_layer(TINY, layer, x, w, relu=True, shift=3, mapping=coded.mapping,
                         ifmap_coding="raw")
    ifmaps = [k for k in coded.inputs if k[0] == "ifmap"]
    assert ifmaps and ifmaps == [k for k in prog.inputs if k[0] == "ifmap"]
    for key in ifmaps:
        r, c = prog.inputs[key], coded.inputs[key]
        assert c["rlc"] == 1 and r["rlc"] == 0 and r["n"] == c["n"]
        words = [prog.words[r["dram"] + k] for k in range(r["words"])]
        assert len(words) == -(-r["n"] // 8)
        raw = [(words[j // 8] >> 8 * (j % 8)) & 0xFF for j in range(r["n"])]
        expect = decode([coded.words[c["dram"] + k] for k in range(c["words"])], c["n"],
                        TINY.rlc)
        assert [v - 256 if v > 127 else v for v in raw] == list(expect)
    assert prog.ifmap_coding == "raw" and prog.ifmap_rlc_words < coded.ifmap_rlc_words
    (status, counters, mem), = simulate_system(TINY, prog.words, region_addrs(prog),
                                               stall_rate=64, stall_seed=seed % 65535)
    assert status == STATUS_DONE
    assert np.array_equal(prog.ofmap(lambda a, n: [mem[a + k] for k in range(n)])[0],
                          layer_ofmap(coded))
    assert counters["dram_words_read"] == len(prog.words) - prog.program_words
    (status, counters, _), = simulate_system(TINY, prog.words, region_addrs(prog))
    assert status == STATUS_DONE
    pred = predict(prog)
    print(f"RTL {counters['cycles']} cycles, model {pred.cycles}")
    assert pred.counters == counters | {k: pred.counters[k] for k in
                                        ("pe_stall_cycles", "noc_stall_cycles")}


def test_bad_ifmap_coding_is_rejected():
    layer = ConvLayer(N=1, C=1, M=1, H=4, W=4, R=3, S=3)
    x, w = np.zeros((1, 1, 4, 4), dtype=np.int64), np.zeros((1, 1, 3, 3), dtype=np.int64)
    for bad in ("RLC", "zip", None, 1):
        with pytest.raises(ValueError, match=f"ifmap_coding must be one of 'rlc', 'raw', "
                                             f"not {bad!r}"):
            compile_layer(TINY, layer, x, w, ifmap_coding=bad)


def test_unknown_opcode_stops_with_error():
    """An opcode that is not in `Opcode` ends the run with the error bit, not a hang."""
    words = {0: pack_command(Opcode.SET, 1 << 8 | 5), 1: 0b111,
             2: pack_command(0x5a), 3: pack_command(Opcode.DONE)}
    (status, counters, _), = simulate_system(TINY, words, [])
    assert status == STATUS_ERROR
    assert counters["program_words"] == 3


def test_set_of_unknown_register_stops_with_error():
    (status, _, _), = simulate_system(TINY, {0: pack_command(Opcode.SET, 1 << 8 | 200), 1: 0}, [])
    assert status == STATUS_ERROR


def test_malformed_ifmap_stream_stops_with_error(seed):
    """An RLC ifmap region whose term word is cleared: the DMA's decoder flags it and the
    controller stops with the error bit instead of running the passes."""
    prog = random_program(seed, N=1, M=2)
    words = dict(prog.words)
    ifmap = next(r for r in prog.inputs.values() if r["rlc"])
    last = ifmap["dram"] + ifmap["words"] - 1
    words[last] &= ~(1 << (TINY.rlc.word_bits - 1))
    (status, counters, _), = simulate_system(TINY, words, [])
    assert status == STATUS_ERROR
    assert counters["mac_cycles"] == 0


def test_bad_input_is_rejected_before_simulation():
    layer = ConvLayer(N=1, C=2, M=2, H=4, W=4, R=3, S=3)
    x, w = np.zeros((1, 2, 4, 4), dtype=np.int64), np.zeros((2, 2, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="ifmap values .* do not fit 8-bit"):
        compile_layer(TINY, layer, x + 200, w)
    with pytest.raises(ValueError, match="weights values .* do not fit 8-bit"):
        compile_layer(TINY, layer, x, w - 129)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        compile_layer(TINY, layer, x, w, bias=[1, 2, 3])
    with pytest.raises(ValueError, match="shift must be"):
        compile_layer(TINY, layer, x, w, shift=-1)
    wide = ConvLayer(N=1, C=1, M=1, H=4, W=40, R=3, S=3)
    with pytest.raises(ValueError, match="padded ifmap width W \\+ 2P = 40 exceeds the PE's "
                                         "max_ifmap_width = 32"):
        compile_layer(TINY, wide, np.zeros((1, 1, 4, 40), dtype=np.int64),
                      np.zeros((1, 1, 3, 3), dtype=np.int64))
    long = ConvLayer(N=1, C=1, M=1, H=8, W=8, R=3, S=7)
    with pytest.raises(ValueError, match="filter width S = 7 exceeds the PE's "
                                         "max_filter_width = 5"):
        compile_layer(TINY, long, np.zeros((1, 1, 8, 8), dtype=np.int64),
                      np.zeros((1, 1, 3, 7), dtype=np.int64))


def test_prefetch_counted_by_hand():
    """20 ``TAG`` and a ``DONE``: the controller asks for words 0..15 at cycles 0..15 (one
    block); each comes the cycle after and is in the FIFO's output register the cycle after
    that, so ``TAG`` k runs at k + 3 (``TAG`` 15 at 18). The next block starts once the
    last word has come (17) and asks for words 16..20 at 17..21: ``TAG`` 16 runs at 20,
    ``TAG`` 19 at 23, the ``DONE`` (come at 22) at 24: 25 cycles, not three per word (63);
    no word is asked for after the ``DONE`` came (21 program words). The model agrees."""
    words = {k: pack_command(Opcode.TAG) for k in range(20)}
    words[20] = pack_command(Opcode.DONE)
    (status, counters, _), = simulate_system(TINY, words, [])
    assert status == STATUS_DONE
    assert counters["cycles"] == 25 and counters["program_words"] == 21
    pred = predict_words(TINY, words)
    assert pred.cycles == 25 and pred.counters["program_words"] == 21


def test_program_fetched_during_the_passes(seed):
    """A layer on the System: program words are asked for while passes run (the fetch
    does not wait for the command before), ``TAG`` writes after a pass run back to back,
    and the model's cycles and counters equal the RTL's; then with 40 % DRAM stalls
    (requests refused, responses withheld during the fetch too) the same ofmap and
    counters but the cycles."""
    prog = random_program(seed, N=1, M=3)
    trace = []

    def probe(dut):
        acc = dut._accel
        eng = acc.engine
        return [acc.dram_addr.valid & acc.dram_addr.ready & ~eng.dma_busy, eng.busy,
                eng.tag_w.valid]
    (status, counters, mem), = simulate_system(TINY, prog.words, region_addrs(prog),
                                               probe=probe, trace=trace)
    assert status == STATUS_DONE
    during = sum(1 for fetch, passing, _ in trace if fetch and passing)
    assert during > 0, "no program word was asked for while a pass ran"
    tags = [c for c, (_, _, tag) in enumerate(trace) if tag]
    assert any(b == a + 1 for a, b in zip(tags, tags[1:]))
    _model_and_slow_dram(prog, counters, mem, seed)


def _model_and_slow_dram(prog, counters, mem, seed):
    """The model's counters equal ``counters`` (the stall counters aside); with DRAM
    stalls on both ports the run ends with the same DRAM image and counters, later."""
    pred = predict(prog)
    assert pred.counters == counters | {k: pred.counters[k] for k in
                                        ("pe_stall_cycles", "noc_stall_cycles")}
    assert_same_under_dram_stalls(TINY, prog, counters, mem, seed)


def _dma_program(background, *, tail=(), n_out=40, n_in=30, again=()):
    """``SET dma_out``, ``DMA_OUT`` of ``n_out`` raw GLB words 0.. to DRAM 3000.. (in the
    background or not) and once more per flag of ``again``, ``SET dma_in``, ``DMA_IN`` of
    ``n_in`` raw DRAM words 2000.. to GLB 64.., the command words ``tail``, ``DONE``."""
    shapes = register_shapes(TINY)
    out = _packer(shapes["dma_out"])({"glb": 0, "dram": 3000, "n": n_out, "rlc": 0,
                                      "stage": {"shift": 0, "relu": 0, "p": 1}})
    din = _packer(shapes["dma_in"])({"dram": 2000, "glb": 64, "words": n_in, "n": 0, "rlc": 0})
    prog = [pack_command(Opcode.SET, 2 << 8 | REGISTERS.index("dma_out")),
            out & (1 << 64) - 1, out >> 64, pack_command(Opcode.DMA_OUT, int(background)),
            *(pack_command(Opcode.DMA_OUT, int(b)) for b in again),
            pack_command(Opcode.SET, 2 << 8 | REGISTERS.index("dma_in")),
            din & (1 << 64) - 1, din >> 64, pack_command(Opcode.DMA_IN),
            *tail, pack_command(Opcode.DONE)]
    words = dict(enumerate(prog))
    words.update({2000 + k: k + 1 for k in range(n_in)})
    return words


def test_dma_in_beside_a_background_dma_out_counted_by_hand():
    """A ``DMA_OUT`` of 40 raw words then a ``DMA_IN`` of 30 (9 program words, asked for
    at 0..8, word k run at k + 3 at the soonest). In the background: the ``DMA_OUT`` is
    taken at 6 and drains until 50 (3 + 40 + 4 cycles from two before its word: idle
    at 6 + 47 - 3); its ``SET dma_in`` runs at 7..9 beside it, the ``DMA_IN`` at 10
    (the ``DONE``, asked for at 8, has come) and ends at 10 + 36 - 2 = 44; the ``DONE``
    waits for the ``DMA_OUT``: it runs at 50, 51 cycles. In the foreground: the fetch
    stops at the ``DMA_OUT`` (next at 6, words 0..5 asked for), which is taken at 7 once
    word 5 has come, idle at 51; words 6..8 are asked for at 51..53, the ``SET`` runs
    at 52..54, the ``DMA_IN`` at 55 (the ``DONE`` come at 54) until 89, the ``DONE``
    at 89: 90 cycles. The model agrees; the same words reach the DRAM either way."""
    got = {}
    for background, cycles in ((True, 51), (False, 90)):
        words = _dma_program(background)
        (status, counters, mem), = simulate_system(TINY, words, range(3000, 3040))
        assert status == STATUS_DONE
        assert counters["cycles"] == cycles
        assert counters["dram_words_written"] == 40 and counters["dram_words_read"] == 30
        assert predict_words(TINY, words).counters == counters | {"cycles": cycles}
        got[background] = mem
    assert got[True] == got[False]


@pytest.mark.parametrize("values, n, cycles", [(1, 40, 54), (1, 39, 53), (2, 40, 35),
                                               (2, 39, 34)])
def test_rlc_dma_out_counted_by_hand(values, n, cycles):
    """``BIAS`` 5 (entry 0), ``SET dma_out``, a foreground RLC ``DMA_OUT`` of ``n`` psums
    of the zeroed GLB (``p`` = 1: ``n`` fives, a pair each, 3 to an RLC word), ``DONE``.
    The ``BIAS`` runs at 3, the ``SET`` at 4..6; the ``DMA_OUT``, next at 7, is taken at 8
    (every word asked for, 0..5, has come); one psum a cycle (`ArrayConfig.dma_out_values`
    = 1) it drains ``n + 5`` cycles (`tests/test_dma.py`), two ``ceil(n / 2) + 5``, and
    one more for 40, whose last transfer completes word 13 with pair 39 = 13 * 3 and
    starts word 14 with pair 40, sent a cycle later; the ``DONE`` (come at 6) runs the
    cycle it is idle: 8 + 45 + 1 = 54 cycles for 40 psums, 53 for 39; 8 + 26 + 1 = 35 and
    34 with two a cycle. The model agrees and the DRAM words are the canonical code."""
    from ommatidia.gen.rlc import encode
    from ommatidia.hw.dma import bias_write_layout
    cfg = dataclasses.replace(TINY, dma_out_values=values)
    out = _packer(register_shapes(cfg)["dma_out"])({"glb": 0, "dram": 3000, "n": n, "rlc": 1,
                                                    "stage": {"shift": 0, "relu": 0, "p": 1}})
    words = dict(enumerate([
        pack_command(Opcode.BIAS, _packer(bias_write_layout(cfg))({"index": 0, "value": 5})),
        pack_command(Opcode.SET, 2 << 8 | REGISTERS.index("dma_out")),
        out & (1 << 64) - 1, out >> 64, pack_command(Opcode.DMA_OUT), pack_command(Opcode.DONE)]))
    (status, counters, mem), = simulate_system(cfg, words, range(3000, 3020))
    assert status == STATUS_DONE and counters["cycles"] == cycles
    coded = encode([5] * n, cfg.rlc)
    assert counters["dram_words_written"] == len(coded) == -(-n // 3)
    assert [mem[3000 + k] for k in range(len(coded))] == coded
    assert predict_words(cfg, words).counters == counters


@pytest.mark.parametrize("again", [(True,), (False,), (False, True)])
def test_dma_out_after_a_background_dma_out(again):
    """A ``DMA_OUT`` right after a background one waits until it has drained (a foreground
    one stops the fetch as soon as it is next): no two drain at once (44 cycles each from
    taken to idle); the model's cycles equal the RTL's."""
    words = _dma_program(True, again=again)
    (status, counters, _), = simulate_system(TINY, words, [])
    assert status == STATUS_DONE
    assert counters["dram_words_written"] == 40 * (1 + len(again))
    assert predict_words(TINY, words).counters == counters
    assert counters["cycles"] > 44 * (1 + len(again))   # each drains 44 cycles, alone


def test_pass_waits_for_a_background_dma_out(seed):
    """A background ``DMA_OUT`` of 150 words, then the ``SET``\\ s, ``TAG``\\ s and first
    ``PASS`` of a compiled layer: the ``SET``\\ s and ``TAG``\\ s run while it drains,
    the ``PASS`` starts the cycle the `DMAOut` is idle, never beside it; the run is
    shorter than with the ``DMA_OUT`` in the foreground, and the model equals the RTL."""
    prog = random_program(seed, N=1, M=2)
    body = []
    for cmd in decode(TINY, prog.words):
        if cmd.op == "SET" and cmd.reg != "dma_in" or cmd.op in ("TAG", "PASS"):
            body += [prog.words[cmd.pc + k] for k in range(cmd.words)]
        if cmd.op == "PASS":
            break
    cycles = {}
    for background in (True, False):
        words = _dma_program(background, tail=body, n_out=150, n_in=0)
        trace = []

        def probe(dut):
            eng = dut._accel.engine
            return [eng.start, eng.busy, eng.dma_out_busy]
        (status, counters, _), = simulate_system(TINY, words, [], probe=probe, trace=trace)
        assert status == STATUS_DONE
        assert not any(busy and out for _, busy, out in trace)
        out = [c for c, (_, _, busy) in enumerate(trace) if busy]
        start = next(c for c, (go, _, _) in enumerate(trace) if go)
        print(f"background {background}: DMAOut busy until {out[-1]}, PASS at {start}")
        assert start == out[-1] + 1 if background else start > out[-1] + 1
        assert predict_words(TINY, words).counters == counters | \
            {k: predict_words(TINY, words).counters[k]
             for k in ("pe_stall_cycles", "noc_stall_cycles")}
        cycles[background] = counters["cycles"]
    assert cycles[True] < cycles[False]


def test_start_after_an_error_beside_a_background_dma_out():
    """An unknown opcode after a background ``DMA_OUT`` stops the controller with
    ``error`` while the ``DMA_OUT`` drains: the accelerator stays busy (no ``start``, the
    host keeps off the DRAM) until its last word is written (taken at 6, idle at 50:
    50 cycles), then a ``start`` runs the next program from a clean controller."""
    failing = {k: w for k, w in _dma_program(True).items() if k < 4} | {4: pack_command(0x5a)}
    good = _dma_program(True)
    (status, counters, _), (status2, counters2, _) = simulate_system(
        TINY, [failing, good], [])
    assert status == STATUS_ERROR
    assert counters["cycles"] == 50 and counters["dram_words_written"] == 40
    assert status2 == STATUS_DONE and counters2 == predict_words(TINY, good).counters
    assert counters2["cycles"] == 51


def test_dma_out_beside_the_next_rounds_dma_in_with_dram_stalls(seed):
    """A layer of several rounds: each round's ``DMA_OUT``\\ s drain beside the next
    round's first ``DMA_IN``\\ s (cycles with both busy); the ofmap is the golden one and
    the model's cycles and counters equal the RTL's. With 40 % DRAM stalls (writes
    refused while the ``DMA_IN`` reads, reads withheld) the same ofmap and counters but
    the cycles."""
    prog = random_program(seed, N=1, C=2, M=4, H=10, W=5)
    assert len(prog.rounds) > 1
    counters, mem, beside = run_layer_golden(
        TINY, prog, both=lambda eng: (eng.dma_busy, eng.dma_out_busy))
    print(f"{len(prog.rounds)} rounds, {counters['cycles']} cycles, {beside} with DMA_IN "
          f"and DMA_OUT busy")
    assert beside > 0
    _model_and_slow_dram(prog, counters, mem, seed)


BANKS = dataclasses.replace(TINY, name="tiny_banks", glb_bank_reads=True)
"""`tiny` with a GLB read port per bank (4 banks of 256 words)."""


def _without_bit_1(words: dict, cfg=BANKS) -> dict:
    """``words`` with bit 1 of every ``DMA_OUT`` cleared (each ``PASS`` waits for it)."""
    out = dict(words)
    for cmd in decode(cfg, words):
        if cmd.op == "DMA_OUT":
            out[cmd.pc] = words[cmd.pc] & ~2
    return out


def test_dma_out_beside_a_pass_on_other_banks(seed):
    """A ``DMA_OUT`` with bit 1 lets the next ``PASS`` start while it drains (cycles with a
    pass and the `DMAOut` busy); the compiler sets it where the pass reads no bank it
    reads and writes none of its words: the ofmap is the golden one, the model's cycles
    and counters equal the RTL's, and the model counts fewer cycles than with every
    ``PASS`` waiting (the same DRAM words). With 40 % DRAM stalls the same ofmap and
    counters but the cycles; and though the DRAM is read and written in the same cycles
    (the ``DMA_OUT``\\ s beside the next passes, ``DMA_IN``\\ s and the fetch), never the
    same word: the iCEBreaker's build lets a DRAM read of the word written in the same
    cycle be undefined (`ommatidia.boards.icebreaker`)."""
    prog = beside_program(BANKS, seed)
    assert [c.value for c in decode(BANKS, prog.words) if c.op == "DMA_OUT"].count(3) == 3
    counters, mem, beside = run_layer_golden(BANKS, prog,
                                             both=lambda eng: (eng.busy, eng.dma_out_busy))
    assert predict(prog).counters == counters
    waited = predict_words(BANKS, _without_bit_1(prog.words)).counters
    print(f"{counters['cycles']} cycles, {beside} with a pass and the DMAOut busy; "
          f"{waited['cycles']} with every PASS waiting")
    assert beside > 0
    assert waited["cycles"] > counters["cycles"]
    assert waited | {"cycles": 0} == counters | {"cycles": 0}

    def dram_ports(dut):
        a = dut._accel
        return [a.dram_addr.valid & a.dram_addr.ready, a.dram_addr.payload,
                a.dram_w.valid & a.dram_w.ready, a.dram_w.payload.addr]
    trace = []
    assert_same_under_dram_stalls(BANKS, prog, counters, mem, seed, probe=dram_ports,
                                  trace=trace)
    both = [(r, w) for read, r, write, w in trace if read and write]
    print(f"{len(trace)} busy cycles, {len(both)} reading and writing the DRAM")
    assert both and all(r != w for r, w in both)


def test_last_region_at_the_glb_end_drains_beside_the_next_rounds_pass(seed):
    """Where the loads fit only packed, the last filter group's psum region sits at the
    GLB's end, above every load; its ``DMA_OUT`` has bit 1 and drains beside the next
    round's first pass (cycles with a pass and the `DMAOut` busy): the ofmap is the
    golden one and the model's cycles and counters equal the RTL's, with 40 % DRAM
    stalls the same ofmap and counters but the cycles."""
    from ommatidia.hw.glb import glb_words
    prog = split_program(BANKS, seed)
    for rnd in prog.rounds:
        high = rnd.psums[0 if rnd is prog.rounds[0] else 1, 8]
        assert all(base < high for load in rnd.loads
                   for base in [*load.ifmaps.values(), *load.filters.values()])
        assert high + 192 == glb_words(BANKS)
    cmds = decode(BANKS, prog.words)
    first = [i for i, c in enumerate(cmds) if c.op == "PASS"][3]     # round 1's first
    assert [c.value for c in cmds[:first] if c.op == "DMA_OUT"][-1] == 3
    counters, mem, beside = run_layer_golden(BANKS, prog,
                                             both=lambda eng: (eng.busy, eng.dma_out_busy))
    print(f"{counters['cycles']} cycles, {beside} with a pass and the DMAOut busy")
    assert beside > 0
    assert predict(prog).counters == counters
    assert_same_under_dram_stalls(BANKS, prog, counters, mem, seed)


def _pass_beside_dma_out(dut) -> list:
    """The engine's busy and its `DMAOut`'s busy: both high while a pass runs beside a
    draining ``DMA_OUT``."""
    return [dut._accel.engine.busy, dut._accel.engine.dma_out_busy]


@pytest.mark.parametrize("make,after", [(beside_program, 121), (split_program, 578)],
                         ids=["beside", "split"])
def test_reset_while_a_pass_runs_beside_a_dma_out(seed, make, after):
    """A reset of the `System` in the middle of a pass beside a draining ``DMA_OUT`` (on
    the ``after``-th of the 243 and 1156 cycles with both in a run of these layers), then
    ``start``: the layer runs again from a clean controller, with the golden ofmap and
    the cycles and counters of a run without the reset (the model's, which equal the
    RTL's: `test_dma_out_beside_a_pass_on_other_banks`)."""
    prog = make(BANKS, seed, N=1 if make is beside_program else 2)
    (status, again, mem), = simulate_system(BANKS, prog.words, region_addrs(prog),
                                            reset_when=(_pass_beside_dma_out, after))
    assert status == STATUS_DONE
    assert_golden_ofmap(prog, mem)
    assert again == predict(prog).counters


def test_model_refuses_a_pass_beside_a_dma_out_on_its_banks():
    """The model times a ``PASS`` beside a ``DMA_OUT`` only where they share no GLB bank
    and the pass writes none of its words: a ``DMA_OUT`` of GLB words 0.. with bit 1
    before a pass writing psums there raises ValueError; the same from GLB word 256 (bank
    1, which the pass leaves) is timed, the ``PASS`` starting while it drains, as on the
    RTL."""
    body = _first_pass_words(beside_program(BANKS, 1, N=1))
    for glb in (0, 256):
        shapes = register_shapes(BANKS)
        out = _packer(shapes["dma_out"])({"glb": glb, "dram": 3000, "n": 150, "rlc": 0,
                                          "stage": {"shift": 0, "relu": 0, "p": 1}})
        words = dict(enumerate([pack_command(Opcode.SET, 2 << 8 | REGISTERS.index("dma_out")),
                                out & (1 << 64) - 1, out >> 64, pack_command(Opcode.DMA_OUT, 3),
                                *body, pack_command(Opcode.DONE)]))
        if glb == 0:
            with pytest.raises(ValueError, match="PASS beside a DMA_OUT of GLB words 0..149"):
                predict_words(BANKS, words)
            continue
        trace = []
        (status, counters, _), = simulate_system(
            BANKS, words, [], trace=trace,
            probe=lambda dut: [dut._accel.engine.start, dut._accel.engine.dma_out_busy])
        assert status == STATUS_DONE
        assert any(go and busy for go, busy in trace), "the PASS waited for the DMA_OUT"
        assert predict_words(BANKS, words).counters == counters


def _first_pass_words(prog) -> list:
    """The ``SET``\\ s, ``TAG``\\ s and ``PASS`` of ``prog``'s first pass (no DMA)."""
    body = []
    for cmd in decode(prog.cfg, prog.words):
        if cmd.op == "SET" and cmd.reg not in ("dma_in", "dma_out") or cmd.op in ("TAG", "PASS"):
            body += [prog.words[cmd.pc + k] for k in range(cmd.words)]
        if cmd.op == "PASS":
            return body
    raise AssertionError("no PASS")


@pytest.mark.parametrize("values, q", [(4, 4), (4, 3), (2, 2)])
def test_ifmap_packets_of_a_column(values, q, seed):
    """Ifmap GIN packets of up to ``values`` activations of one column
    (`NoCConfig.ifmap_gin_values`; with ``q`` = 3 some columns split at GLB word
    boundaries): the golden ofmap, the model's cycles and every counter equal to the
    RTL's, and no more cycles than the same program with one value a packet."""
    cfg = dataclasses.replace(TINY, noc=dataclasses.replace(TINY.noc, ifmap_gin_values=values))
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=2 * q, M=3, H=5, W=8, R=3, S=3, U=1, P=1)
    x = random_values(rng, 8, (1, layer.C, 5, 8), 0.5)
    w = random_values(rng, 8, (3, layer.C, 3, 3))
    prog = compile_layer(cfg, layer, x, w, relu=True, shift=3, p=2, q=q)
    counters, _, _ = run_layer_golden(cfg, prog)
    assert predict(prog).counters == counters
    one = compile_layer(TINY, layer, x, w, relu=True, shift=3, mapping=prog.mapping)
    assert counters["cycles"] <= predict(one).cycles
