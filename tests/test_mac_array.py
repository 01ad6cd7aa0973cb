# amaranth: UnusedElaboratable=no
"""MacArray in Amaranth's simulator: exact sums against golden.integer, bubbles, back-pressure,
and the no-bubble throughput between reductions."""

import numpy as np
import pytest
from streams import run_stream

from cosim.stimulus import mac_beats, mac_expected, mac_reductions
from golden.integer import accumulator_width
from rtl.mac_array import MacArray, accumulator_bound


def as_array(payload, rows, cols):
    return np.array([[int(payload[r][c]) for c in range(cols)] for r in range(rows)])


def check_reductions(dut, reductions, **kw):
    beats = [b for red in reductions for b in mac_beats(red)]
    results, _, _ = run_stream(dut, beats, n_results=len(reductions), **kw)
    for red, got in zip(reductions, results, strict=True):
        want = mac_expected(red["w"], red["a"], red["shift"], dut.wbits)
        assert as_array(got, dut.rows, dut.cols).tolist() == want.tolist()


@pytest.mark.parametrize("wbits, abits", [(2, 2), (4, 4), (8, 8), (2, 8), (8, 2)])
def test_random_and_corner_reductions(wbits, abits):
    dut = MacArray(wbits=wbits, abits=abits, rows=2, cols=3, max_reduction=20)
    reds = mac_reductions(wbits * 100 + abits, 20, wbits, abits, 2, 3, 20)
    check_reductions(dut, reds, bubbles=0.3, backpressure=0.4, seed=wbits)


@pytest.mark.parametrize("wbits, abits", [(4, 4), (3, 2)])
def test_every_product_of_the_shift_add_multiplier(wbits, abits):
    """One beat: row ``r`` holds weight code ``r``, column ``c`` activation code ``c``, so the
    sums are the whole product table (narrow activations use the shift-add form)."""
    rows, cols = 1 << wbits, 1 << abits
    dut = MacArray(wbits=wbits, abits=abits, rows=rows, cols=cols, max_reduction=1)
    red = {"w": np.arange(rows).reshape(1, rows), "a": np.arange(cols).reshape(1, cols),
           "shift": [0]}
    results, _, _ = run_stream(dut, mac_beats(red), n_results=1)
    odd = 2 * np.arange(rows) - (rows - 1)
    assert as_array(results[0], rows, cols).tolist() == np.outer(odd, np.arange(cols)).tolist()


def test_bit_sliced_shift():
    dut = MacArray(wbits=3, abits=2, rows=3, cols=2, max_reduction=6, max_shift=5)
    reds = mac_reductions(7, 20, 3, 2, 3, 2, 6, 5)
    check_reductions(dut, reds, bubbles=0.2, backpressure=0.3)


def test_shift_mux_over_legal_shifts():
    """``shifts``: a mux over the legal slice shifts gives the barrel shifter's sums."""
    shifts = (0, 2, 3, 5)
    dut = MacArray(wbits=3, abits=2, rows=3, cols=2, max_reduction=6, max_shift=5,
                   shifts=shifts)
    reds = mac_reductions(8, 20, 3, 2, 3, 2, 6, 5)
    rng = np.random.default_rng(8)
    for red in reds:
        red["shift"] = rng.choice(shifts, len(red["shift"]))
    check_reductions(dut, reds, bubbles=0.2, backpressure=0.3)


def test_shift_mux_checker_fails_on_a_shift_it_lacks():
    dut = MacArray(wbits=3, abits=2, rows=1, cols=1, max_reduction=1, max_shift=5,
                   shifts=(0, 2))
    red = {"w": np.array([[7]]), "a": np.array([[3]]), "shift": np.array([5])}
    with pytest.raises(AssertionError):
        check_reductions(dut, [red])


def test_acc_width_override():
    dut = MacArray(wbits=4, abits=4, rows=1, cols=1, max_reduction=9, acc_width=12)
    assert dut.acc_width == 12
    with pytest.raises(ValueError, match="shifts"):
        MacArray(wbits=4, abits=4, rows=1, cols=1, max_reduction=9, max_shift=4, shifts=(5,))


def test_accumulator_reaches_bound_both_ways():
    dut = MacArray(wbits=4, abits=3, rows=2, cols=1, max_reduction=9)
    bound = accumulator_bound(4, 3, 9)
    reds = mac_reductions(0, 0, 4, 3, 2, 1, 9)[:2]
    beats = [b for red in reds for b in mac_beats(red)]
    results, _, _ = run_stream(dut, beats, n_results=2)
    assert as_array(results[0], 2, 1).tolist() == [[bound], [bound]]
    assert as_array(results[1], 2, 1).tolist() == [[-bound], [-bound]]


def test_no_bubble_between_reductions():
    """Back-to-back reductions with a ready sink: one beat per cycle, results every n cycles."""
    dut = MacArray(wbits=2, abits=2, rows=2, cols=2, max_reduction=4)
    reds = mac_reductions(3, 30, 2, 2, 2, 2, 4)[6:]  # random only (lengths 1..4)
    beats = [b for red in reds for b in mac_beats(red)]
    results, accepted, emitted = run_stream(dut, beats, n_results=len(reds))
    assert accepted == list(range(accepted[0], accepted[0] + len(beats)))
    ends = np.cumsum([len(r["shift"]) for r in reds]) - 1
    assert emitted == [accepted[e] + 1 for e in ends]  # latency 1


def test_backpressure_stalls_only_last_beat():
    """With o blocked, the next reduction's beats still flow in until its own last beat."""
    dut = MacArray(wbits=2, abits=2, rows=1, cols=1, max_reduction=4)
    reds = mac_reductions(5, 3, 2, 2, 1, 1, 4)
    beats = [b for red in reds for b in mac_beats(red)]
    results, _, _ = run_stream(dut, beats, n_results=len(reds), backpressure=0.9, seed=11)
    for red, got in zip(reds, results, strict=True):
        assert as_array(got, 1, 1).tolist() == mac_expected(red["w"], red["a"], red["shift"],
                                                            2).tolist()


def test_acc_width_matches_golden():
    for wbits, abits, n in [(2, 2, 1), (4, 4, 576), (8, 8, 4096), (16, 16, 1)]:
        dut = MacArray(wbits=wbits, abits=abits, rows=1, cols=1, max_reduction=n)
        assert dut.acc_width == accumulator_width(wbits, abits, n)
    dut = MacArray(wbits=2, abits=2, rows=1, cols=1, max_reduction=3, max_shift=6)
    assert dut.acc_width == (3 * 3 * 3 << 6).bit_length() + 1


@pytest.mark.parametrize("kwargs, name", [
    ({"wbits": 1}, "wbits"), ({"wbits": 17}, "wbits"), ({"abits": 1}, "abits"),
    ({"abits": 17}, "abits"), ({"rows": 0}, "rows"), ({"cols": 0}, "cols"),
    ({"max_reduction": 0}, "max_reduction"), ({"max_shift": -1}, "max_shift"),
])
def test_bad_parameters_name_the_value(kwargs, name):
    params = {"wbits": 4, "abits": 4, "rows": 2, "cols": 2, "max_reduction": 8} | kwargs
    with pytest.raises(ValueError, match=name):
        MacArray(**params)


def test_non_integer_parameter():
    with pytest.raises(TypeError, match="rows"):
        MacArray(wbits=4, abits=4, rows=2.5, cols=2, max_reduction=8)
