"""The model image format: round trip, and every kind of broken file rejected with ImageError."""

import hashlib
import json
import struct

import numpy as np
import pytest

from golden.image import (
    FORMAT_VERSION,
    MAGIC,
    ImageError,
    Layer,
    ModelImage,
    format_version,
    from_bytes,
    load,
    save,
    to_bytes,
    validate,
)
from golden.integer import LOGIT_BITS
from pact.cli import main as pact_main
from pact.errors import UserError


def small_image(seed=0, wbits=4, abits=3):
    """conv 1x4x4 -> 8x2x2 (stride 2), fc 32 -> 3 logits; random in-range constants."""
    rng = np.random.default_rng(seed)
    conv = Layer(
        name="conv0", op="conv", in_shape=(1, 4, 4), out_shape=(8, 2, 2), wbits=8, in_bits=8,
        out_bits=abits, out_kind="pact",
        weights=rng.integers(0, 256, size=(8, 1, 3, 3)).astype(np.uint8),
        mult=rng.integers(1 << 14, 1 << 15, size=8).astype(np.int16),
        offset=rng.integers(-(1 << 30), 1 << 30, size=8), shift=np.full(8, 24, dtype=np.uint8),
        kernel=3, stride=2, padding=1, alpha=1.5,
    )
    fc = Layer(
        name="fc", op="fc", in_shape=(32,), out_shape=(3,), wbits=wbits, in_bits=abits,
        out_bits=LOGIT_BITS, out_kind="logits",
        weights=rng.integers(0, 1 << wbits, size=(3, 32)).astype(np.uint8),
        mult=rng.integers(-(1 << 15) + 1, 1 << 15, size=3).astype(np.int16),
        offset=rng.integers(-(1 << 20), 1 << 20, size=3), shift=np.full(3, 12, dtype=np.uint8),
    )
    return ModelImage(input_shape=(1, 4, 4), input_bits=8, layers=[conv, fc],
                      meta={"model": "test", "logit_scale": 0.25})


def rehash(body):
    """A file whose hash is right for a tampered body (to reach the checks after the hash)."""
    return body + hashlib.sha256(body).digest()


def tamper_header(data, edit):
    """Rewrite the JSON header with ``edit(header)`` and fix up lengths and hash."""
    _, version, head_len = struct.unpack_from("<8sII", data)
    header = json.loads(data[16:16 + head_len])
    payload = data[16 + head_len:-32]
    edit(header)
    head = json.dumps(header).encode()
    return rehash(struct.pack("<8sII", MAGIC, version, len(head)) + head + payload)


