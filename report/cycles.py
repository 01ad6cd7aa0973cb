"""The ``cycles`` and ``bytes`` sections: the digits CNN compiled for and simulated on the chip
per k, its memory traffic, the iso-area arrays and the 16 -> 4 speed-up."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from report.config import END_BITS, PAPER, Log, ReportConfig, _log_default

if TYPE_CHECKING:
    from gen.compiler import Program
    from golden.image import ModelImage

#: A chip run to simulate: ``(label, k, image, program, chip params)``.
SimItem = tuple[str, int, "ModelImage", "Program", dict[str, Any]]


def chip_network(k: int, seed: int = 0) -> ModelImage:
    """The digits CNN with k-bit hidden layers, ``max(END_BITS, k)``-bit ends, random codes."""
    from cosim.chip_model import random_image
    from golden.models import describe_cnn

    # The trainer's shapes (bit-widths do not change them; 4 is any trainable width).
    layers = describe_cnn((1, 8, 8), 10, wbits=4, abits=4, end_bits=END_BITS)
    specs: list[dict[str, Any]] = []
    for lay in layers:
        spec: dict[str, Any] = {"name": lay["name"], "op": lay["op"],
                                "in_shape": tuple(lay["in_shape"]),
                                "out_shape": tuple(lay["out_shape"])}
        if lay["op"] == "conv":
            spec.update(kernel=lay["kernel"], stride=lay["stride"], padding=lay["padding"])
        specs.append(spec)
    return random_image(seed, wbits=k, abits=k, end_bits=max(END_BITS, k), specs=specs)


def chip_hw_params(cfg: ReportConfig, k: int) -> dict[str, int]:
    """``pact gen --block chip`` parameters for bit-width k (max_bits raised above 8)."""
    params = {"wbits": k, "abits": k, "rows": cfg.rows, "cols": cfg.cols}
    if k > END_BITS:
        params["max_bits"] = k
    if cfg.mem_width != 64:
        params["mem_width"] = cfg.mem_width
    return params


def traffic(layout: Mapping[str, Any]) -> dict[str, Any]:
    """External-memory traffic of one inference, from a compiled program's layout (words and
    bytes): reads of descriptors, weights, constants and the input; writes of every layer's
    output tensor (``logits_only`` counts the last layer's alone, as a deployed chip would)."""
    mw = layout["mem_width"]
    layers = layout["layers"]
    words = {
        "descriptors": (len(layers) + 1) * layout["descriptor_words"],
        "weights": sum(lay["w_words"] for lay in layers),
        "constants": sum(lay["c_words"] for lay in layers),
        "input": layout["input"]["words"],
        "outputs": sum(lay["out_words"] for lay in layers),
    }
    read = words["descriptors"] + words["weights"] + words["constants"] + words["input"]
    written = words["outputs"]
    return {
        "mem_width": mw,
        "words": words,
        "read": read * mw // 8,
        "written": written * mw // 8,
        "total": (read + written) * mw // 8,
        "logits_only_total": (read + layers[-1]["out_words"]) * mw // 8,
        "by_kind": {name: n * mw // 8 for name, n in words.items()},
        "source": "compiled program (words the DMA must move once per inference)",
    }


def cycles_section(cfg: ReportConfig, log: Log = _log_default,
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Compile and simulate the digits CNN on the chip for each k of ``cfg.chip_bits``.

    Returns ``(cycles, bytes)``, each keyed by k. A k that cannot be simulated (no simulator)
    gets a modelled lower bound, marked ``source: "modelled"``. The simulations run as
    ``pact regress`` jobs, all at once (``_simulate_jobs``)."""
    from cosim.flow import generate_chip
    from cosim.tools import missing_reason
    from gen import compiler

    cycles: dict[str, dict[str, Any]] = {}
    traffic_by_k: dict[str, dict[str, Any]] = {}
    todo: list[SimItem] = []
    reason = missing_reason(cfg.cycles_sim)
    for k in cfg.chip_bits:
        image = chip_network(k)
        params = chip_hw_params(cfg, k)
        hw_dir = generate_chip(params, log=log)
        hw = compiler.load_hardware(hw_dir)
        program = compiler.compile_image(image, hw)
        layout = program.layout
        traffic_by_k[str(k)] = traffic(layout)
        beats = sum(lay["mac_beats"] for lay in layout["layers"])
        useful = sum(lay["useful_macs"] for lay in layout["layers"])
        words_moved = traffic_by_k[str(k)]["total"] * 8 // cfg.mem_width
        entry: dict[str, Any] = {
            "k": k, "end_bits": max(END_BITS, k), "rows": hw.rows, "cols": hw.cols,
            "mem_width": hw.mem_width, "mac_beats": beats, "useful_slice_macs": useful,
            "nominal_macs": sum(lay["macs"] for lay in layout["layers"]),
            "hw_dir": str(hw_dir), "config_hash": hw.config_hash,
            # Neither bound can be beaten: one beat per cycle, one memory word per cycle.
            "compute_bound_cycles": beats, "memory_bound_cycles": words_moved,
        }
        if reason is None:
            todo.append((str(k), k, image, program, params))
        else:
            entry.update(cycles=max(beats, words_moved), source="modelled",
                         note=f"{cfg.cycles_sim} unavailable ({reason}): lower bound "
                              "max(MAC beats, memory words)")
        cycles[str(k)] = entry
    for key, sim in _simulate_jobs(cfg, todo, log).items():
        cycles[key].update(sim)
    return cycles, traffic_by_k


def _simulate_jobs(cfg: ReportConfig, items: Sequence[SimItem],
                   log: Log) -> dict[str, dict[str, Any]]:
    """Simulate ``items`` (``(label, k, image, program, chip params)``) as ``pact regress``
    jobs (``cosim.regress``: on ``cfg.scheduler``, else a local cluster), each running the
    image on its chip for ``cfg.images`` digits test images with every layer checked ``==``.
    Cycles do not depend on the input values. Returns ``{label: figures}``; a job that ends
    without a flow report (error, timeout, dead worker) raises ``RuntimeError``."""
    from cosim import regress
    from golden import image as image_mod

    if not items:
        return {}
    jobs: list[regress.Job] = []
    images: dict[str, bytes] = {}
    for label, k, image, _, params in items:
        data = image_mod.to_bytes(image)
        digest = image_mod.from_bytes(data).meta["content_hash"]
        images[f"report-k{k}"] = data
        extra = {n: v for n, v in params.items() if n not in ("wbits", "abits", "rows", "cols")}
        jobs.append(regress.Job(wbits=k, abits=k, rows=params["rows"], cols=params["cols"],
                                model="cnn", sim=cfg.cycles_sim, images=cfg.images,
                                design="plane",
                                chip=tuple(sorted(extra.items())), image_sha256=digest,
                                image_name=f"report-k{label}.pactimg"))
    out = Path(tempfile.mkdtemp(prefix="regress-", dir=_mkdir(cfg.work)))
    t = time.perf_counter()
    try:
        results, interrupted = regress.run_jobs(jobs, out, images=images,
                                                scheduler=cfg.scheduler, workers=cfg.workers,
                                                progress=False, log=log)
        if interrupted:
            raise KeyboardInterrupt
    finally:
        shutil.rmtree(out, ignore_errors=True)
    figures: dict[str, dict[str, Any]] = {}
    for (label, k, _, program, _), res in zip(items, results, strict=True):
        rep = (res.record or {}).get("report")
        if rep is None:
            raise RuntimeError(f"the k={k} chip run failed: {res.status}: "
                               f"{(res.record or {}).get('reason')}")
        util = rep["mac_utilization"] or {"per_layer": [{"cycles": None}] * len(
            program.layout["layers"])}
        per_layer = [{"name": lay["name"], "mac_beats": lay["mac_beats"],
                      "cycles": u["cycles"]}
                     for lay, u in zip(program.layout["layers"], util["per_layer"], strict=True)]
        first = rep["mismatches"][0] if rep["mismatches"] else None
        figures[label] = {
            "cycles": rep["cycles_per_inference"],
            "cycles_min_max": rep["cycles_min_max"],
            "per_layer": per_layer,
            "images": rep["images"], "bit_exact_images": rep["bit_exact_images"],
            "source": "simulated", "sim": cfg.cycles_sim,
            "sim_cycles_per_second": rep["sim_cycles_per_second"],
            "build_seconds": round(rep["times"].get("build_s", 0.0), 2),
            "first_mismatch": regress.mismatch_text([first]) if first else None,
        }
        log(f"cycles k={k} ({label}): {rep['cycles_per_inference']:.0f} per inference on "
            f"{cfg.cycles_sim} {rep['rows']}x{rep['cols']}, {rep['bit_exact_images']}/"
            f"{rep['images']} bit-exact")
    log(f"{len(jobs)} chip simulations in {time.perf_counter() - t:.1f} s")
    return figures


def _mkdir(folder: Path) -> Path:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder


def iso_area_array(rows: int, cols: int, ratio: float, limit: int = 64) -> tuple[int, int, int]:
    """The array for a narrower k in the area of a ``rows x cols`` 16-bit array: MACs times the
    largest power of two ``f <= ratio`` (the per-MAC area ratio), doubling rows, then columns,
    alternately (each at most ``limit``). Returns ``(rows, cols, f)``.

    >>> iso_area_array(8, 8, 5.6), iso_area_array(8, 8, 8.5), iso_area_array(8, 8, 1.7)
    ((16, 16, 4), (32, 16, 8), (8, 8, 1))
    """
    f, r, c = 1, rows, cols
    while 2 * f <= ratio:
        if r <= c and 2 * r <= limit:
            r *= 2
        elif 2 * c <= limit:
            c *= 2
        else:
            break
        f *= 2
    return r, c, f


def iso_area_section(cfg: ReportConfig, area: Mapping[str, Any],
                     cycles: Mapping[str, Mapping[str, Any]],
                     log: Log = _log_default) -> dict[str, dict[str, Any]] | None:
    """Each k of ``cfg.chip_bits`` below 16 on an array with as many more MACs as fit in the
    area of the 16-bit ``rows x cols`` array (``iso_area_array`` of the MacArray transistor
    ratio), simulated like ``cycles_section``; ``{k: entry}`` with ``speedup_vs_16`` measured
    against the 16-bit chip's simulated cycles."""
    from cosim.flow import generate_chip
    from cosim.tools import missing_reason
    from gen import compiler

    if missing_reason(cfg.cycles_sim) is not None or "16" not in cycles:
        return None
    out: dict[str, dict[str, Any]] = {}
    todo: list[SimItem] = []
    for k in cfg.chip_bits:
        ratio = area["mac_array"].get(str(k), {}).get("ratio_to_16", {}).get("transistors")
        if k == 16 or ratio is None:
            continue
        rows, cols, factor = iso_area_array(cfg.rows, cfg.cols, ratio)
        params = dict(chip_hw_params(cfg, k), rows=rows, cols=cols)
        image = chip_network(k)
        hw_dir = generate_chip(params, log=log)
        program = compiler.compile_image(image, compiler.load_hardware(hw_dir))
        out[str(k)] = {"k": k, "rows": rows, "cols": cols, "mac_factor": factor,
                       "mac_area_ratio": ratio,
                       "mac_beats": sum(lay["mac_beats"] for lay in program.layout["layers"]),
                       "memory_bound_cycles": cycles[str(k)]["memory_bound_cycles"],
                       "hw_dir": str(hw_dir)}
        todo.append((str(k), k, image, program, params))
    for key, sim in _simulate_jobs(cfg, todo, log).items():
        out[key].update(sim)
        out[key]["speedup_vs_16"] = cycles["16"]["cycles"] / out[key]["cycles"]
    return out


def speedup(cycles: Mapping[str, Mapping[str, Any]],
            traffic_by_k: Mapping[str, Mapping[str, Any]], frm: str = "16", to: str = "4",
            mac_area_ratio: float | None = None) -> dict[str, Any] | None:
    """Speed-up from ``frm`` to ``to`` bits: measured (cycles), compute bound (MAC beats) and
    bandwidth bound (bytes moved) on the same array; ``None`` when either width is missing.

    With ``mac_area_ratio`` (area per MAC at ``frm`` over at ``to``), also ``iso_area_model``:
    a modelled figure for a ``to``-bit array with that many times more MACs in the same area,
    each chip taking ``max(MAC beats / MACs factor, memory words)`` cycles (both lower bounds,
    nothing simulated)."""
    if frm not in cycles or to not in cycles:
        return None
    a, b = cycles[frm], cycles[to]
    out: dict[str, Any] = {
        "from_bits": int(frm), "to_bits": int(to),
        "cycles": a["cycles"] / b["cycles"],
        "cycles_source": sorted({a["source"], b["source"]}),
        "compute_bound": a["mac_beats"] / b["mac_beats"],
        "bandwidth_bound": traffic_by_k[frm]["total"] / traffic_by_k[to]["total"],
        "paper": PAPER["speedup_16_to_4"],
        "iso_area_model": None,
        "iso_area_measured": None,
    }
    if mac_area_ratio:
        slow = max(a["mac_beats"], a["memory_bound_cycles"])
        fast = max(b["mac_beats"] / mac_area_ratio, b["memory_bound_cycles"])
        out["iso_area_model"] = {"mac_area_ratio": mac_area_ratio, "speedup": slow / fast,
                                 "source": "modelled"}
    return out
