"""iCEBreaker: an iCE40UP5K-SG48 at the board's 12 MHz oscillator, without the PLL.

The SB_PLL40 makes nothing between 12 and 16.125 MHz from 12 (its output starts at 16
MHz), and the board top routes at 15.3-16.5 MHz on the PLL's clocks (docs/fpga.md).

The host link is the FTDI's channel B, on the board's USB port, so the
platform's own ``uart`` resource serves. Pure data, like amaranth-boards' own
board files; `ommatidia.boards.board.BOARDS` makes it a `Board`.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform

__all__ = ["BOARD"]

_NO_COLLISION = " ".join(f"*.{path}/t:$memrd_v2" for path in (
    "top.system", "accel.prefetch", "accel.prefetch_head", "bridge.fifo"))
"""The read ports of the DRAM, the program prefetch's two FIFOs and the bridge's FIFO."""

BOARD = dict(
    name="icebreaker",
    title="iCEBreaker (iCE40UP5K-SG48)",
    platform=ICEBreakerPlatform,
    preset="icebreaker",
    clock_mhz=12.0,
    dram_words=512,
    target="ice40-up5k",
    uart_note="FTDI channel B (rx pin 6, tx pin 9), the board's USB port",
    synth_opts=("-dffe_min_ce_use", "8"),
    synth_script=(
        # A block RAM read of the word written in the same cycle is undefined on the
        # iCE40, so Yosys keeps the written word and a multiplexer beside each memory to
        # return the old one (about 130 flip-flops for a 64-bit memory). The program
        # prefetch's FIFOs and the bridge's never read the word they write in a cycle
        # (it is empty or full then), nor the DRAM (the bridge reads or writes; the
        # accelerator's reads and its DMAOut's writes meet only in a program racing
        # a background DMA_OUT, which the compiler does not emit;
        # tests/test_top.py::test_dma_out_beside_a_pass_on_other_banks).
        f"select -assert-count 4 {_NO_COLLISION}",
        f"setparam -set COLLISION_X_MASK 1'1 {_NO_COLLISION}",
        # The PE's filter spad banks in block RAM instead of flip-flops.
        'setattr -set ram_style "block" m:filter_spad_*',
    ),
)
"""The `ommatidia.boards.board.Board` fields of the iCEBreaker."""
