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


class AxiReadSlave:
    """An AXI4 read slave for benches in Amaranth's simulator that uses all the freedom AXI
    gives across IDs: bursts of different IDs come back out of order and their beats
    interleave; bursts of one ID come back in AR order.

    Call ``step(ctx, cycle)`` once per cycle before the clock edge: it drives ``arready`` and
    the R channel, then records what the handshakes took. AR is taken with probability
    ``1 - ar_stall`` while fewer than ``max_bursts`` are outstanding; a burst is due a random
    ``latency`` after its AR; R offers a beat with probability ``1 - r_stall`` (back-pressure
    from the slave's side: the chip's ``rready`` is constant 1), of a random due burst among
    the oldest of each ID. ``port(name)`` gives the master's signal ``name`` (``arvalid``, ...);
    ``read(word)`` the memory word; ``resp(word)`` its RRESP (default OKAY).

    Counts ``reorders`` (a burst starts while an older burst of another ID has not) and
    ``interleaves`` (a beat while another burst is half sent), so a test can show that it
    really reordered. Asserts every AR is a legal INCR burst of the chip (aligned, 1..256
    beats, inside one 4 KiB page) and that ``rready`` is 1.
    """

    def __init__(self, port, read, *, data_width, rng, latency=(1, 8), ar_stall=0.3,
                 r_stall=0.3, max_bursts=8, resp=None):
        self.port, self.read, self.rng = port, read, rng
        self.bytes = data_width // 8
        self.latency, self.ar_stall, self.r_stall = latency, ar_stall, r_stall
        self.max_bursts, self.resp = max_bursts, resp or (lambda word: 0)
        self.bursts = []   # outstanding, in AR order: [id, first word, length, sent, due]
        self.ars = []      # every AR taken: (id, first word, length)
        self.reorders = self.interleaves = self.beats = 0

    def _offer(self, cycle):
        heads = {}
        for b in self.bursts:
            heads.setdefault(b[0], b)
        due = [b for b in heads.values() if b[4] <= cycle]
        if not due or self.rng.random() < self.r_stall:
            return None
        return self.rng.choice(due)

    def step(self, ctx, cycle):
        p = self.port
        ar_ready = len(self.bursts) < self.max_bursts and self.rng.random() >= self.ar_stall
        ctx.set(p("arready"), ar_ready)
        beat = self._offer(cycle)
        ctx.set(p("rvalid"), beat is not None)
        if beat is not None:
            word = beat[1] + beat[3]
            ctx.set(p("rid"), beat[0])
            ctx.set(p("rdata"), self.read(word))
            ctx.set(p("rresp"), self.resp(word))
            ctx.set(p("rlast"), beat[3] == beat[2] - 1)
        if ar_ready and ctx.get(p("arvalid")):
            addr, length = ctx.get(p("araddr")), ctx.get(p("arlen")) + 1
            assert addr % self.bytes == 0 and 1 <= length <= 256
            assert addr // 4096 == (addr + length * self.bytes - 1) // 4096, "4 KiB crossed"
            burst = [ctx.get(p("arid")), addr // self.bytes, length, 0,
                     cycle + self.rng.randint(*self.latency)]
            self.bursts.append(burst)
            self.ars.append(tuple(burst[:3]))
        if beat is not None:
            assert ctx.get(p("rready")) == 1
            others = [b for b in self.bursts if b is not beat]
            if beat[3] == 0 and any(b[3] == 0 for b in others[:self.bursts.index(beat)]):
                self.reorders += 1
            if any(0 < b[3] < b[2] for b in others):
                self.interleaves += 1
            beat[3] += 1
            self.beats += 1
            if beat[3] == beat[2]:
                self.bursts.remove(beat)


class AxiWriteSlave:
    """An AXI4 write slave for benches in Amaranth's simulator: takes AW into a queue (at
    random), W beats only while an AW is queued (AXI lets a slave wait for AW), applies them
    through ``write(word, data, strobe)``, checks ``wlast``, and answers B OKAY, ID 0, after
    the last beat (``bvalid`` at random; the chip's ``bready`` is constant 1)."""

    def __init__(self, port, write, *, data_width, rng, stall=0.3):
        self.port, self.write, self.rng, self.stall = port, write, rng, stall
        self.bytes = data_width // 8
        self.aws, self.bs = [], 0   # queued [first word, length, beats taken]; B owed

    def step(self, ctx):
        p, rng = self.port, self.rng
        aw_ready = len(self.aws) < 16 and rng.random() >= self.stall
        w_ready = bool(self.aws) and rng.random() >= self.stall
        b_valid = self.bs > 0 and rng.random() >= self.stall
        ctx.set(p("awready"), aw_ready)
        ctx.set(p("wready"), w_ready)
        ctx.set(p("bvalid"), b_valid)
        ctx.set(p("bresp"), 0)
        ctx.set(p("bid"), 0)
        if w_ready and ctx.get(p("wvalid")):
            aw = self.aws[0]
            self.write(aw[0] + aw[2], ctx.get(p("wdata")), ctx.get(p("wstrb")))
            aw[2] += 1
            assert ctx.get(p("wlast")) == (aw[2] == aw[1]), "wlast"
            if aw[2] == aw[1]:
                self.aws.pop(0)
                self.bs += 1
        if aw_ready and ctx.get(p("awvalid")):
            self.aws.append([ctx.get(p("awaddr")) // self.bytes, ctx.get(p("awlen")) + 1, 0])
        if b_valid:
            assert ctx.get(p("bready")) == 1
            self.bs -= 1

    @property
    def idle(self):
        return not self.aws and self.bs == 0
