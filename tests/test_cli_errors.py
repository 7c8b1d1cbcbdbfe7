"""Bad input on the command line: one line naming the file or option, exit 2, no traceback,
nothing lost, and nothing simulated before the output paths are known to be writable."""

import subprocess
import sys
import time

import numpy as np
import pytest

from ommatidia.cli import main

LAYER = "N=1,C=2,M=2,H=4,W=4,R=3,S=3,P=1"


def fails(capsys, argv, *words):
    """Run ``argv``: exit 2 and one error line holding every one of ``words``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ommatidia {argv[0]}: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert str(w) in err, (w, err)
    return err


@pytest.fixture
def no_simulation(monkeypatch):
    """Simulating is a failure of the test: the command had to stop before."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command simulated before checking its arguments")
    monkeypatch.setattr("ommatidia.sim.accelerator.run_layers", refuse)
    monkeypatch.setattr("ommatidia.sim.pe_run.run_pe", refuse)


def run_args(tmp_path, *extra):
    return ["run", "--layer", LAYER, "--out", str(tmp_path / "y.npy"), "--build",
            str(tmp_path / "build"), *extra]


def test_empty_npy(tmp_path, capsys, no_simulation):
    x = tmp_path / "x.npy"
    x.write_bytes(b"")
    w = tmp_path / "w.npy"
    np.save(w, np.ones((2, 2, 3, 3), dtype=np.int8))
    fails(capsys, run_args(tmp_path, "--ifmap", str(x), "--weights", str(w)),
          "--ifmap", x, "is empty (0 bytes)")


def test_npz_named_npy(tmp_path, capsys, no_simulation):
    x = tmp_path / "x.npy"
    with open(x, "wb") as f:
        np.savez(f, a=np.ones((1, 2, 4, 4), dtype=np.int8))
    w = tmp_path / "w.npy"
    np.save(w, np.ones((2, 2, 3, 3), dtype=np.int8))
    fails(capsys, run_args(tmp_path, "--ifmap", str(x), "--weights", str(w)),
          "--ifmap", x, "is an .npz archive, not a .npy array")


def test_not_an_npy(tmp_path, capsys, no_simulation):
    x = tmp_path / "x.npy"
    x.write_text("hello\n")
    fails(capsys, ["rlc", "encode", str(x), str(tmp_path / "o.bin")],
          "IN.npy", x, "is not a .npy array")


def test_directory_for_a_file(tmp_path, capsys, no_simulation):
    w = tmp_path / "w.npy"
    np.save(w, np.ones((2, 2, 3, 3), dtype=np.int8))
    fails(capsys, run_args(tmp_path, "--ifmap", str(tmp_path), "--weights", str(w)),
          "--ifmap", tmp_path, "is a directory, not a file")
    fails(capsys, ["rlc", "decode", str(tmp_path), "3", str(tmp_path / "o.npy")],
          "IN.bin", tmp_path, "is a directory, not a file")
    fails(capsys, ["report", "--from", str(tmp_path)], "--from", tmp_path, "is a directory")
    fails(capsys, ["map", "--config", str(tmp_path / "c.toml"), "--layer", LAYER],
          tmp_path / "c.toml", "does not exist")


def test_missing_file(tmp_path, capsys, no_simulation):
    fails(capsys, ["rlc", "encode", str(tmp_path / "none.npy"), str(tmp_path / "o.bin")],
          "IN.npy", tmp_path / "none.npy", "no such file")


def test_out_under_a_file(tmp_path, capsys, no_simulation):
    f = tmp_path / "file"
    f.write_text("keep me\n")
    fails(capsys, ["run", "--layer", LAYER, "--out", str(f / "y.npy")],
          "--out", f / "y.npy", f"{f} is a file, not a directory")
    fails(capsys, ["run", "--layer", LAYER, "--out", str(tmp_path / "y.npy"),
                   "--report", str(f / "sub" / "r.json")], "--report", "is a file")
    fails(capsys, ["pe", "--preset", "tiny", "--W", "16", "--report", str(f / "r.json")],
          "--report")
    fails(capsys, ["generate", "-o", str(f)], "--output", f, "is a file, not a directory")
    assert f.read_text() == "keep me\n"


def test_out_is_an_existing_directory(tmp_path, capsys, no_simulation):
    fails(capsys, ["run", "--layer", LAYER, "--out", str(tmp_path)],
          "--out", tmp_path, "is a directory; give a file name")
    assert not (tmp_path.parent / (tmp_path.name + ".npy")).exists()


