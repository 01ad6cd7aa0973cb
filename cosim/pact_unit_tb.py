"""cocotb bench of the generated PactUnit (module ``pact_pact_unit``).

Driver (random bubbles) -> DUT -> monitor (random back-pressure) -> in-order checker against
``golden.integer.requantize`` (``cosim.stimulus.pact_expected``), compared with ``==``.
Stimulus: the corner lanes of ``cosim.stimulus.pact_corner_lanes`` (rounding ties and their
neighbours at several shifts, clamping at 0 and 2**k - 1 or at the signed limits, extreme
multipliers, offsets and accumulators) spread over the lanes, then ``vectors`` random beats.

Config (``PACT_TB_CONFIG``): ``params`` (acc_width, out_bits, lanes, signed_out, ...),
``vectors``, ``seed``, ``bubbles``, ``backpressure``, ``inject_error``.
"""

from typing import Any

import cocotb

from cosim.bench import TB, InOrderChecker, load_config, run_stream_bench, summarize, write_summary
from cosim.stimulus import pack, pact_beats, pact_expected, unpack
from rtl.pact_unit import input_layout, output_layout


@cocotb.test()
async def pact_unit_regression(dut: Any) -> None:
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
    _, cycles, wall = await run_stream_bench(tb, cfg, words, checker)
    mismatches = checker.finish()
    summary = summarize("pact_unit", cfg, checker, cycles, wall, beats=len(words))
    write_summary(summary)
    assert mismatches == 0, f"{mismatches} mismatches; first: {checker.first}"
