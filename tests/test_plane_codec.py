# amaranth: UnusedElaboratable=no
"""Plane codecs against chip_format.pack_codes/unpack_codes, for every code width."""

import random

import pytest
from amaranth.sim import Simulator

from rtl import chip_format as cf
from rtl.plane_codec import PlanePack, PlaneUnpack

LANES, LANE_BITS, DENSE = 7, 6, 48


def settle(dut, inputs, output):
    out = {}

    async def bench(ctx):
        for name, value in inputs.items():
            ctx.set(getattr(dut, name), value)
        out["v"] = ctx.get(getattr(dut, output))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out["v"]


def lanes_value(codes):
    return sum(c << (p * LANE_BITS) for p, c in enumerate(codes))


@pytest.mark.parametrize("bits", range(1, LANE_BITS + 1))
def test_unpack_is_chip_format_unpack(bits):
    rng = random.Random(bits)
    codes = [rng.getrandbits(bits) for _ in range(LANES)]
    dense = cf.words_to_record(cf.pack_codes(codes, bits, 16), 16)
    dut = PlaneUnpack(lanes=LANES, lane_bits=LANE_BITS, dense_width=DENSE)
    assert settle(dut, {"dense": dense, "bits": bits}, "plane") == lanes_value(codes)


@pytest.mark.parametrize("bits", range(1, LANE_BITS + 1))
@pytest.mark.parametrize("valid", [LANES, 3, 1])
def test_pack_is_chip_format_pack(bits, valid):
    rng = random.Random(bits * 10 + valid)
    codes = [rng.getrandbits(LANE_BITS) for _ in range(LANES)]  # high bits must be dropped
    want = [c & ((1 << bits) - 1) for c in codes[:valid]]
    dut = PlanePack(lanes=LANES, lane_bits=LANE_BITS, dense_width=DENSE)
    got = settle(dut, {"plane": lanes_value(codes), "valid": (1 << valid) - 1, "bits": bits},
                 "dense")
    assert got == cf.words_to_record(cf.pack_codes(want, bits, 16), 16)


def test_a_wrong_width_gives_other_codes():
    codes = [1, 2, 3, 4, 5, 6, 7]
    dense = cf.words_to_record(cf.pack_codes(codes, 4, 16), 16)
    dut = PlaneUnpack(lanes=LANES, lane_bits=LANE_BITS, dense_width=DENSE)
    assert settle(dut, {"dense": dense, "bits": 3}, "plane") != lanes_value(codes)


def test_bad_sizes():
    with pytest.raises(ValueError, match="dense_width"):
        PlanePack(lanes=8, lane_bits=8, dense_width=63)
    with pytest.raises(ValueError, match="lanes"):
        PlaneUnpack(lanes=0, lane_bits=8, dense_width=64)
