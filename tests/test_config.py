"""Configuration dataclasses: validation messages and presets."""

import dataclasses

import pytest

from ommatidia.gen.config import (EYERISS, PRESETS, TINY, ArrayConfig, NoCConfig, PEConfig,
                                  RLCFormat, preset)


@pytest.mark.parametrize("kwargs, words", [
    (dict(act_bits=1), ["act_bits", "at least 2", "1"]),
    (dict(weight_bits=40), ["weight_bits", "at most 32", "40"]),
    (dict(act_bits=16, weight_bits=16, psum_bits=24),
     ["psum_bits", "act_bits + weight_bits", "24"]),
    (dict(max_filter_width=11, filter_spad_depth=8), ["filter_spad_depth", "one filter row", "8"]),
    (dict(max_filter_width=11, ifmap_spad_depth=10), ["ifmap_spad_depth", "11", "10"]),
    (dict(psum_spad_depth=0), ["psum_spad_depth", "at least 1", "0"]),
    (dict(max_ifmap_width=5), ["max_ifmap_width", "max_filter_width", "5"]),
    (dict(act_bits=8.0), ["act_bits", "integer", "8.0"]),
    (dict(counter_bits=65), ["PEConfig.counter_bits", "at most 64", "65"]),
])
def test_pe_config_rejects(kwargs, words):
    with pytest.raises(ValueError) as exc:
        PEConfig(**kwargs)
    for word in words:
        assert word in str(exc.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(rows=0), ["rows", "at least 1", "0"]),
    (dict(cols=-3), ["cols", "at least 1", "-3"]),
    (dict(rows=16), ["rows = 16", "broadcast", "row_id_bits = 4"]),
    (dict(cols=40), ["cols = 40", "broadcast", "col_id_bits = 5"]),
    (dict(glb_banks=7), ["glb_bytes", "multiple", "glb_banks"]),
    (dict(dram_bits=32), ["dram_bits = 32", "rlc.word_bits = 64"]),
    (dict(pe="big"), ["ArrayConfig.pe", "PEConfig"]),
    (dict(clock_mhz=0), ["clock_mhz", "positive"]),
    (dict(rlc=RLCFormat(level_bits=8)), ["level_bits = 8", "act_bits = 16"]),
    (dict(counter_bits=-1), ["ArrayConfig.counter_bits", "at least 0", "-1"]),
    (dict(dram_addr_bits=33), ["dram_addr_bits", "at most 32", "33"]),
    (dict(tag_depth=0), ["tag_depth", "at least 1", "0"]),
    (dict(rlc_codec=1), ["rlc_codec", "True or False", "1"]),
    (dict(glb_bank_reads="yes"), ["glb_bank_reads", "True or False", "yes"]),
])
def test_array_config_rejects(kwargs, words):
    with pytest.raises(ValueError) as exc:
        dataclasses.replace(EYERISS, **kwargs)
    for word in words:
        assert word in str(exc.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(run_bits=0), ["run_bits", "at least 1"]),
    (dict(pairs_per_word=4), ["word_bits", "85", "64"]),
])
def test_rlc_format_rejects(kwargs, words):
    with pytest.raises(ValueError) as exc:
        RLCFormat(**kwargs)
    for word in words:
        assert word in str(exc.value)


def test_rlc_format_parse():
    assert RLCFormat.parse("2,4,2,16") == RLCFormat(2, 4, 2, 16)
    with pytest.raises(ValueError, match="R,L,P,W"):
        RLCFormat.parse("5,16,3")


def test_noc_config_rejects():
    with pytest.raises(ValueError, match="row_id_bits"):
        NoCConfig(row_id_bits=0)


@pytest.mark.parametrize("name", ["filter_gin_values", "ifmap_gin_values", "gon_values",
                                  "psum_gin_values"])
@pytest.mark.parametrize("values, message", [(0, "at least 1"), (3, "power of two"),
                                             (128, "at most 64")])
def test_noc_config_rejects_packet_values(name, values, message):
    with pytest.raises(ValueError, match=f"NoCConfig.{name} .*{message}"):
        NoCConfig(**{name: values})


@pytest.mark.parametrize("depth, message", [(-1, "at least 0"), (65, "at most 64"),
                                            (2.0, "must be an integer")])
def test_noc_config_rejects_gon_queue(depth, message):
    with pytest.raises(ValueError, match=f"NoCConfig.gon_queue .*{message}"):
        NoCConfig(gon_queue=depth)


@pytest.mark.parametrize("depth, message", [(0, "at least 1"), (65, "at most 64"),
                                            (True, "must be an integer")])
