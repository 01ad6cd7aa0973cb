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


#: Fixtures that start an HDL simulator (directly or through the fixtures that use them).
SIM_FIXTURES = {"require_sim", "require_sim_module"}
#: Modules that run whole networks through the chip in Amaranth's simulator (tens of seconds).
WHOLE_NETWORK_MODULES = {"test_chip.py", "test_tiled_chip.py", "test_tiled_axi_chip.py"}
#: Each component's Verilog-conversion test (converted twice through Yosys, 1-4 s each): the
#: whole-chip determinism tests cover the same path, so the fast tier leaves them out.
VERILOG_CONVERSION = "converts_to_verilog"


def pytest_collection_modifyitems(config, items):
    """The tiers, applied here rather than by hand: a test that reaches a simulator fixture is
    ``sim`` (and ``slow``: it builds a simulator); a whole-network module and the components'
    Verilog-conversion tests are ``slow``. ``nox -s quick`` runs what is neither."""
    for item in items:
        if SIM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sim)
        if (item.get_closest_marker("sim") or item.path.name in WHOLE_NETWORK_MODULES
                or VERILOG_CONVERSION in item.name):
            item.add_marker(pytest.mark.slow)
