"""Configuration of an Ommatidia accelerator: frozen, self-validating dataclasses.

`PEConfig` sizes one processing element, `RLCFormat` the run-length code of
activations, `NoCConfig` the multicast tags, and `ArrayConfig` the whole
row-stationary array. Every constructor checks its invariants and raises a
`ValueError` that names the parameter, the value and the rule it breaks.
Presets (`PRESETS`) are copies of `EYERISS` with a few fields changed
(`dataclasses.replace`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import pathlib
import re
import tomllib
from dataclasses import dataclass, field

__all__ = [
    "PEConfig", "RLCFormat", "NoCConfig", "ArrayConfig",
    "EYERISS", "TINY", "SMALL", "ICEBREAKER", "ORANGECRAB", "ULX3S", "PRESETS", "preset",
    "configure", "read_config_file", "parse_sets", "config_fields", "config_from_fields",
    "config_toml",
]


def check_int(owner: str, name: str, value, lo: int, hi: int | None = None, *,
              integral: bool = False) -> None:
    """Raise ValueError unless ``value`` is an integer in ``lo..hi``, naming ``owner.name``.

    ``integral`` also accepts any `numbers.Integral` but bool (numpy's integers, as
    read from .npz files); otherwise only ``int``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integral else int):
        raise ValueError(f"{owner}.{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{owner}.{name} must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{owner}.{name} must be at most {hi}, not {value}")


@dataclass(frozen=True)
class PEConfig:
    """One processing element (PE) of the row-stationary array.

    Parameters
    ----------
    act_bits, weight_bits:
        Width of signed ifmap activations and filter weights.
    psum_bits:
        Width of signed partial sums; accumulation is modulo ``2**psum_bits``.
        At least ``act_bits + weight_bits`` so one product is exact.
    filter_spad_depth, ifmap_spad_depth, psum_spad_depth:
        Scratchpad depths in entries (Eyeriss: 224, 12, 24). A PE working on
        ``p`` filters and ``q`` channels of a filter row of length ``S`` needs
        ``p*q*S`` filter entries, ``q*S`` ifmap entries and ``p`` psum entries.
    max_filter_width:
        Longest filter row ``S`` the PE must support (11 for AlexNet CONV1).
    max_ifmap_width:
        Longest ifmap row (after padding) the PE must support; sizes counters.
    counter_bits:
        Width of the PE's performance counters (MACs, gated MACs, stalls), which
        count modulo ``2**counter_bits``; 0 leaves them out.
    lanes:
        MAC lanes of the PE (a power of two, at most 16, dividing ``psum_spad_depth``;
        Eyeriss v2's SIMD PE has 2): each ifmap value read multiplies ``lanes`` weights
        of the filters sharing it when a run's ``p`` is a multiple of ``lanes`` (else
        the run does one filter a cycle), from ``lanes`` filter spad banks (at least;
        more when a filter packet carries more weights, `ommatidia.hw.pe.PE`). The last
        (tap, channel)'s ``p`` operations, which take and emit psums one a cycle, run
        one filter each (`ommatidia.gen.model.pe.Schedule`).
    lut_mul_lanes:
        Lanes (the last ones) whose multiplier is shift-and-add logic instead of a
        multiply that synthesis maps to a DSP block: for FPGAs with fewer multipliers
        than MAC lanes (the OrangeCrab's ECP5-25F has 28). At most ``lanes``.
    stream_filters:
        Whether a run that loads filters computes while they come: an operation of its
        first output issues once the weights it reads are in, instead of every weight
        first (docs/preload.md).
    """

    act_bits: int = 16
    weight_bits: int = 16
    psum_bits: int = 32
    filter_spad_depth: int = 224
    ifmap_spad_depth: int = 12
    psum_spad_depth: int = 24
    max_filter_width: int = 11
    max_ifmap_width: int = 256
    counter_bits: int = 32
    lanes: int = 1
    lut_mul_lanes: int = 0
    stream_filters: bool = False

    def __post_init__(self):
        own = "PEConfig"
        check_int(own, "act_bits", self.act_bits, 2, 32)
        check_int(own, "weight_bits", self.weight_bits, 2, 32)
        check_int(own, "psum_bits", self.psum_bits, 2, 64)
        if self.psum_bits < self.act_bits + self.weight_bits:
            raise ValueError(
                f"PEConfig.psum_bits must be at least act_bits + weight_bits = "
                f"{self.act_bits + self.weight_bits} so that one product is exact, "
                f"not {self.psum_bits}")
        check_int(own, "max_filter_width", self.max_filter_width, 1, 64)
        check_int(own, "filter_spad_depth", self.filter_spad_depth, 1, 4096)
        if self.filter_spad_depth < self.max_filter_width:
            raise ValueError(
                f"PEConfig.filter_spad_depth must hold one filter row of "
                f"max_filter_width = {self.max_filter_width} entries, "
                f"not {self.filter_spad_depth}")
        check_int(own, "ifmap_spad_depth", self.ifmap_spad_depth, 1, 4096)
        if self.ifmap_spad_depth < self.max_filter_width:
            raise ValueError(
                f"PEConfig.ifmap_spad_depth must hold one ifmap window of "
                f"max_filter_width = {self.max_filter_width} entries, "
                f"not {self.ifmap_spad_depth}")
        check_int(own, "psum_spad_depth", self.psum_spad_depth, 1, 4096)
        check_int(own, "max_ifmap_width", self.max_ifmap_width, 1, 1 << 16)
        if self.max_ifmap_width < self.max_filter_width:
            raise ValueError(
                f"PEConfig.max_ifmap_width must be at least max_filter_width = "
                f"{self.max_filter_width}, not {self.max_ifmap_width}")
        check_int(own, "counter_bits", self.counter_bits, 0, 64)
        check_int(own, "lanes", self.lanes, 1, 16)
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"PEConfig.lanes must be a power of two, not {self.lanes}")
        if self.psum_spad_depth % self.lanes:
            raise ValueError(f"PEConfig.lanes = {self.lanes} must divide psum_spad_depth = "
                             f"{self.psum_spad_depth} (one psum spad bank a lane)")
        check_int(own, "lut_mul_lanes", self.lut_mul_lanes, 0, self.lanes)
        if not isinstance(self.stream_filters, bool):
            raise ValueError(f"PEConfig.stream_filters must be a bool, not "
                             f"{self.stream_filters!r}")

    @property
    def product_bits(self) -> int:
        """Width of one exact signed product."""
        return self.act_bits + self.weight_bits

    def fits(self, S: int, p: int, q: int) -> bool:
        """Whether ``p`` filters and ``q`` channels of a row of ``S`` fit the spads."""
        return (S <= self.max_filter_width and p * q * S <= self.filter_spad_depth
                and q * S <= self.ifmap_spad_depth and p <= self.psum_spad_depth)


