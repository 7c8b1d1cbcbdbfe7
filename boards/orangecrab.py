"""OrangeCrab r0.2 25F: an LFE5U-25F-8MG285 at 44 MHz, from the board's 48 MHz oscillator
through the EHXPLLL (the `orangecrab` preset's 4x2 PEs of 4 MAC lanes routed at 45.88 MHz).

The board's USB port goes to the FPGA itself, not to a USB-serial chip, so the
host link is a UART on Feather pins 0 and 1 (a 3.3 V USB-serial adapter).
Pure data, like amaranth-boards' own board files;
`ommatidia.boards.board.BOARDS` makes it a `Board`.
"""

from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform

__all__ = ["BOARD"]

BOARD = dict(
    name="orangecrab-25f",
    title="OrangeCrab r0.2 25F (LFE5U-25F-8MG285)",
    platform=OrangeCrabR0_2_25FPlatform,
    preset="orangecrab",
    clock_mhz=44.0,
    dram_words=4096,
    target="ecp5-25f",
    uart_pins=("0", "1", ("io", 0)),
    uart_note="3.3 V USB-serial adapter on Feather pins 0 (rx, N17) and 1 (tx, M18)",
)
"""The `ommatidia.boards.board.Board` fields of the OrangeCrab."""