def test_noc_config_rejects_psum_gin_queue(depth, message):
    with pytest.raises(ValueError, match=f"NoCConfig.psum_gin_queue .*{message}"):
        NoCConfig(psum_gin_queue=depth)


def test_filter_gin_values_fit_a_glb_word():
    """At most the weights of one GLB word: 4 16-bit weights of a 64-bit word on
    `eyeriss` without its filter GLB, 8 8-bit ones on `tiny`; with a filter GLB, whose
    words then hold a packet's weights (`eyeriss`: 8, two GLB words), its two halves
    must be whole filter GLB words."""
    eyeriss, tiny = preset("eyeriss"), preset("tiny")
    assert eyeriss.noc.filter_gin_values == 8 and eyeriss.filter_glb_bytes == 8192
    with pytest.raises(ValueError, match="noc.filter_gin_values = 8 must be at most the 4"):
        dataclasses.replace(eyeriss, filter_glb_bytes=0)
    dataclasses.replace(eyeriss, filter_glb_bytes=32)
    with pytest.raises(ValueError, match=r"filter_glb_bytes = 16 must be a multiple of "
                                         r"2 \* 2 \* dram_bits/8 = 32"):
        dataclasses.replace(eyeriss, filter_glb_bytes=16)
    with pytest.raises(ValueError, match=r"filter_glb_bytes = 32 must be a multiple of "
                                         r"2 \* 4 \* dram_bits/8 = 64"):
        dataclasses.replace(eyeriss, filter_glb_bytes=32,
                            noc=dataclasses.replace(eyeriss.noc, filter_gin_values=16))
    dataclasses.replace(tiny, noc=dataclasses.replace(tiny.noc, filter_gin_values=8))
    with pytest.raises(ValueError, match="at most the 8 weights"):
        dataclasses.replace(tiny, noc=dataclasses.replace(tiny.noc, filter_gin_values=16))


def test_ifmap_gin_values_fit_a_glb_word():
    """At most the activations of one GLB word: 4 16-bit ones of a 64-bit word on
    `eyeriss` (its preset), 8 8-bit ones on `tiny`."""
    eyeriss, tiny = preset("eyeriss"), preset("tiny")
    assert eyeriss.noc.ifmap_gin_values == 4
    with pytest.raises(ValueError, match="noc.ifmap_gin_values = 8 must be at most the 4 "
                                         "activations of one 64-bit GLB word"):
        dataclasses.replace(eyeriss, noc=dataclasses.replace(eyeriss.noc, ifmap_gin_values=8))
    dataclasses.replace(tiny, noc=dataclasses.replace(tiny.noc, ifmap_gin_values=8))
    with pytest.raises(ValueError, match="at most the 8 activations"):
        dataclasses.replace(tiny, noc=dataclasses.replace(tiny.noc, ifmap_gin_values=16))


def test_gon_values_fit_a_glb_word():
    """At most the psums of one GLB word: 2 32-bit psum slots of a 64-bit word on
    `eyeriss` (and on `tiny`, whose 24-bit psums take 32-bit slots)."""
    for name in ("eyeriss", "tiny"):
        cfg = preset(name)
        for name in ("gon_values", "psum_gin_values"):
            dataclasses.replace(cfg, noc=dataclasses.replace(cfg.noc, **{name: 2}))
            with pytest.raises(ValueError, match=f"noc.{name} = 4 must be at most the 2 psums"):
                dataclasses.replace(cfg, noc=dataclasses.replace(cfg.noc, **{name: 4}))


def test_dma_out_values():
    """The DMA_OUT takes 1 psum a cycle, or a GLB word's (2 on `eyeriss`, the only preset
    with it, and possible on `tiny`), and more than 1 only with the RLC codec and at most
    a word of pairs."""
    assert [name for name, cfg in PRESETS.items() if cfg.dma_out_values != 1] == ["eyeriss"]
    assert EYERISS.dma_out_values == 2 and ArrayConfig().dma_out_values == 1
    dataclasses.replace(TINY, dma_out_values=2)
    for values in (3, 4):
        with pytest.raises(ValueError, match=f"dma_out_values = {values} must be 1 or the 2 "
                                             f"psums of one 64-bit GLB word"):
            dataclasses.replace(EYERISS, dma_out_values=values)
    for values, message in ((0, "at least 1"), (True, "must be an integer")):
        with pytest.raises(ValueError, match=f"ArrayConfig.dma_out_values .*{message}"):
            dataclasses.replace(EYERISS, dma_out_values=values)
    with pytest.raises(ValueError, match="dma_out_values = 2 needs the RLC codec"):
        dataclasses.replace(EYERISS, rlc_codec=False)
    dataclasses.replace(EYERISS, rlc_codec=False, dma_out_values=1)
    with pytest.raises(ValueError, match="dma_out_values = 2 must be at most the "
                                         "rlc.pairs_per_word = 1 pairs"):
        dataclasses.replace(TINY, dma_out_values=2,
                            rlc=RLCFormat(run_bits=5, level_bits=8, pairs_per_word=1))


