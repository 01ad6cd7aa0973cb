"""The whole-chip bench: bit-exact runs on both simulators, and a checker that can fail.

The simulator tests use a reduced chip (4x4 array, 16 channels) and a small random network, so
that each configuration builds in seconds on Icarus and in about a minute on Verilator; the
digits CNN on the 8x8 chip runs in ``pact flow`` (``nox -s flow``) and the benches.
``PACT_CHIP_IMAGES`` sets the images per configuration (default 4).
"""

import os
from pathlib import Path

import numpy as np
import pytest

from cosim import chip_tb
from cosim.chip_model import random_image, random_inputs
from cosim.chip_tb import Mismatch, check_outputs, first_mismatch, layer_windows
from cosim.flow import generate_chip
from gen import compiler
from golden.reference import run

IMAGES = int(os.environ.get("PACT_CHIP_IMAGES", "4"))
SMALL_CHIP = dict(rows=4, cols=4, max_channels=16, max_plane=64, wbuf_depth=2048)
SPECS = [
    dict(name="conv0", op="conv", in_shape=(1, 6, 6), out_shape=(6, 6, 6), kernel=3, stride=1,
         padding=1),
    dict(name="conv1", op="conv", in_shape=(6, 6, 6), out_shape=(5, 3, 3), kernel=3, stride=2,
         padding=1),
    dict(name="conv2", op="conv", in_shape=(5, 3, 3), out_shape=(4, 3, 3), kernel=1, stride=1,
         padding=0),
    dict(name="fc", op="fc", in_shape=(36,), out_shape=(7,)),
]


def small_chip(wbits, abits):
    return generate_chip(dict(wbits=wbits, abits=abits, **SMALL_CHIP), log=lambda msg: None)


def small_network(seed, wbits, abits):
    return random_image(seed, wbits=wbits, abits=abits, input_shape=(1, 6, 6), specs=SPECS)


# -- the checker, without a simulator ---------------------------------------------------------


def test_first_mismatch_finds_layer_channel_position():
    expected = [np.arange(24).reshape(2, 3, 4), np.arange(5)]
    got = [e.copy() for e in expected]
    assert first_mismatch(expected, got) is None
    got[0][1, 2, 0] = 99
    got[0][1, 2, 3] = 98
    got[1][0] = 7
    assert first_mismatch(expected, got) == (0, 1, (2, 0), 20, 99)
    got[0] = expected[0].copy()
    assert first_mismatch(expected, got) == (1, 0, (), 0, 7)
    with pytest.raises(ValueError, match="shapes"):
        first_mismatch(expected, [expected[0], np.zeros(4)])


def test_check_outputs_reports_the_cycle_window():
    expected = [np.zeros((2, 2, 2)), np.array([3, -4])]
    got = [np.zeros((2, 2, 2)), np.array([3, -5])]
    mm = check_outputs(expected, got, names=["c", "fc"], image=7,
                       windows=[(0, 99), (100, 180)])
    assert isinstance(mm, Mismatch)
    assert (mm.image, mm.layer, mm.name, mm.channel, mm.expected, mm.got) == (7, 1, "fc", 1,
                                                                              -4, -5)
    assert mm.window == (100, 180)
    assert "layer 1 (fc), channel 1" in str(mm) and "cycles 100..180" in str(mm)
    assert check_outputs(expected, [e.copy() for e in expected], names=["c", "fc"]) is None


