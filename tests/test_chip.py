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
from golden.reference import run_layer
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
    accepting a read command or a write in a cycle, ``rd_valid`` that of presenting a due read
    answer (the harness's ``+MEM_STALL`` drops all three).
    """

    def __init__(self, words, *, seed=0, latency=(1, 1), cmd_ready=1.0, wr_ready=1.0,
                 rd_valid=1.0):
        self.words = list(words)
        self.rng = random.Random(seed)
        self.latency, self.cmd_ready, self.wr_ready = latency, cmd_ready, wr_ready
        self.rd_valid = rd_valid
        self.reads, self.writes = [], []

    def read(self, addr):
        return self.words[addr] if addr < len(self.words) else 0

    def write(self, addr, data):
        self.writes.append(addr)
        if addr >= len(self.words):
            self.words += [0] * (addr + 1 - len(self.words))
        self.words[addr] = data


def run_chip(params, words, runs, *, mem=None, max_cycles=200_000, spurious_at=None):
    """Run the program once per ``(prog_addr, in_addr, out_base)`` in ``runs``, back to back on
    one chip; returns ``(memory, results)``, one dict of CSRs per run (at ``done``) with the
    cycle of each ``layer`` change. ``spurious_at``: from this cycle on, the memory sends one read
    response nobody asked for, at the first cycle with no read pending."""
    dut = PactChip(params)
    mem = mem or MemoryModel(words)
    mem.words = list(words)
    results = []

    async def bench(ctx):
        await ctx.tick()
        pending = deque()
        last_ready = 0
        cycle = 0
        spurious_sent = False
        for prog_addr, in_addr, out_base in runs:
            ctx.set(dut.prog_addr, prog_addr)
            ctx.set(dut.in_addr, in_addr)
            ctx.set(dut.out_base, out_base)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            assert ctx.get(dut.busy) and not ctx.get(dut.done)
            layer, layer_cycles, start = 0, [0], cycle
            while True:
                cycle += 1
                if cycle - start > max_cycles:
                    raise AssertionError(f"no done after {max_cycles} cycles")
                rd_ready = mem.rng.random() < mem.cmd_ready
                wr_ready = mem.rng.random() < mem.wr_ready
                ctx.set(dut.mem_rd_cmd.ready, rd_ready)
                ctx.set(dut.mem_wr.ready, wr_ready)
                head = bool(pending) and pending[0][0] <= cycle
                if head and mem.rd_valid < 1.0:
                    head = mem.rng.random() < mem.rd_valid
                spurious = (spurious_at is not None and cycle >= spurious_at and not pending
                            and not spurious_sent)
                spurious_sent |= spurious
                ctx.set(dut.mem_rd_data.valid, head or spurious)
                ctx.set(dut.mem_rd_data.payload, pending[0][1] if head else 0)
                if head and ctx.get(dut.mem_rd_data.ready):
                    pending.popleft()
                if rd_ready and ctx.get(dut.mem_rd_cmd.valid):
                    addr = ctx.get(dut.mem_rd_cmd.payload)
                    mem.reads.append(addr)
                    last_ready = max(last_ready + 1, cycle + mem.rng.randint(*mem.latency))
                    pending.append((last_ready, mem.read(addr)))
                if wr_ready and ctx.get(dut.mem_wr.valid):
                    mem.write(ctx.get(dut.mem_wr.payload.addr), ctx.get(dut.mem_wr.payload.data))
                if ctx.get(dut.layer) != layer:
                    layer = ctx.get(dut.layer)
                    layer_cycles.append(cycle - start)
                if ctx.get(dut.done):
                    break
                await ctx.tick()
            assert not pending, "the chip finished with reads outstanding"
            results.append(dict(cycles=ctx.get(dut.cycles), error=ctx.get(dut.error),
                                mac_beats=ctx.get(dut.mac_beats), layer=ctx.get(dut.layer),
                                layer_cycles=layer_cycles, busy=ctx.get(dut.busy),
                                wall=cycle - start))
            await ctx.tick()
            ctx.set(dut.mem_rd_data.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return mem, results


def run_network(params, image, inputs, mem=None, **kw):
    """Compile ``image``, put ``inputs`` into slots and run them back to back."""
    program = compile_image(image, hardware(params), slots=len(inputs))
    words = memory_words(program, inputs)
    runs = [(program.layout["program_addr"], *slot_addresses(program.layout, i))
            for i in range(len(inputs))]
    mem, results = run_chip(params, words, runs, mem=mem, **kw)
    return program, mem, results


def first_mismatch(image, program, words, x, slot=0):
    """``None`` when every layer's output in ``words`` equals golden/reference.py, else
    ``(layer, index)`` of the first differing code."""
    got = read_outputs(words, program.layout, slot)
    want = reference_run(image, x)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"layer {i}: shape {g.shape} != {w.shape}"
        if not np.array_equal(g, w):
            return i, tuple(int(v) for v in np.argwhere(g != w)[0])
    return None


def check_network(params, image, inputs, **kw):
    program, mem, results = run_network(params, image, inputs, **kw)
    beats = sum(lay["mac_beats"] for lay in program.layout["layers"])
    for slot, (x, res) in enumerate(zip(inputs, results, strict=True)):
        assert res["error"] == 0
        assert not res["busy"]
        assert res["layer"] == len(image.layers)
        assert first_mismatch(image, program, mem.words, x, slot) is None, f"slot {slot}"
        assert res["mac_beats"] == beats
        # cycles counts from the start pulse to done (the bench sees done one cycle later)
        assert abs(res["cycles"] - res["wall"]) <= 2
    return program, mem, results


def conv(name, cin, cout, hw, k=3, s=1, p=1):
    ho = (hw + 2 * p - k) // s + 1
    return dict(name=name, op="conv", in_shape=(cin, hw, hw), out_shape=(cout, ho, ho),
                kernel=k, stride=s, padding=p)


def fc(name, n, m):
    return dict(name=name, op="fc", in_shape=(n,), out_shape=(m,))


SMALL = ChipParams(wbits=4, abits=4, rows=2, cols=3, mem_width=32, max_channels=8,
                   max_plane=25, wbuf_depth=512)

# (params, layer specs, input shape, memory behaviour)
NETWORKS = {
    "cnn-w4a4-2x3": (
        SMALL,
        [conv("c0", 1, 3, 5), conv("c1", 3, 5, 5, s=2), conv("c2", 5, 4, 3, k=1, p=0),
         fc("fc", 36, 3)],
        (1, 5, 5), dict(latency=(1, 4), cmd_ready=0.7, wr_ready=0.6)),
    "cnn-w2a2-3x2": (
        ChipParams(wbits=2, abits=2, rows=3, cols=2, mem_width=64, max_channels=6,
                   max_plane=16, wbuf_depth=1024),
        [conv("c0", 2, 4, 4, s=2), conv("c1", 4, 3, 2), fc("fc", 12, 4)],
        (2, 4, 4), dict(latency=(1, 3), cmd_ready=0.8, wr_ready=0.8)),
    "cnn-w8a8-2x2-mw16": (
        ChipParams(wbits=8, abits=8, rows=2, cols=2, mem_width=16, max_channels=4,
                   max_plane=16, wbuf_depth=128),
        [conv("c0", 1, 3, 4), conv("c1", 3, 2, 4, k=1, p=0), fc("fc", 32, 3)],
        (1, 4, 4), dict(latency=(2, 6), cmd_ready=0.5, wr_ready=0.5)),
    "cnn-w3a5-1x4": (
        ChipParams(wbits=3, abits=5, rows=1, cols=4, mem_width=32, max_channels=4,
                   max_plane=16, wbuf_depth=256),
        [conv("c0", 1, 2, 4, s=2, p=0), conv("c1", 2, 3, 1, k=1, p=0), fc("fc", 3, 2)],
        (1, 4, 4), dict(latency=(1, 1))),
    # A slow write port and a tiny layer after a big one: the write-back of c0 is still
    # running when c2 wants to write its bank, and when the logits want the write port.
    "writeback-overlap": (
        ChipParams(wbits=4, abits=4, rows=4, cols=4, mem_width=16, max_channels=6,
                   max_plane=25, wbuf_depth=512),
        [conv("c0", 1, 6, 5), conv("c1", 6, 6, 5, k=1, p=0), conv("c2", 6, 6, 5, k=1, p=0),
         fc("fc", 150, 2)],
        (1, 5, 5), dict(latency=(1, 2), wr_ready=0.1)),
    # Residual layers (skip = the layer two before, read in place from the bank being
    # written): partial channel and position tiles; two residual layers back to back.
    "resnet-w4a4-2x3": (
        SMALL,
        [conv("c0", 1, 3, 5), conv("c1", 3, 3, 5), dict(conv("c2", 3, 3, 5), skip=0),
         fc("fc", 75, 3)],
        (1, 5, 5), dict(latency=(1, 4), cmd_ready=0.7, wr_ready=0.6)),
    "resnet-w2a2-3x2": (
        ChipParams(wbits=2, abits=2, rows=3, cols=2, mem_width=64, max_channels=6,
                   max_plane=16, wbuf_depth=1024),
        [conv("c0", 2, 4, 4, s=2), conv("c1", 4, 4, 2, k=1, p=0),
         dict(conv("c2", 4, 4, 2), skip=0), dict(conv("c3", 4, 4, 2, k=1, p=0), skip=1),
         fc("fc", 16, 4)],
        (2, 4, 4), dict(latency=(1, 3), cmd_ready=0.8, wr_ready=0.3)),
    # 16-bit activations: PACT codes up to 65535 must pass the requantizer unsaturated, and
    # logits must still saturate at 16 bits signed.
    "cnn-w16a16-2x2": (
        ChipParams(wbits=16, abits=16, rows=2, cols=2, mem_width=64, max_bits=16,
                   max_channels=4, max_plane=16, wbuf_depth=128),
        [conv("c0", 1, 3, 4), conv("c1", 3, 2, 4, k=1, p=0), fc("fc", 32, 3)],
        (1, 4, 4), dict(latency=(1, 3))),
    "mlp-w4a4-4x1": (
        ChipParams(wbits=4, abits=4, rows=4, cols=1, mem_width=64, max_channels=12,
                   max_plane=4, wbuf_depth=256),
        [fc("fc0", 12, 10), fc("fc1", 10, 6), fc("fc2", 6, 5)],
        (12,), dict(latency=(1, 8), cmd_ready=0.9, wr_ready=0.3)),
}


def network(name, seed=SEED):
    params, specs, in_shape, memory = NETWORKS[name]
    image = random_image(seed, wbits=params.wbits, abits=params.abits, input_shape=in_shape,
                         specs=specs, end_bits=max(8, params.abits))
    return params, image, memory


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_random_network_is_bit_exact(name):
    params, image, memory = network(name)
    inputs = random_inputs(SEED + 1, image, 2)
    mem = MemoryModel([], seed=SEED, **memory)
    check_network(params, image, inputs, mem=mem)


def test_digits_cnn_shapes_on_a_small_array():
    """The digits CNN's layer shapes (8-bit first layer and logits, stride 2, fc over a 4x4
    plane), narrower so that the simulator stays quick."""
    params = ChipParams(wbits=4, abits=4, rows=4, cols=4, mem_width=64, max_channels=10,
                        max_plane=64, wbuf_depth=1024)
    image = random_image(SEED, wbits=4, abits=4, input_shape=(1, 8, 8), channels=(4, 8, 8),
                         classes=10)
    check_network(params, image, random_inputs(SEED, image, 1))


def test_digits_cnn_on_the_default_chip():
    """The digits CNN (random weights) on the default 8x8 chip at 4 bits, as ``pact gen`` makes
    it, with a memory of varying latency."""
    params = ChipParams(wbits=4, abits=4, rows=8, cols=8)
    image = random_image(SEED, model="cnn", wbits=4, abits=4)
    mem = MemoryModel([], seed=SEED, latency=(1, 5), cmd_ready=0.9, wr_ready=0.9)
    check_network(params, image, random_inputs(SEED, image, 1), mem=mem)


def test_checker_sees_a_corrupted_weight_at_its_layer():
    params, image, _ = network("cnn-w4a4-2x3")
    x = random_inputs(SEED, image, 1)[0]
    program = compile_image(image, hardware(params))
    words = memory_words(program, [x])
    lay = program.layout["layers"][1]
    words[lay["w_addr"]] ^= 1 << (params.wbits * params.rows)  # one code of beat 1
    runs = [(0, *slot_addresses(program.layout, 0))]
    mem, results = run_chip(params, words, runs)
    assert results[0]["error"] == 0
    found = first_mismatch(image, program, mem.words, x)
    assert found is not None and found[0] == 1


def test_checker_sees_an_unwritten_output():
    params, image, _ = network("cnn-w4a4-2x3")
    x = random_inputs(SEED, image, 1)[0]
    program = compile_image(image, hardware(params))
    words = memory_words(program, [x])  # output slots are POISON: nothing computed
    assert first_mismatch(image, program, words, x) == (0, (0, 0, 0))


def _descriptor_program(params, **fields):
    dw = cf.descriptor_words(params.mem_width)
    base = dict(op=cf.OP_CONV, in_c=1, in_h=2, in_w=2, out_c=1, out_h=2, out_w=2, kernel=1,
                stride=1, pad=0, w_slices=1, a_slices=1, in_bits=params.abits,
                out_bits=params.abits, in_from_mem=1, w_addr=100, c_addr=110, o_addr=0)
    base.update(fields)
    words = cf.record_to_words(cf.pack_record(cf.DESCRIPTOR, **base), dw, params.mem_width)
    words += cf.record_to_words(cf.pack_record(cf.DESCRIPTOR, op=cf.OP_END), dw,
                                params.mem_width)
    return words + [0] * (200 - len(words))


@pytest.mark.parametrize("fields, flag", [
    (dict(op=2), ERR_UNKNOWN_OP),
    (dict(op=3), ERR_UNKNOWN_OP),
    (dict(in_c=9), ERR_BUFFER),
    (dict(out_c=9), ERR_BUFFER),
    (dict(in_h=6, in_w=5), ERR_BUFFER),
    (dict(out_h=5, out_w=6), ERR_BUFFER),
    (dict(w_slices=3), ERR_BUFFER),
    (dict(a_slices=0), ERR_BUFFER),
    (dict(in_bits=9), ERR_BUFFER),
    (dict(in_bits=8, a_slices=1), ERR_BUFFER),
    (dict(out_bits=16), ERR_BUFFER),
    (dict(logits=1, out_bits=16), ERR_BUFFER),  # logits need a 1x1 output
    (dict(logits=1, out_bits=16, out_h=1, out_w=1, skip=1), ERR_BUFFER),  # no residual logits
    (dict(in_c=8, out_c=8, kernel=3, pad=1), ERR_BUFFER),  # 4 tiles x 72 beats > 256
    (dict(kernel=0), ERR_BUFFER),
    (dict(stride=0), ERR_BUFFER),
])
def test_a_bad_descriptor_stops_with_its_flag(fields, flag):
    params = ChipParams(wbits=4, abits=4, rows=2, cols=3, mem_width=32, max_channels=8,
                        max_plane=25, wbuf_depth=256)
    words = _descriptor_program(params, **fields)
    mem, results = run_chip(params, words, [(0, 150, 160), (0, 150, 160)], max_cycles=200)
    for res in results:  # the flag is sticky until the next start, which clears it
        assert res["error"] == flag
        assert res["layer"] == 0 and res["mac_beats"] == 0
    assert mem.writes == []


def test_a_good_descriptor_sets_no_flag():
    params = ChipParams(wbits=4, abits=4, rows=2, cols=3, mem_width=32, max_channels=8,
                        max_plane=25, wbuf_depth=256)
    mem, results = run_chip(params, _descriptor_program(params), [(0, 150, 160)],
                            max_cycles=500)
    assert results[0]["error"] == 0 and results[0]["layer"] == 1
    assert sorted(set(mem.writes)) == [160]


@pytest.mark.parametrize("at", [2, 150, 400])
def test_a_response_without_a_request_is_a_memory_error(at):
    params, image, _ = network("cnn-w4a4-2x3")
    x = random_inputs(SEED, image, 1)[0]
    program = compile_image(image, hardware(params))
    words = memory_words(program, [x])
    runs = [(0, *slot_addresses(program.layout, 0))] * 2
    mem = MemoryModel(words, latency=(3, 3))
    # The first run stops where the error happens (before or during the compute); the
    # second, after a new start, runs clean from empty pipelines.
    mem, results = run_chip(params, words, runs, mem=mem, spurious_at=at)
    assert results[0]["error"] == ERR_MEMORY
    assert (results[0]["mac_beats"] > 0) == (at > 2)
    assert results[1]["error"] == 0
    assert first_mismatch(image, program, mem.words, x) is None


def test_start_is_ignored_while_busy():
    params, image, _ = network("mlp-w4a4-4x1")
    x = random_inputs(SEED, image, 1)[0]
    program = compile_image(image, hardware(params))
    words = memory_words(program, [x])
    dut = PactChip(params)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.mem_rd_cmd.ready, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.prog_addr, 5)
        await ctx.tick().repeat(3)
        ctx.set(dut.start, 0)
        seen["addr"] = ctx.get(dut.mem_rd_cmd.payload)
        seen["busy"] = ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"addr": 0, "busy": 1}
    del words


@pytest.mark.parametrize("kw, match", [
    (dict(wbits=1), "wbits"), (dict(abits=17), "abits"), (dict(rows=0), "rows"),
    (dict(mem_width=48), "power of two"), (dict(mem_width=8), "mem_width"),
    (dict(max_bits=17), "max_bits"), (dict(max_channels=0), "max_channels"),
    (dict(max_plane=5000), "max_plane"), (dict(wbuf_depth=0), "wbuf_depth"),
    (dict(wbits=2, max_bits=16), "slices"), (dict(max_reads=1), "max_reads"),
])
def test_parameters_are_checked(kw, match):
    base = dict(wbits=4, abits=4, rows=2, cols=2)
    with pytest.raises(ValueError, match=match):
        ChipParams(**{**base, **kw})
    with pytest.raises(TypeError):
        ChipParams(wbits=4.0, abits=4, rows=2, cols=2)


def test_derived_sizes():
    p = ChipParams(wbits=4, abits=4, rows=8, cols=8)
    assert (p.lane_bits, p.w_slices_max, p.a_slices_max, p.max_shift) == (8, 2, 2, 8)
    assert p.max_reduction == 64 * 225 * 2 * 2
    # |acc| <= max_reduction * 15 * 15 * 2**8, plus a sign bit
    assert p.acc_width == (p.max_reduction * 15 * 15 << 8).bit_length() + 1


def random_specs(rng):
    """A random small network: 1-2 convs (kernel 1/3, stride 1/2, pad 0-2), then fc logits."""
    c, h = rng.randint(1, 3), rng.randint(1, 6)
    in_shape = (c, h, h)
    specs = []
    for i in range(rng.randint(1, 2)):
        k = rng.choice([1, 3])
        p = rng.choice([0, 1, 2]) if k == 3 else rng.choice([0, 0, 1])
        s = rng.choice([1, 2])
        if h + 2 * p < k:
            p = (k - h + 1) // 2
        cout = rng.randint(1, 5)
        specs.append(conv(f"c{i}", c, cout, h, k=k, s=s, p=p))
        c, h = cout, specs[-1]["out_shape"][1]
    specs.append(fc("fc", c * h * h, rng.randint(1, 4)))
    return in_shape, specs


def random_params(rng, in_shape, specs):
    wbits, abits = rng.choice([(2, 2), (4, 4), (8, 8), (3, 5), (5, 3), (2, 8)])
    chans = max([in_shape[0]] + [sp["out_shape"][0] for sp in specs])
    planes = [in_shape[1] * in_shape[2]] + [sp["out_shape"][1] * sp["out_shape"][2]
                                            for sp in specs if sp["op"] == "conv"]
    return ChipParams(wbits=wbits, abits=abits, rows=rng.randint(1, 4),
                      cols=rng.randint(1, 5), mem_width=rng.choice([16, 32, 64]),
                      max_channels=chans + rng.randint(0, 2), max_plane=max(planes),
                      wbuf_depth=8192)


@pytest.mark.parametrize("case", range(int(os.environ.get("PACT_CHIP_RANDOM", "6"))))
def test_random_shapes_and_arrays(case):
    """Random layer shapes on random arrays and memories (``PACT_CHIP_RANDOM`` cases; the
    seed is ``PACT_SEED``)."""
    rng = random.Random(SEED * 1000 + case)
    in_shape, specs = random_specs(rng)
    params = random_params(rng, in_shape, specs)
    image = random_image(SEED + case, wbits=params.wbits, abits=params.abits,
                         input_shape=in_shape, specs=specs)
    mem = MemoryModel([], seed=case, latency=(1, rng.randint(1, 6)),
                      cmd_ready=rng.choice([1.0, 0.7]), wr_ready=rng.choice([1.0, 0.5]))
    check_network(params, image, random_inputs(SEED + case, image, 1), mem=mem)


def test_input_load_waits_for_the_write_back():
    """A layer that loads its input from memory into the bank that the previous layer's
    write-back is still reading must wait for it. (The compiler only loads the first layer;
    here layer 0 runs on the zeroed bank and layer 1 loads another tensor.)"""
    params, image, _ = network("cnn-w4a4-2x3")
    zeros = np.zeros(image.input_shape, dtype=np.int64)
    program = compile_image(image, hardware(params))
    words = memory_words(program, [zeros])
    mw, dw = params.mem_width, cf.descriptor_words(params.mem_width)
    for i, from_mem in ((0, 0), (1, 1)):
        fields = cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(words[i * dw:(i + 1) * dw],
                                                                     mw))
        fields["in_from_mem"] = from_mem
        words[i * dw:(i + 1) * dw] = cf.record_to_words(cf.pack_record(cf.DESCRIPTOR, **fields),
                                                        dw, mw)
    lay0 = image.layers[0]
    x1 = np.random.default_rng(SEED).integers(0, 1 << lay0.out_bits, size=lay0.out_shape)
    want = [run_layer(lay0, zeros), run_layer(image.layers[1], x1)]
    for layer in image.layers[2:]:
        want.append(run_layer(layer, want[-1]))
    in_addr = len(words)
    words += cf.pack_tensor(x1, lay0.out_bits, mw)
    _, out_base = slot_addresses(program.layout, 0)
    mem = MemoryModel(words, wr_ready=0.1)
    mem, results = run_chip(params, words, [(0, in_addr, out_base)], mem=mem)
    assert results[0]["error"] == 0
    got = read_outputs(mem.words, program.layout)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(g, w), f"layer {i}"


@pytest.mark.parametrize("out_c, flag", [(12, 0), (13, ERR_BUFFER)])
def test_weight_buffer_limit_with_rows_not_a_power_of_two(out_c, flag):
    """ceil(out_c / rows) channel tiles of 9 beats against a 36-beat weight buffer, rows=3."""
    params = ChipParams(wbits=4, abits=4, rows=3, cols=2, mem_width=32, max_channels=16,
                        max_plane=4, wbuf_depth=36)
    words = _descriptor_program(params, out_c=out_c, kernel=3, pad=1)
    mem, results = run_chip(params, words, [(0, 150, 160)], max_cycles=2000)
    assert results[0]["error"] == flag


# The memory behaviours of the issue-12 hang (``pact flow --mem-stall 30``, ``--mem-stall 1
# --mem-latency 3``, a 16-bit port), plus bursts of back-to-back answers after a stall.
_READ_STRESS = {
    "stall30": dict(latency=(1, 1), cmd_ready=0.7, wr_ready=0.7, rd_valid=0.7),
    "stall1-lat3": dict(latency=(3, 3), cmd_ready=0.99, wr_ready=0.99, rd_valid=0.99),
    "lat1-6": dict(latency=(1, 6), cmd_ready=0.9, wr_ready=0.8),
}


@pytest.mark.parametrize("memory", sorted(_READ_STRESS))
@pytest.mark.parametrize("mem_width", [16, 32])
@pytest.mark.parametrize("max_reads", [2, 3, 4, 5, 16])
def test_every_max_reads_finishes_under_stalls_and_latency(max_reads, mem_width, memory):
    """Every read's answer has a reserved place in the response buffer (credits), so no answer
    is lost and the chip finishes bit-exact at any ``max_reads``, memory width and behaviour."""
    base, specs, in_shape, _ = NETWORKS["cnn-w4a4-2x3"]
    params = ChipParams(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                           "mem_width": mem_width, "max_reads": max_reads})
    image = random_image(SEED, wbits=4, abits=4, input_shape=in_shape, specs=specs)
    mem = MemoryModel([], seed=SEED + max_reads, **_READ_STRESS[memory])
    check_network(params, image, random_inputs(SEED, image, 1), mem=mem, max_cycles=20_000)
