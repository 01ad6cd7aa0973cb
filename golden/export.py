"""``pact export``: fold a trained run into an integer model image.

For each layer, with input codes ``a`` (real value ``a * in_scale``; ``in_scale`` is
``alpha_prev / (2**k_prev - 1)``, or ``1 / (2**input_bits - 1)`` for the network input) and
DoReFa weight codes ``q`` (real value ``s / (2**wbits - 1)``, ``s = 2q - (2**wbits - 1)``), the
real pre-activation of output channel ``c`` is an affine map of the integer accumulator
``acc = sum(s * a)``::

    y_c = m_c * acc + b_c
    m_c = g_c * in_scale / (2**wbits - 1)          g_c = gamma_c / sqrt(var_c + eps)
    b_c = g_c * (bias_c - mean_c) + beta_c         (no batch-norm: g_c = 1, mean_c = beta_c = 0)

PACT's output code is ``clamp(round(y_c * (2**k - 1) / alpha_out))``, so the code-domain map is
``m'_c = m_c * (2**k - 1) / alpha_out`` (and ``b'_c`` likewise); for the logits it is
``m_c / logit_scale``. In fixed point, ``S_c`` puts ``|m'_c| * 2**S_c`` in ``[2**14, 2**15)``
(``1 <= S_c <= 47``), ``M_c = round_half_up(m'_c * 2**S_c)`` and ``B_c = round_half_up(b'_c *
2**S_c)``; ``golden.integer.requantize`` then computes ``round_half_up_shift(M_c * acc + B_c,
S_c)``.

A residual layer adds an earlier layer's output ``skip_real = skip_code * alpha_skip / (2**k_skip
- 1)`` to ``y_c`` before the clip; in output codes that is ``m_skip * skip_code`` with ``m_skip =
(alpha_skip / alpha_out) * (2**k - 1) / (2**k_skip - 1)``. Then ``S_c`` is the smaller of the two
shifts that put ``|M_c|`` in 16 and ``|skip_mult_c|`` in 32 signed bits (so in practice ``M_c``'s
own), and ``skip_mult_c =
round_half_up(m_skip * 2**S_c)`` (``golden.integer.requantize_residual``). A strided or
channel-offset skip (ResNet's option A) changes which codes are added, not ``m_skip``.

A fully connected layer behind a global average pool (``in_pool="avg"``) accumulates the plane
sums of its input, so its ``m_c`` carries the ``1/(H*W)`` of the mean.

A pooled layer (``pool="max2"``) must have every ``M_c >= 0`` (the image format's condition for
pooling codes). The float model pools after PACT, so a channel whose ``m'_c`` is negative (a
negative batch-norm scale) is exported with its weight codes mirrored, ``q -> 2**wbits - 1 -
q``, which negates its odd weights and so its accumulator exactly; ``M_c`` is then ``m'_c``'s
magnitude and the codes are unchanged (``mirror_negative_channels``).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .models import _Block

import numpy as np
import torch

from . import data as data_mod
from .errors import UserError
from .image import Layer, ModelImage, content_hash, from_bytes, save
from .integer import (
    LOGIT_BITS,
    REQUANT_MAX_SHIFT,
    REQUANT_MULT_BITS,
    REQUANT_OFFSET_BITS,
    REQUANT_SKIP_MULT_BITS,
)
from .models import PactNet, quantized_bits
from .paths import check_output
from .quant import dorefa_codes
from .train import (
    IMAGE_NAME,
    TrainConfig,
    build_from_checkpoint,
    load_checkpoint,
    network_input,
    state_fingerprint,
)

__all__ = [
    "IMAGE_NAME",
    "ExportError",
    "round_half_up_float",
    "fixed_point_multiplier",
    "fixed_point_offset",
    "fixed_point_pair",
    "choose_logit_scale",
    "real_affine",
    "mirror_negative_channels",
    "fold",
    "image_from_checkpoint",
    "export",
    "add_arguments",
    "run",
]

#: Target magnitude of M: ``2**(MULT_BITS-2) <= |M| < 2**(MULT_BITS-1)``.
_M_LOW = 1 << (REQUANT_MULT_BITS - 2)
_M_LIMIT = 1 << (REQUANT_MULT_BITS - 1)
_B_LIMIT = 1 << (REQUANT_OFFSET_BITS - 1)
#: Integer logits use at most half the signed range on the training set (2x headroom).
LOGIT_HEADROOM = 2.0


class ExportError(UserError):
    """A trained model that cannot be expressed in the integer recipe."""


def round_half_up_float(v: float) -> int:
    """``floor(v + 1/2)`` of a Python float, exactly, as an int (ties toward +infinity).

    >>> [round_half_up_float(v) for v in (2.5, -2.5, 2.4999, -0.5, 0.49999999999999994)]
    [3, -2, 2, 0, 0]
    """
    low = math.floor(v)
    return low + (1 if v - low >= 0.5 else 0)


def fixed_point_multiplier(m: float, where: str = "layer",
                           bits: int = REQUANT_MULT_BITS) -> tuple[int, int]:
    """``(M, S)`` with ``M = round_half_up(m * 2**S)`` and ``2**14 <= |M| < 2**15`` (for
    ``bits`` signed bits: ``2**(bits-2) <= |M| < 2**(bits-1)``).

    ``S`` is clamped to ``1..47``: a tiny ``m`` gets ``S = 47`` and a smaller ``|M|``; ``m = 0``
    gives ``(0, 1)``. A multiplier too large for ``S = 1`` raises ``ExportError``.

    >>> fixed_point_multiplier(1.0)
    (16384, 14)
    >>> fixed_point_multiplier(-0.75)
    (-24576, 15)
    """
    m = float(m)
    if not math.isfinite(m):
        raise ExportError(f"{where}: requantization multiplier is {m}; the run diverged, "
                          "train it again")
    if m == 0.0:
        return 0, 1
    limit = 1 << (bits - 1)
    _, e = math.frexp(abs(m))  # |m| in [2**(e-1), 2**e)
    shift = min(max(bits - 1 - e, 1), REQUANT_MAX_SHIFT)
    mult = round_half_up_float(math.ldexp(m, shift))
    if abs(mult) >= limit and shift > 1:
        # m just below 2**e rounded up to 2**15: one bit less of fraction fits.
        shift -= 1
        mult = round_half_up_float(math.ldexp(m, shift))
    if abs(mult) >= limit:
        raise ExportError(f"{where}: requantization multiplier {m:.6g} needs more than "
                          f"{bits} signed bits even at shift 1; lower the bit-width "
                          "or check the batch-norm statistics")
    return mult, shift


def fixed_point_pair(m: float, m_skip: float, where: str = "layer") -> tuple[int, int, int]:
    """``(M, skip_mult, S)`` for a residual layer: ``S`` is the smaller of the shifts
    ``fixed_point_multiplier`` picks for ``m`` (16 signed bits) and for ``m_skip`` (32), so both
    fit; ``M = round_half_up(m * 2**S)``, ``skip_mult = round_half_up(m_skip * 2**S)``. With
    ``m_skip`` up to ``2**16`` times ``m``, ``S`` is ``m``'s own and ``M`` keeps 15 bits.

    >>> fixed_point_pair(0.01, 1.5)
    (20972, 3145728, 21)
    >>> fixed_point_pair(1.0, 2.0 ** 20)   # the skip multiplier limits S: M loses bits
    (1024, 1073741824, 10)
    """
    _, s1 = fixed_point_multiplier(m, where)
    _, s2 = fixed_point_multiplier(m_skip, f"{where} (skip)", bits=REQUANT_SKIP_MULT_BITS)
    shift = min(s1, s2)
    return (round_half_up_float(math.ldexp(float(m), shift)),
            round_half_up_float(math.ldexp(float(m_skip), shift)), shift)


def fixed_point_offset(b: float, shift: int, where: str = "layer") -> int:
    """``B = round_half_up(b * 2**shift)``; ``ExportError`` if it does not fit 48 signed bits."""
    b = float(b)
    if not math.isfinite(b):
        raise ExportError(f"{where}: requantization offset is {b}; the run diverged")
    offset = round_half_up_float(math.ldexp(b, shift))
    if abs(offset) >= _B_LIMIT:
        raise ExportError(f"{where}: offset {b:.6g} * 2**{shift} does not fit "
                          f"{REQUANT_OFFSET_BITS} signed bits; check the batch-norm statistics")
    return offset


def choose_logit_scale(max_abs_logit: float) -> float:
    """Power of two (real logit per integer code) that keeps logits within half of int16.

    >>> choose_logit_scale(20.0)   # 20 / 2**-10 = 20480 > 16383, so 2**-9: 10240
    0.001953125
    """
    limit = ((1 << (LOGIT_BITS - 1)) - 1) / LOGIT_HEADROOM
    max_abs_logit = float(max_abs_logit)
    if not math.isfinite(max_abs_logit):
        raise ExportError("logits are not finite on the training set; train the run again")
    if max_abs_logit <= 0:
        return 1.0
    return math.ldexp(1.0, math.ceil(math.log2(max_abs_logit / limit)))


def real_affine(block: _Block, in_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(m, b)`` (float64 arrays) mapping a block's accumulator to its real
    pre-activation (conv/fc, bias and batch-norm in eval mode)."""
    spec = block.spec
    cout = spec["out_shape"][0]
    wbits = quantized_bits(spec)[0]
    m = np.full(cout, in_scale / ((1 << wbits) - 1), dtype=np.float64)
    if spec.get("in_pool") == "avg":
        m = m / (spec["in_shape"][1] * spec["in_shape"][2])
    b = np.zeros(cout, dtype=np.float64)
    if block.linear.bias is not None:
        b = block.linear.bias.detach().double().numpy().copy()
    if block.bn is not None:
        bn = block.bn
        assert bn.running_var is not None and bn.running_mean is not None  # tracked stats
        g = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.double().numpy()
                                                         + bn.eps)
        b = g * (b - bn.running_mean.double().numpy()) + bn.bias.detach().double().numpy()
        m = g * m
    return m, b


