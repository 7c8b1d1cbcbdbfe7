"""Formal checks of the RLC codec with SymbiYosys on a small format (R,L,P,W = 2,4,2,16).

- The decoder, fed arbitrary words (malformed ones included), arbitrary
  start commands, back-pressure and resets, never emits more than ``n``
  values, emits nothing after a fault, and keeps the valid/ready rules on its
  output: proved for all time (k-induction, through its ``remaining`` count:
  values emitted + remaining == n), emitting values, pairs and a word's pairs.
- The encoder keeps the valid/ready rules on its output, taking one value or
  two a transfer: proved.
- Encoder into decoder with free values, idle and back-pressure, streams of
  n <= 7 back to back (``count_bits`` = 3): decode(encode(x)) == x, no fault,
  exactly ``n`` values per stream, for every run of 14 cycles (BMC; a stream
  of 7 values takes 12 cycles). A cover shows such a stream completes.
- The checks can fail: a wrong bound and a corrupted word between encoder and
  decoder are caught, with a counterexample trace.

Input ports get free values that obey the stream rules (assumed); output ports
must obey them (asserted): once ``valid`` is up without ``ready``, ``valid``
stays up and the payload holds.
"""

import pytest
from amaranth import Elaboratable, Module, Mux, ResetSignal, Signal, Value, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover

from ommatidia.gen.config import RLCFormat
from ommatidia.hw.rlc import RLCDecoder, RLCEncoder
from ommatidia.sim.formal import FormalFailure, prove

FMT = RLCFormat(run_bits=2, level_bits=4, pairs_per_word=2, word_bits=16)
COUNT_BITS = 3

pytestmark = pytest.mark.formal


def free_input(m, port):
    """Drive input stream ``port`` with free values that obey the stream rules."""
    payload = Value.cast(port.payload).as_unsigned()
    m.d.comb += [port.valid.eq(AnySeq(1)), payload.eq(AnySeq(len(payload)))]
    held = Signal()
    held_payload = Signal(len(payload))
    m.d.sync += [held.eq(port.valid & ~port.ready), held_payload.eq(payload)]
    with m.If(held):
        m.d.comb += Assume(port.valid & (payload == held_payload))


def check_output(m, port):
    """Assert the stream rules on output ``port``."""
    payload = Value.cast(port.payload).as_unsigned()
    held = Signal()
    held_payload = Signal(len(payload))
    m.d.sync += [held.eq(port.valid & ~port.ready), held_payload.eq(payload)]
    with m.If(held):
        m.d.comb += Assert(port.valid, "valid dropped before ready")
        m.d.comb += Assert(payload == held_payload, "payload changed before ready")


class DecoderHarness(Elaboratable):
    """Decoder with free inputs: bounded output, silence after a fault, stream rules."""

    def __init__(self, dut, *, bound_slack=0):
        self.dut = dut
        self.bound_slack = bound_slack

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        free_input(m, dut.start)
        free_input(m, dut.i)
        m.d.comb += dut.o.ready.eq(AnySeq(1))
        check_output(m, dut.o)

        n = Signal(COUNT_BITS)
        count = Signal(COUNT_BITS + 1)
        with m.If(dut.start.valid & dut.start.ready):
            m.d.sync += [n.eq(dut.start.payload), count.eq(0)]
        with m.Elif(dut.o.valid & dut.o.ready):
            m.d.sync += count.eq(count + _values(dut.o.payload, dut))
        m.d.comb += [
            Assert(count + dut.remaining == n, "count + remaining != n"),
            Assert(count + self.bound_slack <= n, "more than n values"),
            Assert(~(dut.error & dut.o.valid), "value offered after a fault"),
        ]
        return m


def _values(payload, dut):
    """The values one transfer on the decoder's ``o`` stands for."""
    if dut.words:
        return sum(Mux((k >= payload.first) & (k < payload.end), payload.pairs[k].run + 1, 0)
                   for k in range(FMT.pairs_per_word))
    return payload.run + 1 if dut.pairs else 1


class EncoderHarness(Elaboratable):
    """Encoder with free inputs, ``values`` a transfer: stream rules on its output."""

    def __init__(self, values=1):
        self.values = values

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = RLCEncoder(FMT, count_bits=COUNT_BITS, values=self.values)
        free_input(m, dut.start)
        free_input(m, dut.i)
        m.d.comb += dut.o.ready.eq(AnySeq(1))
        check_output(m, dut.o)
        return m


