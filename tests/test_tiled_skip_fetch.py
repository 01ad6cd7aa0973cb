# amaranth: UnusedElaboratable=no
"""SkipFetch: each job's skip word is the source word (stride 1) or the even lanes of a word
pair (stride 2), zero jobs give zeros, under random DMA latency, stalls and back-pressure; and
jobs made the way the sequencer makes them give ``format.py``'s skip codes."""

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from tiled_dma_model import PARAMS, DmaServer, collect

from rtl.tiled import format as tf
from rtl.tiled.skip_fetch import JOB, SkipFetch, skip_layout

EXT_BASE = 3000


def lanes(word, params):
    mask = (1 << params.abits) - 1
    return [(word >> (i * params.abits)) & mask for i in range(params.cols)]


def expected_skip(job, words, params, stride2):
    """The model: a job's skip codes from the source's activation words."""
    zero, n0, pair = job
    if zero:
        return [0] * params.cols
    a = lanes(words[n0], params)
    if not stride2:
        return a
    both = a + (lanes(words[n0 + 1], params) if pair else [0] * params.cols)
    return both[0::2]


def run(params, words, jobs, *, stride2, seed, depth=None, stall=0.3, bubbles=0.3,
        backpressure=0.3, job_bubbles=0.3, min_latency=1, max_latency=12):
    """Feed ``jobs`` (``(zero, n0, pair)``) with the source's slots at ``EXT_BASE``; returns
    the skip words (lists of codes), the DMA's requests and the cycles taken."""
    dut = SkipFetch(params, depth=depth)
    mem = {EXT_BASE + i: w for i, w in enumerate(tf.act_to_ext(words, params))}
    dma = DmaServer(dut.req, dut.rsp, mem, seed=seed, stall=stall, bubbles=bubbles,
                    min_latency=min_latency, max_latency=max_latency)
    result = {}

    async def producer(ctx):
        rng = random.Random(seed + 1)
        for zero, n0, pair in jobs:
            while rng.random() < job_bubbles:
                await ctx.tick()
            ctx.set(dut.job.valid, 1)
            ctx.set(dut.job.payload, {"zero": zero, "n0": n0, "pair": pair})
            await ctx.tick().until(dut.job.ready)
            ctx.set(dut.job.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.ext_base, EXT_BASE)
        ctx.set(dut.stride2, stride2)
        cycles = []
        result["skips"] = await collect(
            ctx, dut.skip, len(jobs), backpressure=backpressure, seed=seed + 2,
            limit=40 * len(jobs) + 200, cycles=cycles,
            unpack=lambda p: [int(p[i]) for i in range(params.cols)])
        result["cycles"] = cycles[-1] + 1 if cycles else 0
        for _ in range(4):
            _, _, idle, valid = await ctx.tick().sample(dut.idle, dut.skip.valid)
        assert idle and not valid

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma.bench, background=True)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return result["skips"], dma.requests, result["cycles"]


def random_jobs(n_words, rng, n_jobs):
    jobs = []
    for _ in range(n_jobs):
        n0 = rng.randrange(n_words)
        jobs.append((int(rng.random() < 0.2), n0, int(n0 + 1 < n_words and rng.random() < 0.8)))
    return jobs


@pytest.mark.parametrize("stride2", [0, 1])
@pytest.mark.parametrize("act_width", sorted(PARAMS))
def test_skips_are_the_source_words(act_width, stride2):
    params = PARAMS[act_width]
    rng = random.Random(act_width * 2 + stride2)
    words = [rng.getrandbits(params.act_width) for _ in range(37)]
    jobs = random_jobs(len(words), rng, 60)
    skips, requests, _ = run(params, words, jobs, stride2=stride2, seed=act_width, depth=4)
    assert skips == [expected_skip(j, words, params, stride2) for j in jobs]
    # Nothing read for zero jobs; one request per other job.
    assert len(requests) == sum(1 for z, _, _ in jobs if not z)


def sequencer_jobs(src_shape, out_shape, stride, off, params):
    """Jobs in drain order (``format.tile_order``, rows of each tile) for a residual layer
    with output ``out_shape`` whose skip is ``src`` at stride ``stride``, channel offset
    ``off``; also the ``(c, y, x0)`` of each job."""
    cs, hs, ws = src_shape
    c_out, h, w = out_shape
    rws = tf.row_words(ws, params)
    jobs, where = [], []
    for t, oy, x0 in tf.tile_order(c_out, h, w, params):
        for r in range(min(params.rows, c_out - t * params.rows)):
            c, j = t * params.rows + r, x0 // params.cols
            if not 0 <= c - off < cs:
                jobs.append((1, 0, 0))
            else:
                jw = j * stride
                jobs.append((0, ((c - off) * hs + oy * stride) * rws + jw, int(jw + 1 < rws)))
            where.append((c, oy, x0))
    return jobs, where


