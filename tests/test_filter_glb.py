"""The filter GLB and the background ``DMA_IN`` (`hw/filter_glb.py`, `hw/top.py`) under the
Amaranth simulator: hand-counted cycles, error stops, compiled layers with DRAM stalls,
and the model (`gen/model`) equal to the RTL in cycles and every counter."""

import dataclasses

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY, ArrayConfig
from ommatidia.gen.layer import ConvLayer
from ommatidia.gen.mapper import Mapping
from ommatidia.gen.model import decode, predict, predict_words
from ommatidia.gen.program import _packer, pack_command
from ommatidia.hw.glb import glb_words
from ommatidia.hw.system import STATUS_DONE, STATUS_ERROR
from ommatidia.hw.top import REGISTERS, Opcode, register_shapes
from ommatidia.sim.array_model import random_values

from helpers import (assert_golden_ofmap, assert_same_under_dram_stalls, part_staged_program,
                     region_addrs, run_layer_golden, simulate_system)

FTINY = dataclasses.replace(TINY, name="tiny_fglb", filter_glb_bytes=4096)
"""`tiny` with a filter GLB of 512 words (two halves of 256)."""


def _layer(seed, cfg=FTINY, strips=((0, 4),), **overrides):
    """A layer of one filter group and one channel group a load (six loads by default),
    so each load's filters fit half the filter GLB."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(**{"N": 1, "C": 3, "M": 5, "H": 4, "W": 7, "R": 3, "S": 3, "U": 1,
                         "P": 1, **overrides})
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), rng.uniform(0, 0.9))
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.1)
    mapping = Mapping(p=2, q=2, strips=strips, segments=((0, layer.R),), stack=1, blocks=1,
                      n_chunk=1, m_chunk=1, c_chunk=1)
    return compile_layer(cfg, layer, x, w, bias=rng.integers(-3000, 3000, layer.M),
                         relu=True, shift=2, mapping=mapping)


def _dma_in(background, n, glb, dram=2000):
    """``SET dma_in`` (raw, ``n`` words from DRAM ``dram`` to GLB word ``glb``) and the
    ``DMA_IN``."""
    cmd = _packer(register_shapes(FTINY)["dma_in"])(
        {"dram": dram, "glb": glb, "words": n, "n": 0, "rlc": 0})
    return [pack_command(Opcode.SET, 2 << 8 | REGISTERS.index("dma_in")),
            cmd & (1 << 64) - 1, cmd >> 64, pack_command(Opcode.DMA_IN, int(background))]


def _first_pass(prog):
    """The ``SET``\\ s and ``TAG``\\ s of ``prog``'s first pass (no ``DMA_IN``)."""
    body = []
    for cmd in decode(prog.cfg, prog.words):
        if cmd.op == "PASS":
            return body
        if cmd.op == "SET" and cmd.reg != "dma_in" or cmd.op == "TAG":
            body += [prog.words[cmd.pc + k] for k in range(cmd.words)]
    raise AssertionError("no PASS")


def test_presets_without_a_filter_glb_keep_their_widths():
    """Only `eyeriss` has a filter GLB (8 KiB); its words follow the GLB's in the same
    14-bit word address; a size that is not two halves of whole words is refused."""
    from ommatidia.gen.config import PRESETS
    from ommatidia.hw.glb import filter_glb_words, word_addr_bits
    assert {n for n, c in PRESETS.items() if c.filter_glb_bytes} == {"eyeriss"}
    eye = PRESETS["eyeriss"]
    assert filter_glb_words(eye) == 1024 and word_addr_bits(eye) == 14
    assert word_addr_bits(TINY) == 10 and word_addr_bits(FTINY) == 11
    with pytest.raises(ValueError, match="filter_glb_bytes = 24 must be a multiple of 2"):
        ArrayConfig(filter_glb_bytes=24)