@dataclass(frozen=True)
class RLCFormat:
    """Eyeriss run-length code of activations: (run, level) pairs packed in words.

    Each word holds ``pairs_per_word`` pairs of a ``run_bits`` zero count and a
    ``level_bits`` two's complement value, plus a term bit (bit
    ``word_bits - 1``) set in the last word of a stream.
    """

    run_bits: int = 5
    level_bits: int = 16
    pairs_per_word: int = 3
    word_bits: int = 64

    def __post_init__(self):
        own = "RLCFormat"
        check_int(own, "run_bits", self.run_bits, 1, 16)
        check_int(own, "level_bits", self.level_bits, 2, 32)
        check_int(own, "pairs_per_word", self.pairs_per_word, 1, 16)
        check_int(own, "word_bits", self.word_bits, 4, 256)
        need = self.pairs_per_word * (self.run_bits + self.level_bits) + 1
        if need > self.word_bits:
            raise ValueError(
                f"RLCFormat.word_bits must be at least pairs_per_word*(run_bits+level_bits)+1"
                f" = {need}, not {self.word_bits}")

    @property
    def pair_bits(self) -> int:
        return self.run_bits + self.level_bits

    @property
    def max_run(self) -> int:
        return (1 << self.run_bits) - 1

    @classmethod
    def parse(cls, text: str) -> "RLCFormat":
        """Parse ``"R,L,P,W"`` (run bits, level bits, pairs per word, word bits)."""
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError(f"RLC format must be R,L,P,W (four integers), not {text!r}")
        try:
            r, l, p, w = (int(x) for x in parts)
        except ValueError:
            raise ValueError(f"RLC format must be R,L,P,W (four integers), not {text!r}") from None
        return cls(run_bits=r, level_bits=l, pairs_per_word=p, word_bits=w)


