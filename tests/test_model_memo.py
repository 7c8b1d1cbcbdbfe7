"""The analytical model's pass memo (`gen.model.memo`) and its speed.

Every distinct ``PASS`` is timed once per process; the memo must change nothing (the
same cycles per command, counters, accesses and arbiter state as timing every pass
afresh), and it and the mapper's array-wise ranking keep `ommatidia map` fast enough
to sweep.
"""

import dataclasses
import time

import numpy as np
import pytest

from ommatidia.gen.compiler import compile_layer
from ommatidia.gen.config import EYERISS, SMALL, TINY
from ommatidia.gen.model import predict, reset_state
from ommatidia.gen.model.memo import PASS_MEMO, unmemoized
from ommatidia.gen.prediction import layer_prediction
from ommatidia.nn.alexnet import ALEXNET
from ommatidia.sim.array_model import random_values

from helpers import random_data, random_layer


def _figures(pred) -> tuple:
    return (pred.cycles, pred.commands, pred.counters, pred.accesses, pred.state,
            pred.fallback_passes, pred.exact)


def test_memoized_equals_unmemoized(seed):
    """Random layers on `tiny` and `small`, run one after another (each from the arbiter
    state the one before left), with and without data: every figure equals the one
    timed without the memo; a second prediction times no pass again."""
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        state = None
        for _ in range(4):
            layer, p, q = random_layer(cfg, rng)
            ifmap, weights = random_data(cfg, rng, layer)
            prog = compile_layer(cfg, layer, ifmap, weights, p=p, q=q)
            for values in (True, False):
                with unmemoized():
                    fresh = predict(prog, values=values, state=state)
                memo = predict(prog, values=values, state=state)
                misses = PASS_MEMO.misses
                again = predict(prog, values=values, state=state)
                assert PASS_MEMO.misses == misses, "a memoized pass was timed again"
                assert _figures(memo) == _figures(fresh) == _figures(again), layer
            state = fresh.state


def test_memoized_equals_unmemoized_with_gon_packets(seed):
    """With 2 psums a GON packet the packets' cuts depend on the psums' GLB slots, which
    the memo keys on: random layers on `small` give every figure as without the memo."""
    cfg = dataclasses.replace(SMALL, noc=dataclasses.replace(SMALL.noc, gon_values=2,
                                                             psum_gin_values=2))
    rng = np.random.default_rng(seed)
    for _ in range(2):
        layer, p, q = random_layer(cfg, rng)
        ifmap, weights = random_data(cfg, rng, layer)
        prog = compile_layer(cfg, layer, ifmap, weights, p=p, q=q)
        with unmemoized():
            fresh = predict(prog, values=False)
        assert _figures(predict(prog, values=False)) == _figures(fresh), layer


def _random_state(cfg, rng) -> tuple:
    """An arbiter state (`reset_state` layout) with random pointers."""
    return (int(rng.integers(0, 5)), tuple(int(x) for x in rng.integers(0, cfg.cols, cfg.rows)),
            int(rng.integers(0, cfg.rows)))


def test_memoized_from_other_arbiter_states_equals_unmemoized(seed):
    """Random layers on `tiny` and `small`, each predicted from several random arbiter
    states one after another, so that passes the memo holds from one state serve another
    with the same `arbiter_key`: every figure (cycles per command, counters, the state
    left) equals the one timed afresh from that state."""
    rng = np.random.default_rng(seed)
    for cfg in (TINY, SMALL):
        for _ in range(2):
            layer, p, q = random_layer(cfg, rng)
            ifmap, weights = random_data(cfg, rng, layer)
            prog = compile_layer(cfg, layer, ifmap, weights, p=p, q=q)
            PASS_MEMO.clear()
            for _ in range(4):
                state = _random_state(cfg, rng)
                with unmemoized():
                    fresh = predict(prog, values=False, state=state)
                assert _figures(predict(prog, values=False, state=state)) == _figures(fresh), \
                    (layer, state)


def test_memoized_equals_unmemoized_with_bank_reads(seed):
    """With a GLB read port per bank the memo keys a pass on which of its reads share a
    bank (`Machine._banks_read`), so passes of other banks or layouts, from other
    per-bank arbiter states, are taken from it: random layers on `tiny` (4 and 2 banks),
    laid out at bank boundaries and packed as for one read port (senders sharing banks),
    each from random states, give every figure as timed afresh, and the counters and
    the state left of the cycle reference."""
    rng = np.random.default_rng(seed)
    PASS_MEMO.clear()
    served = 0
    for base in (TINY, dataclasses.replace(TINY, glb_banks=2)):
        cfg = dataclasses.replace(base, glb_bank_reads=True)
        for _ in range(2):
            layer, p, q = random_layer(cfg, rng)
            ifmap, weights = random_data(cfg, rng, layer)
            spread = compile_layer(cfg, layer, ifmap, weights, p=p, q=q)
            packed = dataclasses.replace(compile_layer(base, layer, ifmap, weights, p=p, q=q),
                                         cfg=cfg)
            for prog in (spread, packed):
                for _ in range(2):
                    glb, xptr, yptr = _random_state(cfg, rng)
                    state = (tuple(int(x) for x in rng.integers(0, 5, cfg.glb_banks)), xptr,
                             yptr)
                    with unmemoized():
                        fresh = predict(prog, values=False, state=state)
                    hits = PASS_MEMO.hits
                    got = predict(prog, values=False, state=state)
                    assert _figures(got) == _figures(fresh), (layer, state)
                    served += PASS_MEMO.hits > hits
                ref = predict(prog, values=False, state=state, reference=True)
                assert (got.counters, got.state) == (ref.counters, ref.state), (layer, state)
    assert served


