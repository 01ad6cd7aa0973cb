# amaranth: UnusedElaboratable=no
"""WindowFetch over a real ActMemory: beats against a Python model of the window, under random
valid/ready, and the beats per cycle of the double buffer."""

import random
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from cosim.tools import prepare_environment
from gen.generate import LINT_WAIVERS
from rtl.tiled.act_memory import ActMemory
from rtl.tiled.format import pack_act_words
from rtl.tiled.params import TiledParams
from rtl.tiled.window_fetch import WindowFetch, mux_tree, window_command

PARAMS = TiledParams(wbits=4, abits=4, rows=4, cols=8, act_kib=1)   # 256 words, window 4 words


class Top(Elaboratable):
    def __init__(self, params):
        self.mem = ActMemory(params)
        self.wf = WindowFetch(params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem, m.submodules.wf = self.mem, self.wf
        wiring.connect(m, self.wf.rd0, self.mem.rd0)
        wiring.connect(m, self.wf.rd1, self.mem.rd1)
        return m


# ------------------------------------------------------------------ the reference model
def model_beats(words, cmd, params):
    """The beats of one command: for kx, reps times, column c = window[off + stride*c + kx]."""
    cols, bits = params.cols, params.abits

    def lane(i):
        w = i // cols
        addr = (cmd["addr"] + w) % (1 << params.act_addr_bits)
        word = 0 if (cmd["zmask"] >> w) & 1 else words[addr]
        return (word >> (i % cols * bits)) & ((1 << bits) - 1)

    beats = []
    for kx in range(cmd["kernel"]):
        beat = [lane(cmd["off"] + cmd["stride"] * c + kx) for c in range(cols)]
        beats += [beat] * cmd["reps"]
    return beats


def needed_words(cmd, params):
    return (cmd["off"] + cmd["stride"] * (params.cols - 1) + cmd["kernel"] - 1) // params.cols + 1


def random_cmd(rng, params, *, kernel=None, stride=None, reps=None, off=None):
    cmd = {
        "off": rng.randrange(params.cols) if off is None else off,
        "kernel": rng.randint(1, params.max_kernel) if kernel is None else kernel,
        "stride": rng.randint(1, 2) if stride is None else stride,
        "reps": rng.randint(1, 3) if reps is None else reps,
    }
    n = needed_words(cmd, params)
    # Sometimes at the very ends of the memory, with the words outside it masked (padding);
    # left of word 0 the address wraps modulo 2**act_addr_bits.
    edge, span = rng.random(), 1 << params.act_addr_bits
    if edge < 0.1:
        cmd["addr"] = params.act_depth - 1 - rng.randrange(n)
    elif edge < 0.2:
        cmd["addr"] = span - rng.randrange(n)
    else:
        cmd["addr"] = rng.randrange(params.act_depth - params.window_words)
    outside = sum(1 << w for w in range(n) if (cmd["addr"] + w) % span >= params.act_depth)
    cmd["zmask"] = outside | (rng.getrandbits(params.window_words) if rng.random() < 0.3 else 0)
    return cmd


def assert_beats(got, want):
    assert len(got) == len(want), f"{len(got)} beats, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"beat {k}: {g} != {w}"


# ------------------------------------------------------------------ the bench
def run(params, words, cmds, *, bubbles=0.0, backpressure=0.0, seed=0):
    """Write ``words`` through ``wr``, then run ``cmds``. Returns the beats and, per beat and
    per command, the cycle (counted from the first command offered) it was accepted, and the
    sets of word addresses read from the banks, per cycle that reads."""
    top = Top(params)
    wf, mem = top.wf, top.mem
    n_beats = sum(c["kernel"] * c["reps"] for c in cmds)
    rng = random.Random(seed)
    beats, beat_cycles, cmd_cycles, reads = [], [], [], []
    state = {"cycle": None}

    async def producer(ctx):
        order = list(range(len(words)))
        rng.shuffle(order)
        for a in order:
            while rng.random() < bubbles:
                ctx.set(mem.wr.valid, 0)
                await ctx.tick()
            ctx.set(mem.wr.valid, 1)
            ctx.set(mem.wr.payload, {"addr": a, "data": words[a]})
            await ctx.tick()
        ctx.set(mem.wr.valid, 0)
        state["cycle"] = 0
        for cmd in cmds:
            while rng.random() < bubbles:
                await ctx.tick()
            ctx.set(wf.cmd.valid, 1)
            ctx.set(wf.cmd.payload, cmd)
            await ctx.tick().until(wf.cmd.ready)
            cmd_cycles.append(state["cycle"] - 1)
            ctx.set(wf.cmd.valid, 0)

    async def clock(ctx):
        ports = (wf.rd0.en, wf.rd0.addr, wf.rd1.en, wf.rd1.addr)
        async for _, _, en0, a0, en1, a1 in ctx.tick().sample(*ports):
            pair = {2 * a0} if en0 else set()
            pair |= {2 * a1 + 1} if en1 else set()
            reads.extend([pair] if pair else [])
            if state["cycle"] is not None:
                state["cycle"] += 1

    async def consumer(ctx):
        crng = random.Random(seed + 1)
        while state["cycle"] is None:
            await ctx.tick()
        assert ctx.get(wf.idle)
        while len(beats) < n_beats:
            ready = crng.random() >= backpressure
            ctx.set(wf.beats.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(wf.beats.valid, wf.beats.payload)
            assert state["cycle"] < 20 * n_beats + 50 * len(cmds) + 100, "stuck"
            if ready and valid:
                beats.append([int(x) for x in payload])
                beat_cycles.append(state["cycle"] - 1)
        ctx.set(wf.beats.ready, 0)
        await ctx.tick()
        assert ctx.get(wf.idle) and not ctx.get(wf.beats.valid)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_process(clock)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return beats, beat_cycles, cmd_cycles, reads


def random_words(params, seed):
    rng = random.Random(seed)
    return [rng.getrandbits(params.act_width) for _ in range(params.act_depth)]


def expected(words, cmds, params):
    return [b for cmd in cmds for b in model_beats(words, cmd, params)]


# ------------------------------------------------------------------ tests
CONFIGS = [
    PARAMS,
    TiledParams(wbits=2, abits=2, rows=2, cols=4, max_kernel=3, act_kib=1),     # 3-word window
    TiledParams(wbits=4, abits=8, rows=2, cols=2, max_kernel=5, act_kib=1),
    TiledParams(wbits=4, abits=3, rows=4, cols=16, max_kernel=15, act_kib=2),
]


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: f"c{p.cols}a{p.abits}k{p.max_kernel}")
def test_random_commands_under_backpressure(params):
    seed = params.cols * 31 + params.abits
    rng = random.Random(seed)
    words = random_words(params, seed)
    cmds = [random_cmd(rng, params) for _ in range(40)]
    got, _, _, _ = run(params, words, cmds, bubbles=0.3, backpressure=0.4, seed=seed)
    assert_beats(got, expected(words, cmds, params))


def expected_reads(cmds, params):
    """The words read per cycle: each command's needed, unmasked words, two a cycle."""
    pairs = []
    for c in cmds:
        n = needed_words(c, params)
        for p in range(0, n, 2):
            pair = {(c["addr"] + w) % (1 << params.act_addr_bits)
                    for w in range(p, min(p + 2, n)) if not (c["zmask"] >> w) & 1}
            pairs.extend([pair] if pair else [])
    return pairs


def test_reads_only_the_needed_unmasked_words_once():
    p = PARAMS
    rng = random.Random(12)
    words = random_words(p, 12)
    cmds = [random_cmd(rng, p) for _ in range(40)]
    _, _, _, reads = run(p, words, cmds, bubbles=0.2, backpressure=0.3, seed=12)
    assert reads == expected_reads(cmds, p)
    assert reads != expected_reads(cmds[:-1], p)


def test_full_rate_commands_without_stalls():
    p = PARAMS
    rng = random.Random(5)
    words = random_words(p, 5)
    cmds = [random_cmd(rng, p) for _ in range(40)]
    got, _, _, _ = run(p, words, cmds)
    assert_beats(got, expected(words, cmds, p))


def test_the_checker_fails_on_a_wrong_word():
    p = PARAMS
    rng = random.Random(9)
    words = random_words(p, 9)
    cmds = [random_cmd(rng, p, kernel=3, stride=1, reps=1, off=4) for _ in range(6)]
    cmds[2]["zmask"] = 0
    got, _, _, _ = run(p, words, cmds)
    assert_beats(got, expected(words, cmds, p))
    wrong = list(words)
    wrong[cmds[2]["addr"] + 1] ^= 1 << (p.abits * 3)   # lane 3 of window word 1: column 7
    with pytest.raises(AssertionError, match="beat"):
        assert_beats(got, expected(wrong, cmds, p))


def beats_per_cycle(params, cmds):
    words = random_words(params, 3)
    got, beat_cycles, cmd_cycles, _ = run(params, words, cmds)
    assert_beats(got, expected(words, cmds, params))
    return (len(beat_cycles) - 1) / (beat_cycles[-1] - beat_cycles[0]), beat_cycles, cmd_cycles


@pytest.mark.parametrize("kernel, stride, reps", [(3, 1, 1), (3, 2, 1), (1, 1, 1), (2, 1, 1),
                                                  (3, 2, 2), (8, 2, 1)])
def test_one_beat_per_cycle_when_kernel_times_reps_covers_the_fetch(kernel, stride, reps):
    """The measured rate the docstring quotes: 1.0 whenever kernel*reps >= fetch cycles."""
    p = PARAMS
    rng = random.Random(kernel * 10 + stride)
    cmds = [random_cmd(rng, p, kernel=kernel, stride=stride, reps=reps) for _ in range(30)]
    cmds = [c for c in cmds if (needed_words(c, p) + 1) // 2 <= kernel * reps]
    assert len(cmds) >= 10
    rate, cycles, _ = beats_per_cycle(p, cmds)
    assert rate == 1.0
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))


