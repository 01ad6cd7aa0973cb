"""Network descriptions (the compiler's view) and the PyTorch networks built from them."""

import json

import pytest
import torch

from golden.integer import LOGIT_BITS
from golden.models import (
    PactNet,
    describe,
    describe_cnn,
    describe_mlp,
    describe_resnet,
    input_bits,
)


def test_default_cnn_for_digits_is_the_agreed_network():
    layers = describe("cnn", (1, 8, 8), 10, wbits=4, abits=3, end_bits=8)
    summary = [(lay["name"], lay["op"], lay["in_shape"], lay["out_shape"], lay["kernel"],
                lay["stride"], lay["padding"], lay["bn"], lay["bias"], lay["act"])
               for lay in layers]
    assert summary == [
        ("conv0", "conv", [1, 8, 8], [16, 8, 8], 3, 1, 1, True, False, "pact"),
        ("conv1", "conv", [16, 8, 8], [32, 4, 4], 3, 2, 1, True, False, "pact"),
        ("conv2", "conv", [32, 4, 4], [32, 4, 4], 3, 1, 1, True, False, "pact"),
        ("fc", "fc", [512], [10], 1, 1, 0, False, True, "logits"),
    ]
    # first/last weights at end_bits, input at end_bits, every PACT output at abits
    assert [(lay["wbits"], lay["in_bits"], lay["out_bits"]) for lay in layers] == [
        (8, 8, 3), (4, 3, 3), (4, 3, 3), (8, 3, LOGIT_BITS)]
    assert input_bits(layers) == 8
    json.dumps(layers)  # plain data a compiler can read


def test_cnn_adds_stride_two_layers_for_larger_inputs():
    mnist = describe_cnn((1, 28, 28), 10, wbits=4, abits=4)
    assert [lay["out_shape"] for lay in mnist] == [[16, 28, 28], [32, 14, 14], [32, 14, 14],
                                                   [32, 7, 7], [10]]
    cifar = describe_cnn((3, 32, 32), 10, wbits=2, abits=2, end_bits=4)
    assert [lay["out_shape"] for lay in cifar][-2:] == [[32, 8, 8], [10]]
    assert cifar[0]["in_bits"] == 4 and cifar[-1]["wbits"] == 4 and cifar[2]["wbits"] == 2


def test_mlp_description():
    layers = describe_mlp((1, 8, 8), 10, wbits=3, abits=3, end_bits=8)
    assert [(lay["in_shape"], lay["out_shape"], lay["act"]) for lay in layers] == [
        ([64], [64], "pact"), ([64], [64], "pact"), ([64], [10], "logits")]
    assert [lay["wbits"] for lay in layers] == [8, 3, 8]


def test_float_description_has_no_bits():
    layers = describe("cnn", (1, 8, 8), 10, wbits=None, abits=None)
    assert all(lay["wbits"] is None and lay["out_bits"] is None for lay in layers)
    assert input_bits(layers) is None


@pytest.mark.parametrize("kwargs,message", [
    ({"wbits": 1, "abits": 4}, "wbits"),
    ({"wbits": 4, "abits": 9}, "abits"),
    ({"wbits": 4, "abits": 4, "end_bits": 12}, "end_bits"),
    ({"wbits": 4, "abits": None}, "both"),
])
def test_bad_bit_widths_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        describe("cnn", (1, 8, 8), 10, **kwargs)


def test_bad_shapes_models_and_widths_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        describe("vgg", (1, 8, 8), 10, wbits=4, abits=4)
    with pytest.raises(ValueError, match="input_shape"):
        describe("cnn", (8, 8), 10, wbits=4, abits=4)
    with pytest.raises(ValueError, match="multiples of 8"):
        describe_cnn((1, 8, 8), 10, wbits=4, abits=4, channels=(16, 20, 32))
    with pytest.raises(ValueError, match="multiples of 8"):
        describe_mlp((1, 8, 8), 10, wbits=4, abits=4, hidden=(60,))


