"""Eyeriss run-length code (RLC) of activations: streaming encoder and decoder.

The format (`RLCFormat`, default ``R,L,P,W = 5,16,3,64``): ``n`` values become
pairs ``(run, level)``, meaning ``run`` zeros followed by the value ``level``
(which may be zero), so a pair stands for ``run + 1`` values. Pairs fill words
in order: pair ``k`` of a word holds its run in bits ``[k(R+L) + R - 1 :
k(R+L)]`` and its level, two's complement, in the ``L`` bits above. Bits from
``P(R+L)`` up to ``W - 2`` are reserved (zero); bit ``W - 1`` is the term
bit, set in the last word of a stream only.

Canonical encoding (what `RLCEncoder` produces): with a count ``z`` of pending
zeros, a non-zero value ``v`` emits ``(z, v)``; a zero when ``z`` is the
largest run emits ``(z, 0)``; any other zero counts; at the end a pending
``z > 0`` emits ``(z - 1, 0)``. The last value of a stream therefore always
emits ``(z, v)``. Unused pair slots of the last word are zero; ``n = 0`` is
one word holding only the term bit.

Which streams `RLCDecoder` accepts, told ``n``: any sequence of pairs that
makes exactly ``n`` values, canonical or not, such that the word in which the
``n``-th value is made is the first and only term word, its pair slots after
that value are zero, and the reserved bits of every word are zero. Everything
else raises a sticky fault (`RLCFault`), detected as soon as it is seen:

- ``OVERRUN``: a pair starts with ``left`` values still to make and
  ``run + 1 > left``; none of its values is emitted.
- ``NO_TERM``: the word in which the ``n``-th value is made (for ``n = 0``,
  the first word) lacks the term bit.
- ``EARLY_TERM``: a term word's last pair is used up with values still to make.
- ``SLOT``: after the ``n``-th value, a pair slot of the term word is not
  zero, or a word's reserved bits are not zero.

Both components take their stream length from a ``start`` stream carrying
``n``; `ommatidia.gen.rlc` is the matching reference codec.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ommatidia.gen.config import RLCFormat

__all__ = ["RLCFault", "rlc_pair_layout", "rlc_word_layout", "rlc_group_layout", "RLCEncoder",
           "RLCDecoder", "COUNT_BITS"]

COUNT_BITS = 24
"""Default width of the stream length ``n`` (up to 16 M values per stream)."""


class RLCFault(enum.IntEnum, shape=3):
    """Why `RLCDecoder` rejected a stream (see the module docstring)."""

    NONE = 0
    OVERRUN = 1
    NO_TERM = 2
    EARLY_TERM = 3
    SLOT = 4


def rlc_pair_layout(fmt: RLCFormat) -> data.StructLayout:
    """One ``(run, level)`` pair: run in the low ``run_bits``, level above it."""
    return data.StructLayout({"run": unsigned(fmt.run_bits), "level": signed(fmt.level_bits)})


def rlc_group_layout(fmt: RLCFormat) -> data.StructLayout:
    """The pairs of one word that `RLCDecoder` hands on in one transfer with ``words``:
    the word's pairs, of which slots ``first .. end - 1``."""
    P = fmt.pairs_per_word
    return data.StructLayout({"pairs": data.ArrayLayout(rlc_pair_layout(fmt), P),
                              "first": range(P + 1), "end": range(P + 1)})


def _reserved_bits(fmt: RLCFormat) -> int:
    return fmt.word_bits - 1 - fmt.pairs_per_word * fmt.pair_bits


def rlc_word_layout(fmt: RLCFormat) -> data.StructLayout:
    """One coded word: ``pairs_per_word`` pairs, reserved bits, term bit on top."""
    fields = {"pairs": data.ArrayLayout(rlc_pair_layout(fmt), fmt.pairs_per_word)}
    if _reserved_bits(fmt):
        fields["reserved"] = unsigned(_reserved_bits(fmt))
    fields["term"] = unsigned(1)
    return data.StructLayout(fields)


