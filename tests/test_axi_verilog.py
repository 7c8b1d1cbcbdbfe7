"""The AXI top (`ommatidia.hw.axi.AXIAccelerator`) on Verilator under cocotbext-axi.

``AxiRam`` is the DRAM, ``AxiLiteMaster`` the host, the host driver
(`ommatidia.host.driver`) runs whole layers of the `tiny` preset and their
ofmaps must equal the golden model's bit for bit: with an idle bus, with
pauses on every AXI channel and a random read latency, and with the image
placed so that a DMA read would cross a 4 KiB boundary (the master must split
it; ``AxiRam`` also asserts that no burst crosses one). The bursts and beats
the bus monitor saw must equal the master's counters, and the words they carry
the accelerator's DRAM counters. The analytical model, given the AXI top's DRAM
timing (`ommatidia.sim.axi_run.axi_timing`), predicts the cycles of every run
without pauses exactly; with pauses the test prints how far off it is.
"""

import dataclasses

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import TINY
from ommatidia.gen.layer import ConvLayer, fc_layer
from ommatidia.gen.model import predict
from ommatidia.hw import axi_regs as regs
from ommatidia.hw.top import FETCH_BLOCK
from ommatidia.sim.array_model import layer_gated_macs, random_values
from ommatidia.sim.axi_run import AxiJob, axi_timing, run_axi_layers

PAGE = 4096


def _layer(rng, layer, zeros=0.4, cfg=TINY):
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), zeros)
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S))
    bias = rng.integers(-500, 500, layer.M)
    return compile_layer(cfg, layer, x, w, bias=bias, relu=True, shift=3)


