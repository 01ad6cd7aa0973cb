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
    ap.add_argument("--ratio", type=float, default=None,
                    help="with --iso-only: the 16->4 MAC area ratio (default: the file's)")
    ap.add_argument("--iso-only", action="store_true",
                    help="only the iso-area simulations of --models, with the 16->4 MAC ratio "
                         "already in the results file (to add a model to an earlier run)")
    ap.add_argument("--sim", default="verilator",
                    help="simulator of the iso-area runs (cycles do not depend on it; Icarus "
                         "compiles a 32x32 chip in seconds where Verilator's C++ takes an hour)")
    ap.add_argument("--sim-k4", default=None,
                    help="with --iso-only: another simulator for the wide 4-bit chip only")
    args = ap.parse_args(argv)
    if args.sim_k4 and not args.iso_only:
        ap.error("--sim-k4 applies to --iso-only runs")
    sections = [s for s in args.sections.split(",") if s]
    cfg = ReportConfig(sections=sections, payoff_area=parse_shape("payoff-area",
                                                                  args.payoff_area),
                       payoff_models=[m for m in args.models.split(",") if m],
                       payoff_images=args.images,
                       payoff_bits=[int(k) for k in args.payoff_bits.split(",")],
                       fpga_bits=[int(k) for k in args.fpga_bits.split(",")],
                       fpga_route=not args.no_route, cycles_sim=args.sim)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    log = lambda m: print(f"payoff: {m}", file=sys.stderr, flush=True)  # noqa: E731
    if args.iso_only:
        from report.payoff import speedup_payoff

        prev = old.get("payoff") or {"detail": {}}
        iso = speedup_payoff(cfg.payoff_models, args.ratio or prev["mac_area_ratio_16_to_4"],
                             images=cfg.payoff_images, sim=cfg.cycles_sim,
                             work=cfg.work / "payoff", log=log, sim_k4=args.sim_k4)
        rep = {"payoff": {**prev, "iso_area_speedup_16_to_4": {m: e["speedup"]
                                                                for m, e in iso.items()},
                          "detail": {**prev["detail"], "iso_area": iso}},
               "times": {f"iso_{'_'.join(cfg.payoff_models)}_s":
                         round(time.perf_counter() - t, 2)},
               "settings": old.get("settings")}
    else:
        rep = build_report(cfg, log)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}   # another run may have written
    payoff = dict(old.get("payoff") or {})
    new = rep["payoff"] or {}
    if "payoff" in sections:
        iso = dict(payoff.get("iso_area_speedup_16_to_4") or {})
        old_detail = dict(payoff.get("detail") or {})
        iso_detail = dict(old_detail.get("iso_area") or {})
        if args.iso_only:   # only the iso-area figures are new
            new = {k: new[k] for k in ("iso_area_speedup_16_to_4", "detail")}
        payoff.update({k: v for k, v in new.items() if k != "fpga"})
        payoff["iso_area_speedup_16_to_4"] = {**iso, **new["iso_area_speedup_16_to_4"]}
        payoff["detail"] = {**old_detail, **({} if args.iso_only else new["detail"]),
                            "iso_area": {**iso_detail, **new["detail"]["iso_area"]}}
    if "fpga" in sections and not args.iso_only:
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
