"""The in-order checker of the cocotb benches, fed right and wrong values outside a simulator."""

from cosim.bench import InOrderChecker


def feed(checker, values):
    for cycle, value in enumerate(values):
        checker(value, cycle)


def test_matching_stream_has_no_mismatch():
    checker = InOrderChecker([[1, 2], [3, 4]], decode=lambda raw: raw)
    feed(checker, [[1, 2], [3, 4]])
    assert checker.done and checker.finish() == 0 and checker.checked == 2


def test_wrong_value_is_a_mismatch():
    checker = InOrderChecker([[1, 2], [3, 4], [5]], decode=lambda raw: raw)
    feed(checker, [[1, 2], [3, 5], [5]])
    assert checker.finish() == 1
    assert checker.first == [{"index": 1, "cycle": 1, "got": [3, 5], "expected": [3, 4]}]


def test_order_matters():
    checker = InOrderChecker([1, 2], decode=int)
    feed(checker, [2, 1])
    assert checker.finish() == 2


def test_missing_and_extra_outputs_count():
    checker = InOrderChecker([1, 2, 3], decode=int)
    feed(checker, [1])
    assert not checker.done and checker.finish() == 2
    extra = InOrderChecker([1], decode=int)
    feed(extra, [1, 9])
    assert extra.finish() == 1


def test_decode_is_applied():
    checker = InOrderChecker([-1], decode=lambda raw: raw - 16)
    checker(15, 0)
    assert checker.finish() == 0
