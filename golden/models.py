"""The PyTorch modules of a network description (``golden.shapes``: the plain-data layer list).

``PactNet(layers)`` is the fake-quant network of a layer list. The description functions
(``describe`` and friends) live in the torch-free ``golden.shapes`` and are re-exported here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .quant import PACT, QConv2d, QLinear
from .shapes import (
    ARRAY_MULTIPLE,
    BITS_RANGE,
    MODELS,
    LayerSpec,
    address_skip,
    conv_shape,
    describe,
    describe_cnn,
    describe_lenet,
    describe_mlp,
    describe_resnet,
    describe_resnet20,
    describe_svhn,
    input_bits,
    quantized_bits,
)

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
    "PactNet",
]


class _Block(nn.Module):
    """One described layer: conv/fc, then batch-norm and PACT, or nothing (logits)."""

    spec: LayerSpec
    linear: QConv2d | QLinear
    bn: nn.BatchNorm2d | nn.BatchNorm1d | None
    act: PACT | None

    def __init__(self, spec: LayerSpec, alpha_init: float) -> None:
        super().__init__()
        self.spec = spec
        if spec["op"] == "conv":
            self.flatten = self.average = False
            self.linear = QConv2d(
                spec["in_shape"][0], spec["out_shape"][0], spec["kernel"],
                stride=spec["stride"], padding=spec["padding"], bias=spec["bias"],
                wbits=spec["wbits"],
            )
            self.bn = nn.BatchNorm2d(spec["out_shape"][0]) if spec["bn"] else None
        elif spec["op"] == "fc":
            self.flatten = True
            self.average = spec.get("in_pool") == "avg"
            self.linear = QLinear(spec["in_shape"][0], spec["out_shape"][0], bias=spec["bias"],
                                  wbits=spec["wbits"])
            self.bn = nn.BatchNorm1d(spec["out_shape"][0]) if spec["bn"] else None
        else:
            raise ValueError(f"layer {spec['name']}: unknown op {spec['op']!r}")
        self.act = PACT(spec["out_bits"], alpha_init) if spec["act"] == "pact" else None

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The real value that PACT clips: conv/fc output after batch-norm."""
        if self.flatten and self.average:
            x = x.mean(dim=(2, 3))  # the integer path sums; export folds in the 1/(H*W)
        elif self.flatten:
            x = torch.flatten(x, 1)  # C, H, W order, as the image format states
        y = self.linear(x)
        return self.bn(y) if self.bn is not None else y

    def pool(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's 2x2 max pool (after PACT: it pools codes), or nothing."""
        return F.max_pool2d(y, 2) if self.spec.get("pool") == "max2" else y

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        y = self.pre_activation(x)
        if skip is not None:
            y = y + skip
        return self.pool(self.act(y) if self.act is not None else y)


class PactNet(nn.Module):
    """The PyTorch network of a layer list: fake-quant when the layers carry bit-widths.

    Inputs are ``[N, C, H, W]`` images already on the input grid (see ``golden.data``); the
    output is the real-valued logits.
    """

    def __init__(self, layers: Sequence[LayerSpec], alpha_init: float = 2.0) -> None:
        super().__init__()
        self.layers = copy.deepcopy(list(layers))
        # A ModuleList at run time (so the blocks register); typed as the blocks it holds.
        self.blocks = cast(Sequence[_Block],
                           nn.ModuleList(_Block(spec, alpha_init) for spec in self.layers))

    @property
    def quantized(self) -> bool:
        return self.layers[0]["wbits"] is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for block in self.blocks:
            x = block(x, self.skip_input(block, outs))
            outs.append(x)
        return x

    @staticmethod
    def skip_input(block: _Block, outs: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """The tensor a residual block adds (an earlier block's output, strided and padded
        with zero channels as the layer says), or ``None``."""
        j = block.spec.get("skip")
        return None if j is None else address_skip(block.spec, outs[j])

    def pacts(self) -> list[tuple[str, PACT]]:
        """``(name, PACT module)`` of every hidden layer, in order."""
        return [(b.spec["name"], b.act) for b in self.blocks if b.act is not None]

    def alphas(self) -> dict[str, float]:
        """``{layer name: alpha}`` as floats."""
        return {name: float(act.alpha.detach()) for name, act in self.pacts()}

    def alpha_penalty(self) -> torch.Tensor | int:
        """``sum(alpha**2)`` over all PACT layers (the trainer scales it by lambda_alpha)."""
        return sum(act.penalty() for _, act in self.pacts())

    def clamp_alphas(self) -> None:
        for _, act in self.pacts():
            act.clamp_alpha()

    @torch.no_grad()
    def trace_codes(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every hidden layer's output codes (float tensors of whole numbers) and the logits.

        Codes are ``round_half_up(clip(y, 0, alpha) * (2**k - 1) / alpha)`` of each PACT's
        pre-activation ``y``; the next layer sees exactly ``code * alpha / (2**k - 1)``, as in
        ``forward``. Use in eval mode (batch-norm running statistics).
        """
        if not self.quantized:
            raise ValueError("a float baseline has no activation codes")
        codes: list[torch.Tensor] = []
        outs: list[torch.Tensor] = []
        for block in self.blocks:
            y = block.pre_activation(x)
            skip = self.skip_input(block, outs)
            if skip is not None:
                y = y + skip
            if block.act is None:
                return codes, y
            codes.append(block.pool(block.act.codes(y)))
            x = block.pool(block.act(y))
            outs.append(x)
        raise AssertionError("a network ends with a logits layer")