class RoundTripHarness(Elaboratable):
    """Encoder into decoder, one start for both: the decoder gives back the encoder's input.

    Reset is assumed low, unlike in the single-component harnesses.
    The check watches one arbitrary position ``j`` of each stream (a free
    constant, so the proof covers every position): the value the encoder takes
    at position ``j`` must be the value the decoder emits at position ``j``.
    ``corrupt`` flips the lowest level bit of pair 0 of words whose pair 0
    has a non-zero level (a deliberate bug, to show the check fails).
    """

    def __init__(self, *, corrupt=False):
        self.corrupt = corrupt

    def elaborate(self, platform):
        m = Module()
        m.submodules.enc = enc = RLCEncoder(FMT, count_bits=COUNT_BITS)
        m.submodules.dec = dec = RLCDecoder(FMT, count_bits=COUNT_BITS)
        m.d.comb += Assume(~ResetSignal())

        go = Signal()
        n_in = Signal(COUNT_BITS)
        started = Signal()
        m.d.comb += [
            go.eq(AnySeq(1) & ~enc.busy & ~dec.busy),
            n_in.eq(AnySeq(COUNT_BITS)),
            enc.start.valid.eq(go), enc.start.payload.eq(n_in),
            dec.start.valid.eq(go), dec.start.payload.eq(n_in),
        ]
        m.d.comb += Assert(~go | (enc.start.ready & dec.start.ready), "idle codec refused start")
        free_input(m, enc.i)
        m.d.comb += dec.o.ready.eq(AnySeq(1))

        word = Signal.like(enc.o.payload)
        m.d.comb += word.eq(enc.o.payload)
        if self.corrupt:
            with m.If(enc.o.payload.pairs[0].level != 0):
                m.d.comb += word.pairs[0].level.eq(enc.o.payload.pairs[0].level ^ 1)
        m.d.comb += [
            dec.i.valid.eq(enc.o.valid), dec.i.payload.eq(word), enc.o.ready.eq(dec.i.ready),
        ]
        check_output(m, enc.o)
        check_output(m, dec.o)

        j = Signal(COUNT_BITS)
        m.d.comb += j.eq(AnyConst(COUNT_BITS))
        sent = Signal(COUNT_BITS + 1)
        got = Signal(COUNT_BITS + 1)
        n = Signal(COUNT_BITS)
        value = Signal(signed(FMT.level_bits))
        with m.If(go):
            m.d.sync += [sent.eq(0), got.eq(0), n.eq(n_in), started.eq(1)]
        with m.If(enc.i.valid & enc.i.ready):
            m.d.sync += sent.eq(sent + 1)
            with m.If(sent == j):
                m.d.sync += value.eq(enc.i.payload)
        with m.If(dec.o.valid & dec.o.ready):
            m.d.sync += got.eq(got + 1)
            with m.If(got == j):
                m.d.comb += Assert(dec.o.payload == value, "decoded value differs")
        m.d.comb += [
            Assert(got <= sent, "value decoded before it was encoded"),
            Assert(~dec.error, "decoder fault on the encoder's words"),
        ]
        with m.If(started & ~enc.busy & ~dec.busy):
            m.d.comb += Assert(got == n, "stream ended without n values")
            m.d.comb += Cover((n == (1 << COUNT_BITS) - 1) & (j == n - 1) & (value != 0))
        return m


SYN = "smtbmc --syn yices"
BMC = "smtbmc --syn --nopresat yices"
"""The round trip's BMC engine: without the check that the assumptions hold at each step
(35 s against 43 s); `test_round_trip_harness_reaches_full_streams` shows they do, by
reaching whole streams within the same depth."""


@pytest.mark.parametrize("pairs", [False, True, "words"], ids=["values", "pairs", "words"])
def test_decoder_bounded_and_stream_rules_proved(build_dir, pairs):
    """Emitting pairs, a pair counts its ``run + 1`` values; emitting a word's pairs, each
    of slots ``first .. end - 1``."""
    dut = RLCDecoder(FMT, count_bits=COUNT_BITS, pairs=bool(pairs), words=pairs == "words")
    name = {False: "rlc_decoder", True: "rlc_decoder_pairs", "words": "rlc_decoder_words"}
    prove(DecoderHarness(dut), name=name[pairs], depth=4, build_dir=build_dir)


@pytest.mark.parametrize("values", [1, 2])
def test_encoder_stream_rules_proved(build_dir, values):
    """One value a transfer, and two (`ArrayConfig.dma_out_values`)."""
    prove(EncoderHarness(values), name=f"rlc_encoder{values if values > 1 else ''}", depth=4,
          build_dir=build_dir)


def test_round_trip_bmc(build_dir):
    """Depth 14 holds a whole stream of the longest n = 7 with two cycles to spare."""
    prove(RoundTripHarness(), name="rlc_round_trip", depth=14, build_dir=build_dir,
          mode="bmc", engine=BMC)


def test_round_trip_harness_reaches_full_streams(build_dir):
    """Not vacuous: within the same depth a stream of n = 7 completes, its last value non-zero."""
    prove(RoundTripHarness(), name="rlc_round_trip_cover", depth=14, build_dir=build_dir,
          mode="cover", engine=SYN)


def test_wrong_bound_is_caught(build_dir):
    with pytest.raises(FormalFailure, match="more than n values") as info:
        prove(DecoderHarness(RLCDecoder(FMT, count_bits=COUNT_BITS), bound_slack=1),
              name="rlc_decoder_wrong", depth=4, build_dir=build_dir)
    assert info.value.trace is not None and info.value.trace.exists()


def test_corrupted_round_trip_is_caught(build_dir):
    with pytest.raises(FormalFailure, match="decoded value differs") as info:
        prove(RoundTripHarness(corrupt=True), name="rlc_round_trip_bad", depth=14,
              build_dir=build_dir, mode="bmc", engine=BMC)
    assert info.value.trace is not None and info.value.trace.exists()