def test_the_cause_names_the_timeout_or_the_flag_and_the_layer():
    rec = {"timeout": True, "cycles": 213099, "error": 0, "mem_errors": 0, "mac_beats": 0,
           "marks": [(0, 0), (1, 500)]}
    assert chip_tb._complaint(rec) == ("timeout: no done within 213099 cycles, stuck in layer 1 "
                                       "after 0 MAC beats")
    from rtl.chip import ERR_BUFFER, ERR_MEMORY, ERR_UNKNOWN_OP
    from rtl.tiled.sequencer import Error

    # One set of bits for both chips: the plane chip's three are the tiled chip's low three.
    assert {bit: name for bit, (name, _) in chip_tb.ERROR_FLAGS.items()} == {
        ERR_UNKNOWN_OP: "ERR_UNKNOWN_OP", ERR_BUFFER: "ERR_BUFFER", ERR_MEMORY: "ERR_MEMORY",
        8: "ERR_BUS"}
    assert set(chip_tb.ERROR_FLAGS) == set(Error)
    rec = dict(rec, timeout=False, error=ERR_MEMORY | 8 | 32, marks=[(0, 0)])
    assert chip_tb._complaint(rec) == (
        "error flags 0b101100: ERR_MEMORY (a read response without a request), ERR_BUS (SLVERR "
        "or DECERR on an AXI response), unknown bits 0b100000 at layer 0")
    assert chip_tb._complaint(dict(rec, error=0)) is None


def test_layer_windows_from_marks():
    rec = {"marks": [(0, 0), (0, 0), (1, 50), (2, 80), (3, 200)], "cycles": 260}
    assert layer_windows(rec, 3) == [(0, 49), (50, 79), (80, 259)]


def testrelayout_moves_only_the_slots():
    image = small_network(0, 4, 4)
    hw = compiler.Hardware(wbits=4, abits=4, mem_width=64, max_bits=8, **SMALL_CHIP)
    one = compiler.compile_image(image, hw, slots=1)
    five = chip_tb.relayout(one, 5)
    direct = compiler.compile_image(image, hw, slots=5)
    assert five.words == direct.words and five.layout["slots"] == direct.layout["slots"]


# -- on the simulators ------------------------------------------------------------------------


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
@pytest.mark.parametrize("wbits,abits", [(2, 2), (4, 4), (8, 8)])
def test_bit_exact(require_sim, tmp_path, sim, wbits, abits):
    require_sim(sim)
    hw_dir = small_chip(wbits, abits)
    hw = compiler.load_hardware(hw_dir)
    image = small_network(wbits * 8 + abits, wbits, abits)
    program = compiler.compile_image(image, hw)
    xs = random_inputs(wbits, image, IMAGES)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim=sim,
                              work=tmp_path)
    assert [str(m) for m in result.mismatches] == []
    assert result.per_image == [None] * IMAGES
    beats = sum(lay["mac_beats"] for lay in program.layout["layers"])
    for rec in result.records:
        assert rec["error"] == 0 and rec["mem_errors"] == 0 and not rec["timeout"]
        assert rec["mac_beats"] == beats
        assert rec["cycles"] >= beats
        assert all(w is not None for w in layer_windows(rec, len(image.layers)))


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_bit_exact_under_memory_back_pressure_and_latency(require_sim, tmp_path, sim):
    require_sim(sim)
    hw_dir = small_chip(4, 4)
    hw = compiler.load_hardware(hw_dir)
    image = small_network(3, 4, 4)
    xs = random_inputs(3, image, 2)
    free = chip_tb.run_chip(compiler.compile_image(image, hw), hw_dir, xs,
                            [run(image, x) for x in xs], sim=sim, work=tmp_path / "free")
    stalled = chip_tb.run_chip(compiler.compile_image(image, hw), hw_dir, xs,
                               [run(image, x) for x in xs], sim=sim, work=tmp_path / "stall",
                               mem_stall=40)
    slow = chip_tb.run_chip(compiler.compile_image(image, hw), hw_dir, xs,
                            [run(image, x) for x in xs], sim=sim, work=tmp_path / "slow",
                            mem_stall=20, mem_latency=9)
    assert free.mismatches == [] and stalled.mismatches == [] and slow.mismatches == []
    assert stalled.records[0]["cycles"] > free.records[0]["cycles"]
    assert slow.records[0]["cycles"] > free.records[0]["cycles"]


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_a_corrupt_weight_is_reported_at_its_layer(require_sim, tmp_path, sim):
    """One flipped weight bit of conv1 in the memory image: the first two images' conv0 still
    match, conv1 does not; the report names layer 1 and its cycle window, and a waveform of
    that window is written."""
    require_sim(sim)
    hw_dir = small_chip(4, 4)
    hw = compiler.load_hardware(hw_dir)
    image = small_network(5, 4, 4)
    program = compiler.compile_image(image, hw)
    conv1 = program.layout["layers"][1]
    program.words[conv1["w_addr"] + 3] ^= 1 << 9
    xs = random_inputs(6, image, 2)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim=sim,
                              work=tmp_path)
    assert len(result.mismatches) == 2
    mm = result.mismatches[0]
    assert (mm.image, mm.layer, mm.name) == (0, 1, "conv1")
    start, end = mm.window
    rec = result.records[0]
    assert 0 < start < end < rec["cycles"]
    assert np.array_equal(result.outputs[0][0], run(image, xs[0])[0])
    wave = Path(mm.waves)
    assert wave.exists() and wave.stat().st_size > 1000
    assert "conv1" in str(mm) and f"cycles {start}..{end}" in str(mm)


