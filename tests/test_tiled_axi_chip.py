# amaranth: UnusedElaboratable=no
"""The whole AXI tiled chip (``rtl/tiled/axi_chip.py``) in Amaranth's simulator: a compiled
network runs from an AXI4 slave model that answers read bursts of different IDs out of order
and interleaves their beats (``tiled_streams.AxiReadSlave``), with pauses on every channel;
the registers are driven over AXI4-Lite; every layer's output in memory is compared with
golden/reference.py using ``==``."""

import os
import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from test_tiled_chip import MemoryModel, check_outputs
from tiled_streams import AxiReadSlave, AxiWriteSlave

from cosim.chip_model import random_image, random_inputs
from gen.tiled_compiler import compile_tiled, memory_words, slot_addresses
from rtl.tiled import csr
from rtl.tiled.axi_chip import ID_BITS, M_AXI, S_AXIL, AxiChip
from rtl.tiled.chip import READ_CLIENTS
from rtl.tiled.params import TiledParams

SEED = int(os.environ.get("PACT_SEED", "1"))


class AxiChipBench:
    """Cycle by cycle: the read and write slave models step every cycle, also while the
    registers are written or read over AXI4-Lite (one access at a time)."""

    def __init__(self, dut, mem, *, seed, **slave):
        self.dut, self.mem, self.cycle = dut, mem, 0
        port = self.port
        rng = random.Random(seed)
        self.rd = AxiReadSlave(port, mem.read, data_width=mem.mw, rng=rng, **slave)
        self.wr = AxiWriteSlave(port, mem.write, data_width=mem.mw, rng=rng,
                                stall=slave.get("ar_stall", 0.3))

    def port(self, name):
        return getattr(self.dut, M_AXI + name)

    def lite(self, name):
        return getattr(self.dut, S_AXIL + name)

    async def tick(self, ctx):
        self.rd.step(ctx, self.cycle)
        self.wr.step(ctx)
        await ctx.tick()
        self.cycle += 1

    async def write(self, ctx, reg, value):
        ctx.set(self.lite("awaddr"), csr.by_name(reg).offset)
        ctx.set(self.lite("wdata"), value)
        ctx.set(self.lite("wstrb"), 0xF)
        ctx.set(self.lite("bready"), 1)
        ctx.set(self.lite("awvalid"), 1)
        ctx.set(self.lite("wvalid"), 1)
        while not ctx.get(self.lite("awready")):
            await self.tick(ctx)
        await self.tick(ctx)
        ctx.set(self.lite("awvalid"), 0)
        ctx.set(self.lite("wvalid"), 0)
        while not ctx.get(self.lite("bvalid")):
            await self.tick(ctx)
        await self.tick(ctx)

    async def read(self, ctx, reg):
        ctx.set(self.lite("araddr"), csr.by_name(reg).offset)
        ctx.set(self.lite("rready"), 1)
        ctx.set(self.lite("arvalid"), 1)
        while not ctx.get(self.lite("arready")):
            await self.tick(ctx)
        await self.tick(ctx)
        ctx.set(self.lite("arvalid"), 0)
        while not ctx.get(self.lite("rvalid")):
            await self.tick(ctx)
        value = ctx.get(self.lite("rdata"))
        await self.tick(ctx)
        return value

    async def run(self, ctx, prog_addr, in_addr, out_base, max_cycles):
        """One run of the program; its registers after the interrupt."""
        await self.write(ctx, "IRQ_ENABLE", csr.IRQ_DONE | csr.IRQ_ERROR)
        await self.write(ctx, "PROG_ADDR", prog_addr)
        await self.write(ctx, "IN_ADDR", in_addr)
        await self.write(ctx, "OUT_BASE", out_base)
        await self.write(ctx, "CTRL", csr.CTRL_START)
        start = self.cycle
        while not ctx.get(self.dut.irq):
            assert self.cycle - start < max_cycles, f"no irq after {max_cycles} cycles"
            await self.tick(ctx)
        regs = {name: await self.read(ctx, name)
                for name in ("STATUS", "ERROR", "CYCLES", "MAC_BEATS", "IRQ_STATUS")}
        await self.write(ctx, "IRQ_STATUS", csr.IRQ_DONE | csr.IRQ_ERROR)
        assert not self.rd.bursts and self.wr.idle, "done with AXI transfers outstanding"
        return regs