def mirror_negative_channels(codes: np.ndarray, m: np.ndarray,
                             wbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Weight codes and multipliers with every channel of negative ``m`` mirrored: ``q ->
    2**wbits - 1 - q`` negates the odd weights ``2q - (2**wbits - 1)``, so ``m * acc`` is
    unchanged when ``m`` changes sign too. Returns new arrays.

    >>> c, mm = mirror_negative_channels(np.array([[0, 3], [1, 2]]), np.array([0.5, -0.25]), 2)
    >>> c.tolist(), mm.tolist()
    ([[0, 3], [2, 1]], [0.5, 0.25])
    """
    codes, m = np.array(codes), np.array(m, dtype=np.float64)
    neg = m < 0
    codes[neg] = ((1 << wbits) - 1) - codes[neg]
    m[neg] = -m[neg]
    return codes, m


def fold(net: PactNet, logit_scale: float) -> list[Layer]:
    """The integer layers of a trained fake-quant ``PactNet`` (eval statistics)."""
    if not net.quantized:
        raise ExportError("a float baseline has no integer form; train without --float")
    layers: list[Layer] = []
    in_scale = 1.0 / ((1 << quantized_bits(net.layers[0])[1]) - 1)
    out_scales: list[float | None] = []  # real value of one output code per layer (None: logits)
    for block in net.blocks:
        spec = block.spec
        wbits, in_bits, out_bits = quantized_bits(spec)
        skip = spec.get("skip")
        m, b = real_affine(block, in_scale)
        alpha: float | None
        if spec["act"] == "pact":
            assert block.act is not None  # a PACT layer has its activation
            alpha = float(block.act.alpha.detach())
            to_code = ((1 << out_bits) - 1) / alpha
            out_kind = "pact"
        else:
            alpha, to_code, out_kind = None, 1.0 / logit_scale, "logits"
        if skip is not None and (out_kind != "pact" or out_scales[skip] is None):
            raise ExportError(f"layer {spec['name']}: a skip input needs PACT codes on both "
                              "ends")
        codes = dorefa_codes(block.linear.weight, wbits).numpy()
        if spec.get("pool") is not None:
            codes, m = mirror_negative_channels(codes, m, wbits)
        mult: list[int] = []
        offset: list[int] = []
        shift: list[int] = []
        skip_mult: list[int] = []
        for c in range(len(m)):
            where = f"layer {spec['name']} channel {c}"
            if skip is None:
                mc, sc = fixed_point_multiplier(m[c] * to_code, where)
            else:
                skip_scale = cast(float, out_scales[skip])  # PACT codes: checked above
                mc, smc, sc = fixed_point_pair(m[c] * to_code, skip_scale * to_code, where)
                skip_mult.append(smc)
            mult.append(mc)
            shift.append(sc)
            offset.append(fixed_point_offset(b[c] * to_code, sc, where))
        layers.append(Layer(
            name=spec["name"], op=spec["op"],
            in_shape=tuple(spec["in_shape"]), out_shape=tuple(spec["out_shape"]),
            wbits=wbits, in_bits=in_bits, out_bits=out_bits,
            out_kind=out_kind,
            weights=codes.astype(np.uint8 if wbits <= 8 else np.uint16),
            mult=np.array(mult, dtype=np.int16), offset=np.array(offset, dtype=np.int64),
            shift=np.array(shift, dtype=np.uint8),
            kernel=spec["kernel"], stride=spec["stride"], padding=spec["padding"], alpha=alpha,
            skip=skip,
            skip_mult=None if skip is None else np.array(skip_mult, dtype=np.int32),
            skip_stride=spec.get("skip_stride", 1),
            skip_channel_offset=spec.get("skip_channel_offset", 0),
            pool=spec.get("pool"), in_pool=spec.get("in_pool"),
        ))
        if alpha is None:
            out_scales.append(None)
        else:
            in_scale = alpha / ((1 << out_bits) - 1)
            out_scales.append(in_scale)
    return layers


@torch.no_grad()
def max_abs_logit(net: PactNet, x: torch.Tensor, batch: int = 1024) -> float:
    """Largest ``|logit|`` of the fake-quant network (eval mode) over input tensor ``x``."""
    net.eval()
    peak = 0.0
    for i in range(0, len(x), batch):
        peak = max(peak, float(net(x[i:i + batch]).abs().max()))
    return peak


def image_from_checkpoint(ckpt: Mapping[str, Any],
                          dataset: data_mod.Dataset | None = None) -> ModelImage:
    """Fold a checkpoint into a :class:`ModelImage` (``dataset`` defaults to the run's)."""
    config = TrainConfig.from_dict(ckpt["config"])
    if config.is_float:
        raise ExportError("this run is a float baseline; export a quantized run "
                          "(train with --wbits/--abits)")
    net = build_from_checkpoint(ckpt)
    if dataset is None:
        dataset = data_mod.load(config.data)
    logit_scale = choose_logit_scale(max_abs_logit(net, network_input(dataset.x_train,
                                                                        net.layers)))
    layers = fold(net, logit_scale)
    meta = {
        "model": config.model,
        "dataset": config.data,
        "num_classes": int(ckpt["num_classes"]),
        "wbits": config.wbits,
        "abits": config.abits,
        "end_bits": config.end_bits,
        "seed": config.seed,
        "epochs": config.epochs,
        "test_accuracy": float(ckpt["test_accuracy"]),
        "logit_scale": logit_scale,
        "input_range": [0.0, 1.0],
        "rounding": "half_up",
        "checkpoint_fingerprint": state_fingerprint(ckpt["state_dict"]),
        "train_config": config.to_dict(),
        "network": ckpt["layers"],
    }
    return ModelImage(input_shape=tuple(ckpt["input_shape"]),
                      input_bits=quantized_bits(net.layers[0])[1], layers=layers, meta=meta)


def export(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the image of ``run_dir`` to ``out`` (default ``run_dir/model.pactimg``); return
    the path."""
    run_dir = Path(run_dir)
    if out is not None:
        check_output(out, "--out")
    ckpt = load_checkpoint(run_dir)
    out = check_output(out if out is not None else run_dir / IMAGE_NAME, "--out")
    image = image_from_checkpoint(ckpt)
    save(image, out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="DIR", help="a run directory of pact train")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help=f"image file (default: DIR/{IMAGE_NAME})")


def run(args: argparse.Namespace) -> int:
    path = export(args.run_dir, args.out)
    data = path.read_bytes()
    image = from_bytes(data)
    print(f"wrote {path} ({len(data)} bytes, file sha256 {hashlib.sha256(data).hexdigest()}, "
          f"image hash {content_hash(data)[:16]}...)")
    for layer in image.layers:
        kind = f"alpha {layer.alpha:.4g}" if layer.alpha is not None else "logits"
        print(f"  {layer.name:6s} {layer.op:4s} {list(layer.in_shape)} -> "
              f"{list(layer.out_shape)} w{layer.wbits} in{layer.in_bits} out{layer.out_bits} "
              f"{kind}, shift {int(layer.shift.min())}..{int(layer.shift.max())}")
    return 0

