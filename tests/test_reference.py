"""The integer reference against an independent computation, and batched against per-image."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from golden.image import Layer, ModelImage
from golden.integer import LOGIT_BITS
from golden.reference import (
    conv2d_acc_batch,
    linear_acc_batch,
    predict,
    predict_batch,
    quantize_input,
    run,
    run_batch,
    run_layer,
)


def random_image(seed, wbits=4, abits=4, input_bits=8):
    """conv 1x6x6 -> 8x6x6 -> conv s2 -> 8x3x3 -> fc 72 -> 5 logits, random constants."""
    rng = np.random.default_rng(seed)

    def consts(n, shift):
        # m' ~ 1/(typical accumulator): codes land in range rather than all clamped
        return (rng.integers(1 << 14, 1 << 15, size=n).astype(np.int16)
                * rng.choice([-1, 1], size=n).astype(np.int16),
                rng.integers(-(1 << (shift + 3)), 1 << (shift + 3), size=n),
                np.full(n, shift, dtype=np.uint8))

    m0, b0, s0 = consts(8, 22)
    m1, b1, s1 = consts(8, 20)
    m2, b2, s2 = consts(5, 14)
    return ModelImage(input_shape=(1, 6, 6), input_bits=input_bits, layers=[
        Layer("conv0", "conv", (1, 6, 6), (8, 6, 6), 8, input_bits, abits, "pact",
              rng.integers(0, 256, size=(8, 1, 3, 3)).astype(np.uint8), m0, b0, s0,
              kernel=3, stride=1, padding=1, alpha=2.0),
        Layer("conv1", "conv", (8, 6, 6), (8, 3, 3), wbits, abits, abits, "pact",
              rng.integers(0, 1 << wbits, size=(8, 8, 3, 3)).astype(np.uint8), m1, b1, s1,
              kernel=3, stride=2, padding=1, alpha=2.0),
        Layer("fc", "fc", (72,), (5,), 8, abits, LOGIT_BITS, "logits",
              rng.integers(0, 256, size=(5, 72)).astype(np.uint8), m2, b2, s2),
    ])


def residual_image(seed, wbits=4, abits=4):
    """conv 1x6x6 -> 8x6x6, conv 8 -> 8, conv 8 -> 8 + skip(conv0), fc 288 -> 5 logits."""
    rng = np.random.default_rng(seed)

    def consts(n, shift):
        return (rng.integers(1 << 14, 1 << 15, size=n).astype(np.int16)
                * rng.choice([-1, 1], size=n).astype(np.int16),
                rng.integers(-(1 << (shift + 3)), 1 << (shift + 3), size=n),
                np.full(n, shift, dtype=np.uint8))

    def conv(name, cin, wb, in_bits, shift, **kw):
        m, b, sh = consts(8, shift)
        return Layer(name, "conv", (cin, 6, 6), (8, 6, 6), wb, in_bits, abits, "pact",
                     rng.integers(0, 1 << wb, size=(8, cin, 3, 3)).astype(np.uint8), m, b, sh,
                     kernel=3, stride=1, padding=1, alpha=2.0, **kw)

    # skip_mult about +-1.5 output codes per skip code at S = 20: the skip matters
    skip_mult = (rng.uniform(-1.5, 1.5, size=8) * (1 << 20)).astype(np.int32)
    m3, b3, s3 = consts(5, 14)
    return ModelImage(input_shape=(1, 6, 6), input_bits=8, layers=[
        conv("conv0", 1, 8, 8, 22), conv("conv1", 8, wbits, abits, 20),
        conv("conv2", 8, wbits, abits, 20, skip=0, skip_mult=skip_mult),
        Layer("fc", "fc", (288,), (5,), 8, abits, LOGIT_BITS, "logits",
              rng.integers(0, 256, size=(5, 288)).astype(np.uint8), m3, b3, s3),
    ])


def independent_run(image, x_codes):
    """The same network computed another way: float64 torch convolutions (exact: every value
    is an integer below 2**53) and the requantization in exact float64 division."""
    x = torch.as_tensor(np.asarray(x_codes, dtype=np.float64)).reshape(1, *image.input_shape)
    outs = []
    for layer in image.layers:
        n = (1 << layer.wbits) - 1
        s = torch.as_tensor(2.0 * layer.weights.astype(np.float64) - n)
        if layer.op == "conv":
            acc = F.conv2d(x, s, stride=layer.stride, padding=layer.padding)[0]
        elif layer.in_pool == "avg":
            acc = s @ x[0].sum(dim=(1, 2))
        else:
            acc = s @ x.reshape(-1)
        shape = (-1,) + (1,) * (acc.ndim - 1)
        m = torch.as_tensor(layer.mult.astype(np.float64)).reshape(shape)
        b = torch.as_tensor(layer.offset.astype(np.float64)).reshape(shape)
        if layer.skip is not None:  # the residual add: one more exact integer term
            sm = torch.as_tensor(layer.skip_mult.astype(np.float64)).reshape(shape)
            src = torch.as_tensor(outs[layer.skip].astype(np.float64))
            if src.ndim == 3:  # ResNet option A: every s-th pixel, zero channels around
                st = layer.skip_stride
                src = src[:, ::st, ::st][:, :acc.shape[1], :acc.shape[2]]
                o = layer.skip_channel_offset
                src = F.pad(src, (0, 0, 0, 0, o, acc.shape[0] - o - src.shape[0]))
            b = b + sm * src
        scale = torch.as_tensor(2.0 ** layer.shift.astype(np.float64)).reshape(shape)
        y = torch.floor((m * acc + b) / scale + 0.5)
        if layer.out_kind == "logits":
            y = y.clamp(-(1 << (LOGIT_BITS - 1)), (1 << (LOGIT_BITS - 1)) - 1)
        else:
            y = y.clamp(0, (1 << layer.out_bits) - 1)
        if layer.pool == "max2":
            y = F.max_pool2d(y.unsqueeze(0), 2)[0]
        outs.append(y.numpy().astype(np.int64))
        x = y.unsqueeze(0)
    return outs


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("wbits,abits", [(2, 2), (4, 4), (3, 5)])
def test_run_equals_independent_computation(seed, wbits, abits):
    image = random_image(seed, wbits, abits)
    rng = np.random.default_rng(100 + seed)
    for _ in range(3):
        x = rng.integers(0, 256, size=(1, 6, 6))
        got = run(image, x)
        want = independent_run(image, x)
        assert len(got) == len(want) == 3
        for g, w in zip(got, want, strict=True):
            assert g.dtype == np.int64
            assert np.array_equal(g, w)
        # the random constants give a mix of clamped and in-range codes (the test means it)
        assert 0 < np.count_nonzero(got[0]) < got[0].size


def test_run_detects_a_wrong_constant():
    image = random_image(0)
    x = np.random.default_rng(0).integers(0, 256, size=(1, 6, 6))
    before = run(image, x)[-1]
    image.layers[-1].offset[2] += 1 << int(image.layers[-1].shift[2])  # +1 on logit 2
    after = run(image, x)[-1]
    assert after[2] == before[2] + 1 and np.array_equal(np.delete(after, 2), np.delete(before, 2))


def test_run_batch_equals_run_per_image():
    image = random_image(5, 3, 3)
    x = np.random.default_rng(5).integers(0, 256, size=(23, 1, 6, 6))
    batched = run_batch(image, x, chunk=7)  # several chunks, one partial
    for i in range(len(x)):
        for layer_out, single in zip(batched, run(image, x[i]), strict=True):
            assert np.array_equal(layer_out[i], single)
    assert predict_batch(image, x).tolist() == [predict(image, xi) for xi in x]


def test_batched_accumulators_match_single():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 16, size=(4, 3, 5, 5))
    s = 2 * rng.integers(0, 8, size=(8, 3, 3, 3)) - 7
    from golden.integer import conv2d_acc, linear_acc
    for stride in (1, 2):
        got = conv2d_acc_batch(x, s, stride, 1)
        for i in range(4):
            assert np.array_equal(got[i], conv2d_acc(x[i], s, stride, 1))
    w = 2 * rng.integers(0, 8, size=(6, 75)) - 7
    got = linear_acc_batch(x, w)
    for i in range(4):
        assert np.array_equal(got[i], linear_acc(x[i], w))
    with pytest.raises(ValueError):
        conv2d_acc_batch(x[:, :2], s, 1, 1)
    with pytest.raises(ValueError):
        linear_acc_batch(x[:, :2], w)


def test_run_batch_of_nothing_has_layer_shapes():
    image = random_image(0)
    outs = run_batch(image, np.zeros((0, 1, 6, 6), dtype=np.int64))
    assert [o.shape for o in outs] == [(0, 8, 6, 6), (0, 8, 3, 3), (0, 5)]


def test_run_layer_signed_logits_saturate():
    image = random_image(0)
    fc = image.layers[-1]
    fc.mult[:] = (1 << 15) - 1
    fc.shift[:] = 1
    out = run_layer(fc, np.full(72, 15))
    assert set(np.abs(out).tolist()) <= {32767, 32768}
    assert out.max() <= 32767 and out.min() >= -32768


def test_predict_takes_lowest_index_on_ties():
    image = random_image(0)
    fc = image.layers[-1]
    fc.mult[:] = 0
    fc.offset[:] = [0, 7, 3, 7, 7]
    fc.shift[:] = 1
    assert predict(image, np.zeros((1, 6, 6))) == 1


@given(st.integers(2, 8), st.data())
def test_quantize_input_keeps_on_grid_values(bits, data):
    n = (1 << bits) - 1
    codes = data.draw(st.lists(st.integers(0, n), min_size=1, max_size=20))
    x = np.array(codes, dtype=np.float64) / n
    assert quantize_input(x, bits).tolist() == codes


@given(st.lists(st.floats(-2, 3, allow_nan=False), min_size=1, max_size=30), st.integers(2, 8))
def test_quantize_input_codes_in_range_and_nearest(xs, bits):
    n = (1 << bits) - 1
    codes = quantize_input(np.array(xs), bits)
    assert codes.dtype == np.int64
    for x, c in zip(xs, codes.tolist(), strict=True):
        assert 0 <= c <= n
        assert abs(c - min(max(x, 0.0), 1.0) * n) <= 0.5 + 1e-9


def test_quantize_input_rounds_ties_up():
    # 8 sixteenths at 4 bits: 0.5 * 15 = 7.5, a tie -> 8; 1/16 * 15 = 0.9375 -> 1
    assert quantize_input(np.array([0.5, 1 / 16, 3 / 16]), 4).tolist() == [8, 1, 3]
    # digits pixels (0..16)/16 at 8 bits are round_half_up(p * 255 / 16)
    p = np.arange(17)
    assert quantize_input(p / 16, 8).tolist() == [(2 * v * 255 + 16) // 32 for v in p.tolist()]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("wbits,abits", [(2, 2), (4, 4), (3, 5)])
def test_residual_run_equals_independent_computation(seed, wbits, abits):
    image = residual_image(seed, wbits, abits)
    x = np.random.default_rng(200 + seed).integers(0, 256, size=(1, 6, 6))
    got, want = run(image, x), independent_run(image, x)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    # the skip changes the residual layer's codes (the test would see a dropped add)
    plain = residual_image(seed, wbits, abits)
    plain.layers[2].skip, plain.layers[2].skip_mult = None, None
    assert not np.array_equal(run(plain, x)[2], got[2])
    assert 0 < np.count_nonzero(got[2]) < got[2].size


def test_residual_batch_equals_run_per_image():
    image = residual_image(7)
    x = np.random.default_rng(7).integers(0, 256, size=(9, 1, 6, 6))
    batched = run_batch(image, x, chunk=4)
    for i in range(len(x)):
        for layer_out, single in zip(batched, run(image, x[i]), strict=True):
            assert np.array_equal(layer_out[i], single)


def test_run_layer_of_a_residual_layer_needs_the_skip():
    image = residual_image(1)
    x = np.random.default_rng(1).integers(0, 16, size=(8, 6, 6))
    with pytest.raises(ValueError, match="skip"):
        run_layer(image.layers[2], x)
    with pytest.raises(ValueError, match="does not match"):
        run_layer(image.layers[2], x, skip=np.zeros((8, 3, 3), dtype=np.int64))


def v3_image(seed, wbits=4, abits=4):
    """conv 1x6x6 -> 4x6x6 + max pool (4x3x3), conv s2 -> 8x2x2 + option-A skip(conv0: stride
    2, channel offset 2), conv 8 -> 8 + skip(conv1), fc averaging 8x2x2 -> 5 logits."""
    rng = np.random.default_rng(seed)

    def consts(n, shift, signs=(-1, 1)):
        return (rng.integers(1 << 14, 1 << 15, size=n).astype(np.int16)
                * rng.choice(signs, size=n).astype(np.int16),
                rng.integers(-(1 << (shift + 3)), 1 << (shift + 3), size=n),
                np.full(n, shift, dtype=np.uint8))

    def weights(shape, wb):
        return rng.integers(0, 1 << wb, size=shape).astype(np.uint8)

    def skip_mult(n):
        return (rng.uniform(-1.5, 1.5, size=n) * (1 << 20)).astype(np.int32)

    m0, b0, s0 = consts(4, 22, signs=(1,))  # a pooled layer's multipliers are >= 0
    m1, b1, s1 = consts(8, 20)
    m2, b2, s2 = consts(8, 20)
    m3, b3, s3 = consts(5, 15)
    return ModelImage(input_shape=(1, 6, 6), input_bits=8, layers=[
        Layer("conv0", "conv", (1, 6, 6), (4, 3, 3), 8, 8, abits, "pact",
              weights((4, 1, 3, 3), 8), m0, b0, s0, kernel=3, stride=1, padding=1, alpha=2.0,
              pool="max2"),
        Layer("conv1", "conv", (4, 3, 3), (8, 2, 2), wbits, abits, abits, "pact",
              weights((8, 4, 3, 3), wbits), m1, b1, s1, kernel=3, stride=2, padding=1,
              alpha=2.0, skip=0, skip_mult=skip_mult(8), skip_stride=2, skip_channel_offset=2),
        Layer("conv2", "conv", (8, 2, 2), (8, 2, 2), wbits, abits, abits, "pact",
              weights((8, 8, 3, 3), wbits), m2, b2, s2, kernel=3, stride=1, padding=1,
              alpha=2.0, skip=1, skip_mult=skip_mult(8)),
        Layer("fc", "fc", (8, 2, 2), (5,), 8, abits, LOGIT_BITS, "logits",
              weights((5, 8), 8), m3, b3, s3, in_pool="avg"),
    ])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("wbits,abits", [(2, 2), (4, 4), (3, 5)])
def test_pool_avg_and_addressed_skip_equal_independent_computation(seed, wbits, abits):
    from golden.image import validate

    image = v3_image(seed, wbits, abits)
    validate(image)
    x = np.random.default_rng(300 + seed).integers(0, 256, size=(1, 6, 6))
    got, want = run(image, x), independent_run(image, x)
    assert [g.shape for g in got] == [(4, 3, 3), (8, 2, 2), (8, 2, 2), (5,)]
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    # each feature changes the result, so a dropped pool, skip or sum would be seen
    no_skip = v3_image(seed, wbits, abits)
    no_skip.layers[1].skip_channel_offset = 0
    assert not np.array_equal(run(no_skip, x)[1], got[1])


def test_v3_batch_equals_run_per_image():
    image = v3_image(8)
    x = np.random.default_rng(8).integers(0, 256, size=(9, 1, 6, 6))
    batched = run_batch(image, x, chunk=4)
    assert [b.shape[1:] for b in batched] == [(4, 3, 3), (8, 2, 2), (8, 2, 2), (5,)]
    for i in range(len(x)):
        for layer_out, single in zip(batched, run(image, x[i]), strict=True):
            assert np.array_equal(layer_out[i], single)
    assert predict_batch(image, x).tolist() == [predict(image, xi) for xi in x]
