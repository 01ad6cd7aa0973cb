"""TiledParams: the slice-aware accumulator bound is never exceeded by any sliced reduction the
compiler can emit, is reached by the widest one, and is no looser than the plain bound; the
legal shifts are the slice shifts; requant_lanes is checked."""

import itertools

import pytest

from rtl.chip_format import recode_weight
from rtl.mac_array import accumulator_bound
from rtl.tiled.params import TiledParams

CASES = [
    TiledParams(2, 3, 2, 4, max_kernel=2, max_in_channels=6, max_bits=6),
    TiledParams(4, 4, 2, 4, max_kernel=3, max_in_channels=64, max_bits=8),
    TiledParams(2, 2, 2, 4, max_kernel=1, max_in_channels=5, max_bits=8),
    TiledParams(8, 8, 2, 4, max_kernel=3, max_in_channels=16, max_bits=8),
]


def extreme_partial_sums(p, ws, as_, sign):
    """Every partial sum of the reduction with the most (original) channels of ``ws`` weight
    and ``as_`` activation slices, all weights at their extreme and every code at its max,
    built beat by beat as the compiler slices it (``recode_weight``, shifts
    ``wbits*j + abits*i``)."""
    wl, al = p.wbits * ws, p.abits * as_
    q = (1 << wl) - 1 if sign > 0 else 0
    code = (1 << al) - 1
    qr = recode_weight(q, wl, p.wbits)
    wmask, amask = (1 << p.wbits) - 1, (1 << p.abits) - 1
    total, sums = 0, []
    for _ in range((p.max_in_channels // as_) * p.max_kernel ** 2):
        for i, j in itertools.product(range(as_), range(ws)):
            odd = 2 * ((qr >> (p.wbits * j)) & wmask) - wmask
            total += odd * ((code >> (p.abits * i)) & amask) << (p.wbits * j + p.abits * i)
            sums.append(total)
    return sums


@pytest.mark.parametrize("p", CASES, ids=str)
def test_bound_holds_for_every_slicing_and_is_reached(p):
    seen = 0
    for ws in range(1, p.w_slices_max + 1):
        for as_ in range(1, p.a_slices_max + 1):
            for sign in (1, -1):
                sums = extreme_partial_sums(p, ws, as_, sign)
                assert max(abs(s) for s in sums) <= p.acc_bound
                seen = max(seen, abs(sums[-1]))
    assert seen == p.acc_bound
    assert p.acc_width == p.acc_bound.bit_length() + 1
    assert p.acc_bound <= accumulator_bound(p.wbits, p.abits, p.max_reduction, p.max_shift)


def test_checker_fails_on_a_too_small_bound():
    p = CASES[0]
    sums = extreme_partial_sums(p, p.w_slices_max, p.a_slices_max, 1)
    assert max(abs(s) for s in sums) > p.acc_bound - 1


def test_shifts_are_the_slice_shifts():
    p = TiledParams(2, 3, 2, 4, max_bits=6)
    assert p.shifts == (0, 2, 3, 4, 5, 7)
    assert max(p.shifts) == p.max_shift
    assert TiledParams(4, 4, 2, 4, max_bits=4).shifts == (0,)


@pytest.mark.parametrize("lanes", [0, 3, 8])
def test_requant_lanes_must_be_a_power_of_two_up_to_cols(lanes):
    with pytest.raises(ValueError, match="requant_lanes"):
        TiledParams(4, 4, 2, 4, requant_lanes=lanes)
