"""SkipJobs: one job per channel row of a residual tile, naming the skip tensor's words."""

from tiled_streams import descriptors, expected_records, layer_value, run_streams

from cosim.chip_model import random_image
from rtl.tiled.layer import layer_config
from rtl.tiled.params import TiledParams
from rtl.tiled.skip_jobs import SkipJobs

PARAMS = TiledParams(4, 4, 8, 8, act_kib=16, ring_beats=1024)


def expected_jobs(d, p, tiles):
    c = layer_config(d, p)
    out = []
    for tile in tiles:
        for r in range(tile["rows_valid"]):
            cs = tile["t"] * p.rows + r - d["skip_off"]
            s = d["skip_stride"]
            xw = tile["x0"] // p.cols * s
            n0 = (cs * d["skip_h"] + tile["oy"] * s) * c["rw_skip"] + xw
            zero = not 0 <= cs < d["skip_c"]
            pair = tile["pair"] if d["group"] else int(s == 2 and xw + 1 < c["rw_skip"])
            out.append(dict(zero=int(zero), n0=n0 % (1 << 24), pair=pair))
    return out


def residual_descriptors(params=PARAMS):
    image = random_image(1, model="resnet20", wbits=4, abits=4, input_shape=(3, 32, 32))
    return [d for d in descriptors(image, params) if d["skip"]]


def test_jobs_of_resnet20_skips_both_strides():
    descs = residual_descriptors()
    assert {d["skip_stride"] for d in descs} == {1, 2}
    for i, d in enumerate(descs[2:5]):
        tiles = expected_records(d, PARAMS)[:40]
        want = expected_jobs(d, PARAMS, tiles)
        dut = SkipJobs(PARAMS)
        (got,) = run_streams(dut, setup=lambda ctx, d=d, dut=dut: ctx.set(
            dut.layer, layer_value(d, PARAMS)), source=dut.tiles, items=tiles, sinks=[dut.jobs],
            counts=[len(want)], seed=i, unpack=lambda v: {k: int(getattr(v, k))
                                                           for k in ("zero", "n0", "pair")})
        assert got == want
        # Jobs that read nothing exist exactly where the channel is outside the source.
        assert any(j["zero"] for j in want) == (d["skip_off"] > 0)


def test_jobs_of_row_pairs():
    params = TiledParams(4, 4, 16, 16, act_kib=16, ring_beats=1024)
    descs = [d for d in residual_descriptors(params) if d["group"]]
    assert {d["skip_stride"] for d in descs} == {1, 2}
    for i, d in enumerate(descs[:2]):
        tiles = expected_records(d, params)[:12]
        want = expected_jobs(d, params, tiles)
        dut = SkipJobs(params)
        (got,) = run_streams(dut, setup=lambda ctx, d=d, dut=dut: ctx.set(
            dut.layer, layer_value(d, params)), source=dut.tiles, items=tiles,
            sinks=[dut.jobs], counts=[len(want)], seed=i,
            unpack=lambda v: {k: int(getattr(v, k)) for k in ("zero", "n0", "pair")})
        assert got == want