def run_axi_chip(params, mem, runs, *, seed, max_cycles=400_000, **slave):
    """Run the program once per ``(prog_addr, in_addr, out_base)``; returns the registers of
    each run and the bench (its slave models count reorders and interleaves)."""
    dut = AxiChip(params)
    bench = AxiChipBench(dut, mem, seed=seed, **slave)
    results = []

    async def testbench(ctx):
        await ctx.tick()
        for run in runs:
            results.append(await bench.run(ctx, *run, max_cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results, bench


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet", "cnn"])
def test_network_bit_exact_with_reordered_interleaved_ids(model):
    """Two images, every layer ``==`` the reference, while the slave answers the chip's five
    read IDs out of order and interleaves their beats (counted: both happen)."""
    params = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512)
    image = random_image(SEED, model=model, wbits=4, abits=4, input_shape=(1, 8, 8),
                         channels=(8, 8) if model == "resnet" else (8, 16, 8), hidden=(16,))
    inputs = random_inputs(SEED + 1, image, 2)
    program = compile_tiled(image, params, slots=len(inputs))
    mem = MemoryModel(memory_words(program, inputs), params.mem_width)
    runs = [(0, *slot_addresses(program.layout, i)) for i in range(len(inputs))]
    results, bench = run_axi_chip(params, mem, runs, seed=SEED, latency=(1, 12))
    for r in results:
        assert r["ERROR"] == 0 and r["STATUS"] == csr.STATUS_DONE
        assert r["IRQ_STATUS"] == csr.IRQ_DONE
        assert r["MAC_BEATS"] == sum(x.mac_beats for x in program.layout.layers)
    check_outputs(image, program, mem, inputs)
    assert bench.rd.reorders > 0 and bench.rd.interleaves > 0
    skips = model == "resnet"   # the skip client (ID 4) reads only for residual layers
    assert {arid for arid, _, _ in bench.rd.ars} == set(range(READ_CLIENTS - 1 + skips))


def test_checker_sees_a_wrong_word_from_the_slave():
    """The bench's memory answers the first layer's weight words inverted: a layer differs
    from the reference (so the comparison above can fail)."""
    params = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512)
    image = random_image(SEED, model="mlp", wbits=4, abits=4, hidden=(16,))
    inputs = random_inputs(SEED + 1, image, 1)
    program = compile_tiled(image, params)
    mem = MemoryModel(memory_words(program, inputs), params.mem_width)
    layer = program.layout.layers[0]
    read = mem.read
    weights = range(layer.w_addr, layer.w_addr + layer.w_words)
    mem.read = lambda a: read(a) ^ ((1 << params.mem_width) - 1 if a in weights else 0)
    run_axi_chip(params, mem, [(0, *slot_addresses(program.layout, 0))], seed=SEED)
    with pytest.raises(AssertionError, match="layer 0"):
        check_outputs(image, program, mem, inputs)


def test_axi_ids_are_three_bits_and_the_verilog_is_stable():
    p = TiledParams(4, 4, 4, 8, act_kib=4, ring_beats=512)
    text = verilog.convert(AxiChip(p), name="pact_tiled_chip", emit_src=False)
    assert text == verilog.convert(AxiChip(p), name="pact_tiled_chip", emit_src=False)
    assert ID_BITS == 3
    for port in ("arid", "rid", "awid", "bid"):
        assert f"[2:0] {M_AXI}{port};" in text
