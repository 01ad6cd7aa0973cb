# amaranth: UnusedElaboratable=no
"""Gearbox: the beats are the words' bitstream cut anew, under random valid/ready."""

import random

import pytest
from amaranth.sim import Simulator

from rtl.gearbox import Gearbox


def run(dut, words, n_beats, *, bubbles, backpressure, seed, clear_after=None):
    rng = random.Random(seed)
    beats, cycle, sent = [], [0], []

    async def producer(ctx):
        for k, word in enumerate(words):
            if clear_after is not None and k == clear_after:
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
            while rng.random() < bubbles:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, word)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
        sent.append(True)

    async def consumer(ctx):
        crng = random.Random(seed + 1)
        while len(beats) < n_beats or not sent:
            ready = len(beats) < n_beats and crng.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycle[0] += 1
            assert cycle[0] < 20 * (len(words) + n_beats) + 100, "stuck"
            if ready and valid:
                beats.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return beats


def expected(words, iw, ow):
    stream = sum(w << (k * iw) for k, w in enumerate(words))
    return [(stream >> (b * ow)) & ((1 << ow) - 1) for b in range(len(words) * iw // ow)]


@pytest.mark.parametrize("iw, ow", [(64, 32), (32, 64), (64, 24), (16, 7), (8, 8), (5, 64)])
def test_beats_are_the_bitstream(iw, ow):
    rng = random.Random(iw * 100 + ow)
    words = [rng.getrandbits(iw) for _ in range(40)]
    want = expected(words, iw, ow)
    got = run(Gearbox(iw, ow), words, len(want), bubbles=0.3, backpressure=0.3, seed=iw + ow)
    assert got == want


def test_full_rate_without_stalls():
    words = list(range(1, 33))
    dut = Gearbox(32, 32)
    got = run(dut, words, 32, bubbles=0.0, backpressure=0.0, seed=0)
    assert got == words


def test_clear_drops_the_partial_beat():
    # 3 words of 8 bits into 16-bit beats: the third word's 8 bits are dropped by clear,
    # and the stream restarts at the fourth word.
    words = [0x11, 0x22, 0x33, 0x44, 0x55]
    got = run(Gearbox(8, 16), words, 2, bubbles=0.0, backpressure=0.0, seed=0, clear_after=3)
    assert got == [0x2211, 0x5544]


def test_a_wrong_expectation_fails():
    words = [1, 2, 3, 4]
    got = run(Gearbox(8, 16), words, 2, bubbles=0.0, backpressure=0.0, seed=0)
    assert got != expected(words[::-1], 8, 16)


@pytest.mark.parametrize("iw, ow", [(0, 8), (8, 0), (8.0, 8)])
def test_bad_widths(iw, ow):
    with pytest.raises(ValueError):
        Gearbox(iw, ow)
