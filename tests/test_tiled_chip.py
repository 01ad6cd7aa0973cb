# amaranth: UnusedElaboratable=no
"""The whole tiled chip in Amaranth's simulator: integer networks compiled by
gen/tiled_compiler.py, run from a Python memory model with random latency and back-pressure;
every layer's output in memory is compared with golden/reference.py using ``==`` (and with
the instruction-level model, which must agree with both)."""

import os
import random
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from cosim.chip_model import random_image, random_inputs
from cosim.tiled_model import read_layer_outputs
from gen.tiled_compiler import compile_tiled, memory_words, slot_addresses
from golden.reference import run as reference_run
from rtl.tiled.chip import TiledChip
from rtl.tiled.params import TiledParams
from rtl.tiled.sequencer import Error

SEED = int(os.environ.get("PACT_SEED", "1"))


class MemoryModel:
    """External memory behind the chip's streams: reads answered in order after a random
    latency in ``latency``; ``cmd_ready``/``wr_ready`` are the chances of taking a read command
    or a write in a cycle; writes honour the byte strobes."""

    def __init__(self, words, mem_width, *, seed=0, latency=(1, 1), cmd_ready=1.0,
                 wr_ready=1.0):
        self.words = list(words)
        self.mw = mem_width
        self.rng = random.Random(seed)
        self.latency, self.cmd_ready, self.wr_ready = latency, cmd_ready, wr_ready

    def read(self, addr):
        return self.words[addr] if addr < len(self.words) else 0

    def write(self, addr, data, strobe):
        if addr >= len(self.words):
            self.words += [0] * (addr + 1 - len(self.words))
        mask = 0
        for byte in range(self.mw // 8):
            if strobe >> byte & 1:
                mask |= 0xFF << (8 * byte)
        self.words[addr] = (self.words[addr] & ~mask) | (data & mask)


def run_chip(params, mem, runs, *, max_cycles=400_000):
    """Run the program once per ``(prog_addr, in_addr, out_base)``; one dict of CSRs per run."""
    dut = TiledChip(params)
    results = []

    async def bench(ctx):
        await ctx.tick()
        pending = deque()
        last = 0
        cycle = 0
        for prog_addr, in_addr, out_base in runs:
            ctx.set(dut.prog_addr, prog_addr)
            ctx.set(dut.in_addr, in_addr)
            ctx.set(dut.out_base, out_base)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            start = cycle
            while not ctx.get(dut.done):
                cycle += 1
                if cycle - start > max_cycles:
                    raise AssertionError(f"no done after {max_cycles} cycles (layer "
                                         f"{ctx.get(dut.layer)}, error {ctx.get(dut.error)})")
                rd_ready = mem.rng.random() < mem.cmd_ready
                wr_ready = mem.rng.random() < mem.wr_ready
                ctx.set(dut.mem_rd_cmd.ready, rd_ready)
                ctx.set(dut.mem_wr.ready, wr_ready)
                head = bool(pending) and pending[0][0] <= cycle
                ctx.set(dut.mem_rd_data.valid, head)
                ctx.set(dut.mem_rd_data.payload, pending[0][1] if head else 0)
                if head:
                    assert ctx.get(dut.mem_rd_data.ready)
                    pending.popleft()
                if rd_ready and ctx.get(dut.mem_rd_cmd.valid):
                    addr = ctx.get(dut.mem_rd_cmd.payload)
                    last = max(last + 1, cycle + mem.rng.randint(*mem.latency))
                    pending.append((last, mem.read(addr)))
                if wr_ready and ctx.get(dut.mem_wr.valid):
                    w = dut.mem_wr.payload
                    mem.write(ctx.get(w.addr), ctx.get(w.data), ctx.get(w.strobe))
                await ctx.tick()
            assert not pending, "the chip finished with reads outstanding"
            results.append(dict(cycles=ctx.get(dut.cycles), error=ctx.get(dut.error),
                                mac_beats=ctx.get(dut.mac_beats), layer=ctx.get(dut.layer)))
            ctx.set(dut.mem_rd_data.valid, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def run_network(params, image, inputs, **mem_kw):
    program = compile_tiled(image, params, slots=len(inputs))
    mem = MemoryModel(memory_words(program, inputs), params.mem_width, seed=SEED, **mem_kw)
    runs = [(0, *slot_addresses(program.layout, i)) for i in range(len(inputs))]
    return program, mem, run_chip(params, mem, runs)


def check_outputs(image, program, mem, inputs):
    for slot, x in enumerate(inputs):
        got = read_layer_outputs(mem.words, program.layout, slot)
        want = reference_run(image, x)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert np.array_equal(g, w), f"slot {slot} layer {i}: first difference at " \
                f"{np.argwhere(g != w)[0].tolist()}"


@pytest.mark.parametrize("model", ["cnn", "mlp", "resnet"])
def test_small_networks_bit_exact(model):
    params = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512)
    image = random_image(SEED, model=model, wbits=4, abits=4, input_shape=(1, 8, 8),
                         channels=(8, 8) if model == "resnet" else (8, 16, 8), hidden=(16,))
    inputs = random_inputs(SEED + 1, image, 2)
    program, mem, results = run_network(params, image, inputs)
    assert all(r["error"] == 0 for r in results)
    check_outputs(image, program, mem, inputs)
    assert results[0]["mac_beats"] == sum(p.mac_beats for p in program.layout.layers)


def test_bit_exact_under_latency_and_back_pressure():
    params = TiledParams(2, 2, 4, 8, act_kib=4, ring_beats=512, max_reads=3)
    image = random_image(SEED + 2, model="resnet", wbits=2, abits=2, input_shape=(1, 8, 8),
                         channels=(8, 8))
    inputs = random_inputs(SEED + 3, image, 1)
    program, mem, results = run_network(params, image, inputs, latency=(1, 9), cmd_ready=0.7,
                                        wr_ready=0.7)
    assert results[0]["error"] == 0
    check_outputs(image, program, mem, inputs)


def test_unknown_op_sets_the_flag():
    params = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512)
    image = random_image(SEED, model="mlp", wbits=4, abits=4, hidden=(16,))
    program = compile_tiled(image, params)
    words = memory_words(program, random_inputs(SEED, image, 1))
    words[0] |= 3   # op field of the first descriptor
    mem = MemoryModel(words, params.mem_width)
    (res,) = run_chip(params, mem, [(0, *slot_addresses(program.layout, 0))])
    assert res["error"] == Error.UNKNOWN_OP


