"""Stream driver for the Amaranth-simulator tests of the stream blocks (no tests here).

Used by tests/test_mac_array.py and tests/test_pact_unit.py.
"""

import random

from amaranth.sim import Simulator


def run_stream(dut, beats, *, n_results=None, unpack=None, bubbles=0.0, backpressure=0.0,
               seed=0):
    """Drive ``beats`` into ``dut.i`` and collect ``n_results`` payloads from ``dut.o``.

    The producer inserts a bubble before each beat with probability ``bubbles``; the consumer
    drops ``ready`` with probability ``backpressure`` each cycle. ``n_results`` defaults to one
    result per beat; ``unpack`` (default: keep as sampled) is applied to each payload.

    Returns ``(results, accept_cycles, result_cycles)``: the payloads, the cycle of each
    accepted input beat and of each accepted output.
    """
    if n_results is None:
        n_results = len(beats)
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
        while len(results) < n_results:
            ready = prng.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                results.append(payload if unpack is None else unpack(payload))
                emitted.append(cycle[0] - 1)
        ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(clock)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return results, accepted, emitted
