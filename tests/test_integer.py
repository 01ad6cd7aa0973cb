"""The integer recipe, checked against independent Python-int arithmetic."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golden.integer import (
    LOGIT_BITS,
    REQUANT_MAX_SHIFT,
    accumulator_bound,
    accumulator_width,
    avg_pool_acc,
    clamp_signed,
    clamp_unsigned,
    conv2d_acc,
    dorefa_odd_values,
    linear_acc,
    max_pool2,
    plane_sums,
    requantize,
    requantize_residual,
    residual_offset,
    round_half_up_shift,
    skip_tensor,
)

INT40 = st.integers(min_value=-(1 << 40), max_value=1 << 40)
SHIFTS = st.integers(min_value=1, max_value=REQUANT_MAX_SHIFT)


def floor_half_up(x, shift):
    """floor(x / 2**shift + 1/2) with Python's exact integer floor division."""
    return (2 * x + (1 << shift)) // (1 << (shift + 1))


@given(INT40, SHIFTS)
def test_round_half_up_shift_matches_exact_floor(x, shift):
    assert int(round_half_up_shift(np.int64(x), shift)) == floor_half_up(x, shift)


@given(st.data(), SHIFTS)
def test_round_half_up_shift_ties_go_up(data, shift):
    # (2j + 1) * 2**(shift-1) / 2**shift = j + 1/2 exactly: a tie, which rounds to j + 1.
    # j is bounded so that the tie still fits int64 (the accumulator type).
    limit = (1 << (62 - shift)) - 1
    j = data.draw(st.integers(min_value=-limit, max_value=limit))
    tie = (2 * j + 1) << (shift - 1)
    assert int(round_half_up_shift(np.int64(tie), shift)) == j + 1
    # one below the tie rounds down, one above rounds up
    assert int(round_half_up_shift(np.int64(tie - 1), shift)) == j
    assert int(round_half_up_shift(np.int64(tie + 1), shift)) == j + 1


def test_round_half_up_shift_is_not_ties_to_even():
    x = np.array([-6, -2, 2, 6, 10])  # -1.5, -0.5, 0.5, 1.5, 2.5 at shift 2
    assert round_half_up_shift(x, 2).tolist() == [-1, 0, 1, 2, 3]
    assert np.round(x / 4).tolist() != [-1, 0, 1, 2, 3]


def test_round_half_up_shift_per_element_shift():
    x = np.array([[3, 3], [5, 5]])
    assert round_half_up_shift(x, np.array([[1], [2]])).tolist() == [[2, 2], [1, 1]]


@pytest.mark.parametrize("shift", [0, -1])
def test_round_half_up_shift_rejects_small_shift(shift):
    with pytest.raises(ValueError):
        round_half_up_shift(np.array([1]), shift)


@given(st.lists(st.integers(min_value=-(1 << 50), max_value=1 << 50), min_size=1),
       st.integers(min_value=1, max_value=16))
def test_clamps_stay_in_range_and_keep_in_range_values(xs, bits):
    u = clamp_unsigned(np.array(xs), bits)
    s = clamp_signed(np.array(xs), bits)
    for x, cu, cs in zip(xs, u.tolist(), s.tolist(), strict=True):
        assert cu == min(max(x, 0), (1 << bits) - 1)
        assert cs == min(max(x, -(1 << (bits - 1))), (1 << (bits - 1)) - 1)


@pytest.mark.parametrize("wbits", range(2, 9))
def test_dorefa_odd_values_are_symmetric_odd_levels(wbits):
    n = (1 << wbits) - 1
    s = dorefa_odd_values(np.arange(n + 1), wbits)
    assert s.tolist() == list(range(-n, n + 1, 2))
    assert np.all(s % 2 != 0)


@pytest.mark.parametrize("wbits,abits,reduction", [(2, 2, 1), (4, 4, 288), (8, 4, 512),
                                                   (8, 8, 9), (3, 5, 100)])
def test_accumulator_width_is_minimal_and_sufficient(wbits, abits, reduction):
    bound = accumulator_bound(wbits, abits, reduction)
    assert bound == reduction * ((1 << wbits) - 1) * ((1 << abits) - 1)
    w = accumulator_width(wbits, abits, reduction)
    assert -(1 << (w - 1)) <= -bound and bound <= (1 << (w - 1)) - 1
    assert bound > (1 << (w - 2)) - 1  # one bit fewer would overflow


