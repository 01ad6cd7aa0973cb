"""PACT and DoReFa on the float path: forward values, gradients, codes."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from golden.integer import dorefa_odd_values
from golden.quant import (
    ALPHA_MIN,
    PACT,
    QConv2d,
    QLinear,
    dorefa_codes,
    dorefa_weight,
    levels,
    pact_codes,
    pact_quantize,
    round_half_up,
)

BITS = st.integers(min_value=1, max_value=8)
ALPHAS = st.floats(min_value=0.05, max_value=20.0)


def test_round_half_up_ties_go_up():
    v = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.50000006, 0.49999997])
    # the last one is the float32 just below 1/2, where floor(v + 0.5) would give 1
    assert round_half_up(v).tolist() == [-2, -1, 0, 1, 2, 3, -1, 0]


@given(st.floats(-1e6, 1e6, allow_nan=False, width=32))
def test_round_half_up_is_nearest_with_ties_up(v):
    r = float(round_half_up(torch.tensor(v, dtype=torch.float32)))
    assert r == np.floor(np.float64(v) + 0.5)  # float64 holds v + 0.5 exactly


@given(BITS, ALPHAS, st.data())
def test_pact_on_grid_values_come_back_unchanged(bits, alpha, data):
    n = levels(bits)
    codes = torch.tensor(data.draw(st.lists(st.integers(0, n), min_size=1, max_size=16)),
                         dtype=torch.float64)
    a = torch.tensor(alpha, dtype=torch.float64)
    x = codes * a / n
    assert torch.equal(pact_quantize(x, a, bits), x)
    assert torch.equal(pact_codes(x, a, bits), codes)


@given(BITS, ALPHAS, st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=32))
def test_pact_codes_in_range_and_nearest(bits, alpha, xs):
    n = levels(bits)
    x = torch.tensor(xs, dtype=torch.float64)
    a = torch.tensor(alpha, dtype=torch.float64)
    codes = pact_codes(x, a, bits)
    assert torch.equal(codes, codes.floor())
    assert codes.min() >= 0 and codes.max() <= n
    clipped = x.clamp(0, alpha)
    assert torch.all((codes - clipped * n / alpha).abs() <= 0.5 + 1e-9)
    assert torch.allclose(pact_quantize(x, a, bits), codes * a / n, rtol=0, atol=1e-12)


def test_pact_forward_matches_formula():
    x = torch.tensor([-1.0, 0.0, 0.1, 0.5, 0.9, 1.0, 1.2, 7.0], dtype=torch.float64)
    y = pact_quantize(x, torch.tensor(1.0, dtype=torch.float64), 2)  # levels 0, 1/3, 2/3, 1
    assert y.tolist() == pytest.approx([0, 0, 0, 2 / 3, 1, 1, 1, 1], abs=1e-15)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pact_gradients_follow_the_paper(bits):
    torch.manual_seed(bits)
    alpha = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    x = torch.cat([torch.linspace(-1, 3, 41, dtype=torch.float64),
                   torch.tensor([0.0, 1.5], dtype=torch.float64)]).requires_grad_(True)
    upstream = torch.randn_like(x)
    (pact_quantize(x, alpha, bits) * upstream).sum().backward()
    xs = x.detach()
    inside = (xs >= 0) & (xs < 1.5)  # dy_q/dx = 1 on [0, alpha), STE on the round
    above = xs >= 1.5                # dy_q/dalpha = 1 where x >= alpha
    assert torch.equal(x.grad, torch.where(inside, upstream, torch.zeros_like(upstream)))
    assert torch.equal(alpha.grad, (upstream * above).sum())
    assert above.any() and inside.any() and (~inside & ~above).any()


def test_pact_module_penalty_and_positive_alpha():
    act = PACT(bits=4, alpha_init=2.0)
    assert float(act.penalty().detach()) == 4.0
    act.penalty().backward()
    assert float(act.alpha.grad) == 4.0  # d(alpha^2)/dalpha
    with torch.no_grad():
        act.alpha.fill_(-3.0)
    act.clamp_alpha()
    assert float(act.alpha.detach()) == pytest.approx(ALPHA_MIN)


def test_pact_alpha_shrinks_under_the_penalty_when_nothing_clips():
    act = PACT(bits=4, alpha_init=2.0)
    opt = torch.optim.SGD(act.parameters(), lr=0.1)
    x = torch.rand(100) * 0.5  # never reaches alpha: only the penalty pulls on alpha
    for _ in range(5):
        opt.zero_grad()
        (act(x).sum() * 0 + 0.1 * act.penalty()).backward()
        opt.step()
    assert float(act.alpha.detach()) < 2.0


def test_pact_alpha_grows_when_clipping_hurts():
    act = PACT(bits=4, alpha_init=1.0)
    opt = torch.optim.SGD(act.parameters(), lr=0.01)
    x = torch.full((50,), 3.0)
    for _ in range(5):
        opt.zero_grad()
        F.mse_loss(act(x), x).backward()
        opt.step()
    assert float(act.alpha.detach()) > 1.0


def test_float_pact_is_relu_and_has_no_codes():
    act = PACT(bits=None)
    x = torch.tensor([-2.0, 0.5, 30.0])
    assert act(x).tolist() == [0.0, 0.5, 30.0]
    with pytest.raises(ValueError):
        act.codes(x)


@pytest.mark.parametrize("bad", [{"bits": 0}, {"bits": 17}, {"alpha_init": 0.0}])
def test_pact_rejects_bad_parameters(bad):
    with pytest.raises(ValueError):
        PACT(**{"bits": 4, **bad})


@settings(deadline=None)
@given(st.integers(2, 8), st.integers(0, 10_000))
def test_dorefa_codes_in_range_and_levels_are_odd_over_n(bits, seed):
    w = torch.randn(6, 5, generator=torch.Generator().manual_seed(seed))
    n = levels(bits)
    q = dorefa_codes(w, bits)
    assert q.dtype == torch.int64 and q.min() >= 0 and q.max() <= n
    # the extreme weight lands on an end level (w_n is 0 or 1 there)
    peak = w.abs().argmax()
    assert int(q.flatten()[peak]) in (0, n)
    # float path and integer path agree: the level is exactly the odd integer over n
    odd = torch.as_tensor(dorefa_odd_values(q.numpy(), bits), dtype=torch.float32)
    assert torch.equal(dorefa_weight(w, bits), odd / n)


def test_dorefa_two_bit_levels():
    w = torch.tensor([-5.0, -0.2, 0.2, 5.0, 0.0])
    assert dorefa_codes(w, 2).tolist() == [0, 1, 2, 3, 2]  # 0 -> w_n = 1/2 -> 1.5 -> 2 (up)
    assert dorefa_weight(w, 2).tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1, 1 / 3])


def test_dorefa_formula_against_numpy():
    w = torch.randn(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = np.tanh(w.numpy())
    wn = t / (2 * np.abs(t).max()) + 0.5
    assert dorefa_codes(w, 3).tolist() == np.floor(7 * wn + 0.5).astype(int).tolist()


def test_dorefa_gradient_is_straight_through_the_round():
    w = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w1 = w.clone().requires_grad_(True)
    w2 = w.clone().requires_grad_(True)
    g = torch.randn(20, dtype=torch.float64)
    (dorefa_weight(w1, 4) * g).sum().backward()
    t = torch.tanh(w2)  # the same expression without the round: 2 * w_n - 1
    ((2 * (t / (2 * t.abs().max()) + 0.5) - 1) * g).sum().backward()
    assert torch.allclose(w1.grad, w2.grad, rtol=1e-12, atol=1e-12)
    assert w1.grad.abs().sum() > 0


def test_dorefa_all_zero_weights_do_not_give_nan():
    w = torch.zeros(3, 3)
    assert dorefa_codes(w, 4).tolist() == [[8] * 3] * 3
    assert torch.isfinite(dorefa_weight(w, 4)).all()
    assert torch.equal(dorefa_weight(w, None), w)


def test_quantized_layers_use_the_dorefa_weights():
    torch.manual_seed(0)
    conv = QConv2d(2, 8, 3, padding=1, stride=2, bias=False, wbits=3)
    x = torch.rand(2, 2, 6, 6)
    want = F.conv2d(x, dorefa_weight(conv.weight, 3), None, 2, 1)
    assert torch.equal(conv(x), want)
    fc = QLinear(10, 4, wbits=5)
    v = torch.rand(3, 10)
    assert torch.equal(fc(v), F.linear(v, dorefa_weight(fc.weight, 5), fc.bias))
    plain = QLinear(10, 4, wbits=None)
    assert torch.equal(plain(v), F.linear(v, plain.weight, plain.bias))
