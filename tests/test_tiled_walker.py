"""TileWalker: every tile of a layer, in ``format.tile_order``, on every enabled output, under
back-pressure."""

import random

import pytest
from amaranth.sim import Simulator
from tiled_streams import expected_records, layer_value, model_descriptors

from rtl.tiled.params import TiledParams, ceil_div
from rtl.tiled.walker import TileWalker

PARAMS = TiledParams(4, 4, 4, 8, act_kib=8, ring_beats=512)


def run_walker(d, p, enable, seed):
    dut = TileWalker(p, outputs=3)
    got = [[] for _ in range(3)]
    rng = random.Random(seed)
    n = len(expected_records(d, p))

    async def bench(ctx):
        ctx.set(dut.layer, layer_value(d, p))
        ctx.set(dut.enable, enable)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycles = 0
        while ctx.get(dut.busy):
            cycles += 1
            assert cycles < 50 * n + 100
            readies = [rng.random() < 0.6 for _ in range(3)]
            for i in range(3):
                ctx.set(getattr(dut, f"o{i}").ready, readies[i])
            for i in range(3):
                o = getattr(dut, f"o{i}")
                if readies[i] and ctx.get(o.valid):
                    rec = ctx.get(o.payload)
                    got[i].append({name: int(getattr(rec, name)) for name in expected_records(
                        d, p)[0]})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


DESCS = model_descriptors(PARAMS) + model_descriptors(PARAMS, models=("lenet",),
                                                      input_shape=(1, 28, 28))


@pytest.mark.parametrize("index", range(0, len(DESCS), 2))
def test_records_in_tile_order(index):
    d = DESCS[index]
    got = run_walker(d, PARAMS, 0b101, seed=index)
    want = expected_records(d, PARAMS)
    assert got[0] == want
    assert got[1] == []
    assert got[2] == want


def test_checker_sees_a_wrong_address():
    d = DESCS[0]
    want = expected_records(d, PARAMS)
    want[1]["addr"] += 1
    assert run_walker(d, PARAMS, 0b1, seed=1)[0] != want


def test_row_pairs_are_walked():
    assert any(d["group"] for d in DESCS)


def test_pooled_layer_has_four_tiles_per_word():
    d = next(d for d in DESCS if d["pool"])
    recs = expected_records(d, PARAMS)
    assert len(recs) == ceil_div(d["out_c"], PARAMS.rows) * (d["out_h"] // 2) * ceil_div(
        d["out_w"] // 2, PARAMS.cols) * 4
