"""PairWindowFetch: row-pair beats from a real activation memory, against a Python model of
``stride*x + kx - pad`` per sub-row, under back-pressure; and its rate."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from rtl.tiled.act_memory import ActMemory
from rtl.tiled.pair_window import PairWindowFetch
from rtl.tiled.params import TiledParams


class _Dut(wiring.Component):
    def __init__(self, p):
        self.mem, self.fetch = ActMemory(p), PairWindowFetch(p)
        super().__init__({"wr": wiring.In(self.mem.wr.signature.flip()),
                          "cmd": wiring.In(self.fetch.cmd.signature.flip()),
                          "beats": wiring.Out(self.fetch.beats.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem, m.submodules.fetch = self.mem, self.fetch
        wiring.connect(m, wiring.flipped(self.wr), self.mem.wr)
        wiring.connect(m, wiring.flipped(self.cmd), self.fetch.cmd)
        wiring.connect(m, self.fetch.beats, wiring.flipped(self.beats))
        wiring.connect(m, self.fetch.rd0, self.mem.rd0)
        wiring.connect(m, self.fetch.rd1, self.mem.rd1)
        return m


def expected(p, words, cmd):
    half = p.cols // 2
    out = []
    rows = [0 if cmd["zmask"] >> g & 1 else words[cmd["addr"] + g * cmd["step"]]
            for g in range(2)]
    for kx in range(cmd["kernel"]):
        for _ in range(cmd["reps"]):
            beat = []
            for c in range(p.cols):
                g, x = divmod(c, half)
                i = cmd["stride"] * x + kx - cmd["pad"]
                beat.append((rows[g] >> (i * p.abits)) & ((1 << p.abits) - 1)
                            if 0 <= i < p.cols else 0)
            out.append(beat)
    return out


def run(p, cmds, seed, backpressure=0.3):
    rng = random.Random(seed)
    words = [rng.getrandbits(p.act_width) for _ in range(64)]
    dut = _Dut(p)
    want = [b for c in cmds for b in expected(p, words, c)]
    got, cycles = [], []

    async def bench(ctx):
        for a, w in enumerate(words):
            ctx.set(dut.wr.valid, 1)
            ctx.set(dut.wr.payload, {"addr": a, "data": w})
            await ctx.tick()
        ctx.set(dut.wr.valid, 0)

        n = 0
        pending = list(cmds)
        ctx.set(dut.cmd.valid, 1 if pending else 0)
        while len(got) < len(want):
            n += 1
            assert n < 40 * len(want) + 100
            if pending:
                ctx.set(dut.cmd.payload, pending[0])
            ready = rng.random() >= backpressure
            ctx.set(dut.beats.ready, ready)
            _, _, cr, bv, beat = await ctx.tick().sample(dut.cmd.ready, dut.beats.valid,
                                                          dut.beats.payload)
            if pending and cr:
                pending.pop(0)
                ctx.set(dut.cmd.valid, 1 if pending else 0)
            if ready and bv:
                got.append([int(x) for x in beat])
                cycles.append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, want, cycles


def random_cmds(p, rng, n):
    return [dict(addr=rng.randrange(0, 60), step=rng.choice([1, 2]), zmask=rng.randrange(4),
                 pad=rng.randrange(0, 3), kernel=rng.choice([1, 3, 5]), stride=rng.choice([1, 2]),
                 reps=rng.choice([1, 2])) for _ in range(n)]


@pytest.mark.parametrize("params", [TiledParams(4, 4, 4, 8, act_kib=1),
                                    TiledParams(2, 2, 4, 16, act_kib=1)])
def test_beats_match_the_model(params):
    rng = random.Random(1)
    got, want, _ = run(params, random_cmds(params, rng, 25), seed=2)
    assert got == want


def test_checker_sees_a_wrong_lane():
    p = TiledParams(4, 4, 4, 8, act_kib=1)
    got, want, _ = run(p, random_cmds(p, random.Random(3), 5), seed=4)
    want[0][0] ^= 1
    assert got != want


def test_one_beat_per_cycle_with_kernel_3():
    p = TiledParams(4, 4, 4, 8, act_kib=1)
    cmds = [dict(addr=2 * i, step=1, zmask=0, pad=1, kernel=3, stride=1, reps=1)
            for i in range(20)]
    got, want, cycles = run(p, cmds, seed=5, backpressure=0.0)
    assert got == want
    assert cycles[-1] - cycles[0] == len(cycles) - 1
