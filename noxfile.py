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
def lint(session):
    """ruff over the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