def test_kernel_1_stride_2_over_three_words_is_half_rate():
    """A window of 3 words takes 2 fetch cycles: one beat every 2 cycles."""
    p = PARAMS
    rng = random.Random(4)
    cmds = [random_cmd(rng, p, kernel=1, stride=2, reps=1, off=rng.randint(2, 7))
            for _ in range(20)]
    assert all(needed_words(c, p) == 3 for c in cmds)
    rate, _, _ = beats_per_cycle(p, cmds)
    assert rate == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("off, kernel, stride, fetch_cycles", [(0, 1, 1, 1), (7, 2, 1, 1),
                                                               (7, 3, 1, 2), (7, 8, 2, 2)])
def test_latency_is_the_fetch_cycles(off, kernel, stride, fetch_cycles):
    p = PARAMS
    cmd = {"addr": 17, "zmask": 0, "off": off, "kernel": kernel, "stride": stride, "reps": 1}
    assert (needed_words(cmd, p) + 1) // 2 == fetch_cycles
    words = random_words(p, 6)
    got, beat_cycles, cmd_cycles, _ = run(p, words, [cmd])
    assert_beats(got, model_beats(words, cmd, p))
    assert beat_cycles[0] - cmd_cycles[0] == fetch_cycles


def conv_layer(params, *, shape, kernel, stride, pad, base, reps, seed):
    """Memory words holding a random input tensor at ``base`` (random words elsewhere), the
    commands of a whole convolution (tiles, input channels, kernel rows) from
    ``window_command``, and the beats of each, cut directly from the zero-padded tensor."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    x = rng.integers(0, 1 << params.abits, shape)
    words = random_words(params, seed)
    packed = pack_act_words(x, params)
    words[base:base + len(packed)] = packed
    out_h, out_w = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    cols = params.cols
    padded = np.zeros((c, h + 2 * pad, (out_w + 2 * cols) * stride + kernel), dtype=np.int64)
    padded[:, pad:pad + h, pad:pad + w] = x
    cmds, want = [], []
    for oy in range(out_h):
        for x0 in range(0, out_w, cols):
            for ci in range(c):
                for ky in range(kernel):
                    y = oy * stride - pad + ky
                    cmds.append(window_command(params, base=base, shape=shape, ci=ci, y=y,
                                               x0=x0, kernel=kernel, stride=stride, pad=pad,
                                               reps=reps))
                    for kx in range(kernel):
                        beat = [int(padded[ci, y + pad, (x0 + col) * stride + kx])
                                for col in range(cols)]
                        want += [beat] * reps
    return words, cmds, want


@pytest.mark.parametrize("kernel, stride, pad, w, base", [
    (3, 1, 1, 8, 37), (3, 1, 1, 8, 0), (3, 2, 1, 16, 0), (3, 2, 1, 7, 41), (1, 1, 0, 5, 3),
    (5, 1, 2, 13, 1), (1, 2, 0, 16, 10), (8, 2, 3, 20, 0), (2, 1, 0, 9, 100),
])
def test_window_command_cuts_the_padded_convolution(kernel, stride, pad, w, base):
    p = PARAMS
    words, cmds, want = conv_layer(p, shape=(2, 4, w), kernel=kernel, stride=stride, pad=pad,
                                   base=base, reps=2, seed=kernel * 100 + w + base)
    got = [b for cmd in cmds for b in model_beats(words, cmd, p)]
    assert got == want


def test_a_convolution_through_the_hardware():
    p = PARAMS
    words, cmds, want = conv_layer(p, shape=(3, 5, 12), kernel=3, stride=1, pad=1, base=0,
                                   reps=1, seed=8)
    got, _, _, _ = run(p, words, cmds, bubbles=0.2, backpressure=0.2, seed=8)
    assert_beats(got, want)


def test_window_command_rejects_a_bad_kernel():
    with pytest.raises(ValueError, match="kernel 9"):
        window_command(PARAMS, base=0, shape=(1, 4, 8), ci=0, y=0, x0=0, kernel=9, stride=1,
                       pad=0, reps=1)


def test_mux_tree_selects_every_index():
    values = [3, 1, 4, 1, 5, 9, 2]
    m = Module()
    sel, out = Signal(3), Signal(4)
    m.d.comb += out.eq(mux_tree(values, sel))
    seen = []

    async def bench(ctx):
        for i in range(8):
            ctx.set(sel, i)
            seen.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == values + [values[-1]]


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: f"c{p.cols}a{p.abits}k{p.max_kernel}")
def test_converts_to_verilog_deterministically(params):
    a = verilog.convert(WindowFetch(params), name="window_fetch", emit_src=False)
    b = verilog.convert(WindowFetch(params), name="window_fetch", emit_src=False)
    assert "module window_fetch" in a and a == b


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: f"c{p.cols}a{p.abits}k{p.max_kernel}")
def test_verilator_lint_wall_with_the_common_waivers(tmp_path, require_sim, params):
    require_sim("verilator")
    prepare_environment("verilator")
    text = verilog.convert(WindowFetch(params), name="window_fetch", emit_src=False)
    (tmp_path / "window_fetch.v").write_text(text)
    waivers = [f"-Wno-{w}" for w in sorted(LINT_WAIVERS)]
    res = subprocess.run(["verilator", "--lint-only", "-Wall", *waivers, "window_fetch.v"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "%Warning" not in res.stderr


def test_rejects_non_params():
    with pytest.raises(TypeError, match="TiledParams"):
        WindowFetch(8)
