"""RowSplit: a row-pair tile's words split into one word per output row (lanes past the row's
width zeroed, the second row only when it exists); other layers' words pass through."""

import random

from tiled_streams import run_streams

from rtl.tiled.params import TiledParams
from rtl.tiled.row_split import RowSplit

P = TiledParams(4, 4, 4, 8, act_kib=1)


def split_expected(words, tiles, out_w, p=P):
    half, k = p.cols // 2, p.abits
    out, it = [], iter(words)
    for tile in tiles:
        for _ in range(tile["rows_valid"]):
            w = next(it)
            lanes = [(w["data"] >> (c * k)) & ((1 << k) - 1) for c in range(p.cols)]
            for g in range(2 if tile["pair"] else 1):
                row = [lanes[g * half + x] if x < out_w else 0 for x in range(half)]
                out.append({"addr": w["addr"] + g,
                            "data": sum(v << (x * k) for x, v in enumerate(row))})
    return out


def tile(rows_valid, pair):
    return dict(t=0, tbase=0, oy=0, x0=0, xw=0, addr=0, rows_valid=rows_valid, lanes_valid=8,
                phase=0, first_pos=0, last_pos=0, pair=pair)


def test_row_pairs_split():
    rng = random.Random(0)
    tiles = [tile(rng.randint(1, 4), rng.randint(0, 1)) for _ in range(10)]
    words = [{"addr": rng.randrange(200), "data": rng.getrandbits(P.act_width)}
             for t in tiles for _ in range(t["rows_valid"])]
    want = split_expected(words, tiles, out_w=3)
    dut = RowSplit(P)

    def setup(ctx):
        ctx.set(dut.group, 1)
        ctx.set(dut.out_w, 3)

    # The words and the tile records come from two producers.
    got = _run(dut, words, tiles, setup, len(want))
    assert got == want
    bad = [dict(w) for w in want]
    bad[0]["data"] ^= 1
    assert got != bad


def _run(dut, words, tiles, setup, n):
    from amaranth.sim import Simulator

    rng = random.Random(1)
    got = []

    async def tiles_in(ctx):
        for t in tiles:
            ctx.set(dut.tiles.valid, 1)
            ctx.set(dut.tiles.payload, t)
            await ctx.tick().until(dut.tiles.ready)
            ctx.set(dut.tiles.valid, 0)

    async def words_in(ctx):
        setup(ctx)
        for w in words:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, w)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        prng = random.Random(2)
        cycles = 0
        while len(got) < n:
            cycles += 1
            assert cycles < 100 * n
            ready = prng.random() < 0.7
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                got.append({"addr": int(payload.addr), "data": int(payload.data)})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tiles_in, background=True)
    sim.add_testbench(words_in, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got


def test_other_layers_pass_through():
    rng = random.Random(3)
    words = [{"addr": rng.randrange(200), "data": rng.getrandbits(P.act_width)}
             for _ in range(20)]
    dut = RowSplit(P)
    (got,) = run_streams(dut, setup=lambda ctx: ctx.set(dut.group, 0), source=dut.i,
                         items=words, sinks=[dut.o], counts=[len(words)],
                         unpack=lambda v: {"addr": int(v.addr), "data": int(v.data)})
    assert got == words
