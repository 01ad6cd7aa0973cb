# amaranth: UnusedElaboratable=no
"""ReadDma in Amaranth's simulator: every word exactly once and in order per client, under
random memory latency, command stalls, request bubbles and consumer back-pressure; the
max_reads bound; clear with reads in flight; the unsolicited-answer error; latency and
throughput; Verilog conversion."""

import random
from collections import deque

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from rtl.tiled.params import TiledParams
from rtl.tiled.read_dma import LATENCY, ReadDma

MASK32 = (1 << 32) - 1


def make_params(max_reads=16, mem_width=64):
    return TiledParams(wbits=4, abits=4, rows=4, cols=4, mem_width=mem_width,
                       max_reads=max_reads)


class Memory:
    """External memory contents: a random word per address, drawn on first use."""

    def __init__(self, width, seed):
        self._rng, self._width, self._words = random.Random(seed), width, {}

    def __getitem__(self, addr):
        addr &= MASK32
        if addr not in self._words:
            self._words[addr] = self._rng.getrandbits(self._width)
        return self._words[addr]


def expected_words(memory, requests):
    """The reference: each request's words, in request order (addresses wrap at 2**32)."""
    return [memory[a + k] for a, c in requests for k in range(c)]


def check_words(got, want, client):
    """In-order, exactly-once comparison of one client's words with the reference."""
    assert len(got) == len(want), f"client {client}: {len(got)} words, want {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"client {client}: word {k} is {g:#x}, want {w:#x}"


def random_requests(rng, n, max_count, *, wrap=False):
    reqs = [(rng.getrandbits(32), rng.randint(1, max_count)) for _ in range(n)]
    if wrap:
        reqs.append((MASK32 - 1, 4))   # crosses 2**32
    return reqs


class HoldCheck:
    """Stream rule on an output: once valid, valid and payload stay put until ready."""

    def __init__(self, name):
        self.name, self.held = name, None

    def cycle(self, valid, ready, payload):
        if self.held is not None:
            assert valid and payload == self.held, f"{self.name} changed while not ready"
        self.held = payload if valid and not ready else None


class Bench:
    """Drives a ReadDma cycle by cycle from one testbench: request producers with bubbles,
    consumers with random ready, and a memory that answers in order after a random latency.
    For a tagged ReadDma the memory answers with each command's tag and, across tags, in a
    random order (a random due read among the oldest of each tag; ``reorders`` counts the
    answers that overtook an older read of another tag).

    ``phases``: lists of per-client request lists; between two phases ``clear`` is raised
    for one cycle after ``clear_after`` cycles of the phase, abandoning what is left. The
    words of the last phase must all arrive; ``got[p][i]`` holds what client i received in
    phase p. ``answer`` (default: the memory) gives the word the memory returns for an address.
    """

    def __init__(self, dut, phases, *, seed=0, latency=(1, 12), cmd_stall=0.3, rsp_stall=0.4,
                 req_bubbles=0.3, clear_after=40, answer=None, limit=None):
        self.dut, self.phases = dut, phases
        self.rng = random.Random(seed)
        self.memory = Memory(dut.params.mem_width, seed + 1)
        self.answer = answer or self.memory.__getitem__
        self.latency, self.cmd_stall, self.rsp_stall = latency, cmd_stall, rsp_stall
        self.req_bubbles, self.clear_after = req_bubbles, clear_after
        total = sum(c for phase in phases for reqs in phase for _, c in reqs)
        self.limit = limit or 200 + 25 * total
        self.got = [[[] for _ in range(dut.clients)] for _ in phases]
        self.accept_cycles = [[] for _ in range(dut.clients)]
        self.word_cycles = [[] for _ in range(dut.clients)]
        self.max_outstanding = 0
        self.cycle = 0
        self.answers = deque()   # (cycle due, word, tag), in command order
        self.reorders = 0
        self.last_due = 0
        self.holds = [HoldCheck(f"rsp_{i}") for i in range(dut.clients)]
        self.cmd_hold = HoldCheck("mem_rd_cmd")

    def want(self, phase):
        return [expected_words(self.memory, reqs) for reqs in self.phases[phase]]

    def run(self):
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(self._bench)
        sim.run()
        return self

    async def _bench(self, ctx):
        dut, n = self.dut, self.dut.clients
        for p, phase in enumerate(self.phases):
            last = p == len(self.phases) - 1
            pending = [deque(reqs) for reqs in phase]
            holding = [False] * n
            start = self.cycle
            while True:
                if last and all(len(self.got[p][i]) == sum(c for _, c in phase[i])
                                for i in range(n)):
                    break
                if not last and self.cycle - start == self.clear_after:
                    break
                assert self.cycle < self.limit, f"hung: cycle {self.cycle}"
                await self._cycle(ctx, p, pending, holding)
            for i in range(n):
                ctx.set(dut.reqs[i].valid, 0)
            if not last:
                ctx.set(dut.clear, 1)
                self._memory_side(ctx, self.rng.random() >= self.cmd_stall)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                for hold in [*self.holds, self.cmd_hold]:   # clear abandons them
                    hold.held = None
                self.cycle += 1
        # The memory keeps answering whatever is still in flight (abandoned reads).
        while self.answers:
            assert self.cycle < self.limit, f"hung: cycle {self.cycle}"
            self._memory_side(ctx, False)
            await ctx.tick()
            self.cycle += 1
        ctx.set(dut.mem_rd_data.valid, 0)
        await ctx.tick()
        assert ctx.get(dut.idle) == 1 and ctx.get(dut.busy) == 0
        assert ctx.get(dut.error) == 0

    async def _cycle(self, ctx, p, pending, holding):
        dut, rng = self.dut, self.rng
        ready = []
        for i, (req, rsp) in enumerate(zip(dut.reqs, dut.rsps, strict=True)):
            if not holding[i]:
                ctx.set(req.valid, 0)
                if pending[i] and rng.random() >= self.req_bubbles:
                    addr, count = pending[i].popleft()
                    ctx.set(req.payload.addr, addr & MASK32)
                    ctx.set(req.payload.count, count)
                    ctx.set(req.valid, 1)
                    holding[i] = True
            ready.append(rng.random() >= self.rsp_stall)
            ctx.set(rsp.ready, ready[i])
        self._memory_side(ctx, rng.random() >= self.cmd_stall)
        for i, (req, rsp) in enumerate(zip(dut.reqs, dut.rsps, strict=True)):
            if holding[i] and ctx.get(req.ready):
                holding[i] = False
                self.accept_cycles[i].append(self.cycle)
            self.holds[i].cycle(ctx.get(rsp.valid), ready[i], ctx.get(rsp.payload))
            if ready[i] and ctx.get(rsp.valid):
                self.got[p][i].append(ctx.get(rsp.payload))
                self.word_cycles[i].append(self.cycle)
        assert ctx.get(dut.error) == 0, f"error at cycle {self.cycle}"
        assert not (self.answers and ctx.get(dut.idle)), "idle with reads in flight"
        await ctx.tick()
        self.cycle += 1

    def _next_answer(self):
        """Index in ``answers`` of the read answered this cycle, or None."""
        if not self.dut.tagged:
            return 0 if self.answers and self.answers[0][0] <= self.cycle else None
        heads = {}
        for k, (_, _, tag) in enumerate(self.answers):
            heads.setdefault(tag, k)
        due = [k for k in heads.values() if self.answers[k][0] <= self.cycle]
        return self.rng.choice(due) if due else None

    def _memory_side(self, ctx, cmd_ready):
        """One cycle of the memory: maybe accept a command, maybe answer a read (the oldest,
        or for a tagged ReadDma the oldest of a random tag)."""
        dut, tagged = self.dut, self.dut.tagged
        assert ctx.get(dut.mem_rd_data.ready) == 1
        outstanding = len(self.answers)
        k = self._next_answer()
        if k is not None:
            _, word, tag = self.answers[k]
            del self.answers[k]
            self.reorders += k != 0
            if tagged:
                ctx.set(dut.mem_rd_data.payload.data, word)
                ctx.set(dut.mem_rd_data.payload.tag, tag)
            else:
                ctx.set(dut.mem_rd_data.payload, word)
            ctx.set(dut.mem_rd_data.valid, 1)
        else:
            ctx.set(dut.mem_rd_data.valid, 0)
        ctx.set(dut.mem_rd_cmd.ready, cmd_ready)
        cmd = dut.mem_rd_cmd.payload
        addr, tag = (ctx.get(cmd.addr), ctx.get(cmd.tag)) if tagged else (ctx.get(cmd), 0)
        self.cmd_hold.cycle(ctx.get(dut.mem_rd_cmd.valid), cmd_ready, (addr, tag))
        if cmd_ready and ctx.get(dut.mem_rd_cmd.valid):
            outstanding += 1
            due = self.cycle + self.rng.randint(*self.latency)
            if not tagged:
                due = max(due, self.last_due + 1)
                self.last_due = due
            self.answers.append((due, self.answer(addr), tag))
        self.max_outstanding = max(self.max_outstanding, outstanding)
        assert outstanding <= dut.params.max_reads, f"{outstanding} reads in flight"


def check_phase(bench, phase):
    for i, (got, want) in enumerate(zip(bench.got[phase], bench.want(phase), strict=True)):
        check_words(got, want, i)


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("max_reads", [2, 3, 4, 16])
@pytest.mark.parametrize("clients", [1, 3])
def test_every_word_once_in_order(max_reads, clients, tagged):
    rng = random.Random(max_reads * 10 + clients)
    dut = ReadDma(make_params(max_reads), clients=clients, tagged=tagged)
    phase = [random_requests(rng, 6, 12, wrap=i == 0) for i in range(clients)]
    bench = Bench(dut, [phase], seed=max_reads + clients).run()
    check_phase(bench, 0)
    # Tagged, several clients: the memory did answer out of command order.
    assert (bench.reorders > 0) == (tagged and clients > 1)


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("max_reads", [2, 3, 4, 16])
def test_max_reads_reached_never_passed(max_reads, tagged):
    """Slow memory, fast consumers: the memory holds exactly max_reads reads at the peak
    (the bench asserts every cycle that it never holds more)."""
    dut = ReadDma(make_params(max_reads), clients=3, tagged=tagged)
    phase = [[(i * 1000, 30)] for i in range(3)]
    bench = Bench(dut, [phase], seed=max_reads, latency=(20, 20), cmd_stall=0, rsp_stall=0,
                  req_bubbles=0).run()
    check_phase(bench, 0)
    assert bench.max_outstanding == max_reads


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("fifo_depth", [1, 2, 3, 5])
def test_small_response_fifos(fifo_depth, tagged):
    """Credits against the FIFO size, not max_reads: a slow consumer never loses a word."""
    rng = random.Random(fifo_depth)
    dut = ReadDma(make_params(8, mem_width=32), clients=2, fifo_depth=fifo_depth,
                  tagged=tagged)
    phase = [random_requests(rng, 5, 10) for _ in range(2)]
    bench = Bench(dut, [phase], seed=fifo_depth, rsp_stall=0.7, cmd_stall=0.1).run()
    check_phase(bench, 0)


def test_count_zero_reads_nothing():
    dut = ReadDma(make_params(4), clients=2)
    phase = [[(5, 0), (100, 3), (7, 0)], [(9, 0)]]
    bench = Bench(dut, [phase], seed=3).run()
    check_phase(bench, 0)
    assert [len(g) for g in bench.got[0]] == [3, 0]


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("max_reads", [2, 16])
def test_clear_drops_reads_in_flight(max_reads, tagged):
    """Clear mid-transfer: the abandoned answers arrive and vanish (no error, no stray word),
    tagged even when they come after answers of the next requests of other clients; the next
    requests get exactly their own words."""
    rng = random.Random(max_reads)
    dut = ReadDma(make_params(max_reads), clients=3, tagged=tagged)
    before = [random_requests(rng, 8, 16) for _ in range(3)]
    after = [random_requests(rng, 4, 8) for _ in range(3)]
    bench = Bench(dut, [before, after], seed=max_reads, latency=(6, 12), cmd_stall=0.1,
                  clear_after=30).run()
    for i, (got, want) in enumerate(zip(bench.got[0], bench.want(0), strict=True)):
        assert got == want[:len(got)], f"client {i} before clear"
    assert sum(map(len, bench.got[0])) < sum(map(len, bench.want(0)))   # it did abandon
    check_phase(bench, 1)


@pytest.mark.parametrize("tagged", [False, True])
def test_clear_twice_in_a_row(tagged):
    rng = random.Random(7)
    dut = ReadDma(make_params(4), clients=2, tagged=tagged)
    phases = [[random_requests(rng, 4, 16) for _ in range(2)] for _ in range(3)]
    bench = Bench(dut, phases, seed=7, latency=(3, 12), clear_after=9).run()
    check_phase(bench, 2)


def test_checker_fails_on_a_wrong_word():
    """The bench's comparison catches a memory that returns one wrong word."""
    rng = random.Random(11)
    dut = ReadDma(make_params(4), clients=2)
    phase = [random_requests(rng, 3, 6), [(rng.getrandbits(32), 2), (1234, 6)]]
    bad_addr = 1234 + 2

    def answer(addr):
        word = bench.memory[addr]
        return word ^ 1 if addr == bad_addr else word

    bench = Bench(dut, [phase], seed=11)
    bench.answer = answer
    bench.run()
    check_words(bench.got[0][0], bench.want(0)[0], 0)
    with pytest.raises(AssertionError, match="client 1: word"):
        check_words(bench.got[0][1], bench.want(0)[1], 1)
    with pytest.raises(AssertionError, match="words, want"):
        check_words(bench.got[0][0][:-1], bench.want(0)[0], 0)


def test_checker_fails_on_a_hang():
    """A memory that swallows one read makes the bench report a hang, not pass."""

    class Lossy(deque):
        lost = False

        def append(self, item):
            if not self.lost:
                self.lost = True
                return
            super().append(item)

    dut = ReadDma(make_params(4), clients=1)
    bench = Bench(dut, [[[(10, 5)]]], seed=2, limit=300)
    bench.answers = Lossy()
    with pytest.raises(AssertionError, match="hung"):
        bench.run()


class WanderingCmd(ReadDma):
    """A broken ReadDma: its command address changes while the memory is not ready."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(~self.mem_rd_cmd.ready):
            m.d.comb += self.mem_rd_cmd.payload.eq(0)
        return m


def test_checker_fails_on_a_wandering_command():
    dut = WanderingCmd(make_params(4), clients=1)
    with pytest.raises(AssertionError, match="mem_rd_cmd changed while not ready"):
        Bench(dut, [[[(10, 20)]]], seed=4, cmd_stall=0.5).run()


def test_hold_check_fails_on_a_dropped_valid():
    hold = HoldCheck("rsp_0")
    hold.cycle(1, 0, 5)
    hold.cycle(1, 1, 5)
    hold.cycle(1, 0, 6)
    with pytest.raises(AssertionError, match="rsp_0 changed"):
        hold.cycle(0, 0, 6)


def _run_unsolicited(dut, answers_at):
    errors = []

    async def bench(ctx):
        for cycle in range(12):
            ctx.set(dut.mem_rd_data.valid, cycle in answers_at)
            ctx.set(dut.clear, cycle == 8)
            await ctx.tick()
            errors.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return errors


def test_unsolicited_answer_sets_sticky_error():
    dut = ReadDma(make_params(4), clients=2)
    assert _run_unsolicited(dut, {3}) == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    # An answer in the clear cycle with nothing outstanding is still an error.
    assert _run_unsolicited(dut, {8}) == [0] * 8 + [1, 1, 1, 1]
    assert _run_unsolicited(dut, set()) == [0] * 12


def test_error_after_traffic():
    """Two reads are answered without error; a third answer is unsolicited."""
    dut = ReadDma(make_params(4), clients=1)
    errors = []

    async def bench(ctx):
        ctx.set(dut.rsp_0.ready, 1)
        ctx.set(dut.mem_rd_cmd.ready, 1)
        ctx.set(dut.req_0.payload.addr, 40)
        ctx.set(dut.req_0.payload.count, 2)
        ctx.set(dut.req_0.valid, 1)
        await ctx.tick().until(dut.req_0.ready)
        ctx.set(dut.req_0.valid, 0)
        fired = 0
        while fired < 2:
            fired += ctx.get(dut.mem_rd_cmd.valid)
            await ctx.tick()
        for _ in range(4):
            ctx.set(dut.mem_rd_data.valid, 1)
            await ctx.tick()
            errors.append(ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert errors == [0, 0, 1, 1]


def _run_tagged_answers(dut, reads, answers):
    """Client 0 issues ``reads`` reads (never answered by the memory on its own); then one
    answer per tag of ``answers``, one per cycle. Returns ``error`` after each answer."""
    errors = []

    async def bench(ctx):
        ctx.set(dut.mem_rd_cmd.ready, 1)
        for rsp in dut.rsps:
            ctx.set(rsp.ready, 1)
        if reads:
            ctx.set(dut.req_0.payload.addr, 40)
            ctx.set(dut.req_0.payload.count, reads)
            ctx.set(dut.req_0.valid, 1)
            await ctx.tick().until(dut.req_0.ready)
            ctx.set(dut.req_0.valid, 0)
        fired = 0
        while fired < reads:
            fired += ctx.get(dut.mem_rd_cmd.valid)
            await ctx.tick()
        for tag in answers:
            ctx.set(dut.mem_rd_data.valid, 1)
            ctx.set(dut.mem_rd_data.payload.tag, tag)
            await ctx.tick()
            errors.append(ctx.get(dut.error))
        ctx.set(dut.mem_rd_data.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return errors


def test_tagged_answer_for_a_client_with_nothing_outstanding_sets_error():
    """Client 0 has two reads in flight: two answers tagged 0 are fine, a third is not; an
    answer tagged 1 (nothing outstanding there) or 3 (no such client) is an error at once."""
    assert _run_tagged_answers(ReadDma(make_params(4), clients=3, tagged=True), 2,
                               [0, 0, 0]) == [0, 0, 1]
    assert _run_tagged_answers(ReadDma(make_params(4), clients=3, tagged=True), 2,
                               [1]) == [1]
    assert _run_tagged_answers(ReadDma(make_params(4), clients=3, tagged=True), 2,
                               [3]) == [1]
    assert _run_tagged_answers(ReadDma(make_params(4), clients=3, tagged=True), 0,
                               [0]) == [1]


def test_busy_per_client():
    """Words waiting in client 1's FIFO keep it busy (and the DMA not idle) while client 0,
    served and drained, is not."""
    dut = ReadDma(make_params(4), clients=2)
    seen = []

    async def bench(ctx):
        ctx.set(dut.mem_rd_cmd.ready, 1)
        ctx.set(dut.rsp_0.ready, 1)
        seen.append((ctx.get(dut.busy), ctx.get(dut.idle)))
        for req, addr in ((dut.req_0, 0), (dut.req_1, 100)):
            ctx.set(req.payload.addr, addr)
            ctx.set(req.payload.count, 2)
            ctx.set(req.valid, 1)
        await ctx.tick()
        ctx.set(dut.req_0.valid, 0)
        ctx.set(dut.req_1.valid, 0)
        seen.append((ctx.get(dut.busy), ctx.get(dut.idle)))
        for _ in range(20):   # answer each command the next cycle
            fired = ctx.get(dut.mem_rd_cmd.valid)
            await ctx.tick()
            ctx.set(dut.mem_rd_data.valid, fired)
        seen.append((ctx.get(dut.busy), ctx.get(dut.idle)))
        ctx.set(dut.rsp_1.ready, 1)
        await ctx.tick().repeat(2)
        seen.append((ctx.get(dut.busy), ctx.get(dut.idle)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(0, 1), (0b11, 0), (0b10, 0), (0, 1)]


@pytest.mark.parametrize("latency", [1, 5, 12])
def test_latency_and_full_rate(latency):
    """One client, fixed memory latency L, no stalls: first word LATENCY + L cycles after the
    request is accepted, then one word per cycle (max_reads >= L + 1, fifo_depth >= L + 4)."""
    dut = ReadDma(make_params(16), clients=1)
    bench = Bench(dut, [[[(1000, 64), (5, 20)]]], latency=(latency, latency), cmd_stall=0,
                  rsp_stall=0, req_bubbles=0).run()
    check_phase(bench, 0)
    cycles = bench.word_cycles[0]
    assert cycles[0] - bench.accept_cycles[0][0] == LATENCY + latency
    assert cycles == list(range(cycles[0], cycles[0] + 84))   # no gap, even between requests


@pytest.mark.parametrize("max_reads, fifo_depth, period", [(2, 8, 13), (16, 2, 16)])
def test_rate_bounds(max_reads, fifo_depth, period):
    """Latency 12, one client: two reads per 13 cycles with max_reads 2 (L + 1), per 16 with
    a 2-word FIFO (its credits come back L + 4 cycles after they are taken)."""
    dut = ReadDma(make_params(max_reads), clients=1, fifo_depth=fifo_depth)
    bench = Bench(dut, [[[(0, 26)]]], latency=(12, 12), cmd_stall=0, rsp_stall=0,
                  req_bubbles=0).run()
    check_phase(bench, 0)
    cycles = bench.word_cycles[0]
    assert cycles[-1] - cycles[0] == 12 * period + 1


def test_round_robin_shares_the_memory():
    """Two clients with long requests and ready consumers alternate command by command."""
    dut = ReadDma(make_params(16), clients=2)
    bench = Bench(dut, [[[(0, 40)], [(500, 40)]]], latency=(2, 2), cmd_stall=0, rsp_stall=0,
                  req_bubbles=0).run()
    check_phase(bench, 0)
    a, b = bench.word_cycles
    assert abs(a[-1] - b[-1]) <= 1
    assert max(a[-1], b[-1]) - min(a[0], b[0]) == 79   # the memory busy every cycle


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("clients, fifo_depth", [(1, None), (5, 2), (16, 7)])
def test_converts_to_verilog(clients, fifo_depth, tagged):
    """Same parameters, same bytes (no source attributes: no checkout path in the text)."""
    p = make_params(3, mem_width=128)

    def convert():
        dut = ReadDma(p, clients=clients, fifo_depth=fifo_depth, tagged=tagged)
        return verilog.convert(dut, name="read_dma", emit_src=False)

    text = convert()
    assert text == convert()
    assert "module read_dma(" in text and "/work/" not in text


def test_signature_and_defaults():
    p = make_params(5)
    dut = ReadDma(p, clients=2)
    assert dut.fifo_depth == 5 and dut.clients == 2 and dut.params is p
    assert len(dut.reqs) == len(dut.rsps) == 2
    assert len(dut.rsp_1.payload) == p.mem_width
    assert len(dut.busy) == 2
    assert not dut.tagged


def test_tagged_signature():
    dut = ReadDma(make_params(5), clients=5, tagged=True)
    assert dut.tagged
    assert len(dut.mem_rd_cmd.payload.tag) == len(dut.mem_rd_data.payload.tag) == 3
    assert len(dut.mem_rd_cmd.payload.addr) == 32 and len(dut.mem_rd_data.payload.data) == 64


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"clients": 0}, ValueError, "clients"), ({"clients": 17}, ValueError, "clients"),
    ({"clients": 1.0}, TypeError, "clients"), ({"clients": 1, "fifo_depth": 0}, ValueError,
                                                "fifo_depth"),
    ({"clients": 1, "fifo_depth": True}, TypeError, "fifo_depth"),
])
def test_bad_parameters_name_the_value(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        ReadDma(make_params(), **kwargs)


def test_params_must_be_tiled_params():
    with pytest.raises(TypeError, match="TiledParams"):
        ReadDma({"max_reads": 4}, clients=1)
