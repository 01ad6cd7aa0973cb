"""The integer reference: runs a model image with int64 arithmetic only, layer by layer.

This is what the hardware is compared against with ``==``. It uses nothing but the named
integer functions of ``golden.integer``; no float and no ``torch.round`` is on this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .integer import (
    avg_pool_acc,
    conv2d_acc,
    dorefa_odd_values,
    linear_acc,
    max_pool2,
    plane_sums,
    requantize,
    requantize_residual,
    round_half_up_shift,
    skip_tensor,
)

if TYPE_CHECKING:
    from .image import Layer, ModelImage

__all__ = [
    "quantize_input",
    "layer_accumulators",
    "run_layer",
    "run",
    "predict",
    "conv2d_acc_batch",
    "linear_acc_batch",
    "run_batch",
    "predict_batch",
]


def quantize_input(x: ArrayLike, bits: int) -> np.ndarray:
    """Images in ``[0, 1]`` (float) to unsigned ``bits``-bit codes, rounding half up.

    The float is scaled by ``2**bits - 1`` and put on a grid of ``2**-16`` first, so that the
    integer rounding below is exact and reproducible (values come from ``load_digits``'s
    sixteenths or 8-bit pixels, which that grid holds exactly).
    """
    fixed = np.floor(np.asarray(x, dtype=np.float64) * ((1 << bits) - 1) * (1 << 16) + 0.5)
    codes = round_half_up_shift(fixed.astype(np.int64), 16)
    return np.clip(codes, 0, (1 << bits) - 1)


def layer_accumulators(layer: Layer, x: ArrayLike) -> np.ndarray:
    """The exact accumulators of one layer for one input (``[C, H, W]`` or ``[N]`` codes)."""
    s = dorefa_odd_values(layer.weights, layer.wbits)
    if layer.op == "conv":
        return conv2d_acc(x, s, layer.stride, layer.padding)
    if layer.in_pool == "avg":
        return avg_pool_acc(x, s)
    return linear_acc(x, s)


def _requantize_layer(layer: Layer, acc: np.ndarray, skip: np.ndarray | None) -> np.ndarray:
    """``acc`` (channel first) to output codes; ``skip`` (same shape) for a residual layer."""
    if layer.skip is not None:
        if skip is None:
            raise ValueError(f"layer {layer.name} adds the output of layer {layer.skip}: "
                             "pass it as skip")
        assert layer.skip_mult is not None  # validate() makes skip and skip_mult go together
        return requantize_residual(acc, layer.mult, layer.offset, layer.skip_mult, skip,
                                   layer.shift, layer.out_bits)
    return requantize(acc, layer.mult, layer.offset, layer.shift, layer.out_bits,
                      signed_out=layer.out_kind == "logits")


def _pool(layer: Layer, codes: np.ndarray) -> np.ndarray:
    """The layer's output pool (``max2``) over the last two axes, or nothing."""
    return max_pool2(codes) if layer.pool == "max2" else codes


def run_layer(layer: Layer, x: ArrayLike, skip: np.ndarray | None = None) -> np.ndarray:
    """One layer: accumulate, requantize (PACT clamp or signed logits), then pool the codes if
    the layer pools. A residual layer (``layer.skip`` set) needs ``skip``, shaped like its
    accumulators: ``skip_tensor`` of the output codes of layer ``layer.skip``."""
    return _pool(layer, _requantize_layer(layer, layer_accumulators(layer, x), skip))


def _skip_of(layer: Layer, outputs: Sequence[np.ndarray]) -> np.ndarray | None:
    """The skip tensor of a residual layer (``None`` for others), from the earlier layer's
    output codes (single ``[C, H, W]`` or batched ``[N, C, H, W]``)."""
    if layer.skip is None:
        return None
    src = outputs[layer.skip]
    if len(layer.conv_shape) != 3:
        return src
    return skip_tensor(src, layer.conv_shape, layer.skip_stride, layer.skip_channel_offset)


def run(image: ModelImage, x_codes: ArrayLike) -> list[np.ndarray]:
    """Every layer's integer output for one input of codes; the last entry is the logits."""
    outputs: list[np.ndarray] = []
    x = np.asarray(x_codes, dtype=np.int64).reshape(image.input_shape)
    for layer in image.layers:
        x = run_layer(layer, x, _skip_of(layer, outputs))
        outputs.append(x)
    return outputs