def _straddling_base(prog, beat_bytes):
    """A DRAM base that puts a 4 KiB boundary three quarters into the largest input region,
    on a beat boundary, so its read is split into a long and a short burst."""
    region = max(prog.inputs.values(), key=lambda r: r["words"])
    wb = TINY.dram_bits // 8
    inside = (region["dram"] + 3 * region["words"] // 4) * wb
    inside -= inside % beat_bytes
    return 2 * PAGE - inside


def _check(run, job, data_width, max_burst):
    prog, c = job.prog, run.counters
    assert run.status & regs.STATUS_DONE and not run.status & ~regs.STATUS_DONE, run.status
    assert run.bit_exact, f"{prog.layer}: the ofmap differs from the golden model"
    assert run.irq == 1
    assert c["macs"] == prog.layer.macs
    assert c["gated_macs"] == layer_gated_macs(prog.layer, prog.ifmap)
    # The fetch reads the DONE's block of 16 words whole (docs/program.md, "The fetch").
    assert prog.program_words <= c["program_words"] < prog.program_words + FETCH_BLOCK
    beat_bytes = data_width // 8
    for kind, bursts in (("read", run.ar), ("write", run.aw)):
        for addr, beats in bursts:
            assert addr % beat_bytes == 0, (kind, addr)
            assert 1 <= beats <= max_burst
            assert addr // PAGE == (addr + beats * beat_bytes - 1) // PAGE, \
                f"a {kind} burst of {beats} beats at 0x{addr:x} crosses a 4 KiB boundary"
    assert c["axi_read_bursts"] == len(run.ar) and c["axi_write_bursts"] == len(run.aw)
    assert c["axi_read_beats"] == run.r_beats == sum(b for _, b in run.ar)
    assert c["axi_write_beats"] == run.w_beats == sum(b for _, b in run.aw)
    words_read = c["dram_words_read"] + c["program_words"]
    lanes = data_width // TINY.dram_bits
    if lanes == 1:
        assert run.r_beats == words_read and run.w_beats == c["dram_words_written"]
    else:
        assert words_read / lanes <= run.r_beats <= words_read
        assert c["dram_words_written"] / lanes <= run.w_beats <= c["dram_words_written"]
    # The program comes in blocks of up to 16 words, a burst each (more where one
    # crosses a page or max_burst).
    assert len(run.ar) < prog.program_words


def _random_layer(rng, cfg=TINY):
    """A random small CONV layer that compiles on `tiny` (or ``cfg``, a copy of it)."""
    while True:
        r = int(rng.integers(1, 4))
        layer = ConvLayer(N=int(rng.integers(1, 3)), C=int(rng.integers(1, 5)),
                          M=int(rng.integers(1, 7)), H=int(rng.integers(r, 9)),
                          W=int(rng.integers(r, 14)), R=r, S=r, U=1, P=int(rng.integers(0, 2)))
        try:
            return _layer(rng, layer, zeros=float(rng.random()), cfg=cfg)
        except ValueError:
            continue


@pytest.mark.verilog
@pytest.mark.parametrize("data_width, max_burst", [(64, 256), (128, 4)])
def test_layers_on_axi(seed, build_dir, data_width, max_burst):
    """Layers bit-exact on an idle bus, with 30 % pauses on every channel and 8-16 cycles of
    read latency, with a read split at a 4 KiB boundary under 32 cycles of latency
    (two bursts outstanding), and a random layer at a random DRAM base under a random
    fixed latency; the same layer gives the same ofmap and MACs either way. The
    128-bit build caps bursts at 4 beats, so every DMA transfer is split by length too.
    The model's cycles equal the RTL's on the runs without pauses; the runs with pauses
    print the difference (the model taking the mean read latency)."""
    rng = np.random.default_rng(seed)
    conv = _layer(rng, ConvLayer(N=1, C=3, M=5, H=4, W=10, R=3, S=3, U=1, P=1))
    fc = _layer(rng, fc_layer(1, 12, 6, 2, 2), zeros=0.2)
    beat_bytes = data_width // 8
    base = _straddling_base(conv, beat_bytes)
    jobs = [AxiJob(conv, dram_base=0x2000, seed=seed % 1000 + 1),
            AxiJob(conv, dram_base=0x3000, pause=0.3, latency=16, seed=seed % 1000 + 2),
            AxiJob(conv, dram_base=base, latency=32, fixed_latency=True, seed=seed % 1000 + 3)]
    if data_width == 64:
        jobs.append(AxiJob(fc, dram_base=0x5008, pause=0.2, latency=8, seed=seed % 1000 + 4))
    jobs.append(AxiJob(_random_layer(rng), dram_base=int(rng.integers(0x1000, 0x9000)) * 8,
                       latency=int(rng.integers(0, 41)), fixed_latency=True,
                       seed=seed % 1000 + 5))
    runs = run_axi_layers(TINY, jobs, data_width=data_width, max_burst=max_burst,
                          build_dir=build_dir)
    state = None
    for k, (run, job) in enumerate(zip(runs, jobs)):
        print(f"job {k}: {job.prog.layer} base 0x{job.dram_base:x} pause {job.pause} latency "
              f"{job.latency}: {run.counters['cycles']} cycles, {len(run.ar)} read bursts "
              f"({run.r_beats} beats), {len(run.aw)} write bursts ({run.w_beats} beats), "
              f"{run.max_reads} reads outstanding at most, "
              f"{run.counters['axi_read_wait_cycles']} cycles waiting for read data")
        _check(run, job, data_width, max_burst)
        # The arbiters' state carries over from the run before (gen/model/__init__.py).
        pred = predict(job.prog, state=state,
                       dram=axi_timing(job, data_width=data_width, max_burst=max_burst))
        model, state = pred.cycles, pred.state
        rtl = run.counters["cycles"]
        print(f"  model {model} cycles, RTL - model {rtl - model:+d} "
              f"({(rtl - model) / model:+.1%})")
        if not job.pause and (job.fixed_latency or not job.latency):
            assert rtl == model, f"job {k}: the RTL took {rtl} cycles, the model says {model}"
            assert pred.counters["program_words"] == run.counters["program_words"]
    calm, busy, split = runs[:3]
    assert np.array_equal(calm.ofmap, busy.ofmap)
    assert busy.counters["cycles"] > calm.counters["cycles"]
    boundary = 2 * PAGE
    at = [k for k, (a, _) in enumerate(split.ar) if a == boundary]
    assert at and at[0] > 0, f"no read burst starts at the boundary 0x{boundary:x}: {split.ar}"
    before, beats = split.ar[at[0] - 1]
    assert before + beats * beat_bytes == boundary, \
        f"the burst before the boundary ends at 0x{before + beats * beat_bytes:x}"
    assert split.max_reads >= 2
    if max_burst < 256:
        assert any(beats == max_burst for _, beats in calm.ar), "no burst was cut by length"


@pytest.mark.verilog
def test_layers_on_axi_two_psums_a_dma_out_cycle(seed, build_dir):
    """`tiny` with a ``DMA_OUT`` of two psums a cycle (`ArrayConfig.dma_out_values`, as on
    `eyeriss`), on the 64-bit AXI top: a layer on an idle bus and with a read split at a
    4 KiB boundary under 32 cycles of latency, and a random layer under a random fixed
    latency, bit-exact; the model, writing the RLC words as the encoder sends them
    (`Machine._write_times`), gives the RTL's cycles."""
    cfg = dataclasses.replace(TINY, name="tiny_dma_out2", dma_out_values=2)
    rng = np.random.default_rng(seed)
    conv = _layer(rng, ConvLayer(N=1, C=3, M=5, H=4, W=10, R=3, S=3, U=1, P=1), cfg=cfg)
    jobs = [AxiJob(conv, dram_base=0x2000, seed=seed % 1000 + 1),
            AxiJob(conv, dram_base=_straddling_base(conv, 8), latency=32, fixed_latency=True,
                   seed=seed % 1000 + 3),
            AxiJob(_random_layer(rng, cfg), dram_base=int(rng.integers(0x1000, 0x9000)) * 8,
                   latency=int(rng.integers(0, 41)), fixed_latency=True, seed=seed % 1000 + 5)]
    runs = run_axi_layers(cfg, jobs, data_width=64, max_burst=256, build_dir=build_dir)
    state = None
    for k, (run, job) in enumerate(zip(runs, jobs)):
        _check(run, job, 64, 256)
        pred = predict(job.prog, state=state, dram=axi_timing(job, data_width=64, max_burst=256))
        state = pred.state
        print(f"job {k}: {job.prog.layer}: RTL {run.counters['cycles']}, model {pred.cycles}")
        assert run.counters["cycles"] == pred.cycles, f"job {k}"
