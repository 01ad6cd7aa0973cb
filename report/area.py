"""The ``area`` section: Yosys generic-gate area of the MacArray and the PactUnit per k
(``gen.area``), per MAC and per lane, and the ratios to 16 bits."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from pact.paths import sim_build_root
from report.config import Log, ReportConfig, _log_default


def _block_params(cfg: ReportConfig, k: int) -> dict[str, Any]:
    return {"wbits": k, "abits": k, "rows": cfg.area_rows, "cols": cfg.area_cols,
            "max_reduction": cfg.max_reduction, "max_shift": 0}


def area_section(cfg: ReportConfig, log: Log = _log_default) -> dict[str, Any]:
    """Synthesize MacArray and PactUnit for every k; returns ``{block: {k: figures}}``."""
    from gen.area import synth_area
    from gen.generate import generate

    out: dict[str, Any] = {"mac_array": {}, "pact_unit": {}}
    for block in out:
        for k in cfg.bits:
            params = _block_params(cfg, k)
            if block == "pact_unit":
                params.update(out_bits=None, signed_out=False)
            folder = (cfg.work / "area" / f"{block}-k{k}-r{cfg.area_rows}c{cfg.area_cols}"
                      f"-n{cfg.max_reduction}")
            manifest = generate(block, params, folder)
            t = time.perf_counter()
            fig = synth_area(folder / manifest["verilog"], manifest["module"],
                             cache_dir=sim_build_root() / "area")
            units = cfg.area_rows * cfg.area_cols if block == "mac_array" else manifest[
                "derived"]["lanes"]
            entry = {
                "k": k,
                "cells": fig["cells"], "gates": fig["gates"], "flip_flops": fig["flip_flops"],
                "transistors": fig["transistors"],
                "nand2_equivalents": fig["nand2_equivalents"],
                "units": units,
                "unit": "mac" if block == "mac_array" else "lane",
                "per_unit": {
                    "cells": fig["cells"] / units, "gates": fig["gates"] / units,
                    "flip_flops": fig["flip_flops"] / units,
                    "transistors": fig["transistors"] / units,
                },
                "acc_width": manifest["derived"]["acc_width"],
                "params": manifest["params"],
                "config_hash": manifest["config_hash"],
                "verilog_sha256": fig["verilog_sha256"],
                "unknown_types": fig["unknown_types"],
                "by_type": fig["by_type"],
                "yosys": fig["yosys"],
                "cached": fig["cached"],
            }
            out[block][str(k)] = entry
            log(f"area {block} k={k}: {fig['cells']} cells, {fig['flip_flops']} FFs, "
                f"{fig['transistors']} transistors"
                + (" (cached)" if fig["cached"] else f" ({time.perf_counter() - t:.1f} s)"))
    for block in ("mac_array", "pact_unit"):
        for key, ratios in area_ratios(out[block]).items():
            out[block][key]["ratio_to_16"] = ratios
    out["pact_share"] = pact_share(out["mac_array"], out["pact_unit"], cfg.rows, cfg.cols)
    return out


def pact_share(mac: Mapping[str, Any], pact: Mapping[str, Any], rows: int,
               cols: int) -> dict[str, dict[str, float]]:
    """Area of the chip's PACT unit (``cols`` lanes, shared by the ``rows`` output channels: one
    row drains per cycle) relative to its ``rows x cols`` MAC array, per k, from the per-MAC and
    per-lane transistor estimates. PACT applies alpha once per output, not per MAC."""
    return {k: {"rows": rows, "cols": cols,
                "transistors": cols * pact[k]["per_unit"]["transistors"]
                / (rows * cols * mac[k]["per_unit"]["transistors"])}
            for k in mac if k in pact}


def area_ratios(entries: Mapping[str, Any],
                metrics: Iterable[str] = ("cells", "gates", "transistors"),
                ) -> dict[str, dict[str, float]]:
    """``area(16) / area(k)`` per unit (MAC or lane) for each k, per metric; ``{}`` without a
    16-bit entry. Above 1 means more units fit in the area of one 16-bit unit."""
    base = entries.get("16")
    if base is None:
        return {}
    return {k: {m: base["per_unit"][m] / e["per_unit"][m] for m in metrics}
            for k, e in entries.items()}