def _check(fmt, count_bits):
    if not isinstance(fmt, RLCFormat):
        raise TypeError(f"RLC components take an RLCFormat, not {fmt!r}")
    if isinstance(count_bits, bool) or not isinstance(count_bits, int) or not 1 <= count_bits <= 48:
        raise ValueError(f"count_bits must be an integer from 1 to 48, not {count_bits!r}")


class RLCEncoder(wiring.Component):
    """Streaming RLC encoder: ``n`` values in, canonical coded words out.

    A ``start`` transfer (accepted when idle) gives ``n``; the encoder then
    takes exactly ``n`` values on ``i`` and emits the words of their canonical
    code on ``o``, the last with the term bit. ``n = 0`` emits the term-only
    word at once. Throughput: one value per cycle while ``o`` is not stalled;
    a word leaves one cycle after the value that completes it.

    With ``values`` = V > 1 a transfer on ``i`` carries V values (the last one
    of a stream only its ``n mod V`` first when that is not 0), which make up
    to V pairs in the cycle: V values a cycle while ``o`` is not stalled. A word
    leaves one cycle after the transfer that completes it; when the last
    transfer completes a word and starts another, the term word leaves a cycle
    after that one.

    Parameters
    ----------
    fmt : RLCFormat
    count_bits : int
        Width of ``n``.
    values : int
        Values a transfer, 1 to ``fmt.pairs_per_word``.

    Members
    -------
    start : In(stream of unsigned(count_bits))
        Stream length ``n``.
    i : In(stream of signed(level_bits)), or of an array of ``values`` of them
        Values, the first of a transfer at index 0.
    o : Out(stream of rlc_word_layout(fmt))
        Coded words.
    busy : Out(1)
        High from ``start`` until the last word has left.
    """

    def __init__(self, fmt: RLCFormat = RLCFormat(), *, count_bits: int = COUNT_BITS,
                 values: int = 1):
        _check(fmt, count_bits)
        if isinstance(values, bool) or not isinstance(values, int) \
                or not 1 <= values <= fmt.pairs_per_word:
            raise ValueError(f"values must be an integer from 1 to pairs_per_word = "
                             f"{fmt.pairs_per_word}, not {values!r}")
        self._fmt = fmt
        self._count_bits = count_bits
        self._values = values
        value = signed(fmt.level_bits)
        super().__init__({
            "start": In(stream.Signature(unsigned(count_bits))),
            "i": In(stream.Signature(value if values == 1 else data.ArrayLayout(value, values))),
            "o": Out(stream.Signature(rlc_word_layout(fmt))),
            "busy": Out(1),
        })

    @property
    def fmt(self) -> RLCFormat:
        return self._fmt

    @property
    def count_bits(self) -> int:
        return self._count_bits

    @property
    def values(self) -> int:
        return self._values

    def elaborate(self, platform):
        if self._values > 1:
            return self._elaborate_wide()
        fmt = self._fmt
        P = fmt.pairs_per_word
        m = Module()

        running = Signal()
        left = Signal(self._count_bits)
        zeros = Signal(fmt.run_bits)
        slot = Signal(range(P))
        pending = Signal(data.ArrayLayout(rlc_pair_layout(fmt), P))

        last = left == 1
        may_complete = (slot == P - 1) | last

        self._handshakes(m, running, None, may_complete, [left, zeros, slot, pending])

        value = self.i.payload
        emit = (value != 0) | (zeros == fmt.max_run) | last
        word = Signal(rlc_word_layout(fmt))
        for k in range(P):
            m.d.comb += word.pairs[k].eq(Mux(slot == k, Cat(zeros, value), pending[k]))
        m.d.comb += word.term.eq(last)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += left.eq(left - 1)
            with m.If(last):
                m.d.sync += running.eq(0)
            with m.If(emit):
                m.d.sync += zeros.eq(0)
                with m.If(may_complete):
                    m.d.sync += [
                        self.o.payload.eq(word), self.o.valid.eq(1),
                        pending.eq(0), slot.eq(0),
                    ]
                with m.Else():
                    m.d.sync += [pending.eq(word.pairs), slot.eq(slot + 1)]
            with m.Else():
                m.d.sync += zeros.eq(zeros + 1)

        return m


    def _handshakes(self, m, running, flush, may_complete, state):
        """The ``start``, ``i`` and ``o`` handshakes of both encoders: ``start`` while idle
        (``n = 0`` sends the term-only word at once, else the stream runs from ``state``
        = ``left, zeros, slot, pending`` set to ``n`` and cleared); values while running
        and a word that may complete has room (``flush``: a word still to send; None
        for the one-value encoder, which has none)."""
        out_free = ~self.o.valid | self.o.ready
        left, *cleared = state
        idle, busy = ~running, running
        if flush is not None:
            idle, busy = idle & ~flush, busy | flush
        m.d.comb += [
            self.start.ready.eq(idle & out_free),
            self.i.ready.eq(running & (out_free | ~may_complete)),
            self.busy.eq(busy | self.o.valid),
        ]

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(self.start.valid & self.start.ready):
            with m.If(self.start.payload == 0):
                m.d.sync += [
                    self.o.payload.eq(rlc_word_layout(self._fmt).const({"term": 1})),
                    self.o.valid.eq(1),
                ]
            with m.Else():
                m.d.sync += [running.eq(1), left.eq(self.start.payload),
                             *(x.eq(0) for x in cleared)]

    def _elaborate_wide(self):
        """V values a transfer: value ``j`` makes pair ``(z_j, v_j)`` as in the one-value
        encoder, ``z_j`` the zeros pending after the values before it; the pairs made go
        to the next free slots of the word being filled (``slot`` on) and, past its last,
        of the next word, which the last transfer may have to send a cycle later
        (``flush``)."""
        fmt, V = self._fmt, self._values
        P = fmt.pairs_per_word
        pair = rlc_pair_layout(fmt)
        m = Module()

        running = Signal()
        flush = Signal()
        left = Signal(self._count_bits)
        zeros = Signal(fmt.run_bits)
        slot = Signal(range(P))
        pending = Signal(data.ArrayLayout(pair, P))

        last = left <= V
        may_complete = (slot >= P - V) | last
        out_free = ~self.o.valid | self.o.ready

        self._handshakes(m, running, flush, may_complete, [left, zeros, slot, pending])

        # The pairs of the transfer, placed from slot `slot` of word A on into word B.
        z = zeros
        pos = slot.as_unsigned()
        words = [Signal(data.ArrayLayout(pair, P), name=f"word_{w}") for w in "ab"]
        m.d.comb += words[0].eq(pending)
        for j in range(V):
            v = self.i.payload[j]
            emit = Signal(name=f"emit_{j}")
            m.d.comb += emit.eq((left > j) & ((v != 0) | (z == fmt.max_run) | (left == j + 1)))
            for k in range(2 * P):
                with m.If(emit & (pos == k)):
                    m.d.comb += words[k // P][k % P].eq(Cat(z, v))
            z = Mux(emit, 0, z + 1)[:fmt.run_bits]
            pos = pos + emit
        end = Signal(range(P + V + 1))
        m.d.comb += end.eq(pos)
        full = end >= P

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [left.eq(left - V), zeros.eq(z)]
            with m.If(full | last):
                m.d.sync += [
                    self.o.payload.pairs.eq(words[0]), self.o.payload.term.eq(last & (end <= P)),
                    self.o.valid.eq(1), pending.eq(words[1]), slot.eq(Mux(full, end - P, 0)),
                ]
            with m.Else():
                m.d.sync += [pending.eq(words[0]), slot.eq(end)]
            with m.If(last):
                m.d.sync += [running.eq(0), flush.eq(end > P)]

        with m.If(flush & out_free):
            # FLUSH: the term word the last transfer started
            m.d.sync += [
                self.o.payload.pairs.eq(pending), self.o.payload.term.eq(1),
                self.o.valid.eq(1), flush.eq(0), pending.eq(0),
            ]

        return m


class RLCDecoder(wiring.Component):
    """Streaming RLC decoder: coded words in, exactly ``n`` values (or their pairs) out.

    A ``start`` transfer gives ``n``, clears the fault and abandons any stream
    in progress (it waits only for a value already offered on ``o`` to be
    taken). The decoder then reads words on ``i`` and emits values on ``o``:
    one value per cycle while ``i`` keeps up and ``o`` is not stalled; a stream
    costs ``n + 2`` cycles from ``start`` (one to load the first word, one to
    check the term word after the last value).

    With ``pairs`` it emits each ``(run, level)`` pair, standing for ``run + 1``
    values, as one transfer instead: a stream of ``k`` pairs costs ``k + 2``
    cycles. With ``words`` it emits the pairs of a word it can emit, all in one
    transfer (`rlc_group_layout`): a stream of ``w`` words costs ``w + 2``
    cycles. Validation, faults and draining are the same in every mode; a pair
    is emitted only when all its values would be.

    Malformed streams (see the module docstring) set ``fault`` at the first
    word that shows it; ``error`` stays high until the next ``start``. The
    decoder never emits more than ``n`` values nor any value after a fault.
    After a fault it drains words until a term word (the faulty word itself
    when it is one), so the rest of a bad stream is consumed; ``busy`` stays
    high while it drains. A stream cut short before its term word leaves the
    decoder waiting for words (``busy``); a new ``start`` recovers.

    Parameters
    ----------
    fmt : RLCFormat
    count_bits : int
        Width of ``n``.
    pairs : bool
        Emit pairs instead of values.
    words : bool
        Emit a word's pairs a transfer (implies ``pairs``).

    Members
    -------
    start : In(stream of unsigned(count_bits))
        Stream length ``n``.
    i : In(stream of rlc_word_layout(fmt))
        Coded words.
    o : Out(stream of signed(level_bits)), of rlc_pair_layout(fmt) with ``pairs``, of
        rlc_group_layout(fmt) with ``words``
        Values, pairs, or a word's pairs.
    busy : Out(1)
        High from ``start`` until the term word is consumed.
    remaining : Out(unsigned(count_bits))
        Values of the current stream not emitted yet.
    error : Out(1)
        Sticky: the stream since the last ``start`` was malformed.
    fault : Out(RLCFault)
        The first fault of that stream.
    """

    def __init__(self, fmt: RLCFormat = RLCFormat(), *, count_bits: int = COUNT_BITS,
                 pairs: bool = False, words: bool = False):
        _check(fmt, count_bits)
        for name, flag in (("pairs", pairs), ("words", words)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {flag!r}")
        self._fmt = fmt
        self._count_bits = count_bits
        self._pairs = pairs or words
        self._words = words
        payload = rlc_group_layout(fmt) if words else \
            rlc_pair_layout(fmt) if pairs else signed(fmt.level_bits)
        super().__init__({
            "start": In(stream.Signature(unsigned(count_bits))),
            "i": In(stream.Signature(rlc_word_layout(fmt))),
            "o": Out(stream.Signature(payload)),
            "busy": Out(1),
            "remaining": Out(count_bits),
            "error": Out(1),
            "fault": Out(RLCFault),
        })

    @property
    def fmt(self) -> RLCFormat:
        return self._fmt

    @property
    def count_bits(self) -> int:
        return self._count_bits

    @property
    def pairs(self) -> bool:
        return self._pairs

    @property
    def words(self) -> bool:
        return self._words

    def elaborate(self, platform):
        fmt = self._fmt
        P = fmt.pairs_per_word
        m = Module()

        running = Signal()
        draining = Signal()
        have = Signal()
        word = Signal(rlc_word_layout(fmt))
        slot = Signal(range(P + 1))
        # zeros of the current pair emitted so far (none when emitting whole pairs)
        zeros = Const(0, fmt.run_bits) if self._pairs else Signal(fmt.run_bits)
        clear = [] if self._pairs else [zeros.eq(0)]
        left = Signal(self._count_bits)
        fault = Signal(RLCFault)

        run = Signal(fmt.run_bits)
        level = Signal(signed(fmt.level_bits))
        with m.Switch(slot):
            for k in range(P):
                with m.Case(k):
                    m.d.comb += [run.eq(word.pairs[k].run), level.eq(word.pairs[k].level)]

        reserved_ok = (word.reserved == 0) if "reserved" in word.shape().members else Const(1)
        tail_ok = Signal()
        m.d.comb += tail_ok.eq(reserved_ok & Cat(
            (slot > k) | (word.pairs[k].as_value() == 0) for k in range(P)).all())

        active = running & have
        at_end = left == 0
        overrun = (zeros == 0) & (run >= left)
        # A transfer ends the pair when it carries the whole pair or the pair's level.
        at_level = Const(1) if self._pairs else zeros == run
        step = run + 1 if self._pairs else Const(1)
        end = slot + 1
        if self._words:
            step, end = self._group(m, word, slot, left)
        word_used = at_level & (end == P) & (left != step)

        m.d.comb += [
            self.o.valid.eq(active & ~at_end & ~overrun & (fault == RLCFault.NONE)),
            self.o.payload.eq(Cat(word.pairs, slot, end) if self._words else
                              Cat(run, level) if self._pairs else Mux(at_level, level, 0)),
            self.start.ready.eq(~self.o.valid | self.o.ready),
            self.busy.eq(running | draining),
            self.remaining.eq(left),
            self.error.eq(fault != RLCFault.NONE),
            self.fault.eq(fault),
        ]

        def stop(why, drain):
            m.d.sync += [running.eq(0), fault.eq(why), draining.eq(drain)]

        with m.If(self.start.valid & self.start.ready):
            m.d.sync += [
                running.eq(1), draining.eq(0), have.eq(0), left.eq(self.start.payload),
                slot.eq(0), *clear, fault.eq(RLCFault.NONE),
            ]
        with m.Elif(running & ~have):
            # LOAD: waiting for the next word
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [word.eq(self.i.payload), have.eq(1), slot.eq(0)]
        with m.Elif(active & at_end):
            # END: n values made; this must be the term word, empty from here on
            with m.If(~word.term):
                stop(RLCFault.NO_TERM, drain=1)
            with m.Elif(~tail_ok):
                stop(RLCFault.SLOT, drain=0)
            with m.Else():
                m.d.sync += running.eq(0)
        with m.Elif(active & overrun):
            stop(RLCFault.OVERRUN, drain=~word.term)
        with m.Elif(self.o.valid & self.o.ready):
            # EMIT: one value of the current pair, or the pair
            m.d.sync += left.eq(left - step)
            with m.If(at_level):
                m.d.sync += [*clear, slot.eq(end)]
                with m.If(word_used & word.term):
                    stop(RLCFault.EARLY_TERM, drain=0)
                with m.Elif(word_used & ~reserved_ok):
                    stop(RLCFault.SLOT, drain=1)
                with m.Elif(word_used):
                    m.d.comb += self.i.ready.eq(1)
                    m.d.sync += [word.eq(self.i.payload), have.eq(self.i.valid), slot.eq(0)]
            if not self._pairs:
                with m.Else():
                    m.d.sync += zeros.eq(zeros + 1)
        with m.Elif(draining):
            # DRAIN: after a fault, consume words up to a term word
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid & self.i.payload.term):
                m.d.sync += draining.eq(0)

        return m

    def _group(self, m, word, slot, left):
        """With ``words``: the pairs from ``slot`` on that the stream can take in one
        transfer, each with values still to make and none past them (the one after is
        checked as it is now, alone): their values (``step``) and the slot after the
        last (``end``). The first is the one a pair transfer would carry."""
        fmt = self._fmt
        P, bits = fmt.pairs_per_word, self._count_bits
        step, end = Signal(bits), Signal(range(P + 1))
        rem, going, taken = left, Const(1), []
        for k in range(P):
            pair = word.pairs[k]
            here = Signal(name=f"group{k}")
            after = Signal(bits, name=f"group{k}_left")
            m.d.comb += [here.eq((k >= slot) & going & (rem != 0) & (pair.run < rem)),
                         after.eq(Mux(here, rem - pair.run - 1, rem))]
            going = (k < slot) | here
            rem = after
            taken.append(here)
        m.d.comb += [step.eq(left - rem), end.eq(slot + sum(taken))]
        return step, end
