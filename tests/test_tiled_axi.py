# amaranth: UnusedElaboratable=no
"""The AXI4 bridges against a Python AXI slave with random ready/valid on every channel: reads
come back in order as legal INCR bursts (<= 256 beats, no 4 KiB crossing), writes land with
their strobes, every B is counted (``pending`` falls only after the last), and SLVERR/DECERR
answers raise ``error``."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from tiled_streams import AxiReadSlave

from rtl.tiled.axi import (
    MAX_BURST,
    PAGE_BYTES,
    RESP_DECERR,
    RESP_OKAY,
    RESP_SLVERR,
    AxiReadMaster,
    AxiWriteMaster,
)
from rtl.tiled.params import TiledParams
from rtl.tiled.read_dma import ReadDma, tag_bits

DW = 64
BYTES = DW // 8


def check_burst(addr, length, bursts_max=MAX_BURST):
    """A legal INCR burst of the chip: aligned, 1..max beats, inside one 4 KiB page."""
    assert addr % BYTES == 0
    assert 1 <= length <= bursts_max
    assert addr // PAGE_BYTES == (addr + length * BYTES - 1) // PAGE_BYTES


def test_check_burst_fails_on_a_crossing():
    with pytest.raises(AssertionError):
        check_burst(PAGE_BYTES - BYTES, 2)
    with pytest.raises(AssertionError):
        check_burst(0, MAX_BURST + 1)


def word(addr):
    return (addr * 0x9E3779B97F4A7C15 + 12345) % (1 << DW)


def run_reads(addrs, *, seed, max_burst=MAX_BURST, stall=0.3, resp=lambda a: RESP_OKAY,
              outstanding=8, gaps=0.1):
    """Issue ``addrs`` as commands (random gaps), serve AR/R from a model memory; return
    (words received, bursts, error pulses)."""
    rng = random.Random(seed)
    dut = AxiReadMaster(data_width=DW, max_burst=max_burst)
    got, bursts, errors, queue = [], [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def commands(ctx):
        i = 0
        while i < len(addrs):
            # ReadDma's contract: at most `outstanding` words in flight.
            valid = rng.random() >= gaps and i - len(got) < outstanding
            ctx.set(dut.cmd.valid, valid)
            ctx.set(dut.cmd.payload.addr, addrs[i] if valid else 0)
            _, _, v, r = await ctx.tick().sample(dut.cmd.valid, dut.cmd.ready)
            i += v and r
        ctx.set(dut.cmd.valid, 0)

    async def ar(ctx):
        while True:
            ctx.set(dut.arready, rng.random() > stall)
            _, _, v, r, a, n = await ctx.tick().sample(dut.arvalid, dut.arready, dut.araddr,
                                                        dut.arlen)
            if v and r:
                bursts.append((a, n + 1))
                queue.extend(range(a // BYTES, a // BYTES + n + 1))

    async def r_channel(ctx):
        while True:
            valid = bool(queue) and rng.random() > stall
            a = queue[0] if valid else 0
            ctx.set(dut.rvalid, valid)
            ctx.set(dut.rdata, word(a))
            ctx.set(dut.rresp, resp(a))
            ctx.set(dut.rlast, 0)
            _, _, rv, dv, data, err = await ctx.tick().sample(dut.rready, dut.data.valid,
                                                               dut.data.payload.data, dut.error)
            assert rv == 1
            if valid:
                queue.pop(0)
                got.append(data)
            errors.append(err)

    async def main(ctx):
        for _ in range(20 * len(addrs) + 100):
            await ctx.tick()
            if len(got) == len(addrs):
                break

    sim.add_testbench(commands, background=True)
    sim.add_testbench(ar, background=True)
    sim.add_testbench(r_channel, background=True)
    sim.add_testbench(main)
    sim.run()
    return got, bursts, sum(errors)


@pytest.mark.parametrize("seed", [1, 2])
def test_reads_in_order_as_legal_bursts(seed):
    rng = random.Random(seed)
    addrs = []
    for _ in range(12):
        start = rng.choice([rng.randrange(1 << 20), PAGE_BYTES // BYTES - rng.randrange(1, 5)])
        addrs += range(start, start + rng.randrange(1, 40))
    got, bursts, errors = run_reads(addrs, seed=seed)
    assert got == [word(a) for a in addrs]
    for a, n in bursts:
        check_burst(a, n)
    assert sum(n for _, n in bursts) == len(addrs)
    assert max(n for _, n in bursts) > 1   # consecutive commands do coalesce
    assert errors == 0


def test_reads_split_at_256_and_4k():
    # A long stream with no gaps: bursts are cut at max_burst and at page ends only.
    addrs = list(range(100, 100 + 700))
    got, bursts, _ = run_reads(addrs, seed=3, stall=0.0, outstanding=1000, gaps=0)
    assert got == [word(a) for a in addrs]
    page = PAGE_BYTES // BYTES
    # 100..355 (256 beats), 356..511 (page end), 512..767 (256), 768..799
    assert [(a // BYTES, n) for a, n in bursts] == [(100, 256), (356, page - 356),
                                                    (page, 256), (page + 256, 32)]


def test_read_max_burst_parameter():
    addrs = list(range(0, 50))
    _, bursts, _ = run_reads(addrs, seed=4, stall=0.0, max_burst=4, outstanding=1000,
                            gaps=0)
    assert [n for _, n in bursts] == [4] * 12 + [2]


@pytest.mark.parametrize("code", [RESP_SLVERR, RESP_DECERR])
def test_read_error_response_pulses_error(code):
    addrs = list(range(10, 30))
    got, _, errors = run_reads(addrs, seed=5, resp=lambda a: code if a == 17 else RESP_OKAY)
    assert got == [word(a) for a in addrs]
    assert errors == 1


def run_writes(writes, *, seed, stall=0.3, resp=lambda a: RESP_OKAY, max_burst=16,
               aw_first=False):
    """Offer ``writes`` ((addr, data, strobe) words) with random gaps to an AxiWriteMaster;
    a model slave (optionally waiting for AW before taking W) applies them. Returns (memory,
    bursts, error pulses, pending trace after the last write was taken)."""
    rng = random.Random(seed)
    dut = AxiWriteMaster(data_width=DW, max_burst=max_burst)
    mem, bursts, errors, aws, bs = {}, [], [], [], []
    state = {"taken": 0, "b_sent": 0, "beats": 0, "pending_low_early": False}
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def source(ctx):
        i = 0
        while i < len(writes):
            valid = rng.random() > 0.2
            a, d, s = writes[i]
            ctx.set(dut.wr.valid, valid)
            ctx.set(dut.wr.payload, {"addr": a, "data": d, "strobe": s})
            _, _, v, r = await ctx.tick().sample(dut.wr.valid, dut.wr.ready)
            i += v and r
            state["taken"] = i
        ctx.set(dut.wr.valid, 0)

    wbeats = []

    def match():
        """Apply buffered W beats to their AW (a W beat may come before its AW)."""
        while aws and wbeats:
            d, s, last = wbeats.pop(0)
            base, n = aws[0]
            k = state["beats"]
            a = base + k
            old = mem.get(a, 0)
            for b in range(BYTES):
                if s >> b & 1:
                    old = (old & ~(0xFF << 8 * b)) | (d & (0xFF << 8 * b))
            mem[a] = old
            assert last == (k == n - 1)
            state["beats"] = k + 1
            if k == n - 1:
                aws.pop(0)
                state["beats"] = 0
                bs.append(resp(a))

    async def aw(ctx):
        while True:
            ctx.set(dut.awready, rng.random() > stall)
            _, _, v, r, a, n = await ctx.tick().sample(dut.awvalid, dut.awready, dut.awaddr,
                                                        dut.awlen)
            if v and r:
                bursts.append((a, n + 1))
                aws.append([a // BYTES, n + 1])
            match()

    async def w(ctx):
        while True:
            ok = rng.random() > stall and (not aw_first or bool(aws))
            ctx.set(dut.wready, ok)
            _, _, v, r, d, s, last = await ctx.tick().sample(dut.wvalid, dut.wready,
                                                              dut.wdata, dut.wstrb, dut.wlast)
            if v and r:
                wbeats.append((d, s, last))
            match()

    async def b(ctx):
        while True:
            valid = bool(bs) and rng.random() > stall
            ctx.set(dut.bvalid, valid)
            ctx.set(dut.bresp, bs[0] if valid else 0)
            _, _, v, r, err = await ctx.tick().sample(dut.bvalid, dut.bready, dut.error)
            errors.append(err)
            if v and r:
                bs.pop(0)
                state["b_sent"] += 1

    async def main(ctx):
        for _ in range(30 * len(writes) + 200):
            _, _, pending = await ctx.tick().sample(dut.pending)
            done = (state["taken"] == len(writes) and not aws and not bs and not wbeats
                    and state["b_sent"] == len(bursts))
            if not pending and state["taken"] and not done:
                # pending low while a taken write is unacknowledged
                if state["b_sent"] < len(bursts) or aws or bs or wbeats:
                    state["pending_low_early"] = True
            if done and not pending:
                break

    sim.add_testbench(source, background=True)
    sim.add_testbench(aw, background=True)
    sim.add_testbench(w, background=True)
    sim.add_testbench(b, background=True)
    sim.add_testbench(main)
    sim.run()
    return mem, bursts, sum(errors), state


def expected(writes):
    mem = {}
    for a, d, s in writes:
        old = mem.get(a, 0)
        for b in range(BYTES):
            if s >> b & 1:
                old = (old & ~(0xFF << 8 * b)) | (d & (0xFF << 8 * b))
        mem[a] = old
    return mem


def random_writes(rng, n):
    writes, a = [], rng.randrange(1 << 16)
    while len(writes) < n:
        if rng.random() < 0.2:
            a = rng.choice([rng.randrange(1 << 16), PAGE_BYTES // BYTES * rng.randrange(1, 9) - 2])
        strobe = rng.choice([(1 << BYTES) - 1, 0x0F, 0xF0, rng.randrange(1, 1 << BYTES)])
        writes.append((a, rng.randrange(1 << DW), strobe))
        a += 1
    return writes


@pytest.mark.parametrize("seed,aw_first", [(1, False), (2, True), (3, True)])
def test_writes_land_as_legal_bursts(seed, aw_first):
    writes = random_writes(random.Random(seed), 150)
    mem, bursts, errors, state = run_writes(writes, seed=seed, aw_first=aw_first)
    assert mem == expected(writes)
    for a, n in bursts:
        check_burst(a, n, 16)
    assert max(n for _, n in bursts) > 1
    assert errors == 0
    assert not state["pending_low_early"]


def test_expected_memory_checker_sees_a_lost_strobe():
    writes = [(5, 0x1122, 0x01), (5, 0x3300, 0x02)]
    assert expected(writes) == {5: 0x3322}
    assert expected(writes[:1]) != expected(writes)


@pytest.mark.parametrize("code", [RESP_SLVERR, RESP_DECERR])
def test_write_error_response_pulses_error(code):
    writes = [(a, a, 0xFF) for a in range(40, 60)] + [(500, 1, 0xFF)]
    mem, _, errors, _ = run_writes(writes, seed=7, resp=lambda a: code if a == 500 else 0)
    assert mem == expected(writes)
    assert errors == 1


class DmaOverAxi(Elaboratable):
    """A tagged ReadDma behind an AxiReadMaster, as in the AXI chip."""

    def __init__(self, params, clients):
        self.dma = ReadDma(params, clients=clients, tagged=True)
        self.axi = AxiReadMaster(data_width=params.mem_width, id_width=tag_bits(clients))

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma, m.submodules.axi = self.dma, self.axi
        wiring.connect(m, self.dma.mem_rd_cmd, self.axi.cmd)
        wiring.connect(m, self.axi.data, self.dma.mem_rd_data)
        return m


def run_dma_over_axi(requests, *, seed, max_reads=16, resp=lambda word: RESP_OKAY,
                     ready=None, slave_class=AxiReadSlave, **slave):
    """Client i asks for ``requests[i]`` ((word, count) ...) with random bubbles and takes
    words with probability ``ready[i]`` per cycle (default 0.7); an ``AxiReadSlave`` answers
    (out of order across IDs, interleaved). Returns (words per client, the slave, ReadDma
    error seen, AXI errors)."""
    ready_p = ready or [0.7] * len(requests)
    rng = random.Random(seed)
    params = TiledParams(wbits=4, abits=4, rows=4, cols=4, mem_width=DW, max_reads=max_reads)
    top = DmaOverAxi(params, len(requests))
    dma, axi = top.dma, top.axi
    model = slave_class(lambda name: getattr(axi, name), word, data_width=DW, rng=rng,
                        resp=resp, **slave)
    want = sum(c for reqs in requests for _, c in reqs)
    got = [[] for _ in requests]
    flags = {"dma_error": 0, "axi_errors": 0}

    async def bench(ctx):
        pending = [list(reqs) for reqs in requests]
        for cycle in range(60 * want + 500):
            if sum(map(len, got)) == want and not model.bursts:
                break
            ready = []
            for i, (req, rsp) in enumerate(zip(dma.reqs, dma.rsps, strict=True)):
                if not ctx.get(req.valid) and pending[i] and rng.random() > 0.3:
                    addr, count = pending[i].pop(0)
                    ctx.set(req.payload.addr, addr)
                    ctx.set(req.payload.count, count)
                    ctx.set(req.valid, 1)
                ready.append(rng.random() < ready_p[i])
                ctx.set(rsp.ready, ready[i])
            model.step(ctx, cycle)
            for i, rsp in enumerate(dma.rsps):
                if ready[i] and ctx.get(rsp.valid):
                    got[i].append(ctx.get(rsp.payload))
            flags["axi_errors"] += ctx.get(axi.error)
            accepted = [ctx.get(req.valid) and ctx.get(req.ready) for req in dma.reqs]
            await ctx.tick()
            flags["dma_error"] |= ctx.get(dma.error)
            for req, a in zip(dma.reqs, accepted, strict=True):
                if a:
                    ctx.set(req.valid, 0)
        else:
            raise AssertionError(f"hung: {[len(g) for g in got]} words of {want}")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, model, flags["dma_error"], flags["axi_errors"]


def client_requests(rng, clients, n, max_count):
    """Random requests per client, some ending just before a 4 KiB page end."""
    page = PAGE_BYTES // BYTES
    return [[(rng.choice([rng.randrange(1 << 20), page * rng.randrange(1, 64) - 3]),
              rng.randint(1, max_count)) for _ in range(n)] for _ in range(clients)]


def words_of(reqs):
    return [word(a + k) for a, c in reqs for k in range(c)]


@pytest.mark.parametrize("seed, clients, max_reads, skew", [
    (1, 5, 16, False), (2, 3, 4, False), (3, 5, 2, False), (4, 5, 16, True), (5, 2, 8, True)])
def test_ids_reordered_and_interleaved_reach_their_clients_in_order(seed, clients, max_reads,
                                                                     skew):
    """The slave returns bursts of different IDs out of order and interleaves their beats,
    with random R pauses: every client still gets exactly its words, in order; every burst
    carries one client's consecutive words (ARID = that client).

    Clients that all issue take turns command by command, so their bursts are one beat long
    (nothing to interleave); ``skew``: client 0 reads long requests into a fast consumer
    while the others' consumers are slow, so client 0's commands merge into long bursts and
    the others' beats come in the middle of them."""
    rng = random.Random(seed)
    requests = client_requests(rng, clients, 6, 30)
    ready = None
    if skew:
        requests[0] = client_requests(rng, 1, 4, 120)[0]
        ready = [1.0] + [0.15] * (clients - 1)
    got, model, dma_error, axi_errors = run_dma_over_axi(requests, seed=seed,
                                                         max_reads=max_reads, ready=ready)
    for i, reqs in enumerate(requests):
        assert got[i] == words_of(reqs), f"client {i}"
    assert dma_error == 0 and axi_errors == 0
    assert model.reorders > 0   # the slave did answer out of AR order
    owned = [{a + k for a, c in reqs for k in range(c)} for reqs in requests]
    for arid, first, length in model.ars:
        assert set(range(first, first + length)) <= owned[arid], f"burst of ID {arid}"
    if skew:
        assert model.interleaves > 0   # and did interleave beats of different IDs
        assert max(length for _, _, length in model.ars) > 4   # same-ID commands merge