@dataclass(frozen=True)
class NoCConfig:
    """Tag widths and bus widths of the multicast network-on-chip (GIN).

    Each X-bus has a row multicast controller (MC) with a ``row_id_bits`` ID
    and each PE a column MC with a ``col_id_bits`` ID; a packet carries a
    (row tag, column tag) and the all-ones tag is broadcast.

    ``filter_gin_values``: weights a filter GIN packet carries (a power of two, at
    most the weight slots of one GLB word, `ArrayConfig` checks; more with a filter GLB,
    whose words then hold ``filter_gin_values`` weights, several GLB words, so the
    filter sender reads that many a cycle): the filter sender packs consecutive weights
    of one GLB word (filter GLB word) and one tag, and the PE writes them into its
    filter spad in one cycle. Filters that stay in the GLB go at most a GLB word's
    weights a packet. 1 is one weight a cycle.

    ``ifmap_gin_values``: activations an ifmap GIN packet carries (a power of two, at
    most the activation slots of one GLB word): the ifmap sender packs consecutive
    channels of one ifmap column of one GLB word and one tag (at most ``q`` a packet),
    and the PE writes them into its ifmap spad in one cycle. 1 is one value a cycle.

    ``gon_values``: psums a GON packet carries (a power of two, at most the psum slots
    of one GLB word): a packer after each top PE gathers its consecutive psums of one
    aligned group of a GLB word, and the GON receiver writes them in one masked write.
    1 is one psum a cycle.

    ``psum_gin_values``: psums a psum GIN packet carries (likewise): the psum sender packs
    consecutive psums of one GLB word and one tag, and a queue at each PE hands them to
    the PE one a cycle. 1 is one psum a cycle.

    ``psum_gin_queue``: psum GIN packets the queue in front of each PE holds (its
    `PsumUnpacker`, only with ``psum_gin_values`` > 1), so the psum sender runs ahead of
    a bottom PE by that many packets while the PE adds the psums of the ones before.

    ``gon_queue``: GON packets a queue after each top PE holds (after its packer), so
    the top's MAC pipeline runs on while the GON's X-bus serves the other tops; 0 is no
    queue (the top waits for the GON's grant).
    """

    row_id_bits: int = 4
    col_id_bits: int = 5
    filter_gin_values: int = 1
    ifmap_gin_values: int = 1
    gon_values: int = 1
    psum_gin_values: int = 1
    gon_queue: int = 0
    psum_gin_queue: int = 2

    def __post_init__(self):
        check_int("NoCConfig", "row_id_bits", self.row_id_bits, 1, 16)
        check_int("NoCConfig", "col_id_bits", self.col_id_bits, 1, 16)
        check_int("NoCConfig", "gon_queue", self.gon_queue, 0, 64)
        check_int("NoCConfig", "psum_gin_queue", self.psum_gin_queue, 1, 64)
        for name in ("filter_gin_values", "ifmap_gin_values", "gon_values", "psum_gin_values"):
            value = getattr(self, name)
            check_int("NoCConfig", name, value, 1, 64)
            if value & (value - 1):
                raise ValueError(f"NoCConfig.{name} must be a power of two, not {value}")

    @property
    def row_broadcast(self) -> int:
        return (1 << self.row_id_bits) - 1

    @property
    def col_broadcast(self) -> int:
        return (1 << self.col_id_bits) - 1


