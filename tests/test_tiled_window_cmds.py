"""WindowCommands: one command per (slice input channel, kernel row) of each tile, with the
window's first word, its padding mask and the first pixel's lane, under back-pressure."""

import pytest
from tiled_streams import expected_records, layer_value, model_descriptors, run_streams

from rtl.tiled.layer import layer_config
from rtl.tiled.params import TiledParams
from rtl.tiled.window_cmds import WindowCommands
from rtl.tiled.window_fetch import cmd_layout

PARAMS = TiledParams(4, 4, 4, 8, act_kib=8, ring_beats=512)


def expected_pair_cmds(d, p, tiles):
    c = layer_config(d, p)
    out = []
    for tile in tiles:
        for ci in range(d["in_c"]):
            for ky in range(d["kernel"]):
                iy = tile["oy"] * d["stride"] - d["pad"] + ky
                rows = (iy, iy + d["stride"])
                addr = d["in_act"] + ci * c["in_plane"] + iy * c["rw_in"]
                out.append(dict(addr=addr % (1 << p.act_addr_bits), step=d["stride"],
                                zmask=sum(1 << g for g in range(2)
                                          if not 0 <= rows[g] < d["in_h"]),
                                pad=d["pad"], kernel=d["kernel"], stride=d["stride"],
                                reps=d["w_slices"]))
    return out


def expected_cmds(d, p, tiles):
    if d["group"]:
        return expected_pair_cmds(d, p, tiles)
    c = layer_config(d, p)
    bits = p.act_addr_bits
    out = []
    for tile in tiles:
        ix0 = tile["x0"] * d["stride"] - d["pad"]
        wx0 = ix0 // p.cols
        for ci in range(d["in_c"]):
            for ky in range(d["kernel"]):
                iy = tile["oy"] * d["stride"] - d["pad"] + ky
                addr = d["in_act"] + ci * c["in_plane"] + iy * c["rw_in"] + wx0
                zmask = sum(1 << i for i in range(p.window_words)
                            if not 0 <= iy < d["in_h"] or not 0 <= wx0 + i < c["rw_in"])
                out.append(dict(addr=addr % (1 << bits), zmask=zmask, off=ix0 % p.cols,
                                kernel=d["kernel"], stride=d["stride"], reps=d["w_slices"]))
    return out


def run_cmds(d, p, seed):
    tiles = expected_records(d, p)
    dut = WindowCommands(p, cmd_layout(p))
    want = expected_cmds(d, p, tiles)
    (got,) = run_streams(
        dut, setup=lambda ctx: ctx.set(dut.layer, layer_value(d, p)), source=dut.tiles,
        items=tiles, sinks=[dut.pcmd if d["group"] else dut.cmd], counts=[len(want)], seed=seed,
        unpack=lambda v: {k: int(getattr(v, k)) for k in want[0]})
    return got, want


DESCS = model_descriptors(PARAMS)


@pytest.mark.parametrize("index", range(0, len(DESCS), 2))
def test_commands(index):
    got, want = run_cmds(DESCS[index], PARAMS, seed=index)
    assert got == want


def test_checker_sees_a_wrong_mask():
    got, want = run_cmds(DESCS[0], PARAMS, seed=3)
    want[0]["zmask"] ^= 1
    assert got != want
