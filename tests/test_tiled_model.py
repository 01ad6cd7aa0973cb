"""The tiled chip's instruction-level model runs compiled programs exactly as the golden
reference computes them, layer by layer, and catches encodings that do not."""

import numpy as np
import pytest

from cosim.chip_model import random_image, random_inputs
from cosim.tiled_model import ModelError, TiledModel, run_program
from gen.tiled_compiler import compile_tiled, memory_words, slot_addresses
from golden.reference import run
from rtl.tiled.params import TiledParams

CONFIGS = [(4, 4, 8, 8), (2, 2, 4, 8), (8, 8, 8, 4), (4, 4, 16, 16), (3, 5, 8, 8)]


def _check_equal(image, program, inputs):
    outs = run_program(program, inputs)
    for x, got in zip(inputs, outs, strict=True):
        want = run(image, x)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert np.array_equal(g, w), f"layer {i} differs"


@pytest.mark.parametrize("model", ["cnn", "mlp", "resnet"])
@pytest.mark.parametrize("wbits,abits,rows,cols", CONFIGS)
def test_model_equals_reference(model, wbits, abits, rows, cols):
    image = random_image(3, model=model, wbits=wbits, abits=abits)
    params = TiledParams(wbits, abits, rows, cols)
    inputs = random_inputs(4, image, 2)
    _check_equal(image, compile_tiled(image, params, slots=2), inputs)


def test_model_catches_a_corrupted_weight():
    image = random_image(7, model="cnn", wbits=4, abits=4)
    params = TiledParams(4, 4, 8, 8)
    program = compile_tiled(image, params)
    x = random_inputs(8, image, 1)
    lay = program.layout.layers[1]
    program.words[lay.w_addr] ^= (1 << 64) - 1   # every code of the first beats
    outs = run_program(program, x)[0]
    want = run(image, x[0])
    assert np.array_equal(outs[0], want[0])
    assert not np.array_equal(outs[1], want[1])


def test_model_refuses_overlapping_tensors():
    image = random_image(9, model="cnn", wbits=4, abits=4)
    params = TiledParams(4, 4, 8, 8)
    program = compile_tiled(image, params)
    words = memory_words(program, random_inputs(1, image, 1))
    model = TiledModel(params)
    # Point layer 1's output onto its own input.
    from rtl import chip_format as cf
    from rtl.tiled import format as tf
    dw = program.layout.descriptor_words
    d = model.descriptor(words, dw)
    d["out_act"] = d["in_act"]
    words[dw:2 * dw] = cf.record_to_words(cf.pack_record(tf.DESCRIPTOR, **d), dw, 64)
    in_addr, out_base = slot_addresses(program.layout, 0)
    with pytest.raises(ModelError, match="overlaps"):
        model.run(words, in_addr=in_addr, out_base=out_base)