@dataclass(frozen=True)
class ArrayConfig:
    """A whole row-stationary accelerator: PE array, NoC, GLB and DRAM port.

    Parameters
    ----------
    name:
        Preset name, for reports.
    rows, cols:
        Physical PE array (Eyeriss: 12 x 14).
    pe:
        The `PEConfig` of every PE.
    noc:
        Tag widths; every row and column must be addressable without using the
        broadcast tag, so ``rows < 2**row_id_bits`` and ``cols < 2**col_id_bits``.
    glb_bytes:
        Global buffer (GLB) size for ifmaps and psums, in bytes.
    glb_banks:
        Number of GLB banks.
    glb_bank_reads:
        Whether each GLB bank grants its own read a cycle (round-robin among the
        clients addressing it), so clients reading different banks are served in the
        same cycle; False: one read a cycle for the whole GLB.
    filter_glb_bytes:
        Filter GLB, in bytes (Eyeriss: 8 KiB): a memory of its own at the GLB word
        addresses after the GLB's, which only ``DMA_IN`` writes and only the filter
        sender reads, in two halves so that a background ``DMA_IN`` loads the next
        pass's filters into one while the current pass reads the other
        (docs/program.md). Filters that take more than a half sit in the GLB. 0: none.
        Its words are wide enough for a filter GIN packet (``noc.filter_gin_values``
        weights, `ommatidia.hw.glb.filter_glb_word` GLB words; ``DMA_IN`` writes one GLB
        word of one at a time), so it must be a multiple of two of them.
    dram_bits:
        Width of the DRAM port (Eyeriss: 64).
    rlc:
        `RLCFormat` of activations to and from DRAM.
    clock_mhz:
        Nominal core clock, for peak-throughput figures.
    counter_bits:
        Width of the accelerator's performance counters (`ommatidia.hw.top.COUNTERS`),
        which count modulo ``2**counter_bits``; the host link still sends 64 bits.
        0 leaves them out (they read 0), for the smallest FPGAs.
    dram_addr_bits:
        Width of a DRAM word address in the DMA, the program fetch and the host port;
        an image must fit ``2**dram_addr_bits`` words.
    tag_depth:
        Entries of each sender's tag table; None for ``max(16, 2*(rows + cols))``.
        The mapper only uses mappings whose deliveries fit it.
    rlc_codec:
        Whether the DMA has the RLC decoder and encoder (`ommatidia.hw.rlc`). Without
        them ifmaps sit in DRAM packed raw like filters and ofmaps come back packed
        in activation slots; ``rlc`` then only describes the (unused) code.
    rlc_decode_words:
        Whether the ``DMA_IN``'s RLC decoder hands the DMA a coded word's pairs a cycle
        (`ommatidia.hw.dma`): a DRAM word takes a cycle, or one per GLB word its pairs
        complete when more (the GLB takes a write a cycle); False: a pair a cycle.
    dma_out_values:
        Psums the ``DMA_OUT`` takes a cycle through the output stage and the RLC encoder:
        1, or the psums of one GLB word (a whole word a cycle, the encoder taking that
        many values and making up to that many pairs a cycle); more than 1 needs the
        RLC codec and at most ``rlc.pairs_per_word``.
    """

    name: str = "eyeriss"
    rows: int = 12
    cols: int = 14
    pe: PEConfig = field(default_factory=PEConfig)
    noc: NoCConfig = field(default_factory=NoCConfig)
    glb_bytes: int = 100 * 1024
    glb_banks: int = 25
    glb_bank_reads: bool = False
    filter_glb_bytes: int = 0
    dram_bits: int = 64
    rlc: RLCFormat = field(default_factory=RLCFormat)
    clock_mhz: float = 200.0
    counter_bits: int = 48
    dram_addr_bits: int = 32
    tag_depth: int | None = None
    rlc_codec: bool = True
    rlc_decode_words: bool = False
    dma_out_values: int = 1

    def __post_init__(self):
        own = "ArrayConfig"
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.+-]*",
                                                               self.name, re.ASCII):
            raise ValueError(f"ArrayConfig.name must be letters, digits and _.+- (it names "
                             f"build folders), not {self.name!r}")
        check_int(own, "rows", self.rows, 1, 256)
        check_int(own, "cols", self.cols, 1, 256)
        if not isinstance(self.pe, PEConfig):
            raise ValueError(f"ArrayConfig.pe must be a PEConfig, not {self.pe!r}")
        if not isinstance(self.noc, NoCConfig):
            raise ValueError(f"ArrayConfig.noc must be a NoCConfig, not {self.noc!r}")
        if not isinstance(self.rlc, RLCFormat):
            raise ValueError(f"ArrayConfig.rlc must be an RLCFormat, not {self.rlc!r}")
        if self.rows > self.noc.row_broadcast:
            raise ValueError(
                f"ArrayConfig.rows = {self.rows} needs row IDs 0..{self.rows - 1} below the "
                f"broadcast tag {self.noc.row_broadcast} of noc.row_id_bits = "
                f"{self.noc.row_id_bits}")
        if self.cols > self.noc.col_broadcast:
            raise ValueError(
                f"ArrayConfig.cols = {self.cols} needs column IDs 0..{self.cols - 1} below the "
                f"broadcast tag {self.noc.col_broadcast} of noc.col_id_bits = "
                f"{self.noc.col_id_bits}")
        check_int(own, "dram_bits", self.dram_bits, 8, 1024)
        if self.dram_bits != self.rlc.word_bits:
            raise ValueError(
                f"ArrayConfig.dram_bits = {self.dram_bits} must equal rlc.word_bits = "
                f"{self.rlc.word_bits}: one RLC word is one DRAM word")
        if self.rlc.level_bits < self.pe.act_bits:
            raise ValueError(
                f"ArrayConfig.rlc.level_bits = {self.rlc.level_bits} must hold an activation "
                f"of pe.act_bits = {self.pe.act_bits}")
        slots = self.dram_bits // _slot(self.pe.weight_bits)
        if self.noc.filter_gin_values > slots and not self.filter_glb_bytes:
            raise ValueError(
                f"ArrayConfig.noc.filter_gin_values = {self.noc.filter_gin_values} must be at "
                f"most the {slots} weights of one {self.dram_bits}-bit GLB word (without a "
                f"filter GLB, filter_glb_bytes = 0)")
        slots = self.dram_bits // _slot(self.pe.act_bits)
        if self.noc.ifmap_gin_values > slots:
            raise ValueError(
                f"ArrayConfig.noc.ifmap_gin_values = {self.noc.ifmap_gin_values} must be at "
                f"most the {slots} activations of one {self.dram_bits}-bit GLB word")
        slots = self.dram_bits // _slot(self.pe.psum_bits)
        for name in ("gon_values", "psum_gin_values"):
            if getattr(self.noc, name) > slots:
                raise ValueError(
                    f"ArrayConfig.noc.{name} = {getattr(self.noc, name)} must be at "
                    f"most the {slots} psums of one {self.dram_bits}-bit GLB word")
        check_int(own, "glb_banks", self.glb_banks, 1, 256)
        if not isinstance(self.glb_bank_reads, bool):
            raise ValueError(f"ArrayConfig.glb_bank_reads must be True or False, "
                             f"not {self.glb_bank_reads!r}")
        check_int(own, "glb_bytes", self.glb_bytes, 1, 1 << 26)
        check_int(own, "filter_glb_bytes", self.filter_glb_bytes, 0, 1 << 26)
        word_bytes = self.dram_bits // 8
        if self.glb_bytes % (self.glb_banks * word_bytes):
            raise ValueError(
                f"ArrayConfig.glb_bytes = {self.glb_bytes} must be a multiple of "
                f"glb_banks * dram_bits/8 = {self.glb_banks * word_bytes}")
        if self.filter_glb_bytes % (2 * word_bytes):
            raise ValueError(
                f"ArrayConfig.filter_glb_bytes = {self.filter_glb_bytes} must be a multiple "
                f"of 2 * dram_bits/8 = {2 * word_bytes} (two halves of whole words)")
        wide = max(1, self.noc.filter_gin_values * _slot(self.pe.weight_bits) // self.dram_bits)
        if self.filter_glb_bytes % (2 * wide * word_bytes):
            raise ValueError(
                f"ArrayConfig.filter_glb_bytes = {self.filter_glb_bytes} must be a multiple of "
                f"2 * {wide} * dram_bits/8 = {2 * wide * word_bytes} (two halves of whole filter "
                f"GLB words of the noc.filter_gin_values = {self.noc.filter_gin_values} weights)")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not (math.isfinite(self.clock_mhz) and self.clock_mhz > 0):
            raise ValueError(f"ArrayConfig.clock_mhz must be positive, not {self.clock_mhz!r}")
        check_int(own, "counter_bits", self.counter_bits, 0, 64)
        check_int(own, "dram_addr_bits", self.dram_addr_bits, 4, 32)
        if self.tag_depth is not None:
            check_int(own, "tag_depth", self.tag_depth, 1, 4096)
        if not isinstance(self.rlc_codec, bool):
            raise ValueError(f"ArrayConfig.rlc_codec must be True or False, "
                             f"not {self.rlc_codec!r}")
        if not isinstance(self.rlc_decode_words, bool):
            raise ValueError(f"ArrayConfig.rlc_decode_words must be True or False, "
                             f"not {self.rlc_decode_words!r}")
        check_int(own, "dma_out_values", self.dma_out_values, 1)
        psums = self.dram_bits // _slot(self.pe.psum_bits)
        if self.dma_out_values not in (1, psums):
            raise ValueError(
                f"ArrayConfig.dma_out_values = {self.dma_out_values} must be 1 or the {psums} "
                f"psums of one {self.dram_bits}-bit GLB word")
        if self.dma_out_values > 1 and not self.rlc_codec:
            raise ValueError(f"ArrayConfig.dma_out_values = {self.dma_out_values} needs the "
                             f"RLC codec (rlc_codec = True); without it at most 1")
        if self.dma_out_values > self.rlc.pairs_per_word:
            raise ValueError(
                f"ArrayConfig.dma_out_values = {self.dma_out_values} must be at most the "
                f"rlc.pairs_per_word = {self.rlc.pairs_per_word} pairs of an RLC word")

    @property
    def tags(self) -> int:
        """Entries of each sender's tag table (`tag_depth` or its default)."""
        if self.tag_depth is not None:
            return self.tag_depth
        return max(16, 2 * (self.rows + self.cols))

    @property
    def num_pes(self) -> int:
        return self.rows * self.cols

    @property
    def glb_bank_words(self) -> int:
        """Depth of one GLB bank in ``dram_bits`` words."""
        return self.glb_bytes // (self.glb_banks * self.dram_bits // 8)

    @property
    def macs_per_cycle(self) -> int:
        """Peak MACs a cycle: ``pe.lanes`` per PE."""
        return self.num_pes * self.pe.lanes

    @property
    def peak_gmacs(self) -> float:
        """Peak throughput: ``pe.lanes`` MACs per PE per cycle."""
        return self.macs_per_cycle * self.clock_mhz / 1000

    def describe(self) -> dict:
        """Flat summary of the parameters, for listings and reports."""
        return {
            "name": self.name, "array": f"{self.rows}x{self.cols}", "pes": self.num_pes,
            "act_bits": self.pe.act_bits, "weight_bits": self.pe.weight_bits,
            "psum_bits": self.pe.psum_bits,
            "spads (filter/ifmap/psum)": f"{self.pe.filter_spad_depth}/"
                                         f"{self.pe.ifmap_spad_depth}/{self.pe.psum_spad_depth}",
            "max S": self.pe.max_filter_width, "max W": self.pe.max_ifmap_width,
            "glb": f"{_size(self.glb_bytes)} in {self.glb_banks} banks"
                   + (f" + {_size(self.filter_glb_bytes)} filters"
                      if self.filter_glb_bytes else ""),
            "dram_bits": self.dram_bits,
            "filter GIN values/cycle": self.noc.filter_gin_values,
            "ifmap GIN values/cycle": self.noc.ifmap_gin_values,
            "GON values/cycle": self.noc.gon_values,
            "DMA_OUT psums/cycle": self.dma_out_values,
            "GON queue (packets)": self.noc.gon_queue,
            "psum GIN queue (packets)": self.noc.psum_gin_queue,
            "rlc (R,L,P,W)": f"{self.rlc.run_bits},{self.rlc.level_bits},"
                             f"{self.rlc.pairs_per_word},{self.rlc.word_bits}",
            "clock_mhz": self.clock_mhz, "peak GMAC/s": round(self.peak_gmacs, 2),
        }


def _slot(bits: int) -> int:
    """The power-of-two GLB slot (at least 8 bits) of a ``bits``-bit element."""
    return max(8, 1 << (bits - 1).bit_length())


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


EYERISS = ArrayConfig(filter_glb_bytes=8 * 1024, tag_depth=64, glb_bank_reads=True,
                      rlc_decode_words=True,
                      pe=PEConfig(stream_filters=True),
                      noc=NoCConfig(filter_gin_values=8, ifmap_gin_values=4, gon_values=2,
                                    psum_gin_values=2, gon_queue=8, psum_gin_queue=8),
                      dma_out_values=2)
"""Eyeriss v1 (JSSC 2017): 12x14 PEs, 16-bit data, spads 224/12/24, 108 KiB GLB. The
filter GLB (8 KiB, two halves) is a memory of its own, filled in the background. The
senders' tag tables hold 64 entries, so four 3x13 PE sets of AlexNet's CONV3-5 (15
ifmap rows each) stack in the 12 rows as on Eyeriss (the default, 2 * (rows + cols) =
52, holds three). The filter GIN carries a filter GLB word, eight 16-bit weights a
packet, the ifmap GIN one 64-bit GLB word, up to four 16-bit activations of a column a
packet (so CONV3-5 take q = 3-4 channels a PE without waiting on the ifmaps), and the
psum GIN and the GON two 32-bit psums a packet; a queue of 8 GON packets
after each PE holds a whole output's psums of a 16-filter PE (the depth that paid most on
AlexNet CONV1-5, docs/performance.md), and a queue of 8 psum GIN packets in front of
each PE lets the psum sender run ahead of the bottom PEs (likewise). Its GLB banks are
independent SRAMs, each granting a read a cycle (``glb_bank_reads``). Its PEs compute
while their filters load (``PEConfig.stream_filters``, docs/preload.md), and its
``DMA_OUT`` drains a GLB word of two psums a cycle (``dma_out_values``), so a background
one ends within the next pass. Assumed, not read
from the paper: its GIN and GON data bus widths could not be looked up here; 64 bits is
the width of Eyeriss's DRAM bus, GLB word and local psum link."""

TINY = dataclasses.replace(
    EYERISS, name="tiny", rows=3, cols=4, tag_depth=None, glb_bank_reads=False,
    rlc_decode_words=False,
    pe=PEConfig(act_bits=8, weight_bits=8, psum_bits=24, filter_spad_depth=48,
                ifmap_spad_depth=12, psum_spad_depth=8, max_filter_width=5,
                max_ifmap_width=32),
    noc=NoCConfig(row_id_bits=3, col_id_bits=3),
    glb_bytes=8 * 1024, glb_banks=4, filter_glb_bytes=0, dma_out_values=1,
    rlc=RLCFormat(run_bits=5, level_bits=8, pairs_per_word=3, word_bits=64),
    clock_mhz=50.0)
"""Small enough for fast tests: 3x4 PEs, 8-bit data."""

SMALL = dataclasses.replace(
    TINY, name="small", rows=6, cols=7,
    pe=dataclasses.replace(TINY.pe, filter_spad_depth=96, psum_spad_depth=16,
                           max_filter_width=7, max_ifmap_width=64),
    noc=NoCConfig(row_id_bits=3, col_id_bits=4),
    glb_bytes=32 * 1024, glb_banks=8)
"""A mid-size array: 6x7 PEs, 8-bit data."""

ICEBREAKER = dataclasses.replace(
    TINY, name="icebreaker", rows=1, cols=1,
    pe=PEConfig(act_bits=8, weight_bits=8, psum_bits=16, filter_spad_depth=12,
                ifmap_spad_depth=3, psum_spad_depth=4, max_filter_width=3, max_ifmap_width=8,
                counter_bits=0, lanes=4),
    noc=NoCConfig(row_id_bits=1, col_id_bits=1),
    glb_bytes=256, glb_banks=1, clock_mhz=12.0,
    counter_bits=0, dram_addr_bits=9, tag_depth=1, rlc_codec=False)
"""The iCEBreaker (iCE40UP5K): the whole board top (accelerator, UART bridge, 512-word
DRAM) fits only lean: one PE of 4 MAC lanes (4 MACs/cycle, 4 of the 8 SB_MAC16) with
16-bit psums and spads 12/3/4, no performance counters, no RLC codec, 9-bit DRAM
addresses, one-entry tag tables (a 1x1 array needs no more: the mapper's passes and
cycles are those of 4 entries), a 256-byte GLB. Measured: 5064 of 5280 logic cells,
15.11 MHz at the board's 12 (no PLL: from 12 MHz the SB_PLL40 makes 16.125 MHz at
least). One lane with 4-entry tag tables took 4757 cells before the program prefetch
and 5528 after it; a 1x2 array packed into 5202 cells and did not place, a 2x2 needed
6480. With the default knobs a 2x2 array needed 11640 cells."""

ORANGECRAB = dataclasses.replace(
    TINY, name="orangecrab", rows=4, cols=2,
    noc=NoCConfig(row_id_bits=3, col_id_bits=3, filter_gin_values=4, ifmap_gin_values=2),
    clock_mhz=44.0, counter_bits=32,
    pe=dataclasses.replace(TINY.pe, counter_bits=24, lanes=4, lut_mul_lanes=1))
"""The OrangeCrab 25F (ECP5-25F) at 44 MHz from the EHXPLLL (the board's oscillator is
48 MHz; docs/fpga.md, Clock): 4x2 PEs of 4 MAC lanes, 32 MACs/cycle, 1.41 GMAC/s. Ifmap
GIN packets of 2 activations feed the 4 lanes (a CONV3-like layer 152,550 -> 140,680
cycles): 21243 of 24288 LUT slots, Fmax 46.89 MHz. At 52
MHz it routed at 45.88 MHz (the filter sender's packets of 4 weights). The 25F has 28
MULT18X18D: three lanes of each PE multiply in one (24, and one for the UART bridge's
receiver), the fourth in logic (`PEConfig.lut_mul_lanes`; about 300 LUT4 for an 8x8
multiply), and filter packets carry 4 weights (a filter spad bank a lane). Before the
lanes it was 4x4 PEs of one lane (16 MACs/cycle, 18919 LUT4 slots, 17 multipliers, 54.12
MHz). Its counters are 32 bits wide and its PEs' 24 (a layer on the board's 4096 DRAM
words stays far below either): with 48- and 32-bit counters the 4x4 array with the
controller's program prefetch needed 24355 of the 25F's 24288 TRELLIS_COMB and did not
place."""

ULX3S = dataclasses.replace(
    TINY, name="ulx3s", rows=6, cols=6,
    noc=NoCConfig(row_id_bits=3, col_id_bits=3, filter_gin_values=4, gon_queue=2),
    pe=dataclasses.replace(TINY.pe, lanes=4),
    glb_bytes=32 * 1024, glb_banks=8, clock_mhz=25.0)
"""The ULX3S 85F (ECP5-85F) at its 25 MHz oscillator: 6x6 PEs of 4 MAC lanes, 144
MACs/cycle on 145 of the 85F's 156 MULT18X18D, 3.60 GMAC/s; filter packets of 4 weights
(a filter spad bank a lane) and a GON queue of 2 packets after each PE, which cuts the
GON's handshake across the array (without it the build routed at 21.75 MHz). Measured
(`ommatidia build --board ulx3s-85f`): 61581 of 83640 LUT slots, Fmax 25.32 MHz; at the
EHXPLLL's 28.125 MHz it routed at 24.86 (docs/fpga.md). Before the lanes it was 8x8 PEs
of one lane: 64 MACs/cycle, 1.60 GMAC/s, 88 % of the LUT slots, 30.50 MHz."""

PRESETS: dict[str, ArrayConfig] = {c.name: c for c in (EYERISS, SMALL, TINY, ICEBREAKER,
                                                       ORANGECRAB, ULX3S)}


def preset(name: str) -> ArrayConfig:
    """Look up a preset by name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None


# ---------------------------------------------------------------------------------------------
# A configuration from a preset, a TOML or JSON file and KEY=VALUE settings (README, Presets)

_SECTIONS = {"pe": PEConfig, "noc": NoCConfig, "rlc": RLCFormat}


def config_fields(cfg: ArrayConfig) -> dict:
    """The fields of ``cfg`` as a nested dict (``pe``, ``noc`` and ``rlc`` as dicts):
    what `configure` reads back."""
    return dataclasses.asdict(cfg)


def _kinds(cls) -> dict[str, str]:
    """Field name -> annotation (a string: this module uses postponed annotations)."""
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _parse_value(where: str, kind: str, text: str):
    """A --set value read as the field's type."""
    t = text.strip()
    if kind == "str":
        return t
    if kind == "bool":
        if t.lower() not in ("true", "false"):
            raise ValueError(f"{where} must be true or false, not {text!r}")
        return t.lower() == "true"
    if kind == "int | None" and t.lower() == "none":
        return None
    try:
        return float(t) if kind == "float" else int(t, 0)
    except ValueError:
        what = "a number" if kind == "float" else "an integer"
        raise ValueError(f"{where} must be {what}, not {text!r}") from None


def _check_keys(where: str, tree: dict, settings: bool) -> dict:
    """``tree`` with its keys checked against the fields (sections as dicts); --set
    strings (``settings``) read as the fields' types."""
    kinds, out = _kinds(ArrayConfig), {}
    for key, value in tree.items():
        if key not in kinds:
            raise ValueError(f"{where}: {key!r} is not a configuration field; the fields are "
                             f"{', '.join(kinds)} (pe.*, noc.*, rlc.* nested)")
        cls = _SECTIONS.get(key)
        if cls is None:
            if isinstance(value, dict):
                raise ValueError(f"{where}: {key} is a value, not a table")
            out[key] = _parse_value(f"{where} {key}", kinds[key], value) if settings else value
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {key} must be a table of {cls.__name__} fields "
                             f"({', '.join(_kinds(cls))}), not {value!r}")
        sub_kinds, sub = _kinds(cls), {}
        for k, v in value.items():
            if k not in sub_kinds:
                raise ValueError(f"{where}: {k!r} is not a {cls.__name__} field; its fields are "
                                 f"{', '.join(sub_kinds)}")
            sub[k] = _parse_value(f"{where} {key}.{k}", sub_kinds[k], v) if settings else v
        out[key] = sub
    return out


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return out


