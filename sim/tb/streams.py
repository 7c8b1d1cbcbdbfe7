"""cocotb stream drivers for generated Verilog, with random idle and back-pressure.

A port ``NAME`` of a component becomes ``NAME__valid``, ``NAME__ready`` and
``NAME__payload`` in the Verilog. Drivers change their signals only on the
falling edge and read the handshake in the read-only phase after it, when
combinational ``ready``/``valid`` have settled: what they read is what the
design sees at the next rising edge, on every simulator and from whatever
point a driver is called.
"""

from __future__ import annotations

import random

from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["StreamSource", "StreamSink", "to_unsigned", "to_signed"]


def to_unsigned(value: int, bits: int) -> int:
    return int(value) & ((1 << bits) - 1)


def to_signed(value: int, bits: int) -> int:
    value = int(value) & ((1 << bits) - 1)
    return value - (1 << bits) if value >> (bits - 1) else value


class _Port:
    def __init__(self, dut, name: str, clk, rng: random.Random | None, chance: float):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.bits = len(self.payload)
        self.clk = clk
        self.rng = rng or random.Random(0)
        self.chance = chance
        self.count = 0


class StreamSource(_Port):
    """Drive input stream ``name`` of ``dut``, idling before a send with probability ``idle``."""

    def __init__(self, dut, name, clk, rng=None, idle: float = 0.0):
        super().__init__(dut, name, clk, rng, idle)
        self.valid.value = 0

    async def send(self, values) -> None:
        for value in values:
            await FallingEdge(self.clk)
            while self.chance and self.rng.random() < self.chance:
                self.valid.value = 0
                await FallingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = to_unsigned(value, self.bits)
            await ReadOnly()
            while not int(self.ready.value):
                await FallingEdge(self.clk)
                await ReadOnly()
            self.count += 1
        await FallingEdge(self.clk)
        self.valid.value = 0


class StreamSink(_Port):
    """Take from output stream ``name`` of ``dut``, not ready with probability ``stall``."""

    def __init__(self, dut, name, clk, rng=None, stall: float = 0.0, signed: bool = False):
        super().__init__(dut, name, clk, rng, stall)
        self.signed = signed
        self.ready.value = 0

    async def recv(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            await FallingEdge(self.clk)
            ready = not (self.chance and self.rng.random() < self.chance)
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and int(self.valid.value):
                raw = int(self.payload.value)
                out.append(to_signed(raw, self.bits) if self.signed else raw)
        await FallingEdge(self.clk)
        self.ready.value = 0
        self.count += len(out)
        return out