def test_eyeriss_preset_matches_the_chip():
    """Eyeriss v1 (JSSC 2017): 12x14 PEs, 16-bit, spads 224/12/24, GLB 100+8 kB, 25 banks
    of 512x64b."""
    cfg = preset("eyeriss")
    assert (cfg.rows, cfg.cols, cfg.num_pes) == (12, 14, 168)
    pe = cfg.pe
    assert (pe.act_bits, pe.weight_bits) == (16, 16)
    assert (pe.filter_spad_depth, pe.ifmap_spad_depth, pe.psum_spad_depth) == (224, 12, 24)
    assert cfg.glb_bytes + cfg.filter_glb_bytes == 108 * 1024
    assert (cfg.glb_banks, cfg.glb_bank_words, cfg.dram_bits) == (25, 512, 64)
    assert cfg.rlc == RLCFormat(5, 16, 3, 64)
    assert cfg.peak_gmacs == pytest.approx(33.6)
    assert cfg.noc.filter_gin_values == 8  # a 128-bit filter GIN (the chip: 64)
    assert cfg.noc.gon_values == cfg.noc.psum_gin_values == 2  # a 64-bit GON, psum GIN
    assert cfg.noc.ifmap_gin_values == 4  # a 64-bit ifmap GIN
    # With S = 3: p <= 24 filters and q <= 4 channels fit, as in the paper.
    assert cfg.pe.fits(S=3, p=24, q=3) and cfg.pe.fits(S=3, p=18, q=4)
    assert not cfg.pe.fits(S=3, p=25, q=1) and not cfg.pe.fits(S=3, p=1, q=5)


def test_presets_are_frozen_and_valid():
    assert set(PRESETS) >= {"eyeriss", "tiny"}
    assert TINY.num_pes < EYERISS.num_pes
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.rows = 5
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        preset("nope")


def test_lean_knob_defaults():
    """The defaults are the widths the hardware had before the knobs (48-bit counters,
    32-bit PE counters, 32-bit DRAM addresses, max(16, 2*(rows+cols)) tags, RLC codec)."""
    from ommatidia.hw.dma import DRAM_ADDR_BITS
    from ommatidia.hw.pe import COUNTER_BITS
    from ommatidia.hw.top import COUNTER_WIDTH
    for cfg in (EYERISS, TINY):
        assert (cfg.counter_bits, cfg.pe.counter_bits, cfg.dram_addr_bits) == (
            COUNTER_WIDTH, COUNTER_BITS, DRAM_ADDR_BITS)
        assert cfg.rlc_codec
    assert TINY.tags == max(16, 2 * (TINY.rows + TINY.cols)) == 16
    assert EYERISS.tags == 64 and ArrayConfig().tags == 2 * (12 + 14)
    assert dataclasses.replace(TINY, tag_depth=5).tags == 5
    lean = [name for name, cfg in PRESETS.items() if not cfg.rlc_codec or not cfg.counter_bits]
    assert lean == ["icebreaker"]
    assert [name for name, cfg in PRESETS.items() if cfg.glb_bank_reads] == ["eyeriss"]


def test_image_beyond_dram_addr_bits_is_rejected(seed):
    """A layer whose DRAM image the preset's DRAM addresses cannot reach is rejected by the
    compiler, naming the parameter."""
    import numpy as np
    from ommatidia.gen.compiler import compile_layer
    from ommatidia.gen.layer import ConvLayer
    from ommatidia.sim.array_model import random_values
    rng = np.random.default_rng(seed)
    layer = ConvLayer(N=1, C=1, M=1, H=3, W=3, R=3, S=3, U=1, P=0)
    x = random_values(rng, 8, (1, 1, 3, 3), 0.3)
    w = random_values(rng, 8, (1, 1, 3, 3))
    cfg = dataclasses.replace(TINY, dram_addr_bits=4)
    with pytest.raises(ValueError, match=r"ArrayConfig.dram_addr_bits = 4"):
        compile_layer(cfg, layer, x, w)
    assert compile_layer(dataclasses.replace(TINY, dram_addr_bits=9), layer, x, w).dram_words \
        <= 1 << 9