@pytest.mark.parametrize("n", [40, 400 // 2])
def test_pass_beside_a_background_dma_in_counted_by_hand(n):
    """A pass (its ``SET``\\ s and ``TAG``\\ s, ``PASS``) to fill the program FIFO, then
    ``SET dma_in``, a raw ``DMA_IN`` of ``n`` words into the filter GLB's other half and
    two ``PASS``\\ es. In the background the first ``PASS`` starts the cycle after the
    ``DMA_IN`` is taken, the first cycle the `DMAIn` is busy (it was started after the
    last ``PASS``); the second, started after it, waits until the `DMAIn` is idle: it
    starts the cycle after its last busy cycle (busy n + 2 cycles) when the ``DMA_IN`` outlasts
    the first pass. In the foreground the first ``PASS`` starts two cycles after the
    last busy one (the controller sees it idle, then runs). The model's cycles and
    counters equal the RTL's; the background run is shorter."""
    prog = _layer(1)
    body = _first_pass(prog)
    half = glb_words(FTINY) + 256
    cycles = {}
    for background in (True, False):
        words = dict(enumerate(body + [pack_command(Opcode.PASS)]
                               + _dma_in(background, n, half)
                               + [pack_command(Opcode.PASS)] * 2 + [pack_command(Opcode.DONE)]))
        words.update({2000 + k: k * 7 for k in range(n)})
        trace = []

        def probe(dut):
            eng = dut._accel.engine
            return [eng.start, eng.busy, eng.dma_busy]
        (status, counters, _), = simulate_system(FTINY, words, [], probe=probe, trace=trace)
        assert status == STATUS_DONE
        starts = [c for c, (go, _, _) in enumerate(trace) if go]
        dma = [c for c, (_, _, busy) in enumerate(trace) if busy]
        ends = [c for c in range(1, len(trace)) if trace[c - 1][1] and not trace[c][1]]
        print(f"background {background}: PASS at {starts}, DMAIn busy {dma[0]}..{dma[-1]}, "
              f"array idle at {ends}, {counters['cycles']} cycles")
        assert dma[-1] - dma[0] + 1 == n + 2
        if background:
            assert starts[1] == dma[0]
            assert starts[2] == max(dma[-1] + 1, ends[1] + 1)
        else:
            assert starts[1] == dma[-1] + 2
        assert predict_words(FTINY, words).counters == counters
        cycles[background] = counters["cycles"]
    assert cycles[True] < cycles[False]


def test_model_refuses_a_pass_beside_a_background_dma_in_into_the_glb():
    """A pass beside a background ``DMA_IN`` into the GLB (not the filter GLB) would share
    the GLB's write port with the GON receiver, which the model does not time: it raises;
    into the filter GLB it does not."""
    body = _first_pass(_layer(1))

    def words(glb, first=()):
        return dict(enumerate(body + list(first) + _dma_in(True, 50, glb)
                              + [pack_command(Opcode.PASS), pack_command(Opcode.DONE)]))
    with pytest.raises(ValueError, match="background DMA_IN into the GLB"):
        predict_words(FTINY, words(0))
    assert predict_words(FTINY, words(glb_words(FTINY))).passes == 1


def test_error_stop_beside_a_background_dma_in():
    """An unknown opcode after a background ``DMA_IN`` of 100 words stops the controller
    with ``error`` while the DMA runs: words 0..4 are asked for at 0..4 (the unknown one
    stops the fetch when it comes at 5), the ``DMA_IN`` is taken at 6 and its `DMAIn` is
    idle at 6 + 100 + 3 = 109: the accelerator stays busy until then (109 cycles, every
    word read); a ``start`` then runs the next program from a clean controller."""
    failing = dict(enumerate(_dma_in(True, 100, glb_words(FTINY)) + [pack_command(0x5a)]))
    failing.update({2000 + k: k for k in range(100)})
    good = dict(enumerate(_dma_in(True, 30, glb_words(FTINY)) + [pack_command(Opcode.DONE)]))
    (status, counters, _), (status2, counters2, _) = simulate_system(
        FTINY, [failing, good], [])
    assert status == STATUS_ERROR
    assert counters["cycles"] == 109 and counters["dram_words_read"] == 100
    assert status2 == STATUS_DONE and counters2 == predict_words(FTINY, good).counters


def test_layer_with_background_filter_loads_and_dram_stalls(seed):
    """Six loads, each one's filters loaded by a background ``DMA_IN`` during the passes
    of the one before (cycles with a pass and the DMA both busy): the ofmap is the golden
    one and the model's cycles and counters equal the RTL's; with 40 % DRAM stalls the
    same ofmap and counters but the cycles."""
    prog = _layer(seed)
    assert sum(1 for c in decode(FTINY, prog.words) if c.op == "DMA_IN" and c.value) == 5
    counters, mem, beside = run_layer_golden(FTINY, prog,
                                             both=lambda eng: (eng.busy, eng.dma_busy))
    print(f"{counters['cycles']} cycles, {beside} with a pass and the DMAIn busy")
    assert beside > 0
    assert predict(prog).counters == counters
    assert_same_under_dram_stalls(FTINY, prog, counters, mem, seed)


def _staged_golden(cfg, prog) -> dict:
    """Runs ``prog`` (five background DMA_INs) on the System; asserts the golden ofmap and
    returns the RTL's counters."""
    assert sum(1 for c in decode(cfg, prog.words) if c.op == "DMA_IN" and c.value) == 5
    return run_layer_golden(cfg, prog)[0]


def test_layer_with_a_read_port_per_glb_bank(seed):
    """With `ArrayConfig.glb_bank_reads` the filter GLB's read port is its own (the filter
    sender's reads of it granted as they come, beside the GLB banks' reads): six staged
    loads, the ofmap the golden one and the model's cycles and counters equal the RTL's."""
    cfg = dataclasses.replace(FTINY, name="tiny_fglb_banks", glb_bank_reads=True)
    prog = _layer(seed, cfg)
    counters = _staged_golden(cfg, prog)
    print(f"{counters['cycles']} cycles")
    assert predict(prog).counters == counters


def test_streaming_pes_beside_the_filter_glb(seed):
    """PEs computing while their filters load (`PEConfig.stream_filters`, as on
    `eyeriss`) from the filter GLB, a read port per bank: six staged loads, the ofmap the
    golden one and the model's cycles and counters equal the RTL's, in fewer cycles than
    PEs that wait for all their weights (a weight a packet, so the loads take long
    enough to overlap)."""
    cfg = dataclasses.replace(FTINY, name="tiny_fglb_stream", glb_bank_reads=True,
                              pe=dataclasses.replace(FTINY.pe, stream_filters=True))
    prog = _layer(seed, cfg)
    counters = _staged_golden(cfg, prog)
    assert predict(prog).counters == counters
    waiting = dataclasses.replace(cfg, pe=FTINY.pe)
    before = predict(_layer(seed, waiting)).counters["cycles"]
    print(f"{before} -> {counters['cycles']} cycles")
    assert counters["cycles"] < before


@pytest.mark.parametrize("bank_reads", [False, True], ids=["one_port", "banks"])
def test_layer_with_wide_filter_glb_words(seed, bank_reads):
    """16 weights a filter GIN packet (`NoCConfig.filter_gin_values`), twice a GLB word's
    8-bit weights: the filter GLB's words are two GLB words (`DMAIn` writing one of them
    at a time) and the filter sender reads one a request. Six staged loads, with one GLB
    read port or one per bank: the ofmap the golden one, the model's cycles and counters
    equal the RTL's, and fewer GLB reads than with 8 weights a packet."""
    cfg = dataclasses.replace(FTINY, name="tiny_fglb_wide", glb_bank_reads=bank_reads,
                              noc=dataclasses.replace(FTINY.noc, filter_gin_values=16))
    prog = _layer(seed, cfg)
    counters = _staged_golden(cfg, prog)
    assert predict(prog).counters == counters
    narrow = dataclasses.replace(cfg, noc=dataclasses.replace(cfg.noc, filter_gin_values=8))
    before = predict(_layer(seed, narrow)).counters["glb_reads"]
    print(f"{counters['cycles']} cycles, GLB reads {before} -> {counters['glb_reads']}")
    assert counters["glb_reads"] < before


def test_filters_kept_from_one_load_to_the_next(seed):
    """Two strips of one filter group and one channel group: the second load's pass needs
    the first's filters, still in the filter GLB, and loads none; a layer whose pass
    filters do not fit half the filter GLB keeps them in the GLB as without one. Both
    bit-exact, the model equal to the RTL."""
    small = dataclasses.replace(TINY, name="tiny_fglb_small", filter_glb_bytes=64)
    for cfg, strips, staged in ((FTINY, ((0, 2), (2, 2)), True), (small, ((0, 4),), False)):
        prog = _layer(seed, cfg, strips, M=2, C=2)
        loads = [ld for r in prog.rounds for ld in r.loads]
        assert [ld.staged for ld in loads] == [staged] * len(loads)
        assert [bool(ps.loads) for ld in loads for ps in ld.passes] == \
            ([True, False] if staged else [False])
        dma_ins = sum(1 for c in decode(cfg, prog.words) if c.op == "DMA_IN")
        assert dma_ins == (3 if staged else 2)  # the filters once, the ifmap per strip
        (status, counters, mem), = simulate_system(cfg, prog.words, region_addrs(prog))
        assert status == STATUS_DONE
        assert_golden_ofmap(prog, mem)
        assert predict(prog).counters == counters
        print(f"{cfg.name}: {counters['cycles']} cycles, {dma_ins} DMA_INs")


def test_two_images_and_two_strips_staged(seed):
    """Two images a round (the second image's passes load no filters), two filter groups
    and two channel groups a load, two strips: every pass that loads filters but the
    first gets them from a background ``DMA_IN`` before the pass before it; bit-exact
    with DRAM stalls, the model equal to the RTL without."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=2, C=3, M=5, H=5, W=7, R=3, S=3, U=1, P=1)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.4)
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S), 0.1)
    mapping = Mapping(p=2, q=2, strips=((0, 3), (3, 2)), segments=((0, 3),), stack=1,
                      blocks=1, n_chunk=2, m_chunk=2, c_chunk=2)
    prog = compile_layer(FTINY, layer, x, w, mapping=mapping)
    loading = [ps for r in prog.rounds for ld in r.loads for ps in ld.passes if ps.loads]
    background = [c for c in decode(FTINY, prog.words) if c.op == "DMA_IN" and c.value]
    assert len(background) == len(loading) - 1 > 0
    assert predict(prog).counters == stalled_and_steady(FTINY, prog, seed)


def stalled_and_steady(cfg, prog, seed):
    """``prog`` on ``cfg``'s `System` (Amaranth simulator) bit-exact with the DRAM port
    stalled a quarter of the cycles; returns the counters of a run without stalls."""
    (status, _, mem), = simulate_system(cfg, prog.words, region_addrs(prog),
                                        stall_rate=64, stall_seed=seed % 65521 + 1)
    assert status == STATUS_DONE
    assert_golden_ofmap(prog, mem)
    (status, counters, _), = simulate_system(cfg, prog.words, region_addrs(prog))
    assert status == STATUS_DONE
    return counters


@pytest.mark.verilog
def test_background_bit_ignored_on_the_axi_top(seed, tmp_path):
    """The AXI top (`overlap=False`) runs the background ``DMA_IN``\\ s of a layer with a
    filter GLB in the foreground, as the model does on its DRAM timing: the ofmap
    bit-exact, the model's cycles and counters equal to the Verilog's."""
    from ommatidia.sim.axi_run import AxiJob, axi_timing, run_axi_layers
    prog = _layer(seed)
    job = AxiJob(prog, dram_base=0x2000, seed=seed % 1000 + 1)
    run, = run_axi_layers(FTINY, [job], data_width=64, max_burst=256, build_dir=tmp_path)
    assert run.bit_exact
    pred = predict(prog, dram=axi_timing(job, data_width=64, max_burst=256))
    print(f"AXI: RTL {run.counters['cycles']} cycles, model {pred.cycles}")
    assert pred.counters == {k: run.counters[k] for k in pred.counters}


@pytest.mark.parametrize("eyeriss_like", [False, True], ids=["one_port", "banks_stream"])
def test_pass_filters_staged_in_part(seed, eyeriss_like):
    """Two filter groups side by side (as AlexNet CONV1 on `eyeriss`) whose two regions
    of a pass do not fit half the filter GLB (5 + 5 words of 8): each pass stages the
    first region through the filter GLB, in the background during the pass before, and
    reads the other from the GLB, loaded in the foreground (the short channel group's 3 + 3
    words stage whole; `helpers.part_staged_program`). Bit-exact with DRAM stalls, the
    model equal to the RTL, with one GLB read port and with one per bank and streaming
    PEs."""
    cfg = dataclasses.replace(TINY, name="tiny_fglb_part", filter_glb_bytes=128)
    if eyeriss_like:
        cfg = dataclasses.replace(cfg, name="tiny_fglb_part_banks", glb_bank_reads=True,
                                  pe=dataclasses.replace(cfg.pe, stream_filters=True))
    prog = part_staged_program(cfg, seed)
    fglb = glb_words(cfg)
    loads = [ld for r in prog.rounds for ld in r.loads]
    assert [ld.staged for ld in loads] == [True] * 4
    assert [sorted(a >= fglb for a in ld.filters.values()) for ld in loads] == \
        [[False, True], [True, True]] * 2
    background = [c for c in decode(cfg, prog.words) if c.op == "DMA_IN" and c.value]
    assert len(background) == 3
    counters = stalled_and_steady(cfg, prog, seed)
    print(f"{counters['cycles']} cycles")
    assert predict(prog).counters == counters


def test_mapper_counts_the_part_staged_filters():
    """The mapper's GLB need of a round (`mapper._glb_need`) is the GLB words the compiler
    lays the round out in, with the part-staged filters of `helpers.part_staged_program`
    (42: one 5-word region of a pass in the GLB) and without a filter GLB (47: both), and
    its quick formula charges fewer cycles with the filter GLB."""
    from ommatidia.gen.mapper import _glb_need, estimate
    cfg = dataclasses.replace(TINY, name="tiny_fglb_part", filter_glb_bytes=128)
    need, est = {}, {}
    for c in (cfg, TINY):
        prog = part_staged_program(c, 1)
        need[c.name] = _glb_need(c, prog.layer, prog.mapping)
        assert need[c.name] == max(r.glb_words for r in prog.rounds)
        est[c.name] = estimate(c, prog.layer, prog.mapping)[0]
    print(need, est)
    assert need == {"tiny_fglb_part": 42, "tiny": 47}
    assert est["tiny_fglb_part"] < est["tiny"]
