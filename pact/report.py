"""``pact report``: the bit-width trade-off, measured on our own generated RTL.

    pact report --out report/                     # the full sweep
    pact report --out report/ --quick --bits 2,4  # a reduced sweep (about a minute)

The full sweep took 5.5 minutes on 2 cores with only the training runs cached (12 syntheses,
7 chips generated, built and simulated from cold), 3 minutes fully cached; the 18 trainings
add about 2 minutes. Every cache is keyed by content: a re-run redoes only what changed.

Writes ``DIR/report.json`` (every number, under stable keys), ``DIR/report.md``,
``DIR/report.html`` (self-contained: tables and the plots inlined) and the PNG plots
``DIR/area.png``, ``DIR/cycles_bytes.png``, ``DIR/accuracy.png``, ``DIR/sim_speed.png``.

Sections (``--sections``, all by default):

``area``
    Yosys generic-gate synthesis (``pact.area``) of the ``MacArray`` and the ``PactUnit`` as
    ``pact gen`` emits them, for every k in ``--bits`` (weights = activations = k), on a small
    ``--area-rows`` x ``--area-cols`` array with ``--max-reduction`` (the array is a grid of
    identical MACs, so the area per MAC is the total over ``rows * cols``). Per block and k:
    cells, gates, flip-flops, a CMOS transistor estimate, per MAC (or per PACT lane), and the
    ratio to 16-bit ``area(16) / area(k)`` (how many more MACs fit in the same area). The paper
    reports about 14x from 16 to 2 bits.
``cycles`` and ``bytes``
    The digits CNN (``golden.models.describe_cnn``'s shapes; random codes in range, since
    neither cycles nor traffic depend on the values) compiled for and run on the generated chip
    (``--rows`` x ``--cols``, the same ``--mem-width`` port for every k) at each k of
    ``--chip-bits`` that is also in ``--bits``: k-bit hidden layers, first and last layers at
    ``max(8, k)`` bits (the paper's policy; the 16-bit baseline is 16-bit throughout). Cycles
    are simulated (``cosim.chip_tb``, every layer checked ``==`` against the integer reference);
    bytes are counted from the compiled program: every word the DMA must read (descriptors,
    weights, constants, the input) and write (every layer's output tensor, as this chip does).
    Iso-area (``cycles_iso_area``): each k below 16 again, on an array with as many times more
    MACs as fit in the 16-bit array's area (the MacArray ratio, rounded down to a power of two).
    Speed-up 16 -> 4: measured on the same array and at iso-area, and the bounds (compute: MAC
    beats; bandwidth: bytes). The paper: up to 4.5x, iso-area, when memory bandwidth limits.
``accuracy``
    ``golden.train`` on digits for float and each k of ``--bits`` up to 8, ``--seeds`` seeds,
    then the integer reference on the test set (runs cached under ``--runs``).
``sim_speed``
    Simulated cycles per second of the whole chip on Icarus and Verilator (``--sims``): with the
    clock inside the HDL (the chip running on its own, Python only awaiting ``done``), driven by
    cocotb's C++ clock, and toggled from Python every half cycle (``pact.sim_speed``).

``report.json`` keys: ``area`` (``mac_array``/``pact_unit`` -> k -> figures, and
``pact_share``), ``cycles`` and ``bytes`` (k -> figures), ``cycles_iso_area`` (k -> figures),
``speedup_16_to_4``, ``accuracy`` (``float``/k -> mean, std, min, max, values), ``sim_speed``
(simulator -> clock source -> figures), ``settings`` (with the regenerating ``command``),
``paper``, ``times``, ``machine``. Bit-widths are string keys ("2", "16").
"""

import base64
import html
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pact.errors import UserError
from pact.paths import check_output, runs_root, sim_build_root

__all__ = [
    "ALL_SECTIONS", "DEFAULT_BITS", "PAPER", "ReportConfig", "area_section", "cycles_section",
    "iso_area_section", "accuracy_section", "sim_speed_section", "area_ratios", "pact_share",
    "iso_area_array", "traffic", "speedup", "build_report", "tables", "headline",
    "render_markdown", "render_html", "write_plots", "write_report", "add_arguments", "run",
]

ALL_SECTIONS = ("area", "cycles", "accuracy", "sim_speed")
DEFAULT_BITS = (2, 3, 4, 5, 8, 16)
DEFAULT_CHIP_BITS = (2, 4, 8, 16)
SIMS = ("icarus", "verilator")
#: Trainable bit-widths (golden.models.BITS_RANGE): accuracy is reported for these only.
TRAIN_BITS = (2, 8)
END_BITS = 8
REPORT_FORMAT = "pact-report"
REPORT_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent

#: The paper's hardware claims (PACT.md), shown next to our figures.
PAPER = {
    "mac_area_ratio_16_to_2": 14.0,
    "speedup_16_to_4": 4.5,
    "source": "Choi et al., PACT, arXiv 1805.06085: ~14x MACs per area 16->2 bits (14 nm); "
              "up to 4.5x faster 16->4 bits in a memory-bandwidth-limited systolic accelerator",
}

#: Clock sources of the speed section (pact.sim_speed.MODES).
SPEED_MODES = ("hdl_clock", "gpi_clock", "python_clock")

