"""A user's cocotb testbench of the PE that `ommatidia generate --top pe` writes.

It knows the design only through the generated files: the Verilog, and the ports
document ``ommatidia_pe.ports.json`` (named by the environment variable PE_PORTS_JSON)
for the port names, the clock and reset, the widths, the bit ranges of the ``run``
payload's fields and the configuration. The stream orders and the meaning of the run
fields are those of the PE's description in the ports document (hw/pe.py).

Each test sends a few random runs with random idle cycles on the inputs and random
back-pressure on the output, and checks every psum against a plain-Python 1-D
convolution.
"""

import json
import os
import pathlib
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

PORTS = json.loads(pathlib.Path(os.environ["PE_PORTS_JSON"]).read_text())
PE = PORTS["configuration"]["pe"]


def port(name: str) -> dict:
    return next(p for p in PORTS["ports"] if p["name"] == name)


def pack(port_name: str, values: dict) -> int:
    """The payload of ``port_name`` with ``values`` at its fields' bit ranges."""
    word = 0
    for f in port(port_name)["fields"]:
        v = values[f["name"]]
        assert 0 <= v < 1 << f["width"], f"{f['name']} = {v} does not fit {f['width']} bits"
        word |= v << f["lsb"]
    return word


def signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def run_fields(S, W, U, p, q, load_filter, accumulate) -> dict:
    """The run payload's values; the derived ones as the PE describes them."""
    ring = PE["ifmap_spad_depth"] // q  # ifmap spad columns of q values
    return {"S": S, "W": W, "F": (W - S) // U + 1, "U": U, "p": p, "q": q,
            "filter_count": p * q * S, "ring": ring, "ring_entries": ring * q,
            "stride_entries": U * q, "load_filter": int(load_filter),
            "accumulate": int(accumulate)}


async def send(dut, stream: str, values, rng, idle: float):
    """Drive input ``stream``: set signals after the falling edge, read ready once it
    settled; a value transfers at the rising edge where valid and ready are high."""
    valid, ready = getattr(dut, f"{stream}__valid"), getattr(dut, f"{stream}__ready")
    payload = getattr(dut, f"{stream}__payload")
    bits = port(f"{stream}__payload")["width"]
    for value in values:
        await FallingEdge(dut.clk)
        while rng.random() < idle:
            valid.value = 0
            await FallingEdge(dut.clk)
        valid.value = 1
        payload.value = value & ((1 << bits) - 1)
        await ReadOnly()
        while not int(ready.value):
            await FallingEdge(dut.clk)
            await ReadOnly()
    await FallingEdge(dut.clk)
    valid.value = 0


async def receive(dut, stream: str, n: int, rng, stall: float) -> list[int]:
    """Take ``n`` values from output ``stream``, not ready a share ``stall`` of the cycles."""
    valid, ready = getattr(dut, f"{stream}__valid"), getattr(dut, f"{stream}__ready")
    payload = getattr(dut, f"{stream}__payload")
    bits = port(f"{stream}__payload")["width"]
    out = []
    while len(out) < n:
        await FallingEdge(dut.clk)
        take = rng.random() >= stall
        ready.value = int(take)
        await ReadOnly()
        if take and int(valid.value):
            out.append(signed(int(payload.value), bits))
    await FallingEdge(dut.clk)
    ready.value = 0
    return out


def random_run(rng):
    """A random run within the PE's limits (the configuration in the ports document)."""
    while True:
        S = rng.randint(1, min(PE["max_filter_width"], 5))
        q = rng.randint(1, 3)
        p = rng.randint(1, min(PE["psum_spad_depth"], 4))
        U = rng.randint(1, 2)
        W = rng.randint(S, min(PE["max_ifmap_width"], S + 12))
        if (p * q * S <= PE["filter_spad_depth"] and q * S <= PE["ifmap_spad_depth"]
                and U <= PE["ifmap_spad_depth"] // q):
            return S, W, U, p, q


async def start(dut):
    reset = PORTS["reset"]
    assert PORTS["clock"]["port"] == "clk" and reset["active"] == "high"
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for stream in PORTS["streams"]:
        if stream["direction"] == "input":
            getattr(dut, stream["valid"]).value = 0
        else:
            getattr(dut, stream["ready"]).value = 0
    getattr(dut, reset["port"]).value = 1
    await ClockCycles(dut.clk, 2)
    getattr(dut, reset["port"]).value = 0


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def random_runs(dut):
    """Random runs, bit-exact against the 1-D convolution."""
    seed = cocotb.RANDOM_SEED
    rng = random.Random(seed)
    dut._log.info(f"seed {seed}")
    await start(dut)
    bits = {k: PE[k] for k in ("act_bits", "weight_bits", "psum_bits")}
    for _ in range(8):
        S, W, U, p, q = random_run(rng)
        F = (W - S) // U + 1
        accumulate = rng.random() < 0.5
        amax, wmax = 1 << (bits["act_bits"] - 1), 1 << (bits["weight_bits"] - 1)
        ifmap = [[rng.randrange(-amax, amax) if rng.random() < 0.6 else 0 for _ in range(W)]
                 for _ in range(q)]
        filt = [[[rng.randrange(-wmax, wmax) for _ in range(S)] for _ in range(q)]
                for _ in range(p)]
        psum_in = [[rng.randrange(-amax, amax) if accumulate else 0 for _ in range(p)]
                   for _ in range(F)]
        expected = []
        for f in range(F):  # psum_out order: for f, for k
            for k in range(p):
                acc = psum_in[f][k] + sum(filt[k][c][s] * ifmap[c][f * U + s]
                                          for s in range(S) for c in range(q))
                expected.append(signed(acc & ((1 << bits["psum_bits"]) - 1), bits["psum_bits"]))
        run = pack("run__payload", run_fields(S, W, U, p, q, True, accumulate))
        idle, stall = rng.choice([0.0, 0.3]), rng.choice([0.0, 0.3])
        tasks = [
            cocotb.start_soon(send(dut, "run", [run], rng, 0.0)),
            # filter order: for s, for c, for k; ifmap order: for x, for c
            cocotb.start_soon(send(dut, "filter", [filt[k][c][s] for s in range(S)
                                                   for c in range(q) for k in range(p)],
                                   random.Random(rng.random()), idle)),
            cocotb.start_soon(send(dut, "ifmap", [ifmap[c][x] for x in range(W)
                                                  for c in range(q)],
                                   random.Random(rng.random()), idle)),
        ]
        if accumulate:
            tasks.append(cocotb.start_soon(send(dut, "psum_in",
                                                [v for row in psum_in for v in row],
                                                random.Random(rng.random()), idle)))
        got = await receive(dut, "psum_out", F * p, random.Random(rng.random()), stall)
        for t in tasks:
            await t
        assert got == expected, f"run S={S} W={W} U={U} p={p} q={q}: {got} != {expected}"
        await ClockCycles(dut.clk, 3)
        assert not int(dut.busy.value)