def test_round_trip_keeps_every_field(tmp_path):
    image = small_image()
    path = tmp_path / "m.pactimg"
    digest = save(image, path)
    back = load(path)
    assert back.input_shape == image.input_shape and back.input_bits == image.input_bits
    assert back.meta["model"] == "test" and back.logit_scale == 0.25
    assert back.meta["content_hash"] == digest == hashlib.sha256(
        path.read_bytes()[:-32]).hexdigest()
    for a, b in zip(image.layers, back.layers, strict=True):
        for name in ("name", "op", "wbits", "in_bits", "out_bits", "out_kind", "kernel",
                     "stride", "padding", "alpha"):
            assert getattr(a, name) == getattr(b, name)
        assert tuple(a.in_shape) == b.in_shape and tuple(a.out_shape) == b.out_shape
        for name in ("weights", "mult", "offset", "shift"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
    assert to_bytes(back) == path.read_bytes()  # re-serializing gives the same bytes
    assert not (tmp_path / "m.pactimg.tmp").exists()


def test_layer_properties():
    conv, fc = small_image().layers
    assert conv.out_channels == 8 and conv.reduction == 9 and conv.macs == 32 * 9
    assert fc.reduction == 32 and fc.macs == 3 * 32


def test_serialization_is_deterministic():
    assert to_bytes(small_image(3)) == to_bytes(small_image(3))
    assert to_bytes(small_image(3)) != to_bytes(small_image(4))


@pytest.mark.parametrize("cut", [0, 10, 20, 100, -33, -1])
def test_truncated_file_is_rejected(cut):
    data = to_bytes(small_image())
    with pytest.raises(ImageError, match="truncated|corrupted|hash"):
        from_bytes(data[:cut])


def test_padded_file_is_rejected():
    with pytest.raises(ImageError):
        from_bytes(to_bytes(small_image()) + b"\0")


@pytest.mark.parametrize("where", ["header", "payload", "hash"])
def test_flipped_byte_is_rejected(where):
    data = bytearray(to_bytes(small_image()))
    _, _, head_len = struct.unpack_from("<8sII", data)
    pos = {"header": 16 + head_len // 2, "payload": 16 + head_len + 5, "hash": len(data) - 3}
    data[pos[where]] ^= 0x40
    with pytest.raises(ImageError, match="corrupted|JSON"):
        from_bytes(bytes(data))


def test_bad_magic_and_version_are_named():
    data = to_bytes(small_image())
    with pytest.raises(ImageError, match="magic"):
        from_bytes(rehash(b"NOTANIMG" + data[8:-32]))
    newer = struct.pack("<I", FORMAT_VERSION + 1)
    with pytest.raises(ImageError, match="version"):
        from_bytes(rehash(data[:8] + newer + data[12:-32]))


@pytest.mark.parametrize("edit,message", [
    (lambda h: h["layers"][1].update(in_bits=5), "in_bits"),
    (lambda h: h["layers"][1].update(in_shape=[31]), "input shape"),
    (lambda h: h["layers"][0].update(out_shape=[8, 3, 3]), "output shape"),
    (lambda h: h["layers"][0].update(stride=1), "output shape"),
    (lambda h: h["layers"][0].update(op="pool"), "unknown op"),
    (lambda h: h["layers"][0].update(out_kind="logits"), "logits"),
    (lambda h: h["layers"][1].update(wbits=1), "wbits"),
    (lambda h: h.update(input_bits=17), "input_bits"),
    (lambda h: h["layers"][0]["arrays"]["mult"].update(shape=[4]), "inconsistent|mult"),
    (lambda h: h["layers"][0]["arrays"]["weights"].update(offset=10**6), "payload"),
    (lambda h: h["layers"][0].pop("kernel"), "inconsistent"),
    (lambda h: h["layers"][0]["arrays"]["shift"].update(dtype="<f8", shape=[1]), "integers"),
    (lambda h: h.update(layers=[]), "no layers"),
])
def test_inconsistent_header_is_rejected_with_a_named_problem(edit, message):
    with pytest.raises(ImageError, match=message):
        from_bytes(tamper_header(to_bytes(small_image()), edit))


def test_out_of_range_codes_and_constants_are_rejected():
    for name, value, message in [("weights", 16, "weight codes"), ("mult", -(1 << 15), "mult"),
                                 ("offset", 1 << 47, "offset"), ("shift", 0, "shift"),
                                 ("shift", 48, "shift")]:
        image = small_image()
        arr = getattr(image.layers[1], name).astype(np.int64)
        arr.flat[0] = value
        setattr(image.layers[1], name, arr)
        with pytest.raises(ImageError, match=message):
            validate(image)


def test_weight_code_out_of_range_in_a_file_is_rejected():
    # 4-bit weights stored as uint8: a code of 16 is representable in the file, not valid.
    image = small_image()
    data = bytearray(to_bytes(image))
    _, _, head_len = struct.unpack_from("<8sII", data)
    header = json.loads(data[16:16 + head_len])
    spec = header["layers"][1]["arrays"]["weights"]
    data[16 + head_len + spec["offset"]] = 16
    with pytest.raises(ImageError, match="weight codes"):
        from_bytes(rehash(bytes(data[:-32])))


def test_load_names_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load(tmp_path / "nope.pactimg")
    with pytest.raises(ImageError, match="directory"):
        load(tmp_path)


def test_image_error_is_a_user_error_and_the_cli_exits_2(tmp_path, capsys):
    assert issubclass(ImageError, UserError)
    bad = tmp_path / "bad.pactimg"
    bad.write_bytes(to_bytes(small_image())[:-5])
    assert pact_main(["golden", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "truncated" in err or "corrupted" in err
    assert "Traceback" not in err


# -- residual layers ---------------------------------------------------------------------------


def residual_image(seed=0, abits=3):
    """small_image with a residual conv (8x2x2 -> 8x2x2, adds conv0) before the fc."""
    rng = np.random.default_rng(seed)
    image = small_image(seed, abits=abits)
    res = Layer(
        name="res", op="conv", in_shape=(8, 2, 2), out_shape=(8, 2, 2), wbits=4, in_bits=abits,
        out_bits=abits, out_kind="pact",
        weights=rng.integers(0, 16, size=(8, 8, 3, 3)).astype(np.uint8),
        mult=rng.integers(1 << 14, 1 << 15, size=8).astype(np.int16),
        offset=rng.integers(-(1 << 30), 1 << 30, size=8), shift=np.full(8, 20, dtype=np.uint8),
        kernel=3, stride=1, padding=1, alpha=1.0, skip=0,
        skip_mult=rng.integers(-(1 << 31) + 1, 1 << 31, size=8).astype(np.int32),
    )
    image.layers.insert(1, res)
    return image


def test_residual_round_trip_keeps_skip_and_skip_mult(tmp_path):
    image = residual_image()
    save(image, tmp_path / "r.pactimg")
    back = load(tmp_path / "r.pactimg")
    assert back.layers[1].skip == 0 and back.layers[0].skip is None
    assert back.layers[1].skip_mult.dtype == np.int32
    assert np.array_equal(back.layers[1].skip_mult, image.layers[1].skip_mult)
    assert back.layers[0].skip_mult is None and back.layers[2].skip_mult is None


def test_version_is_1_without_residual_layers_and_2_with_them():
    plain, res = to_bytes(small_image()), to_bytes(residual_image())
    assert struct.unpack_from("<I", plain, 8)[0] == 1
    assert struct.unpack_from("<I", res, 8)[0] == 2 == FORMAT_VERSION - 1
    assert b'"skip"' not in plain  # version-1 files are what they were before skips existed
    # a version-1 header that names a skip is refused, not read as a plain layer
    forged = rehash(res[:8] + struct.pack("<I", 1) + res[12:-32])
    with pytest.raises(ImageError, match="residual layer in a version-1"):
        from_bytes(forged)


def _set(layer_index, **fields):
    def edit(image):
        for k, v in fields.items():
            setattr(image.layers[layer_index], k, v)
    return edit


@pytest.mark.parametrize("edit,message", [
    (_set(1, skip=1), "earlier layer"),
    (_set(1, skip=2), "earlier layer"),
    (_set(1, skip=-1), "earlier layer"),
    (_set(1, skip=True), "earlier layer"),
    (_set(1, skip_mult=None), "skip_mult is missing"),
    (_set(1, skip=None), "skip_mult without skip"),
    (_set(1, skip_mult=np.ones(4, dtype=np.int32)), "one entry per output channel"),
    (_set(1, skip_mult=np.full(8, 1 << 31, dtype=np.int64)), "skip_mult outside"),
    (_set(1, skip_mult=np.full(8, 0.5)), "integers"),
    (_set(1, offset=np.full(8, (1 << 47) - 10), skip_mult=np.full(8, 2, dtype=np.int32)),
     "leaves the signed 48-bit"),
    (_set(2, skip=1, skip_mult=np.ones(3, dtype=np.int32)), "only a PACT layer"),
    (lambda im: im.layers[0].__setattr__("out_kind", "logits"), "logits"),
])
def test_bad_skips_are_rejected(edit, message):
    image = residual_image()
    edit(image)
    with pytest.raises(ImageError, match=message):
        validate(image)


def test_skip_of_another_shape_is_rejected():
    image = residual_image()
    # conv0 writes 8x2x2; a skip from a layer with another output shape is refused
    image.layers.insert(0, Layer(
        name="pre", op="conv", in_shape=(1, 4, 4), out_shape=(1, 4, 4), wbits=8, in_bits=8,
        out_bits=8, out_kind="pact", weights=np.zeros((1, 1, 1, 1), dtype=np.uint8),
        mult=np.ones(1, dtype=np.int16), offset=np.zeros(1, dtype=np.int64),
        shift=np.ones(1, dtype=np.uint8), alpha=1.0))
    image.layers[1].in_bits = 8
    image.layers[2].skip = 0
    with pytest.raises(ImageError, match="output shape"):
        validate(image)


# -- format version 3: pool, averaged input, addressed skip --------------------------------------


def test_v1_and_v2_files_keep_their_bytes():
    """SHA-256 of these two images as written by image.py before version 3 existed (main at
    5e32bc3): adding the version-3 fields must not move a byte of the older files."""
    assert hashlib.sha256(to_bytes(small_image())).hexdigest() == (
        "ad442af868c828015a721d39d10d48ea5ab2346225e3d56e00d943de4dbdf50f")
    assert hashlib.sha256(to_bytes(residual_image())).hexdigest() == (
        "09d4894adf1605ff6e7df149d548138922f8a435171a8c6c9af37a7228112a93")


def v3_image(seed=0, abits=3):
    """conv 1x4x4 -> 8x4x4 + max pool (8x2x2), conv s2 -> 16x1x1 + option-A skip(conv0: stride
    2, channel offset 4), fc averaging 16x1x1 -> 3 logits."""
    rng = np.random.default_rng(seed)
    conv0 = Layer(
        name="conv0", op="conv", in_shape=(1, 4, 4), out_shape=(8, 2, 2), wbits=8, in_bits=8,
        out_bits=abits, out_kind="pact",
        weights=rng.integers(0, 256, size=(8, 1, 3, 3)).astype(np.uint8),
        mult=rng.integers(0, 1 << 15, size=8).astype(np.int16),
        offset=rng.integers(-(1 << 30), 1 << 30, size=8), shift=np.full(8, 24, dtype=np.uint8),
        kernel=3, stride=1, padding=1, alpha=1.5, pool="max2",
    )
    conv1 = Layer(
        name="conv1", op="conv", in_shape=(8, 2, 2), out_shape=(16, 1, 1), wbits=4,
        in_bits=abits, out_bits=abits, out_kind="pact",
        weights=rng.integers(0, 16, size=(16, 8, 3, 3)).astype(np.uint8),
        mult=rng.integers(-(1 << 15) + 1, 1 << 15, size=16).astype(np.int16),
        offset=rng.integers(-(1 << 30), 1 << 30, size=16),
        shift=np.full(16, 20, dtype=np.uint8), kernel=3, stride=2, padding=1, alpha=1.0,
        skip=0, skip_mult=rng.integers(-(1 << 24), 1 << 24, size=16).astype(np.int32),
        skip_stride=2, skip_channel_offset=4,
    )
    fc = Layer(
        name="fc", op="fc", in_shape=(16, 1, 1), out_shape=(3,), wbits=8, in_bits=abits,
        out_bits=LOGIT_BITS, out_kind="logits",
        weights=rng.integers(0, 256, size=(3, 16)).astype(np.uint8),
        mult=rng.integers(-(1 << 15) + 1, 1 << 15, size=3).astype(np.int16),
        offset=rng.integers(-(1 << 20), 1 << 20, size=3), shift=np.full(3, 12, dtype=np.uint8),
        in_pool="avg",
    )
    return ModelImage(input_shape=(1, 4, 4), input_bits=8, layers=[conv0, conv1, fc],
                      meta={"model": "test-v3"})


def test_v3_round_trip_keeps_the_new_fields(tmp_path):
    image = v3_image()
    save(image, tmp_path / "v3.pactimg")
    data = (tmp_path / "v3.pactimg").read_bytes()
    assert struct.unpack_from("<I", data, 8)[0] == FORMAT_VERSION == 3
    back = load(tmp_path / "v3.pactimg")
    assert [lay.pool for lay in back.layers] == ["max2", None, None]
    assert [lay.in_pool for lay in back.layers] == [None, None, "avg"]
    assert (back.layers[1].skip_stride, back.layers[1].skip_channel_offset) == (2, 4)
    assert (back.layers[0].skip_stride, back.layers[0].skip_channel_offset) == (1, 0)
    assert back.layers[0].conv_shape == (8, 4, 4) and back.layers[1].conv_shape == (16, 1, 1)
    assert back.layers[0].macs == 8 * 16 * 9 and back.layers[2].macs == 3 * 16
    assert to_bytes(back) == data


@pytest.mark.parametrize("field,value", [
    ("pool", "max2"), ("in_pool", "avg"), ("skip_stride", 2), ("skip_channel_offset", 4),
])
def test_each_v3_field_alone_asks_for_version_3(field, value):
    plain = residual_image()
    assert format_version(plain) == 2 and not any(lay.needs_v3 for lay in plain.layers)
    setattr(plain.layers[1], field, value)
    assert plain.layers[1].needs_v3 and format_version(plain) == 3


def test_a_v3_file_labelled_version_2_is_refused():
    data = to_bytes(v3_image())
    forged = rehash(data[:8] + struct.pack("<I", 2) + data[12:-32])
    with pytest.raises(ImageError, match="layer conv0: pool.*version-2 image"):
        from_bytes(forged)


def test_v1_and_v2_headers_carry_no_v3_keys():
    for image in (small_image(), residual_image()):
        data = to_bytes(image)
        for key in (b'"pool"', b'"in_pool"', b'"skip_stride"', b'"skip_channel_offset"'):
            assert key not in data


@pytest.mark.parametrize("edit,message", [
    (_set(0, pool="avg"), "unknown pool"),
    (_set(0, pool="max2", out_shape=(8, 4, 4)), "output shape"),
    (_set(2, pool="max2"), "only a PACT conv layer may pool"),
    (_set(2, in_pool="max"), "unknown in_pool"),
    (_set(0, in_pool="avg"), "only a fully connected layer may average"),
    (_set(2, weights=np.zeros((3, 8), dtype=np.uint8)), "weights"),
    (_set(2, in_shape=(16,)), "averaged input"),
    (_set(1, skip_stride=3), "skip_stride must be one of"),
    (_set(1, skip_stride=True), "skip_stride must be one of"),
    (_set(1, skip_channel_offset=-1), "skip_channel_offset must be"),
    (_set(1, skip_channel_offset=9), "do not fit"),
    (_set(1, skip=None, skip_mult=None), "without skip"),
])
def test_bad_v3_fields_are_rejected(edit, message):
    image = v3_image()
    edit(image)
    with pytest.raises(ImageError, match=message):
        validate(image)


def test_pooled_layer_with_a_negative_mult_is_rejected_naming_the_channel():
    image = v3_image()
    image.layers[0].mult = image.layers[0].mult.copy()
    image.layers[0].mult[5] = -3
    with pytest.raises(ImageError, match="layer 0 \\(conv0\\): channel 5 has a negative mult"):
        validate(image)
    image.layers[0].mult[5] = 0  # zero is monotone (constant): fine
    validate(image)


def test_pool_needs_an_even_plane():
    image = v3_image()
    conv0 = image.layers[0]
    conv0.in_shape, image.input_shape = (1, 5, 5), (1, 5, 5)
    with pytest.raises(ImageError, match="even plane"):
        validate(image)


def test_skip_stride_must_cover_the_plane():
    image = v3_image()
    # conv0 now has 2x2: a 2x2 plane (padding 1, stride 1) at skip stride 2 needs rows 0 and 2
    image.layers[1].stride = 1
    image.layers[1].out_shape = (16, 2, 2)
    image.layers[1].skip_stride = 2
    image.layers[2].in_shape = (16, 2, 2)
    with pytest.raises(ImageError, match="cannot cover"):
        validate(image)