def requantize_one(acc, m, b, s, bits, signed):
    y = floor_half_up(m * acc + b, s)
    if signed:
        return min(max(y, -(1 << (bits - 1))), (1 << (bits - 1)) - 1)
    return min(max(y, 0), (1 << bits) - 1)


@given(st.data())
def test_requantize_matches_scalar_formula(data):
    channels = data.draw(st.integers(1, 4))
    bits = data.draw(st.integers(2, 8))
    signed = data.draw(st.booleans())
    out_bits = LOGIT_BITS if signed else bits
    acc = np.array(data.draw(st.lists(st.lists(st.integers(-(1 << 20), 1 << 20), min_size=3,
                                               max_size=3), min_size=channels,
                                      max_size=channels)))
    mult = data.draw(st.lists(st.integers(-(1 << 15) + 1, (1 << 15) - 1), min_size=channels,
                              max_size=channels))
    offset = data.draw(st.lists(st.integers(-(1 << 46), 1 << 46), min_size=channels,
                                max_size=channels))
    shift = data.draw(st.lists(st.integers(1, 47), min_size=channels, max_size=channels))
    got = requantize(acc, mult, offset, shift, out_bits, signed_out=signed)
    for c, i in itertools.product(range(channels), range(3)):
        want = requantize_one(int(acc[c, i]), mult[c], offset[c], shift[c], out_bits, signed)
        assert int(got[c, i]) == want


@given(st.data())
def test_requantize_residual_matches_scalar_formula(data):
    channels = data.draw(st.integers(1, 4))
    bits = data.draw(st.integers(2, 8))

    def per_channel(lo, hi):
        return data.draw(st.lists(st.integers(lo, hi), min_size=channels, max_size=channels))

    acc = np.array([per_channel(-(1 << 20), 1 << 20) for _ in range(3)]).T
    skip = np.array([per_channel(0, (1 << bits) - 1) for _ in range(3)]).T
    mult = per_channel(-(1 << 15) + 1, (1 << 15) - 1)
    skip_mult = per_channel(-(1 << 31) + 1, (1 << 31) - 1)
    offset = per_channel(-(1 << 38), 1 << 38)
    shift = per_channel(1, 47)
    got = requantize_residual(acc, mult, offset, skip_mult, skip, shift, bits)
    for c, i in itertools.product(range(channels), range(3)):
        b = offset[c] + skip_mult[c] * int(skip[c, i])
        assert int(got[c, i]) == requantize_one(int(acc[c, i]), mult[c], b, shift[c], bits,
                                                False)
    # without the skip term it is plain requantize
    zero = requantize_residual(acc, mult, offset, [0] * channels, skip, shift, bits)
    assert np.array_equal(zero, requantize(acc, mult, offset, shift, bits))


def test_residual_offset_is_per_channel_and_rejects_a_misshapen_skip():
    got = residual_offset([10, -10], [2, 3], np.array([[[1, 2]], [[3, 4]]]))
    assert got.tolist() == [[[12, 14]], [[-1, 2]]]
    with pytest.raises(ValueError, match="skip"):
        requantize_residual(np.zeros((2, 3)), [1, 1], [0, 0], [1, 1], np.zeros((2, 4)), [1, 1],
                            4)


def naive_conv(x, s, stride, padding):
    cout, cin, k, _ = s.shape
    h, w = x.shape[1:]
    ho = (h + 2 * padding - k) // stride + 1
    wo = (w + 2 * padding - k) // stride + 1
    out = [[[0] * wo for _ in range(ho)] for _ in range(cout)]
    for co, oy, ox in itertools.product(range(cout), range(ho), range(wo)):
        total = 0
        for ci, dy, dx in itertools.product(range(cin), range(k), range(k)):
            iy, ix = oy * stride + dy - padding, ox * stride + dx - padding
            if 0 <= iy < h and 0 <= ix < w:
                total += int(s[co, ci, dy, dx]) * int(x[ci, iy, ix])
        out[co][oy][ox] = total
    return out


@pytest.mark.parametrize("k,stride,padding,hw", [(3, 1, 1, 5), (3, 2, 1, 6), (1, 1, 0, 4),
                                                 (3, 2, 1, 5), (1, 2, 0, 5)])
def test_conv2d_acc_matches_naive_loops(k, stride, padding, hw):
    rng = np.random.default_rng(k * 100 + stride * 10 + hw)
    x = rng.integers(0, 16, size=(3, hw, hw))
    s = dorefa_odd_values(rng.integers(0, 16, size=(4, 3, k, k)), 4)
    assert conv2d_acc(x, s, stride, padding).tolist() == naive_conv(x, s, stride, padding)