def test_resnet_for_digits_is_the_agreed_network():
    layers = describe("resnet", (1, 8, 8), 10, wbits=4, abits=4)
    summary = [(lay["name"], lay["in_shape"], lay["out_shape"], lay["stride"], lay.get("skip"))
               for lay in layers]
    assert summary == [
        ("conv0", [1, 8, 8], [16, 8, 8], 1, None),
        ("conv1", [16, 8, 8], [16, 8, 8], 1, None),
        ("conv2", [16, 8, 8], [16, 8, 8], 1, 0),
        ("conv3", [16, 8, 8], [32, 4, 4], 2, None),
        ("conv4", [32, 4, 4], [32, 4, 4], 1, None),
        ("conv5", [32, 4, 4], [32, 4, 4], 1, 3),
        ("fc", [512], [10], 1, None),
    ]
    assert all(lay["kernel"] == 3 and lay["act"] == "pact" for lay in layers[:-1])
    assert [lay["wbits"] for lay in layers] == [8, 4, 4, 4, 4, 4, 8]
    json.dumps(layers)
    with pytest.raises(ValueError, match="two multiples of 8"):
        describe_resnet((1, 8, 8), 10, wbits=4, abits=4, channels=(16, 20))


def test_resnet_adds_the_skip_before_pact():
    """The residual block's codes are PACT's codes of BN(conv(x)) + the skip layer's output as
    the network passes it on (code * alpha / (2^k - 1))."""
    torch.manual_seed(1)
    net = PactNet(describe("resnet", (1, 8, 8), 10, wbits=4, abits=4), alpha_init=1.5)
    x = torch.rand(8, 1, 8, 8)
    net.train()
    net(x)
    net.eval()
    codes, logits = net.trace_codes(x)
    assert torch.equal(logits, net(x))
    real = [c * b.act.alpha.detach() / 15 for c, b in zip(codes, net.blocks, strict=False)]
    for i in (2, 5):
        block = net.blocks[i]
        want = block.act.codes(block.pre_activation(real[i - 1]) + real[i - 2])
        assert torch.equal(codes[i], want)
        # without the skip the codes differ: the add is not a no-op
        assert not torch.equal(codes[i], block.act.codes(block.pre_activation(real[i - 1])))


@pytest.mark.parametrize("model", ["cnn", "mlp", "resnet"])
def test_network_shapes_and_codes_are_consistent_with_forward(model):
    torch.manual_seed(0)
    layers = describe(model, (1, 8, 8), 10, wbits=4, abits=3)
    net = PactNet(layers, alpha_init=1.5)
    x = torch.rand(16, 1, 8, 8)
    net.train()
    net(x)  # move the batch-norm statistics off their initial values
    net.eval()
    logits = net(x)
    assert logits.shape == (16, 10)
    codes, traced = net.trace_codes(x)
    assert torch.equal(traced, logits)
    assert len(codes) == len(layers) - 1 == len(net.pacts())
    for spec, c in zip(layers[:-1], codes, strict=True):
        assert tuple(c.shape[1:]) == (spec["out_shape"][0],) + tuple(spec["out_shape"][1:])
        assert torch.equal(c, c.floor()) and c.min() >= 0 and c.max() <= 7
    # the next layer sees exactly code * alpha / (2^k - 1)
    block0, block1 = net.blocks[0], net.blocks[1]
    real = codes[0] * block0.act.alpha.detach() / 7
    assert torch.equal(block1(real), block1(block0(x)))


def test_alphas_penalty_and_clamp():
    net = PactNet(describe("cnn", (1, 8, 8), 10, wbits=4, abits=4), alpha_init=2.5)
    assert net.alphas() == {"conv0": 2.5, "conv1": 2.5, "conv2": 2.5}
    assert float(net.alpha_penalty().detach()) == pytest.approx(3 * 2.5 ** 2)
    with torch.no_grad():
        net.blocks[1].act.alpha.fill_(-1.0)
    net.clamp_alphas()
    assert net.alphas()["conv1"] > 0


def test_float_network_has_no_codes():
    net = PactNet(describe("cnn", (1, 8, 8), 10, wbits=None, abits=None))
    assert not net.quantized
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError):
        net.trace_codes(torch.rand(2, 1, 8, 8))
