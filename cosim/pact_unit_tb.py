"""cocotb bench of the generated PactUnit (module ``pact_pact_unit``).

Driver (random bubbles) -> DUT -> monitor (random back-pressure) -> in-order checker against
``golden.integer.requantize`` (``cosim.stimulus.pact_expected``), compared with ``==``.
Stimulus: the corner lanes of ``cosim.stimulus.pact_corner_lanes`` (rounding ties and their
neighbours at several shifts, clamping at 0 and 2**k - 1 or at the signed limits, extreme
multipliers, offsets and accumulators) spread over the lanes, then ``vectors`` random beats.

Config (``PACT_TB_CONFIG``): ``params`` (acc_width, out_bits, lanes, signed_out, ...),
``vectors``, ``seed``, ``bubbles``, ``backpressure``, ``inject_error``.
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
from cosim.stimulus import pack, pact_beats, pact_expected, unpack
from rtl.pact_unit import input_layout, output_layout


@cocotb.test()
async def pact_unit_regression(dut):
    cfg = load_config()
    p = cfg["params"]
    acc_width, out_bits, lanes = p["acc_width"], p["out_bits"], p["lanes"]
    signed_out = bool(p["signed_out"])
    in_layout = input_layout(acc_width, lanes)
    out_layout = output_layout(out_bits, lanes, signed_out)
    assert len(dut.i__payload) == in_layout.size, "generated RTL does not match the params"
    assert len(dut.o__payload) == out_layout.size, "generated RTL does not match the params"

    beats = pact_beats(cfg["seed"], cfg["vectors"], acc_width, out_bits, lanes, signed_out)
    expected = [pact_expected(b, out_bits, signed_out) for b in beats]
    if cfg.get("inject_error"):
        expected[len(expected) // 2][0] ^= 1  # a wrong golden value: the checker must fail
    words = [pack(in_layout, b) for b in beats]

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
    summary = summarize("pact_unit", cfg, checker, cycles, wall, beats=len(words))
    write_summary(summary)
    assert mismatches == 0, f"{mismatches} mismatches; first: {checker.first}"
