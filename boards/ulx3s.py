"""ULX3S 85F: an LFE5U-85F-6BG381 at the board's 25 MHz oscillator (no PLL: at the
EHXPLLL's next clock, 28.125 MHz, the `ulx3s` preset routed at 24.86 MHz; docs/fpga.md,
Clock).

The host link is the FTDI FT231X on the board's US1 USB port, the platform's
own ``uart`` resource. Pure data, like amaranth-boards' own board files;
`ommatidia.boards.board.BOARDS` makes it a `Board`.
"""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

__all__ = ["BOARD"]

BOARD = dict(
    name="ulx3s-85f",
    title="ULX3S 85F (LFE5U-85F-6BG381)",
    platform=ULX3S_85F_Platform,
    preset="ulx3s",
    clock_mhz=25.0,
    dram_words=16384,
    target="ecp5-85f",
    uart_note="FTDI FT231X (rx M1, tx L4), the board's US1 USB port",
)
"""The `ommatidia.boards.board.Board` fields of the ULX3S."""
