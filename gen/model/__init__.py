"""Analytical performance model of the accelerator: cycles, counters, accesses, energy.

`predict` interprets a program the way `ommatidia.hw.top.Accelerator` runs it,
without knowing how `ommatidia.gen.compiler.compile_layer` built it: it decodes
each command word from the DRAM image (docs/program.md), keeps the registers
(unpacked with their `lib.data` layouts) and the tag tables, and predicts the
cycles of each command from them and, where it matters, from the DRAM data.
The DRAM port is assumed never to stall (``stall_rate = 0``); its timing is a
`DramTiming` (`ommatidia.gen.model.dram`): the System's behavioural DRAM by
default, for which the formulas below are written, or another latency and
bandwidth, or the AXI top's master and slave, which add their cycles to them.

The package: `decode` (the program decoder), `machine` (registers, GLB and DRAM
contents, the cycles of each command), `dram` (the DRAM's timing), `pe` (the PE's
timing rules, one definition), `timing` (a pass's cycles by recurrences),
`reference` (the same rules cycle by cycle), `arbiters` (GLB port and GON), `rlc`
(RLC word counts), `memo` (each distinct pass timed once in a process).

Cycle formulas (derived from the RTL, checked against Verilator)
----------------------------------------------------------------
- Command fetch (`ommatidia.gen.model.fetch`): program words come into a FIFO
  ahead of their commands, in blocks of 16 asked for one a cycle; a word can run
  two cycles after its request on the System. A command word and its operands
  run one a cycle once in: ``SET`` of ``k`` words ``k + 1`` cycles, ``TAG``,
  ``BIAS``, ``DONE`` one. The formulas below count a ``DMA_IN``, ``PASS`` or
  ``DMA_OUT`` from two cycles before its command word runs (as when every word
  was fetched on its own): it ends ``c - 2`` cycles after; a DMA waits until
  every word asked for has come, and no word is asked for while it runs.
- ``DMA_IN``: 3 + raw ``words + 3`` (one word a cycle, one request in flight),
  or RLC ``n + 4`` (the decoder makes one value a cycle, zeros included; words
  past the term word are drained one a cycle after it is taken, ``1 + v``
  cycles in for ``v`` values before it: ``max(n + 4, v + extra + 3)``).
- ``DMA_OUT``: GLB words are read ahead, so a raw word or a psum goes out every
  cycle after the first word's two: raw 3 + ``n + 4``; RLC 3 + ``n + 5`` (the
  encoder takes a cycle more), or 3 + ``n + 4`` packed without the codec; with
  ``dma_out_values`` = 2 a GLB word of psums a cycle: RLC 3 + ``ceil(n/2) + 5``, a
  cycle more when the last word's psums complete a coded word and start the term
  word (`ommatidia.gen.model.rlc.rlc_out_times`; without the values every psum is
  taken non-zero, a pair each). In the
  background (bit 0, on the System's DRAM only: docs/program.md) it takes one
  cycle, asks nothing of the fetch, and drains beside the commands after it; the
  next ``PASS``, ``BIAS``, ``DMA_OUT`` or ``DONE`` runs no sooner than ``c - 3``
  cycles after its command word (``c`` the cycles above), but a ``PASS`` after one
  with bit 1 set, which starts at once and is timed as alone: it reads no GLB bank
  the ``DMA_OUT`` reads and writes none of its words (checked: ValueError). A raw ``DMA_IN`` with
  bit 0 (System only) likewise takes one cycle and runs beside the commands after
  it; the fetch asks for nothing until it has ended, and the next ``DMA_IN``,
  ``DONE`` and a ``PASS`` after the next ``PASS`` run no sooner than ``c - 3``
  cycles after its command word.
- ``PASS``: ``4 +`` the first cycle the engines are idle, from a per-output
  max-plus recurrence over the PEs (`ommatidia.gen.model.timing`). Each PE
  issues one operation a cycle (``F*S*q*p`` of them; a zero activation still
  takes its cycle) through a 4-stage pipeline (`ommatidia.gen.model.pe`); it
  waits for

  * its filters: the filter sender delivers one packet a cycle (it reads the
    next GLB word while the last packet of the current one goes out, so a
    new word costs no cycle unless the GLB read port is contended); a packet
    is one weight, or with ``noc.filter_gin_values`` = N up to N consecutive
    weights of one GLB word and one tag (`Machine._packets`), all written into
    the PE's spad in the cycle it is taken;
  * the ifmap column of each tap: the ifmap sender multicasts one packet a
    cycle (one value, or with ``noc.ifmap_gin_values`` = N up to N channels of one
    column, one GLB word and one tag, written at once) and a packet waits until every target
    has room in its ring of ``ifmap_spad_depth // q`` columns, which frees a
    column only when the PE has used it; since the stream is
    column-interleaved, every column waits for the slowest PE's ring;
  * the psums of its last tap: from the psum sender (bottom PEs, in
    ``(f, e, k)`` order), or over the local link from the PE below, which
    emits them at its own last tap; a PE adds the psum from below after its
    own MACs for that output, so every PE of a chain works on the same output
    at once and a level lags the one below by a few cycles, not an output;
  * room for its psums: a link holds one psum; the GON takes one packet a
    cycle from all the top PEs, round-robin, so PEs freeze while waiting (with
    ``noc.gon_queue`` = D, a top's packet enters its queue of D at once when it
    has room, and the X-bus takes queue heads from the cycle after).

  Each psum chain (a column of PEs linked by ``up``) runs each output's plain
  operations as soon as their columns are in, then its last ``p`` operations
  psum by psum up the chain; the GON grants strictly in cycle order, up to a
  horizon no other chain can request before. GLB read-port conflicts between
  the senders (one word a cycle, round-robin) are settled by replaying each
  round's requests through the round-robin arbiter until the grants agree.
  Passes the recurrences cannot order fall back to a cycle-level reference of
  the same rules (``predict(..., reference=True)`` uses it for every pass).

- Arbiter state survives ``start``: the GLB port's and the GON's round-robin
  pointers carry over from one run to the next, so a layer's cycles depend
  (by a few cycles) on the run before it; `Prediction.state` hands it on.

Counters and accesses
---------------------
`Prediction.counters` predicts `ommatidia.hw.top.COUNTERS` as the hardware
counts them. ``gated_macs`` and ``dram_words_written`` depend on the data:
with ``values=True`` (default) the model tracks the GLB contents and
computes every pass (filters, ifmaps and psums routed by the tag tables and
IDs), so they are exact; with ``values=False`` they are worst cases (no zero).

`Prediction.accesses`, in data values (elements, not words):

- ``dram``: DRAM traffic (``dram_words_read + dram_words_written``) in
  ``act_bits`` element equivalents (words * ``dram_bits / act_bits``), so RLC
  savings count;
- ``glb``: element reads (one per sender packet, however many PEs it
  reaches; one per psum read by ``DMA_OUT``) and element writes (one per
  value ``DMA_IN`` stores, one per psum the GON receiver stores);
- ``noc``: GIN values delivered to PEs (a multicast counts once per target),
  psums passed over local links, psums carried by the GON;
- ``spad``: per PE one ifmap read per tap and channel, shared by its ``p``
  filters (the PE computes k innermost); per PE operation one filter read
  unless the activation is zero, one psum read unless it is the first tap, one
  psum write unless it is the last tap; plus the spad writes of every weight
  and activation a PE loads;
- ``mac``: multiplications done (``mac_cycles``; zero-gated ones excluded).

`Prediction.energy` weighs them with `ommatidia.gen.energy.energy`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ommatidia.gen.energy import energy

from .arbiters import reset_state
from .decode import Command, decode, pass_registers
from .dram import SYSTEM_DRAM, DramTiming
from .fetch import Fetch
from .machine import Machine
from .rlc import rlc_words

__all__ = ["Command", "DramTiming", "Prediction", "SYSTEM_DRAM", "decode", "pass_registers",
           "predict", "predict_words", "reset_state", "rlc_words"]


@dataclass(frozen=True)
class Prediction:
    """What `predict` gives for a program.

    ``commands`` lists (opcode, cycles) per command in program order (a background
    ``DMA_OUT`` or ``DMA_IN`` counts the cycles a command after it waits for it);
    ``by_op`` sums them per opcode; ``counters`` predicts `ommatidia.hw.top.COUNTERS`; ``accesses``
    and ``energy`` are per memory level (see the module docstring); ``exact`` is False
    when some data-dependent counter is a worst case (``values=False``);
    ``fallback_passes`` counts passes timed by the cycle-level reference; ``state`` is
    the arbiter state the run leaves (`reset_state` layout), which ``start`` does not
    clear: pass it as ``state`` to predict a program run after this one.
    """

    cycles: int
    commands: tuple
    by_op: dict
    counters: dict
    accesses: dict
    energy: dict
    pe_utilization: float
    passes: int
    exact: bool = True
    fallback_passes: int = 0
    state: tuple = ()

    def table(self) -> list[tuple[str, int, int]]:
        """(opcode, count, cycles) per opcode, for reports."""
        counts = {}
        for op, _ in self.commands:
            counts[op] = counts.get(op, 0) + 1
        return [(op, counts[op], self.by_op[op]) for op in self.by_op]


def predict_words(cfg, words: dict, *, values: bool = True, reference: bool = False,
                  state: tuple | None = None, dram: DramTiming = SYSTEM_DRAM) -> Prediction:
    """`predict` for a raw DRAM image ``words`` (address -> 64-bit word) on ``cfg``."""
    if not isinstance(dram, DramTiming):
        raise TypeError(f"predict takes a DramTiming as dram, not {dram!r}")
    from ommatidia.hw.top import FETCH_BLOCK, PREFETCH_WORDS
    m = Machine(cfg, words, values, reference, dram)
    program = decode(cfg, words)
    fetch = Fetch(PREFETCH_WORDS, FETCH_BLOCK, dram, sum(c.words for c in program) - 1,
                  m.writes)
    if state is not None:
        m.rr = (state[0], tuple(state[1]), state[2])
    commands = []
    t = k = 0
    drained = 0     # the first cycle the DMAOut is idle
    out = None      # the last background DMA_OUT's index in commands
    idle = 0        # the first cycle the DMAIn is idle
    inb = None      # the last background DMA_IN's index in commands
    fresh = False   # it started after the last PASS
    into_glb = False    # it writes the GLB, not the filter GLB
    beside = None   # what the last DMA_OUT reads, when the next PASS may run beside it
    for cmd in program:
        m.count["program_words"] += cmd.words
        x = max(t, fetch.ready(k))
        background = cmd.op == "DMA_OUT" and cmd.value & 1 and dram.bus == "port"
        background_in = cmd.op == "DMA_IN" and cmd.value and dram.bus == "port" \
            and not m.regs["dma_in"]["rlc"]
        if cmd.op == "DMA_IN" or cmd.op == "DMA_OUT" and not background:
            x = fetch.hold(x)
        wait = wait_in = 0
        if cmd.op in ("PASS", "BIAS", "DMA_OUT", "DONE") and drained > x \
                and not (cmd.op == "PASS" and beside is not None):
            x, wait = drained, drained - x
        if (cmd.op in ("DMA_IN", "DONE") or cmd.op == "PASS" and not fresh) and idle > x:
            x, wait_in = idle, idle - x
        if cmd.op == "PASS":
            if into_glb and x < idle:
                raise ValueError("a PASS beside a background DMA_IN into the GLB (not the "
                                 "filter GLB) is not modelled")
            fresh = False
        fetch.run(k, x)
        for i in range(1, cmd.words):
            x = max(x + 1, fetch.ready(k + i))
            fetch.run(k + i, x)
        end = x + 1
        if cmd.op == "SET":
            m.set(cmd.reg, cmd.value)
        elif cmd.op == "TAG":
            index, engine = cmd.value["index"], cmd.value["engine"]
            if engine < 3 and index < m.tag_depth:
                m.tag(engine, index, cmd.value["entry"])
        elif cmd.op == "BIAS":
            if cmd.value["index"] < len(m.bias):
                m.bias[cmd.value["index"]] = cmd.value["value"]
        elif background:
            drained = x + m.dma_out(x) - 3
            beside = m.out_reads() if cmd.value & 2 else None
        elif background_in:
            idle = x + m.dma_in(x + 1) - 3
            fetch.release(idle - 1)
            fresh, into_glb = True, m.regs["dma_in"]["glb"] < m.fglb[0]
        elif cmd.op in ("DMA_IN", "DMA_OUT"):
            beside = None if cmd.op == "DMA_OUT" else beside
            end = x + (m.dma_in(x + 1) if cmd.op == "DMA_IN" else m.dma_out(x)) - 2
            fetch.release(end - 2)
        elif cmd.op == "PASS":
            end = x + m.run_pass(beside if beside is not None and drained > x else None) - 2
            beside = None
        else:
            extra, last = fetch.done()
            m.count["program_words"] += extra
            end = max(end, last)
        if wait:
            commands[out] = ("DMA_OUT", commands[out][1] + wait)
        if wait_in:
            commands[inb] = ("DMA_IN", commands[inb][1] + wait_in)
        if background:
            out = len(commands)
        if background_in:
            inb = len(commands)
        commands.append((cmd.op, end - t - wait - wait_in))
        t, k = end, k + cmd.words
    total = sum(c for _, c in commands)
    by_op = {}
    for op, c in commands:
        by_op[op] = by_op.get(op, 0) + c
    counters = {"cycles": total, **m.count}
    dram_words = counters["dram_words_read"] + counters["dram_words_written"]
    accesses = {"dram": dram_words * cfg.dram_bits // cfg.pe.act_bits, "glb": m.acc["glb"],
                "noc": m.acc["noc"], "spad": m.acc["spad"], "mac": counters["mac_cycles"]}
    util = counters["macs"] / (cfg.macs_per_cycle * total) if total else 0.0
    return Prediction(total, tuple(commands), by_op, counters, accesses, energy(accesses), util,
                      sum(1 for op, _ in commands if op == "PASS"), m.exact,
                      m.fallbacks, m.rr)


def predict(prog, *, values: bool = True, reference: bool = False,
            state: tuple | None = None, dram: DramTiming = SYSTEM_DRAM) -> Prediction:
    """Cycles, counters, accesses and energy of a `ommatidia.gen.program.LayerProgram`
    (anything with ``cfg`` and ``words``), interpreted from its DRAM image.

    ``values=False`` skips the data (faster): ``gated_macs`` is then 0 and the
    ofmap's RLC words a worst case. ``reference=True`` times every pass with the
    cycle-level reference of the same rules instead (slow; for checking). ``state``
    is the arbiter state left by the previous run (`Prediction.state`), reset state
    (`reset_state`) by default: layers run one after another without a reset take
    it from the one before. ``dram`` is the DRAM's timing (`DramTiming`: latency,
    bandwidth, the AXI top's bursts), the System's by default. Raises
    ValueError where the accelerator would stop with ``error`` or hang (unknown
    opcode, a tag reaching a PE that is not enabled, too few ifmap columns for a
    run).
    """
    return predict_words(prog.cfg, prog.words, values=values, reference=reference,
                         state=state, dram=dram)
