"""Stimulus and expected values shared by the Amaranth tests and the cocotb benches.

- ``pack`` / ``unpack`` turn nested Python values into the flat bit vectors of an
  ``amaranth.lib.data`` layout and back, so both tiers use the very layouts the RTL declares.
- ``mac_reductions`` / ``pact_beats`` make random vectors plus the corner cases of the contract.
- ``mac_expected`` / ``pact_expected`` compute what the hardware must produce, with the integer
  functions of ``golden.integer`` (compared with ``==``).

Everything is seeded: the same seed gives the same vectors.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data
from numpy.typing import ArrayLike

from golden.integer import (
    REQUANT_MAX_SHIFT,
    REQUANT_MULT_BITS,
    REQUANT_OFFSET_BITS,
    dorefa_odd_values,
    linear_acc,
    requantize,
)

__all__ = [
    "pack",
    "unpack",
    "mac_reductions",
    "mac_expected",
    "mac_beats",
    "pact_beats",
    "pact_expected",
]


# -- payload packing ------------------------------------------------------------------------------


#: A reduction of the MAC array: ``w`` ``[beats, rows]``, ``a`` ``[beats, cols]``, ``shift``
#: ``[beats]`` (int64 arrays).
Reduction = dict[str, np.ndarray]
#: One PACT-unit lane: ``(acc, mult, offset, shift)``.
Lane = tuple[int, int, int, int]


def pack(shape: Any, value: Any) -> int:
    """Pack ``value`` (int, or list/dict nested like the layout) into an unsigned int."""
    if isinstance(shape, data.Layout):
        bits = 0
        for key, field in shape:
            part = pack(field.shape, value[key]) & ((1 << field.width) - 1)
            bits |= part << field.offset
        return bits
    width = Shape.cast(shape).width
    return int(value) & ((1 << width) - 1)


def unpack(shape: Any, bits: int) -> Any:
    """Inverse of ``pack``: an int for a plain shape, a list for an array, a dict for a struct."""
    bits = int(bits)
    if isinstance(shape, data.ArrayLayout):
        return [unpack(f.shape, bits >> f.offset) for _, f in shape]
    if isinstance(shape, data.Layout):
        return {k: unpack(f.shape, bits >> f.offset) for k, f in shape}
    shape = Shape.cast(shape)
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits


# -- MAC array ------------------------------------------------------------------------------------


def mac_expected(w: ArrayLike, a: ArrayLike, shift: ArrayLike, wbits: int) -> np.ndarray:
    """Sums of one reduction: ``out[r][c] = sum_b (2*w[b,r] - (2**wbits-1)) * a[b,c] << s[b]``.

    ``w`` is ``[beats, rows]`` weight codes, ``a`` is ``[beats, cols]`` activation codes,
    ``shift`` is ``[beats]``. Each column is ``golden.integer.linear_acc`` of the shifted
    activations with the odd weight values.
    """
    a_shifted = np.asarray(a, dtype=np.int64) << np.asarray(shift, dtype=np.int64)[:, None]
    odd = dorefa_odd_values(np.asarray(w, dtype=np.int64), wbits).T  # [rows, beats]
    return np.stack([linear_acc(a_shifted[:, c], odd) for c in range(a_shifted.shape[1])],
                    axis=1)


def _reduction(w: ArrayLike, a: ArrayLike, shift: ArrayLike) -> Reduction:
    return {"w": np.asarray(w, dtype=np.int64), "a": np.asarray(a, dtype=np.int64),
            "shift": np.asarray(shift, dtype=np.int64)}


def mac_corner_reductions(wbits: int, abits: int, rows: int, cols: int, max_reduction: int,
                          max_shift: int = 0) -> list[Reduction]:
    """Corner cases: the accumulator bound both ways, zeros, single beats, mixed extremes."""
    wmax, amax = (1 << wbits) - 1, (1 << abits) - 1

    def full(n: int, wval: int, aval: int, s: int = max_shift) -> Reduction:
        return _reduction(np.full((n, rows), wval), np.full((n, cols), aval), np.full(n, s))

    cases = [
        full(max_reduction, wmax, amax),  # +bound: most positive weights, all-max codes
        full(max_reduction, 0, amax),  # -bound: most negative weights
        full(1, wmax, amax),  # single beat: first and last together
        full(1, 0, amax, 0),
        full(3, wmax, 0, 0),  # zeros
        full(2, 0, 0, 0),
    ]
    # Alternating rows at both extremes across the full reduction (most negative next to
    # most positive weights in the same beat).
    w = np.tile(np.arange(rows) % 2 * wmax, (max_reduction, 1))
    cases.append(_reduction(w, np.full((max_reduction, cols), amax), np.full(max_reduction,
                                                                              max_shift)))
    return cases


def mac_random_reductions(rng: np.random.Generator, count: int, wbits: int, abits: int, rows: int,
                          cols: int, max_reduction: int, max_shift: int = 0, max_len: int = 16,
                          min_len: int = 1) -> list[Reduction]:
    """``count`` reductions of random codes, of random length in ``min_len..max_len`` (capped
    at ``max_reduction``)."""
    out: list[Reduction] = []
    hi = min(max_len, max_reduction)
    for _ in range(count):
        n = int(rng.integers(min(min_len, hi), hi + 1))
        out.append(_reduction(
            rng.integers(0, 1 << wbits, size=(n, rows)),
            rng.integers(0, 1 << abits, size=(n, cols)),
            rng.integers(0, max_shift + 1, size=n),
        ))
    return out


def mac_reductions(seed: int, count: int, wbits: int, abits: int, rows: int, cols: int,
                   max_reduction: int, max_shift: int = 0) -> list[Reduction]:
    """Corner cases first, then ``count`` random reductions (``count`` counts only those)."""
    rng = np.random.default_rng(seed)
    return (mac_corner_reductions(wbits, abits, rows, cols, max_reduction, max_shift)
            + mac_random_reductions(rng, count, wbits, abits, rows, cols, max_reduction,
                                    max_shift))


def mac_beats(reduction: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The input beats of one reduction, as dicts for ``pack(input_layout(...), beat)``."""
    n = len(reduction["shift"])
    return [{
        "w": reduction["w"][b].tolist(),
        "a": reduction["a"][b].tolist(),
        "shift": int(reduction["shift"][b]),
        "first": int(b == 0),
        "last": int(b == n - 1),
    } for b in range(n)]


