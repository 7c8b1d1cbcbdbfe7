"""`ommatidia rlc encode/decode`: file format, round trips, --hw, malformed input."""

import numpy as np
import pytest

from ommatidia.cli import main
from ommatidia.sim.rlc_cases import random_values

from helpers import ROOT

TERM = 1 << 63


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_writes_little_endian_words(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.array([[0, 0, 5], [0, 0, -1]], dtype=np.int16))
    code, out, _ = run(capsys, "rlc", "encode", str(tmp_path / "a.npy"), str(tmp_path / "a.bin"))
    assert code == 0 and "6 values -> 1 words" in out
    # pairs (2, 5) and (2, -1): runs in bits 0-4 and 21-25, levels above them; term bit 63
    word = TERM | 2 | 5 << 5 | (2 | 0xFFFF << 5) << 21
    assert (tmp_path / "a.bin").read_bytes() == word.to_bytes(8, "little")
    code, out, _ = run(capsys, "rlc", "decode", str(tmp_path / "a.bin"), "6",
                       str(tmp_path / "b.npy"))
    assert code == 0
    back = np.load(tmp_path / "b.npy")
    assert back.dtype == np.int16 and back.tolist() == [0, 0, 5, 0, 0, -1]


def test_small_format_uses_two_byte_words(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.array([1, 0, 0, 0, 0, 0, -2], dtype=np.int64))
    assert run(capsys, "rlc", "encode", str(tmp_path / "a.npy"), str(tmp_path / "a.bin"),
               "--format", "2,4,2,16")[0] == 0
    # (0, 1) (3, 0) | (1, -2) + term: 6-bit pairs, term bit 15
    words = [1 << 2 | 3 << 6, 1 << 15 | 1 | 14 << 2]
    assert (tmp_path / "a.bin").read_bytes() == b"".join(w.to_bytes(2, "little") for w in words)
    assert run(capsys, "rlc", "decode", str(tmp_path / "a.bin"), "7", str(tmp_path / "b.npy"),
               "--format", "2,4,2,16")[0] == 0
    assert np.load(tmp_path / "b.npy").tolist() == [1, 0, 0, 0, 0, 0, -2]


@pytest.mark.parametrize("content, n, message", [
    (b"\x00" * 13, 1, "13 bytes, not a whole number of 8-byte words"),
    (b"", 1, "without a term word"),
    ((5 << 5).to_bytes(8, "little"), 1, "no term bit"),
    ((TERM | 5 << 5).to_bytes(8, "little"), 4, "before 4 values"),
    ((TERM | 4 | 5 << 5).to_bytes(8, "little"), 3, "a run goes past the 3 values"),
    ((TERM | 5 << 5 | 7 << 26).to_bytes(8, "little"), 1, "pair slot after the last value"),
    ((TERM | 5 << 5).to_bytes(8, "little") * 2, 1, "1 words follow the term word"),
    ((TERM | 5 << 5).to_bytes(8, "little"), -1, "N must be a non-negative"),
])
def test_malformed_bin_is_a_clear_error(tmp_path, capsys, content, n, message):
    (tmp_path / "bad.bin").write_bytes(content)
    code, _, err = run(capsys, "rlc", "decode", str(tmp_path / "bad.bin"), str(n),
                       str(tmp_path / "out.npy"))
    assert code == 2 and message in err and err.startswith("ommatidia rlc: error:")
    assert not (tmp_path / "out.npy").exists()


def test_high_bits_of_a_narrow_word_are_an_error(tmp_path, capsys):
    (tmp_path / "bad.bin").write_bytes((1 << 15 | 1 << 12).to_bytes(2, "little") + b"\x00\x80")
    code, _, err = run(capsys, "rlc", "decode", str(tmp_path / "bad.bin"), "1",
                       str(tmp_path / "o.npy"), "--format", "3,4,1,12")
    assert code == 2 and "word 0 = 0x9000 has bits above word_bits = 12" in err