def read_config_file(path) -> dict:
    """The nested dict of a TOML (``.toml``) or JSON (``.json``) configuration file; ValueError
    naming the file when it cannot be read, is not valid or gives a key twice."""
    path = pathlib.Path(path)
    where = f"configuration file {path}"
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"{where} must end in .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{where} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{where} cannot be read: {exc.strerror}") from None
    try:
        tree = (tomllib.loads(text) if path.suffix == ".toml"
                else json.loads(text, object_pairs_hook=_no_duplicates))
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError included
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ValueError(f"{where} is not valid {kind}: {exc}") from None
    if not isinstance(tree, dict):
        raise ValueError(f"{where} must hold a table of fields, not {type(tree).__name__}")
    return _check_keys(where, tree, settings=False)


def parse_sets(sets) -> dict:
    """The nested dict of ``KEY=VALUE`` strings as given to ``--set`` (``rows=8``,
    ``pe.ifmap_spad_depth=24``), each value read as its field's type (``none`` for an
    optional integer's default, ``true``/``false``). A key given twice is an error."""
    tree, seen = {}, set()
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not all(parts) or len(parts) > 2:
            raise ValueError(f"--set takes KEY=VALUE or SECTION.KEY=VALUE (rows=8, "
                             f"pe.ifmap_spad_depth=24), not {item!r}")
        if key in seen:
            raise ValueError(f"--set {key} is given twice")
        seen.add(key)
        if len(parts) == 1:
            if isinstance(tree.get(key), dict):
                raise ValueError(f"--set {key} is a table of fields; set {key}.FIELD")
            tree[key] = value
        else:
            section = tree.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ValueError(f"--set {parts[0]} is a value, not a table")
            section[parts[1]] = value
    return _check_keys("--set", tree, settings=True)