#: Default images per speed run, by --quick and simulator.
SPEED_IMAGES = {False: {"icarus": 2, "verilator": 32}, True: {"icarus": 1, "verilator": 2}}

PLOTS = ("area.png", "cycles_bytes.png", "accuracy.png", "sim_speed.png")


# -- configuration ------------------------------------------------------------------------------


def _parse_list(name, text, allowed=None, cast=int):
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UserError(f"--{name} is empty; give a comma-separated list")
    out = []
    for t in items:
        try:
            v = cast(t)
        except ValueError:
            raise UserError(f"--{name}: {t!r} is not valid; give a comma-separated list") from None
        if allowed is not None and v not in allowed:
            raise UserError(f"--{name}: {t!r} is not one of {', '.join(map(str, allowed))}")
        if v not in out:
            out.append(v)
    return out


class ReportConfig:
    """What a report sweeps, validated on construction (``UserError`` on a bad value)."""

    def __init__(self, *, bits=DEFAULT_BITS, chip_bits=DEFAULT_CHIP_BITS, seeds=3, quick=False,
                 sections=ALL_SECTIONS, sims=SIMS, cycles_sim="verilator", rows=8, cols=8,
                 mem_width=64, images=None, area_rows=None, area_cols=None, max_reduction=None,
                 epochs=None, speed_bits=4, speed_images=None, runs="runs", work=None,
                 scheduler=None, workers=None):
        for k in bits:
            if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 16:
                raise UserError(f"--bits: {k!r} is outside 2..16")
        for name, v, lo, hi in (("seeds", seeds, 1, 20), ("rows", rows, 1, 64),
                                ("cols", cols, 1, 64), ("speed-bits", speed_bits, 2, 16)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise UserError(f"--{name} must be an integer in {lo}..{hi}, not {v!r}")
        if mem_width not in (16, 32, 64, 128, 256, 512, 1024):
            raise UserError(f"--mem-width must be a power of two in 16..1024, not {mem_width!r}")
        unknown = [s for s in sections if s not in ALL_SECTIONS]
        if unknown or not sections:
            raise UserError(f"--sections: choose from {', '.join(ALL_SECTIONS)}, not {unknown}")
        bad = [s for s in (*sims, cycles_sim) if s not in SIMS]
        if bad:
            raise UserError(f"unknown simulator {bad[0]!r}; choose from {', '.join(SIMS)}")
        self.bits = sorted(bits)
        self.chip_bits = sorted(k for k in chip_bits if k in self.bits)
        self.seeds, self.quick, self.sections = seeds, quick, list(sections)
        self.sims, self.cycles_sim = list(sims), cycles_sim
        self.rows, self.cols, self.mem_width = rows, cols, mem_width
        self.images = images if images is not None else (1 if quick else 4)
        self.area_rows = area_rows if area_rows is not None else (1 if quick else 2)
        self.area_cols = area_cols if area_cols is not None else (1 if quick else 2)
        # 3x3 x 512 input channels: the deepest 3x3 reduction of ResNet-18/50.
        self.max_reduction = max_reduction if max_reduction is not None else 4608
        self.epochs = epochs if epochs is not None else (3 if quick else 40)
        self.speed_bits = speed_bits
        self.speed_images = speed_images
        self.runs = Path(runs)
        self.work = Path(work) if work else sim_build_root() / "report"
        # Where the chip simulations run (cosim.regress): a Dask scheduler, else a local
        # cluster of ``workers`` (default: one per core). Neither changes a figure.
        self.scheduler, self.workers = scheduler, workers
        for name in ("images", "area_rows", "area_cols", "max_reduction", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, "
                                f"not {v!r}")

    def speed_images_for(self, sim):
        """Images per speed run: ``--speed-images``, else enough cycles for a stable figure on
        that simulator (Icarus runs this chip at about a thousand cycles per second)."""
        if self.speed_images is not None:
            return self.speed_images
        return SPEED_IMAGES[self.quick][sim]

    @property
    def accuracy_bits(self):
        lo, hi = TRAIN_BITS
        return [k for k in self.bits if lo <= k <= hi]

    def command(self, out="DIR"):
        """The ``pact report`` command line that regenerates this sweep."""
        parts = ["pact", "report", "--out", out]
        if self.quick:
            parts.append("--quick")
        parts += ["--bits", ",".join(map(str, self.bits)), "--seeds", str(self.seeds)]
        if self.chip_bits != sorted(k for k in DEFAULT_CHIP_BITS if k in self.bits):
            parts += ["--chip-bits", ",".join(map(str, self.chip_bits))]
        if self.sections != list(ALL_SECTIONS):
            parts += ["--sections", ",".join(self.sections)]
        if self.sims != list(SIMS):
            parts += ["--sims", ",".join(self.sims)]
        if self.cycles_sim != "verilator":
            parts += ["--cycles-sim", self.cycles_sim]
        for name, default in (("rows", 8), ("cols", 8), ("mem_width", 64)):
            if getattr(self, name) != default:
                parts += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        return " ".join(parts)

    def as_dict(self):
        return {
            "bits": self.bits, "chip_bits": self.chip_bits, "seeds": self.seeds,
            "quick": self.quick, "sections": self.sections, "sims": self.sims,
            "cycles_sim": self.cycles_sim, "rows": self.rows, "cols": self.cols,
            "mem_width": self.mem_width, "images": self.images, "area_rows": self.area_rows,
            "area_cols": self.area_cols, "max_reduction": self.max_reduction,
            "epochs": self.epochs, "speed_bits": self.speed_bits,
            "speed_images": {sim: self.speed_images_for(sim) for sim in self.sims},
            "accuracy_bits": self.accuracy_bits,
            "end_bits": END_BITS, "model": "cnn", "data": "digits",
            "command": self.command(),
        }


def _log_default(msg):
    print(f"pact report: {msg}", file=sys.stderr, flush=True)


# -- area ---------------------------------------------------------------------------------------


def _block_params(cfg, k):
    return {"wbits": k, "abits": k, "rows": cfg.area_rows, "cols": cfg.area_cols,
            "max_reduction": cfg.max_reduction, "max_shift": 0}


def area_section(cfg, log=_log_default):
    """Synthesize MacArray and PactUnit for every k; returns ``{block: {k: figures}}``."""
    from gen.generate import generate
    from pact.area import synth_area

    out = {"mac_array": {}, "pact_unit": {}}
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
        for k, ratios in area_ratios(out[block]).items():
            out[block][k]["ratio_to_16"] = ratios
    out["pact_share"] = pact_share(out["mac_array"], out["pact_unit"], cfg.rows, cfg.cols)
    return out


def pact_share(mac, pact, rows, cols):
    """Area of the chip's PACT unit (``cols`` lanes, shared by the ``rows`` output channels: one
    row drains per cycle) relative to its ``rows x cols`` MAC array, per k, from the per-MAC and
    per-lane transistor estimates. PACT applies alpha once per output, not per MAC."""
    return {k: {"rows": rows, "cols": cols,
                "transistors": cols * pact[k]["per_unit"]["transistors"]
                / (rows * cols * mac[k]["per_unit"]["transistors"])}
            for k in mac if k in pact}


def area_ratios(entries, metrics=("cells", "gates", "transistors")):
    """``area(16) / area(k)`` per unit (MAC or lane) for each k, per metric; ``{}`` without a
    16-bit entry. Above 1 means more units fit in the area of one 16-bit unit."""
    base = entries.get("16")
    if base is None:
        return {}
    return {k: {m: base["per_unit"][m] / e["per_unit"][m] for m in metrics}
            for k, e in entries.items()}


# -- cycles and bytes ---------------------------------------------------------------------------


def chip_network(k, seed=0):
    """The digits CNN with k-bit hidden layers, ``max(END_BITS, k)``-bit ends, random codes."""
    from cosim.chip_model import random_image
    from golden.models import describe_cnn

    # The trainer's shapes (bit-widths do not change them; 4 is any trainable width).
    layers = describe_cnn((1, 8, 8), 10, wbits=4, abits=4, end_bits=END_BITS)
    specs = []
    for lay in layers:
        spec = {"name": lay["name"], "op": lay["op"], "in_shape": tuple(lay["in_shape"]),
                "out_shape": tuple(lay["out_shape"])}
        if lay["op"] == "conv":
            spec.update(kernel=lay["kernel"], stride=lay["stride"], padding=lay["padding"])
        specs.append(spec)
    return random_image(seed, wbits=k, abits=k, end_bits=max(END_BITS, k), specs=specs)


def chip_hw_params(cfg, k):
    """``pact gen --block chip`` parameters for bit-width k (max_bits raised above 8)."""
    params = {"wbits": k, "abits": k, "rows": cfg.rows, "cols": cfg.cols}
    if k > END_BITS:
        params["max_bits"] = k
    if cfg.mem_width != 64:
        params["mem_width"] = cfg.mem_width
    return params


def traffic(layout):
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


def cycles_section(cfg, log=_log_default):
    """Compile and simulate the digits CNN on the chip for each k of ``cfg.chip_bits``.

    Returns ``(cycles, bytes)``, each keyed by k. A k that cannot be simulated (no simulator)
    gets a modelled lower bound, marked ``source: "modelled"``. The simulations run as
    ``pact regress`` jobs, all at once (``_simulate_jobs``)."""
    from cosim.flow import generate_chip
    from cosim.tools import missing_reason
    from gen import compiler

    cycles, traffic_by_k, todo = {}, {}, []
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
        entry = {
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


def _simulate_jobs(cfg, items, log):
    """Simulate ``items`` (``(label, k, image, program, chip params)``) as ``pact regress``
    jobs (``cosim.regress``: on ``cfg.scheduler``, else a local cluster), each running the
    image on its chip for ``cfg.images`` digits test images with every layer checked ``==``.
    Cycles do not depend on the input values. Returns ``{label: figures}``; a job that ends
    without a flow report (error, timeout, dead worker) raises ``RuntimeError``."""
    from cosim import regress
    from golden import image as image_mod

    if not items:
        return {}
    jobs, images = [], {}
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
    figures = {}
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


def _mkdir(folder):
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder


def iso_area_array(rows, cols, ratio, limit=64):
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


def iso_area_section(cfg, area, cycles, log=_log_default):
    """Each k of ``cfg.chip_bits`` below 16 on an array with as many more MACs as fit in the
    area of the 16-bit ``rows x cols`` array (``iso_area_array`` of the MacArray transistor
    ratio), simulated like ``cycles_section``; ``{k: entry}`` with ``speedup_vs_16`` measured
    against the 16-bit chip's simulated cycles."""
    from cosim.flow import generate_chip
    from cosim.tools import missing_reason
    from gen import compiler

    if missing_reason(cfg.cycles_sim) is not None or "16" not in cycles:
        return None
    out, todo = {}, []
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


def speedup(cycles, traffic_by_k, frm="16", to="4", mac_area_ratio=None):
    """Speed-up from ``frm`` to ``to`` bits: measured (cycles), compute bound (MAC beats) and
    bandwidth bound (bytes moved) on the same array; ``None`` when either width is missing.

    With ``mac_area_ratio`` (area per MAC at ``frm`` over at ``to``), also ``iso_area_model``:
    a modelled figure for a ``to``-bit array with that many times more MACs in the same area,
    each chip taking ``max(MAC beats / MACs factor, memory words)`` cycles (both lower bounds,
    nothing simulated)."""
    if frm not in cycles or to not in cycles:
        return None
    a, b = cycles[frm], cycles[to]
    out = {
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


# -- accuracy -----------------------------------------------------------------------------------


def _stats(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values),
            "values": list(values), "seeds": n}


def accuracy_section(cfg, log=_log_default):
    """Train (or reuse) float and each trainable k for ``cfg.seeds`` seeds; integer accuracy
    for quantized runs (the integer reference on the test set), fake-quant for float."""
    from golden.evaluate import evaluate
    from golden.export import export
    from golden.train import METRICS, TrainConfig, train

    keys = [None] + cfg.accuracy_bits
    out = {}
    for k in keys:
        acc, fq, secs = [], [], []
        for seed in range(cfg.seeds):
            tc = TrainConfig(wbits=k, abits=k, end_bits=END_BITS, epochs=cfg.epochs, seed=seed)
            t = time.perf_counter()
            run_dir = train(tc, reuse=True, progress=False, runs_root=cfg.runs)
            metrics = json.loads((Path(run_dir) / METRICS).read_text())
            fq.append(float(metrics["test_accuracy"]))
            secs.append(float(metrics.get("train_seconds", time.perf_counter() - t)))
            if k is None:
                acc.append(fq[-1])
            else:
                acc.append(float(evaluate(export(run_dir), run_dir=run_dir)["accuracy"]))
            log(f"accuracy {'float' if k is None else f'k={k}'} seed {seed}: "
                f"{100 * acc[-1]:.2f}%")
        entry = _stats(acc)
        entry.update(fake_quant=_stats(fq), train_seconds=_stats(secs),
                     source="fake-quant float model" if k is None
                     else "integer reference (golden/reference.py) on the test set")
        out["float" if k is None else str(k)] = entry
    if "float" in out:
        base = out["float"]["mean"]
        for e in out.values():
            e["gap_to_float_points"] = 100 * (base - e["mean"])
    return out


# -- simulation speed ---------------------------------------------------------------------------


def sim_speed_section(cfg, log=_log_default):
    """Cycles/s of the whole chip per simulator: HDL clock against a Python-driven clock."""
    from cosim.flow import generate_chip
    from cosim.tools import missing_reason
    from gen import compiler
    from pact import sim_speed

    k = cfg.speed_bits
    image = chip_network(k)
    hw_dir = generate_chip(chip_hw_params(cfg, k), log=log)
    hw = compiler.load_hardware(hw_dir)
    program = compiler.compile_image(image, hw)
    out = {}
    for sim in cfg.sims:
        reason = missing_reason(sim)
        if reason is not None:
            out[sim] = {"available": False, "reason": reason}
            log(f"sim speed {sim}: unavailable ({reason})")
            continue
        entry = {"available": True, "k": k, "rows": hw.rows, "cols": hw.cols}
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


# -- assembling ---------------------------------------------------------------------------------


def build_report(cfg, log=_log_default):
    """Run the configured sections; returns the report dict (see the module docstring)."""
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "settings": cfg.as_dict(), "paper": PAPER,
        "area": None, "cycles": None, "bytes": None, "cycles_iso_area": None,
        "speedup_16_to_4": None,
        "accuracy": None, "sim_speed": None, "times": {},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
    }
    start = time.perf_counter()
    if "area" in cfg.sections:
        t = time.perf_counter()
        report["area"] = area_section(cfg, log)
        report["times"]["area_s"] = round(time.perf_counter() - t, 2)
    if "cycles" in cfg.sections and cfg.chip_bits:
        t = time.perf_counter()
        report["cycles"], report["bytes"] = cycles_section(cfg, log)
        mac = (report["area"] or {}).get("mac_array", {})
        ratio = mac.get("4", {}).get("ratio_to_16", {}).get("transistors")
        report["speedup_16_to_4"] = speedup(report["cycles"], report["bytes"],
                                            mac_area_ratio=ratio)
        if report["area"]:
            report["cycles_iso_area"] = iso_area_section(cfg, report["area"], report["cycles"],
                                                         log)
            iso = (report["cycles_iso_area"] or {}).get("4")
            if report["speedup_16_to_4"] and iso:
                report["speedup_16_to_4"]["iso_area_measured"] = {
                    "speedup": iso["speedup_vs_16"], "rows": iso["rows"], "cols": iso["cols"],
                    "source": iso["source"]}
        report["times"]["cycles_s"] = round(time.perf_counter() - t, 2)
    if "accuracy" in cfg.sections:
        t = time.perf_counter()
        report["accuracy"] = accuracy_section(cfg, log)
        report["times"]["accuracy_s"] = round(time.perf_counter() - t, 2)
    if "sim_speed" in cfg.sections:
        t = time.perf_counter()
        report["sim_speed"] = sim_speed_section(cfg, log)
        report["times"]["sim_speed_s"] = round(time.perf_counter() - t, 2)
    report["times"]["total_s"] = round(time.perf_counter() - start, 2)
    return report


# -- rendering ----------------------------------------------------------------------------------


def _fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def _sorted_keys(d):
    return sorted(d, key=lambda k: (k != "float", int(k) if k.isdigit() else -1))


def tables(report):
    """The report's tables: a list of ``(title, note, header, rows)`` (rows of strings)."""
    out = []
    area = report.get("area")
    if area:
        for block, unit in (("mac_array", "MAC"), ("pact_unit", "lane")):
            entries = area[block]
            rows = []
            for k in _sorted_keys(entries):
                e = entries[k]
                r = e.get("ratio_to_16", {})
                rows.append([k, _fmt(e["cells"]), _fmt(e["gates"]), _fmt(e["flip_flops"]),
                             _fmt(e["transistors"]), _fmt(e["acc_width"]),
                             _fmt(e["per_unit"]["cells"], 1),
                             _fmt(e["per_unit"]["transistors"], 1),
                             _fmt(r.get("cells")), _fmt(r.get("transistors"))])
            s = report["settings"]
            name = "MacArray" if block == "mac_array" else "PactUnit"
            size = (f"{s['area_rows']}x{s['area_cols']} array" if block == "mac_array"
                    else f"{s['area_cols']} lane(s)")
            out.append((
                f"Area: {name} ({size}, max reduction {s['max_reduction']})",
                "Yosys generic gates (synth -flatten; dffunmap). Transistors: Yosys' CMOS cost "
                f"model. Ratio = area per {unit} at 16 bits / at k bits (paper: ~14x for MACs "
                "16 -> 2).",
                ["k", "cells", "gates", "flip-flops", "transistors", "acc bits",
                 f"cells/{unit}", f"transistors/{unit}", "ratio (cells)",
                 "ratio (transistors)"],
                rows))
    cycles, traffic_by_k = report.get("cycles"), report.get("bytes")
    if cycles:
        rows = []
        for k in _sorted_keys(cycles):
            c, b = cycles[k], traffic_by_k[k]
            rows.append([k, str(c["end_bits"]), _fmt(c["cycles"], 0), c["source"],
                         _fmt(c["mac_beats"]), _fmt(c["memory_bound_cycles"]),
                         _fmt(b["read"]), _fmt(b["written"]), _fmt(b["total"]),
                         _fmt(b["by_kind"]["weights"]),
                         f"{c.get('bit_exact_images', '-')}/{c.get('images', '-')}"])
        s = report["settings"]
        out.append((
            f"Cycles and external-memory bytes per inference (digits CNN, {s['rows']}x"
            f"{s['cols']} array, {s['mem_width']}-bit memory port)",
            "Cycles: simulated on the generated chip (source 'simulated', every layer checked "
            "== against the integer reference) or a modelled lower bound. Bytes: counted "
            "from the compiled program (every word the DMA reads and writes once).",
            ["k", "end bits", "cycles", "source", "MAC beats", "memory words", "bytes read",
             "bytes written", "bytes total", "weight bytes", "bit-exact"],
            rows))
    iso = report.get("cycles_iso_area")
    if iso:
        rows = []
        for k in _sorted_keys(iso):
            e = iso[k]
            rows.append([k, f"{e['rows']}x{e['cols']}", f"{e['mac_factor']}x",
                         _fmt(e["mac_area_ratio"]), _fmt(e["cycles"], 0), e["source"],
                         _fmt(e["mac_beats"]), _fmt(e["memory_bound_cycles"]),
                         _fmt(e["speedup_vs_16"]),
                         f"{e.get('bit_exact_images', '-')}/{e.get('images', '-')}"])
        s = report["settings"]
        out.append((
            f"Iso-area: each k on as many MACs as fit in the area of the 16-bit {s['rows']}x"
            f"{s['cols']} array",
            "The array grows by the largest power of two not above the MacArray area ratio "
            "(transistors per MAC, 16-bit over k-bit); simulated like the table above. "
            "Speed-up: 16-bit cycles on its array over these cycles.",
            ["k", "array", "MACs", "area ratio", "cycles", "source", "MAC beats",
             "memory words", "speed-up vs 16", "bit-exact"],
            rows))
    sp = report.get("speedup_16_to_4")
    if sp:
        out.append((
            "Speed-up from 16 to 4 bits",
            "Measured, same array: cycles(16)/cycles(4) on the same array and port. "
            "Iso-area (measured): the 4-bit chip of the iso-area table. Compute bound: MAC "
            "beats (the 8-bit first/last layers take 4 slice-beats per MAC at k=4, 1 at 16); "
            "bandwidth bound: bytes moved (a chip limited by its memory port). Iso-area "
            "(modelled): the 4-bit array gets as many times more MACs as fit in the 16-bit "
            "array's area (the MacArray transistor ratio), each chip bounded by max(beats, "
            "memory words). Paper: up to 4.5x (iso-area, memory-bandwidth limited).",
            ["measured, same array", "compute bound", "bandwidth bound",
             "iso-area (measured)", "iso-area (modelled)", "paper"],
            [[_fmt(sp["cycles"]), _fmt(sp["compute_bound"]), _fmt(sp["bandwidth_bound"]),
              _fmt((sp.get("iso_area_measured") or {}).get("speedup")),
              _fmt((sp.get("iso_area_model") or {}).get("speedup")), _fmt(sp["paper"], 1)]]))
    acc = report.get("accuracy")
    if acc:
        rows = []
        for k in _sorted_keys(acc):
            e = acc[k]
            rows.append([k, _pct(e["mean"]), _pct(e["std"]), _pct(e["min"]), _pct(e["max"]),
                         str(e["seeds"]), _fmt(e.get("gap_to_float_points")),
                         _pct(e["fake_quant"]["mean"])])
        s = report["settings"]
        out.append((
            f"Accuracy on digits (CNN, {s['seeds']} seed(s), {s['epochs']} epochs, first/last "
            f"layer {END_BITS}-bit)",
            "Quantized: the integer reference on the test set; float: the float model. "
            "Spread: sample standard deviation over seeds, min and max.",
            ["k", "accuracy %", "std", "min", "max", "seeds", "gap to float (points)",
             "fake-quant %"],
            rows))
    speed = report.get("sim_speed")
    if speed:
        rows = []
        for sim in sorted(speed):
            e = speed[sim]
            if not e.get("available"):
                rows.append([sim, *["-"] * 7, f"unavailable: {e.get('reason')}"])
                continue
            exact = all(e[m]["bit_exact_images"] == e[m]["images"] for m in SPEED_MODES)
            rows.append([sim, *(_fmt(e[m]["cycles_per_cpu_second"], 0) for m in SPEED_MODES),
                         *(_fmt(e[m]["cycles_per_second"], 0) for m in SPEED_MODES),
                         _fmt(e["hdl_over_python"], 1),
                         f"{e['hdl_clock']['cycles'] // e['hdl_clock']['images']} cycles x "
                         f"{e['hdl_clock']['images']} images"
                         + ("" if exact else "; NOT bit-exact")])
        out.append((
            f"Simulation speed (whole chip, k={report['settings']['speed_bits']})",
            "Simulated cycles per CPU second of the simulator process while the chip runs "
            "(robust on a busy machine), and per wall-clock second. HDL clock: the "
            "clock inside the harness, Python only awaits done. cocotb Clock: the clock is "
            "an input driven by cocotb's C++ scheduler (Clock impl='gpi'). Python clock: a "
            "Python coroutine toggles it every half cycle (Clock impl='py'). Ratio: HDL clock "
            "over Python clock (CPU).",
            ["simulator", "HDL clock (CPU)", "cocotb Clock (CPU)", "Python clock (CPU)",
             "HDL clock (wall)", "cocotb Clock (wall)", "Python clock (wall)", "ratio", "note"],
            rows))
    return out


def headline(report):
    """A few sentences with the key figures (for the top of the md/html and the terminal)."""
    lines = []
    for table in ("cycles", "cycles_iso_area"):
        for k, c in sorted((report.get(table) or {}).items(), key=lambda kv: int(kv[0])):
            if c.get("source") == "simulated" and c["bit_exact_images"] != c["images"]:
                lines.append(
                    f"WARNING: the {c['rows']}x{c['cols']} chip at k={k} is NOT bit-exact "
                    f"({c['bit_exact_images']}/{c['images']} images; {c['first_mismatch']}): "
                    "its cycle count is measured, its outputs are wrong.")
    area = report.get("area")
    if area and area.get("pact_share"):
        share = area["pact_share"]
        first = share[min(share, key=int)]
        lines.append(
            f"PACT unit ({first['cols']} lanes) vs the {first['rows']}x{first['cols']} MAC array "
            "(transistors): " + ", ".join(f"k={k}: {100 * share[k]['transistors']:.0f}%"
                                          for k in sorted(share, key=int)) + ".")
    if area and "16" in area["mac_array"]:
        m = area["mac_array"]
        lo = str(min(int(k) for k in m))
        lines.append(
            f"MAC area per MAC, 16 -> {lo} bits: {m[lo]['ratio_to_16']['transistors']:.1f}x "
            f"fewer transistors ({m[lo]['ratio_to_16']['cells']:.1f}x fewer cells); the paper "
            f"reports ~{PAPER['mac_area_ratio_16_to_2']:.0f}x (16 -> 2).")
    sp = report.get("speedup_16_to_4")
    if sp:
        iso = sp.get("iso_area_measured")
        lines.append(
            f"Speed-up 16 -> 4 bits on the chip: {sp['cycles']:.2f}x on the same "
            f"{report['settings']['rows']}x{report['settings']['cols']} array "
            f"({'/'.join(sp['cycles_source'])})"
            + (f", {iso['speedup']:.2f}x with the 4-bit array at iso-area ({iso['rows']}x"
               f"{iso['cols']}, {iso['source']})" if iso else "")
            + f"; bounds: compute {sp['compute_bound']:.2f}x, bandwidth "
            f"{sp['bandwidth_bound']:.2f}x; the paper: up to {PAPER['speedup_16_to_4']}x.")
    acc = report.get("accuracy")
    if acc and "float" in acc:
        parts = [f"{k}-bit {100 * acc[k]['mean']:.1f}%" for k in _sorted_keys(acc)
                 if k != "float"]
        lines.append(f"Accuracy (digits): float {100 * acc['float']['mean']:.1f}%, "
                     + ", ".join(parts) + ".")
    speed = report.get("sim_speed")
    if speed:
        parts = [f"{sim} {speed[sim]['hdl_clock']['cycles_per_cpu_second']:,.0f} cycles/s "
                 f"with the HDL clock, "
                 f"{speed[sim]['python_clock']['cycles_per_cpu_second']:,.0f} with a Python clock"
                 for sim in sorted(speed) if speed[sim].get("available")]
        if parts:
            lines.append("Simulation speed: " + "; ".join(parts) + ".")
    return lines


def render_markdown(report, plots=()):
    """The report as Markdown (tables, then the plots by file name)."""
    s = report["settings"]
    lines = ["# PACT bit-width trade-off report", ""]
    lines += [f"- {h}" for h in headline(report)]
    lines += ["", f"Regenerate: `{s['command']}`", ""]
    for title, note, header, rows in tables(report):
        lines += [f"## {title}", "", note, "",
                  "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    for p in plots:
        lines += [f"![{Path(p).stem}]({Path(p).name})", ""]
    lines.append(f"Report wall time: {report['times'].get('total_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def render_html(report, plots=()):
    """The report as one self-contained HTML page (plots inlined as PNG data URIs)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>PACT bit-width trade-off report</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:right}"
        "th{background:#eee}td:first-child{text-align:left}img{max-width:100%}"
        ".note{color:#444;font-size:0.9em}</style>",
        "</head><body>", "<h1>PACT bit-width trade-off report</h1>", "<ul>",
    ]
    parts += [f"<li>{esc(h)}</li>" for h in headline(report)]
    parts += ["</ul>", f"<p>Regenerate: <code>{esc(report['settings']['command'])}</code></p>"]
    for title, note, header, rows in tables(report):
        parts += [f"<h2>{esc(title)}</h2>", f"<p class=\"note\">{esc(note)}</p>", "<table>",
                  "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for p in plots:
        data = base64.b64encode(Path(p).read_bytes()).decode()
        parts.append(f"<h2>{esc(Path(p).stem)}</h2>"
                     f"<img alt=\"{esc(Path(p).stem)}\" src=\"data:image/png;base64,{data}\">")
    parts += [f"<p class=\"note\">Report wall time: {report['times'].get('total_s', 0):.0f} s."
              "</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_plots(report, out_dir):
    """One PNG per section present; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir = Path(out_dir)
    written = []

    def save(fig, name):
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    area = report.get("area")
    if area:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, block, unit in ((axes[0], "mac_array", "MAC"), (axes[1], "pact_unit", "lane")):
            entries = area[block]
            ks = sorted(int(k) for k in entries)
            for metric, style in (("transistors", "o-"), ("cells", "s--")):
                ax.plot(ks, [entries[str(k)]["per_unit"][metric] for k in ks], style,
                        label=f"{metric} per {unit}")
            ax.set_xlabel("k (weight = activation bits)")
            ax.set_yscale("log")
            ax.set_xticks(ks)
            ax.set_title("MacArray" if block == "mac_array" else "PactUnit")
            ax.grid(True, alpha=0.3)
            ax.legend()
        save(fig, "area.png")
    cycles, traffic_by_k = report.get("cycles"), report.get("bytes")
    if cycles:
        ks = sorted(cycles, key=int)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].bar(ks, [cycles[k]["cycles"] for k in ks], color="tab:blue")
        axes[0].set_title("cycles per inference")
        axes[1].bar(ks, [traffic_by_k[k]["total"] for k in ks], color="tab:orange")
        axes[1].set_title("external-memory bytes per inference")
        for ax in axes:
            ax.set_xlabel("k")
            ax.grid(True, axis="y", alpha=0.3)
        save(fig, "cycles_bytes.png")
    acc = report.get("accuracy")
    if acc:
        keys = _sorted_keys(acc)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(range(len(keys)), [100 * acc[k]["mean"] for k in keys],
                    yerr=[100 * acc[k]["std"] for k in keys], fmt="o", capsize=4)
        for i, k in enumerate(keys):
            ax.plot([i] * len(acc[k]["values"]), [100 * v for v in acc[k]["values"]], "x",
                    color="gray", alpha=0.6)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_xlabel("k (float = no quantization)")
        ax.set_ylabel("test accuracy %")
        ax.grid(True, alpha=0.3)
        save(fig, "accuracy.png")
    speed = report.get("sim_speed")
    if speed and any(e.get("available") for e in speed.values()):
        sims = [s for s in sorted(speed) if speed[s].get("available")]
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.27
        for j, (mode, label) in enumerate((("hdl_clock", "HDL clock"),
                                           ("gpi_clock", "cocotb Clock (gpi)"),
                                           ("python_clock", "Python clock"))):
            ax.bar([i + (j - 1) * width for i in range(len(sims))],
                   [speed[s][mode]["cycles_per_cpu_second"] for s in sims], width, label=label)
        ax.set_xticks(range(len(sims)), sims)
        ax.set_yscale("log")
        ax.set_ylabel("simulated cycles / CPU second")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "sim_speed.png")
    return written


def write_report(report, out_dir):
    """Write report.json, the plots, report.md and report.html into ``out_dir``, all at once:
    everything goes to a temporary folder next to it first, then the files are moved in."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-"))
    try:
        (tmp / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        plots = write_plots(report, tmp)
        (tmp / "report.md").write_text(render_markdown(report, plots))
        (tmp / "report.html").write_text(render_html(report, plots))
        names = ["report.json", "report.md", "report.html"] + [p.name for p in plots]
        for name in PLOTS:  # a plot of a section not in this run must not linger
            if name not in names:
                (out_dir / name).unlink(missing_ok=True)
        for name in names:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / n for n in names]


# -- command line -------------------------------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced sweep: 1x1 area arrays, 1 image, 3 epochs, 1 speed image")
    parser.add_argument("--bits", default=",".join(map(str, DEFAULT_BITS)),
                        help="bit-widths k (2..16; default 2,3,4,5,8,16)")
    parser.add_argument("--chip-bits", default=",".join(map(str, DEFAULT_CHIP_BITS)),
                        help="the k of --bits run on the chip (default 2,4,8,16)")
    parser.add_argument("--seeds", default="3", help="training seeds per k (default 3)")
    parser.add_argument("--sections", default=",".join(ALL_SECTIONS),
                        help=f"what to measure (default {','.join(ALL_SECTIONS)})")
    parser.add_argument("--sims", default=",".join(SIMS),
                        help="simulators for the speed section (default icarus,verilator)")
    parser.add_argument("--cycles-sim", default="verilator",
                        help="simulator of the cycles section (default verilator)")
    parser.add_argument("--rows", default="8", help="chip array rows (default 8)")
    parser.add_argument("--cols", default="8", help="chip array columns (default 8)")
    parser.add_argument("--mem-width", default="64", help="memory port bits (default 64)")
    parser.add_argument("--images", default=None, help="images per chip run (default 4)")
    parser.add_argument("--area-rows", default=None, help="MacArray rows for area (default 2)")
    parser.add_argument("--area-cols", default=None, help="MacArray cols for area (default 2)")
    parser.add_argument("--max-reduction", default=None,
                        help="MacArray max reduction for area (default 4608 = 3x3x512)")
    parser.add_argument("--epochs", default=None, help="training epochs (default 40)")
    parser.add_argument("--speed-bits", default="4", help="chip k for the speed section")
    parser.add_argument("--speed-images", default=None,
                        help="images per speed run (default: icarus 2, verilator 32)")
    parser.add_argument("--runs", default=None, metavar="DIR",
                        help="training runs folder (default $PACT_RUNS or runs/)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run the chip simulations on this Dask scheduler (default: a "
                             "local cluster, one worker per core; as pact regress)")
    parser.add_argument("--workers", default=None, metavar="N",
                        help="local cluster workers (default: cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args):
    from gen.generate import parse_int

    def opt(name):
        v = getattr(args, name)
        return None if v is None else parse_int(name, v, 1)

    return ReportConfig(
        bits=_parse_list("bits", args.bits), chip_bits=_parse_list("chip-bits", args.chip_bits),
        seeds=parse_int("seeds", args.seeds, 1), quick=args.quick,
        sections=_parse_list("sections", args.sections, ALL_SECTIONS, str),
        sims=_parse_list("sims", args.sims, SIMS, str), cycles_sim=args.cycles_sim,
        rows=parse_int("rows", args.rows, 1), cols=parse_int("cols", args.cols, 1),
        mem_width=parse_int("mem_width", args.mem_width, 1), images=opt("images"),
        area_rows=opt("area_rows"), area_cols=opt("area_cols"),
        max_reduction=opt("max_reduction"), epochs=opt("epochs"),
        speed_bits=parse_int("speed_bits", args.speed_bits, 1),
        speed_images=opt("speed_images"), runs=args.runs or runs_root(),
        scheduler=args.scheduler, workers=opt("workers"))


def run(args):
    cfg = config_from_args(args)
    out = check_output(args.out, "--out", folder=True)
    log = (lambda msg: None) if args.quiet else _log_default
    report = build_report(cfg, log)
    files = write_report(report, out)
    for line in headline(report):
        print(line)
    print(f"pact report: wrote {', '.join(str(f) for f in files)} "
          f"({report['times']['total_s']:.0f} s)")
    bad = [k for k, c in (report.get("cycles") or {}).items()
           if c.get("source") == "simulated" and c["bit_exact_images"] != c["images"]]
    if bad:
        print(f"pact report: the chip was NOT bit-exact at k = {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0
