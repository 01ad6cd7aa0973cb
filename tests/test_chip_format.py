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
