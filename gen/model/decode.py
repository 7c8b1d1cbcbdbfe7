"""The program decoder: command words from the DRAM image (docs/program.md) to
commands, and the registers (unpacked with their `lib.data` layouts,
`ommatidia.hw.top.register_shapes`) and tag tables each ``PASS`` sees.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from amaranth import Shape
from amaranth.lib import data

__all__ = ["KINDS", "Command", "decode", "pass_registers", "unpacker"]

KINDS = ("filter", "ifmap", "psum")
"""The three senders (and their tag tables), in engine order."""


def _unpack_expr(shape, offset: int) -> str:
    """A Python expression of ``b`` (the bits) giving the value of ``shape`` at ``offset``."""
    if isinstance(shape, data.StructLayout):
        items = ", ".join(f"{name!r}: {_unpack_expr(f.shape, offset + f.offset)}"
                          for name, f in shape)
        return "{" + items + "}"
    if isinstance(shape, data.ArrayLayout):
        width = Shape.cast(shape.elem_shape).width
        items = ", ".join(_unpack_expr(shape.elem_shape, offset + k * width)
                          for k in range(shape.length))
        return "[" + items + "]"
    s = Shape.cast(shape)
    field = f"((b >> {offset}) & {(1 << s.width) - 1})"
    if s.signed:
        top = 1 << (s.width - 1)
        return f"(({field} ^ {top}) - {top})"
    return field


@functools.lru_cache(maxsize=256)
def unpacker(shape):
    """A function turning the bits of ``shape`` into ints, dicts and lists: one
    expression compiled from the layout (unpacking is the model's hottest path), once
    per layout in a process."""
    return eval("lambda b: " + _unpack_expr(shape, 0))


@dataclass(frozen=True)
class Command:
    """One decoded command: opcode name, word address, words it spans (command word and
    operands), and for ``SET`` the register and its raw value, for ``TAG`` / ``BIAS``
    the unpacked write, for ``DMA_IN`` its background bit, for ``DMA_OUT`` its background
    bit (0) and its bit 1 (beside the next ``PASS``)."""

    op: str
    pc: int
    words: int
    reg: str | None = None
    value: object = None


def decode(cfg, words: dict) -> list[Command]:
    """The commands of the program at DRAM word 0 of ``words`` (address -> word), up to
    and including ``DONE``. Raises ValueError on an unknown opcode or register, as the
    controller stops with ``error`` there."""
    from ommatidia.hw.dma import bias_write_layout
    from ommatidia.hw.engines import tag_write_layout
    from ommatidia.hw.top import REGISTERS, Opcode
    tag_un, bias_un = unpacker(tag_write_layout(cfg)), unpacker(bias_write_layout(cfg))
    pc, out = 0, []
    while True:
        word = words.get(pc, 0)
        op, low = word >> 56, word & ((1 << 56) - 1)
        if op == Opcode.SET:
            reg, k = low & 0xff, (low >> 8) & 0xffff
            if reg >= len(REGISTERS):
                raise ValueError(f"SET of register {reg} at word {pc}: there are "
                                 f"{len(REGISTERS)} registers")
            value = sum(words.get(pc + 1 + j, 0) << (64 * j) for j in range(k))
            out.append(Command("SET", pc, 1 + k, REGISTERS[reg], value))
            pc += 1 + k
            continue
        if op == Opcode.TAG:
            out.append(Command("TAG", pc, 1, None, tag_un(low)))
        elif op == Opcode.BIAS:
            out.append(Command("BIAS", pc, 1, None, bias_un(low)))
        elif op in (Opcode.DMA_OUT, Opcode.DMA_IN):
            out.append(Command(Opcode(op).name, pc, 1, None, low & (3 if op == Opcode.DMA_OUT
                                                                     else 1)))
        elif op in (Opcode.PASS, Opcode.DONE):
            out.append(Command(Opcode(op).name, pc, 1))
            if op == Opcode.DONE:
                return out
        else:
            raise ValueError(f"unknown opcode {op} at word {pc}")
        pc += 1


def pass_registers(cfg, words: dict) -> list[dict]:
    """The registers (unpacked: ints, dicts, lists) and the three tag tables
    (``"tags"``: index -> entry per sender) at each ``PASS`` of the program in
    ``words``, in program order."""
    from ommatidia.hw.top import REGISTERS, register_shapes
    shapes = register_shapes(cfg)
    unpack = {name: unpacker(shapes[name]) for name in REGISTERS}
    regs = {name: unpack[name](0) for name in REGISTERS}
    tags = [dict() for _ in KINDS]
    out = []
    for cmd in decode(cfg, words):
        if cmd.op == "SET":
            regs[cmd.reg] = unpack[cmd.reg](cmd.value)
        elif cmd.op == "TAG":
            tags[cmd.value["engine"]][cmd.value["index"]] = cmd.value["entry"]
        elif cmd.op == "PASS":
            out.append({**regs, "tags": [dict(t) for t in tags]})
    return out
