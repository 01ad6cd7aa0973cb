# amaranth: UnusedElaboratable=no
"""The whole chip in Amaranth's simulator: random integer networks, compiled by gen/compiler.py,
run from a Python memory model with random latency and back-pressure; every layer's output
tensor in memory is compared with golden/reference.py using ``==``."""

import os
import random
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from cosim.chip_model import random_image, random_inputs, read_outputs
from gen.compiler import Hardware, compile_image, memory_words, slot_addresses
from golden.reference import run as reference_run
from rtl import chip_format as cf
from rtl.chip import ERR_BUFFER, ERR_MEMORY, ERR_UNKNOWN_OP, ChipParams, PactChip

SEED = int(os.environ.get("PACT_SEED", "1"))


def hardware(p):
    return Hardware(wbits=p.wbits, abits=p.abits, rows=p.rows, cols=p.cols,
                    mem_width=p.mem_width, max_bits=p.max_bits, max_channels=p.max_channels,
                    max_plane=p.max_plane, wbuf_depth=p.wbuf_depth)


class MemoryModel:
    """External memory behind the chip's three streams.

    Reads are answered in order after ``latency`` cycles (a random choice per read, never
    earlier than the previous answer); ``cmd_ready``/``wr_ready`` are the probabilities of
    accepting a read command or a write in a cycle.
    """

    def __init__(self, words, *, seed=0, latency=(1, 1), cmd_ready=1.0, wr_ready=1.0):
        self.words = list(words)
        self.rng = random.Random(seed)
        self.latency, self.cmd_ready, self.wr_ready = latency, cmd_ready, wr_ready
        self.writes = []

    def read(self, addr):
        return self.words[addr] if addr < len(self.words) else 0


def run_chip(params, words, *, in_addr, out_base, prog_addr=0, mem=None, max_cycles=200_000,
             extra_responses=0):
    """Run one program; returns ``(memory, result)`` with ``result`` a dict of the CSRs at done
    and the cycle of each ``layer`` change."""
    dut = PactChip(params)
    mem = mem or MemoryModel(words)
    mem.words = list(words)
    result = {}

    async def bench(ctx):
        ctx.set(dut.prog_addr, prog_addr)
        ctx.set(dut.in_addr, in_addr)
        ctx.set(dut.out_base, out_base)
        await ctx.tick()
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        pending = deque()
        last_ready = 0
        layer, layer_cycles = 0, [0]
        spurious = extra_responses
        for cycle in range(max_cycles):
            rd_ready = mem.rng.random() < mem.cmd_ready
            wr_ready = mem.rng.random() < mem.wr_ready
            ctx.set(dut.mem_rd_cmd.ready, rd_ready)
            ctx.set(dut.mem_wr.ready, wr_ready)
            head = pending and pending[0][0] <= cycle
            if spurious and not pending and cycle > 20:
                ctx.set(dut.mem_rd_data.valid, 1)
                ctx.set(dut.mem_rd_data.payload, 0)
                spurious -= 1
            else:
                ctx.set(dut.mem_rd_data.valid, bool(head))
                ctx.set(dut.mem_rd_data.payload, pending[0][1] if head else 0)
            if head and ctx.get(dut.mem_rd_data.ready):
                pending.popleft()
            if rd_ready and ctx.get(dut.mem_rd_cmd.valid):
                addr = ctx.get(dut.mem_rd_cmd.payload)
                last_ready = max(last_ready, cycle + mem.rng.randint(*mem.latency))
                pending.append((last_ready, mem.read(addr)))
            if wr_ready and ctx.get(dut.mem_wr.valid):
                addr = ctx.get(dut.mem_wr.payload.addr)
                data = ctx.get(dut.mem_wr.payload.data)
                mem.writes.append(addr)
                if addr >= len(mem.words):
                    mem.words += [0] * (addr + 1 - len(mem.words))
                mem.words[addr] = data
            if ctx.get(dut.layer) != layer:
                layer = ctx.get(dut.layer)
                layer_cycles.append(cycle)
            if ctx.get(dut.done):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"no done after {max_cycles} cycles")
        result.update(cycles=ctx.get(dut.cycles), error=ctx.get(dut.error),
                      mac_beats=ctx.get(dut.mac_beats), layer=ctx.get(dut.layer),
                      layer_cycles=layer_cycles, busy=ctx.get(dut.busy))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return mem, result


def run_network(params, image, x, **kw):
    program = compile_image(image, hardware(params))
    words = memory_words(program, [x])
    in_addr, out_base = slot_addresses(program.layout, 0)
    mem, result = run_chip(params, words, in_addr=in_addr, out_base=out_base, **kw)
    return program, mem, result


def check_network(params, image, x, **kw):
    program, mem, result = run_network(params, image, x, **kw)
    assert result["error"] == 0
    got = read_outputs(mem.words, program.layout)
    want = reference_run(image, x)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"layer {i}"
        assert np.array_equal(g, w), f"layer {i} ({image.layers[i].name}) differs"
    beats = sum(lay["mac_beats"] for lay in program.layout["layers"])
    assert result["mac_beats"] == beats
    return program, result


SMALL = ChipParams(wbits=4, abits=4, rows=2, cols=3, mem_width=32, max_channels=8,
                   max_plane=16, wbuf_depth=256)


def test_tiny_cnn():
    specs = [
        dict(name="conv0", op="conv", in_shape=(1, 4, 4), out_shape=(3, 4, 4), kernel=3,
             stride=1, padding=1),
        dict(name="fc", op="fc", in_shape=(48,), out_shape=(3,)),
    ]
    image = random_image(SEED, wbits=4, abits=4, input_shape=(1, 4, 4), specs=specs)
    x = random_inputs(SEED, image, 1)[0]
    check_network(SMALL, image, x)