# -- PACT unit ------------------------------------------------------------------------------------

_MULT_LO, _MULT_HI = -(1 << (REQUANT_MULT_BITS - 1)), (1 << (REQUANT_MULT_BITS - 1)) - 1
_OFF_LO, _OFF_HI = -(1 << (REQUANT_OFFSET_BITS - 1)), (1 << (REQUANT_OFFSET_BITS - 1)) - 1


def _check_pact_widths(acc_width: int) -> None:
    # The golden model computes in int64: M*acc + B + 2**(S-1) must fit.
    if acc_width + REQUANT_MULT_BITS > 62:
        raise ValueError(f"acc_width {acc_width} is too wide for the int64 golden model")


def pact_expected(beat: Mapping[str, Any], out_bits: int, signed_out: bool = False) -> list[int]:
    """``golden.integer.requantize`` of one beat (lanes are the channel axis)."""
    out: list[int] = requantize(beat["acc"], beat["mult"], beat["offset"], beat["shift"],
                                out_bits, signed_out=signed_out).tolist()
    return out


def _lane_for(rng: np.random.Generator, acc_lo: int, acc_hi: int, target_x: int,
              shift: int) -> Lane:
    """Constants for one lane that make ``M*acc + B == target_x`` exactly (B in range)."""
    for _ in range(64):
        acc = int(rng.integers(acc_lo, acc_hi + 1))
        mult = int(rng.integers(_MULT_LO, _MULT_HI + 1))
        offset = target_x - mult * acc
        if _OFF_LO <= offset <= _OFF_HI:
            return acc, mult, offset, shift
    # Far from zero: let the product carry the bulk, the offset the rest.
    for mult in (_MULT_HI, _MULT_LO):
        acc = min(max(target_x // mult, acc_lo), acc_hi)
        offset = target_x - mult * acc
        if _OFF_LO <= offset <= _OFF_HI:
            return acc, mult, offset, shift
    raise ValueError(f"no constants reach {target_x}")


def pact_corner_lanes(rng: np.random.Generator, acc_width: int, out_bits: int,
                      signed_out: bool = False) -> list[Lane]:
    """Per-lane corner cases: rounding ties both ways, clamp edges, extreme constants."""
    acc_lo, acc_hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    if signed_out:
        lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    else:
        lo, hi = 0, (1 << out_bits) - 1
    reach = (1 << (REQUANT_MULT_BITS - 1)) * (1 << (acc_width - 1)) + _OFF_HI
    lanes: list[Lane] = []
    for shift in (1, 2, 5, 16, 31, REQUANT_MAX_SHIFT):
        half = 1 << (shift - 1)
        for y in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 0, -1, 1):
            base = y << shift
            # Ties (exactly half: rounds up), one below and one above a tie.
            for x in (base + half, base + half - 1, base + half + 1, base, base - 1):
                if abs(x) < reach:
                    lanes.append(_lane_for(rng, acc_lo, acc_hi, x, shift))
    # Extreme operands: products at the corners of the multiplier and accumulator ranges.
    for acc in (acc_lo, acc_hi, 0, -1, 1):
        for mult in (_MULT_LO, _MULT_HI, 0, 1, -1):
            for offset in (_OFF_LO, _OFF_HI, 0):
                for shift in (1, REQUANT_MAX_SHIFT):
                    lanes.append((acc, mult, offset, shift))
    return lanes


def pact_random_lane(rng: np.random.Generator, acc_width: int, out_bits: int,
                     signed_out: bool = False) -> Lane:
    """A random lane whose result lands near the output range (so rounding and clamping show)."""
    acc_lo, acc_hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    if rng.random() < 0.25:  # fully random constants
        return (int(rng.integers(acc_lo, acc_hi + 1)), int(rng.integers(_MULT_LO, _MULT_HI + 1)),
                int(rng.integers(_OFF_LO, _OFF_HI + 1)),
                int(rng.integers(1, REQUANT_MAX_SHIFT + 1)))
    span = 1 << (out_bits + 1)
    # The largest shift at which M*acc + B can still reach the targets.
    reach = (1 << (REQUANT_MULT_BITS - 1)) * (1 << (acc_width - 1)) + _OFF_HI
    top = min(REQUANT_MAX_SHIFT, (reach // (2 * span)).bit_length() - 1)
    shift = int(rng.integers(1, max(top, 1) + 1))
    y = int(rng.integers(-span, span + 1))
    x = (y << shift) + int(rng.integers(0, 1 << shift))
    return _lane_for(rng, acc_lo, acc_hi, x, shift)


def pact_beats(seed: int, count: int, acc_width: int, out_bits: int, lanes: int,
               signed_out: bool = False) -> list[dict[str, list[int]]]:
    """Corner-case beats (every corner lane, spread over the lanes) then ``count`` random beats.

    Each beat is a dict ``{"acc": [...], "mult": [...], "offset": [...], "shift": [...]}`` for
    ``pack(input_layout(acc_width, lanes), beat)``.
    """
    _check_pact_widths(acc_width)
    rng = np.random.default_rng(seed)
    corner = pact_corner_lanes(rng, acc_width, out_bits, signed_out)
    rng.shuffle(corner)
    groups = [corner[i:i + lanes] for i in range(0, len(corner), lanes)]
    while len(groups[-1]) < lanes:
        groups[-1].append(pact_random_lane(rng, acc_width, out_bits, signed_out))
    groups += [[pact_random_lane(rng, acc_width, out_bits, signed_out) for _ in range(lanes)]
               for _ in range(count)]
    return [{
        "acc": [g[0] for g in group],
        "mult": [g[1] for g in group],
        "offset": [g[2] for g in group],
        "shift": [g[3] for g in group],
    } for group in groups]
