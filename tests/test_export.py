"""pact export: fixed-point constants, folding, the image of a run, determinism, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from golden.export import (
    IMAGE_NAME,
    ExportError,
    choose_logit_scale,
    export,
    fixed_point_multiplier,
    fixed_point_offset,
    fixed_point_pair,
    fold,
    mirror_negative_channels,
    real_affine,
    round_half_up_float,
)
from golden.image import ModelImage, load, validate
from golden.integer import max_pool2, requantize, requantize_residual
from golden.models import PactNet, describe
from golden.quant import dorefa_codes
from golden.reference import conv2d_acc_batch, run_batch
from golden.train import TrainConfig, train
from pact.cli import main as pact_main
from pact.errors import UserError

TINY = {"epochs": 2, "subset": 300, "batch_size": 50}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train(TrainConfig(wbits=3, abits=3, seed=3, **TINY),
                 tmp_path_factory.mktemp("export") / "run", progress=False)


@given(st.floats(min_value=1e-9, max_value=1e4) | st.floats(min_value=-1e4, max_value=-1e-9))
def test_fixed_point_multiplier_keeps_15_bits_and_rounds_to_nearest(m):
    mult, shift = fixed_point_multiplier(m)
    assert 1 <= shift <= 47 and abs(mult) < 1 << 15
    if 1 < shift < 47:
        assert 1 << 14 <= abs(mult)
    # M / 2^S is m rounded to the nearest multiple of 2^-S
    assert abs(mult - m * 2.0 ** shift) <= 0.5
    assert math.copysign(1, mult) == math.copysign(1, m)


def test_fixed_point_multiplier_edge_cases():
    assert fixed_point_multiplier(0.0) == (0, 1)
    assert fixed_point_multiplier(1.0) == (1 << 14, 14)
    # just below 1.0 rounds to 2^15 at shift 15: one shift less keeps it in 16 bits
    assert fixed_point_multiplier(1 - 2.0 ** -20) == (1 << 14, 14)
    tiny, s = fixed_point_multiplier(1e-12)
    assert s == 47 and tiny == round_half_up_float(1e-12 * 2.0 ** 47)
    assert fixed_point_multiplier(16383.0) == (32766, 1)
    with pytest.raises(ExportError, match="16 signed bits"):
        fixed_point_multiplier(40000.0)
    with pytest.raises(ExportError, match="diverged"):
        fixed_point_multiplier(float("nan"))


def test_fixed_point_offset_range():
    assert fixed_point_offset(-2.5, 1) == -5 and fixed_point_offset(0.75, 2) == 3
    assert fixed_point_offset(1.0 / 3, 10) == 341
    with pytest.raises(ExportError, match="48 signed bits"):
        fixed_point_offset(2.0 ** 20, 30)
    with pytest.raises(ExportError):
        fixed_point_offset(float("inf"), 3)


@given(st.floats(min_value=1e-6, max_value=1e6))
def test_logit_scale_is_a_power_of_two_with_2x_headroom(peak):
    scale = choose_logit_scale(peak)
    assert math.frexp(scale)[0] == 0.5  # a power of two
    assert 16383 / 2 < peak / scale <= 16383.5


def test_fold_matches_the_float_layer_up_to_fixed_point_rounding():
    """One conv+BN+PACT layer: the integer code equals PACT's code of the float layer, except
    within fixed-point noise of a rounding tie (then 1 LSB)."""
    torch.manual_seed(0)
    layers = describe("cnn", (1, 8, 8), 10, wbits=4, abits=4)
    net = PactNet(layers, alpha_init=1.7)
    block = net.blocks[0]
    with torch.no_grad():  # non-trivial batch-norm statistics and affine
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.2, 2.0)
        block.bn.weight.uniform_(0.5, 1.5)
        block.bn.bias.uniform_(-0.5, 0.5)
    net.eval()
    image_layers = fold(net, logit_scale=2.0 ** -8)
    conv = image_layers[0]
    assert conv.alpha == pytest.approx(1.7) and conv.in_bits == 8 and conv.out_bits == 4
    assert np.array_equal(conv.weights, dorefa_codes(block.linear.weight, 8).numpy())
    x_codes = np.random.default_rng(0).integers(0, 256, size=(64, 1, 8, 8))
    s = 2 * conv.weights.astype(np.int64) - 255
    acc = conv2d_acc_batch(x_codes, s, 1, 1)
    got = np.moveaxis(requantize(np.moveaxis(acc, 1, 0), conv.mult, conv.offset, conv.shift,
                                 4), 0, 1)
    x = torch.as_tensor(x_codes / 255.0, dtype=torch.float64)
    with torch.no_grad():
        y = block.double().pre_activation(x)
        want = block.act.codes(y).numpy().astype(np.int64)
    diff = np.abs(got - want)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.002 * diff.size
    assert 0 < np.count_nonzero(want) < want.size and np.any(want == 15)


@given(st.floats(min_value=1e-3, max_value=1e-1), st.floats(min_value=0.05, max_value=20.0),
       st.sampled_from([1, -1]))
def test_fixed_point_pair_keeps_m_at_15_bits(m, m_skip, sign):
    """The skip multiplier (32 bits) does not take precision from M: S is M's own."""
    mult, skip_mult, shift = fixed_point_pair(sign * m, m_skip)
    assert (mult, shift) == fixed_point_multiplier(sign * m)
    assert abs(skip_mult) < 1 << 31
    assert skip_mult == round_half_up_float(math.ldexp(m_skip, shift))


