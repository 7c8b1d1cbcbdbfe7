"""`make bench`'s layers in several processes (`ommatidia.nn.bench.run_bench` ``jobs``),
each on its own build folder; a stand-in for `bench_layer`, as the real one simulates the
12x14 array for minutes (`make bench`)."""

import json
import os
import pathlib
import time

from ommatidia.nn.bench import run_bench, worker_build

BARRIER = "OMMATIDIA_TEST_BENCH_BARRIER"


def stand_in(name, layer, seed, sim, build_dir, log, quiet):
    """A row of `run_bench`'s table for ``layer``, saying which process and build folder
    made it; each process's first layer waits until two processes have one."""
    barrier = pathlib.Path(os.environ[BARRIER])
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < 2:
        assert time.monotonic() < deadline, "the second bench process never started"
        time.sleep(0.05)
    return {"layer": name, "macs": layer.macs, "active_pes": 1, "cycles": 2, "model_cycles": 2,
            "model_error": 0.0, "pe_utilization": 0.5, "gated_fraction": 0.0,
            "dram_words_per_mac": 0.0, "dram_values_per_mac": 0.0, "bit_exact": True,
            "sim_wall_s": 0.0, "build": str(worker_build(build_dir)), "pid": os.getpid(),
            "quiet": quiet, "seed": seed, "sim": sim}


def test_bench_layers_run_in_two_processes_each_on_its_own_build(tmp_path, monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv(BARRIER, str(barrier))
    names = ["CONV1", "CONV2", "FC8", "CONV3"]
    lines = []
    rows = run_bench(names, build_dir=tmp_path / "build", out=tmp_path / "out", jobs=2,
                     bench=stand_in, log=lambda *a, **k: lines.append(a[0]))
    assert [r["layer"] for r in rows] == names
    assert [r["macs"] for r in rows] == [105415200, 223948800, 4096 * (1000 // 16), 149520384]
    pids = {r["pid"] for r in rows}
    assert len(pids) == 2 and os.getpid() not in pids
    builds = {r["pid"]: r["build"] for r in rows}
    assert sorted(builds.values()) == [str(tmp_path / "build" / "w0"),
                                      str(tmp_path / "build" / "w1")]
    assert all(r["quiet"] and r["seed"] == 1 and r["sim"] == "verilator" for r in rows)
    assert json.loads((tmp_path / "out" / "alexnet.json").read_text()) == rows
    table = (tmp_path / "out" / "alexnet.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == \
        ["| CONV1", "| CONV2", "| FC8 (M/16)", "| CONV3"]
    assert sum("done" in line for line in lines) == 4


def test_one_job_runs_in_this_process(tmp_path, monkeypatch):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "other").touch()  # the stand-in waits for two processes
    monkeypatch.setenv(BARRIER, str(barrier))
    rows = run_bench(["CONV2", "CONV5"], build_dir=tmp_path / "build", out=tmp_path / "out",
                     jobs=1, bench=stand_in, log=lambda *a, **k: None)
    assert [r["layer"] for r in rows] == ["CONV2", "CONV5"]
    assert {r["pid"] for r in rows} == {os.getpid()}
    assert {r["build"] for r in rows} == {str(tmp_path / "build")}
    assert not any(r["quiet"] for r in rows)
