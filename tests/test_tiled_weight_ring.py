# amaranth: UnusedElaboratable=no
"""WeightRing in Amaranth's simulator: channel tiles replayed from the ring under random
valid/ready, streaming past the ring's size, waiting on fill and on release, clear, error."""

import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from rtl.tiled.params import TiledParams
from rtl.tiled.weight_ring import LATENCY, WeightRing

P16 = TiledParams(wbits=4, abits=2, rows=4, cols=4, ring_beats=16)


def replay_requests(n_tiles, tile_beats, passes):
    """Requests of a layer whose channel tiles of ``tile_beats`` beats are read ``passes``
    times each: ``(index, release)``, release being the level shown while asking for index
    (the tile's start on passes before the last, the index itself on the last)."""
    reqs = []
    for t in range(n_tiles):
        start = t * tile_beats
        for p in range(passes):
            for i in range(start, start + tile_beats):
                reqs.append((i, start if p < passes - 1 else i))
    return reqs


def expected(beats, requests):
    """The reference: the answer to a request is the layer's beat of that number."""
    return [beats[i] for i, _ in requests]


def signed_diff(a, b, bits):
    d = (a - b) % (1 << bits)
    return d - (1 << bits) if d >> (bits - 1) else d


def run(dut, beats, requests, *, bubbles=0.0, backpressure=0.0, seed=0):
    """Fill ``beats``, ask ``requests`` (see ``replay_requests``); return the answers, the
    clock edge each was taken at (1 = the first) and the final ``error``. Checks at every
    handshake that the ring's rules hold."""
    n, bits, mod = dut.params.ring_beats, dut.index_bits, 1 << dut.index_bits
    got, cycles, err, broken = [], [], [], []
    limit = 20 * (len(beats) + len(requests)) + 100

    async def filler(ctx):
        rng = random.Random(seed)
        for b in beats:
            while rng.random() < bubbles:
                await ctx.tick()
            ctx.set(dut.fill.valid, 1)
            ctx.set(dut.fill.payload, b)
            written, release = await ctx.tick().sample(dut.written, dut.release).until(
                dut.fill.ready)
            if signed_diff(written, release, bits) >= n:
                broken.append(f"filled over unreleased beat {written - n} (release {release})")
            ctx.set(dut.fill.valid, 0)

    async def requester(ctx):
        rng = random.Random(seed + 1)
        for index, release in requests:
            while rng.random() < bubbles:
                await ctx.tick()
            ctx.set(dut.release, release % mod)
            ctx.set(dut.rd.valid, 1)
            ctx.set(dut.rd.payload.index, index % mod)
            written, = await ctx.tick().sample(dut.written).until(dut.rd.ready)
            if signed_diff(written, index, bits) <= 0:
                broken.append(f"took a request for beat {index} with {written} written")
            ctx.set(dut.rd.valid, 0)
        ctx.set(dut.release, len(beats) % mod)

    async def consumer(ctx):
        rng = random.Random(seed + 2)
        edge = 0
        while len(got) < len(requests):
            ready = rng.random() >= backpressure
            ctx.set(dut.beat.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.beat.valid, dut.beat.payload)
            edge += 1
            if edge >= limit:
                broken.append("stuck")
                break
            if ready and valid:
                got.append(payload)
                cycles.append(edge)
        ctx.set(dut.beat.ready, 0)
        err.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(filler, background=True)
    sim.add_testbench(requester, background=True)
    sim.add_testbench(consumer)
    sim.run()
    # Checked here rather than in the background benches, whose exceptions pytest reports
    # poorly.
    assert not broken, broken[:3]
    return got, cycles, err[0]


def random_beats(count, params, seed):
    rng = random.Random(seed)
    return [rng.getrandbits(params.beat_bits) for _ in range(count)]


@pytest.mark.parametrize("tile_beats", [1, 2, 5, 8, 11, 15, 16])
@pytest.mark.parametrize("passes", [1, 2, 4])
def test_replayed_tiles(tile_beats, passes):
    dut = WeightRing(P16)
    reqs = replay_requests(4, tile_beats, passes)
    beats = random_beats(4 * tile_beats, P16, tile_beats)
    got, _, err = run(dut, beats, reqs, bubbles=0.3, backpressure=0.3,
                      seed=tile_beats * 10 + passes)
    assert got == expected(beats, reqs)
    assert err == 0


@pytest.mark.parametrize("tile_beats", [17, 40, 100])
def test_tiles_larger_than_the_ring_stream(tile_beats):
    dut = WeightRing(P16)
    reqs = replay_requests(2, tile_beats, 1)
    beats = random_beats(2 * tile_beats, P16, tile_beats)
    got, _, err = run(dut, beats, reqs, bubbles=0.4, backpressure=0.4, seed=tile_beats)
    assert got == expected(beats, reqs)
    assert err == 0