@pytest.mark.sim
def test_a_layer_the_chip_refuses_is_reported_with_its_flags(require_sim, tmp_path):
    """A descriptor asking for 3 weight slices on a chip that has at most 2 (8-bit operands
    on a 4-bit array): the chip raises error bit 1 and stops; the outputs from that layer on
    are missing and the report carries the flags."""
    require_sim("icarus")
    from rtl import chip_format as cf

    hw_dir = small_chip(4, 4)
    hw = compiler.load_hardware(hw_dir)
    image = small_network(7, 4, 4)
    program = compiler.compile_image(image, hw)
    dw = cf.descriptor_words(64)
    d = cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(program.words[dw:2 * dw], 64))
    program.words[dw:2 * dw] = cf.record_to_words(
        cf.pack_record(cf.DESCRIPTOR, **dict(d, w_slices=3)), dw, 64)
    xs = random_inputs(8, image, 1)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim="icarus",
                              work=tmp_path, waves_on_mismatch=False)
    mm = result.mismatches[0]
    assert mm.layer == 1 and mm.reason == ("error flags 0b0010: ERR_BUFFER (a layer that does "
                                           "not fit the buffers or an inconsistent descriptor) "
                                           "at layer 1")
    assert result.records[0]["error"] == 2
    assert "error flags 0b0010: ERR_BUFFER" in str(mm)


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_mlp_bit_exact(require_sim, tmp_path, sim):
    """Fully connected layers only: the first reads the 1x8x8 input with an 8x8 kernel, the
    others read [N] vectors as [N, 1, 1]."""
    require_sim(sim)
    hw_dir = small_chip(4, 4)
    hw = compiler.load_hardware(hw_dir)
    image = random_image(9, model="mlp", hidden=(16, 12), wbits=4, abits=4)
    program = compiler.compile_image(image, hw)
    assert [lay["kernel"] for lay in program.layout["layers"]] == [8, 1, 1]
    xs = random_inputs(9, image, 2)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim=sim,
                              work=tmp_path)
    assert [str(m) for m in result.mismatches] == []


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_resnet_bit_exact(require_sim, tmp_path, sim):
    """Residual layers (the digits resnet's shapes, narrower): each adds the output of the
    layer two before, read in place from the bank it writes."""
    require_sim(sim)
    hw_dir = small_chip(4, 4)
    hw = compiler.load_hardware(hw_dir)
    image = random_image(11, model="resnet", channels=(8, 16), wbits=4, abits=4)
    assert [layer.skip for layer in image.layers] == [None, None, 0, None, None, 3, None]
    program = compiler.compile_image(image, hw)
    xs = random_inputs(11, image, 2)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim=sim,
                              work=tmp_path)
    assert [str(m) for m in result.mismatches] == []
    assert all(rec["error"] == 0 for rec in result.records)