def test_fold_of_a_residual_layer_matches_the_float_layer():
    """conv2 of the resnet (adds conv0): the integer codes from the reference's inputs equal
    PACT's codes of BN(conv(x)) + skip, except within fixed-point noise of a tie (1 LSB)."""
    torch.manual_seed(2)
    net = PactNet(describe("resnet", (1, 8, 8), 10, wbits=4, abits=4), alpha_init=1.7)
    with torch.no_grad():
        for block in net.blocks[:3]:
            block.bn.running_mean.uniform_(-0.5, 0.5)
            block.bn.running_var.uniform_(0.2, 2.0)
            block.act.alpha.uniform_(1.0, 2.5)
    net.eval()
    layers = fold(net, logit_scale=2.0 ** -8)
    conv2 = layers[2]
    assert conv2.skip == 0 and conv2.skip_mult.dtype == np.int32
    assert np.all(np.abs(conv2.mult.astype(np.int64)) >= 1 << 13)  # M keeps its precision
    rng = np.random.default_rng(3)
    c0 = rng.integers(0, 16, size=(64, 16, 8, 8))  # the skip codes (conv0's output)
    c1 = rng.integers(0, 16, size=(64, 16, 8, 8))  # conv2's input codes (conv1's output)
    s = 2 * conv2.weights.astype(np.int64) - 15
    acc = np.moveaxis(conv2d_acc_batch(c1, s, 1, 1), 1, 0)
    got = np.moveaxis(requantize_residual(acc, conv2.mult, conv2.offset, conv2.skip_mult,
                                          np.moveaxis(c0, 1, 0), conv2.shift, 4), 0, 1)
    a0, a1 = (float(net.blocks[i].act.alpha.detach()) for i in (0, 1))
    with torch.no_grad():
        block = net.blocks[2].double()
        y = block.pre_activation(torch.as_tensor(c1 * a1 / 15)) + torch.as_tensor(c0 * a0 / 15)
        want = block.act.codes(y).numpy().astype(np.int64)
    diff = np.abs(got - want)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.002 * diff.size
    assert 0 < np.count_nonzero(want) < want.size


