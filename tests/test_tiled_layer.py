"""LayerDecoder: the derived sizes equal ``layer_config`` for every layer the compiler emits,
and ``ok`` drops for descriptors the chip cannot run."""

import dataclasses

import pytest
from amaranth.sim import Simulator
from tiled_streams import model_descriptors

from rtl.tiled.layer import LayerDecoder, layer_config
from rtl.tiled.params import TiledParams

PARAMS = TiledParams(4, 4, 4, 8, act_kib=8, ring_beats=512)
DESCS = model_descriptors(PARAMS) + model_descriptors(PARAMS, models=("lenet",),
                                                      input_shape=(1, 28, 28))


def decode(d, p=PARAMS):
    dut = LayerDecoder(p)
    out = {}

    async def bench(ctx):
        ctx.set(dut.desc, d)
        await ctx.delay(1e-9)
        lay = ctx.get(dut.layer)
        out.update({k: int(getattr(lay, k)) for k in layer_config(d, p)})
        out["ok"] = ctx.get(dut.ok)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("index", range(len(DESCS)))
def test_derived_sizes(index):
    d = DESCS[index]
    got = decode(d)
    assert got.pop("ok") == 1
    assert got == layer_config(d, PARAMS)


@pytest.mark.parametrize("change", [
    dict(kernel=0), dict(kernel=PARAMS.max_kernel + 1), dict(stride=3), dict(in_c=0),
    dict(w_slices=PARAMS.w_slices_max + 1), dict(in_act=PARAMS.act_depth - 1),
    dict(logits=1, out_h=2), dict(colsum=1), dict(logits=1, colsum=1, skip=1),
    dict(logits=1, colsum=1, pool=1),
])
def test_refuses(change):
    d = dict(DESCS[1])
    d.update(change)
    assert decode(d)["ok"] == 0


def test_takes_plane_logits_with_colsum_on_a_chip_with_column_sums():
    d = dict(DESCS[1])
    assert not d["pool"] and not d["skip"] and d["out_h"] > 1
    d.update(logits=1, colsum=1)
    assert decode(d, dataclasses.replace(PARAMS, colsum=True))["ok"] == 1
    assert decode(d)["ok"] == 0


def test_refuses_a_replayed_tile_larger_than_the_ring():
    d = dict(DESCS[1])
    assert layer_config(d, PARAMS)["pos_n"] > 1
    d["in_c"] = PARAMS.ring_beats // (d["kernel"] ** 2) + 1
    assert decode(d)["ok"] == 0
