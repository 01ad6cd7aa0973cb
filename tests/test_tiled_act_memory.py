# amaranth: UnusedElaboratable=no
"""ActMemory: words written through ``wr`` come back from the bank of their address parity, one
cycle after ``en``, held while ``en`` is low, old data on a same-cycle write."""

import random
import subprocess

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from cosim.tools import prepare_environment
from gen.generate import LINT_WAIVERS
from rtl.tiled.act_memory import ActMemory, bank_depth
from rtl.tiled.params import TiledParams

PARAMS = TiledParams(wbits=4, abits=4, rows=4, cols=8, act_kib=1)


def run(params, writes, reads, *, bubbles=0.3, seed=0):
    """Write ``writes`` (addr, word) then issue ``reads`` (word addresses, one per port per
    cycle, even addresses on rd0, odd on rd1). Returns ``{addr: word read}`` per read, in
    order, and the ``data`` seen while ``en`` stayed low after each read."""
    dut = ActMemory(params)
    rng = random.Random(seed)
    got, held = [], []

    async def bench(ctx):
        assert ctx.get(dut.wr.ready) == 1
        for addr, word in writes:
            while rng.random() < bubbles:
                ctx.set(dut.wr.valid, 0)
                await ctx.tick()
            ctx.set(dut.wr.valid, 1)
            ctx.set(dut.wr.payload, {"addr": addr, "data": word})
            await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        for addr in reads:
            port = dut.rd1 if addr % 2 else dut.rd0
            ctx.set(port.addr, addr // 2)
            ctx.set(port.en, 1)
            await ctx.tick()
            ctx.set(port.en, 0)
            ctx.set(port.addr, rng.randrange(bank_depth(params)))   # ignored: en is low
            got.append(ctx.get(port.data))
            await ctx.tick()
            held.append(ctx.get(port.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, held


def expected(writes, reads):
    mem = {}
    for addr, word in writes:
        mem[addr] = word
    return [mem.get(a, 0) for a in reads]


def test_words_come_back_from_their_bank():
    p = PARAMS
    rng = random.Random(1)
    writes = [(rng.randrange(p.act_depth), rng.getrandbits(p.act_width)) for _ in range(300)]
    reads = [rng.randrange(p.act_depth) for _ in range(120)] + [0, p.act_depth - 1]
    got, held = run(p, writes, reads)
    want = expected(writes, reads)
    assert got == want
    assert held == want


def test_a_wrong_expectation_fails():
    p = PARAMS
    writes = [(a, a * 3 + 1) for a in range(8)]
    reads = list(range(8))
    got, _ = run(p, writes, reads, bubbles=0.0)
    assert got == expected(writes, reads)
    assert got != expected(writes[:3] + [(3, 0)] + writes[4:], reads)


def test_both_banks_in_one_cycle_and_no_transparency():
    """rd0 and rd1 read together; a read in the cycle its word is written sees the old word."""
    p = PARAMS
    dut = ActMemory(p)
    seen = {}

    async def bench(ctx):
        for addr, word in [(4, 0x11), (5, 0x22)]:
            ctx.set(dut.wr.valid, 1)
            ctx.set(dut.wr.payload, {"addr": addr, "data": word})
            await ctx.tick()
        ctx.set(dut.wr.payload, {"addr": 4, "data": 0x33})   # written at this edge
        ctx.set(dut.rd0.addr, 2)
        ctx.set(dut.rd1.addr, 2)
        ctx.set(dut.rd0.en, 1)
        ctx.set(dut.rd1.en, 1)
        await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        seen["same_cycle"] = (ctx.get(dut.rd0.data), ctx.get(dut.rd1.data))
        await ctx.tick()
        seen["next"] = (ctx.get(dut.rd0.data), ctx.get(dut.rd1.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"same_cycle": (0x11, 0x22), "next": (0x33, 0x22)}


@pytest.mark.parametrize("params", [
    PARAMS,
    TiledParams(wbits=2, abits=2, rows=2, cols=4, act_kib=1),
    TiledParams(wbits=4, abits=3, rows=8, cols=16, act_kib=3),
])
def test_converts_to_verilog_deterministically(params):
    a = verilog.convert(ActMemory(params), name="act_memory", emit_src=False)
    b = verilog.convert(ActMemory(params), name="act_memory", emit_src=False)
    assert "module act_memory" in a and a == b


@pytest.mark.parametrize("params", [PARAMS])
def test_verilator_lint_wall_with_the_common_waivers(tmp_path, require_sim, params):
    require_sim("verilator")
    prepare_environment("verilator")
    text = verilog.convert(ActMemory(params), name="act_memory", emit_src=False)
    (tmp_path / "act_memory.v").write_text(text)
    waivers = [f"-Wno-{w}" for w in sorted(LINT_WAIVERS)]
    res = subprocess.run(["verilator", "--lint-only", "-Wall", *waivers, "act_memory.v"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "%Warning" not in res.stderr


def test_rejects_non_params():
    with pytest.raises(TypeError, match="TiledParams"):
        ActMemory({"cols": 8})
