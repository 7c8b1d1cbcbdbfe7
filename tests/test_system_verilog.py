"""Whole CONV layers on the generated Verilog of the accelerator (`System`) under Verilator.

Each layer is compiled to a program and DRAM image (`gen.program`), run inside
the simulator with no Python in the per-cycle loop (`sim.tb.tb_system`), and
its ofmap, read back from the simulated DRAM, compared bit-exact with
`golden.conv2d`. Layers are random: any C, M, N, stride up to 4 and padding up
to 2, ``R`` up to twice the array's rows and ``E`` up to three times its columns
(so the mapper folds and replicate), ifmap sparsity 0 to 90 %, some with extreme
values so that psums wrap, a random output stage, and random DRAM stalls;
one layer is reset mid-run and rerun.
"""

import pathlib
import re

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import SMALL, TINY
from ommatidia.gen.layer import ConvLayer, fc_layer
from ommatidia.sim.accelerator import run_layers
from ommatidia.sim.array_model import layer_gated_macs, random_values
from ommatidia.sim.golden import conv2d_psums


def random_layer(rng, cfg) -> ConvLayer:
    """A layer whose padded width fits a PE, its ``R x E`` PE set up to twice as tall and
    three times as wide as the array."""
    while True:
        R, S = int(rng.integers(1, 2 * cfg.rows + 2)), int(rng.integers(1, 5))
        U, P = int(rng.integers(1, 5)), int(rng.integers(0, 3))
        h_lo, h_hi = max(1, R - 2 * P), R - 2 * P + U * (3 * cfg.cols - 1)
        w_lo, w_hi = max(1, S - 2 * P), min(cfg.pe.max_ifmap_width - 2 * P, 16)
        if h_hi < h_lo or w_hi < w_lo:
            continue
        H, W = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        layer = ConvLayer(N=int(rng.integers(1, 3)), C=int(rng.integers(1, 7)),
                          M=int(rng.integers(1, 10)), H=H, W=W, R=R, S=S, U=U, P=P)
        return layer


def random_program(rng, cfg, extreme=False):
    layer = random_layer(rng, cfg)
    pe = cfg.pe
    x = random_values(rng, pe.act_bits, (layer.N, layer.C, layer.H, layer.W),
                      float(rng.uniform(0, 0.9)), extreme)
    w = random_values(rng, pe.weight_bits, (layer.M, layer.C, layer.R, layer.S), 0.0, extreme)
    bias = rng.integers(-(1 << 12), 1 << 12, layer.M) if rng.integers(2) else None
    return compile_layer(cfg, layer, x, w, bias=bias, relu=bool(rng.integers(2)),
                         shift=int(rng.integers(0, 12 if extreme else 5)))


