"""Network descriptions (the compiler's view) and the PyTorch networks built from them."""

import json

import pytest
import torch

from golden.integer import LOGIT_BITS
from golden.models import (
    PactNet,
    address_skip,
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


def test_resnet20_is_he_et_al_with_option_a_shortcuts():
    layers = describe("resnet20", (3, 32, 32), 10, wbits=4, abits=4)
    assert len(layers) == 20
    convs = [lay for lay in layers if lay["op"] == "conv"]
    assert len(convs) == 19 and all(lay["kernel"] == 3 and lay["padding"] == 1 for lay in convs)
    assert [lay["out_shape"] for lay in convs[::6]] == [[16, 32, 32], [16, 32, 32],
                                                        [32, 16, 16], [64, 8, 8]]
    assert [lay["stride"] for lay in convs].count(2) == 2
    residual = [i for i, lay in enumerate(layers) if "skip" in lay]
    assert residual == list(range(2, 19, 2))  # the second conv of each of the 9 blocks
    for i in residual:  # each adds its block's input, the layer before the block's first conv
        assert layers[i]["skip"] == i - 2
    # the first blocks of stages 2 and 3: every second pixel, planes/4 zero channels each side
    downs = [lay for lay in layers if lay.get("skip_stride") == 2]
    assert [(lay["name"], lay["skip_channel_offset"]) for lay in downs] == [("conv8", 8),
                                                                            ("conv14", 16)]
    fc = layers[-1]
    assert fc["in_pool"] == "avg" and fc["in_shape"] == [64, 8, 8] and fc["out_shape"] == [10]
    bits = [(lay["wbits"], lay["in_bits"], lay["out_bits"]) for lay in layers]
    assert bits[0] == (8, 8, 4) and bits[-1] == (8, 4, LOGIT_BITS)
    assert set(bits[1:-1]) == {(4, 4, 4)}


def test_svhn_network_sizes_follow_dorefa():
    layers = describe("svhn", (3, 40, 40), 10, wbits=4, abits=4)
    sides = [lay["out_shape"][1] for lay in layers[:-1]]
    assert sides == [18, 18, 9, 7, 7, 5, 1]  # 40 -> 36 -> 18 -> 18 -> 9 -> 7 -> 7 -> 5 -> 1
    assert [lay["out_shape"][0] for lay in layers] == [48, 64, 64, 128, 128, 128, 512, 10]
    assert [lay.get("pool") for lay in layers] == ["max2", None, "max2"] + [None] * 5
    assert layers[6]["kernel"] == 5 and layers[-1]["in_shape"] == [512]
    assert describe("svhn", (3, 32, 32), 10, wbits=4, abits=4)[6]["kernel"] == 3
    with pytest.raises(ValueError, match="24 \\+ 4n"):
        describe("svhn", (3, 30, 30), 10, wbits=4, abits=4)


def test_lenet_is_lenet5():
    layers = describe("lenet", (1, 28, 28), 10, wbits=4, abits=4)
    assert [lay["out_shape"] for lay in layers] == [[6, 14, 14], [16, 5, 5], [120], [84], [10]]
    assert [lay.get("pool") for lay in layers] == ["max2", "max2", None, None, None]
    assert [lay["padding"] for lay in layers[:2]] == [2, 0]
    assert layers[2]["in_shape"] == [400] and layers[-1]["act"] == "logits"
    with pytest.raises(ValueError, match="even plane"):
        describe("lenet", (1, 27, 27), 10, wbits=4, abits=4)


def test_address_skip_is_option_a_and_identity_for_same_shapes():
    spec = describe("resnet20", (3, 32, 32), 10, wbits=4, abits=4)[8]
    src = torch.rand(2, 16, 32, 32)
    got = address_skip(spec, src)
    want = torch.nn.functional.pad(src[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert torch.equal(got, want)
    same = describe("resnet20", (3, 32, 32), 10, wbits=4, abits=4)[2]
    assert address_skip(same, src) is src


def test_pooled_layer_pools_its_codes():
    """A pooled layer's codes are the 2x2 maxima of PACT's codes, and forward passes on
    exactly code * alpha / (2^k - 1) of them."""
    torch.manual_seed(3)
    net = PactNet(describe("lenet", (1, 28, 28), 10, wbits=4, abits=4), alpha_init=1.5)
    x = torch.rand(4, 1, 28, 28)
    net.train()
    net(x)
    net.eval()
    codes, logits = net.trace_codes(x)
    assert torch.equal(logits, net(x)) and codes[0].shape == (4, 6, 14, 14)
    block = net.blocks[0]
    full = block.act.codes(block.pre_activation(x))
    assert torch.equal(codes[0], torch.nn.functional.max_pool2d(full, 2))
    assert torch.equal(block(x), codes[0] * block.act.alpha.detach() / 15)


@pytest.mark.parametrize("model,shape", [("resnet20", (3, 32, 32)), ("svhn", (3, 40, 40)),
                                         ("lenet", (1, 28, 28))])
def test_new_models_trace_codes_of_their_declared_shapes(model, shape):
    torch.manual_seed(0)
    layers = describe(model, shape, 10, wbits=4, abits=4)
    net = PactNet(layers)
    net.eval()
    x = torch.rand(2, *shape)
    codes, logits = net.trace_codes(x)
    assert logits.shape == (2, 10) and torch.equal(logits, net(x))
    for spec, c in zip(layers[:-1], codes, strict=True):
        assert list(c.shape[1:]) == spec["out_shape"]
    float_net = PactNet(describe(model, shape, 10, wbits=None, abits=None))
    assert float_net(x).shape == (2, 10)