def predict(image: ModelImage, x_codes: ArrayLike) -> int:
    """Class index of one input: argmax of the integer logits, lowest index on ties."""
    return int(np.argmax(run(image, x_codes)[-1]))


# ---------------------------------------------------------------------------------------------
# Batched: the same arithmetic over a leading batch axis, for whole test sets. ``run_batch``
# must equal ``run`` image by image (tests/test_reference.py checks it).


def conv2d_acc_batch(x: ArrayLike, s: ArrayLike, stride: int, padding: int) -> np.ndarray:
    """``conv2d_acc`` over a batch: codes ``[N, Cin, H, W]`` to accumulators ``[N, Cout, Ho,
    Wo]`` (int64, exact)."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    cout, cin, kh, kw = s.shape
    if x.ndim != 4 or x.shape[1] != cin:
        raise ValueError(f"conv2d_acc_batch: input {x.shape} does not fit weights {s.shape}")
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (xp.shape[2] - kh) // stride + 1
    wo = (xp.shape[3] - kw) // stride + 1
    cols = np.empty((x.shape[0], cin, kh, kw, ho, wo), dtype=np.int64)
    for dy in range(kh):
        for dx in range(kw):
            cols[:, :, dy, dx] = xp[:, :, dy : dy + stride * ho : stride,
                                    dx : dx + stride * wo : stride]
    # [N, Cin*K*K, Ho*Wo] against [Cout, Cin*K*K]: an integer matmul, no float anywhere.
    cols = cols.reshape(x.shape[0], cin * kh * kw, ho * wo)
    acc = np.matmul(s.reshape(cout, -1), cols)
    return acc.reshape(x.shape[0], cout, ho, wo)


def linear_acc_batch(x: ArrayLike, s: ArrayLike) -> np.ndarray:
    """``linear_acc`` over a batch: codes ``[N, ...]`` (flattened in C, H, W order) to ``[N,
    M]``."""
    x = np.asarray(x, dtype=np.int64)
    x = x.reshape(len(x), -1)
    s = np.asarray(s, dtype=np.int64)
    if s.shape[1] != x.shape[1]:
        raise ValueError(f"linear_acc_batch: input has {x.shape[1]} features, weights expect "
                         f"{s.shape[1]}")
    return x @ s.T


def run_layer_batch(layer: Layer, x: np.ndarray, skip: ArrayLike | None = None) -> np.ndarray:
    """``run_layer`` over a batch (leading axis; ``skip`` too)."""
    s = dorefa_odd_values(layer.weights, layer.wbits)
    if layer.op == "conv":
        acc = conv2d_acc_batch(x, s, layer.stride, layer.padding)
    elif layer.in_pool == "avg":
        acc = linear_acc_batch(plane_sums(x), s)
    else:
        acc = linear_acc_batch(x, s)
    # requantize wants the channel first
    if skip is not None:
        skip_cf = np.moveaxis(np.asarray(skip, dtype=np.int64).reshape(acc.shape), 1, 0)
    else:
        skip_cf = None
    out = _requantize_layer(layer, np.moveaxis(acc, 1, 0), skip_cf)
    return np.ascontiguousarray(_pool(layer, np.moveaxis(out, 0, 1)))


def run_batch(image: ModelImage, x_codes: ArrayLike, *, chunk: int = 512) -> list[np.ndarray]:
    """Every layer's integer output for a batch ``[N, *input_shape]`` of input codes.

    Returns one ``[N, ...]`` int64 array per layer; the last is the logits. Works through the
    batch ``chunk`` images at a time to bound memory.
    """
    codes = np.asarray(x_codes, dtype=np.int64)
    codes = codes.reshape(len(codes), *image.input_shape)
    parts: list[list[np.ndarray]] = []
    for i in range(0, len(codes), chunk):
        x = codes[i:i + chunk]
        outs: list[np.ndarray] = []
        for layer in image.layers:
            x = run_layer_batch(layer, x, _skip_of(layer, outs))
            outs.append(x)
        parts.append(outs)
    if not parts:
        return [np.zeros((0, *layer.out_shape), dtype=np.int64) for layer in image.layers]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(image.layers))]


def predict_batch(image: ModelImage, x_codes: ArrayLike) -> np.ndarray:
    """Class indices of a batch: argmax of the integer logits, lowest index on ties."""
    return np.argmax(run_batch(image, x_codes)[-1], axis=1)