def check(runs, progs):
    for k, (run, prog) in enumerate(zip(runs, progs)):
        rep = run.report
        d = prog.mapping.describe(prog.layer)
        print(f"layer {k}: {prog.layer} strips {d['strips']} segments {d['segments']} "
              f"x{d['replication']['channels']}/x{d['replication']['filters']} p={d['p']} "
              f"q={d['q']} "
              f"cycles {rep['cycles']} utilization {rep['pe_utilization']:.1%} "
              f"gated {rep['gated_fraction']:.1%} rlc {rep['rlc_ratio']:.2f}")
        assert run.status == 2, f"layer {k} {prog.layer}: status {run.status}"
        assert run.bit_exact, f"layer {k} {prog.layer}: ofmap differs from the golden model"
        assert rep["macs"] == prog.layer.macs
        assert rep["gated_macs"] == layer_gated_macs(prog.layer, prog.ifmap)


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_random_layers_tiny(seed, system_build):
    """24 random layers on `tiny` in one Verilator build, four with extreme values (psums
    wrap), two FC layers, 25 % DRAM stalls on all; then a layer of five passes reset after
    1500 cycles (in its passes) and rerun from a fresh load."""
    rng = np.random.default_rng(seed)
    progs = [random_program(rng, TINY, extreme=k < 4) for k in range(24)]
    layer = ConvLayer(N=1, C=6, M=9, H=4, W=12, R=3, S=3, U=1, P=1)
    for fc in (fc_layer(2, 5, 7, 3, 3), fc_layer(1, 20, 9)):
        progs.append(compile_layer(TINY, fc, random_values(rng, 8, (fc.N, fc.C, fc.H, fc.W), 0.4),
                                   random_values(rng, 8, (fc.M, fc.C, fc.R, fc.S)),
                                   bias=rng.integers(-999, 999, fc.M), relu=True, shift=3))
    progs.append(compile_layer(TINY, layer, random_values(rng, 8, (1, 6, 4, 12), 0.3),
                               random_values(rng, 8, (9, 6, 3, 3)), relu=True, shift=5))
    wraps = 0
    for prog in progs[:4]:
        s, layer = prog, prog.layer
        exact = conv2d_psums(s.ifmap, s.weights, stride=layer.U, padding=layer.P, psum_bits=64)
        wraps += int(np.any(exact != conv2d_psums(s.ifmap, s.weights, stride=layer.U,
                                                  padding=layer.P, psum_bits=24)))
    reset_after = [None] * len(progs)
    reset_after[-1] = 1500
    runs = run_layers(TINY, progs, build_dir=system_build, stall_rate=64, stall_seed=seed & 0xffff
                      or 1, reset_after=reset_after)
    check(runs, progs)
    assert runs[-1].interrupted == {"cycles": 1500, "status": 1}, runs[-1].interrupted
    assert runs[-1].report["cycles"] > 1500
    print(f"{wraps} of the 4 extreme layers wrap their psums")


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_stalls_do_not_change_results(seed, system_build):
    """The same layer with no stalls and with 60 % stalls: identical ofmaps and MAC counts,
    more cycles with stalls. The progress lines of the first run reach ``watch`` as the
    simulator writes them, then the finished job with its cycles."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=4, M=6, H=4, W=10, R=3, S=3, U=1, P=1)
    x = random_values(rng, 8, (1, 4, 4, 10), 0.5)
    w = random_values(rng, 8, (6, 4, 3, 3))
    prog = compile_layer(TINY, layer, x, w, relu=True, shift=3)
    seen = []
    calm, = run_layers(TINY, [prog], build_dir=system_build, stall_rate=0, progress=500,
                       watch=lambda jobs, cycles: seen.append((jobs, cycles)))
    log = (pathlib.Path(system_build) / "system_tiny_verilator" / "test.log").read_text()
    reported = [int(n.replace(",", ""))
                for n in re.findall(r"([\d,]+) cycles, [\d,]+ cycles/s", log)]
    assert len(reported) >= calm.report["cycles"] // 500 - 1, (reported, calm.report["cycles"])
    assert all(500 * (k + 1) <= n < 500 * (k + 1) + 256 for k, n in enumerate(reported))
    assert seen == [(0, n) for n in reported] + [(1, calm.report["cycles"])], seen
    busy, = run_layers(TINY, [prog], build_dir=system_build, stall_rate=154, stall_seed=seed % 65521
                       + 1)
    check([calm, busy], [prog, prog])
    assert np.array_equal(calm.ofmap, busy.ofmap)
    assert busy.report["cycles"] > calm.report["cycles"]
    print(f"cycles without stalls {calm.report['cycles']}, with 60 % stalls "
          f"{busy.report['cycles']}")


@pytest.mark.verilog
@pytest.mark.xdist_group("system_small")
def test_random_layers_small(seed, small_system_build):
    """A few random layers on the mid-size `small` preset (6x7 PEs)."""
    rng = np.random.default_rng(seed)
    progs = [random_program(rng, SMALL, extreme=k == 0) for k in range(4)]
    runs = run_layers(SMALL, progs, build_dir=small_system_build, stall_rate=32,
                      stall_seed=seed & 0xffff or 1)
    check(runs, progs)


@pytest.mark.verilog
@pytest.mark.xdist_group("system_tiny")
def test_bulk_load_equals_the_host_port(seed, system_build):
    """Two layers of the same shape and other data, one simulation each way: loaded by the
    harness's ``$readmemh`` and dumped by its ``$writememh`` (``host="bulk"``, the default),
    or a word a cycle through the `System`'s host port. The DRAM holds the image either
    way (read back both ways after the load), and the runs give the same cycles,
    counters and bit-exact ofmaps."""
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=3, M=5, H=4, W=9, R=3, S=3, U=1, P=1)
    progs = [compile_layer(TINY, layer, random_values(rng, 8, (1, 3, 4, 9), 0.4),
                           random_values(rng, 8, (5, 3, 3, 3)), relu=True, shift=4)
             for _ in range(2)]
    assert progs[0].words != progs[1].words
    runs = {host: run_layers(TINY, progs, build_dir=system_build, host=host, verify_load=True)
            for host in ("bulk", "port")}
    for host, host_runs in runs.items():
        check(host_runs, progs)
        for prog, run in zip(progs, host_runs):
            image = [w for _, w in sorted(prog.words.items())]
            assert run.loaded == {"port": image, "bulk": image}, host
    for bulk, port in zip(*runs.values()):
        assert bulk.counters == port.counters
        assert np.array_equal(bulk.ofmap, port.ofmap)
    print(f"cycles {[run.counters['cycles'] for run in runs['bulk']]}, image "
          f"{[len(p.words) for p in progs]} words")


def test_bad_host_is_refused():
    with pytest.raises(ValueError, match="host must be one of bulk, port"):
        run_layers(TINY, [], host="vpi")


@pytest.mark.verilog
def test_hierarchical_pe_build(seed, tmp_path, monkeypatch):
    """The build of a large array (`OPTIMIZE_PES`: Verilator's ``-O3``, the PE a
    hierarchical block, `OPTIMIZE_BLOCKS`), made for `tiny` by lowering the threshold:
    three random layers bit-exact, their cycles and every counter the model's, and the
    PE verilated apart (its block's own model library)."""
    monkeypatch.setattr("ommatidia.sim.accelerator.OPTIMIZE_PES", 1)
    rng = np.random.default_rng(seed)
    progs = [random_program(rng, TINY) for _ in range(3)]
    runs = run_layers(TINY, progs, build_dir=tmp_path)
    check(runs, progs)
    assert all(run.report["model_exact"] for run in runs), \
        [(run.report["cycles"], run.report["model_cycles"]) for run in runs]
    assert list(tmp_path.glob("system_*/Vsystem_hb_PE/*.a")), "the PE is not a block"