@pytest.mark.parametrize("act_width", [16, 64, 128])
@pytest.mark.parametrize("stride, off, src_shape, out_shape", [
    (1, 0, (5, 3, 7), (5, 3, 7)),       # identity shortcut, partial words
    (2, 2, (4, 6, 10), (8, 3, 5)),      # option A: stride 2, zero channels on both sides
    (2, 0, (3, 4, 2), (6, 2, 1)),       # a one-word row: no pair
])
def test_sequencer_jobs_give_the_format_skip(act_width, stride, off, src_shape, out_shape):
    """The integer contract: skip of (c, y, x) = src[c - off, y*s, x*s], 0 outside."""
    params = PARAMS[act_width]
    rng = np.random.default_rng(act_width + stride)
    src = rng.integers(0, 1 << params.abits, size=src_shape)
    words = tf.pack_act_words(src, params)
    jobs, where = sequencer_jobs(src_shape, out_shape, stride, off, params)
    skips, _, _ = run(params, words, jobs, stride2=int(stride == 2), seed=stride)
    for codes, (c, y, x0) in zip(skips, where, strict=True):
        for lane in range(min(params.cols, out_shape[2] - x0)):
            want = src[c - off, y * stride, (x0 + lane) * stride] if 0 <= c - off < src_shape[0] \
                else 0
            assert codes[lane] == want


@pytest.mark.parametrize("act_width", [16, 64])
def test_one_job_per_cycle(act_width):
    """Stride 1, one memory word per job, DMA latency 10, nothing stalled: the jobs in
    flight hide the latency."""
    params = PARAMS[act_width]
    rng = random.Random(0)
    words = [rng.getrandbits(params.act_width) for _ in range(64)]
    jobs = [(0, n, 0) for n in range(64)]
    skips, _, cycles = run(params, words, jobs, stride2=0, seed=0, stall=0, bubbles=0,
                           backpressure=0, job_bubbles=0, min_latency=10, max_latency=10)
    assert skips == [expected_skip(j, words, params, 0) for j in jobs]
    assert cycles <= 64 + 14


def test_a_wrong_source_word_is_caught():
    params = PARAMS[24]
    rng = random.Random(9)
    words = [rng.getrandbits(params.act_width) for _ in range(8)]
    jobs = [(0, n, 1) for n in range(7)]
    bad = list(words)
    bad[3] ^= 1 << (2 * params.abits)   # an even lane: seen at both strides
    for stride2 in (0, 1):
        skips, _, _ = run(params, bad, jobs, stride2=stride2, seed=9)
        assert skips != [expected_skip(j, words, params, stride2) for j in jobs]


def test_layouts_and_parameters():
    assert JOB.size == 26
    assert skip_layout(PARAMS[24]).size == 24
    with pytest.raises(ValueError, match="depth"):
        SkipFetch(PARAMS[16], depth=1)


@pytest.mark.parametrize("act_width", sorted(PARAMS))
def test_converts_to_verilog(act_width):
    text = verilog.convert(SkipFetch(PARAMS[act_width]), name="skip_fetch", emit_src=False)
    assert "module skip_fetch" in text
    assert text == verilog.convert(SkipFetch(PARAMS[act_width]), name="skip_fetch",
                                   emit_src=False)


@pytest.mark.parametrize("act_width", [16, 128])
def test_clear_drops_the_jobs_in_flight(act_width):
    """Jobs queued and half-read when ``clear`` comes (with the DMA client's) give nothing;
    the jobs after it give their own words."""
    params = PARAMS[act_width]
    rng = random.Random(act_width)
    words = [rng.getrandbits(params.act_width) for _ in range(30)]
    before, after = random_jobs(30, rng, 6), random_jobs(30, rng, 25)
    dut = SkipFetch(params, depth=8)
    mem = {EXT_BASE + i: w for i, w in enumerate(tf.act_to_ext(words, params))}
    dma = DmaServer(dut.req, dut.rsp, mem, seed=3, clear=dut.clear)
    sent, cleared, got = [], [], []

    async def producer(ctx):
        ctx.set(dut.ext_base, EXT_BASE)
        ctx.set(dut.stride2, 1)
        for batch in (before, after):
            for zero, n0, pair in batch:
                ctx.set(dut.job.valid, 1)
                ctx.set(dut.job.payload, {"zero": zero, "n0": n0, "pair": pair})
                await ctx.tick().until(dut.job.ready)
            ctx.set(dut.job.valid, 0)
            sent.append(True)
            while not cleared:
                await ctx.tick()

    async def bench(ctx):
        while not sent:   # jobs queued, some read, none taken
            await ctx.tick()
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        cleared.append(True)
        _, _, idle = await ctx.tick().sample(dut.idle)
        assert idle
        got.extend(await collect(ctx, dut.skip, len(after), backpressure=0.3, seed=4,
                                 limit=2000,
                                 unpack=lambda p: [int(p[i]) for i in range(params.cols)]))
        for _ in range(30):
            _, _, valid = await ctx.tick().sample(dut.skip.valid)
            assert not valid

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma.bench, background=True)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(bench)
    sim.run()
    assert got == [expected_skip(j, words, params, 1) for j in after]
