"""The ``fpga`` section: the 8x8 tiled chip on a Lattice ECP5 per k (``gen.fpga``): LUT4s,
flip-flops, DSPs, block RAMs, the smallest device that fits, the post-route Fmax, and images
per second at that clock from cycles per image measured in simulation (the digits CNN on the
same 8x8 chip, ``report.payoff.simulate``)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from report.config import Log, ReportConfig, _log_default

if TYPE_CHECKING:
    from rtl.tiled.params import TiledParams

__all__ = ["FPGA_ARRAY", "fpga_chip_params", "images_per_second", "fpga_section"]

#: The array the FPGA figures are for.
FPGA_ARRAY = (8, 8)


def fpga_chip_params(k: int, rows: int = FPGA_ARRAY[0], cols: int = FPGA_ARRAY[1]) -> TiledParams:
    """The FPGA chip at k: the tiled chip ``pact flow`` generates for the digits CNN on
    ``rows x cols`` (k-bit array, ends at ``max(8, k)`` bits)."""
    from report.payoff import chip_params, model_image

    return chip_params(model_image("cnn", k), k, rows, cols)


def images_per_second(fmax_mhz: float | None, cycles: float | None) -> float | None:
    """Images per second at ``fmax_mhz`` for ``cycles`` per image (``None`` if either is).

    >>> images_per_second(50.0, 25000)
    2000.0
    """
    if not fmax_mhz or not cycles:
        return None
    return fmax_mhz * 1e6 / cycles


def fpga_section(cfg: ReportConfig, cycles: Mapping[str, float] | None = None,
                 log: Log = _log_default) -> dict[str, dict[str, Any]]:
    """``{k: figures}`` for ``cfg.fpga_bits``; ``cycles`` (k -> cycles per image of the
    digits CNN on this chip) gives ``images_per_second``, else it is simulated here.

    The bit-widths are implemented side by side, one per core (Yosys and nextpnr each run
    on one core, as separate processes), so four take about the time of the slowest."""
    from concurrent.futures import ThreadPoolExecutor

    from cosim.flow import generate_chip
    from gen.fpga import implement
    from pact.paths import sim_build_root
    from report.payoff import model_image, simulate

    known = dict(cycles or {})
    out: dict[str, dict[str, Any]] = {}
    params = {k: fpga_chip_params(k) for k in cfg.fpga_bits}
    hw_dirs = {k: generate_chip(dataclasses.asdict(p), log, block="tiled_chip")
               for k, p in params.items()}

    def implement_k(k: int) -> dict[str, Any]:
        t = time.perf_counter()
        fig = implement(hw_dirs[k] / "pact_tiled_chip.v", "pact_tiled_chip",
                        freq=cfg.fpga_freq, cache_dir=sim_build_root() / "fpga",
                        route=cfg.fpga_route)
        log(f"fpga k={k}: {fig['lut4']} LUT4, {fig['ff']} FF, {fig['dsp']} DSP, {fig['bram']} "
            f"DP16KD on {fig['device']}, {fig['fmax_mhz']} MHz"
            + (" (cached)" if fig["cached"] else f" ({time.perf_counter() - t:.0f} s)"))
        return fig

    workers = max(1, min(len(params), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        figs = dict(zip(params, pool.map(implement_k, params), strict=True))
    for k, fig in figs.items():
        if str(k) not in known and cfg.cycles_sim:
            sim_run = simulate(model_image("cnn", k), params[k], images=1, sim=cfg.cycles_sim,
                               work=cfg.work / "fpga", log=log)
            if sim_run["bit_exact_images"] == sim_run["images"]:
                known[str(k)] = sim_run["cycles"]
        c = known.get(str(k))
        out[str(k)] = {
            "lut4": fig["lut4"], "ff": fig["ff"], "dsp": fig["dsp"], "bram": fig["bram"],
            "dist_ram": fig["dist_ram"], "fmax_mhz": fig["fmax_mhz"], "device": fig["device"],
            "fmax_source": fig.get("fmax_source", "routed (router1)"),
            "package": fig["package"], "freq_target_mhz": fig["freq_target_mhz"],
            "images_per_second": images_per_second(fig["fmax_mhz"], c),
            "cycles_per_image": c, "cycles_of": "digits CNN (1x8x8) on the same 8x8 chip",
            "memories_in_bram": fig["bram"] > 0,
            "seconds": fig["seconds"], "cached": fig["cached"], "tools": fig["tools"],
        }
    return out
