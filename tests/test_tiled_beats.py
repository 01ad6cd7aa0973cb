"""BeatIssuer: the ring indices, shifts and reduction flags of each tile's beats, and the
ring release; BeatJoin: one MAC beat from three streams."""

import random

from amaranth.sim import Simulator
from tiled_streams import expected_records, layer_value, model_descriptors, run_streams

from rtl.tiled.beats import BeatIssuer, BeatJoin
from rtl.tiled.layer import layer_config
from rtl.tiled.params import TiledParams

PARAMS = TiledParams(4, 4, 4, 8, act_kib=8, ring_beats=512)


def expected_beats(d, p, tiles):
    c = layer_config(d, p)
    idx, meta = [], []
    for tile in tiles:
        b = 0
        for ci in range(d["in_c"]):
            for _ky in range(d["kernel"]):
                for _kx in range(d["kernel"]):
                    for j in range(d["w_slices"]):
                        idx.append(tile["tbase"] + b)
                        # colsum: one reduction over all position tiles of a channel tile
                        cs = d.get("colsum", 0)
                        first = b == 0 and (not cs or tile["first_pos"])
                        last = b == c["bpt"] - 1 and (not cs or tile["last_pos"])
                        meta.append(dict(shift=p.wbits * j + p.abits * (ci % d["a_slices"]),
                                         first=int(first), last=int(last)))
                        b += 1
    return idx, meta


def _with_colsum(d):
    return dict(d, colsum=1, logits=1)


def test_indices_and_flags():
    descs = model_descriptors(PARAMS)[:6]
    # A column-sum layer: the same tiles, flags only at the ends of each channel tile.
    multi = [d for d in descs if layer_config(d, PARAMS)["pos_n"] > 1]
    assert multi
    for i, d in enumerate(descs + [_with_colsum(multi[0])]):
        tiles = expected_records(d, PARAMS)[:12]
        idx, meta = expected_beats(d, PARAMS, tiles)
        dut = BeatIssuer(PARAMS)
        got_idx, got_meta = run_streams(
            dut, setup=lambda ctx, d=d, dut=dut: ctx.set(dut.layer, layer_value(d, PARAMS)),
            source=dut.tiles, items=tiles, sinks=[dut.rd, dut.meta],
            counts=[len(idx), len(meta)], seed=i,
            unpack=lambda v: ({k: int(getattr(v, k)) for k in ("shift", "first", "last")}
                              if hasattr(v, "shift") else int(v.index)))
        assert got_idx == idx
        assert got_meta == meta


def test_release_keeps_a_replayed_tile_and_frees_the_last_pass():
    d = next(d for d in model_descriptors(PARAMS) if layer_config(d, PARAMS)["pos_n"] > 1)
    bpt = layer_config(d, PARAMS)["bpt"]
    tiles = expected_records(d, PARAMS)[:3 * layer_config(d, PARAMS)["pos_n"]]
    dut = BeatIssuer(PARAMS)
    seen = []   # (tbase, last_pos, release) while a tile is on the input

    async def bench(ctx):
        ctx.set(dut.layer, layer_value(d, PARAMS))
        ctx.set(dut.rd.ready, 1)
        ctx.set(dut.meta.ready, 1)
        for tile in tiles:
            ctx.set(dut.tiles.valid, 1)
            ctx.set(dut.tiles.payload, tile)
            while True:
                _, _, done, release = await ctx.tick().sample(dut.tiles.ready, dut.release)
                seen.append((tile["tbase"], tile["last_pos"], release))
                if done:
                    break
        ctx.set(dut.tiles.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    rel = [r for _, _, r in seen]
    assert rel == sorted(rel), "release went down"
    # One cycle late (a register): compare with the tile seen the cycle before.
    for (tb, last, _), (_, _, r) in zip(seen, seen[1:], strict=False):
        if not last:
            assert r <= tb, (tb, r)
        else:
            assert tb <= r <= tb + bpt
    assert any(last and r > tb for tb, last, r in seen), "the last pass released nothing"


def test_join_waits_for_all_three():
    dut = BeatJoin(PARAMS)
    rng = random.Random(0)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(50):
            v = [rng.random() < 0.5 for _ in range(3)]
            ctx.set(dut.w.valid, v[0])
            ctx.set(dut.a.valid, v[1])
            ctx.set(dut.meta.valid, v[2])
            ctx.set(dut.w.payload, rng.getrandbits(PARAMS.beat_bits))
            await ctx.delay(1e-9)
            assert ctx.get(dut.o.valid) == all(v)
            assert ctx.get(dut.w.ready) == all(v)
            assert ctx.get(dut.o.payload.w).as_value().value == ctx.get(dut.w.payload)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
