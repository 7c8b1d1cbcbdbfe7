"""FPGA boards: what `ommatidia build` makes a bitstream for, and the registry of them.

A `Board` names its amaranth-boards platform, the preset sized to fit its FPGA
(`ommatidia.gen.config.PRESETS`), the clock the design runs at (made by the
FPGA's PLL from the board's oscillator, `ommatidia.boards.pll`), the depth of
the on-chip block RAM that stands in for DRAM, and the UART pins of the host link.
Each board's figures live in a module of their own (`ommatidia.boards.icebreaker`,
`ommatidia.boards.orangecrab`, `ommatidia.boards.ulx3s`); `BOARDS` collects them by name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from amaranth.build import Attrs
from amaranth_boards.resources import UARTResource

from ommatidia.boards import icebreaker, orangecrab, synth, ulx3s
from ommatidia.boards.pll import PLL, pll
from ommatidia.gen.config import ArrayConfig, check_int, preset

__all__ = ["Board", "BOARDS", "board", "larger_arrays", "LOADER_TOOLS"]

LOADER_TOOLS = ("dfu-suffix", "openFPGALoader", "iceprog")
"""Tools a platform runs to load or wrap a bitstream; not on PyPI, and not needed to build one."""


@dataclass(frozen=True)
class Board:
    """A board `ommatidia build` makes a bitstream for.

    Parameters
    ----------
    name : str
        Board name on the command line.
    title : str
        Board and FPGA, for reports.
    platform : type
        The amaranth-boards platform class.
    preset : str
        Name of the `ArrayConfig` preset sized for the FPGA.
    clock_mhz : float
        Clock of the design, which the FPGA's PLL makes exactly from the platform's
        default clock (the board oscillator, `osc_mhz`); the oscillator itself, without
        a PLL, when equal to it.
    dram_words : int
        Depth of the on-chip DRAM (block RAM) in 64-bit words.
    target : str
        The `ommatidia.boards.synth` target of the same FPGA (``ommatidia synth``).
    uart_pins : tuple or None
        ``(rx, tx, connector)`` for a UART on a connector, when the platform has
        no ``uart`` resource; None uses the platform's ``uart`` 0.
    uart_note : str
        Where the host plugs in.
    baud : int
        UART baud rate.
    synth_opts : tuple
        Extra ``synth_ice40``/``synth_ecp5`` options of the board's build.
    synth_script : tuple
        Yosys commands run on the design before synthesis (after ``chformal -remove``):
        attributes and parameters that steer how its memories map.
    array : tuple or None
        ``(rows, cols)`` replacing the preset's PE array (NoC IDs widened to fit), to
        find how large an array the part takes; None keeps the preset's.
    custom : ArrayConfig or None
        The whole configuration instead of the preset's (``ommatidia build --config``,
        ``--set``); None keeps the preset's (with ``array``).
    """

    name: str
    title: str
    platform: type
    preset: str
    clock_mhz: float
    dram_words: int
    target: str
    uart_note: str
    uart_pins: tuple | None = None
    baud: int = 115200
    synth_opts: tuple = ()
    synth_script: tuple = ()
    array: tuple | None = None
    custom: ArrayConfig | None = None

    def __post_init__(self):
        own = f"Board({self.name!r})"
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name or ""):
            raise ValueError(f"{own}.name must be lower-case letters, digits and '-'")
        preset(self.preset)
        check_int(own, "dram_words", self.dram_words, 1, 1 << 22)
        check_int(own, "baud", self.baud, 1)
        tgt = synth.target(self.target)
        platform = self.platform()
        if tgt.device != platform.device:
            raise ValueError(f"{own}.target {self.target} is a {tgt.device}, the board has a "
                             f"{platform.device}")
        osc_mhz = platform.default_clk_frequency / 1e6
        if self.clock_mhz != osc_mhz:
            try:
                pll(tgt.family, osc_mhz, self.clock_mhz, tolerance=0)
            except ValueError as exc:
                raise ValueError(f"{own}.clock_mhz: {exc}") from None
        if self.uart_pins is not None and len(self.uart_pins) != 3:
            raise ValueError(f"{own}.uart_pins must be (rx, tx, connector), "
                             f"not {self.uart_pins!r}")
        for field in ("synth_opts", "synth_script"):
            value = getattr(self, field)
            if not isinstance(value, tuple) or not all(isinstance(o, str) for o in value):
                raise ValueError(f"{own}.{field} must be a tuple of strings, not {value!r}")
        if self.array is not None:
            if not (isinstance(self.array, tuple) and len(self.array) == 2):
                raise ValueError(f"{own}.array must be (rows, cols), not {self.array!r}")
            check_int(own, "array rows", self.array[0], 1, 256)
            check_int(own, "array cols", self.array[1], 1, 256)
        if self.custom is not None and not isinstance(self.custom, ArrayConfig):
            raise ValueError(f"{own}.custom must be an ArrayConfig, not {self.custom!r}")

    @property
    def config(self) -> ArrayConfig:
        """The array this board builds, its ``clock_mhz`` the board's (a `--clock` included)."""
        if self.custom is not None:
            return self.custom
        cfg = preset(self.preset)
        if cfg.clock_mhz != self.clock_mhz:
            cfg = dataclasses.replace(cfg, clock_mhz=self.clock_mhz)
        if self.array is None:
            return cfg
        rows, cols = self.array
        noc = dataclasses.replace(
            cfg.noc, row_id_bits=max(cfg.noc.row_id_bits, (rows + 1).bit_length()),
            col_id_bits=max(cfg.noc.col_id_bits, (cols + 1).bit_length()))
        return dataclasses.replace(cfg, rows=rows, cols=cols, noc=noc)

    @property
    def family(self) -> str:
        return synth.target(self.target).family

    @property
    def osc_mhz(self) -> float:
        """The board oscillator, the PLL's input."""
        return self.platform().default_clk_frequency / 1e6

    @property
    def pll(self) -> PLL | None:
        """The PLL's dividers making `clock_mhz` from `osc_mhz`; None when the design runs
        at the oscillator's own clock."""
        if self.clock_mhz == self.osc_mhz:
            return None
        return pll(self.family, self.osc_mhz, self.clock_mhz, tolerance=0)

    def make_platform(self):
        """A build-only instance of the platform (no loader tools) with the UART resource."""
        cls = type(f"{self.platform.__name__}Build", (_BuildOnly, self.platform), {})
        platform = cls()
        if self.uart_pins is not None:
            rx, tx, conn = self.uart_pins
            platform.add_resources([UARTResource(0, rx=rx, tx=tx, conn=conn,
                                                 attrs=Attrs(IO_TYPE="LVCMOS33"))])
        return platform


class _BuildOnly:
    """Drops `LOADER_TOOLS` from a platform's required tools and build commands, and the
    debug Verilog from its files (``ommatidia generate`` writes Verilog)."""

    @property
    def file_templates(self):
        return {k: v for k, v in super().file_templates.items() if not k.endswith(".debug.v")}

    @property
    def required_tools(self):
        return [t for t in super().required_tools if t not in LOADER_TOOLS]

    @property
    def command_templates(self):
        return [c for c in super().command_templates if not any(t in c for t in LOADER_TOOLS)]


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board(**m.BOARD) for m in (icebreaker, orangecrab, ulx3s))}
"""Every board by name, from its module's ``BOARD``."""


def board(name: str) -> Board:
    """Look up a board by name."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}") from None


def larger_arrays(b: Board) -> list[Board]:
    """``b`` with one PE row more and with one PE column more: when neither fits and meets
    the clock, ``b``'s array is the largest grown from it."""
    cfg = b.config
    shapes = dict.fromkeys([(cfg.rows + 1, cfg.cols), (cfg.rows, cfg.cols + 1)])
    return [dataclasses.replace(b, array=shape) for shape in shapes]
