"""rtl.params: the shared integer-parameter check, in range and out of it."""

import pytest

from rtl.params import check_int


@pytest.mark.parametrize("value, lo, hi", [(2, 2, 16), (16, 2, 16), (1, 1, None), (10**9, 0, None)])
def test_accepts_integers_in_range(value, lo, hi):
    assert check_int("x", value, lo, hi) is None


@pytest.mark.parametrize("value, lo, hi, message", [
    (1, 2, 16, "wbits must be in 2..16, not 1"),
    (17, 2, 16, "wbits must be in 2..16, not 17"),
    (0, 1, None, "wbits must be >= 1, not 0"),
])
def test_out_of_range_names_the_parameter_and_value(value, lo, hi, message):
    with pytest.raises(ValueError) as exc:
        check_int("wbits", value, lo, hi)
    assert str(exc.value) == message


@pytest.mark.parametrize("value", [True, 4.0, "4", None])
def test_non_integers_and_bools_are_type_errors(value):
    with pytest.raises(TypeError) as exc:
        check_int("rows", value, 1)
    assert str(exc.value) == f"rows must be an integer, not {value!r}"
