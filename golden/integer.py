"""The integer recipe: every bit the hardware must produce.

This module is the integer path of the golden model. It never touches floats or torch: all
arithmetic is exact Python/NumPy int64, and every rounding is named. The hardware (rtl/) and the
co-simulation benches (cosim/) compare against these functions with ``==``.

Definitions (see ../shared/PACT.md):

- A weight is stored as its DoReFa code ``q``, an unsigned ``wbits``-bit integer. Its value times
  ``2**wbits - 1`` is the odd integer ``s = 2*q - (2**wbits - 1)``; the multiply uses ``s``.
- An activation is an unsigned ``abits``-bit code ``a``.
- A layer's accumulator is the exact sum ``acc = sum(s * a)`` over the reduction.
- Requantization, per output channel ``c``, with integer constants ``M_c`` (signed,
  ``REQUANT_MULT_BITS`` bits), ``B_c`` (signed, ``REQUANT_OFFSET_BITS`` bits) and
  ``S_c`` (``1 <= S_c <= REQUANT_MAX_SHIFT``)::

      y = round_half_up_shift(M_c * acc + B_c, S_c)        # floor((x + 2**(S-1)) / 2**S)
      out = clamp(y, 0, 2**out_bits - 1)                    # PACT: the clip at alpha
      out = clamp(y, -2**(out_bits-1), 2**(out_bits-1) - 1) # logits: signed saturation

  Rounding is *half up* (ties toward +infinity), as hardware does it with an add and an
  arithmetic shift; it is not PyTorch's ties-to-even.
- A residual layer adds an earlier layer's output codes ``skip`` (same shape as its output)
  before the clip, with one more signed ``REQUANT_SKIP_MULT_BITS``-bit constant per channel,
  ``skip_mult_c``: the offset becomes ``B_c + skip_mult_c * skip`` (``residual_offset``), and
  then the requantization above, PACT clamp only. The image format keeps that sum inside the
  signed ``REQUANT_OFFSET_BITS`` range, so hardware feeds it to the same requantizer.
  ``skip_mult`` is wider than ``M`` because both share ``S``: ``S`` is chosen for ``M``'s 15
  bits of precision, and ``skip_mult = m_skip * 2**S`` with ``m_skip`` (about the ratio of the
  two alphas) hundreds of times ``m`` needs more than 16 bits; a 16-bit one would force a small
  ``S`` and leave ``M`` with 8 or 9 significant bits (measured: 1-2% of codes off by up to 3
  LSB against the fake-quant model on the digits resnet).
"""

import numpy as np

__all__ = [
    "REQUANT_MULT_BITS",
    "REQUANT_OFFSET_BITS",
    "REQUANT_SKIP_MULT_BITS",
    "REQUANT_MAX_SHIFT",
    "LOGIT_BITS",
    "round_half_up_shift",
    "clamp_unsigned",
    "clamp_signed",
    "dorefa_odd_values",
    "accumulator_bound",
    "accumulator_width",
    "requantize",
    "residual_offset",
    "requantize_residual",
    "conv2d_acc",
    "linear_acc",
]

#: Width of the signed per-channel multiplier ``M``.
REQUANT_MULT_BITS = 16
#: Width of the signed per-channel skip multiplier of a residual layer.
REQUANT_SKIP_MULT_BITS = 32
#: Width of the signed per-channel offset ``B`` (in units of ``2**-S`` output codes).
REQUANT_OFFSET_BITS = 48
#: Largest rounding shift ``S`` (shift amounts are ``1..REQUANT_MAX_SHIFT``).
REQUANT_MAX_SHIFT = 47
#: Width of the signed integer logits that the last layer produces.
LOGIT_BITS = 16