def test_real_affine_reproduces_the_float_layer():
    """m * acc + b, with acc the integer sum, equals the float layer (fc + BN) on the same
    input: the fold loses nothing before fixed point."""
    torch.manual_seed(1)
    net = PactNet(describe("mlp", (1, 8, 8), 10, wbits=2, abits=2))
    with torch.no_grad():
        net.blocks[1].bn.running_mean.uniform_(-1, 1)
        net.blocks[1].bn.running_var.uniform_(0.5, 2)
        net.blocks[2].linear.bias.uniform_(-1, 1)
    net.eval().double()
    codes = np.random.default_rng(2).integers(0, 4, size=(5, 64))
    in_scale = 1.3 / 3  # alpha 1.3 at 2 bits
    for block in net.blocks[1:]:  # hidden fc with BN (2-bit weights), logits fc with bias
        s = 2 * dorefa_codes(block.linear.weight, block.spec["wbits"]).numpy() - (
            (1 << block.spec["wbits"]) - 1)
        m, b = real_affine(block, in_scale)
        acc = codes @ s.T
        with torch.no_grad():
            want = block.pre_activation(torch.as_tensor(codes * in_scale)).numpy()
        assert np.allclose(m * acc + b, want, rtol=1e-9, atol=1e-9)


def test_export_writes_a_valid_image_with_metadata(run_dir):
    path = export(run_dir)
    assert path == run_dir / IMAGE_NAME
    image = load(path)
    meta = image.meta
    assert (meta["wbits"], meta["abits"], meta["end_bits"], meta["seed"]) == (3, 3, 8, 3)
    assert meta["model"] == "cnn" and meta["dataset"] == "digits" and meta["num_classes"] == 10
    assert 0 <= meta["test_accuracy"] <= 1 and meta["logit_scale"] > 0
    assert [lay.name for lay in image.layers] == ["conv0", "conv1", "conv2", "fc"]
    assert [lay.wbits for lay in image.layers] == [8, 3, 3, 8]
    assert [lay.in_bits for lay in image.layers] == [8, 3, 3, 3]
    assert image.input_bits == 8 and image.input_shape == (1, 8, 8)
    assert all(lay.alpha > 0 for lay in image.layers[:-1]) and image.layers[-1].alpha is None
    assert image.layers[-1].out_kind == "logits"


def test_export_is_deterministic(run_dir, tmp_path):
    a = export(run_dir, tmp_path / "a.pactimg").read_bytes()
    b = export(run_dir, tmp_path / "b.pactimg").read_bytes()
    assert a == b
    # and so is training: the same seed gives the same image bytes
    again = train(TrainConfig(wbits=3, abits=3, seed=3, **TINY), tmp_path / "again",
                  progress=False)
    assert export(again, tmp_path / "c.pactimg").read_bytes() == a
    other = train(TrainConfig(wbits=3, abits=3, seed=4, **TINY), tmp_path / "other",
                  progress=False)
    assert export(other, tmp_path / "d.pactimg").read_bytes() != a


