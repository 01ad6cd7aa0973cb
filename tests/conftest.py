import os

import pytest

from cosim.tools import missing_reason


@pytest.fixture
def require_sim():
    """Call with a simulator name: skips (visibly) when it is missing, fails under CI=true."""

    def check(sim):
        reason = missing_reason(sim)
        if reason is None:
            return
        if os.environ.get("CI") == "true":
            pytest.fail(f"{sim} is required under CI=true: {reason}")
        pytest.skip(f"{sim} unavailable: {reason}")

    return check
