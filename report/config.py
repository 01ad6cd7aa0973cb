"""The report's configuration: what a sweep measures, its defaults and the paper's claims,
and the ``pact report`` arguments that make one (``ReportConfig``, ``add_arguments``,
``config_from_args``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from pact.errors import UserError
from pact.paths import runs_root, sim_build_root

ALL_SECTIONS = ("area", "cycles", "accuracy", "sim_speed")
#: Sections run only when named in --sections (each takes many minutes cold).
EXTRA_SECTIONS = ("payoff", "fpga")
SECTIONS = ALL_SECTIONS + EXTRA_SECTIONS
DEFAULT_FPGA_BITS = (2, 4, 8, 16)
DEFAULT_PAYOFF_BITS = (2, 4, 8, 16)
PAYOFF_MODEL_NAMES = ("resnet20", "cnn")
DEFAULT_BITS = (2, 3, 4, 5, 8, 16)
DEFAULT_CHIP_BITS = (2, 4, 8, 16)
SIMS = ("icarus", "verilator")
#: Trainable bit-widths (golden.models.BITS_RANGE): accuracy is reported for these only.
TRAIN_BITS = (2, 8)
END_BITS = 8
REPORT_FORMAT = "pact-report"
REPORT_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent

#: The paper's hardware claims (Choi et al., arXiv 1805.06085), shown next to our figures.
PAPER = {
    "mac_area_ratio_16_to_2": 14.0,
    "speedup_16_to_4": 4.5,
    "source": "Choi et al., PACT, arXiv 1805.06085: ~14x MACs per area 16->2 bits (14 nm); "
              "up to 4.5x faster 16->4 bits in a memory-bandwidth-limited systolic accelerator",
}

#: Clock sources of the speed section (cosim.sim_speed.MODES).
SPEED_MODES = ("hdl_clock", "gpi_clock", "python_clock")

#: Default images per speed run, by --quick and simulator.
SPEED_IMAGES = {False: {"icarus": 2, "verilator": 32}, True: {"icarus": 1, "verilator": 2}}

PLOTS = ("area.png", "cycles_bytes.png", "accuracy.png", "sim_speed.png")

#: Where a section's progress lines go (``_log_default``, or a quiet no-op).
Log = Callable[[str], object]


def _parse_list(name: str, text: object, allowed: Collection[Any] | None = None,
                cast: Callable[[str], Any] = int) -> list[Any]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UserError(f"--{name} is empty; give a comma-separated list")
    out: list[Any] = []
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

    def __init__(self, *, bits: Sequence[int] = DEFAULT_BITS,
                 chip_bits: Sequence[int] = DEFAULT_CHIP_BITS, seeds: int = 3,
                 quick: bool = False, sections: Sequence[str] = ALL_SECTIONS,
                 sims: Sequence[str] = SIMS, cycles_sim: str = "verilator", rows: int = 8,
                 cols: int = 8, mem_width: int = 64, images: int | None = None,
                 area_rows: int | None = None, area_cols: int | None = None,
                 max_reduction: int | None = None, epochs: int | None = None,
                 speed_bits: int = 4, speed_images: int | None = None,
                 runs: str | os.PathLike[str] = "runs", work: str | os.PathLike[str] | None = None,
                 scheduler: str | None = None, workers: int | None = None,
                 payoff_bits: Sequence[int] = DEFAULT_PAYOFF_BITS,
                 payoff_area: Sequence[int] = (16, 16),
                 payoff_models: Sequence[str] = PAYOFF_MODEL_NAMES,
                 payoff_images: int | None = None, fpga_bits: Sequence[int] = DEFAULT_FPGA_BITS,
                 fpga_freq: int = 50, fpga_route: bool = True) -> None:
        for k in bits:
            if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 16:
                raise UserError(f"--bits: {k!r} is outside 2..16")
        for name, v, lo, hi in (("seeds", seeds, 1, 20), ("rows", rows, 1, 64),
                                ("cols", cols, 1, 64), ("speed-bits", speed_bits, 2, 16)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise UserError(f"--{name} must be an integer in {lo}..{hi}, not {v!r}")
        if mem_width not in (16, 32, 64, 128, 256, 512, 1024):
            raise UserError(f"--mem-width must be a power of two in 16..1024, not {mem_width!r}")
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown or not sections:
            raise UserError(f"--sections: choose from {', '.join(SECTIONS)}, not {unknown}")
        for name, ks in (("payoff-bits", payoff_bits), ("fpga-bits", fpga_bits)):
            if any(isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 16
                   for k in ks):
                raise UserError(f"--{name}: every k must be in 2..16, not {list(ks)}")
        bad = [m for m in payoff_models if m not in PAYOFF_MODEL_NAMES]
        if bad:
            raise UserError(f"--payoff-models: choose from {', '.join(PAYOFF_MODEL_NAMES)}, "
                            f"not {bad[0]!r}")
        if len(payoff_area) != 2 or not 1 <= payoff_area[0] <= 64 or payoff_area[1] not in (
                2, 4, 8, 16, 32, 64):
            raise UserError(f"--payoff-area must be RxC, rows 1..64 and cols a power of two "
                            f"2..64, not {payoff_area!r}")
        if isinstance(fpga_freq, bool) or not isinstance(fpga_freq, int) or not 1 <= fpga_freq:
            raise UserError(f"--fpga-freq must be a positive integer (MHz), not {fpga_freq!r}")
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
        self.payoff_bits, self.fpga_bits = sorted(payoff_bits), sorted(fpga_bits)
        self.payoff_area_rows, self.payoff_area_cols = payoff_area
        self.payoff_models, self.fpga_freq = list(payoff_models), fpga_freq
        self.fpga_route = bool(fpga_route)
        self.payoff_images = payoff_images if payoff_images is not None else (1 if quick else 2)
        for name in ("images", "area_rows", "area_cols", "max_reduction", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, "
                                f"not {v!r}")

    def speed_images_for(self, sim: str) -> int:
        """Images per speed run: ``--speed-images``, else enough cycles for a stable figure on
        that simulator (Icarus runs this chip at about a thousand cycles per second)."""
        if self.speed_images is not None:
            return self.speed_images
        return SPEED_IMAGES[self.quick][sim]

    @property
    def accuracy_bits(self) -> list[int]:
        lo, hi = TRAIN_BITS
        return [k for k in self.bits if lo <= k <= hi]

    def command(self, out: str = "DIR") -> str:
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
        if "payoff" in self.sections:
            if self.payoff_bits != list(DEFAULT_PAYOFF_BITS):
                parts += ["--payoff-bits", ",".join(map(str, self.payoff_bits))]
            if (self.payoff_area_rows, self.payoff_area_cols) != (16, 16):
                parts += ["--payoff-area", f"{self.payoff_area_rows}x{self.payoff_area_cols}"]
            if self.payoff_models != list(PAYOFF_MODEL_NAMES):
                parts += ["--payoff-models", ",".join(self.payoff_models)]
        if "fpga" in self.sections and self.fpga_bits != list(DEFAULT_FPGA_BITS):
            parts += ["--fpga-bits", ",".join(map(str, self.fpga_bits))]
        if "fpga" in self.sections and not self.fpga_route:
            parts.append("--fpga-no-route")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
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
            **({"payoff_bits": self.payoff_bits, "payoff_area": [self.payoff_area_rows,
                                                                 self.payoff_area_cols],
                "payoff_models": self.payoff_models, "payoff_images": self.payoff_images}
               if "payoff" in self.sections else {}),
            **({"fpga_bits": self.fpga_bits, "fpga_freq": self.fpga_freq,
                "fpga_route": self.fpga_route}
               if "fpga" in self.sections else {}),
        }


def _log_default(msg: str) -> None:
    print(f"pact report: {msg}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced sweep: 1x1 area arrays, 1 image, 3 epochs, 1 speed image")
    parser.add_argument("--bits", default=",".join(map(str, DEFAULT_BITS)),
                        help="bit-widths k (2..16; default 2,3,4,5,8,16)")
    parser.add_argument("--chip-bits", default=",".join(map(str, DEFAULT_CHIP_BITS)),
                        help="the k of --bits run on the chip (default 2,4,8,16)")
    parser.add_argument("--seeds", default="3", help="training seeds per k (default 3)")
    parser.add_argument("--sections", default=",".join(ALL_SECTIONS),
                        help=f"what to measure (default {','.join(ALL_SECTIONS)}; also "
                             f"{','.join(EXTRA_SECTIONS)}, which run only when named)")
    parser.add_argument("--payoff-bits", default=",".join(map(str, DEFAULT_PAYOFF_BITS)),
                        help="payoff: k of the area ratios and shares (default 2,4,8,16)")
    parser.add_argument("--payoff-area", default="16x16", metavar="RxC",
                        help="payoff: the array synthesized for the MAC area (default 16x16)")
    parser.add_argument("--payoff-models", default=",".join(PAYOFF_MODEL_NAMES),
                        help="payoff: iso-area speed-up models (default resnet20,cnn)")
    parser.add_argument("--payoff-images", default=None,
                        help="payoff: images per iso-area simulation (default 2)")
    parser.add_argument("--fpga-bits", default=",".join(map(str, DEFAULT_FPGA_BITS)),
                        help="fpga: k of the 8x8 chip on ECP5 (default 2,4,8,16)")
    parser.add_argument("--fpga-freq", default="50", help="fpga: nextpnr target MHz")
    parser.add_argument("--fpga-no-route", action="store_true",
                        help="fpga: stop after placement (Fmax is nextpnr's estimate)")
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


def config_from_args(args: argparse.Namespace) -> ReportConfig:
    from gen.generate import parse_int

    def opt(name: str) -> int | None:
        v = getattr(args, name)
        return None if v is None else parse_int(name, v, 1)

    return ReportConfig(
        bits=_parse_list("bits", args.bits), chip_bits=_parse_list("chip-bits", args.chip_bits),
        seeds=parse_int("seeds", args.seeds, 1), quick=args.quick,
        sections=_parse_list("sections", args.sections, SECTIONS, str),
        sims=_parse_list("sims", args.sims, SIMS, str), cycles_sim=args.cycles_sim,
        rows=parse_int("rows", args.rows, 1), cols=parse_int("cols", args.cols, 1),
        mem_width=parse_int("mem_width", args.mem_width, 1), images=opt("images"),
        area_rows=opt("area_rows"), area_cols=opt("area_cols"),
        max_reduction=opt("max_reduction"), epochs=opt("epochs"),
        speed_bits=parse_int("speed_bits", args.speed_bits, 1),
        speed_images=opt("speed_images"), runs=args.runs or runs_root(),
        scheduler=args.scheduler, workers=opt("workers"),
        payoff_bits=_parse_list("payoff-bits", args.payoff_bits),
        payoff_area=parse_shape("payoff-area", args.payoff_area),
        payoff_models=_parse_list("payoff-models", args.payoff_models, PAYOFF_MODEL_NAMES, str),
        payoff_images=opt("payoff_images"), fpga_bits=_parse_list("fpga-bits", args.fpga_bits),
        fpga_freq=parse_int("fpga_freq", args.fpga_freq, 1), fpga_route=not args.fpga_no_route)


def parse_shape(name: str, text: object) -> tuple[int, int]:
    """``"RxC"`` -> ``(R, C)``; ``UserError`` otherwise.

    >>> parse_shape("payoff-area", "4x8")
    (4, 8)
    """
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"--{name}: {text!r} is not ROWSxCOLS (e.g. 16x16)")
    return int(parts[0]), int(parts[1])