def test_export_errors(tmp_path, run_dir):
    with pytest.raises(UserError, match="does not exist"):
        export(tmp_path / "none")
    with pytest.raises(UserError, match="is a directory"):
        export(run_dir, tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        export(run_dir, tmp_path / "no" / "dir" / "x.pactimg")
    baseline = train(TrainConfig(wbits=None, abits=None, **TINY), tmp_path / "float",
                     progress=False)
    with pytest.raises(ExportError, match="float baseline"):
        export(baseline)
    assert not (baseline / IMAGE_NAME).exists()


def test_cli_export(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.pactimg"
    assert pact_main(["export", str(run_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "conv0" in text and "logits" in text
    assert pact_main(["export", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_mirror_negative_channels_negates_the_odd_weights_exactly():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, size=(6, 3, 3, 3))
    before = codes.copy()
    m = np.array([0.5, -0.25, 0.0, -1e-3, 2.0, -3.0])
    mirrored, mm = mirror_negative_channels(codes, m, 4)
    odd, odd_m = 2 * codes - 15, 2 * mirrored - 15
    for c in range(6):
        sign = -1 if m[c] < 0 else 1
        assert np.array_equal(odd_m[c], sign * odd[c]) and mm[c] == abs(m[c])
    assert np.array_equal(codes, before) and m[1] == -0.25  # the inputs are not changed
    assert mirrored.min() >= 0 and mirrored.max() <= 15


def _scramble_batch_norm(net, seed):
    """Non-trivial statistics, and a negative scale on a third of the channels."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in net.blocks:
            if block.bn is None:
                continue
            n = block.bn.weight.numel()
            block.bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            block.bn.running_var.copy_(torch.rand(n, generator=g) * 1.8 + 0.2)
            sign = torch.where(torch.arange(n) % 3 == 0, -1.0, 1.0)
            block.bn.weight.copy_(sign * (torch.rand(n, generator=g) + 0.5))
            block.bn.bias.copy_(torch.rand(n, generator=g) - 0.5)
    net.eval()


def test_fold_of_a_pooled_layer_keeps_m_non_negative_and_the_codes():
    """LeNet's conv0 with negative batch-norm scales: export mirrors those channels' weights,
    so every M >= 0 (the image accepts it) and the pooled codes still match PACT-then-pool."""
    torch.manual_seed(4)
    net = PactNet(describe("lenet", (1, 28, 28), 10, wbits=4, abits=4), alpha_init=1.7)
    _scramble_batch_norm(net, 4)
    conv0 = fold(net, logit_scale=2.0 ** -8)[0]
    assert conv0.pool == "max2" and np.all(conv0.mult >= 0)
    flipped = dorefa_codes(net.blocks[0].linear.weight, 8).numpy() != conv0.weights
    assert flipped.any(axis=(1, 2, 3)).tolist() == [c % 3 == 0 for c in range(6)]
    x_codes = np.random.default_rng(4).integers(0, 256, size=(16, 1, 28, 28))
    s = 2 * conv0.weights.astype(np.int64) - 255
    acc = np.moveaxis(conv2d_acc_batch(x_codes, s, 1, 2), 1, 0)
    got = max_pool2(np.moveaxis(requantize(acc, conv0.mult, conv0.offset, conv0.shift, 4), 0, 1))
    with torch.no_grad():
        block = net.blocks[0].double()
        want = block.pool(block.act.codes(block.pre_activation(
            torch.as_tensor(x_codes / 255.0)))).numpy().astype(np.int64)
    diff = np.abs(got - want)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.002 * diff.size
    assert 0 < np.count_nonzero(want) < want.size


def test_fold_of_resnet20_matches_the_fake_quant_network():
    """Option-A skips and the averaged fc: each layer from the reference's inputs (local) is
    within 1 LSB of the fake-quant layer, and the logits agree up to fixed-point noise."""
    from golden.evaluate import fake_quant_trace, local_code_diffs

    torch.manual_seed(5)
    net = PactNet(describe("resnet20", (3, 16, 16), 10, wbits=4, abits=4), alpha_init=1.7)
    _scramble_batch_norm(net, 5)
    image = ModelImage((3, 16, 16), 8, fold(net, logit_scale=2.0 ** -8))
    validate(image)
    assert image.layers[-1].in_pool == "avg" and image.layers[8].skip_channel_offset == 8
    x_codes = np.random.default_rng(5).integers(0, 256, size=(8, 3, 16, 16))
    outs = run_batch(image, x_codes)
    local = local_code_diffs(net, outs, x_codes, 8)
    assert max(w for _, w in local) <= 1
    assert sum(b for b, _ in local) <= 0.01 * sum(o[0].size for o in outs[:-1]) * 8
    _, logits = fake_quant_trace(net, x_codes, 8)
    assert np.abs(outs[-1] * 2.0 ** -8 - logits).max() < 0.5
