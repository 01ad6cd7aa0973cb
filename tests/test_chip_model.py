import numpy as np
import pytest

from cosim import chip_model
from cosim.chip_model import (
    ERR_BUFFER,
    ERR_UNKNOWN_OP,
    ChipModel,
    random_image,
    random_inputs,
    read_outputs,
    run_program,
)
from gen import compiler
from golden.reference import run
from rtl import chip_format as cf


def hardware(**changes):
    params = dict(wbits=4, abits=4, rows=8, cols=8, mem_width=64, max_bits=8, max_channels=64,
                  max_plane=64, wbuf_depth=8192)
    params.update(changes)
    return compiler.Hardware(**params, config_hash="test")


def check_equal(image, program, hw, inputs):
    words, results = run_program(program, hw, inputs)
    for slot, x in enumerate(inputs):
        assert results[slot].error == 0
        expected = run(image, x)
        got = read_outputs(words, program.layout, slot)
        assert len(got) == len(expected)
        for layer, (e, g) in enumerate(zip(expected, got, strict=True)):
            assert g.shape == e.shape, layer
            assert np.array_equal(g, e), f"slot {slot} layer {layer}"
    return words, results


# k = 2, 3, 4, 5, 8 for the array; the 8-bit end layers are cut into 4, 3, 2, 2, 1 slices.
@pytest.mark.parametrize("wbits,abits", [(2, 2), (3, 3), (4, 4), (5, 5), (8, 8), (2, 4),
                                         (4, 2), (3, 5), (8, 3)])
@pytest.mark.parametrize("model", ["cnn", "mlp", "resnet"])
def test_every_layer_equals_the_reference(wbits, abits, model):
    image = random_image(wbits * 10 + abits, model=model, wbits=wbits, abits=abits)
    hw = hardware(wbits=wbits, abits=abits)
    program = compiler.compile_image(image, hw, slots=3)
    check_equal(image, program, hw, random_inputs(abits, image, 3))


SPECS = [
    dict(name="c0", op="conv", in_shape=(3, 9, 9), out_shape=(13, 9, 9), kernel=3, stride=1,
         padding=1),
    dict(name="c1", op="conv", in_shape=(13, 9, 9), out_shape=(6, 4, 4), kernel=3, stride=2,
         padding=0),
    dict(name="c2", op="conv", in_shape=(6, 4, 4), out_shape=(6, 2, 2), kernel=1, stride=2,
         padding=0),
    dict(name="c3", op="conv", in_shape=(6, 2, 2), out_shape=(5, 2, 2), kernel=3, stride=1,
         padding=1),
    dict(name="fc0", op="fc", in_shape=(20,), out_shape=(9,)),
    dict(name="fc1", op="fc", in_shape=(9,), out_shape=(3,)),
]


@pytest.mark.parametrize("rows,cols,mem_width,wbits,abits,end_bits", [
    (8, 8, 64, 3, 2, 8), (4, 3, 32, 2, 3, 5), (5, 7, 128, 4, 5, 7), (1, 1, 16, 2, 2, 8),
    (16, 2, 64, 6, 4, 6),
])
def test_odd_shapes_widths_and_arrays(rows, cols, mem_width, wbits, abits, end_bits):
    image = random_image(rows * cols, wbits=wbits, abits=abits, end_bits=end_bits,
                         input_shape=(3, 9, 9), specs=SPECS)
    hw = hardware(wbits=wbits, abits=abits, rows=rows, cols=cols, mem_width=mem_width,
                  max_plane=81)
    program = compiler.compile_image(image, hw, slots=2)
    _, results = check_equal(image, program, hw, random_inputs(1, image, 2))
    assert [t.mac_beats for t in results[0].layers] == [
        lay["mac_beats"] for lay in program.layout["layers"]]


def test_a_wrong_encoding_is_caught():
    """The model rebuilds weights from slices itself: a compiler that skipped the re-coding
    of 8-bit weights on a 3-bit array would not pass."""
    image = random_image(11, wbits=3, abits=3)
    hw = hardware(wbits=3, abits=3)
    original = compiler.cf.recode_weight
    try:
        compiler.cf.recode_weight = lambda q, layer_bits, wbits: int(q)
        bad = compiler.compile_image(image, hw)
    finally:
        compiler.cf.recode_weight = original
    words, _ = run_program(bad, hw, random_inputs(0, image, 1))
    got = read_outputs(words, bad.layout, 0)
    expected = run(image, random_inputs(0, image, 1)[0])
    assert not np.array_equal(got[0], expected[0])


def test_one_corrupt_weight_changes_that_layer_and_later_only():
    image = random_image(12, wbits=4, abits=4)
    hw = hardware()
    program = compiler.compile_image(image, hw)
    x = random_inputs(3, image, 1)
    good, _ = run_program(program, hw, x)
    lay = program.layout["layers"][2]
    program.words[lay["w_addr"] + 5] ^= 1 << 7
    bad, _ = run_program(program, hw, x)
    a, b = read_outputs(good, program.layout), read_outputs(bad, program.layout)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[2], b[2])


