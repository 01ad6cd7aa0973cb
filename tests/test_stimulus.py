"""Stimulus and expected values: packing round trips, the corner cases are really there, the
expected sums equal a brute-force loop, and the same seed gives the same vectors."""

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from hypothesis import given
from hypothesis import strategies as st

from cosim.stimulus import (
    mac_beats,
    mac_corner_reductions,
    mac_expected,
    mac_reductions,
    pack,
    pact_beats,
    pact_corner_lanes,
    pact_expected,
    unpack,
)
from golden.integer import REQUANT_MAX_SHIFT
from rtl.mac_array import accumulator_bound, input_layout, output_layout

LAYOUT = data.StructLayout({"a": data.ArrayLayout(signed(5), 3), "b": unsigned(3), "c": 1})


@given(st.lists(st.integers(-16, 15), min_size=3, max_size=3), st.integers(0, 7),
       st.integers(0, 1))
def test_pack_unpack_round_trip(a, b, c):
    value = {"a": a, "b": b, "c": c}
    bits = pack(LAYOUT, value)
    assert 0 <= bits < 1 << LAYOUT.size
    assert unpack(LAYOUT, bits) == value


def test_pack_matches_amaranth_layout():
    value = {"a": [-16, 3, 15], "b": 5, "c": 1}
    assert pack(LAYOUT, value) == LAYOUT.const(value).as_bits()


def test_mac_expected_is_the_brute_force_sum():
    rng = np.random.default_rng(0)
    w, a = rng.integers(0, 8, (7, 2)), rng.integers(0, 4, (7, 3))
    shift = rng.integers(0, 3, 7)
    want = [[sum((2 * int(w[b, r]) - 7) * int(a[b, c]) << int(shift[b]) for b in range(7))
             for c in range(3)] for r in range(2)]
    assert mac_expected(w, a, shift, 3).tolist() == want


def test_mac_corners_reach_the_bound_both_ways():
    for max_shift in (0, 4):
        bound = accumulator_bound(4, 3, 12, max_shift)
        sums = [mac_expected(r["w"], r["a"], r["shift"], 4)
                for r in mac_corner_reductions(4, 3, 2, 3, 12, max_shift)]
        assert max(s.max() for s in sums) == bound
        assert min(s.min() for s in sums) == -bound
        assert any((s == 0).all() for s in sums)


def test_mac_beats_mark_first_and_last_and_pack():
    red = mac_reductions(1, 1, 2, 2, 2, 2, 8)[-1]
    beats = mac_beats(red)
    assert [b["first"] for b in beats] == [1] + [0] * (len(beats) - 1)
    assert [b["last"] for b in beats] == [0] * (len(beats) - 1) + [1]
    layout = input_layout(2, 2, 2, 2)
    assert [unpack(layout, pack(layout, b)) for b in beats] == beats
    assert output_layout(5, 2, 2).size == 20


def test_same_seed_same_vectors():
    a, b = mac_reductions(9, 5, 4, 4, 2, 2, 16), mac_reductions(9, 5, 4, 4, 2, 2, 16)
    for x, y in zip(a, b, strict=True):
        assert (x["w"] == y["w"]).all() and (x["a"] == y["a"]).all()
    assert pact_beats(3, 10, 20, 4, 2) == pact_beats(3, 10, 20, 4, 2)
    assert pact_beats(3, 10, 20, 4, 2) != pact_beats(4, 10, 20, 4, 2)


def test_pact_corners_cover_ties_and_both_clamps():
    rng = np.random.default_rng(0)
    for signed_out, lo, hi in ((False, 0, 15), (True, -8, 7)):
        lanes = pact_corner_lanes(rng, 20, 4, signed_out)
        x = [m * acc + b for acc, m, b, s in lanes]
        ties = [v for v, (_, _, _, s) in zip(x, lanes, strict=True) if v % (1 << s) == 1 << (s - 1)]
        assert len(ties) > 20  # exactly-half cases, several shifts
        assert {s for *_, s in lanes} >= {1, REQUANT_MAX_SHIFT}
        beat = {k: [lane[i] for lane in lanes] for i, k in
                enumerate(("acc", "mult", "offset", "shift"))}
        out = pact_expected(beat, 4, signed_out)
        assert out.count(lo) > 5 and out.count(hi) > 5
        assert any(lo < v < hi for v in out)