@pytest.mark.sim
@pytest.mark.parametrize("sim, max_reads", [("icarus", 2), ("icarus", 3), ("verilator", 2)])
def test_few_reads_in_flight_finish_under_stalls_and_latency(require_sim, tmp_path, sim,
                                                             max_reads):
    """Issue 12's hang: with two reads in flight, a stalling or slow memory used to get an
    answer dropped (no room in the response FIFO) and the chip waited forever. On a 16-bit
    port (the most reads per layer), stalled and slow, every image is bit-exact with no
    error flag. (Every max_reads is covered on the Amaranth simulator, tests/test_chip.py.)"""
    require_sim(sim)
    hw_dir = generate_chip(dict(wbits=4, abits=4, **SMALL_CHIP, mem_width=16,
                                max_reads=max_reads), log=lambda msg: None)
    hw = compiler.load_hardware(hw_dir)
    image = small_network(13, 4, 4)
    program = compiler.compile_image(image, hw)
    xs = random_inputs(13, image, 1)
    for stall, latency in ((30, 1), (1, 3)):
        result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim=sim,
                                  work=tmp_path / f"s{stall}l{latency}", mem_stall=stall,
                                  mem_latency=latency, waves_on_mismatch=False)
        assert [str(m) for m in result.mismatches] == []
        rec = result.records[0]
        assert rec["error"] == 0 and not rec["timeout"]


# -- the tiled chip (rtl/tiled) on the simulators ---------------------------------------------

TILED_CHIP = dict(wbits=4, abits=4, rows=4, cols=8, act_kib=4, ring_beats=512, max_kernel=5,
                  max_in_channels=64, colsum=True)
# Row pairs (4-pixel rows on 8 columns), an option-A skip (stride 2, zero channels) that adds
# the stem's output, and an fc that reads its input through a global average pool.
TILED_RESNET = [
    dict(name="conv0", op="conv", in_shape=(1, 8, 8), out_shape=(4, 8, 8), kernel=3, stride=1,
         padding=1),
    dict(name="conv1", op="conv", in_shape=(4, 8, 8), out_shape=(8, 4, 4), kernel=3, stride=2,
         padding=1),
    dict(name="conv2", op="conv", in_shape=(8, 4, 4), out_shape=(8, 4, 4), kernel=3, stride=1,
         padding=1, skip=0, skip_stride=2, skip_channel_offset=2),
    dict(name="conv3", op="conv", in_shape=(8, 4, 4), out_shape=(8, 4, 4), kernel=3, stride=1,
         padding=1, skip=2),
    dict(name="fc", op="fc", in_shape=(8, 4, 4), out_shape=(10,), in_pool="avg"),
]
# Max pooling (of codes) after 5x5 and 3x3 convolutions, then fully connected layers.
TILED_LENET = [
    dict(name="conv0", op="conv", in_shape=(1, 12, 12), out_shape=(6, 6, 6), kernel=5,
         stride=1, padding=2, pool="max2"),
    dict(name="conv1", op="conv", in_shape=(6, 6, 6), out_shape=(8, 2, 2), kernel=3, stride=1,
         padding=0, pool="max2"),
    dict(name="fc2", op="fc", in_shape=(32,), out_shape=(12,)),
    dict(name="fc3", op="fc", in_shape=(12,), out_shape=(10,)),
]


def tiled_chip():
    return generate_chip(TILED_CHIP, log=lambda msg: None, block="tiled_chip")


