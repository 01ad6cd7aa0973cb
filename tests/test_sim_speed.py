"""cosim.sim_speed: the external-clock copy of the chip harness.

Its measurements run (on Icarus, every clock source, checked ``==``) in tests/test_report.py's
reduced report; here the source transformation, which must neither leave two clocks nor none.
"""

import re

import pytest

from cosim import sim_speed
from cosim.chip_tb import HARNESS


def _clock_port(text):
    return re.findall(r"^\s*(input|output)\s+logic\s+clk\s*,", text, flags=re.M)


def test_the_real_harness_gets_an_input_clock_and_no_generator():
    original = HARNESS.read_text()
    assert _clock_port(original) == ["output"]
    text = sim_speed.external_clock_harness(original)
    assert _clock_port(text) == ["input"]
    assert "#5 clk" not in text and "clk = 1'b0" not in text
    # Nothing else changed: the two clock lines became comments, the port its direction.
    assert len(text.splitlines()) == len(original.splitlines())
    changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 3


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("always #5 clk = ~clk;", "always #4 clk = ~clk;"),
    lambda t: t.replace("output logic        clk,", "output wire clk,"),
    lambda t: t + "\n// always #5 clk = ~clk;\n",
])
def test_a_changed_clock_is_refused(edit):
    with pytest.raises(ValueError, match="update cosim/sim_speed.py"):
        sim_speed.external_clock_harness(edit(HARNESS.read_text()))


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        sim_speed.measure("icarus", "sundial", None, None, tmp_path, images=1, work=tmp_path)
