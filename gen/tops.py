"""The components `ommatidia generate --top NAME` can emit, built from an `ArrayConfig`."""

from __future__ import annotations

from typing import Callable

from .config import ArrayConfig

__all__ = ["TOPS", "build_top", "build_verilog_top", "companion_files", "write_companions"]


def _pe(cfg: ArrayConfig):
    from ommatidia.hw.pe import PE
    return PE(cfg.pe, cfg.noc.filter_gin_values, cfg.noc.ifmap_gin_values)


def _gin(cfg: ArrayConfig):
    from amaranth import signed
    from ommatidia.hw.noc import GIN
    return GIN(cfg.rows, cfg.cols, signed(cfg.pe.act_bits), cfg.noc.row_id_bits,
               cfg.noc.col_id_bits)


def _gon(cfg: ArrayConfig):
    from amaranth import signed
    from ommatidia.hw.noc import GON
    return GON(cfg.rows, cfg.cols, signed(cfg.pe.psum_bits))


def _array(cfg: ArrayConfig):
    from ommatidia.hw.array import PEArray
    return PEArray(cfg)


def _glb(cfg: ArrayConfig):
    from ommatidia.hw.glb import GLB
    return GLB(cfg, readers=5, writers=3)


def _pass(cfg: ArrayConfig):
    from ommatidia.hw.engines import PassEngine
    return PassEngine(cfg)


def _rlc_encoder(cfg: ArrayConfig):
    from ommatidia.hw.rlc import RLCEncoder
    return RLCEncoder(cfg.rlc)


def _rlc_decoder(cfg: ArrayConfig):
    from ommatidia.hw.rlc import RLCDecoder
    return RLCDecoder(cfg.rlc)


def _accelerator(cfg: ArrayConfig):
    from ommatidia.hw.top import Accelerator
    return Accelerator(cfg)


def _system(cfg: ArrayConfig):
    from ommatidia.hw.system import DRAM_WORDS, System
    return System(cfg, DRAM_WORDS)


def _axi(cfg: ArrayConfig):
    from ommatidia.hw.axi import AXIAccelerator
    return AXIAccelerator(cfg)


def _uart_bridge(cfg: ArrayConfig):
    from ommatidia.hw.bridge import UARTBridge
    from ommatidia.hw.top import COUNTERS
    from ommatidia.hw.uart import uart_divisor
    return UARTBridge(len(COUNTERS), cfg.dram_bits, 32,
                      divisor=uart_divisor(cfg.clock_mhz * 1e6, 115200))


TOPS: dict[str, tuple[Callable[[ArrayConfig], object], str]] = {
    "pe": (_pe, "one processing element (filter/ifmap/psum spads, MAC, zero gating)"),
    "gin": (_gin, "the ifmap global input network: Y-bus, X-buses, multicast controllers"),
    "gon": (_gon, "the global output network: psums from every PE to one stream"),
    "array": (_array, "the PE array: PEs, filter/ifmap/psum GINs, local psum links, GON"),
    "glb": (_glb, "the global buffer: banked SRAM, one read (or one per bank) and one write port, "
            "round-robin"),
    "pass": (_pass, "GLB + filter/ifmap/psum senders + GON receiver + PE array + DMA in/out"),
    "rlc-encoder": (_rlc_encoder, "run-length encoder of activations: values in, RLC words out"),
    "rlc-decoder": (_rlc_decoder, "run-length decoder of activations: RLC words in, values out"),
    "accelerator": (_accelerator, "controller + pass engine: runs a layer's program from DRAM"),
    "system": (_system, "accelerator + behavioural DRAM (512 KiB) + host port, for simulation"),
    "axi": (_axi, "accelerator + AXI4 DRAM master (64-bit, bursts up to 256 beats) + "
                  "AXI4-Lite control slave (docs/axi.md)"),
    "uart-bridge": (_uart_bridge, "host link: UART rx/tx + command bridge to DRAM, start, "
                                  "status, counters (115200 baud)"),
}


def build_top(name: str, cfg: ArrayConfig):
    """Instantiate top ``name`` for ``cfg``; raises ValueError for an unknown name."""
    try:
        factory, _ = TOPS[name]
    except KeyError:
        raise ValueError(f"unknown top {name!r}; choose one of {', '.join(TOPS)}") from None
    return factory(cfg)


def build_verilog_top(name: str, cfg: ArrayConfig) -> tuple[object, str]:
    """Top ``name`` as `ommatidia generate` writes it, and the Verilog to append to its own.

    The same component as `build_top`, except that the system's DRAM is
    `ommatidia.hw.system.dram_verilog` (zeroed by a loop, as the simulation tests run it)
    rather than a `Memory` whose 65,536 initial words Yosys takes a minute to write.
    """
    if name != "system":
        return build_top(name, cfg), ""
    from ommatidia.hw.system import DRAM_WORDS, System, dram_verilog
    return System(cfg, DRAM_WORDS, verilog_dram=True), dram_verilog()


def companion_files(name: str, cfg: ArrayConfig, component) -> dict[str, str]:
    """Files written beside top ``name``'s Verilog (file name -> text): the AXI top's register
    map as a C header and a Python module (`ommatidia.gen.regmap`); none for the others."""
    if name != "axi":
        return {}
    from .regmap import files
    return files(cfg, component.data_width)


def write_companions(name: str, cfg: ArrayConfig, component, out_dir) -> list:
    """Write `companion_files` of top ``name`` into ``out_dir``; returns their paths."""
    import pathlib
    paths = []
    for file_name, text in companion_files(name, cfg, component).items():
        path = pathlib.Path(out_dir) / file_name
        path.write_text(text)
        paths.append(path)
    return paths
