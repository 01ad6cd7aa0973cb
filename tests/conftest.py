import os

import pytest

from cosim.tools import missing_reason


def require_simulator(sim):
    """Return if ``sim`` is available; otherwise skip (visibly), or fail under CI=true."""
    reason = missing_reason(sim)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{sim} is required under CI=true: {reason}")
    pytest.skip(f"{sim} unavailable: {reason}")


@pytest.fixture
def require_sim():
    """Call with a simulator name: skips (visibly) when it is missing, fails under CI=true."""
    return require_simulator


@pytest.fixture(scope="module")
def require_sim_module():
    """``require_sim`` for module-scoped fixtures."""
    return require_simulator