def test_dma_over_axi_checker_sees_a_misrouted_word():
    """The same bench with the RID of one beat flipped: a word reaches the wrong client (or
    the ReadDma error rises), so the comparison above can fail."""
    requests = client_requests(random.Random(4), 3, 4, 10)

    class Misroute(AxiReadSlave):
        flipped = False

        def step(self, ctx, cycle):
            super().step(ctx, cycle)
            if not self.flipped and ctx.get(self.port("rvalid")) and self.beats > 5:
                ctx.set(self.port("rid"), ctx.get(self.port("rid")) ^ 1)
                self.flipped = True

    try:
        got, model, dma_error, _ = run_dma_over_axi(requests, seed=4, slave_class=Misroute)
    except AssertionError as e:   # a client waits for a word that went elsewhere
        assert "hung" in str(e)
        return
    assert model.flipped
    assert dma_error or any(g != words_of(r) for g, r in zip(got, requests, strict=True))


def test_read_error_response_with_ids():
    requests = client_requests(random.Random(5), 2, 3, 8)
    bad = requests[1][0][0]
    got, _, _, axi_errors = run_dma_over_axi(
        requests, seed=5, resp=lambda w: RESP_SLVERR if w == bad else RESP_OKAY)
    assert axi_errors == 1
    assert got[1] == words_of(requests[1])   # the beat is still delivered


@pytest.mark.parametrize("kwargs", [{"id_width": 0}, {"id_width": 17}, {"max_burst": 0}])
def test_read_master_bad_parameters_name_the_value(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        AxiReadMaster(data_width=DW, **kwargs)
