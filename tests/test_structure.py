"""The house rule on the gateware's shape: no function of ``rtl/`` (an ``elaborate`` above all)
runs past about 150 lines; a larger block is built from sub-components or stage methods."""

import ast
from pathlib import Path

import pytest

RTL = Path(__file__).resolve().parent.parent / "rtl"
MAX_LINES = 150


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(name, lines)`` of every function in ``source`` longer than ``limit`` lines."""
    return [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno - n.lineno + 1 > limit]


@pytest.mark.parametrize("path", sorted(RTL.rglob("*.py")), ids=lambda p: str(p.relative_to(RTL)))
def test_no_function_of_the_gateware_is_longer_than_the_rule(path):
    assert long_functions(path.read_text()) == []


def test_the_check_sees_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    assert long_functions(f"def elaborate(self):\n{body}") == [("elaborate", MAX_LINES + 1)]
    assert long_functions(f"def elaborate(self):\n{body}", limit=MAX_LINES + 1) == []
