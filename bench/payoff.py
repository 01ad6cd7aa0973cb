"""PACT's payoff on the tiled chip, measured: ``report.payoff`` and ``report.fpga``.

    python bench/payoff.py [--sections payoff,fpga] [--payoff-area 16x16] [--images 2]

Writes (merges into) ``bench/results/payoff.json``: the ``payoff`` object of ``report.json``
(MAC area ratios 16->2 and 16->4, the requantizer's share of the array, the iso-area speed-up
16->4 per model, the ECP5 figures per k) with the time each part took, the machine's load
average and the paper's figures beside. Every figure is measured here (syntheses and
simulations are cached by content: a warm re-run takes seconds).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report.build import build_report  # noqa: E402
from report.config import ReportConfig, parse_shape  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "payoff.json"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="payoff,fpga")
    ap.add_argument("--payoff-area", default="16x16")
    ap.add_argument("--models", default="resnet20,cnn")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--payoff-bits", default="2,4,8,16")
    ap.add_argument("--fpga-bits", default="2,4,8,16")
    ap.add_argument("--no-route", action="store_true", help="FPGA: Fmax after placement")
    args = ap.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    cfg = ReportConfig(sections=sections, payoff_area=parse_shape("payoff-area",
                                                                  args.payoff_area),
                       payoff_models=[m for m in args.models.split(",") if m],
                       payoff_images=args.images,
                       payoff_bits=[int(k) for k in args.payoff_bits.split(",")],
                       fpga_bits=[int(k) for k in args.fpga_bits.split(",")],
                       fpga_route=not args.no_route)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    rep = build_report(cfg, lambda m: print(f"payoff: {m}", file=sys.stderr, flush=True))
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    payoff = dict(old.get("payoff") or {})
    new = rep["payoff"] or {}
    if "payoff" in sections:
        iso = dict(payoff.get("iso_area_speedup_16_to_4") or {})
        iso_detail = dict(((payoff.get("detail") or {}).get("iso_area")) or {})
        payoff.update({k: v for k, v in new.items() if k != "fpga"})
        payoff["iso_area_speedup_16_to_4"] = {**iso, **new["iso_area_speedup_16_to_4"]}
        payoff["detail"]["iso_area"] = {**iso_detail, **new["detail"]["iso_area"]}
    if "fpga" in sections:
        payoff["fpga"] = new.get("fpga")
    times = dict(old.get("times") or {})
    times.update({k: v for k, v in rep["times"].items() if k != "total_s"})
    loads = dict(old.get("load_average") or {})
    loads.update({s: round(load, 2) for s in sections})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"payoff": payoff, "times": times, "load_average": loads,
                               "cpus": os.cpu_count(), "settings": rep["settings"]},
                              indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({time.perf_counter() - t:.0f} s)")
    print(json.dumps({k: v for k, v in payoff.items() if k != "detail"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
