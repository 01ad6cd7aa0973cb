# amaranth: UnusedElaboratable=no
"""WriteBack: words in any order land in their slots (``format.ext_slot_position``) with only
their bytes changed, the activation memory gets every word, and logits land in their words,
under random valid/ready on every stream."""

import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from tiled_dma_model import PARAMS

from rtl.tiled import format as tf
from rtl.tiled.write_back import LOGIT, WriteBack, write_layout

ACT_BASE, EXT_BASE = 37, 5000


def expected_memory(mem, writes, logits, params, act_base, ext_base):
    """``mem`` after writing each ``(addr, data)`` activation word into its slot (padding
    zeroed, the rest of the word kept) and each ``(index, value)`` logit."""
    mem = dict(mem)
    mw = params.mem_width
    for addr, value in writes:
        n = (addr - act_base) % (1 << params.act_addr_bits)
        word, bit = tf.ext_slot_position(n, params)
        if params.slot_bits <= mw:
            mask = ((1 << params.slot_bits) - 1) << bit
            a = ext_base + word
            mem[a] = (mem[a] & ~mask) | (value << bit)
        else:
            for k in range(params.words_per_slot):
                mem[ext_base + word + k] = (value >> (k * mw)) & ((1 << mw) - 1)
    for index, value in logits:
        mem[ext_base + index] = value & 0xFFFF
    return mem


