# amaranth: UnusedElaboratable=no
"""InputLoader: the activation words written on chip are the tensor whose slots sit in external
memory (``format.act_to_ext``), for slots smaller than, equal to and larger than a memory word,
under random DMA latency, stalls and back-pressure."""

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from tiled_dma_model import PARAMS, DmaServer, collect

from rtl.chip_format import record_to_words, words_for_bits, words_to_record
from rtl.tiled import format as tf
from rtl.tiled.input_loader import InputLoader


def random_tensor(shape, params, rng):
    return np.array(rng.integers(0, 1 << params.abits, size=shape), dtype=np.int64)


def ext_image(words, params, rng):
    """The tensor's external words, with random bits in every slot's padding and past the
    last slot (the loader must ignore them)."""
    ext = tf.act_to_ext(words, params)
    value = words_to_record(ext, params.mem_width)
    sb, aw = params.slot_bits, params.act_width
    total = len(ext) * params.mem_width
    pad = 0
    for n in range(total // sb):
        if n >= len(words):
            pad |= ((1 << sb) - 1) << (n * sb)
        else:
            pad |= ((1 << (sb - aw)) - 1) << (n * sb + aw)
    garbage = sum(int(b) << (8 * i) for i, b in enumerate(rng.integers(0, 256, total // 8)))
    return record_to_words(value | (garbage & pad), len(ext), params.mem_width)


def run_loads(params, loads, *, seed, max_request=65535, stall=0.3, bubbles=0.3,
              backpressure=0.3, max_latency=12):
    """Run ``loads`` (a list of ``(ext_addr, act_base, ext_words, count)``) one after the
    other. Returns, per load, the ``(addr, data)`` writes, the cycles from start to done, and
    the DMA's requests."""
    dut = InputLoader(params, max_request=max_request)
    mem = {}
    for ext_addr, _, ext, _ in loads:
        mem.update({ext_addr + i: w for i, w in enumerate(ext)})
    dma = DmaServer(dut.req, dut.rsp, mem, seed=seed, max_latency=max_latency, stall=stall,
                    bubbles=bubbles)
    results = []

    async def bench(ctx):
        for k, (ext_addr, act_base, _, count) in enumerate(loads):
            before = len(dma.requests)
            ctx.set(dut.ext_addr, ext_addr)
            ctx.set(dut.act_base, act_base)
            ctx.set(dut.count, count)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.ext_addr, 0)   # levels are sampled with start only
            cycles = []
            writes = await collect(ctx, dut.wr, count, backpressure=backpressure,
                                   seed=seed + k, limit=40 * count + 200, cycles=cycles,
                                   unpack=lambda p: (int(p.addr), int(p.data)))
            # done pulses once, right after the last write; nothing more is written.
            ctx.set(dut.wr.ready, 1)
            flags = []
            for _ in range(8):
                _, _, done, busy, valid = await ctx.tick().sample(dut.done, dut.busy,
                                                                   dut.wr.valid)
                flags.append((done, busy, valid))
            assert not any(v for _, _, v in flags), "a write past the tensor"
            assert [d for d, _, _ in flags].count(1) == 1 and flags[-1][1] == 0
            if count:
                assert flags[0][0] == 1, "done is not the cycle after the last write"
            results.append((writes, (cycles[-1] + 2) if cycles else 1,
                            dma.requests[before:]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma.bench, background=True)
    sim.add_testbench(bench)
    sim.run()
    return results


def check_requests(requests, ext_addr, n_words, max_request):
    """The requests read exactly the tensor's words, in order, each at most max_request."""
    addr = ext_addr
    for a, c in requests:
        assert a == addr and 1 <= c <= max_request
        addr += c
    assert addr == ext_addr + n_words


@pytest.mark.parametrize("act_width", sorted(PARAMS))
def test_loaded_words_are_the_tensor(act_width):
    params = PARAMS[act_width]
    rng = np.random.default_rng(act_width)
    loads, tensors = [], []
    # Shapes with partial rows, and word counts that leave the last memory word part-filled.
    for k, shape in enumerate([(3, 5, 7), (2, 3, params.cols + 1), (1, 1, 1)]):
        tensor = random_tensor(shape, params, rng)
        words = tf.pack_act_words(tensor, params)
        ext = ext_image(words, params, rng)
        assert len(ext) == tf.ext_tensor_words(shape, params)
        loads.append((1000 * (k + 1) + k, 17 * k + 3, ext, len(words)))
        tensors.append((tensor, words))
    results = run_loads(params, loads, seed=act_width, max_request=5)
    for (ext_addr, act_base, ext, _), (tensor, words), (writes, _, reqs) in zip(
            loads, tensors, results, strict=True):
        assert writes == [(act_base + n, w) for n, w in enumerate(words)]
        got = tf.unpack_act_words([d for _, d in writes], tensor.shape, params)
        assert np.array_equal(got, tensor)
        check_requests(reqs, ext_addr, len(ext), 5)


def test_full_requests_and_empty_load():
    params = PARAMS[16]
    rng = np.random.default_rng(1)
    words = [int(v) for v in rng.integers(0, 1 << 16, 3000)]
    ext = tf.act_to_ext(words, params)
    loads = [(7, 0, ext, len(words)), (0, 0, [], 0), (7, 100, ext, 9)]
    (writes, _, reqs), (empty, _, none), (short, _, reqs9) = run_loads(
        params, loads, seed=3, max_request=512, stall=0.1, bubbles=0.1, backpressure=0.1)
    assert writes == list(enumerate(words))
    check_requests(reqs, 7, len(ext), 512)
    assert max(c for _, c in reqs) == 512
    assert empty == [] and none == []
    assert short == [(100 + n, w) for n, w in enumerate(words[:9])]
    check_requests(reqs9, 7, 3, 512)


def test_addresses_wrap_in_the_activation_memory():
    params = PARAMS[64]
    top = 1 << params.act_addr_bits
    words = [random.Random(5).getrandbits(64) for _ in range(6)]
    (writes, _, _), = run_loads(params, [(0, top - 2, tf.act_to_ext(words, params), 6)],
                                seed=5)
    assert [a for a, _ in writes] == [top - 2, top - 1, 0, 1, 2, 3]


@pytest.mark.parametrize("act_width", [16, 64, 128])
def test_full_rate(act_width):
    """Without stalls: one activation word per cycle up to a word per slot, else one memory
    word per cycle."""
    params = PARAMS[act_width]
    n = 64
    words = [random.Random(n).getrandbits(act_width) for _ in range(n)]
    (writes, cycles, _), = run_loads(params, [(0, 0, tf.act_to_ext(words, params), n)],
                                     seed=1, stall=0, bubbles=0, backpressure=0,
                                     max_latency=1)
    assert [d for _, d in writes] == words
    assert cycles <= n * params.words_per_slot + 6


def test_a_wrong_memory_word_is_caught():
    params = PARAMS[24]
    words = [random.Random(2).getrandbits(24) for _ in range(10)]
    ext = tf.act_to_ext(words, params)
    bad = list(ext)
    bad[2] ^= 1 << 33
    (writes, _, _), = run_loads(params, [(0, 0, bad, 10)], seed=2)
    assert [d for _, d in writes] != words


def test_padding_is_garbage_in_the_image():
    """The test image really has non-zero padding, so ignoring it is tested."""
    params = PARAMS[160]
    words = [0] * 3
    ext = ext_image(words, params, np.random.default_rng(0))
    assert any(ext) and len(ext) == words_for_bits(3 * 256, 64)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="max_request"):
        InputLoader(PARAMS[16], max_request=65536)
    with pytest.raises(TypeError, match="TiledParams"):
        InputLoader(None)


@pytest.mark.parametrize("act_width", sorted(PARAMS))
def test_converts_to_verilog(act_width):
    text = verilog.convert(InputLoader(PARAMS[act_width]), name="input_loader",
                           emit_src=False)
    assert "module input_loader" in text
    assert text == verilog.convert(InputLoader(PARAMS[act_width]), name="input_loader",
                                   emit_src=False)


@pytest.mark.parametrize("act_width", [16, 128])
def test_clear_abandons_a_load(act_width):
    """Cleared half-way (with the DMA client), the loader is idle and the next load is
    whole."""
    params = PARAMS[act_width]
    rng = random.Random(act_width)
    first = [rng.getrandbits(act_width) for _ in range(40)]
    second = [rng.getrandbits(act_width) for _ in range(11)]
    dut = InputLoader(params, max_request=8)
    mem = {i: w for i, w in enumerate(tf.act_to_ext(first, params))}
    mem.update({500 + i: w for i, w in enumerate(tf.act_to_ext(second, params))})
    dma = DmaServer(dut.req, dut.rsp, mem, seed=1, clear=dut.clear)
    got = {}

    async def bench(ctx):
        for name, (ext_addr, count, n_take) in {"first": (0, 40, 9),
                                                "second": (500, 11, 11)}.items():
            ctx.set(dut.ext_addr, ext_addr)
            ctx.set(dut.count, count)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            got[name] = await collect(ctx, dut.wr, n_take, backpressure=0.3, seed=2,
                                      limit=1000, unpack=lambda p: int(p.data))
            if name == "first":
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                _, _, busy, valid = await ctx.tick().sample(dut.busy, dut.wr.valid)
                assert not busy and not valid
        for _ in range(40):   # nothing left over from the first load
            _, _, valid = await ctx.tick().sample(dut.wr.valid)
            assert not valid

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma.bench, background=True)
    sim.add_testbench(bench)
    sim.run()
    assert got["first"] == first[:9]
    assert got["second"] == second
