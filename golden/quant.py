"""The float path: PACT activations, DoReFa weights and fake-quant layers for training.

Everything here is PyTorch and real-valued; the integer path lives in ``golden.integer`` and
``golden.reference``. The two meet in ``golden.export``, which turns the fake-quant values of
this module into integer codes without changing them.

Rounding: the fake-quant path rounds half up (``floor(v + 1/2)``), like the integer path, rather
than with ``torch.round`` (ties to even). On weights this matters: the DoReFa codes exported to
the image are computed by the very functions used in training, so they are the same codes.
"""

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ALPHA_MIN",
    "levels",
    "round_half_up",
    "pact_codes",
    "pact_quantize",
    "PactQuantize",
    "PACT",
    "dorefa_codes",
    "dorefa_weight",
    "QConv2d",
    "QLinear",
]

#: Smallest alpha the optimizer may leave behind: PACT needs a positive clip.
ALPHA_MIN = 1e-3


def levels(bits: int) -> int:
    """The largest unsigned ``bits``-bit code, ``2**bits - 1``."""
    return (1 << bits) - 1


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties toward +infinity (``floor(v + 1/2)``), as the integer path rounds.

    Computed as ``floor(v)`` plus one where the fraction ``v - floor(v)`` (exact in floating
    point) is at least 1/2: the literal ``floor(v + 0.5)`` is wrong for the float just below
    1/2, where ``v + 0.5`` rounds up to 1.
    """
    low = torch.floor(v)
    return low + (v - low >= 0.5).to(v.dtype)


class _RoundHalfUpSTE(torch.autograd.Function):
    """Round half up in the forward pass; pass the gradient straight through (the STE)."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor) -> torch.Tensor:
        return round_half_up(v)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def pact_codes(x: torch.Tensor, alpha: torch.Tensor | float, bits: int) -> torch.Tensor:
    """The unsigned PACT codes ``round_half_up(clip(x, 0, alpha) * (2**bits - 1) / alpha)``.

    ``alpha`` is a scalar tensor (or float); the result is a float tensor of whole numbers in
    ``0..2**bits - 1``. No gradient: this is what export and agreement checks read.
    """
    with torch.no_grad():
        alpha = torch.as_tensor(alpha, dtype=x.dtype)
        y = torch.minimum(torch.clamp(x, min=0), alpha)
        return round_half_up(y * levels(bits) / alpha)


class PactQuantize(torch.autograd.Function):
    """PACT's clip to ``[0, alpha]`` and ``bits``-bit quantization, with the paper's gradients.

    Forward: ``y_q = round_half_up(clip(x, 0, alpha) * n / alpha) * alpha / n`` with
    ``n = 2**bits - 1``.

    Backward (straight-through estimator on the rounding):

    - ``dy_q/dx = 1`` where ``0 <= x < alpha``, else ``0``;
    - ``dy_q/dalpha = 1`` where ``x >= alpha``, else ``0`` (summed over all elements).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
        ctx.save_for_backward(x, alpha)
        n = levels(bits)
        y = torch.minimum(torch.clamp(x, min=0), alpha)
        return round_half_up(y * n / alpha) * alpha / n

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, alpha = ctx.saved_tensors
        clipped = x >= alpha
        inside = (x >= 0) & ~clipped
        grad_x = grad * inside.to(grad.dtype)
        grad_alpha = (grad * clipped.to(grad.dtype)).sum().reshape(alpha.shape)
        return grad_x, grad_alpha, None


def pact_quantize(x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """Functional form of :class:`PactQuantize`."""
    out: torch.Tensor = PactQuantize.apply(x, alpha, bits)
    return out


class PACT(nn.Module):
    """PACT activation: one trainable clip ``alpha`` per layer, ``bits``-bit output.

    ``bits=None`` gives the float baseline's activation, a plain ReLU (``alpha`` is still kept so
    the module has the same state in both modes, but it is not used).

    The L2 penalty ``lambda_alpha * alpha**2`` is added to the loss by the trainer
    (:meth:`penalty`); alpha is kept positive by :meth:`clamp_alpha` after each step.
    """

    def __init__(self, bits: int | None = None, alpha_init: float = 2.0) -> None:
        super().__init__()
        if bits is not None and not 1 <= bits <= 16:
            raise ValueError(f"PACT bits must be in 1..16, not {bits!r}")
        if not alpha_init > 0:
            raise ValueError(f"PACT alpha_init must be positive, not {alpha_init!r}")
        self.bits = bits
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return F.relu(x)
        return pact_quantize(x, self.alpha.to(x.dtype), self.bits)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Output codes of this activation for pre-activations ``x`` (quantized mode only)."""
        if self.bits is None:
            raise ValueError("a float (bits=None) PACT activation has no codes")
        return pact_codes(x, self.alpha.detach().to(x.dtype), self.bits)

    def penalty(self) -> torch.Tensor:
        """``alpha**2``; the trainer multiplies it by lambda_alpha."""
        return self.alpha.pow(2)

    @torch.no_grad()
    def clamp_alpha(self) -> None:
        self.alpha.clamp_(min=ALPHA_MIN)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha.detach()):.4g}"


def _dorefa_normalized(w: torch.Tensor) -> torch.Tensor:
    """DoReFa's ``tanh(w) / (2 max|tanh(w)|) + 1/2``, in ``[0, 1]``."""
    t = torch.tanh(w)
    peak = t.abs().max()
    # An all-zero weight tensor (a fresh or dead layer) maps to the middle, not to NaN.
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return t / (2 * peak) + 0.5


def dorefa_codes(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa weight codes ``q = round_half_up((2**bits - 1) * w_n)``, unsigned ``bits``-bit.

    Returned as an int64 tensor; the weight value is ``(2q - (2**bits - 1)) / (2**bits - 1)``.
    """
    with torch.no_grad():
        q = round_half_up(levels(bits) * _dorefa_normalized(w))
        return q.clamp(0, levels(bits)).to(torch.int64)


def dorefa_weight(w: torch.Tensor, bits: int | None) -> torch.Tensor:
    """DoReFa ``bits``-bit weights in ``[-1, 1]``: ``2 q / (2**bits - 1) - 1``, STE on the round.

    ``bits=None`` returns ``w`` unchanged (float baseline).
    """
    if bits is None:
        return w
    n = levels(bits)
    q: torch.Tensor = _RoundHalfUpSTE.apply(n * _dorefa_normalized(w))
    # (2q - n) / n: the odd integer over n, so the level is the exact quotient of the integers
    # the hardware multiplies (2q/n - 1 can be one ulp off).
    return (2 * q - n) / n


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weights are DoReFa-quantized to ``wbits`` (``None``: float)."""

    def __init__(self, *args: Any, wbits: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wbits = wbits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dorefa_weight(self.weight, self.wbits).to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, wbits={self.wbits}"


class QLinear(nn.Linear):
    """``nn.Linear`` whose weights are DoReFa-quantized to ``wbits`` (``None``: float)."""

    def __init__(self, *args: Any, wbits: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wbits = wbits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dorefa_weight(self.weight, self.wbits).to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, wbits={self.wbits}"