POOL_SPECS = [
    dict(name="conv0", op="conv", in_shape=(1, 8, 8), out_shape=(8, 4, 4), kernel=3, stride=1,
         padding=1, pool="max2"),
    dict(name="conv1", op="conv", in_shape=(8, 4, 4), out_shape=(8, 2, 2), kernel=3, stride=1,
         padding=1, pool="max2"),
    dict(name="fc", op="fc", in_shape=(32,), out_shape=(10,)),
]
# ResNet's option A shortcut: the skip is the layer-0 output subsampled by 2 and put in the
# middle channels; the logits read it through a global average pool.
OPTION_A_SPECS = [
    dict(name="conv0", op="conv", in_shape=(1, 8, 8), out_shape=(4, 8, 8), kernel=3, stride=1,
         padding=1),
    dict(name="conv1", op="conv", in_shape=(4, 8, 8), out_shape=(8, 4, 4), kernel=3, stride=2,
         padding=1),
    dict(name="conv2", op="conv", in_shape=(8, 4, 4), out_shape=(8, 4, 4), kernel=3, stride=1,
         padding=1, skip=0, skip_stride=2, skip_channel_offset=2),
    dict(name="fc", op="fc", in_shape=(8, 4, 4), out_shape=(10,), in_pool="avg"),
]


@pytest.mark.parametrize("name,specs,colsum", [("pool", POOL_SPECS, False),
                                               ("option_a", OPTION_A_SPECS, False),
                                               ("option_a_colsum", OPTION_A_SPECS, True)])
def test_pooling_and_addressed_skips_bit_exact(name, specs, colsum):
    """Option A ends with an averaged fc: folded into a 4x4 kernel, or a column sum."""
    params = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512, colsum=colsum)
    image = random_image(SEED + 4, wbits=4, abits=4, input_shape=(1, 8, 8), specs=specs)
    inputs = random_inputs(SEED + 5, image, 1)
    program, mem, results = run_network(params, image, inputs, latency=(1, 4))
    assert results[0]["error"] == 0
    assert program.layout.layers[-1].colsum == colsum
    check_outputs(image, program, mem, inputs)