def test_conv2d_acc_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="channels"):
        conv2d_acc(np.zeros((2, 4, 4)), np.ones((1, 3, 3, 3)), 1, 1)


def test_linear_acc_matches_naive_sum_and_flattens_chw():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(2, 3, 3))
    s = dorefa_odd_values(rng.integers(0, 256, size=(5, 18)), 8)
    flat = [int(v) for c in x for row in c for v in row]  # C, H, W order
    want = [sum(int(w) * a for w, a in zip(s[o], flat, strict=True)) for o in range(5)]
    assert linear_acc(x, s).tolist() == want
    with pytest.raises(ValueError, match="features"):
        linear_acc(np.zeros(17), s)


def naive_skip(src, shape, stride, offset):
    """skip[c][y][x] = src[c - o][y*s][x*s] where the source channel exists, else 0."""
    c_src = len(src)
    c, h, w = shape
    return [[[int(src[ch - offset][y * stride][x * stride]) if 0 <= ch - offset < c_src else 0
              for x in range(w)] for y in range(h)] for ch in range(c)]


@pytest.mark.parametrize("src_shape,shape,stride,offset", [
    ((4, 6, 6), (4, 6, 6), 1, 0),        # same shape: the skip is the source
    ((4, 6, 6), (8, 3, 3), 2, 2),        # option A: every second pixel, 2 + 2 zero channels
    ((4, 7, 7), (8, 4, 4), 2, 4),        # odd source plane, zero channels after only
    ((2, 5, 5), (5, 5, 5), 1, 1),        # channel offset without stride
])
def test_skip_tensor_matches_naive_addressing(src_shape, shape, stride, offset):
    rng = np.random.default_rng(sum(shape) + offset)
    src = rng.integers(0, 16, size=src_shape)
    got = skip_tensor(src, shape, stride, offset)
    assert got.tolist() == naive_skip(src, shape, stride, offset)
    # a leading batch axis passes through
    batch = np.stack([src, src + 1])
    assert skip_tensor(batch, shape, stride, offset)[1].tolist() == \
        naive_skip(src + 1, shape, stride, offset)


def test_skip_tensor_is_resnet_option_a():
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    rng = np.random.default_rng(3)
    src = rng.integers(0, 16, size=(16, 8, 8))
    planes = 32
    want = F.pad(torch.as_tensor(src)[None, :, ::2, ::2],
                 (0, 0, 0, 0, planes // 4, planes // 4))[0].numpy()
    assert np.array_equal(skip_tensor(src, (planes, 4, 4), 2, planes // 4), want)


@pytest.mark.parametrize("src_shape,shape,stride,offset,match", [
    ((4, 6, 6), (4, 4, 4), 2, 0, "cannot feed"),
    ((4, 6, 6), (4, 7, 6), 1, 0, "cannot feed"),
    ((4, 6, 6), (6, 3, 3), 2, 3, "do not fit"),
    ((4, 6, 6), (4, 3, 3), 3, 0, "stride"),
    ((4, 6, 6), (8, 3, 3), 2, -1, "offset"),
])
def test_skip_tensor_rejects_what_does_not_fit(src_shape, shape, stride, offset, match):
    with pytest.raises(ValueError, match=match):
        skip_tensor(np.zeros(src_shape), shape, stride, offset)


def test_max_pool2_matches_naive_max_over_windows():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 16, size=(3, 6, 4))
    want = [[[max(int(x[c, 2 * y + dy, 2 * xx + dx]) for dy in (0, 1) for dx in (0, 1))
              for xx in range(2)] for y in range(3)] for c in range(3)]
    assert max_pool2(x).tolist() == want
    assert max_pool2(np.stack([x, x])).shape == (2, 3, 3, 2)
    with pytest.raises(ValueError, match="even"):
        max_pool2(np.zeros((1, 5, 4)))


def test_avg_pool_acc_is_the_exact_sum_over_the_plane():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 16, size=(6, 8, 8))
    s = dorefa_odd_values(rng.integers(0, 256, size=(10, 6)), 8)
    sums = [sum(int(v) for row in x[c] for v in row) for c in range(6)]
    assert plane_sums(x).tolist() == sums
    want = [sum(int(s[o, c]) * sums[c] for c in range(6)) for o in range(10)]
    assert avg_pool_acc(x, s).tolist() == want
    with pytest.raises(ValueError, match="features"):
        avg_pool_acc(x[:5], s)
