import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golden.integer import dorefa_odd_values
from rtl import chip_format as cf


def test_descriptor_fits_three_64_bit_words():
    assert cf.descriptor_words(64) == 3
    assert cf.consts_words(64) == 2
    # with the residual fields (skip bit, 32-bit skip_mult): sizes stated in the docstring
    assert (cf.DESCRIPTOR.size, cf.CONSTS.size) == (181, 102)


def test_residual_fields_round_trip():
    fields = dict(mult=-5, offset=7, shift=20, skip_mult=-(1 << 31))
    value = cf.pack_record(cf.CONSTS, **fields)
    assert cf.unpack_record(cf.CONSTS, value) == fields
    d = cf.unpack_record(cf.DESCRIPTOR, cf.pack_record(cf.DESCRIPTOR, op=cf.OP_CONV, skip=1))
    assert d["skip"] == 1 and d["logits"] == 0 and d["in_from_mem"] == 0
    with pytest.raises(ValueError, match="skip_mult"):
        cf.pack_record(cf.CONSTS, skip_mult=1 << 31)


def test_record_round_trip_with_signed_fields():
    fields = dict(mult=-32768, offset=-(1 << 47), shift=47, skip_mult=0)
    value = cf.pack_record(cf.CONSTS, **fields)
    words = cf.record_to_words(value, cf.consts_words(64), 64)
    assert cf.unpack_record(cf.CONSTS, cf.words_to_record(words, 64)) == fields


def test_record_rejects_out_of_range_and_unknown_fields():
    with pytest.raises(ValueError, match="mult"):
        cf.pack_record(cf.CONSTS, mult=1 << 15)
    with pytest.raises(ValueError, match="unknown"):
        cf.pack_record(cf.DESCRIPTOR, bogus=1)


@given(st.integers(1, 16), st.sampled_from([32, 64, 128]), st.data())
def test_codes_round_trip(bits, width, data):
    codes = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=40))
    words = cf.pack_codes(codes, bits, width)
    assert len(words) == cf.words_for_bits(len(codes) * bits, width)
    assert all(0 <= w < (1 << width) for w in words)
    assert cf.unpack_codes(words, len(codes), bits, width) == codes


def test_tensor_channels_start_on_word_boundaries():
    t = np.arange(2 * 3 * 3).reshape(2, 3, 3) % 16
    words = cf.pack_tensor(t, 4, 32)          # 9 codes x 4 bits = 36 bits -> 2 words/channel
    assert len(words) == cf.tensor_words(t.shape, 4, 32) == 4
    assert words[2] & 0xF == t[1, 0, 0]
    assert (cf.unpack_tensor(words, t.shape, 4, 32) == t).all()


def test_signed_logits_round_trip():
    t = np.array([-32768, -1, 0, 32767])
    words = cf.pack_tensor(t, 16, 64)
    assert (cf.unpack_tensor(words, t.shape, 16, 64, signed_codes=True) == t).all()


@pytest.mark.parametrize("layer_bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("wbits", [2, 3, 4, 5, 8])
def test_sliced_weights_sum_to_the_layer_odd_value(layer_bits, wbits):
    # Narrower layers are re-coded to one wider slice; wider ones are cut into several.
    n = cf.weight_slices(layer_bits, wbits)
    q = np.arange(1 << layer_bits)
    total = np.zeros_like(q)
    for code in q:
        recoded = cf.recode_weight(code, layer_bits, wbits)
        assert 0 <= recoded < (1 << (n * wbits))
        slices = [(recoded >> (wbits * j)) & ((1 << wbits) - 1) for j in range(n)]
        total[code] = sum(int(dorefa_odd_values(s, wbits)) << (wbits * j)
                          for j, s in enumerate(slices))
    assert (total == dorefa_odd_values(q, layer_bits)).all()


# -- golden vectors: the binary layout, written out by hand from the module's docstring --------
# Swapping or resizing a field must change the layout version (gen/compiler.py LAYOUT_VERSION)
# and these tables together; nothing here is computed by the code under test.

DESCRIPTOR_FIELDS = [  # (name, offset, width, signed)
    ("op", 0, 2, False), ("in_c", 2, 12, False), ("in_h", 14, 8, False),
    ("in_w", 22, 8, False), ("out_c", 30, 12, False), ("out_h", 42, 8, False),
    ("out_w", 50, 8, False), ("kernel", 58, 4, False), ("stride", 62, 2, False),
    ("pad", 64, 2, False), ("w_slices", 66, 3, False), ("a_slices", 69, 3, False),
    ("in_bits", 72, 5, False), ("out_bits", 77, 5, False), ("logits", 82, 1, False),
    ("in_from_mem", 83, 1, False), ("skip", 84, 1, False), ("w_addr", 85, 32, False),
    ("c_addr", 117, 32, False), ("o_addr", 149, 32, False),
]
CONSTS_FIELDS = [("mult", 0, 16, True), ("offset", 16, 48, True), ("shift", 64, 6, False),
                 ("skip_mult", 70, 32, True)]


@pytest.mark.parametrize("layout, table", [(cf.DESCRIPTOR, DESCRIPTOR_FIELDS),
                                           (cf.CONSTS, CONSTS_FIELDS)])
def test_field_offsets_and_widths_are_pinned(layout, table):
    got = [(name, f.offset, f.width, f.shape.signed) for name, f in layout]
    assert got == table


def test_descriptor_golden_words():
    fields = dict(op=1, in_c=3, in_h=5, in_w=6, out_c=7, out_h=2, out_w=1, kernel=3, stride=2,
                  pad=1, w_slices=2, a_slices=1, in_bits=8, out_bits=4, logits=0,
                  in_from_mem=1, skip=0, w_addr=0x1234, c_addr=0x5678, o_addr=0x9A)
    words = cf.record_to_words(cf.pack_record(cf.DESCRIPTOR, **fields), 3, 64)
    # by hand: word 0 = op | in_c<<2 | in_h<<14 | in_w<<22 | out_c<<30 | out_h<<42 | out_w<<50
    # | kernel<<58 | stride<<62; word 1 = pad | w_slices<<2 | a_slices<<5 | in_bits<<8 |
    # out_bits<<13 | in_from_mem<<19 | w_addr<<21 | c_addr<<53 (low 11 bits); word 2 = the rest
    # of c_addr | o_addr<<21.
    assert words == [0x8C040801C181400D, 0xCF00000246888829, 0x000000001340000A]


def test_consts_golden_words():
    value = cf.pack_record(cf.CONSTS, mult=-2, offset=-(1 << 40) + 5, shift=33, skip_mult=-1)
    # word 0 = mult (0xFFFE) | offset (48-bit 0xFF0000000005) << 16; word 1 = shift | skip_mult
    # (0xFFFFFFFF) << 6
    assert cf.record_to_words(value, 2, 64) == [0xFF0000000005FFFE, 0x3FFFFFFFE1]


def test_pack_tensor_golden_words():
    # 2 channels of a 2x3 plane, 4-bit codes, 16-bit words: each channel's six codes LSB first
    # (24 bits, 2 words), every channel from a word boundary.
    t = np.array([[[1, 2, 3], [4, 5, 6]], [[15, 0, 9], [8, 7, 10]]])
    assert cf.pack_tensor(t, 4, 16) == [0x4321, 0x0065, 0x890F, 0x00A7]
    # 16-bit logits, two's complement
    assert cf.pack_tensor(np.array([-1, 2, -32768]), 16, 32) == [0xFFFF, 0x0002, 0x8000]
