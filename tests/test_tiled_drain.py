# amaranth: UnusedElaboratable=no
"""Drain in Amaranth's simulator: random tiles of every kind (plain, residual, pooled, logits,
partial rows and lanes, layers mixed) against a model built on golden.integer and
format.pool_codes, with bubbles on every input and back-pressure on both outputs; then the
one-row-per-cycle throughput, the latency, the checker and Verilog conversion."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from cosim.stimulus import mac_beats, mac_expected
from golden.integer import LOGIT_BITS, REQUANT_MAX_SHIFT, requantize, requantize_residual
from rtl.mac_array import MacArray
from rtl.tiled.drain import LATENCY, Drain
from rtl.tiled.format import pool_codes
from rtl.tiled.params import TiledParams

PARAMS = {
    # requant_lanes: 2 of 8 columns (4 lane groups per row), 1 of 4, all (one group), 1 of 2.
    "w4a4_4x8": TiledParams(wbits=4, abits=4, rows=4, cols=8, max_kernel=3,
                            max_in_channels=16, requant_lanes=2, colsum=True),
    "w2a2_3x4": TiledParams(wbits=2, abits=2, rows=3, cols=4, max_kernel=3,
                            max_in_channels=8, requant_lanes=1, colsum=True),
    "w8a8_2x2": TiledParams(wbits=8, abits=8, rows=2, cols=2, max_kernel=1,
                            max_in_channels=4, requant_lanes=2, colsum=True),
    # abits 16: the PactUnit saturates at 17 bits, the logits are saturated again after it.
    "w2a16_1x2": TiledParams(wbits=2, abits=16, rows=1, cols=2, max_kernel=1,
                             max_in_channels=2, requant_lanes=1, colsum=True),
}
#: The timing tests' array (4x8) with each legal lane count.
LANES = (8, 4, 2, 1)


def with_lanes(lanes):
    return dataclasses.replace(PARAMS["w4a4_4x8"], requant_lanes=lanes)


# ---------------------------------------------------------------------------- stimulus
def _signed(rng, bits):
    return rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1))


def random_consts(rng, params, amax, out_bits, residual):
    """One CONSTS record whose results spread over ``out_bits`` codes for ``|acc| <= amax``
    (plus some clipping on both sides); offset + skip_mult * skip stays in 48 signed bits."""
    mult = _signed(rng, 16) or 1
    shift = min(max((abs(mult) * amax).bit_length() - out_bits + 1, 1), REQUANT_MAX_SHIFT)
    span = 1 << (shift + out_bits)
    # M*acc / 2**S lies within +-2**(out_bits-1): this offset puts most results in range.
    offset = rng.randrange(0, span) if rng.random() < 0.8 else rng.randrange(-span, 2 * span)
    # Ignored unless the tile is residual: random, so that ignoring it is tested too.
    skip_mult = _signed(rng, 32) if rng.random() < 0.2 else rng.randrange(-span, span)
    if residual:
        skip_mult = rng.randrange(-(1 << shift), 1 << shift) >> max(0, params.abits - 2)
    limit = (1 << 47) - (abs(skip_mult) << params.abits) if residual else 1 << 47
    offset = max(min(offset, limit - 1), -limit)
    return {"mult": mult, "offset": offset, "shift": shift,
            "skip_mult": max(min(skip_mult, (1 << 31) - 1), -(1 << 31))}


def random_layer(rng, params, kind, channel_tiles):
    """Tiles of one layer of ``kind`` (plain, residual, pooled, residual_pooled, logits,
    colsum: logits of the sum of a row's columns)."""
    R, C, A = params.rows, params.cols, params.abits
    aab = params.act_addr_bits
    pooled, residual = "pooled" in kind, "residual" in kind
    logits, colsum = kind in ("logits", "colsum"), kind == "colsum"
    tiles = []
    for ct in range(channel_tiles):
        rows_valid = R if ct < channel_tiles - 1 else rng.randint(1, R)
        amax = rng.choice([200, (1 << (params.acc_width - 1)) - 1, 1 << (params.acc_width // 2)])
        consts = [random_consts(rng, params, amax, LOGIT_BITS if logits else A, residual)
                  for _ in range(R)]
        n = rng.randint(1, 2) if pooled else rng.randint(1, 3)
        stride = rng.randrange(1 << aab)
        for i in range(4 * n if pooled else n):
            tile = {
                "addr": rng.randrange(1 << aab), "chan_stride": stride,
                "chan0": rng.randrange(1 << 16), "rows_valid": rows_valid,
                "lanes_valid": rng.randint(1, C), "logits": int(logits),
                "colsum": int(colsum),
                "pool": int(pooled), "phase": i % 4 if pooled else rng.randrange(4),
                "skip": int(residual), "consts_new": int(i == 0),
            }
            if rng.random() < 0.3:   # full lanes are the common case
                tile["lanes_valid"] = C
            # A column sum must fit the accumulator like any sum (the compiler's bound).
            amax_c = amax // C if colsum else amax
            acc = [[rng.randint(-amax_c, amax_c) for _ in range(C)] for _ in range(R)]
            skip = [[rng.randrange(1 << A) for _ in range(C)] for _ in range(rows_valid)]
            tiles.append({"tile": tile, "acc": acc, "consts": consts if i == 0 else [],
                          "skip": skip if residual else []})
    return tiles


# ---------------------------------------------------------------------------- model
def _word(codes, lanes_valid, abits):
    return sum(int(code) << (lane * abits) for lane, code in enumerate(codes[:lanes_valid]))


def drain_model(params, tiles):
    """``(words, logits)``: the ``(addr, data)`` writes and ``(index, value)`` logits, in
    order, that the tiles must produce (golden.integer and format.pool_codes)."""
    R, C, A = params.rows, params.cols, params.abits
    amask = (1 << params.act_addr_bits) - 1
    words, logits = [], []
    consts = None
    group = np.zeros((R, 2, 2 * C), dtype=np.int64)
    for t in tiles:
        tile = t["tile"]
        if tile["consts_new"]:
            consts = t["consts"]
        n = tile["rows_valid"]
        acc = np.array(t["acc"], dtype=np.int64)[:n]
        k = {f: np.array([rec[f] for rec in consts[:n]], dtype=np.int64) for f in consts[0]}
        if tile["logits"]:
            summed = acc.sum(axis=1) if tile["colsum"] else acc[:, 0]
            vals = requantize(summed, k["mult"], k["offset"], k["shift"], LOGIT_BITS,
                              signed_out=True)
            logits += [((tile["chan0"] + r) & 0xFFFF, int(v)) for r, v in enumerate(vals)]
            continue
        if tile["skip"]:
            codes = requantize_residual(acc, k["mult"], k["offset"], k["skip_mult"],
                                        np.array(t["skip"]), k["shift"], A)
        else:
            codes = requantize(acc, k["mult"], k["offset"], k["shift"], A)
        if tile["pool"]:
            dy, h = divmod(tile["phase"], 2)
            group[:n, dy, h * C:(h + 1) * C] = codes
            if tile["phase"] != 3:
                continue
            codes = pool_codes(group[:n])[:, 0, :]
        for r in range(n):
            addr = (tile["addr"] + r * tile["chan_stride"]) & amask
            words.append((addr, _word(codes[r], tile["lanes_valid"], A)))
    return words, logits


def mismatches(want, got):
    """The differences between two output lists, as readable lines (empty: equal)."""
    pairs = enumerate(zip(want, got, strict=False))
    lines = [f"#{i}: want {w}, got {g}" for i, (w, g) in pairs if w != g]
    if len(want) != len(got):
        lines.append(f"want {len(want)} outputs, got {len(got)}")
    return lines


# ---------------------------------------------------------------------------- bench
def run_drain(dut, tiles, *, bubbles=0.0, backpressure=0.0, seed=0, max_cycles=20000,
              top=None, acc_feed=None):
    """Drive ``tiles`` through ``dut``; returns ``(words, logits, log)`` with ``log`` the
    cycles of each accepted tile (``acc``: of each beat of ``acc_feed``) and each write
    (``out``). ``top``/``acc_feed``: simulate ``top`` instead, feeding ``acc_feed = (port,
    items)`` instead of the tiles' accumulators to ``dut.acc``."""
    n_words, n_logits = (len(x) for x in drain_model(dut.params, tiles))
    rng = random.Random(seed)
    words, logits = [], []
    log = {"acc": [], "out": [], "logit": []}
    withdrawn = []
    cycle = [0]

    async def clock(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1
            assert cycle[0] < max_cycles, "the drain hangs"

    def producer(port, items, key=None):
        async def bench(ctx):
            for item in items:
                while rng.random() < bubbles:
                    await ctx.tick()
                ctx.set(port.valid, 1)
                ctx.set(port.payload, item)
                await ctx.tick().until(port.ready)
                if key:
                    log[key].append(cycle[0] - 1)
                ctx.set(port.valid, 0)
        return bench

    def consumer(port, results, count, unpack, key=None, salt=0):
        async def bench(ctx):
            prng = random.Random(seed * 7 + salt)
            held = None   # an offer not taken yet: it must stay until it is
            while len(results) < count:
                ready = prng.random() >= backpressure
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if held is not None and not (valid and unpack(payload) == held):
                    withdrawn.append(f"{key}: offer withdrawn at cycle {cycle[0] - 1}")
                held = unpack(payload) if valid and not ready else None
                if ready and valid:
                    results.append(unpack(payload))
                    if key:
                        log[key].append(cycle[0] - 1)
            ctx.set(port.ready, 0)
        return bench

    sim = Simulator(dut if top is None else top)
    sim.add_clock(1e-6)
    sim.add_process(clock)
    port, items = acc_feed or (dut.acc, [t["acc"] for t in tiles])
    sim.add_testbench(producer(port, items, "acc"), background=True)
    sim.add_testbench(producer(dut.tile, [t["tile"] for t in tiles]), background=True)
    sim.add_testbench(producer(dut.consts, [c for t in tiles for c in t["consts"]]),
                      background=True)
    sim.add_testbench(producer(dut.skip, [s for t in tiles for s in t["skip"]]),
                      background=True)
    sim.add_testbench(consumer(dut.out, words, n_words,
                               lambda p: (int(p.addr), int(p.data)), "out"))
    sim.add_testbench(consumer(dut.logit, logits, n_logits,
                               lambda p: (int(p.index), int(p.value)), "logit", salt=1))
    sim.run()
    assert not withdrawn, withdrawn[:3]
    return words, logits, log


def check(params, tiles, **kw):
    words, logits, _ = run_drain(Drain(params), tiles, **kw)
    want_words, want_logits = drain_model(params, tiles)
    assert not mismatches(want_words, words)
    assert not mismatches(want_logits, logits)
    return want_words, want_logits


# ---------------------------------------------------------------------------- tests
KINDS = ["plain", "residual", "pooled", "residual_pooled", "logits", "colsum"]


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("kind", KINDS)
def test_random_tiles_match_the_golden_model(name, kind):
    params = PARAMS[name]
    rng = random.Random(f"{name}-{kind}")
    tiles = random_layer(rng, params, kind, channel_tiles=3)
    words, logits = check(params, tiles, bubbles=0.3, backpressure=0.4, seed=len(tiles))
    assert words or logits


@pytest.mark.parametrize("name", ["w4a4_4x8", "w2a2_3x4"])
def test_layers_of_every_kind_back_to_back(name):
    params = PARAMS[name]
    rng = random.Random(name)
    tiles = []
    for i in range(8):
        tiles += random_layer(rng, params, KINDS[i % len(KINDS)], channel_tiles=2)
    check(params, tiles, bubbles=0.2, backpressure=0.3, seed=5)


@pytest.mark.parametrize("lanes", LANES)
def test_one_row_per_group_cycles_and_latency(lanes):
    """A row takes ``cols / requant_lanes`` cycles (one per lane group), back to back."""
    params = with_lanes(lanes)
    G = params.cols // lanes
    rng = random.Random(3)
    tiles = [dict(random_layer(rng, params, "plain", channel_tiles=1)[0]) for _ in range(12)]
    for t in tiles:
        t["tile"] = t["tile"] | {"rows_valid": params.rows, "lanes_valid": params.cols}
    for t in tiles[1:]:
        t["tile"] = t["tile"] | {"consts_new": 0}
        t["consts"] = []
    _, _, log = run_drain(Drain(params), tiles)
    n = len(tiles) * params.rows
    assert log["out"] == list(range(log["out"][0], log["out"][0] + n * G, G))
    # A tile is accepted with its last row; that row's word leaves LATENCY cycles later.
    assert log["acc"] == list(range(log["acc"][0], log["acc"][0] + n * G, params.rows * G))
    assert [log["out"][i * params.rows + params.rows - 1] for i in range(len(tiles))] == \
        [t + LATENCY for t in log["acc"]]


@pytest.mark.parametrize("lanes", LANES)
def test_partial_rows_take_fewer_cycles(lanes):
    params = with_lanes(lanes)
    G = params.cols // lanes
    tiles = [dict(random_layer(random.Random(4), params, "plain", channel_tiles=1)[0])
             for _ in range(6)]
    for i, t in enumerate(tiles):
        t["tile"] = t["tile"] | {"rows_valid": 2, "consts_new": int(i == 0)}
        t["consts"] = t["consts"] if i == 0 else []
    _, _, log = run_drain(Drain(params), tiles)
    # The consts_new tile takes all `rows` records; the others 2 rows of G cycles each.
    assert np.diff(log["acc"]).tolist() == [2 * G] * (len(tiles) - 1)


@pytest.mark.parametrize("lanes", (8, 2))
def test_behind_a_mac_array_it_never_stalls_the_reduction(lanes):
    """Connected to the chip's MacArray (same acc layout, shift mux), reductions of
    ``rows * cols / requant_lanes`` beats or more run back to back: the drain of a tile
    overlaps the next one's reduction."""
    params = with_lanes(lanes)
    R, C = params.rows, params.cols
    G = C // lanes
    rng = np.random.default_rng(9)
    mac = MacArray(wbits=params.wbits, abits=params.abits, rows=R, cols=C,
                   max_reduction=params.max_reduction, max_shift=params.max_shift,
                   acc_width=params.acc_width, shifts=params.shifts)
    drain = Drain(params)
    top = Module()
    top.submodules.mac, top.submodules.drain = mac, drain
    wiring.connect(top, mac.o, drain.acc)
    tiles = random_layer(random.Random(9), params, "plain", channel_tiles=4)
    beats = []
    for t in tiles:
        t["tile"]["rows_valid"] = R   # so that a tile drains in exactly `rows * G` cycles
        n = int(rng.integers(R * G, 2 * R * G))
        red = {"w": rng.integers(0, 1 << params.wbits, (n, R)),
               "a": rng.integers(0, 1 << params.abits, (n, C)),
               "shift": rng.choice(params.shifts, n)}
        t["acc"] = mac_expected(red["w"], red["a"], red["shift"], params.wbits).tolist()
        beats += mac_beats(red)
    words, _, log = run_drain(drain, tiles, top=top, acc_feed=(mac.i, beats))
    assert not mismatches(drain_model(params, tiles)[0], words)
    assert log["acc"] == list(range(log["acc"][0], log["acc"][0] + len(beats)))


def test_checker_fails_on_wrong_values():
    params = PARAMS["w2a2_3x4"]
    tiles = random_layer(random.Random(6), params, "residual_pooled", channel_tiles=2)
    tiles += random_layer(random.Random(7), params, "logits", channel_tiles=1)
    words, logits, _ = run_drain(Drain(params), tiles, backpressure=0.3)
    want_words, want_logits = drain_model(params, tiles)
    assert not mismatches(want_words, words) and not mismatches(want_logits, logits)
    assert mismatches(want_words, words[:-1])
    for i, field in ((0, 0), (-1, 1)):
        bad = list(words)
        bad[i] = tuple(v ^ (j == field) for j, v in enumerate(bad[i]))
        assert mismatches(want_words, bad)
    bad = [(idx, v + 1) for idx, v in logits]
    assert mismatches(want_logits, bad)


class FickleDrain(Drain):
    """A wrong drain: its output address changes every cycle, also while it is not taken."""

    def _output(self, m, pact, meta):
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        fickle = Signal.like(meta)
        m.d.comb += [fickle.eq(meta), fickle.addr.eq(meta.addr ^ toggle)]
        super()._output(m, pact, fickle)


def test_bench_fails_on_a_withdrawn_offer():
    params = PARAMS["w4a4_4x8"]
    tiles = random_layer(random.Random(10), params, "plain", channel_tiles=2)
    with pytest.raises(AssertionError, match="out: offer withdrawn"):
        run_drain(FickleDrain(params), tiles, backpressure=0.5)


def test_model_sees_skip_and_pooling():
    """The residual and pooled stimulus is not vacuous: dropping the skip codes, or taking
    phase 3's codes instead of the pooled ones, changes the expected words."""
    params = PARAMS["w4a4_4x8"]
    tiles = random_layer(random.Random(8), params, "residual_pooled", channel_tiles=2)
    want, _ = drain_model(params, tiles)
    no_skip = [t | {"skip": [[0] * params.cols for _ in t["skip"]]} for t in tiles]
    assert drain_model(params, no_skip)[0] != want
    no_pool = [t | {"tile": t["tile"] | {"pool": 0}} for t in tiles]
    per_tile = drain_model(params, no_pool)[0]
    phase3, at = [], 0
    for t in tiles:
        n = t["tile"]["rows_valid"]
        if t["tile"]["phase"] == 3:
            phase3 += per_tile[at:at + n]
        at += n
    assert len(phase3) == len(want) and phase3 != want


@pytest.mark.parametrize("name", PARAMS)
def test_converts_to_verilog(name):
    text = verilog.convert(Drain(PARAMS[name]), name="drain", emit_src=False)
    assert "module drain(" in text
    assert text == verilog.convert(Drain(PARAMS[name]), name="drain", emit_src=False)


def test_rejects_other_parameters():
    with pytest.raises(TypeError, match="TiledParams"):
        Drain({"rows": 4})