def tiled_program(specs, seed, input_shape):
    from gen import tiled_compiler

    hw_dir = tiled_chip()
    params, config_hash = tiled_compiler.load_hardware(hw_dir)
    image = random_image(seed, wbits=4, abits=4, input_shape=input_shape, specs=specs)
    return hw_dir, image, tiled_compiler.compile_tiled(image, params, config_hash=config_hash)


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
@pytest.mark.parametrize("net", ["resnet", "lenet"])
def test_tiled_chip_bit_exact(require_sim, tmp_path, sim, net):
    require_sim(sim)
    specs, shape = ((TILED_RESNET, (1, 8, 8)) if net == "resnet"
                    else (TILED_LENET, (1, 12, 12)))
    hw_dir, image, program = tiled_program(specs, 21, shape)
    layers = program.layout.layers
    if net == "resnet":
        # The averaged fc is a column sum of a 1x1 layer, on row pairs too.
        assert [lay.group for lay in layers] == [1, 2, 2, 2, 2]
        assert [lay.colsum for lay in layers] == [False] * 4 + [True]
    else:
        assert [lay.pool for lay in layers] == [True, True, False, False]
    xs = random_inputs(21, image, 2)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim=sim,
                              work=tmp_path)
    assert [str(m) for m in result.mismatches] == []
    beats = sum(lay.mac_beats for lay in layers)
    for rec in result.records:
        assert rec["error"] == 0 and rec["mem_errors"] == 0 and not rec["timeout"]
        assert rec["mac_beats"] == beats


@pytest.mark.sim
def test_tiled_chip_under_stalls_and_latency(require_sim, tmp_path):
    require_sim("verilator")
    hw_dir, image, program = tiled_program(TILED_RESNET, 23, (1, 8, 8))
    xs = random_inputs(23, image, 2)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs],
                              sim="verilator", work=tmp_path, mem_stall=30, mem_latency=7)
    assert [str(m) for m in result.mismatches] == []


@pytest.mark.sim
@pytest.mark.parametrize("net,bus", [("resnet", "axi"), ("lenet", "axi"), ("resnet", "native")])
def test_both_buses_on_the_fast_harness(require_sim, tmp_path, net, bus):
    """``--bus axi`` (the harness's AXI memory model, chip_harness_axi.svh) and ``--bus
    native`` (its stream memory) under stalls and latency: bit-exact."""
    require_sim("verilator")
    from gen import tiled_compiler

    specs, shape = ((TILED_RESNET, (1, 8, 8)) if net == "resnet"
                    else (TILED_LENET, (1, 12, 12)))
    hw_dir = generate_chip({**TILED_CHIP, "bus": bus}, log=lambda msg: None,
                           block="tiled_chip")
    params, config_hash = tiled_compiler.load_hardware(hw_dir)
    image = random_image(27, wbits=4, abits=4, input_shape=shape, specs=specs)
    program = tiled_compiler.compile_tiled(image, params, config_hash=config_hash)
    xs = random_inputs(27, image, 2)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs],
                              sim="verilator", work=tmp_path, mem_stall=20, mem_latency=5)
    assert [str(m) for m in result.mismatches] == []
    beats = sum(lay.mac_beats for lay in program.layout.layers)
    for rec in result.records:
        assert rec["error"] == 0 and rec["mem_errors"] == 0 and not rec["timeout"]
        assert rec["mac_beats"] == beats


@pytest.mark.sim
def test_tiled_chip_reports_a_corrupt_constant_at_its_layer(require_sim, tmp_path):
    require_sim("icarus")
    hw_dir, image, program = tiled_program(TILED_RESNET, 25, (1, 8, 8))
    conv2 = program.layout.layers[2]
    program.words[conv2.c_addr] ^= 1 << 13   # channel 0's multiplier
    xs = random_inputs(25, image, 1)
    result = chip_tb.run_chip(program, hw_dir, xs, [run(image, x) for x in xs], sim="icarus",
                              work=tmp_path, waves_on_mismatch=False)
    (mm,) = result.mismatches
    assert (mm.layer, mm.name, mm.channel) == (2, "conv2", 0)
    assert np.array_equal(result.outputs[0][1], run(image, xs[0])[1])