def run(params, writes, logits, mem, *, seed, bubbles=0.3, backpressure=0.3, wr_stall=0.2,
        strobes=True):
    """Drive ``writes`` on ``out`` and ``logits`` on ``logit``; returns the memory after the
    ``mem_wr`` beats (applying strobes unless told not to), the ``wr`` payloads, the cycles
    of the ``wr`` handshakes and of the slot beats (not the logits'), and the cycle count."""
    dut = WriteBack(params)
    mem = dict(mem)
    mw = params.mem_width
    got_wr, wr_cycles, beat_cycles, done = [], [], [], []
    total = [0]
    n_beats = len(writes) * params.words_per_slot + len(logits)
    first_logit = min((EXT_BASE + i for i, _ in logits), default=1 << 32)

    def producer(port, items, pack, rng):
        async def bench(ctx):
            for item in items:
                while rng.random() < bubbles:
                    await ctx.tick()
                ctx.set(port.valid, 1)
                ctx.set(port.payload, pack(item))
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
            done.append(port)
        return bench

    async def act_memory(ctx):
        rng, cycle = random.Random(seed + 2), 0
        while True:
            ready = rng.random() >= wr_stall
            ctx.set(dut.wr.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.wr.valid, dut.wr.payload)
            if ready and valid:
                got_wr.append((int(payload.addr), int(payload.data)))
                wr_cycles.append(cycle)
            cycle += 1

    async def memory(ctx):
        rng, cycle, beats = random.Random(seed + 3), 0, 0
        while beats < n_beats or len(done) < 2:
            assert cycle < 20 * n_beats + 100, "stuck"
            ready = rng.random() >= backpressure
            ctx.set(dut.mem_wr.ready, ready)
            _, _, valid, beat = await ctx.tick().sample(dut.mem_wr.valid, dut.mem_wr.payload)
            if ready and valid:
                beats += 1
                addr, value, strobe = int(beat.addr), int(beat.data), int(beat.strobe)
                if not strobes:
                    strobe = (1 << (mw // 8)) - 1
                mask = sum(0xFF << (8 * b) for b in range(mw // 8) if strobe >> b & 1)
                mem[addr] = (mem[addr] & ~mask) | (value & mask)   # KeyError: outside
                if addr < first_logit:
                    beat_cycles.append(cycle)
            cycle += 1
        total[0] = cycle
        ctx.set(dut.mem_wr.ready, 1)
        for _ in range(3):
            _, _, idle, valid = await ctx.tick().sample(dut.idle, dut.mem_wr.valid)
            assert idle and not valid

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer(dut.out, writes, lambda w: {"addr": w[0], "data": w[1]},
                               random.Random(seed)), background=True)
    sim.add_testbench(producer(dut.logit, logits, lambda v: {"index": v[0], "value": v[1]},
                               random.Random(seed + 1)), background=True)
    sim.add_testbench(act_memory, background=True)
    sim.add_testbench(memory)

    async def levels(ctx):
        ctx.set(dut.act_base, ACT_BASE)
        ctx.set(dut.ext_base, EXT_BASE)
    sim.add_testbench(levels)
    sim.run()
    return mem, got_wr, wr_cycles, beat_cycles, total[0]


def random_case(params, rng, *, n_words, zero=False):
    """A random tensor's words written in a random order over a memory of random bytes (or
    zeros); 64 spare words past the tensor hold the logits."""
    words = [rng.getrandbits(params.act_width) for _ in range(n_words)]
    order = list(range(n_words))
    rng.shuffle(order)
    writes = [((ACT_BASE + n) % (1 << params.act_addr_bits), words[n]) for n in order]
    n_ext = len(tf.act_to_ext(words, params))
    mem = {EXT_BASE + i: 0 if zero else rng.getrandbits(params.mem_width)
           for i in range(n_ext + 64)}
    return words, writes, mem, n_ext


@pytest.mark.parametrize("act_width", sorted(PARAMS))
def test_words_land_in_their_slots(act_width):
    params = PARAMS[act_width]
    rng = random.Random(act_width)
    words, writes, mem, n_ext = random_case(params, rng, n_words=23)
    logits = [(n_ext + i, rng.randrange(-32768, 32768)) for i in rng.sample(range(64), 9)]
    got, got_wr, wr_cycles, beat_cycles, _ = run(params, writes, logits, mem, seed=act_width)
    assert got == expected_memory(mem, writes, logits, params, ACT_BASE, EXT_BASE)
    assert got_wr == writes
    # Both writes of a word on one handshake: wr fires with the slot's last beat.
    wps = params.words_per_slot
    assert wr_cycles == [beat_cycles[(i + 1) * wps - 1] for i in range(len(writes))]


@pytest.mark.parametrize("act_width", [16, 24, 160])
def test_a_whole_tensor_is_its_external_image(act_width):
    params = PARAMS[act_width]
    words, writes, mem, n_ext = random_case(params, random.Random(7), n_words=30, zero=True)
    got, *_ = run(params, writes, [], mem, seed=7)
    assert [got[EXT_BASE + i] for i in range(n_ext)] == tf.act_to_ext(words, params)


@pytest.mark.parametrize("act_width", [16, 64, 128])
def test_full_rate(act_width):
    """Without stalls: one word per cycle up to a slot per memory word, else one memory word
    per cycle."""
    params = PARAMS[act_width]
    _, writes, mem, _ = random_case(params, random.Random(1), n_words=40)
    got, _, _, _, cycles = run(params, writes, [], mem, seed=1, bubbles=0, backpressure=0,
                               wr_stall=0)
    assert got == expected_memory(mem, writes, [], params, ACT_BASE, EXT_BASE)
    assert cycles == 40 * params.words_per_slot


def test_strobes_are_needed_and_checked():
    """Writing whole words would destroy the neighbouring slots: the check sees it."""
    params = PARAMS[16]
    _, writes, mem, _ = random_case(params, random.Random(3), n_words=12)
    got, *_ = run(params, writes, [], mem, seed=3, strobes=False)
    assert got != expected_memory(mem, writes, [], params, ACT_BASE, EXT_BASE)


def test_a_wrong_word_is_caught():
    params = PARAMS[128]
    _, writes, mem, _ = random_case(params, random.Random(4), n_words=5)
    bad = list(writes)
    bad[3] = (bad[3][0], bad[3][1] ^ (1 << 100))
    got, *_ = run(params, bad, [], mem, seed=4)
    assert got != expected_memory(mem, writes, [], params, ACT_BASE, EXT_BASE)


def test_layouts():
    assert write_layout(64).size == 32 + 64 + 8
    assert LOGIT.size == 32
    with pytest.raises(TypeError, match="TiledParams"):
        WriteBack(16)


@pytest.mark.parametrize("act_width", sorted(PARAMS))
def test_converts_to_verilog(act_width):
    text = verilog.convert(WriteBack(PARAMS[act_width]), name="write_back", emit_src=False)
    assert "module write_back" in text
    assert text == verilog.convert(WriteBack(PARAMS[act_width]), name="write_back",
                                   emit_src=False)
