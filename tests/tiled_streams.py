"""Stream helpers for the tiled chip's block tests (no tests here): drive one input stream,
collect output streams, with random bubbles and back-pressure, in Amaranth's simulator."""

import random

from amaranth.sim import Simulator

from cosim.chip_model import random_image
from gen.tiled_compiler import compile_tiled
from rtl import chip_format as cf
from rtl.tiled import format as tf
from rtl.tiled.layer import layer_config, layer_layout


def layer_value(d, params):
    """The ``layer_layout`` value of descriptor dict ``d`` (as the decoder computes it)."""
    return layer_layout().const({**d, **layer_config(d, params)})


def descriptors(image, params):
    """The descriptors a compiled ``image`` holds, as dicts."""
    prog = compile_tiled(image, params)
    dw = prog.layout.descriptor_words
    return [cf.unpack_record(tf.DESCRIPTOR, cf.words_to_record(
        prog.words[i * dw:(i + 1) * dw], params.mem_width)) for i in range(len(prog.layout.layers))]


def model_descriptors(params, models=("cnn", "resnet", "mlp"), **kw):
    out = []
    for model in models:
        out += descriptors(random_image(1, model=model, wbits=params.wbits, abits=params.abits,
                                        **kw), params)
    return out


def run_streams(dut, *, setup, source, items, sinks, counts, unpack=None, bubbles=0.3,
                backpressure=0.3, seed=0, max_cycles=200_000):
    """Set level inputs with ``setup(ctx)``, drive ``items`` into stream ``source`` and collect
    ``counts[i]`` payloads from each stream of ``sinks``. Returns one list per sink."""
    rng = random.Random(seed)
    got = [[] for _ in sinks]

    async def producer(ctx):
        setup(ctx)
        for item in items:
            while rng.random() < bubbles:
                await ctx.tick()
            ctx.set(source.valid, 1)
            ctx.set(source.payload, item)
            await ctx.tick().until(source.ready)
            ctx.set(source.valid, 0)

    def consumer(i, sink):
        async def run(ctx):
            prng = random.Random(seed + 1 + i)
            cycles = 0
            while len(got[i]) < counts[i]:
                cycles += 1
                assert cycles < max_cycles, f"sink {i}: {len(got[i])}/{counts[i]} items"
                ready = prng.random() >= backpressure
                ctx.set(sink.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(sink.valid, sink.payload)
                if ready and valid:
                    got[i].append(payload if unpack is None else unpack(payload))
            ctx.set(sink.ready, 0)
        return run

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    for i, sink in enumerate(sinks):
        sim.add_testbench(consumer(i, sink))
    sim.run()
    return got


def expected_records(d, p):
    """The walker's records of descriptor ``d``: ``format.tile_order`` and the addresses the
    format defines."""
    c = layer_config(d, p)
    pool = bool(d["pool"])
    out = []
    group = 2 if d["group"] else 1
    tiles = tf.tile_order(d["out_c"], d["out_h"], d["out_w"], p, pool=pool, group=group)
    per_t = len(tiles) // c["ct_n"]
    for i, (t, oy, x0) in enumerate(tiles):
        k = i % per_t
        if pool:
            phase = k % 4
            row, xw = oy // 2, x0 // (2 * p.cols)
        else:
            phase, row, xw = 0, oy, x0 // p.cols
        lanes = p.cols if group == 2 else min(p.cols, c["w_st"] - xw * p.cols)
        out.append(dict(
            t=t, tbase=t * c["bpt"], oy=oy, x0=x0, xw=xw,
            addr=d["out_act"] + t * p.rows * c["chan_stride"] + row * c["rw_st"] + xw,
            rows_valid=min(p.rows, d["out_c"] - t * p.rows), lanes_valid=lanes, phase=phase,
            first_pos=int(k == 0), last_pos=int(k == per_t - 1),
            pair=int(group == 2 and oy + 1 < d["out_h"])))
    return out
