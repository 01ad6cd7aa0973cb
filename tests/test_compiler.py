import json

import numpy as np
import pytest

from cosim.chip_model import random_image
from gen import compiler
from gen.generate import config_hash
from golden import image as image_mod
from golden.integer import dorefa_odd_values
from pact.cli import main
from pact.errors import UserError
from rtl import chip_format as cf

PARAMS = dict(wbits=4, abits=4, rows=8, cols=8, mem_width=64, max_bits=8, max_channels=64,
              max_plane=64, wbuf_depth=4096)


def manifest(**changes):
    params = dict(PARAMS, **changes)
    return {"block": "chip", "params": params, "config_hash": config_hash("chip", params)}


def hardware(**changes):
    return compiler.hardware_from_manifest(manifest(**changes))


def small_specs():
    """Channels that do not fill the rows, a plane that the columns do not divide, 1x1 and
    3x3 kernels, stride 2 without padding, fc after a conv."""
    return [
        dict(name="c0", op="conv", in_shape=(3, 7, 7), out_shape=(5, 7, 7), kernel=3,
             stride=1, padding=1),
        dict(name="c1", op="conv", in_shape=(5, 7, 7), out_shape=(11, 3, 3), kernel=3,
             stride=2, padding=0),
        dict(name="c2", op="conv", in_shape=(11, 3, 3), out_shape=(9, 3, 3), kernel=1,
             stride=1, padding=0),
        dict(name="fc", op="fc", in_shape=(81,), out_shape=(7,)),
    ]


def small_image(seed=0, wbits=4, abits=4, end_bits=8):
    return random_image(seed, wbits=wbits, abits=abits, end_bits=end_bits,
                        input_shape=(3, 7, 7), specs=small_specs())


def stream_code(words, beat, row, hw):
    """The code of ``row`` in ``beat`` of a weight stream, read straight from the bits."""
    value = cf.words_to_record(words, hw.mem_width)
    return (value >> ((beat * hw.rows + row) * hw.wbits)) & ((1 << hw.wbits) - 1)


