"""The ``payoff`` section: PACT's hardware claims measured on the tiled chip.

- ``mac_area_ratio_16_to_2`` / ``_16_to_4``: transistors per MAC (``gen.area``'s cost model) of
  the tiled chip's array (``chip.blocks["mac"]``) at k = 16 over k = 2 / 4, in the configuration
  the chip uses for ResNet20 (``gen.tiled_compiler.requirements`` of a ResNet20 image on the
  16x16 array). The arrays are synthesized at ``--payoff-area-rows x --payoff-area-cols``
  (default 16x16, the real size; a smaller array keeps the MAC's own configuration, the
  accumulator width and the slice shifts, and only changes how much shared logic each MAC
  carries); the shape used is in ``settings``.
- ``requant_share_of_array``: k -> area of the requantizer blocks (``REQUANT_BLOCKS`` of
  ``rtl.tiled.chip``, ``("drain",)`` when the chip does not name them) over the array's, at
  16x16 (the array's area scaled to 16x16 by its MAC count when synthesized smaller).
- ``iso_area_speedup_16_to_4``: model -> cycles per image of the 16-bit chip over those of the
  4-bit chip with as many MACs as fit in the 16-bit array's area (``iso_area_shape``), both
  simulated on the tiled chip and compared ``==`` with the integer reference at every layer.
  Random codes (cycles do not depend on values; the comparison still holds them exact).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pact.errors import UserError
from pact.paths import sim_build_root
from report.config import END_BITS, Log, ReportConfig, _log_default

if TYPE_CHECKING:
    from golden.image import ModelImage
    from rtl.tiled.params import TiledParams

#: ``(cout, ho, wo, reduction)`` of one layer, as the tiled chip runs it.
LayerShape = tuple[int, int, int, int]

__all__ = ["PAYOFF_MODELS", "PAPER_PAYOFF", "ratio", "requant_share", "iso_area_shape",
           "tile_beats", "model_image", "chip_params", "block_areas", "area_payoff",
           "simulate", "speedup_payoff", "payoff_section"]

#: model -> (input shape, the 16-bit chip's array). The digits CNN runs on the report's 8x8.
PAYOFF_MODELS: dict[str, tuple[tuple[int, int, int], tuple[int, int]]] = {
    "resnet20": ((3, 32, 32), (16, 16)), "cnn": ((1, 8, 8), (8, 8))}

#: The paper's figures and the issue's targets, shown beside ours.
PAPER_PAYOFF = {"mac_area_ratio_16_to_2": 14.0, "mac_area_ratio_16_to_4": 5.0,
                "requant_share_of_array_k4": 0.10, "iso_area_speedup_16_to_4": 4.5}

#: The chip configuration of the area figures (ResNet20's, on a 16x16 array).
AREA_MODEL, AREA_ARRAY = "resnet20", (16, 16)


def ratio(per_mac: Mapping[int, float], frm: int, to: int) -> float | None:
    """``per_mac[frm] / per_mac[to]`` (how many more k=``to`` MACs fit in one ``frm`` MAC's
    area), ``None`` when either is missing.

    >>> ratio({16: 3000.0, 2: 200.0}, 16, 2), ratio({16: 3000.0}, 16, 4)
    (15.0, None)
    """
    if frm not in per_mac or to not in per_mac or not per_mac[to]:
        return None
    return per_mac[frm] / per_mac[to]


def requant_share(requant: float, mac_total: float, mac_units: int, rows: int,
                  cols: int) -> float:
    """Requantizer area over the array's, the array's scaled from ``mac_units`` MACs to
    ``rows * cols``.

    >>> requant_share(100.0, 250.0, 4, 16, 16)
    0.00625
    """
    return requant / (mac_total / mac_units * rows * cols)


def tile_beats(layers: Iterable[LayerShape], rows: int, cols: int) -> int:
    """A model of the array's beats for ``layers`` (``(cout, ho, wo, reduction)`` each):
    every tile of ``rows`` output channels x ``cols`` output pixels of one row takes
    ``reduction`` beats, whatever part of it is used."""
    return sum(-(-cout // rows) * ho * -(-wo // cols) * red for cout, ho, wo, red in layers)


def iso_area_shape(budget: int, layers: Sequence[LayerShape], max_rows: int = 64,
                   max_cols: int = 64) -> tuple[int, int]:
    """The array for a ``budget`` of MACs (the 16-bit array's area over a 4-bit MAC's) that
    the network uses best: rows 1..``max_rows``, cols a power of two 2..``max_cols``,
    ``rows * cols <= budget``, fewest ``tile_beats``; ties go to fewer MACs, then fewer rows.
    Returns ``(rows, cols)``.

    >>> iso_area_shape(1024, [(16, 32, 32, 144), (64, 8, 8, 576)])
    (32, 32)
    >>> iso_area_shape(1024, [(64, 8, 8, 576)])
    (64, 8)
    """
    if budget < 2:
        raise ValueError(f"a budget of {budget} MACs holds no array (cols >= 2)")
    best: tuple[tuple[int, int, int], tuple[int, int]] | None = None
    cols = 2
    while cols <= min(max_cols, budget):
        rows = min(max_rows, budget // cols)
        for r in range(1, rows + 1):
            key = (tile_beats(layers, r, cols), r * cols, r)
            if best is None or key < best[0]:
                best = (key, (r, cols))
        cols *= 2
    if best is None:
        raise ValueError(f"no array of rows 1..{max_rows} and cols 2..{max_cols} (a power of "
                         f"two) fits a budget of {budget} MACs")
    return best[1]


def model_image(model: str, k: int, seed: int = 0) -> ModelImage:
    """``model`` with k-bit hidden layers and ``max(END_BITS, k)``-bit ends, random codes."""
    from cosim.chip_model import random_image
    from golden.models import describe

    shape, _ = PAYOFF_MODELS[model]
    # The shapes do not depend on the bit-widths (4 is any trainable width; 16 is not one).
    specs = describe(model, shape, 10, wbits=4, abits=4, end_bits=END_BITS)
    return random_image(seed, wbits=k, abits=k, end_bits=max(END_BITS, k), specs=specs,
                        input_shape=shape)


def chip_params(image: ModelImage, k: int, rows: int, cols: int) -> TiledParams:
    """The ``TiledParams`` ``pact flow`` would generate for ``image`` on ``rows x cols``."""
    from gen.tiled_compiler import requirements
    from rtl.tiled.params import TiledParams

    return requirements(image, TiledParams(k, k, rows, cols, max_bits=max(END_BITS, k)))


def layer_shapes(image: ModelImage) -> list[LayerShape]:
    """``(cout, ho, wo, reduction)`` per layer of ``image`` as the tiled chip runs it."""
    from gen.tiled_compiler import lower

    return [(lay.conv_shape[0], lay.conv_shape[1], lay.conv_shape[2],
             lay.in_shape[0] * lay.kernel ** 2) for lay in lower(image, colsum=True)]


def block_areas(params: TiledParams, names: Iterable[str], work: Path,
                log: Log = _log_default) -> dict[str, dict[str, Any]]:
    """Generic-gate area (``gen.area.synth_area``) of the tiled chip's sub-blocks ``names``
    (``chip.blocks[name]``, each converted on its own), ``{name: figures}``."""
    from amaranth.back import verilog
    from amaranth.hdl import Fragment

    from gen.area import synth_area
    from rtl.tiled.chip import TiledChip

    chip = TiledChip(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Fragment.get(chip, None)   # elaborates every block (and fills chip.blocks)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        module = f"pact_payoff_{name}"
        path = work / f"{module}-w{params.wbits}r{params.rows}c{params.cols}.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path.write_text(verilog.convert(chip.blocks[name], name=module, emit_src=False))
        t = time.perf_counter()
        # No machine-wide lock: the FPGA flow has run Yosys already (its WebAssembly module is
        # compiled), and area runs of other checkouts may hold the lock for many minutes.
        fig = synth_area(path, module, cache_dir=sim_build_root() / "area", lock=False)
        log(f"payoff area {name} k={params.wbits} {params.rows}x{params.cols}: "
            f"{fig['transistors']} transistors"
            + (" (cached)" if fig["cached"] else f" ({time.perf_counter() - t:.0f} s)"))
        out[name] = {k: fig[k] for k in ("cells", "flip_flops", "transistors", "verilog_sha256")}
    return out


def area_payoff(bits: Iterable[int], area_rows: int, area_cols: int, work: Path,
                log: Log = _log_default) -> dict[str, Any]:
    """MAC ratios and requantizer shares (see the module docstring), with the figures."""
    import rtl.tiled.chip as chip_mod

    requant = tuple(getattr(chip_mod, "REQUANT_BLOCKS", ("drain",)))
    rows, cols = AREA_ARRAY
    per_mac: dict[int, float] = {}
    shares: dict[str, float] = {}
    detail: dict[str, dict[str, Any]] = {}
    for k in bits:
        base = chip_params(model_image(AREA_MODEL, k), k, rows, cols)
        small = dataclasses.replace(base, rows=area_rows, cols=area_cols)
        mac = block_areas(small, ("mac",), work, log)["mac"]
        units = area_rows * area_cols
        per_mac[k] = mac["transistors"] / units
        req = block_areas(base, requant, work, log)
        req_t = sum(f["transistors"] for f in req.values())
        shares[str(k)] = requant_share(req_t, mac["transistors"], units, rows, cols)
        detail[str(k)] = {"mac_transistors_per_mac": per_mac[k], "mac_array_shape":
                          [area_rows, area_cols], "requant_transistors": req_t,
                          "requant_blocks": {n: f["transistors"] for n, f in req.items()},
                          "acc_width": base.acc_width, "max_kernel": base.max_kernel,
                          "max_in_channels": base.max_in_channels}
    return {"mac_area_ratio_16_to_2": ratio(per_mac, 16, 2),
            "mac_area_ratio_16_to_4": ratio(per_mac, 16, 4),
            "requant_share_of_array": shares, "requant_blocks": list(requant),
            "area_detail": detail}


def simulate(image: ModelImage, params: TiledParams, *, images: int, sim: str, work: Path,
             log: Log = _log_default, seed: int = 1) -> dict[str, Any]:
    """Run ``images`` random inputs of ``image`` on the tiled chip of ``params``; every layer
    compared ``==`` with the integer reference. Returns cycles per image and exactness."""
    from cosim import chip_tb
    from cosim.chip_model import random_inputs
    from cosim.flow import generate_chip
    from gen import tiled_compiler
    from golden.reference import run as reference_run

    hw_dir = generate_chip(dataclasses.asdict(params), log, block="tiled_chip")
    hw, config_hash = tiled_compiler.load_hardware(hw_dir)
    program = tiled_compiler.compile_tiled(image, hw, config_hash=config_hash)
    xs = random_inputs(seed, image, images)
    expected = [reference_run(image, x) for x in xs]
    t = time.perf_counter()
    res = chip_tb.run_chip(program, hw_dir, xs, expected, sim=sim, work=work / hw_dir.name,
                           waves_on_mismatch=False)
    cycles = [r["cycles"] for r in res.records if r]
    exact = sum(m is None for m in res.per_image)
    entry = {"k": params.wbits, "rows": params.rows, "cols": params.cols, "images": len(xs),
             "bit_exact_images": exact, "cycles": sum(cycles) / len(cycles) if cycles else None,
             "sim": sim, "seconds": round(time.perf_counter() - t, 1), "hw_dir": str(hw_dir)}
    log(f"payoff sim k={params.wbits} {params.rows}x{params.cols}: {entry['cycles']} cycles "
        f"per image, {exact}/{len(xs)} bit-exact ({entry['seconds']} s)")
    return entry


def speedup_payoff(models: Iterable[str], mac_ratio_16_to_4: float, *, images: int, sim: str,
                   work: Path, log: Log = _log_default,
                   sim_k4: str | None = None) -> dict[str, dict[str, Any]]:
    """Per model: the 16-bit chip on its array, the 4-bit chip on the iso-area shape; both
    simulated (the 4-bit one on ``sim_k4`` if given: cycles do not depend on the simulator,
    and Icarus compiles a 32x32 array in seconds where Verilator's C++ build takes an hour).
    ``None`` speed-up for a model that is not bit-exact."""
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        _, (rows, cols) = PAYOFF_MODELS[model]
        img16, img4 = model_image(model, 16), model_image(model, 4)
        budget = int(mac_ratio_16_to_4 * rows * cols)
        r4, c4 = iso_area_shape(budget, layer_shapes(img4))
        slow = simulate(img16, chip_params(img16, 16, rows, cols), images=images, sim=sim,
                        work=work, log=log)
        fast = simulate(img4, chip_params(img4, 4, r4, c4), images=images,
                        sim=sim_k4 or sim, work=work, log=log)
        exact = all(e["bit_exact_images"] == e["images"] for e in (slow, fast))
        out[model] = {"speedup": slow["cycles"] / fast["cycles"] if exact else None,
                      "mac_budget": budget, "k16": slow, "k4": fast,
                      "input_shape": list(PAYOFF_MODELS[model][0])}
    return out


def payoff_section(cfg: ReportConfig, log: Log = _log_default) -> dict[str, Any]:
    """The payoff object (stable keys; ``fpga`` is filled by the FPGA section)."""
    work = cfg.work / "payoff"
    area = area_payoff(cfg.payoff_bits, cfg.payoff_area_rows, cfg.payoff_area_cols, work, log)
    r4 = area["mac_area_ratio_16_to_4"]
    iso: dict[str, dict[str, Any]] = {}
    if r4 is not None and cfg.payoff_models:
        iso = speedup_payoff(cfg.payoff_models, r4, images=cfg.payoff_images,
                             sim=cfg.cycles_sim, work=work, log=log)
    elif cfg.payoff_models:
        raise UserError("the iso-area speed-up needs k = 4 and 16 in --payoff-bits")
    return {"mac_area_ratio_16_to_2": area["mac_area_ratio_16_to_2"],
            "mac_area_ratio_16_to_4": r4,
            "requant_share_of_array": area["requant_share_of_array"],
            "iso_area_speedup_16_to_4": {m: e["speedup"] for m, e in iso.items()},
            "fpga": None,
            "detail": {"area": area["area_detail"], "requant_blocks": area["requant_blocks"],
                       "iso_area": iso},
            "paper": PAPER_PAYOFF}