def test_net_run_checks_its_outputs_first(tmp_path, capsys, no_simulation):
    """A bad --report or --build stops `net run` before it simulates anything."""
    from ommatidia.nn import digits, quant
    _, qnet, _ = digits.train_digits(seed=0, epochs=1)
    model = str(quant.save(qnet, tmp_path / "m.npz"))
    f = tmp_path / "file"
    f.write_text("keep me\n")
    fails(capsys, ["net", "run", "--model", model, "--images", "2", "--build",
                   str(tmp_path / "b"), "--report", str(f / "r.json")],
          "--report", f / "r.json", f"{f} is a file, not a directory")
    fails(capsys, ["net", "run", "--model", model, "--images", "2", "--report",
                   str(tmp_path), "--build", str(tmp_path / "b")],
          "--report", tmp_path, "is a directory; give a file name")
    fails(capsys, ["net", "run", "--model", model, "--images", "2", "--build", str(f)],
          "--build", f, "is a file, not a directory")
    fails(capsys, ["net", "run", "--model", str(tmp_path / "none.npz")],
          "--model", tmp_path / "none.npz", "no such file")
    assert f.read_text() == "keep me\n"
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("zeros", ["5", "-1"])
def test_run_zeros_out_of_range(tmp_path, capsys, no_simulation, zeros):
    fails(capsys, run_args(tmp_path, "--zeros", zeros), "--zeros must be in 0..1", zeros)


@pytest.mark.parametrize("coding", ["RLC", "zip", ""])
def test_bad_ifmap_coding(tmp_path, capsys, no_simulation, coding):
    fails(capsys, run_args(tmp_path, "--ifmap-coding", coding),
          "--ifmap-coding must be one of rlc, raw", repr(coding))
    fails(capsys, ["map", "--layer", LAYER, "--ifmap-coding", coding], "--ifmap-coding")


def test_duplicate_layer_keys(capsys):
    fails(capsys, ["map", "--layer", "C=3,C=5,M=2,H=4,W=4,R=3,S=3"], "--layer gives C twice")
    fails(capsys, ["map", "--layer", "fc:C=3,M=2,M=4"], "--layer gives M twice")


def test_uint64_that_would_wrap(tmp_path, capsys, no_simulation):
    x = tmp_path / "x.npy"
    np.save(x, np.full((1, 2, 4, 4), 2**64 - 1, dtype=np.uint64))
    w = tmp_path / "w.npy"
    np.save(w, np.ones((2, 2, 3, 3), dtype=np.int8))
    fails(capsys, run_args(tmp_path, "--ifmap", str(x), "--weights", str(w)),
          "--ifmap", x, "uint64 values up to 18446744073709551615, beyond int64")
    fails(capsys, ["rlc", "encode", str(x), str(tmp_path / "o.bin")], "IN.npy", "beyond int64")


def test_bad_config_setting(capsys, no_simulation):
    fails(capsys, ["pe", "--set", "pe.ifmap_spad_depth=2"],
          "PEConfig.ifmap_spad_depth must hold one ifmap window")
    fails(capsys, ["map", "--set", "rows", "--layer", LAYER], "--set takes KEY=VALUE")


class _ClosedPipe:
    """A standard output whose reader has gone (``| head -1`` after one line)."""

    def __init__(self):
        self.lines = 0

    def write(self, text):
        self.lines += text.count("\n")
        if self.lines > 1:
            raise BrokenPipeError(32, "Broken pipe")
        return len(text)

    def flush(self):
        if self.lines > 1:
            raise BrokenPipeError(32, "Broken pipe")


def test_closed_stdout_is_quiet(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["map", "--preset", "tiny", "--layer", LAYER]) == 0
    err = capsys.readouterr().err
    assert err == ""


def test_closed_stdout_through_head():
    proc = subprocess.run(
        f"{sys.executable} -m ommatidia.cli map --preset tiny --layer {LAYER} | head -c 1",
        shell=True, capture_output=True, text=True)
    assert proc.stdout == "C" and proc.stderr == ""


@pytest.mark.parametrize("layer", ["N=1,C=100000,M=8,H=12,W=12,R=3,S=3",
                                   "N=100000,C=3,M=8,H=12,W=12,R=3,S=3"])
def test_map_of_an_absurd_layer_is_quick(capsys, layer):
    start = time.monotonic()
    fails(capsys, ["map", "--layer", layer], "needs at least", "passes on eyeriss",
          "more than the 1024")
    assert time.monotonic() - start < 5


def test_run_needs_the_performance_counters(tmp_path, capsys, no_simulation):
    """The `icebreaker` preset has no counters: `run` says so before it compiles or
    builds anything, and names the settings that add them."""
    fails(capsys, run_args(tmp_path, "--preset", "icebreaker", "--set", "dram_addr_bits=16"),
          "has no performance counters (ArrayConfig.counter_bits = 0",
          "--set counter_bits=32 --set pe.counter_bits=24")
