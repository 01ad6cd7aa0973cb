"""The integer recipe: every bit the hardware must produce.

This module is the integer path of the golden model. It never touches floats or torch: all
arithmetic is exact Python/NumPy int64, and every rounding is named. The hardware (rtl/) and the
co-simulation benches (cosim/) compare against these functions with ``==``.

Definitions (Choi et al., "PACT", arXiv 1805.06085, for the activations; Zhou et al.,
"DoReFa-Net", arXiv 1606.06160, for the weights):

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
  ``S`` and leave ``M`` with 8 or 9 significant bits (on the digits resnet, codes then drift
  by several LSB from the fake-quant model).
- The skip input is addressed, not just copied: layer ``j``'s output codes ``src`` (``[C_src,
  H_src, W_src]``) become the skip tensor shaped like the residual layer's own (pre-pool)
  output ``[C, H, W]`` with a spatial stride ``s`` and a channel offset ``o``
  (``skip_tensor``)::

      skip[c, y, x] = src[c - o, y*s, x*s]   if 0 <= c - o < C_src   else 0

  ``s = 1, o = 0`` is the same-shape skip; ``s = 2, o = C/4`` is ResNet's option-A shortcut
  (``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, C/4, C/4))``): zero channels, not a projection.
- A PACT layer may end with a 2x2, stride-2 max pool *of its output codes* (after the clamp
  and any residual add), ``max_pool2``. Pooling codes is exact by definition; a float model
  that pools before PACT matches it only if every requantizer is non-decreasing in the
  accumulator (``M_c >= 0``), which the image format demands of pooled layers.
- A fully connected layer may read a ``[C, H, W]`` input through a global average pool: the
  accumulator is ``sum_c s[o, c] * sum_{y,x} a[c, y, x]`` (``avg_pool_acc``), exact, with the
  ``1/(H*W)`` folded into ``M`` and ``B`` at export.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

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
    "skip_tensor",
    "max_pool2",
    "plane_sums",
    "avg_pool_acc",
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


def round_half_up_shift(x: ArrayLike, shift: ArrayLike) -> np.ndarray:
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


def clamp_unsigned(x: ArrayLike, bits: int) -> np.ndarray:
    """Clamp to ``[0, 2**bits - 1]``: PACT's clip at alpha, in codes.

    >>> clamp_unsigned(np.array([-3, 0, 7, 8, 99]), 3).tolist()
    [0, 0, 7, 7, 7]
    """
    return np.clip(np.asarray(x, dtype=np.int64), 0, (1 << bits) - 1)


def clamp_signed(x: ArrayLike, bits: int) -> np.ndarray:
    """Clamp to ``[-2**(bits-1), 2**(bits-1) - 1]`` (signed saturation).

    >>> clamp_signed(np.array([-200, -128, 5, 127, 300]), 8).tolist()
    [-128, -128, 5, 127, 127]
    """
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def dorefa_odd_values(codes: ArrayLike, wbits: int) -> np.ndarray:
    """Weight codes ``q`` to the odd integers ``2*q - (2**wbits - 1)`` that the MACs multiply.

    >>> dorefa_odd_values(np.array([0, 1, 2, 3]), 2).tolist()
    [-3, -1, 1, 3]
    """
    codes = np.asarray(codes, dtype=np.int64)
    return 2 * codes - ((1 << wbits) - 1)


def accumulator_bound(wbits: int, abits: int, reduction: int) -> int:
    """Largest ``|acc|`` for a reduction of ``reduction`` products of ``wbits``/``abits`` codes.

    Each product is at most ``(2**wbits - 1) * (2**abits - 1)`` in magnitude.
    """
    return reduction * ((1 << wbits) - 1) * ((1 << abits) - 1)


def accumulator_width(wbits: int, abits: int, reduction: int) -> int:
    """Bits of a two's-complement accumulator that can never overflow for that reduction.

    >>> accumulator_width(2, 2, 1)   # |acc| <= 9 -> [-16, 15]
    5
    """
    return accumulator_bound(wbits, abits, reduction).bit_length() + 1


def requantize(acc: ArrayLike, mult: ArrayLike, offset: ArrayLike, shift: ArrayLike, out_bits: int,
               *, signed_out: bool = False) -> np.ndarray:
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


def residual_offset(offset: ArrayLike, skip_mult: ArrayLike, skip: ArrayLike) -> np.ndarray:
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


def requantize_residual(acc: ArrayLike, mult: ArrayLike, offset: ArrayLike, skip_mult: ArrayLike,
                        skip: ArrayLike, shift: ArrayLike, out_bits: int) -> np.ndarray:
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


def conv2d_acc(x: ArrayLike, s: ArrayLike, stride: int, padding: int) -> np.ndarray:
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


def linear_acc(x: ArrayLike, s: ArrayLike) -> np.ndarray:
    """Exact integer fully connected layer: ``x`` codes ``[N]``, odd weights ``s`` ``[M, N]``."""
    x = np.asarray(x, dtype=np.int64).reshape(-1)
    s = np.asarray(s, dtype=np.int64)
    if s.shape[1] != x.shape[0]:
        raise ValueError(
            f"linear_acc: input has {x.shape[0]} features, weights expect {s.shape[1]}"
        )
    return s @ x


def skip_tensor(src: ArrayLike, out_shape: Sequence[int], stride: int = 1,
                channel_offset: int = 0) -> np.ndarray:
    """The skip input of a residual layer: ``skip[c, y, x] = src[c - o, y*s, x*s]`` where
    ``0 <= c - o < C_src``, else 0 (``s = stride``, ``o = channel_offset``).

    ``src`` is ``[..., C_src, H_src, W_src]`` (leading batch axes pass through) and
    ``out_shape`` the residual layer's pre-pool ``(C, H, W)``. Raises ``ValueError`` if the
    strided plane or the offset channels do not fit.

    >>> src = np.arange(8).reshape(2, 2, 2)       # two channels of 2x2
    >>> skip_tensor(src, (4, 1, 1), stride=2, channel_offset=1)[:, 0, 0].tolist()
    [0, 0, 4, 0]
    >>> skip_tensor(src, (2, 2, 2)).tolist() == src.tolist()
    True
    """
    src = np.asarray(src, dtype=np.int64)
    c, h, w = (int(v) for v in out_shape)
    c_src, h_src, w_src = src.shape[-3:]
    if stride not in (1, 2) or channel_offset < 0:
        raise ValueError(f"skip_tensor: stride must be 1 or 2 and the channel offset >= 0, "
                         f"not {stride} and {channel_offset}")
    if (h - 1) * stride >= h_src or (w - 1) * stride >= w_src:
        raise ValueError(f"skip_tensor: a {h_src}x{w_src} source cannot feed a {h}x{w} plane "
                         f"at stride {stride}")
    if channel_offset + c_src > c:
        raise ValueError(f"skip_tensor: {c_src} source channels at offset {channel_offset} do "
                         f"not fit {c} channels")
    out = np.zeros((*src.shape[:-3], c, h, w), dtype=np.int64)
    out[..., channel_offset:channel_offset + c_src, :, :] = \
        src[..., : stride * h : stride, : stride * w : stride]
    return out


def max_pool2(codes: ArrayLike) -> np.ndarray:
    """2x2, stride-2 max pool over the last two axes (``H``, ``W`` even): ``out[..., y, x] =
    max(codes[..., 2y:2y+2, 2x:2x+2])``.

    >>> max_pool2(np.array([[[1, 5, 2, 0], [3, 4, 9, 9], [0, 0, 7, 1], [0, 2, 1, 8]]])).tolist()
    [[[5, 9], [2, 8]]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    h, w = codes.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"max_pool2: a {h}x{w} plane is not even in both dimensions")
    quads = codes.reshape(*codes.shape[:-2], h // 2, 2, w // 2, 2)
    return quads.max(axis=(-3, -1))


def plane_sums(x: ArrayLike) -> np.ndarray:
    """``sum_{y,x} a[..., c, y, x]``: codes ``[..., C, H, W]`` to exact int64 sums ``[..., C]``.

    >>> plane_sums(np.arange(8).reshape(2, 2, 2)).tolist()
    [6, 22]
    """
    return np.asarray(x, dtype=np.int64).sum(axis=(-2, -1))


def avg_pool_acc(x: ArrayLike, s: ArrayLike) -> np.ndarray:
    """A fully connected layer behind a global average pool: ``acc[o] = sum_c s[o, c] *
    sum_{y,x} x[c, y, x]`` for codes ``x`` ``[C, H, W]`` and odd weights ``s`` ``[out, C]``
    (exact; the ``1/(H*W)`` lives in the requantization constants).

    >>> avg_pool_acc(np.ones((2, 3, 3)), np.array([[1, -3], [3, 3]])).tolist()
    [-18, 54]
    """
    return linear_acc(plane_sums(x), s)
