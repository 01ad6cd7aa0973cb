# amaranth: UnusedElaboratable=no
"""PactUnit in Amaranth's simulator: exact requantization against golden.integer, rounding ties,
clamping, bubbles, back-pressure, and the 3-cycle pipeline at one beat per cycle."""

import random

import pytest
from amaranth.sim import Simulator

from cosim.stimulus import pact_beats, pact_expected
from golden.integer import LOGIT_BITS
from rtl.pact_unit import LATENCY, PactUnit


def run_stream(dut, beats, *, bubbles=0.0, backpressure=0.0, seed=0):
    """Drive ``beats`` into ``dut.i``; return ``(results, accept_cycles, result_cycles)``."""
    rng = random.Random(seed)
    results, accepted, emitted = [], [], []
    cycle = [0]

    async def clock(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def producer(ctx):
        for beat in beats:
            while rng.random() < bubbles:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, beat)
            await ctx.tick().until(dut.i.ready)
            accepted.append(cycle[0] - 1)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        prng = random.Random(seed + 1)
        while len(results) < len(beats):
            ready = prng.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                results.append([int(x) for x in payload])
                emitted.append(cycle[0] - 1)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(clock)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return results, accepted, emitted


@pytest.mark.parametrize("acc_width, out_bits, lanes, signed_out", [
    (5, 2, 2, False),   # (2, 2) codes, reduction 1
    (14, 4, 3, False),
    (27, 8, 2, False),
    (22, 2, 1, False),  # (8, 2)
    (27, LOGIT_BITS, 2, True),  # logits layer
    (40, 16, 1, False),
])
def test_corner_and_random_beats(acc_width, out_bits, lanes, signed_out):
    dut = PactUnit(acc_width=acc_width, out_bits=out_bits, lanes=lanes, signed_out=signed_out)
    beats = pact_beats(acc_width, 60, acc_width, out_bits, lanes, signed_out)
    results, _, _ = run_stream(dut, beats, bubbles=0.3, backpressure=0.3, seed=acc_width)
    for beat, got in zip(beats, results, strict=True):
        assert got == pact_expected(beat, out_bits, signed_out), beat


def test_rounding_ties_go_up():
    dut = PactUnit(acc_width=8, out_bits=4, lanes=4)
    # M*acc + B = 5, 7, -5 and 3 with S = 1 and 2: 2.5 -> 3, 1.75 -> 2, -1.25 -> 0, 0.75 -> 1
    beat = {"acc": [5, 7, -5, 3], "mult": [1, 1, 1, 1], "offset": [0, 0, 0, 0],
            "shift": [1, 2, 2, 2]}
    results, _, _ = run_stream(dut, [beat])
    assert results == [[3, 2, 0, 1]] == [pact_expected(beat, 4)]


def test_full_rate_and_latency():
    dut = PactUnit(acc_width=10, out_bits=4, lanes=2)
    beats = pact_beats(1, 40, 10, 4, 2)
    _, accepted, emitted = run_stream(dut, beats)
    assert accepted == list(range(accepted[0], accepted[0] + len(beats)))
    assert emitted == [t + LATENCY for t in accepted]


@pytest.mark.parametrize("kwargs, name", [
    ({"acc_width": 1}, "acc_width"), ({"acc_width": 65}, "acc_width"),
    ({"out_bits": 1}, "out_bits"), ({"out_bits": 33}, "out_bits"), ({"lanes": 0}, "lanes"),
])
def test_bad_parameters_name_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PactUnit(**({"acc_width": 12, "out_bits": 4} | kwargs))


def test_non_integer_parameter():
    with pytest.raises(TypeError, match="out_bits"):
        PactUnit(acc_width=12, out_bits="4")
