"""The AXI tiled chip on Verilator under cocotbext-axi (``cosim/axi_chip_tb.py``): a compiled
network runs from an ``AxiRam`` with random pauses on every channel, driven through
``AxiLiteMaster``; every layer's output is compared with ``golden/reference.py`` using ``==``;
SLVERR answers on R and on B set the bus error flag and raise ``irq``."""

import os

import numpy as np
import pytest

from cosim.axi_chip_tb import run_axi_chip
from cosim.chip_model import random_image, random_inputs
from cosim.tiled_model import read_layer_outputs
from gen.tiled_compiler import compile_tiled, memory_words, slot_addresses
from golden.reference import run as reference_run
from rtl.tiled import csr
from rtl.tiled.params import TiledParams
from rtl.tiled.sequencer import Error

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("PACT_SEED", "1"))
PARAMS = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512)


def layer_mismatches(image, program, words, inputs):
    """``(slot, layer)`` of every layer whose output differs from the reference."""
    bad = []
    for slot, x in enumerate(inputs):
        got = read_layer_outputs(words, program.layout, slot)
        for i, (g, w) in enumerate(zip(got, reference_run(image, x), strict=True)):
            if not np.array_equal(g, w):
                bad.append((slot, i))
    return bad


def network(model, n=1):
    image = random_image(SEED, model=model, wbits=4, abits=4, input_shape=(1, 8, 8),
                         channels=(8, 8) if model == "resnet" else (8, 16, 8), hidden=(16,))
    inputs = random_inputs(SEED + 1, image, n)
    program = compile_tiled(image, PARAMS, slots=n)
    return image, inputs, program, memory_words(program, inputs)


@pytest.mark.parametrize("model", ["resnet"])
def test_network_bit_exact_over_axi(model, tmp_path):
    image, inputs, program, words = network(model, 2)
    runs = [(0, *slot_addresses(program.layout, i)) for i in range(len(inputs))]
    res = run_axi_chip(PARAMS, words, runs, tmp_path, pause=0.3, seed=SEED)
    assert len(res["runs"]) == len(runs)
    for r in res["runs"]:
        assert r["irq"] and r["error"] == 0
        assert r["status"] == csr.STATUS_DONE
        assert r["irq_status"] == csr.IRQ_DONE and r["irq_after_clear"] == 0
        assert r["mac_beats"] == sum(x.mac_beats for x in program.layout.layers)
    assert layer_mismatches(image, program, res["words"], inputs) == []
    # The checker sees a wrong word.
    out = slot_addresses(program.layout, 0)[1]
    words = list(res["words"])
    words[out + program.layout.layers[0].o_addr] ^= 1
    assert layer_mismatches(image, program, words, inputs) != []


def test_error_responses_raise_the_bus_flag_and_irq(tmp_path):
    _, inputs, program, words = network("mlp")
    in_addr, out_base = slot_addresses(program.layout, 0)
    nb = PARAMS.mem_width // 8
    runs = [(0, in_addr, out_base)]
    # A read of the input answers SLVERR.
    res = run_axi_chip(PARAMS, words, runs, tmp_path / "r", pause=0.2,
                       bad_read=[in_addr * nb, (in_addr + 1) * nb])
    (r,) = res["runs"]
    assert r["irq"] and r["error"] & Error.BUS
    assert r["irq_status"] == csr.IRQ_DONE | csr.IRQ_ERROR
    # A write of the outputs answers SLVERR.
    res = run_axi_chip(PARAMS, words, runs, tmp_path / "w", pause=0.2,
                       bad_write=[out_base * nb, (out_base + 1 << 20) * nb])
    (r,) = res["runs"]
    assert r["irq"] and r["error"] & Error.BUS
    assert r["status"] == csr.STATUS_DONE


def test_digits_cnn_bit_exact_over_axi(tmp_path):
    """The flow's digits CNN shape (8x8 input, 16/32/32 channels, 8-bit end layers) on the
    flow's array, one image."""
    from gen.tiled_compiler import requirements

    image = random_image(SEED + 7, model="cnn", wbits=4, abits=4)
    params = requirements(image, TiledParams(4, 4, 8, 8))
    inputs = random_inputs(SEED + 8, image, 1)
    program = compile_tiled(image, params, slots=1)
    words = memory_words(program, inputs)
    res = run_axi_chip(params, words, [(0, *slot_addresses(program.layout, 0))], tmp_path,
                       pause=0.2, seed=SEED)
    (r,) = res["runs"]
    assert r["irq"] and r["error"] == 0 and r["status"] == csr.STATUS_DONE
    assert layer_mismatches(image, program, res["words"], inputs) == []
