"""Stream drivers for Amaranth simulator testbenches, with random idle and back-pressure.

`amaranth.lib.stream` rules: a sender raises ``valid`` and holds ``payload``
until the clock edge where ``ready`` is high; a receiver takes ``payload`` on
that edge. The drivers insert random idle cycles before sends and random
not-ready cycles before receives, drawn from a seeded ``random.Random``.
"""

from __future__ import annotations

import random

__all__ = ["StreamSender", "StreamReceiver"]


class StreamSender:
    """Drive ``stream`` (the component's input) with payloads, idling with ``idle`` probability."""

    def __init__(self, stream, rng: random.Random | None = None, idle: float = 0.0):
        self.stream = stream
        self.rng = rng or random.Random(0)
        self.idle = idle

    async def send(self, ctx, payload) -> None:
        while self.idle and self.rng.random() < self.idle:
            await ctx.tick()
        ctx.set(self.stream.valid, 1)
        ctx.set(self.stream.payload, payload)
        await ctx.tick().until(self.stream.ready)
        ctx.set(self.stream.valid, 0)

    async def send_all(self, ctx, payloads) -> None:
        for payload in payloads:
            await self.send(ctx, payload)


class StreamReceiver:
    """Take payloads from ``stream`` (the component's output), stalling with ``stall``
    probability."""

    def __init__(self, stream, rng: random.Random | None = None, stall: float = 0.0):
        self.stream = stream
        self.rng = rng or random.Random(1)
        self.stall = stall

    async def recv(self, ctx):
        while self.stall and self.rng.random() < self.stall:
            await ctx.tick()
        ctx.set(self.stream.ready, 1)
        payload, = await ctx.tick().sample(self.stream.payload).until(self.stream.valid)
        ctx.set(self.stream.ready, 0)
        return payload

    async def recv_n(self, ctx, n: int) -> list:
        return [await self.recv(ctx) for _ in range(n)]
