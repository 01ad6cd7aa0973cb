"""The tiled compiler: encodings as rtl/tiled/format.py defines them, placement in the
activation memory, the layout's JSON round trip, and one-line refusals."""

import dataclasses

import numpy as np
import pytest

from cosim.chip_model import random_image, random_inputs
from gen.tiled_compiler import (
    compile_tiled,
    drain_lanes,
    input_words,
    layout_from_json,
    layout_to_json,
    requirements,
)
from pact.errors import UserError
from rtl import chip_format as cf
from rtl.tiled import format as tf
from rtl.tiled.params import TiledParams


def test_weight_beats_follow_the_documented_order():
    image = random_image(1, model="cnn", wbits=4, abits=4)
    p = TiledParams(4, 4, 8, 8)
    prog = compile_tiled(image, p)
    plan = prog.layout.layers[1]          # a hidden layer: 4-bit weights, no slices
    w = np.asarray(image.layers[1].weights, dtype=np.int64)
    cout, cin, k, _ = w.shape
    value = cf.words_to_record(prog.words[plan.w_addr:plan.w_addr + plan.w_words], 64)
    b = 0
    for t in range(-(-cout // p.rows)):
        for ci in range(cin):
            for ky in range(k):
                for kx in range(k):
                    for r in range(p.rows):
                        co = t * p.rows + r
                        want = int(w[co, ci, ky, kx]) if co < cout else 0
                        got = (value >> ((b * p.rows + r) * p.wbits)) & 0xF
                        assert got == want, (t, ci, ky, kx, r)
                    b += 1
    assert b == plan.w_beats


def test_input_is_stored_as_slice_channels_in_slots():
    image = random_image(2, model="cnn", wbits=2, abits=2)
    p = TiledParams(2, 2, 8, 8)
    prog = compile_tiled(image, p)
    x = random_inputs(3, image, 1)[0]
    words = input_words(x, prog.layout)
    assert prog.layout.layers[0].a_slices == 4
    acts = tf.ext_to_act(words, tf.act_words(prog.layout.layers[0].in_shape, p), p)
    sliced = tf.unpack_act_words(acts, prog.layout.layers[0].in_shape, p)
    rebuilt = sum(sliced[i::4] << (2 * i) for i in range(4))
    assert np.array_equal(rebuilt, x)


def test_outputs_never_overlap_inputs_on_chip():
    image = random_image(4, model="resnet", wbits=4, abits=4)
    p = TiledParams(4, 4, 8, 8)
    prog = compile_tiled(image, p)
    for plan in prog.layout.layers:
        if plan.kind == "logits":
            continue
        in_n = tf.act_words(plan.in_shape, p)
        out_n = tf.act_words(plan.out_shape, p)
        assert plan.out_act + out_n <= plan.in_act or plan.in_act + in_n <= plan.out_act
        assert max(plan.in_act + in_n, plan.out_act + out_n) <= p.act_depth


def test_layout_json_round_trip_and_determinism():
    image = random_image(5, model="resnet", wbits=4, abits=4)
    p = TiledParams(4, 4, 8, 8)
    a, b = compile_tiled(image, p, slots=3), compile_tiled(image, p, slots=3)
    assert a.words == b.words
    text = layout_to_json(a.layout)
    assert layout_from_json(text) == a.layout
    assert layout_to_json(layout_from_json(text)) == text


def test_refuses_a_network_that_does_not_fit_with_the_size_needed():
    image = random_image(6, model="cnn", wbits=4, abits=4, input_shape=(1, 16, 16))
    p = TiledParams(4, 4, 8, 8, act_kib=1)
    with pytest.raises(UserError, match=r"needs \d+ activation words \(\d+ KiB\).*--act-kib"):
        compile_tiled(image, p)


def test_refuses_a_kernel_past_max_kernel():
    image = random_image(7, model="cnn", wbits=4, abits=4, input_shape=(1, 32, 32))
    with pytest.raises(UserError, match="max_kernel"):
        compile_tiled(image, TiledParams(4, 4, 8, 8, act_kib=64))


def test_requirements_size_resnet20_exactly():
    """ResNet20 (random codes, its shapes): the fc is a 1x1 layer over the 8x8 plane whose
    outputs are summed (colsum), so the largest kernel is the convs' 3; its sum over 64
    channels x 64 pixels of 8-bit weights (2 slices at 4 bits) on 4-bit codes is the largest
    reduction; the stem's 3 channels of 8-bit codes are 6 slice channels."""
    image = random_image(0, model="resnet20", wbits=4, abits=4, input_shape=(3, 32, 32))
    p = requirements(image, TiledParams(4, 4, 16, 16))
    assert (p.max_kernel, p.max_in_channels, p.max_bits, p.colsum) == (3, 64, 8, True)
    assert p.acc_cap == 64 * 8 * 8 * 255 * 15
    assert p.acc_bound == p.acc_cap
    assert p.acc_width == 25
    # The stem reduces 6 slice channels x 9 taps x 2 weight slices = 108 beats per tile, less
    # than the 16 * 16 / 2 = 128 drain cycles of 2 lanes: 4 lanes (64 cycles).
    assert p.requant_lanes == 4
    compile_tiled(image, p)
    # Without column sums the fc is a kernel-8 layer, past this chip's max_kernel.
    with pytest.raises(UserError, match="max_kernel"):
        compile_tiled(image, dataclasses.replace(p, colsum=False))


def test_a_column_sum_past_the_max_bounds_is_carried_by_acc_cap():
    """At w8a8 ResNet20's fc sums 64 channels x 64 pixels of 8-bit products: more than any
    layer within max_kernel 3 and 64 channels, so acc_cap widens the accumulators."""
    image = random_image(0, model="resnet20", wbits=8, abits=8, input_shape=(3, 32, 32))
    p = requirements(image, TiledParams(8, 8, 16, 16))
    assert p.acc_cap == 64 * 64 * 255 * 255 == p.acc_bound
    assert dataclasses.replace(p, acc_cap=0).acc_bound < p.acc_cap
    compile_tiled(image, p)
    with pytest.raises(UserError, match="--acc-cap"):
        compile_tiled(image, dataclasses.replace(p, acc_cap=0))


def test_requirements_keep_the_lanes_where_the_drain_keeps_up():
    """The digits CNN on 8x8: its shortest reduction of several tiles (the stem, 1 channel of
    8-bit codes = 2 slice channels, 9 taps, 2 weight slices: 36 beats) covers 64 / 2 cycles."""
    image = random_image(0, model="cnn", wbits=4, abits=4)
    assert requirements(image, TiledParams(4, 4, 8, 8)).requant_lanes == 2


@pytest.mark.parametrize("rows, cols, lanes, shortest, want", [
    (16, 16, 2, 108, 4), (16, 16, 2, 128, 2), (16, 16, 2, 127, 4), (16, 16, 1, 1, 16),
    (8, 8, 2, None, 2), (8, 8, 4, 500, 4), (4, 8, 1, 9, 4),
])
def test_drain_lanes_grow_until_the_drain_hides_behind_the_shortest_reduction(
        rows, cols, lanes, shortest, want):
    got = drain_lanes(TiledParams(4, 4, rows, cols, requant_lanes=lanes), shortest)
    assert got == want


def test_refuses_a_layer_past_the_accumulators():
    image = random_image(0, model="resnet20", wbits=4, abits=4)
    p = requirements(image, TiledParams(4, 4, 16, 16))
    p = dataclasses.replace(p, acc_cap=p.acc_cap - 1)
    with pytest.raises(UserError, match="--acc-cap"):
        compile_tiled(image, p)


def test_refuses_other_bit_widths():
    image = random_image(8, model="cnn", wbits=4, abits=4)
    image.meta.update(wbits=4, abits=4)
    with pytest.raises(UserError, match="abits=2"):
        compile_tiled(image, TiledParams(4, 2, 8, 8))


def test_refuses_a_replayed_channel_tile_larger_than_the_ring():
    image = random_image(9, model="cnn", wbits=4, abits=4)
    with pytest.raises(UserError, match=r"must fit the weight ring.*--ring-beats 512"):
        compile_tiled(image, TiledParams(4, 4, 8, 8, ring_beats=256))