def test_counters_wrap():
    # 6-bit beat numbers: 300 beats wrap them four times; replayed tiles stay correct.
    dut = WeightRing(P16, index_bits=6)
    reqs = replay_requests(50, 6, 3)
    beats = random_beats(300, P16, 6)
    got, _, err = run(dut, beats, reqs, bubbles=0.2, backpressure=0.2, seed=6)
    assert got == expected(beats, reqs)
    assert err == 0


def test_a_wider_ring():
    params = TiledParams(wbits=2, abits=2, rows=3, cols=4, ring_beats=64)
    dut = WeightRing(params)
    # Three tiles of 30 (just under half the ring) replayed, then one of 70 streamed.
    reqs = replay_requests(3, 30, 3) + [(90 + i, 90 + i) for i in range(70)]
    beats = random_beats(160, params, 3)
    got, _, err = run(dut, beats, reqs, bubbles=0.3, backpressure=0.3, seed=3)
    assert got == expected(beats, reqs)
    assert err == 0


@pytest.mark.parametrize("tile_beats, passes", [(200, 1), (1, 1), (1, 4), (8, 2), (8, 4),
                                               (12, 2), (12, 4), (16, 2), (16, 4)])
def test_one_beat_per_cycle(tile_beats, passes):
    # Fill and requests without bubbles: beat 0 is filled at edge 1, asked for at edge 2,
    # taken at edge 2 + LATENCY; then one answer at every edge.
    dut = WeightRing(P16)
    reqs = replay_requests(3, tile_beats, passes)
    beats = random_beats(3 * tile_beats, P16, 1)
    got, cycles, _ = run(dut, beats, reqs)
    assert got == expected(beats, reqs)
    assert cycles[0] == 2 + LATENCY
    assert cycles == list(range(cycles[0], cycles[0] + len(reqs)))


def test_a_wrong_expectation_fails():
    dut = WeightRing(P16)
    reqs = replay_requests(2, 5, 2)
    beats = random_beats(10, P16, 9)
    got, _, _ = run(dut, beats, reqs, bubbles=0.3, backpressure=0.3)
    wrong = list(beats)
    wrong[7] ^= 1
    assert got == expected(beats, reqs)
    assert got != expected(wrong, reqs)
    # A ring answering the previous tile's beat instead (as a lost release would make it).
    assert got != expected(beats, [((i - 5) % 10, r) for i, r in reqs])


# ---------------------------------------------------------------- directed, cycle by cycle