@pytest.mark.parametrize("setup, message", [
    (lambda p: np.save(p, np.array([40000])), "does not fit level_bits = 16"),
    (lambda p: np.save(p, np.array([0.5])), "must be integers"),
    (lambda p: p.write_bytes(b"not an npy file"), "is not a .npy array"),
])
def test_bad_npy_is_a_clear_error(tmp_path, capsys, setup, message):
    path = tmp_path / "in.npy"
    setup(path)
    code, _, err = run(capsys, "rlc", "encode", str(path), str(tmp_path / "o.bin"))
    assert code == 2 and message in err


def test_bad_format_is_a_clear_error(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros(3, dtype=np.int8))
    code, _, err = run(capsys, "rlc", "encode", str(tmp_path / "a.npy"), str(tmp_path / "o.bin"),
                       "--format", "5,16,3,32")
    assert code == 2 and "word_bits must be at least" in err


@pytest.mark.verilog
def test_hw_matches_reference(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    from ommatidia.gen.config import RLCFormat
    fmt = RLCFormat()
    values = np.concatenate([random_values(rng, fmt, 120, z) for z in (0.0, 0.5, 0.9, 1.0)]
                            + [np.zeros(33, dtype=np.int64), [-7]])
    np.save(tmp_path / "a.npy", values.reshape(-1, 1))
    hw = ("--hw", "--build", str(ROOT / "build"))
    n = str(len(values))
    a_npy, ref_bin = str(tmp_path / "a.npy"), str(tmp_path / "ref.bin")
    assert run(capsys, "rlc", "encode", a_npy, ref_bin)[0] == 0
    assert run(capsys, "rlc", "encode", a_npy, str(tmp_path / "hw.bin"), *hw)[0] == 0
    assert (tmp_path / "hw.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert run(capsys, "rlc", "decode", ref_bin, n, str(tmp_path / "ref.npy"))[0] == 0
    assert run(capsys, "rlc", "decode", ref_bin, n, str(tmp_path / "hw.npy"), *hw)[0] == 0
    assert (tmp_path / "hw.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert np.load(tmp_path / "hw.npy").tolist() == values.tolist()
    # Malformed: the stream cut short, N one too small (the last run overruns); N one too
    # large is accepted when the term word has a free slot (it reads as one more zero).
    data = (tmp_path / "ref.bin").read_bytes()
    errors = 0
    for bad, count in ((data[:-8], n), (data, str(len(values) - 1)), (data, str(len(values) + 1))):
        (tmp_path / "bad.bin").write_bytes(bad)
        bad_bin = str(tmp_path / "bad.bin")
        ref = run(capsys, "rlc", "decode", bad_bin, count, str(tmp_path / "x.npy"))
        got = run(capsys, "rlc", "decode", bad_bin, count, str(tmp_path / "y.npy"), *hw)
        assert (got[0], got[2]) == (ref[0], ref[2])
        if ref[0]:
            errors += 1
            assert ref[0] == 2 and "malformed RLC stream" in got[2]
        else:
            assert (tmp_path / "x.npy").read_bytes() == (tmp_path / "y.npy").read_bytes()
    assert errors >= 2


@pytest.mark.verilog
@pytest.mark.parametrize("top", ["rlc-encoder", "rlc-decoder"])
def test_generate_rlc_tops_lint_clean(top, build_dir, capsys):
    assert main(["generate", "--top", top, "-o", str(build_dir), "--lint"]) == 0
    text = (build_dir / f"ommatidia_{top.replace('-', '_')}.v").read_text()
    assert "start__payload" in text and "o__payload" in text
    assert "assert" not in text and "assume" not in text   # no formal cells in the product


def test_bench_prints_the_ratio_table(capsys):
    from ommatidia.sim.bench_rlc import main as bench
    assert bench(["--n", "960", "--zeros", "0,1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 0 % zeros: 3 values (64 bits) a word -> 48/64 = 0.75; 100 %: 96 zeros a word -> 24
    assert lines[3].split()[:6] == ["0.0%", "320", "21.333", "16.000", "0.75", "1.00"]
    assert lines[4].split()[:6] == ["100.0%", "10", "0.667", "0.000", "24.00", "inf"]