def round_half_up_shift(x, shift):
    """``floor(x / 2**shift + 1/2)``: a rounding right shift, ties toward +infinity.

    Works elementwise on int64 arrays; ``shift`` may be an array broadcast against ``x``.

    >>> round_half_up_shift(np.array([5, 6, 7, -5, -6, -7]), 2).tolist()
    [1, 2, 2, -1, -1, -2]
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 1):
        raise ValueError("round_half_up_shift needs shift >= 1")
    return (x + (np.int64(1) << (shift - 1))) >> shift


def clamp_unsigned(x, bits):
    """Clamp to ``[0, 2**bits - 1]``: PACT's clip at alpha, in codes.

    >>> clamp_unsigned(np.array([-3, 0, 7, 8, 99]), 3).tolist()
    [0, 0, 7, 7, 7]
    """
    return np.clip(np.asarray(x, dtype=np.int64), 0, (1 << bits) - 1)


def clamp_signed(x, bits):
    """Clamp to ``[-2**(bits-1), 2**(bits-1) - 1]`` (signed saturation).

    >>> clamp_signed(np.array([-200, -128, 5, 127, 300]), 8).tolist()
    [-128, -128, 5, 127, 127]
    """
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def dorefa_odd_values(codes, wbits):
    """Weight codes ``q`` to the odd integers ``2*q - (2**wbits - 1)`` that the MACs multiply.

    >>> dorefa_odd_values(np.array([0, 1, 2, 3]), 2).tolist()
    [-3, -1, 1, 3]
    """
    codes = np.asarray(codes, dtype=np.int64)
    return 2 * codes - ((1 << wbits) - 1)


def accumulator_bound(wbits, abits, reduction):
    """Largest ``|acc|`` for a reduction of ``reduction`` products of ``wbits``/``abits`` codes.

    Each product is at most ``(2**wbits - 1) * (2**abits - 1)`` in magnitude.
    """
    return reduction * ((1 << wbits) - 1) * ((1 << abits) - 1)


def accumulator_width(wbits, abits, reduction):
    """Bits of a two's-complement accumulator that can never overflow for that reduction.

    >>> accumulator_width(2, 2, 1)   # |acc| <= 9 -> [-16, 15]
    5
    """
    return accumulator_bound(wbits, abits, reduction).bit_length() + 1


def requantize(acc, mult, offset, shift, out_bits, *, signed_out=False):
    """Requantize accumulators to output codes, per output channel along axis 0.

    ``acc`` has the output channel first (``[C, ...]``); ``mult``, ``offset`` and ``shift`` have
    one entry per channel. PACT layers (``signed_out=False``) clamp to unsigned ``out_bits``
    codes; the logits layer saturates to signed ``out_bits``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    extra = (1,) * (acc.ndim - 1)
    mult = np.asarray(mult, dtype=np.int64).reshape(-1, *extra)
    offset = np.asarray(offset, dtype=np.int64).reshape(-1, *extra)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1, *extra)
    y = round_half_up_shift(mult * acc + offset, shift)
    return clamp_signed(y, out_bits) if signed_out else clamp_unsigned(y, out_bits)


def residual_offset(offset, skip_mult, skip):
    """Per element ``B_c + skip_mult_c * skip``: a residual layer's requantization offset.

    ``skip`` has the output channel first (``[C, ...]``); ``offset`` and ``skip_mult`` have one
    entry per channel. Exact int64.

    >>> residual_offset([100, -4], [3, -2], [[1, 2], [5, 0]]).tolist()
    [[103, 106], [-14, -4]]
    """
    skip = np.asarray(skip, dtype=np.int64)
    extra = (1,) * (skip.ndim - 1)
    offset = np.asarray(offset, dtype=np.int64).reshape(-1, *extra)
    skip_mult = np.asarray(skip_mult, dtype=np.int64).reshape(-1, *extra)
    return offset + skip_mult * skip


def requantize_residual(acc, mult, offset, skip_mult, skip, shift, out_bits):
    """A residual add followed by PACT: ``clamp_unsigned(round_half_up_shift(M*acc + B +
    skip_mult*skip, S), out_bits)`` per output channel along axis 0 (``skip`` shaped as
    ``acc``)."""
    acc = np.asarray(acc, dtype=np.int64)
    skip = np.asarray(skip, dtype=np.int64)
    if skip.shape != acc.shape:
        raise ValueError(f"requantize_residual: skip {skip.shape} does not match the "
                         f"accumulators {acc.shape}")
    extra = (1,) * (acc.ndim - 1)
    mult = np.asarray(mult, dtype=np.int64).reshape(-1, *extra)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1, *extra)
    y = round_half_up_shift(mult * acc + residual_offset(offset, skip_mult, skip), shift)
    return clamp_unsigned(y, out_bits)


def conv2d_acc(x, s, stride, padding):
    """Exact integer convolution: ``x`` codes ``[Cin, H, W]``, odd weights ``s`` ``[Cout, Cin,
    K, K]``; zero padding; returns int64 accumulators ``[Cout, Ho, Wo]``."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    cout, cin, kh, kw = s.shape
    if x.shape[0] != cin:
        raise ValueError(f"conv2d_acc: input has {x.shape[0]} channels, weights expect {cin}")
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    # im2col: cols[cin, kh, kw, ho, wo]
    cols = np.empty((cin, kh, kw, ho, wo), dtype=np.int64)
    for dy in range(kh):
        for dx in range(kw):
            cols[:, dy, dx] = xp[:, dy : dy + stride * ho : stride, dx : dx + stride * wo : stride]
    return np.tensordot(s, cols, axes=([1, 2, 3], [0, 1, 2]))


def linear_acc(x, s):
    """Exact integer fully connected layer: ``x`` codes ``[N]``, odd weights ``s`` ``[M, N]``."""
    x = np.asarray(x, dtype=np.int64).reshape(-1)
    s = np.asarray(s, dtype=np.int64)
    if s.shape[1] != x.shape[0]:
        raise ValueError(
            f"linear_acc: input has {x.shape[0]} features, weights expect {s.shape[1]}"
        )
    return s @ x
