"""cocotb testbench of the generated RLC encoder and decoder Verilog, driven by a JSON job.

The job (file named by ``RLC_JOB``) lists streams and the random idle /
back-pressure to apply; the testbench runs them back to back and writes what
the hardware did to ``RLC_RESULT``: for the encoder the words of each stream,
for the decoder the values, fault, words consumed and whether it went idle.
The caller compares that with `ommatidia.gen.rlc` (tests) or writes it out
(``ommatidia rlc ... --hw``).

`run_encoder_hw` and `run_decoder_hw` do the whole round: emit the Verilog of
the component (one build folder per top, format, width of ``n`` and
simulator, rebuilt only when the Verilog changes, locked against parallel
runs), write the job, run cocotb and read the result.

Job fields: ``format`` ("R,L,P,W"), ``seed``, ``idle``, ``stall``,
``max_wait`` (decoder: cycles with every word offered and nothing moving
before the stream counts as cut short), ``streams``: ``{"values": [...]}``
(encoder) or ``{"n": n, "words": [...]}`` (decoder).
"""

from __future__ import annotations

import json
import os
import pathlib
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ommatidia.gen.config import RLCFormat

__all__ = ["run_encoder_hw", "run_decoder_hw", "hw_build_dir"]


def _to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


async def _start(dut, n: int):
    await FallingEdge(dut.clk)
    dut.start__valid.value = 1
    dut.start__payload.value = n
    await ReadOnly()
    while not int(dut.start__ready.value):
        await FallingEdge(dut.clk)
        await ReadOnly()
    await FallingEdge(dut.clk)
    dut.start__valid.value = 0


