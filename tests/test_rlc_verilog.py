"""RLC encoder and decoder as generated Verilog under cocotb, against the reference codec.

One build per (component, format, simulator), shared by every case (and by the
CLI tests): each run pushes edge cases, random streams and malformed streams
through back to back, with random idle and back-pressure.
"""

import pytest

from ommatidia.gen.config import RLCFormat
from ommatidia.gen.rlc import RLCFault, decode_stream, encode
from ommatidia.sim.rlc_cases import corrupt_streams, stream_cases
from ommatidia.sim.tb.tb_rlc import run_decoder_hw, run_encoder_hw

from helpers import ROOT

BUILD = ROOT / "build"
EYERISS = RLCFormat()
SMALL = RLCFormat(run_bits=2, level_bits=4, pairs_per_word=2, word_bits=16)

pytestmark = pytest.mark.verilog


def check_decoder(fmt, streams, results):
    assert len(results) == len(streams)
    for i, ((words, n), got) in enumerate(zip(streams, results)):
        exp = decode_stream(words, n, fmt)
        where = f"stream {i} (n = {n}, {len(words)} words, first {words[:3]})"
        assert got["values"] == exp.values.tolist(), f"{where}: values differ"
        assert RLCFault(got["fault"]) == exp.fault, (
            f"{where}: fault {got['fault']} vs {exp.fault!r}")
        assert bool(got["error"]) == (exp.fault != RLCFault.NONE), where
        assert got["fault_word"] == exp.fault_word, f"{where}: fault word"
        assert got["words_used"] == exp.words_used, f"{where}: words used"
        assert got["done"] == exp.done, f"{where}: done"
        if not got["done"]:
            assert got["waiting"], f"{where}: busy but not waiting for a word"


def run_codec(fmt, seed, sim):
    cases = stream_cases(fmt, seed, count=12, max_n=120)
    enc = run_encoder_hw(fmt, cases, sim=sim, build_root=BUILD, seed=seed, idle=0.3, stall=0.3)
    for values, got in zip(cases, enc, strict=True):
        assert got["words"] == encode(values, fmt), f"encoder words differ for {values.tolist()}"
    streams = [(encode(v, fmt), len(v)) for v in cases] + corrupt_streams(fmt, seed, count=25)
    dec = run_decoder_hw(fmt, streams, sim=sim, build_root=BUILD, seed=seed, idle=0.3, stall=0.3,
                         max_wait=20)
    check_decoder(fmt, streams, dec)
    assert len({r["fault"] for r in dec}) >= 3


def test_codec_verilator(seed):
    run_codec(EYERISS, seed, "verilator")


@pytest.mark.icarus
def test_codec_icarus(seed):
    run_codec(SMALL, seed, "icarus")
