"""The integer reference: runs a model image with int64 arithmetic only, layer by layer.

This is what the hardware is compared against with ``==``. It uses nothing but the named
integer functions of ``golden.integer``; no float and no ``torch.round`` is on this path.
"""

import numpy as np

from .integer import (
    conv2d_acc,
    dorefa_odd_values,
    linear_acc,
    requantize,
    round_half_up_shift,
)

__all__ = ["quantize_input", "run_layer", "run", "predict"]


def quantize_input(x, bits):
    """Images in ``[0, 1]`` (float) to unsigned ``bits``-bit codes, rounding half up.

    The float is scaled by ``2**bits - 1`` and put on a grid of ``2**-16`` first, so that the
    integer rounding below is exact and reproducible (values come from ``load_digits``'s
    sixteenths or 8-bit pixels, which that grid holds exactly).
    """
    fixed = np.floor(np.asarray(x, dtype=np.float64) * ((1 << bits) - 1) * (1 << 16) + 0.5)
    codes = round_half_up_shift(fixed.astype(np.int64), 16)
    return np.clip(codes, 0, (1 << bits) - 1)


def layer_accumulators(layer, x):
    """The exact accumulators of one layer for one input (``[C, H, W]`` or ``[N]`` codes)."""
    s = dorefa_odd_values(layer.weights, layer.wbits)
    if layer.op == "conv":
        return conv2d_acc(x, s, layer.stride, layer.padding)
    return linear_acc(x, s)


def run_layer(layer, x):
    """One layer: accumulate, then requantize (PACT clamp or signed logits)."""
    acc = layer_accumulators(layer, x)
    return requantize(acc, layer.mult, layer.offset, layer.shift, layer.out_bits,
                      signed_out=layer.out_kind == "logits")


def run(image, x_codes):
    """Every layer's integer output for one input of codes; the last entry is the logits."""
    outputs, x = [], np.asarray(x_codes, dtype=np.int64).reshape(image.input_shape)
    for layer in image.layers:
        x = run_layer(layer, x)
        outputs.append(x)
    return outputs


def predict(image, x_codes):
    """Class index of one input: argmax of the integer logits, lowest index on ties."""
    return int(np.argmax(run(image, x_codes)[-1]))
