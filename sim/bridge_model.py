"""A dictionary DRAM behind the DRAM ports of `ommatidia.hw.bridge.HostBridge`, for simulator tests.

`DictDRAM` serves ``mem_w`` (word writes) and ``mem_raddr`` / ``mem_rdata``
(word reads, one outstanding, in order) from a Python dict, with random
stalls before each write and read and a random read latency. It checks the
stream rules on the way: a write's payload and a read's address must hold
while they wait. Its testbenches wake on events, not every cycle, so long
host transfers simulate quickly.
"""

from __future__ import annotations

import random

from .uart_model import wait_cycles

__all__ = ["DictDRAM"]


class DictDRAM:
    """Word-addressed DRAM model on a bridge's ``mem_w``, ``mem_raddr`` and ``mem_rdata``.

    Parameters
    ----------
    port
        An object with the bridge's ``mem_w``, ``mem_raddr`` and ``mem_rdata``
        (the bridge itself or a component exposing them).
    rng : random.Random
        Source of stalls and latencies.
    max_stall : int
        Most cycles a request waits before it is accepted.
    max_latency : int
        Most cycles between an accepted read address and its data.
    default : callable(addr) -> int
        Value of a word never written.

    Attributes
    ----------
    words : dict[int, int]
        The contents.
    writes, reads : list[int]
        Addresses written and read, in order.
    """

    def __init__(self, port, rng: random.Random, *, max_stall: int = 3, max_latency: int = 4,
                 default=lambda addr: 0):
        self.port = port
        self.rng = rng
        self.max_stall = max_stall
        self.max_latency = max_latency
        self.default = default
        self.words: dict[int, int] = {}
        self.writes: list[int] = []
        self.reads: list[int] = []

    def add_to(self, sim) -> None:
        sim.add_testbench(self.write_port, background=True)
        sim.add_testbench(self.read_port, background=True)

    async def _accept(self, ctx, stream):
        """Wait for ``stream.valid``, stall, take the payload; check it held while stalled."""
        while not ctx.get(stream.valid):
            await ctx.changed(stream.valid)
        offered = ctx.get(stream.payload)
        await wait_cycles(ctx, self.rng.randint(0, self.max_stall))
        ctx.set(stream.ready, 1)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        ctx.set(stream.ready, 0)
        assert valid, "a stream dropped valid before its transfer"
        assert payload == offered, f"payload changed while waiting: {offered} -> {payload}"
        return payload

    async def write_port(self, ctx) -> None:
        while True:
            req = await self._accept(ctx, self.port.mem_w)
            self.words[req.addr] = req.data
            self.writes.append(req.addr)

    async def read_port(self, ctx) -> None:
        rdata = self.port.mem_rdata
        while True:
            addr = await self._accept(ctx, self.port.mem_raddr)
            self.reads.append(addr)
            await wait_cycles(ctx, self.rng.randint(0, self.max_latency))
            ctx.set(rdata.payload, self.words[addr] if addr in self.words else self.default(addr))
            ctx.set(rdata.valid, 1)
            while not (await ctx.tick().sample(rdata.ready))[2]:
                pass
            ctx.set(rdata.valid, 0)
