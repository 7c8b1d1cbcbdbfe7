"""The golden model against independent formulations (plain loop nests, matrix products)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ommatidia.sim import golden


def loop_conv(x, w, b, U, P, bits, relu, shift, act_bits):
    """CONV layer as the textbook loop nest, one output at a time, with Python integers."""
    n, c, h, wd = x.shape
    m, _, r, s = w.shape
    e, f = (h + 2 * P - r) // U + 1, (wd + 2 * P - s) // U + 1
    out = np.zeros((n, m, e, f), dtype=np.int64)
    mod = 1 << bits
    for ni in range(n):
        for mi in range(m):
            for ei in range(e):
                for fi in range(f):
                    acc = 0
                    for ci in range(c):
                        for i in range(r):
                            for j in range(s):
                                y, xx = ei * U + i - P, fi * U + j - P
                                if 0 <= y < h and 0 <= xx < wd:
                                    acc += int(x[ni, ci, y, xx]) * int(w[mi, ci, i, j])
                    if b is not None:
                        acc += int(b[mi])
                    acc = (acc + mod // 2) % mod - mod // 2
                    if relu:
                        acc = max(acc, 0)
                    if shift:
                        acc = (acc + (1 << (shift - 1))) // (1 << shift)
                    if act_bits:
                        acc = min(max(acc, -(1 << (act_bits - 1))), (1 << (act_bits - 1)) - 1)
                    out[ni, mi, ei, fi] = acc
    return out


@st.composite
def layers(draw):
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    P = draw(st.integers(0, 2))
    U = draw(st.integers(1, 3))
    h = draw(st.integers(max(1, r - 2 * P), 8))
    w = draw(st.integers(max(1, s - 2 * P), 8))
    n, c, m = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bits = draw(st.sampled_from([8, 16]))
    lim = 1 << (bits - 1)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(-lim, lim, (n, c, h, w))
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.5, 0.9]))] = 0
    wt = rng.integers(-lim, lim, (m, c, r, s))
    b = rng.integers(-lim, lim, m) if draw(st.booleans()) else None
    psum_bits = draw(st.sampled_from([2 * bits, 2 * bits + 2, 2 * bits + 8]))
    return x, wt, b, U, P, psum_bits, draw(st.booleans()), draw(st.integers(0, 6)), \
        draw(st.sampled_from([None, bits]))


@settings(max_examples=150, deadline=None)
@given(layers())
def test_conv2d_matches_loop_nest(layer):
    x, w, b, U, P, psum_bits, relu, shift, act_bits = layer
    got = golden.conv2d(x, w, b, stride=U, padding=P, psum_bits=psum_bits, relu=relu,
                        shift=shift, act_bits=act_bits)
    assert np.array_equal(got, loop_conv(x, w, b, U, P, psum_bits, relu, shift, act_bits))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_fc_is_a_matrix_product_modulo(n, k, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**15, 2**15, (n, k))
    w = rng.integers(-2**15, 2**15, (m, k))
    bits = 24
    expect = [[((sum(int(a) * int(b) for a, b in zip(x[i], w[j])) + 2**23) % 2**24) - 2**23
               for j in range(m)] for i in range(n)]
    assert golden.fc(x, w, psum_bits=bits).tolist() == expect


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(0, 10),
       st.integers(1, 3), st.booleans(), st.integers(0, 2**32 - 1))
def test_row_conv1d_matches_loop(p, q, S, extra, U, with_psum, seed):
    rng = np.random.default_rng(seed)
    W = S + extra
    x = rng.integers(-128, 128, (q, W))
    w = rng.integers(-128, 128, (p, q, S))
    F = (W - S) // U + 1
    pin = rng.integers(-2**20, 2**20, (p, F)) if with_psum else None
    got = golden.row_conv1d(x, w, stride=U, psum_in=pin, psum_bits=18)
    for k in range(p):
        for f in range(F):
            acc = (int(pin[k, f]) if with_psum else 0) + sum(
                int(w[k, c, s]) * int(x[c, f * U + s]) for c in range(q) for s in range(S))
            assert got[k, f] == ((acc + 2**17) % 2**18) - 2**17
    zeros = sum(int(x[c, f * U + s] == 0) for f in range(F) for s in range(S) for c in range(q))
    assert golden.row_zero_macs(x, p, S, U) == p * zeros


def test_output_stage_order_and_rounding():
    psums = np.array([[[[3, -3, 5, -5, 1000, -1000, 2, -1]]]])
    # shift 1 rounds half up: 1.5 -> 2, -1.5 -> -1, 2.5 -> 3, -2.5 -> -2; then saturate to 8 bits.
    assert golden.output_stage(psums, shift=1, act_bits=8).ravel().tolist() == \
        [2, -1, 3, -2, 127, -128, 1, 0]
    # ReLU before shift, bias before ReLU.
    assert golden.output_stage(psums, bias=np.array([-3]), relu=True, shift=1).ravel().tolist() == \
        [0, 0, 1, 0, 499, 0, 0, 0]
    assert np.array_equal(golden.output_stage(psums), psums)


def test_wrap_is_modular():
    assert golden.wrap([127, 128, -129, 255, 256], 8).tolist() == [127, -128, 127, -1, 0]
    assert golden.wrap(np.array([2**40 + 5]), 32).tolist() == [5]


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="C = 2"):
        golden.conv2d(np.zeros((1, 3, 4, 4), int), np.zeros((1, 2, 3, 3), int))
    with pytest.raises(ValueError, match="does not fit"):
        golden.conv2d(np.zeros((1, 1, 2, 2), int), np.zeros((1, 1, 3, 3), int))
    with pytest.raises(ValueError, match="integers"):
        golden.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)))


@pytest.mark.parametrize("bits, k", [(8, 1024), (8, 1025), (16, 3), (28, 4)])
def test_int_matmul_is_exact_at_its_format_bounds(seed, bits, k):
    """`int_matmul` against products summed in Python integers: random ``bits``-bit values
    and one sum of ``k - 1`` products of the most negative value and 1 * 1, which a float
    format too narrow for it rounds (8 bits and 1024 terms: the largest float32 case,
    2**24 - 2**14 + 1; 1025 terms: 2**24 + 1, float64; 28 bits: past 2**53, int64)."""
    from ommatidia.gen.arith import int_matmul
    rng = np.random.default_rng(seed)
    lo = -(1 << (bits - 1))
    a = rng.integers(lo, -lo, (2, 3, k))
    b = rng.integers(lo, -lo, (2, k, 2))
    a[0, 0, :-1], b[0, :-1, 0] = lo, lo
    a[0, 0, -1], b[0, -1, 0] = 1, 1
    want = [[[sum(int(a[n, i, x]) * int(b[n, x, j]) for x in range(k)) for j in range(2)]
             for i in range(3)] for n in range(2)]
    assert want[0][0][0] == (k - 1) * lo * lo + 1
    got = int_matmul(a, b, bits, bits)
    assert got.dtype == np.int64
    assert got.tolist() == want