def test_outputs_overwrite_the_poison_and_nothing_else():
    image = random_image(13, model="mlp")
    hw = hardware()
    program = compiler.compile_image(image, hw, slots=2)
    x = random_inputs(4, image, 1)
    words, _ = run_program(program, hw, x)  # slot 0 only
    s = program.layout["slots"]
    assert words[:s["output_base"]] == compiler.memory_words(program, x)[:s["output_base"]]
    assert set(words[s["output_base"] + s["output_stride"]:]) == {compiler.poison_word(64)}
    assert compiler.poison_word(64) not in words[s["output_base"]:
                                                 s["output_base"] + s["output_stride"]]


def patched_descriptor(program, index, **fields):
    dw = cf.descriptor_words(program.mem_width)
    d = cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(
        program.words[index * dw:(index + 1) * dw], program.mem_width))
    d.update(fields)
    program.words[index * dw:(index + 1) * dw] = cf.record_to_words(
        cf.pack_record(cf.DESCRIPTOR, **d), dw, program.mem_width)


@pytest.mark.parametrize("fields,flag", [
    (dict(op=3), ERR_UNKNOWN_OP),
    (dict(out_c=65), ERR_BUFFER),
    (dict(w_slices=3), ERR_BUFFER),  # 8-bit max_bits on a 4-bit array: at most 2 slices
    (dict(in_h=9), ERR_BUFFER),
])
def test_error_flags_stop_the_program(fields, flag):
    image = random_image(14)
    hw = hardware(wbuf_depth=4096)
    program = compiler.compile_image(image, hw)
    patched_descriptor(program, 1, **fields)
    words, results = run_program(program, hw, random_inputs(5, image, 1))
    assert results[0].error == flag
    assert len(results[0].layers) == 1


def test_inconsistent_program_is_a_model_error():
    image = random_image(15)
    hw = hardware()
    program = compiler.compile_image(image, hw)
    patched_descriptor(program, 2, in_c=16)  # the bank holds 32 channels
    with pytest.raises(chip_model.ModelError, match="bank"):
        run_program(program, hw, random_inputs(5, image, 1))
    words = compiler.memory_words(program, random_inputs(5, image, 1))
    with pytest.raises(chip_model.ModelError, match="outside memory"):
        ChipModel(hw).run(words, in_addr=len(words) - 2, out_base=0)


def test_residual_layers_read_the_skip_from_the_bank_they_write():
    """The resnet: the skip term is applied (a wrong skip_mult in memory changes exactly that
    layer), and the program's skip bit is what makes the model add it."""
    image = random_image(21, model="resnet")
    hw = hardware()
    program = compiler.compile_image(image, hw)
    xs = random_inputs(21, image, 1)
    check_equal(image, program, hw, xs)
    lay = program.layout["layers"][2]
    assert lay["skip"] == 0 and program.layout["layers"][3]["skip"] is None
    # channel 0's skip_mult, + 2**shift: one more output code per skip code
    n = cf.consts_words(hw.mem_width)
    rec = cf.unpack_record(cf.CONSTS, cf.words_to_record(
        program.words[lay["c_addr"]:lay["c_addr"] + n], hw.mem_width))
    assert rec["skip_mult"] == int(image.layers[2].skip_mult[0])
    rec["skip_mult"] += 1 << rec["shift"]
    program.words[lay["c_addr"]:lay["c_addr"] + n] = cf.record_to_words(
        cf.pack_record(cf.CONSTS, **rec), n, hw.mem_width)
    words, _ = run_program(program, hw, xs)
    got, want = read_outputs(words, program.layout), run(image, xs[0])
    assert np.array_equal(got[1], want[1]) and not np.array_equal(got[2][0], want[2][0])
    assert np.array_equal(got[2][1:], want[2][1:])
    # a cleared skip bit: the layer runs without the add
    program = compiler.compile_image(image, hw)
    patched_descriptor(program, 2, skip=0)
    words, _ = run_program(program, hw, xs)
    assert not np.array_equal(read_outputs(words, program.layout)[2], want[2])


def test_skip_flags_and_model_errors():
    image = random_image(22, model="resnet")
    hw = hardware()
    xs = random_inputs(22, image, 1)
    program = compiler.compile_image(image, hw)
    patched_descriptor(program, 1, skip=1)  # layer 1 writes the bank of the input: 1x8x8
    with pytest.raises(chip_model.ModelError, match="skip"):
        run_program(program, hw, xs)
    program = compiler.compile_image(image, hw)
    patched_descriptor(program, 6, skip=1)  # residual logits: the chip's buffer flag
    _, results = run_program(program, hw, xs)
    assert results[0].error == ERR_BUFFER and len(results[0].layers) == 6