def configure(base="eyeriss", file=None, sets=()) -> ArrayConfig:
    """The preset ``base`` (a name or an `ArrayConfig`) with the fields of configuration
    ``file`` (TOML or JSON, see `read_config_file`) and then the ``sets`` (``KEY=VALUE``,
    see `parse_sets`) replacing its own.

    The dataclasses validate the result with the presets' messages. A configuration that
    differs from its preset and is not named by the file or the settings is named
    ``<preset>-<6 hex digits of its fields>``, so builds and reports never mistake it for
    the preset.
    """
    cfg = preset(base) if isinstance(base, str) else base
    merged: dict = {}
    for tree in ([read_config_file(file)] if file is not None else []) + [parse_sets(sets)]:
        for key, value in tree.items():
            merged[key] = {**merged.get(key, {}), **value} if key in _SECTIONS else value
    return _replace(cfg, merged)


def config_from_fields(fields: dict) -> ArrayConfig:
    """The `ArrayConfig` of a nested dict of fields (`config_fields`, as JSON)."""
    return _replace(EYERISS, _check_keys("configuration fields", fields, settings=False))


def _replace(cfg: ArrayConfig, merged: dict) -> ArrayConfig:
    nested = {k: dataclasses.replace(getattr(cfg, k), **v) for k, v in merged.items()
              if k in _SECTIONS}
    out = dataclasses.replace(cfg, **{k: v for k, v in merged.items() if k not in _SECTIONS},
                              **nested)
    if out != cfg and "name" not in merged:
        fields = json.dumps(config_fields(dataclasses.replace(out, name="x")), sort_keys=True)
        digest = hashlib.sha1(fields.encode()).hexdigest()[:6]
        out = dataclasses.replace(out, name=f"{cfg.name}-{digest}")
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def config_toml(cfg: ArrayConfig) -> str:
    """``cfg`` as a TOML configuration file that `configure` reads back to ``cfg``."""
    fields = config_fields(cfg)
    lines = [f"# Ommatidia configuration {cfg.name}: {cfg.rows}x{cfg.cols} PEs"]
    for key, value in fields.items():
        if key in _SECTIONS:
            continue
        if value is None:
            lines.append(f"# {key} = none (the default; --set {key}=none)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key in _SECTIONS:
        lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in fields[key].items()]
    return "\n".join(lines) + "\n"
