# amaranth: UnusedElaboratable=no
"""PactUnit in Amaranth's simulator: exact requantization against golden.integer, rounding ties,
clamping, bubbles, back-pressure, and the 3-cycle pipeline at one beat per cycle."""

import pytest
from streams import run_stream

from cosim.stimulus import pact_beats, pact_expected
from golden.integer import LOGIT_BITS
from rtl.pact_unit import LATENCY, PactUnit


def lane_codes(payload):
    """The output codes of a ``PactUnit`` payload, one int per lane."""
    return [int(x) for x in payload]


@pytest.mark.parametrize("acc_width, out_bits, lanes, signed_out", [
    (5, 2, 2, False),   # (2, 2) codes, reduction 1
    (14, 4, 3, False),
    (27, 8, 2, False),
    (22, 2, 1, False),  # (8, 2)
    (27, LOGIT_BITS, 2, True),  # logits layer
    (40, 16, 1, False),
])
def test_corner_and_random_beats(acc_width, out_bits, lanes, signed_out):
    dut = PactUnit(acc_width=acc_width, out_bits=out_bits, lanes=lanes, signed_out=signed_out)
    beats = pact_beats(acc_width, 60, acc_width, out_bits, lanes, signed_out)
    results, _, _ = run_stream(dut, beats, unpack=lane_codes, bubbles=0.3, backpressure=0.3,
                               seed=acc_width)
    for beat, got in zip(beats, results, strict=True):
        assert got == pact_expected(beat, out_bits, signed_out), beat


def test_rounding_ties_go_up():
    dut = PactUnit(acc_width=8, out_bits=4, lanes=4)
    # M*acc + B = 5, 7, -5 and 3 with S = 1 and 2: 2.5 -> 3, 1.75 -> 2, -1.25 -> 0, 0.75 -> 1
    beat = {"acc": [5, 7, -5, 3], "mult": [1, 1, 1, 1], "offset": [0, 0, 0, 0],
            "shift": [1, 2, 2, 2]}
    results, _, _ = run_stream(dut, [beat], unpack=lane_codes)
    assert results == [[3, 2, 0, 1]] == [pact_expected(beat, 4)]


def test_full_rate_and_latency():
    dut = PactUnit(acc_width=10, out_bits=4, lanes=2)
    beats = pact_beats(1, 40, 10, 4, 2)
    _, accepted, emitted = run_stream(dut, beats)
    assert accepted == list(range(accepted[0], accepted[0] + len(beats)))
    assert emitted == [t + LATENCY for t in accepted]


@pytest.mark.parametrize("kwargs, name", [
    ({"acc_width": 1}, "acc_width"), ({"acc_width": 65}, "acc_width"),
    ({"out_bits": 1}, "out_bits"), ({"out_bits": 33}, "out_bits"), ({"lanes": 0}, "lanes"),
])
def test_bad_parameters_name_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PactUnit(**({"acc_width": 12, "out_bits": 4} | kwargs))


def test_non_integer_parameter():
    with pytest.raises(TypeError, match="out_bits"):
        PactUnit(acc_width=12, out_bits="4")