@pytest.mark.parametrize("wbits,abits", [(2, 2), (3, 5), (4, 4), (8, 8), (5, 3)])
def test_weight_stream_slices_rebuild_every_odd_weight(wbits, abits):
    image = small_image(1, wbits, abits)
    hw = hardware(wbits=wbits, abits=abits)
    prog = compiler.compile_image(image, hw)
    for layer, lay in zip(image.layers, prog.layout["layers"], strict=True):
        w = np.asarray(layer.weights).reshape(lay["out_shape"][0], lay["in_shape"][0],
                                              lay["kernel"], lay["kernel"])
        stream = prog.words[lay["w_addr"]:lay["w_addr"] + lay["w_words"]]
        ws, k, cin = lay["w_slices"], lay["kernel"], lay["in_shape"][0]
        assert ws == -(-layer.wbits // wbits)
        per_tile = cin * k * k * ws
        assert lay["w_beats"] == -(-w.shape[0] // hw.rows) * per_tile
        assert lay["w_words"] == cf.words_for_bits(lay["w_beats"] * hw.rows * wbits, 64)
        odd = dorefa_odd_values(w, layer.wbits)
        for o in range(w.shape[0]):
            for ci in range(cin):
                for ky in range(k):
                    for kx in range(k):
                        beat0 = (o // hw.rows) * per_tile + ((ci * k + ky) * k + kx) * ws
                        value = sum((2 * stream_code(stream, beat0 + j, o % hw.rows, hw)
                                     - ((1 << wbits) - 1)) << (wbits * j) for j in range(ws))
                        assert value == odd[o, ci, ky, kx]
        # Rows past the output channels hold code 0.
        tiles = -(-w.shape[0] // hw.rows)
        for o in range(w.shape[0], tiles * hw.rows):
            for b in range(per_tile):
                assert stream_code(stream, (o // hw.rows) * per_tile + b, o % hw.rows, hw) == 0


def test_descriptors_constants_and_memory_map():
    image = small_image(2)
    hw = hardware()
    prog = compiler.compile_image(image, hw, slots=3)
    lay = prog.layout
    dw = cf.descriptor_words(64)
    assert lay["descriptor_words"] == dw and lay["program_addr"] == 0
    assert len(prog.words) == lay["words_used"]
    regions = [(0, (len(image.layers) + 1) * dw)]
    o_end = 0
    for i, (layer, ll) in enumerate(zip(image.layers, lay["layers"], strict=True)):
        d = cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(prog.words[i * dw:(i + 1) * dw],
                                                               64))
        cin, h, w = ll["in_shape"]
        cout, ho, wo = ll["out_shape"]
        assert d == dict(op=cf.OP_CONV, in_c=cin, in_h=h, in_w=w, out_c=cout, out_h=ho,
                         out_w=wo, kernel=ll["kernel"], stride=ll["stride"], pad=ll["pad"],
                         w_slices=ll["w_slices"], a_slices=ll["a_slices"],
                         in_bits=layer.in_bits, out_bits=layer.out_bits,
                         logits=int(layer.out_kind == "logits"), in_from_mem=int(i == 0),
                         skip=0, w_addr=ll["w_addr"], c_addr=ll["c_addr"], o_addr=ll["o_addr"])
        cw = cf.consts_words(64)
        for c in range(cout):
            rec = cf.unpack_record(cf.CONSTS, cf.words_to_record(
                prog.words[d["c_addr"] + c * cw:d["c_addr"] + (c + 1) * cw], 64))
            assert rec == dict(mult=int(layer.mult[c]), offset=int(layer.offset[c]),
                               shift=int(layer.shift[c]), skip_mult=0)
        regions += [(ll["w_addr"], ll["w_addr"] + ll["w_words"]),
                    (ll["c_addr"], ll["c_addr"] + cout * cw)]
        assert ll["o_addr"] == o_end
        assert ll["out_words"] == cf.tensor_words(ll["out_shape"], layer.out_bits, 64)
        o_end += ll["out_words"]
    end = cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(
        prog.words[len(image.layers) * dw:(len(image.layers) + 1) * dw], 64))
    assert end["op"] == cf.OP_END
    s = lay["slots"]
    assert s["output_stride"] == o_end
    assert s["input_stride"] == lay["input"]["words"] == cf.tensor_words((3, 7, 7), 8, 64)
    regions += [(s["input_base"], s["input_base"] + 3 * s["input_stride"]),
                (s["output_base"], s["output_base"] + 3 * s["output_stride"])]
    # The regions tile the memory in order, without gaps or overlaps.
    assert [r for r in regions if r[0] != r[1]] == sorted(regions)
    for (_, a_end), (b_start, _) in zip(regions, regions[1:], strict=False):
        assert a_end == b_start
    assert regions[-1][1] == lay["words_used"]
    assert compiler.slot_addresses(lay, 2) == (s["input_base"] + 2 * s["input_stride"],
                                               s["output_base"] + 2 * s["output_stride"])
    poison = compiler.poison_word(64)
    assert poison == 0xDEADDEADDEADDEAD
    assert set(prog.words[s["output_base"]:]) == {poison}
    assert set(prog.words[s["input_base"]:s["output_base"]]) == {0}
    assert lay["image_hash"] == image_mod.content_hash(image_mod.to_bytes(image))
    assert lay["config_hash"] == hw.config_hash


def test_fc_after_conv_is_a_plane_kernel_and_mlp_input_is_channels():
    hw = hardware()
    cnn = compiler.compile_image(random_image(3), hw).layout["layers"][-1]
    assert (cnn["in_shape"], cnn["kernel"], cnn["out_shape"]) == ([32, 4, 4], 4, [10, 1, 1])
    assert cnn["image_out_shape"] == [10] and cnn["kind"] == "logits" and cnn["signed"]
    mlp = random_image(3, model="mlp", input_shape=(64,))
    first = compiler.compile_image(mlp, hw).layout["layers"][0]
    assert (first["in_shape"], first["kernel"], first["out_shape"]) == ([64, 1, 1], 1,
                                                                        [64, 1, 1])


def test_memory_words_places_inputs_in_slots():
    image = small_image(4)
    prog = compiler.compile_image(image, hardware(), slots=2)
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 256, size=(3, 7, 7)) for _ in range(2)]
    words = compiler.memory_words(prog, xs)
    for i, x in enumerate(xs):
        addr, _ = compiler.slot_addresses(prog.layout, i)
        got = cf.unpack_tensor(words[addr:addr + prog.layout["input"]["words"]], (3, 7, 7), 8,
                               64)
        assert np.array_equal(got, x)
    with pytest.raises(ValueError, match="slots"):
        compiler.memory_words(prog, xs * 2)
    with pytest.raises(ValueError, match="outside"):
        compiler.memory_words(prog, [x + 256 for x in xs])


def test_hex_round_trip_and_readmem_syntax(tmp_path):
    words = [0, 1, (1 << 64) - 1, 0x0123456789ABCDEF]
    text = compiler.to_hex(words, 64)
    assert text.splitlines()[3] == "0123456789abcdef"
    path = tmp_path / "m.hex"
    path.write_text("// comment\n" + text + "@6\nxxxxxxxxxxxxxxxx 00000000000000_0f\n")
    assert compiler.read_hex(path) == words + [0, 0, 0, 15]


def test_determinism():
    hw = hardware(wbits=3, abits=3)
    a = compiler.compile_image(random_image(5, wbits=3, abits=3), hw, slots=2)
    b = compiler.compile_image(random_image(5, wbits=3, abits=3), hw, slots=2)
    assert a.words == b.words and json.dumps(a.layout) == json.dumps(b.layout)


def write_hw(path, **changes):
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps(manifest(**changes)))
    return path


def test_cli_writes_hex_and_layout(tmp_path, capsys):
    image = small_image(6)
    image_mod.save(image, tmp_path / "m.pimg")
    hw_dir = write_hw(tmp_path / "hw")
    out = tmp_path / "prog.hex"
    assert main(["compile", str(tmp_path / "m.pimg"), "--hw", str(hw_dir), "--out", str(out),
                 "--slots", "2"]) == 0
    layout = json.loads((tmp_path / "prog.json").read_text())
    prog = compiler.compile_image(image_mod.load(tmp_path / "m.pimg"), hardware(), slots=2)
    assert compiler.read_hex(out) == prog.words
    assert layout["image_hash"] == image_mod.content_hash((tmp_path / "m.pimg").read_bytes())
    assert layout["config_hash"] == manifest()["config_hash"]
    assert layout["slots"]["count"] == 2 and layout["memory_file"] == "prog.hex"
    first = out.read_bytes()
    assert main(["compile", str(tmp_path / "m.pimg"), "--hw", str(hw_dir), "--out",
                 str(out), "--slots", "2"]) == 0
    assert out.read_bytes() == first
    assert compiler.layout_path(tmp_path / "p.mem") == tmp_path / "p.mem.json"


def refuse(tmp_path, capsys, image, match, **hw_changes):
    image_mod.save(image, tmp_path / "m.pimg")
    hw_dir = write_hw(tmp_path / "hw", **hw_changes)
    out = tmp_path / "out" / "prog.hex"
    out.parent.mkdir()
    assert main(["compile", str(tmp_path / "m.pimg"), "--hw", str(hw_dir), "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert match in err, err
    assert list(out.parent.iterdir()) == []  # nothing half-written
    return err


@pytest.mark.parametrize("changes,match", [
    (dict(wbits=2), "layer 1 (c1) has 4-bit weights but the hardware has wbits=2"),
    (dict(abits=5), "layer 0 (c0) outputs 4-bit activations but the hardware has abits=5"),
    (dict(max_channels=10), "layer 1 (c1): 11 output channels > max_channels 10"),
    (dict(max_plane=40), "layer 0 (c0): input plane 7x7 = 49 > max_plane 40"),
    (dict(wbuf_depth=100), "layer 3 (fc): 162 weight beats > wbuf_depth 100"),
    (dict(max_bits=6), "layer 0 (c0): 8-bit weights > max_bits 6"),
])
def test_refusals_name_layer_and_sizes(tmp_path, capsys, changes, match):
    refuse(tmp_path, capsys, small_image(7), match, **changes)


def test_refuses_trained_precision_in_meta(tmp_path, capsys):
    image = small_image(8)
    image.meta["abits"] = 3
    refuse(tmp_path, capsys, image, "trained with abits=3 but the hardware has abits=4")


def test_refuses_input_wider_than_max_bits(tmp_path, capsys):
    image = small_image(9, end_bits=8)
    image.layers[0].weights = image.layers[0].weights % 16
    image.layers[0].wbits = 4
    refuse(tmp_path, capsys, image, "8-bit input codes > max_bits 7", max_bits=7)


def test_refuses_tampered_or_foreign_manifest(tmp_path, capsys):
    m = manifest()
    m["params"]["rows"] = 16  # edited by hand: the hash no longer matches
    with pytest.raises(UserError, match="does not match its parameters"):
        compiler.hardware_from_manifest(m)
    with pytest.raises(UserError, match="not the chip"):
        compiler.hardware_from_manifest(dict(manifest(), block="mac_array"))
    m = manifest()
    del m["params"]["wbuf_depth"]
    m["config_hash"] = config_hash("chip", m["params"])
    with pytest.raises(UserError, match="wbuf_depth"):
        compiler.hardware_from_manifest(m)
    with pytest.raises(UserError, match="no manifest"):
        compiler.load_hardware(tmp_path)
    assert main(["compile", str(tmp_path / "none.pimg"), "--hw", str(tmp_path), "--out",
                 str(tmp_path / "p.hex")]) == 2
    assert not (tmp_path / "p.hex").exists()


def test_refuses_unexpressible_descriptor_and_nonsquare_fc():
    specs = [dict(name="c0", op="conv", in_shape=(1, 8, 8), out_shape=(8, 2, 2), kernel=3,
                  stride=4, padding=1),
             dict(name="fc", op="fc", in_shape=(32,), out_shape=(4,))]
    image = random_image(0, input_shape=(1, 8, 8), specs=specs)
    with pytest.raises(UserError, match="layer 0 \\(c0\\) cannot be expressed.*stride"):
        compiler.compile_image(image, hardware())
    specs = [dict(name="c0", op="conv", in_shape=(1, 4, 8), out_shape=(8, 4, 8), kernel=3,
                  stride=1, padding=1),
             dict(name="fc", op="fc", in_shape=(256,), out_shape=(4,))]
    image = random_image(0, input_shape=(1, 4, 8), specs=specs)
    with pytest.raises(UserError, match="non-square 4x8"):
        compiler.compile_image(image, hardware())


def resnet_specs(skip=0):
    """conv 2x5x5 -> 4x5x5, conv 4 -> 4, conv 4 -> 4 adding layer ``skip``, fc 100 -> 3."""
    def conv(name, cin):
        return dict(name=name, op="conv", in_shape=(cin, 5, 5), out_shape=(4, 5, 5), kernel=3,
                    stride=1, padding=1)
    return [conv("c0", 2), conv("c1", 4), dict(conv("c2", 4), skip=skip),
            dict(name="fc", op="fc", in_shape=(100,), out_shape=(3,))]


def test_residual_layer_sets_skip_bit_and_skip_mult():
    image = random_image(3, input_shape=(2, 5, 5), specs=resnet_specs())
    hw = hardware()
    program = compiler.compile_image(image, hw)
    dw, mw = cf.descriptor_words(64), 64
    descs = [cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(
        program.words[i * dw:(i + 1) * dw], mw)) for i in range(4)]
    assert [d["skip"] for d in descs] == [0, 0, 1, 0]
    n = cf.consts_words(mw)
    for i, layer in enumerate(image.layers):
        base = program.layout["layers"][i]["c_addr"]
        got = [cf.unpack_record(cf.CONSTS, cf.words_to_record(
            program.words[base + c * n:base + (c + 1) * n], mw))["skip_mult"]
            for c in range(layer.out_shape[0])]
        want = [0] * layer.out_shape[0] if layer.skip is None else layer.skip_mult.tolist()
        assert got == want
    assert [lay["skip"] for lay in program.layout["layers"]] == [None, None, 0, None]


def test_refuses_a_skip_that_is_not_the_layer_two_before(tmp_path, capsys):
    specs = resnet_specs(skip=1)
    image = random_image(4, input_shape=(2, 5, 5), specs=specs)
    refuse(tmp_path, capsys, image, "layer 2 (c2) adds the output of layer 1; the chip can only "
           "add the output of the layer two before (layer 0)")


def test_refuses_format_v3_layers(tmp_path, capsys):
    specs = [dict(name="c0", op="conv", in_shape=(1, 4, 4), out_shape=(4, 4, 4), kernel=3,
                  stride=1, padding=1),
             dict(name="fc", op="fc", in_shape=(64,), out_shape=(3,))]
    image = random_image(5, input_shape=(1, 4, 4), specs=specs)
    compiler.compile_image(image, hardware())  # the same network without a pool compiles
    image.layers[0].out_shape = (4, 2, 2)
    image.layers[0].pool = "max2"
    image.layers[0].mult = np.abs(image.layers[0].mult)
    image.layers[1].in_shape = (16,)
    image.layers[1].weights = image.layers[1].weights[:, :16]
    refuse(tmp_path, capsys, image, "layer 0 (c0): the chip cannot run pooling")


def test_refuses_logits_that_are_not_1x1(tmp_path, capsys):
    specs = [dict(name="c0", op="conv", in_shape=(1, 4, 4), out_shape=(4, 4, 4), kernel=3,
                  stride=1, padding=1),
             dict(name="c1", op="conv", in_shape=(4, 4, 4), out_shape=(3, 2, 2), kernel=3,
                  stride=2, padding=1)]
    image = random_image(5, input_shape=(1, 4, 4), specs=specs)
    refuse(tmp_path, capsys, image, "layer 1 (c1) produces logits over a 2x2 plane")