def run_directed(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


async def fill_beats(ctx, dut, beats):
    for b in beats:
        ctx.set(dut.fill.valid, 1)
        ctx.set(dut.fill.payload, b)
        await ctx.tick().until(dut.fill.ready)
    ctx.set(dut.fill.valid, 0)


def test_a_request_waits_for_its_beat():
    dut = WeightRing(P16)
    beats = random_beats(8, P16, 2)

    async def bench(ctx):
        await fill_beats(ctx, dut, beats[:5])
        ctx.set(dut.beat.ready, 1)
        ctx.set(dut.rd.valid, 1)
        ctx.set(dut.rd.payload.index, 5)
        for _ in range(10):
            assert not ctx.get(dut.rd.ready)
            assert not ctx.get(dut.beat.valid)
            await ctx.tick()
        assert ctx.get(dut.written) == 5
        ctx.set(dut.fill.valid, 1)
        ctx.set(dut.fill.payload, beats[5])
        assert not ctx.get(dut.rd.ready)      # not in the cycle the beat is written
        await ctx.tick()
        ctx.set(dut.fill.valid, 0)
        assert ctx.get(dut.rd.ready)
        await ctx.tick()
        ctx.set(dut.rd.valid, 0)
        assert ctx.get(dut.beat.valid)
        assert ctx.get(dut.beat.payload) == beats[5]

    run_directed(dut, bench)


def test_fill_waits_for_release_and_an_answer_holds():
    dut = WeightRing(P16)
    n = P16.ring_beats
    beats = random_beats(n + 2, P16, 4)

    async def bench(ctx):
        await fill_beats(ctx, dut, beats[:n])
        ctx.set(dut.fill.valid, 1)
        ctx.set(dut.fill.payload, beats[n])
        # Ask for beat 0 while the consumer is not ready: the answer must wait on ``beat``.
        ctx.set(dut.rd.valid, 1)
        ctx.set(dut.rd.payload.index, 0)
        await ctx.tick().until(dut.rd.ready)
        ctx.set(dut.rd.payload.index, 1)
        for _ in range(10):
            assert not ctx.get(dut.fill.ready)
            assert not ctx.get(dut.rd.ready)  # the answer to 0 is still waiting
            assert ctx.get(dut.beat.valid) and ctx.get(dut.beat.payload) == beats[0]
            await ctx.tick()
        assert ctx.get(dut.written) == n
        ctx.set(dut.release, 1)               # beat 0 may go: beat n overwrites it
        assert ctx.get(dut.fill.ready)
        await ctx.tick()
        assert ctx.get(dut.written) == n + 1
        assert not ctx.get(dut.fill.ready)
        assert ctx.get(dut.beat.payload) == beats[0]
        ctx.set(dut.beat.ready, 1)
        assert ctx.get(dut.rd.ready)          # a leaving answer makes room the same cycle
        await ctx.tick()
        ctx.set(dut.rd.valid, 0)
        assert ctx.get(dut.beat.valid) and ctx.get(dut.beat.payload) == beats[1]
        await ctx.tick()
        assert not ctx.get(dut.beat.valid)
        assert not ctx.get(dut.error)

    run_directed(dut, bench)


def test_clear_starts_a_new_layer():
    dut = WeightRing(P16)
    old, new = random_beats(6, P16, 5), random_beats(6, P16, 6)

    async def bench(ctx):
        await fill_beats(ctx, dut, old)
        ctx.set(dut.rd.valid, 1)
        ctx.set(dut.rd.payload.index, 2)
        await ctx.tick().until(dut.rd.ready)
        ctx.set(dut.rd.valid, 0)
        assert ctx.get(dut.beat.valid)        # an answer of the old layer, never taken
        ctx.set(dut.clear, 1)
        ctx.set(dut.fill.valid, 1)
        ctx.set(dut.rd.valid, 1)
        assert not ctx.get(dut.fill.ready) and not ctx.get(dut.rd.ready)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.fill.valid, 0)
        ctx.set(dut.rd.valid, 0)
        assert ctx.get(dut.written) == 0 and not ctx.get(dut.beat.valid)
        await fill_beats(ctx, dut, new)
        ctx.set(dut.beat.ready, 1)
        for i in range(6):
            ctx.set(dut.rd.valid, 1)
            ctx.set(dut.rd.payload.index, i)
            await ctx.tick().until(dut.rd.ready)
            ctx.set(dut.rd.valid, 0)
            assert ctx.get(dut.beat.payload) == new[i]

    run_directed(dut, bench)


def test_error_on_an_overwritten_beat():
    dut = WeightRing(P16)
    n = P16.ring_beats
    beats = random_beats(n + 3, P16, 7)

    async def bench(ctx):
        ctx.set(dut.beat.ready, 1)
        ctx.set(dut.release, 3)
        await fill_beats(ctx, dut, beats)
        assert ctx.get(dut.written) == n + 3
        # Beat 3 is intact (beat n + 3 is not written): no error.
        ctx.set(dut.rd.valid, 1)
        ctx.set(dut.rd.payload.index, 3)
        await ctx.tick().until(dut.rd.ready)
        await ctx.tick()
        assert ctx.get(dut.beat.payload) == beats[3]
        assert not ctx.get(dut.error)
        # Beat 2 was released and overwritten by beat n + 2: asking for it is an error.
        ctx.set(dut.rd.payload.index, 2)
        await ctx.tick().until(dut.rd.ready)
        ctx.set(dut.rd.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.beat.payload) == beats[n + 2]
        assert ctx.get(dut.error)
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(dut.error)         # sticky
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert not ctx.get(dut.error)

    run_directed(dut, bench)


# ---------------------------------------------------------------- construction

@pytest.mark.parametrize("params", [P16, TiledParams(wbits=4, abits=4, rows=8, cols=8)])
def test_converts_to_verilog_reproducibly(params):
    texts = [verilog.convert(WeightRing(params), name="weight_ring", emit_src=False)
             for _ in range(2)]
    assert "module weight_ring" in texts[0]
    assert texts[0] == texts[1]


def test_signature_follows_the_params():
    params = TiledParams(wbits=3, abits=4, rows=5, cols=2, ring_beats=32)
    dut = WeightRing(params, index_bits=20)
    assert dut.fill.payload.shape().width == 15
    assert dut.beat.payload.shape().width == 15
    assert dut.rd.payload.index.shape().width == 20
    assert len(dut.written) == len(dut.release) == 20


@pytest.mark.parametrize("bits, exc", [(5, ValueError), (33, ValueError), (24.0, TypeError)])
def test_bad_index_bits(bits, exc):
    with pytest.raises(exc, match="index_bits"):
        WeightRing(P16, index_bits=bits)
