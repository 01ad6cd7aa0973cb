"""Network descriptions: plain data a compiler can read, made without torch.

(``golden.models`` builds the PyTorch modules from them.)

A network is a list of layer dicts, in order. Every layer is a convolution or a fully connected
layer followed by either batch-norm and PACT (a hidden layer) or nothing (the logits)::

    {"name": "conv1", "op": "conv", "in_shape": [16, 8, 8], "out_shape": [32, 4, 4],
     "kernel": 3, "stride": 2, "padding": 1, "bias": False, "bn": True, "act": "pact",
     "wbits": 4, "in_bits": 4, "out_bits": 4}

Shapes are ``[C, H, W]`` for conv and ``[N]`` for fc; a fully connected layer after a conv reads
the conv output flattened in ``C, H, W`` order. ``in_bits`` is the width of the layer's input
codes (the network input for the first layer), ``out_bits`` the width of its PACT output codes
(``golden.integer.LOGIT_BITS`` for the logits). A float baseline has ``None`` for all bit-widths.

A residual layer carries ``"skip": j``, the index of an earlier layer whose output (same shape,
PACT codes) is added to this layer's batch-norm output before its PACT clip:
``y = BN(conv(x)) + skip_real``, where ``skip_real`` is layer ``j``'s quantized output as the
network passes it on (``code * alpha_j / (2**k - 1)``). Layers without the key have no skip.
``"skip_stride": 2`` and ``"skip_channel_offset": o`` address a skip of another shape (ResNet's
option A: ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, o, o))``), as ``golden.integer.skip_tensor``
does with codes.

``"pool": "max2"`` on a PACT conv layer max-pools its output 2x2 (stride 2) *after* PACT (and
after the residual add), so the float model pools the very codes the integer path pools: exact
whatever the sign of batch-norm's scale. ``out_shape`` is then the pooled shape. ``"in_pool":
"avg"`` on a fully connected layer averages its ``[C, H, W]`` input over the plane first
(``in_shape`` stays ``[C, H, W]``; the weights are ``[out, C]``).

Bit-width policy (PACT): the first and the last layer have ``end_bits`` weights and the network
input is quantized to ``end_bits``; all other weights have ``wbits``, and every PACT output has
``abits``.
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

from .integer import LOGIT_BITS

if TYPE_CHECKING:
    import torch

__all__ = [
    "MODELS",
    "BITS_RANGE",
    "ARRAY_MULTIPLE",
    "LayerSpec",
    "describe",
    "describe_cnn",
    "describe_mlp",
    "describe_resnet",
    "describe_resnet20",
    "describe_svhn",
    "describe_lenet",
    "conv_shape",
    "address_skip",
    "input_bits",
    "quantized_bits",
]


class LayerSpec(TypedDict):
    """One layer of a network description (the module docstring says what each key means)."""

    name: str
    op: Literal["conv", "fc"]
    in_shape: list[int]
    out_shape: list[int]
    kernel: int
    stride: int
    padding: int
    bias: bool
    bn: bool
    act: Literal["pact", "logits"]
    wbits: NotRequired[int | None]
    in_bits: NotRequired[int | None]
    out_bits: NotRequired[int | None]
    skip: NotRequired[int]
    skip_stride: NotRequired[int]
    skip_channel_offset: NotRequired[int]
    pool: NotRequired[Literal["max2"]]
    in_pool: NotRequired[Literal["avg"]]


MODELS = ("cnn", "mlp", "resnet", "resnet20", "svhn", "lenet")
#: Bit-widths the trainer supports for weights, activations and the end layers.
BITS_RANGE = (2, 8)
#: Conv output channels are a multiple of this (the hardware array is 8x8).
ARRAY_MULTIPLE = 8
#: Default conv widths of the CNN, and hidden widths of the MLP.
CNN_CHANNELS = (16, 32, 32)
MLP_HIDDEN = (64, 64)
#: Widths of the residual network's two stages.
RESNET_CHANNELS = (16, 32)
#: CIFAR ResNet20 (He et al. 2016): stage widths and basic blocks per stage.
RESNET20_CHANNELS = (16, 32, 64)
RESNET20_BLOCKS = 3
#: The DoReFa SVHN network's conv layers: (kernel, width, padding, pool after).
SVHN_CONVS = ((5, 48, 0, True), (3, 64, 1, False), (3, 64, 1, True), (3, 128, 0, False),
              (3, 128, 1, False), (3, 128, 0, False))
SVHN_LAST_WIDTH = 512
#: LeNet-5: conv (kernel, width, padding), each followed by PACT and a 2x2 max pool; fc widths.
LENET_CONVS = ((5, 6, 2), (5, 16, 0))
LENET_HIDDEN = (120, 84)


def _check_bits(name: str, bits: object) -> None:
    lo, hi = BITS_RANGE
    if not isinstance(bits, int) or not lo <= bits <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {bits!r}")


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _assign_bits(layers: list[LayerSpec], wbits: int | None, abits: int | None,
                 end_bits: int) -> list[LayerSpec]:
    """Fill in the bit-widths of a list of layers (``wbits=None``: float baseline)."""
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if wbits is None:
            layer["wbits"] = layer["in_bits"] = layer["out_bits"] = None
            continue
        ends = i in (0, last)
        layer["wbits"] = end_bits if ends else wbits
        layer["in_bits"] = end_bits if i == 0 else abits
        layer["out_bits"] = LOGIT_BITS if i == last else abits
    return layers


def _validate_policy(input_shape: Sequence[int], num_classes: int, wbits: int | None,
                     abits: int | None, end_bits: int) -> None:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W), not {tuple(input_shape)!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, not {num_classes!r}")
    if (wbits is None) != (abits is None):
        raise ValueError("wbits and abits are both set (quantized) or both None (float)")
    if wbits is not None:
        _check_bits("wbits", wbits)
        _check_bits("abits", abits)
        _check_bits("end_bits", end_bits)


def _conv(name: str, in_shape: Sequence[int], cout: int, kernel: int, stride: int, padding: int,
          pool: bool = False) -> LayerSpec:
    """A conv + batch-norm + PACT layer dict (``pool``: a 2x2 max pool after PACT)."""
    c, h, w = in_shape
    ho, wo = _conv_out(h, kernel, stride, padding), _conv_out(w, kernel, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"layer {name}: a {h}x{w} input is too small for a {kernel}x{kernel} "
                         "kernel")
    spec: LayerSpec = {
        "name": name, "op": "conv", "in_shape": list(in_shape), "out_shape": [cout, ho, wo],
        "kernel": kernel, "stride": stride, "padding": padding,
        "bias": False, "bn": True, "act": "pact",
    }
    if pool:
        if ho % 2 or wo % 2:
            raise ValueError(f"layer {name}: a 2x2 max pool needs an even plane, not {ho}x{wo}")
        spec["pool"] = "max2"
        spec["out_shape"] = [cout, ho // 2, wo // 2]
    return spec


def conv_shape(spec: LayerSpec) -> list[int]:
    """``[C, H, W]`` a conv layer dict computes before its pool (its ``out_shape`` if none)."""
    c, h, w = spec["out_shape"]
    return [c, 2 * h, 2 * w] if spec.get("pool") == "max2" else [c, h, w]


def _fc(name: str, n_in: int, n_out: int, last: bool) -> LayerSpec:
    return {
        "name": name, "op": "fc", "in_shape": [n_in], "out_shape": [n_out],
        "kernel": 1, "stride": 1, "padding": 0,
        "bias": last, "bn": not last, "act": "logits" if last else "pact",
    }


def describe_cnn(input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
                 abits: int | None, end_bits: int = 8,
                 channels: Sequence[int] = CNN_CHANNELS) -> list[LayerSpec]:
    """The CNN: 3x3 convolutions with batch-norm and PACT, then one fully connected layer.

    ``conv0`` (stride 1), ``conv1`` (stride 2), ``conv2`` (stride 1), then further stride-2
    convolutions while the feature map is larger than 8x8 (none for 8x8 digits), then ``fc``
    to the logits. ``channels`` gives the first three widths; extra layers repeat the last.
    All convolutions pad by 1 and keep no bias (batch-norm follows).
    """
    _validate_policy(input_shape, num_classes, wbits, abits, end_bits)
    channels = list(channels)
    if len(channels) != 3 or any(c < 1 or c % ARRAY_MULTIPLE for c in channels):
        raise ValueError(f"channels must be three multiples of {ARRAY_MULTIPLE}, not {channels!r}")
    c, h, w = input_shape
    strides = [1, 2, 1]
    widths = list(channels)
    size = _conv_out(_conv_out(h, 3, 1, 1), 3, 2, 1)
    while size > 8:
        strides.append(2)
        widths.append(channels[-1])
        size = _conv_out(size, 3, 2, 1)
    layers: list[LayerSpec] = []
    for i, (stride, cout) in enumerate(zip(strides, widths, strict=True)):
        ho, wo = _conv_out(h, 3, stride, 1), _conv_out(w, 3, stride, 1)
        layers.append({
            "name": f"conv{i}", "op": "conv", "in_shape": [c, h, w], "out_shape": [cout, ho, wo],
            "kernel": 3, "stride": stride, "padding": 1,
            "bias": False, "bn": True, "act": "pact",
        })
        c, h, w = cout, ho, wo
    layers.append(_fc("fc", c * h * w, num_classes, last=True))
    return _assign_bits(layers, wbits, abits, end_bits)


def describe_mlp(input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
                 abits: int | None, end_bits: int = 8,
                 hidden: Sequence[int] = MLP_HIDDEN) -> list[LayerSpec]:
    """The MLP: fully connected layers with batch-norm and PACT, then the logits layer."""
    _validate_policy(input_shape, num_classes, wbits, abits, end_bits)
    n = int(input_shape[0] * input_shape[1] * input_shape[2])
    layers: list[LayerSpec] = []
    for i, width in enumerate(hidden):
        if width < 1 or width % ARRAY_MULTIPLE:
            raise ValueError(f"hidden widths must be multiples of {ARRAY_MULTIPLE}, not {width}")
        layers.append(_fc(f"fc{i}", n, width, last=False))
        n = width
    layers.append(_fc(f"fc{len(hidden)}", n, num_classes, last=True))
    return _assign_bits(layers, wbits, abits, end_bits)


def describe_resnet(input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
                    abits: int | None, end_bits: int = 8,
                    channels: Sequence[int] = RESNET_CHANNELS) -> list[LayerSpec]:
    """A small residual network: two stages, each a 3x3 convolution then one residual block.

    ``conv0`` (stride 1, ``channels[0]``) -> ``conv1`` -> ``conv2`` + skip(``conv0``) ->
    ``conv3`` (stride 2, ``channels[1]``) -> ``conv4`` -> ``conv5`` + skip(``conv3``) -> ``fc``.
    Each skip is the output of the layer two before (the chip reads it in place: see
    ``gen/compiler.py``). 3x3 kernels, pad 1, no bias (batch-norm follows).
    """
    _validate_policy(input_shape, num_classes, wbits, abits, end_bits)
    channels = list(channels)
    if len(channels) != 2 or any(c < 1 or c % ARRAY_MULTIPLE for c in channels):
        raise ValueError(f"channels must be two multiples of {ARRAY_MULTIPLE}, not {channels!r}")
    c, h, w = input_shape
    layers: list[LayerSpec] = []
    for stage, cout in enumerate(channels):
        for j, stride in enumerate((1 if stage == 0 else 2, 1, 1)):
            i = len(layers)
            ho, wo = _conv_out(h, 3, stride, 1), _conv_out(w, 3, stride, 1)
            spec: LayerSpec = {
                "name": f"conv{i}", "op": "conv", "in_shape": [c, h, w],
                "out_shape": [cout, ho, wo], "kernel": 3, "stride": stride, "padding": 1,
                "bias": False, "bn": True, "act": "pact",
            }
            if j == 2:
                spec["skip"] = i - 2
            layers.append(spec)
            c, h, w = cout, ho, wo
    layers.append(_fc("fc", c * h * w, num_classes, last=True))
    return _assign_bits(layers, wbits, abits, end_bits)


def describe_resnet20(input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
                      abits: int | None, end_bits: int = 8,
                      channels: Sequence[int] = RESNET20_CHANNELS,
                      blocks: int = RESNET20_BLOCKS) -> list[LayerSpec]:
    """CIFAR ResNet20 (He et al.): a 3x3 stem, three stages of ``blocks`` basic blocks, global
    average pool, fully connected logits (1 + 2 * 3 * 3 + 1 = 20 layers).

    A basic block is ``conv_a`` (3x3, BN, PACT) then ``conv_b`` (3x3, BN) plus the shortcut,
    then PACT. The shortcut is the block's input; the first block of stages 2 and 3 has stride
    2 and uses option A (no weights): every second pixel, zero channels added on both sides,
    ``skip_stride=2``, ``skip_channel_offset=(planes - in_planes) // 2`` (``planes // 4``).
    """
    _validate_policy(input_shape, num_classes, wbits, abits, end_bits)
    channels = list(channels)
    if len(channels) != 3 or any(c < 1 for c in channels) or blocks < 1:
        raise ValueError(f"channels must be three positive widths and blocks >= 1, not "
                         f"{channels!r} and {blocks!r}")
    layers = [_conv("conv0", input_shape, channels[0], 3, 1, 1)]
    for stage, planes in enumerate(channels):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            block_in = len(layers) - 1
            in_shape = layers[-1]["out_shape"]
            a = _conv(f"conv{len(layers)}", in_shape, planes, 3, stride, 1)
            layers.append(a)
            res = _conv(f"conv{len(layers)}", a["out_shape"], planes, 3, 1, 1)
            res["skip"] = block_in
            if stride != 1 or in_shape[0] != planes:
                if planes < in_shape[0] or (planes - in_shape[0]) % 2:
                    raise ValueError(f"option-A shortcut from {in_shape[0]} to {planes} "
                                     "channels needs an even increase")
                res["skip_stride"] = stride
                res["skip_channel_offset"] = (planes - in_shape[0]) // 2
            layers.append(res)
    fc = _fc("fc", channels[-1], num_classes, last=True)
    fc["in_shape"] = list(layers[-1]["out_shape"])
    fc["in_pool"] = "avg"
    layers.append(fc)
    return _assign_bits(layers, wbits, abits, end_bits)


def describe_svhn(input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
                  abits: int | None, end_bits: int = 8) -> list[LayerSpec]:
    """The DoReFa SVHN network (tensorpack ``svhn-digit-dorefa``), for square inputs of side
    ``24 + 4n`` (40 by default, as tensorpack resizes SVHN to 40x40).

    ``conv0`` 5x5 48 valid + pool, ``conv1`` 3x3 64 same, ``conv2`` 3x3 64 same + pool,
    ``conv3`` 3x3 128 valid, ``conv4`` 3x3 128 same, ``conv5`` 3x3 128 valid, ``conv6`` 512
    valid over the whole remaining plane (5x5 at 40: 40 -> 36 -> 18 -> 18 -> 9 -> 7 -> 7 -> 5
    -> 1; 3x3 at 32), ``fc`` 512 -> classes. Batch-norm after every conv; PACT before each
    pool (the pool takes codes: see the module docstring).
    """
    _validate_policy(input_shape, num_classes, wbits, abits, end_bits)
    _, h, w = input_shape
    if h != w or h < 24 or (h - 24) % 4:
        raise ValueError(f"the svhn network takes square inputs of side 24 + 4n (40 by "
                         f"default), not {h}x{w}")
    layers: list[LayerSpec] = []
    shape = list(input_shape)
    for i, (k, cout, pad, pool) in enumerate(SVHN_CONVS):
        layers.append(_conv(f"conv{i}", shape, cout, k, 1, pad, pool))
        shape = layers[-1]["out_shape"]
    layers.append(_conv(f"conv{len(SVHN_CONVS)}", shape, SVHN_LAST_WIDTH, shape[1], 1, 0))
    layers.append(_fc("fc", SVHN_LAST_WIDTH, num_classes, last=True))
    return _assign_bits(layers, wbits, abits, end_bits)


def describe_lenet(input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
                   abits: int | None, end_bits: int = 8) -> list[LayerSpec]:
    """LeNet-5 for 28x28: ``conv0`` 5x5 6 pad 2 + pool (14), ``conv1`` 5x5 16 valid + pool (5),
    ``fc2`` 400 -> 120, ``fc3`` 120 -> 84, ``fc4`` 84 -> classes; PACT after every hidden
    layer (before each pool), batch-norm on hidden layers."""
    _validate_policy(input_shape, num_classes, wbits, abits, end_bits)
    layers: list[LayerSpec] = []
    shape = list(input_shape)
    for i, (k, cout, pad) in enumerate(LENET_CONVS):
        layers.append(_conv(f"conv{i}", shape, cout, k, 1, pad, pool=True))
        shape = layers[-1]["out_shape"]
    n = shape[0] * shape[1] * shape[2]
    for width in LENET_HIDDEN:
        layers.append(_fc(f"fc{len(layers)}", n, width, last=False))
        n = width
    layers.append(_fc(f"fc{len(layers)}", n, num_classes, last=True))
    return _assign_bits(layers, wbits, abits, end_bits)


_DESCRIBE: dict[str, Callable[..., list[LayerSpec]]] = {
    "resnet20": describe_resnet20, "svhn": describe_svhn, "lenet": describe_lenet}


def describe(model: str, input_shape: Sequence[int], num_classes: int, *, wbits: int | None,
             abits: int | None, end_bits: int = 8) -> list[LayerSpec]:
    """The layer list of ``model`` (one of ``MODELS``) for that input and bit policy."""
    if model in _DESCRIBE:
        return _DESCRIBE[model](input_shape, num_classes, wbits=wbits, abits=abits,
                                end_bits=end_bits)
    if model == "resnet":
        return describe_resnet(input_shape, num_classes, wbits=wbits, abits=abits,
                               end_bits=end_bits)
    if model == "cnn":
        return describe_cnn(input_shape, num_classes, wbits=wbits, abits=abits, end_bits=end_bits)
    if model == "mlp":
        return describe_mlp(input_shape, num_classes, wbits=wbits, abits=abits, end_bits=end_bits)
    raise ValueError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})")


def input_bits(layers: Sequence[LayerSpec]) -> int | None:
    """Width of the network input codes (``None`` for a float baseline)."""
    return layers[0]["in_bits"]


def quantized_bits(spec: LayerSpec) -> tuple[int, int, int]:
    """``(wbits, in_bits, out_bits)`` of a quantized layer; ``ValueError`` for a float one (the
    integer path has no meaning there)."""
    bits = spec.get("wbits"), spec.get("in_bits"), spec.get("out_bits")
    wbits, in_bits, out_bits = bits
    if wbits is None or in_bits is None or out_bits is None:
        raise ValueError(f"layer {spec['name']} is a float layer, without bit-widths")
    return wbits, in_bits, out_bits


def address_skip(spec: LayerSpec, src: "torch.Tensor") -> "torch.Tensor":
    """``src`` (``[N, C_src, H_src, W_src]``) as the skip input of residual layer ``spec``: every
    ``skip_stride``-th pixel, ``skip_channel_offset`` zero channels before it and zeros after, to
    the layer's pre-pool shape (``golden.integer.skip_tensor`` on tensors).

    Tensor methods only (no ``torch`` import), so this module stays torch-free; the zero channels
    are a ``new_zeros`` with ``src`` copied in, which autograd differentiates like a pad.
    """
    if spec["op"] != "conv":
        return src
    c, h, w = conv_shape(spec)
    s, o = spec.get("skip_stride", 1), spec.get("skip_channel_offset", 0)
    if s != 1:
        src = src[:, :, : s * h : s, : s * w : s]
    if src.shape[1] != c:
        n, c_src, h_src, w_src = src.shape
        padded = src.new_zeros((n, c, h_src, w_src))
        padded[:, o : o + c_src] = src
        src = padded
    return src
