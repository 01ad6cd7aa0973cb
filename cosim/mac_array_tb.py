"""cocotb bench of the generated MacArray (module ``pact_mac_array``).

Driver (random bubbles) -> DUT -> monitor (random back-pressure) -> in-order checker against
``golden.integer`` sums (``cosim.stimulus.mac_expected``), compared with ``==``. Stimulus: the
corner cases of ``cosim.stimulus.mac_corner_reductions`` (the accumulator bound both ways with
all-maximum codes and the most negative/positive weights, zeros, single-beat reductions) and
``vectors`` random reductions.

Config (``PACT_TB_CONFIG``): ``params`` (wbits, abits, rows, cols, max_reduction, max_shift),
``vectors``, ``seed``, ``bubbles``, ``backpressure``, ``inject_error`` (the checker must then
fail), ``random_only`` (skip the corner cases, for throughput runs), ``max_len``.
"""

import time

import cocotb

from cosim.bench import (
    TB,
    InOrderChecker,
    StreamDriver,
    StreamMonitor,
    load_config,
    rngs,
    run_until_checked,
    summarize,
    write_summary,
)
from cosim.stimulus import (
    mac_beats,
    mac_corner_reductions,
    mac_expected,
    mac_random_reductions,
    pack,
    unpack,
)
from rtl.mac_array import accumulator_width, input_layout, output_layout


def reductions(cfg):
    import numpy as np

    p = cfg["params"]
    dims = (p["wbits"], p["abits"], p["rows"], p["cols"], p["max_reduction"], p["max_shift"])
    rng = np.random.default_rng(cfg["seed"])
    corner = [] if cfg.get("random_only") else mac_corner_reductions(*dims)
    return corner + mac_random_reductions(rng, cfg["vectors"], *dims,
                                          max_len=cfg.get("max_len", 16))


@cocotb.test()
async def mac_array_regression(dut):
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
    drv_rng, mon_rng = rngs(cfg["seed"])
    driver = StreamDriver(dut, "i", rng=drv_rng, bubbles=cfg.get("bubbles", 0.0))
    monitor = StreamMonitor(dut, "o", tb, checker, rng=mon_rng,
                            backpressure=cfg.get("backpressure", 0.0))
    await tb.reset()
    wall = time.perf_counter()
    start = tb.cycle
    driver.send(words)
    cocotb.start_soon(driver.run())
    cocotb.start_soon(monitor.run())
    await run_until_checked(tb, checker, max_cycles=20 * len(words) + 1000)
    mismatches = checker.finish()
    cycles = (checker.last_cycle or tb.cycle) - start
    summary = summarize("mac_array", cfg, checker, tb, start, wall, beats=len(words),
                        macs=len(words) * p["rows"] * p["cols"], acc_width=acc_width)
    summary["cycles"] = cycles
    summary["beats_per_cycle"] = round(driver.sent / cycles, 6) if cycles else 0.0
    summary["macs_per_cycle"] = round(driver.sent * p["rows"] * p["cols"] / cycles, 6) \
        if cycles else 0.0
    write_summary(summary)
    assert mismatches == 0, f"{mismatches} mismatches; first: {checker.first}"
