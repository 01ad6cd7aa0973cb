"""The ``sim_speed`` section: whole-chip simulated cycles per second by clock source
(``cosim.sim_speed``)."""

from __future__ import annotations

import time
from typing import Any

from report.config import SPEED_MODES, Log, ReportConfig, _log_default
from report.cycles import chip_hw_params, chip_network


def sim_speed_section(cfg: ReportConfig, log: Log = _log_default) -> dict[str, dict[str, Any]]:
    """Cycles/s of the whole chip per simulator: HDL clock against a Python-driven clock."""
    from cosim import sim_speed
    from cosim.flow import generate_chip
    from cosim.tools import missing_reason
    from gen import compiler

    k = cfg.speed_bits
    image = chip_network(k)
    hw_dir = generate_chip(chip_hw_params(cfg, k), log=log)
    hw = compiler.load_hardware(hw_dir)
    program = compiler.compile_image(image, hw)
    out: dict[str, dict[str, Any]] = {}
    for sim in cfg.sims:
        reason = missing_reason(sim)
        if reason is not None:
            out[sim] = {"available": False, "reason": reason}
            log(f"sim speed {sim}: unavailable ({reason})")
            continue
        entry: dict[str, Any] = {"available": True, "k": k, "rows": hw.rows, "cols": hw.cols}
        for mode in SPEED_MODES:
            t = time.perf_counter()
            r = sim_speed.measure(sim, mode, image, program, hw_dir,
                                  images=cfg.speed_images_for(sim), work=cfg.work / "sim_speed")
            entry[mode] = r
            log(f"sim speed {sim} {mode}: {r['cycles_per_cpu_second']:,.0f} cycles/CPU-s, "
                f"{r['cycles_per_second']:,.0f} cycles/s ({r['cycles']} cycles, "
                f"{time.perf_counter() - t:.1f} s with build)")
        entry["hdl_over_python"] = (entry["hdl_clock"]["cycles_per_cpu_second"]
                                    / entry["python_clock"]["cycles_per_cpu_second"])
        out[sim] = entry
    return out