async def _setup(dut):
    job = json.loads(pathlib.Path(os.environ["RLC_JOB"]).read_text())
    Clock(dut.clk, 10, unit="ns").start()
    for name in ("start__valid", "i__valid", "o__ready"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    return job, RLCFormat.parse(job["format"]), random.Random(job["seed"])


def _write_result(result) -> None:
    pathlib.Path(os.environ["RLC_RESULT"]).write_text(json.dumps(result))


@cocotb.test()
async def encoder_job(dut):
    """Encode each stream of the job; record its words and cycles."""
    job, fmt, rng = await _setup(dut)
    idle, stall = job["idle"], job["stall"]
    lmask = (1 << fmt.level_bits) - 1
    out = []
    for stream in job["streams"]:
        values = stream["values"]
        await _start(dut, len(values))
        idx, holding, words, cycles = 0, False, [], 0
        while True:
            if not holding and idx < len(values) and rng.random() >= idle:
                holding = True
            dut.i__valid.value = int(holding)
            if holding:
                dut.i__payload.value = values[idx] & lmask
            ready = rng.random() >= stall
            dut.o__ready.value = int(ready)
            await ReadOnly()
            i_fire = holding and int(dut.i__ready.value)
            o_fire = ready and int(dut.o__valid.value)
            word = int(dut.o__payload.value) if o_fire else None
            await FallingEdge(dut.clk)
            cycles += 1
            if i_fire:
                idx, holding = idx + 1, False
            if o_fire:
                words.append(word)
                if word >> (fmt.word_bits - 1):
                    break
            assert cycles < 10 * len(values) + 1000, "encoder hangs"
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        assert idx == len(values), f"encoder ended a stream after {idx} of {len(values)} values"
        out.append({"words": words, "cycles": cycles})
    _write_result({"streams": out})


@cocotb.test()
async def decoder_job(dut):
    """Decode each stream of the job; record values, fault, words used, idle or waiting."""
    job, fmt, rng = await _setup(dut)
    idle, stall, max_wait = job["idle"], job["stall"], job.get("max_wait", 50)
    out = []
    for stream in job["streams"]:
        words, n = stream["words"], stream["n"]
        await _start(dut, n)
        idx, holding, values, cycles, quiet, done = 0, False, [], 0, 0, False
        fault_word = None
        while True:
            await ReadOnly()
            if fault_word is None and int(dut.error.value):
                fault_word = idx - 1
            if not int(dut.busy.value):
                done = True
                break
            await FallingEdge(dut.clk)
            if not holding and idx < len(words) and rng.random() >= idle:
                holding = True
            dut.i__valid.value = int(holding)
            if holding:
                dut.i__payload.value = words[idx]
            ready = rng.random() >= stall
            dut.o__ready.value = int(ready)
            await ReadOnly()
            i_fire = holding and int(dut.i__ready.value)
            o_fire = ready and int(dut.o__valid.value)
            assert not (int(dut.error.value) and int(dut.o__valid.value)), "value after a fault"
            if o_fire:
                values.append(_to_signed(int(dut.o__payload.value), fmt.level_bits))
                assert len(values) <= n, f"decoder emitted more than n = {n} values"
            await RisingEdge(dut.clk)
            cycles += 1
            if i_fire:
                idx, holding = idx + 1, False
            quiet = 0 if (i_fire or o_fire or idx < len(words)) else quiet + 1
            if quiet > max_wait:
                break
            assert cycles < 10 * (n + len(words)) + 1000, "decoder hangs"
        await FallingEdge(dut.clk)
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        await ReadOnly()
        out.append({
            "values": values, "fault": int(dut.fault.value), "error": int(dut.error.value),
            "fault_word": fault_word, "words_used": idx, "done": done, "cycles": cycles,
            "waiting": bool(int(dut.i__ready.value)),
        })
    _write_result({"streams": out})


# Running jobs from Python ---------------------------------------------------------------

def hw_build_dir(build_root, top: str, fmt: RLCFormat, count_bits: int, sim: str) -> pathlib.Path:
    tag = f"{fmt.run_bits}_{fmt.level_bits}_{fmt.pairs_per_word}_{fmt.word_bits}"
    return pathlib.Path(build_root).resolve() / "rlc_hw" / f"{top}_{tag}_n{count_bits}_{sim}"


def _run(top: str, testcase: str, fmt: RLCFormat, job: dict, *, count_bits: int, sim: str,
         build_root) -> dict:
    from ommatidia.gen.verilog import emit
    from ommatidia.hw.rlc import RLCDecoder, RLCEncoder
    from ommatidia.sim.runner import locked, run_cocotb

    cls = RLCEncoder if top == "rlc_encoder" else RLCDecoder
    folder = hw_build_dir(build_root, top, fmt, count_bits, sim)
    text = emit(cls(fmt, count_bits=count_bits), top)
    with locked(folder):
        path = folder / f"{top}.v"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        job_path, result_path = folder / "job.json", folder / "result.json"
        job_path.write_text(json.dumps({"format": f"{fmt.run_bits},{fmt.level_bits},"
                                        f"{fmt.pairs_per_word},{fmt.word_bits}", **job}))
        result_path.unlink(missing_ok=True)
        run_cocotb(path, top, "ommatidia.sim.tb.tb_rlc", sim=sim, build_dir=folder,
                   testcase=testcase, env={"RLC_JOB": job_path, "RLC_RESULT": result_path})
        return json.loads(result_path.read_text())


def run_encoder_hw(fmt: RLCFormat, streams, *, count_bits: int = 24, sim: str = "verilator",
                   build_root="build", seed: int = 0, idle: float = 0.0,
                   stall: float = 0.0) -> list[dict]:
    """Encode each value list of ``streams`` on the encoder Verilog; per stream ``words``,
    ``cycles``."""
    job = {"seed": seed, "idle": idle, "stall": stall,
           "streams": [{"values": [int(v) for v in values]} for values in streams]}
    return _run("rlc_encoder", "encoder_job", fmt, job, count_bits=count_bits, sim=sim,
                build_root=build_root)["streams"]


def run_decoder_hw(fmt: RLCFormat, streams, *, count_bits: int = 24, sim: str = "verilator",
                   build_root="build", seed: int = 0, idle: float = 0.0, stall: float = 0.0,
                   max_wait: int = 50) -> list[dict]:
    """Decode ``(words, n)`` streams on the decoder Verilog.

    Per stream: ``values``, ``fault`` (int), ``error``, ``fault_word`` (index
    of the word being decoded when the fault rose), ``words_used``, ``done``
    (went idle), ``waiting`` (ready for a word), ``cycles``.
    """
    job = {"seed": seed, "idle": idle, "stall": stall, "max_wait": max_wait,
           "streams": [{"n": int(n), "words": [int(w) for w in words]} for words, n in streams]}
    return _run("rlc_decoder", "decoder_job", fmt, job, count_bits=count_bits, sim=sim,
                build_root=build_root)["streams"]
