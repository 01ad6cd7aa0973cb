"""Assembling a report from its sections, and ``pact report`` itself (``run``)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

from pact.paths import check_output
from report.accuracy import accuracy_section
from report.area import area_section
from report.config import (
    PAPER,
    REPORT_FORMAT,
    REPORT_VERSION,
    Log,
    ReportConfig,
    _log_default,
    config_from_args,
)
from report.cycles import cycles_section, iso_area_section, speedup
from report.fpga import fpga_section
from report.payoff import payoff_section
from report.render import headline, write_report
from report.sim_speed import sim_speed_section


def build_report(cfg: ReportConfig, log: Log = _log_default) -> dict[str, Any]:
    """Run the configured sections; returns the report dict (see the package docstring)."""
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "settings": cfg.as_dict(), "paper": PAPER,
        "area": None, "cycles": None, "bytes": None, "cycles_iso_area": None,
        "speedup_16_to_4": None,
        "accuracy": None, "sim_speed": None, "times": {},
        **({"payoff": None} if {"payoff", "fpga"} & set(cfg.sections) else {}),
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
    if "payoff" in cfg.sections:
        t = time.perf_counter()
        report["payoff"] = payoff_section(cfg, log)
        report["times"]["payoff_s"] = round(time.perf_counter() - t, 2)
    if "fpga" in cfg.sections:
        t = time.perf_counter()
        report["payoff"] = report["payoff"] or {"fpga": None}
        report["payoff"]["fpga"] = fpga_section(cfg, log=log)
        report["times"]["fpga_s"] = round(time.perf_counter() - t, 2)
    report["times"]["total_s"] = round(time.perf_counter() - start, 2)
    return report


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = check_output(args.out, "--out", folder=True)
    log: Log = (lambda msg: None) if args.quiet else _log_default
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
