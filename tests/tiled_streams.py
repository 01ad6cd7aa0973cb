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