def test_the_memo_keys_on_the_arbiter_state():
    """The same program from a state whose GLB port pointer orders the senders otherwise
    (the first pass's filter and ifmap senders) is
    timed again, not taken from the memo (the pointer changes its cycles); from one that
    differs only where the recurrences do not read it (the Y-bus pointer, the X-bus
    pointers of rows without a top PE) it is not, and gives the figures of timing it
    afresh. On `small`, whose passes the recurrences time (a pass they hand to the cycle
    reference, as on `eyeriss` where the GLB port does not settle, is keyed on the whole
    state)."""
    layer = dataclasses.replace(ALEXNET["CONV4"], C=8, M=8, H=8, W=8)
    rng = np.random.default_rng(0)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W))
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S))
    prog = compile_layer(SMALL, layer, x, w)
    PASS_MEMO.clear()
    predict(prog, values=False)
    misses = PASS_MEMO.misses
    glb, xptr, yptr = reset_state(SMALL)
    other = (0, xptr, yptr)  # after sender 0: 1, 2, 0, not 0, 1, 2 as after DMA_OUT (4)
    after = predict(prog, values=False, state=other)
    assert PASS_MEMO.misses > misses
    with unmemoized():
        assert _figures(predict(prog, values=False, state=other)) == _figures(after)
    misses = PASS_MEMO.misses
    same = (glb, xptr[:1] + tuple((x + 5) % SMALL.cols for x in xptr[1:]),
            (yptr + 3) % SMALL.rows)
    again = predict(prog, values=False, state=same)
    assert PASS_MEMO.misses == misses
    with unmemoized():
        assert _figures(predict(prog, values=False, state=same)) == _figures(again)


def test_the_memo_keys_on_the_filter_packets():
    """The same layer and mapping with 4 weights a filter packet is timed again: its
    filter loads take fewer cycles, as the model without the memo says."""
    layer = dataclasses.replace(ALEXNET["CONV5"], C=6, M=8, H=6, W=6)
    rng = np.random.default_rng(0)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W))
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S))
    wide = dataclasses.replace(TINY, noc=dataclasses.replace(TINY.noc, filter_gin_values=4))
    narrow = predict(compile_layer(TINY, layer, x, w, p=4, q=2), values=False)
    prog = compile_layer(wide, layer, x, w, p=4, q=2)
    got = predict(prog, values=False)
    with unmemoized():
        assert _figures(predict(prog, values=False)) == _figures(got)
    assert got.cycles < narrow.cycles


def test_alexnet_conv3_times_each_distinct_pass_once():
    """`layer_prediction` of AlexNet CONV3 on `eyeriss` (the mapper's search with its
    model probes, the program, the model's exact prediction), from an empty memo, times
    at most 14 passes of its 448 and of the probes' (6 probes, each one pass; the two
    mappings the search times whole, 4 passes each, the others taken from the memo; the
    program's passes all from the memo. 9 before the quick formula counted packets and
    streaming PEs, docs/performance.md step 23: 5 probes, no mapping timed whole, the
    program's 4): with a read port per GLB bank its senders read different banks, the
    recurrences time every pass (none falls back to the cycle reference) and the memo
    keys them on which requests share a bank, not on the banks: counted, not timed, so a
    loaded machine cannot fail it. The whole took 5.1 s of CPU, loaded (2.3 s and 7
    passes timed, beside the filter GLB; 2.8 s before the data's psums went by one
    matmul and one write a pass; 11.9 s and 13 timed with one read port, every pass on
    the reference)."""
    layer = ALEXNET["CONV3"]
    rng = np.random.default_rng(1)
    x = random_values(rng, 8, (layer.N, layer.C, layer.H, layer.W), 0.5)
    w = random_values(rng, 8, (layer.M, layer.C, layer.R, layer.S))
    PASS_MEMO.clear()
    start = time.process_time()
    out = layer_prediction(EYERISS, layer, x, w)
    print(f"AlexNet CONV3 mapped and modelled in {time.process_time() - start:.2f} s of CPU, "
          f"{out['model']['cycles']} cycles, {PASS_MEMO.misses} passes timed")
    assert PASS_MEMO.misses <= 14 and out["passes"] >= 20 * PASS_MEMO.misses, \
        (PASS_MEMO.misses, out["passes"])


@pytest.mark.parametrize("stream_filters", [True, False])
def test_alexnet_conv1_senders_sharing_a_bank_need_no_reference(stream_filters):
    """AlexNet CONV1 on `eyeriss` as `make bench` compiles it: its round fills the GLB
    packed, so the filter, ifmap and psum senders share GLB banks at the regions' edges;
    with the port granted in cycle order (`gen.model.causal`) the recurrences time all
    its passes, none falls back to the cycle-level reference (70 of 96 did, about 2 s of
    CPU each). With streaming PEs (`PEConfig.stream_filters`, on in `eyeriss`) too: 28
    of them did until a PE's operations not timed yet were bounded by the weights they
    read (`Bounds.op_lb`)."""
    from ommatidia.nn.bench import compile_bench_layer
    PASS_MEMO.clear()
    cfg = dataclasses.replace(EYERISS, pe=dataclasses.replace(EYERISS.pe,
                                                              stream_filters=stream_filters))
    pred = predict(compile_bench_layer(cfg, "CONV1", ALEXNET["CONV1"], seed=1))
    assert pred.fallback_passes == 0 and pred.passes == 96, (pred.fallback_passes, pred.passes)
