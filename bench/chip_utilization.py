"""MAC utilization of the chip on the digits CNN, measured in Amaranth's simulator.

    /work/venv/bin/python bench/chip_utilization.py [--wbits 4 --abits 4 --rows 8 --cols 8]
        [--latency 1] [--seed 1] [--json OUT]

Builds the chip (``rtl/chip.py``) with the given array and default buffers, compiles a random
integer network with the digits CNN's shapes (``cosim.chip_model.random_image``: conv 3x3
1->16 s1, 16->32 s2, 32->32 s1, fc 512->10; 8-bit first and last layers), runs one inference
against a memory that answers every read after ``--latency`` cycles and never stalls, checks
every layer against golden/reference.py with ``==``, and prints per layer the cycles (from
the ``layer`` CSR changing to that layer until it changes again or ``done``), the MAC-array
beats, and the utilization ``useful_macs / (rows * cols * cycles)`` where ``useful_macs`` counts
each slice-beat MAC (docs/chip.md). The target is >= 80% over the conv layers on 8x8 at 4 bits.
"""

import argparse
import json
import sys
from collections import deque
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.chip_model import random_image, random_inputs, read_outputs  # noqa: E402
from gen.compiler import Hardware, compile_image, memory_words, slot_addresses  # noqa: E402
from golden.reference import run as reference_run  # noqa: E402
from rtl.chip import ChipParams, PactChip  # noqa: E402


def measure(wbits, abits, rows, cols, latency=1, seed=1):
    params = ChipParams(wbits=wbits, abits=abits, rows=rows, cols=cols)
    hw = Hardware(wbits=wbits, abits=abits, rows=rows, cols=cols, mem_width=params.mem_width,
                  max_bits=params.max_bits, max_channels=params.max_channels,
                  max_plane=params.max_plane, wbuf_depth=params.wbuf_depth)
    image = random_image(seed, model="cnn", wbits=wbits, abits=abits)
    x = random_inputs(seed, image, 1)[0]
    program = compile_image(image, hw)
    in_addr, out_base = slot_addresses(program.layout, 0)
    dut = PactChip(params)
    words = memory_words(program, [x])
    starts, csr = [0], {}

    async def bench(ctx):
        ctx.set(dut.mem_rd_cmd.ready, 1)
        ctx.set(dut.mem_wr.ready, 1)
        ctx.set(dut.in_addr, in_addr)
        ctx.set(dut.out_base, out_base)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        pending, cycle, layer = deque(), 0, 0
        while not ctx.get(dut.done):
            cycle += 1
            head = bool(pending) and pending[0][0] <= cycle
            ctx.set(dut.mem_rd_data.valid, head)
            ctx.set(dut.mem_rd_data.payload, pending[0][1] if head else 0)
            if head:
                pending.popleft()
            if ctx.get(dut.mem_rd_cmd.valid):
                addr = ctx.get(dut.mem_rd_cmd.payload)
                pending.append((cycle + latency, words[addr] if addr < len(words) else 0))
            if ctx.get(dut.mem_wr.valid):
                words[ctx.get(dut.mem_wr.payload.addr)] = ctx.get(dut.mem_wr.payload.data)
            if ctx.get(dut.layer) != layer:
                layer = ctx.get(dut.layer)
                starts.append(cycle)
            await ctx.tick()
        starts.append(cycle)
        csr.update(cycles=ctx.get(dut.cycles), error=ctx.get(dut.error),
                   mac_beats=ctx.get(dut.mac_beats))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    got = read_outputs(words, program.layout)
    want = reference_run(image, x)
    exact = csr["error"] == 0 and all(np.array_equal(g, w) for g, w in zip(got, want,
                                                                          strict=True))
    layers, conv_macs, conv_cycles = [], 0, 0
    for i, lay in enumerate(program.layout["layers"]):
        cycles = starts[i + 1] - starts[i]
        util = lay["useful_macs"] / (rows * cols * cycles)
        layers.append(dict(name=lay["name"], op=lay["op"], cycles=cycles,
                           mac_beats=lay["mac_beats"], useful_macs=lay["useful_macs"],
                           utilization=round(util, 4)))
        if lay["op"] == "conv":
            conv_macs += lay["useful_macs"]
            conv_cycles += cycles
    return dict(params=dict(wbits=wbits, abits=abits, rows=rows, cols=cols, latency=latency),
                bit_exact=exact, cycles=csr["cycles"], mac_beats=csr["mac_beats"],
                layers=layers,
                conv_utilization=round(conv_macs / (rows * cols * conv_cycles), 4))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("wbits", 4), ("abits", 4), ("rows", 8), ("cols", 8),
                          ("latency", 1), ("seed", 1)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    res = measure(args.wbits, args.abits, args.rows, args.cols, args.latency, args.seed)
    for lay in res["layers"]:
        print(f"{lay['name']:>8} {lay['op']:>4} {lay['cycles']:7d} cycles "
              f"{lay['mac_beats']:7d} beats  utilization {lay['utilization']:.1%}")
    print(f"conv layers: {res['conv_utilization']:.1%} of peak; total {res['cycles']} cycles; "
          f"bit-exact: {res['bit_exact']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if res["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
