"""cocotb bench of the generated MacArray (module ``pact_mac_array``).

Driver (random bubbles) -> DUT -> monitor (random back-pressure) -> in-order checker against
``golden.integer`` sums (``cosim.stimulus.mac_expected``), compared with ``==``. Stimulus: the
corner cases of ``cosim.stimulus.mac_corner_reductions`` (the accumulator bound both ways with
all-maximum codes and the most negative/positive weights, zeros, single-beat reductions) and
``vectors`` random reductions.

Config (``PACT_TB_CONFIG``): ``params`` (wbits, abits, rows, cols, max_reduction, max_shift),
``vectors``, ``seed``, ``bubbles``, ``backpressure``, ``inject_error`` (the checker must then
fail), ``random_only`` (skip the corner cases, for throughput runs), ``min_len``/``max_len``
(random reduction lengths, default 1..16).
"""

from collections.abc import Mapping
from typing import Any

import cocotb
import numpy as np

from cosim.bench import TB, InOrderChecker, load_config, run_stream_bench, summarize, write_summary
from cosim.stimulus import (
    Reduction,
    mac_beats,
    mac_corner_reductions,
    mac_expected,
    mac_random_reductions,
    pack,
    unpack,
)
from rtl.mac_array import accumulator_width, input_layout, output_layout


def reductions(cfg: Mapping[str, Any]) -> list[Reduction]:
    p = cfg["params"]
    dims = (p["wbits"], p["abits"], p["rows"], p["cols"], p["max_reduction"], p["max_shift"])
    rng = np.random.default_rng(cfg["seed"])
    corner = [] if cfg.get("random_only") else mac_corner_reductions(*dims)
    return corner + mac_random_reductions(rng, cfg["vectors"], *dims,
                                          max_len=cfg.get("max_len", 16),
                                          min_len=cfg.get("min_len", 1))


@cocotb.test()
async def mac_array_regression(dut: Any) -> None:
    cfg = load_config()
    p = cfg["params"]
    acc_width = accumulator_width(p["wbits"], p["abits"], p["max_reduction"], p["max_shift"])
    in_layout = input_layout(p["wbits"], p["abits"], p["rows"], p["cols"], p["max_shift"])
    out_layout = output_layout(acc_width, p["rows"], p["cols"])
    assert len(dut.o__payload) == out_layout.size, "generated RTL does not match the params"

    reds = reductions(cfg)
    expected = [mac_expected(r["w"], r["a"], r["shift"], p["wbits"]).tolist() for r in reds]
    if cfg.get("inject_error"):
        expected[len(expected) // 2][0][0] += 1  # a wrong golden value: the checker must fail
    words = [pack(in_layout, beat) for r in reds for beat in mac_beats(r)]

    tb = TB(dut)
    checker = InOrderChecker(expected, lambda raw: unpack(out_layout, raw))
    first_result: list[int] = []

    def sink(raw: int, cycle: int) -> None:
        if not first_result:
            first_result.append(cycle)
        checker(raw, cycle)

    driver, cycles, wall = await run_stream_bench(tb, cfg, words, checker, sink=sink)
    mismatches = checker.finish()
    summary = summarize("mac_array", cfg, checker, cycles, wall, beats=len(words),
                        macs=len(words) * p["rows"] * p["cols"], acc_width=acc_width)
    # Steady state: from the first to the last accepted beat, and first to last result.
    # (the cycles are set once a word was accepted and once a result came in)
    first, last = driver.first_cycle, driver.last_cycle
    span = last - first if driver.sent > 1 and first is not None and last is not None else 0
    beats_per_cycle = (driver.sent - 1) / span if span else 0.0
    out_last = checker.last_cycle
    out_span = (out_last - first_result[0]) if first_result and out_last is not None else 0
    summary["beats_per_cycle"] = round(beats_per_cycle, 6)
    summary["macs_per_cycle"] = round(beats_per_cycle * p["rows"] * p["cols"], 6)
    summary["results_per_cycle"] = round((checker.checked - 1) / out_span, 6) if out_span else 0.0
    summary["peak_macs_per_cycle"] = p["rows"] * p["cols"]
    write_summary(summary)
    assert mismatches == 0, f"{mismatches} mismatches; first: {checker.first}"
