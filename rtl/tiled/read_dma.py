"""The tiled chip's external-memory reader, shared by its clients (descriptors, constants,
weights, input load, skips).

The external memory answers reads in command order after any latency and cannot be told to
wait (``mem_rd_data.ready`` is constant 1). So a read is only issued once its answer has a
place: every client has a response FIFO, and a word is read for a client only against a free
place of that FIFO that no earlier in-flight read of the same client has reserved. A slow
client then stalls only its own reads, never the memory or the other clients, and nothing can
hang.

Tagged mode (``tagged=True``, the AXI chip's): every command carries its client's index as a
tag (the AXI ARID) and every answer its tag (the RID), so the memory may answer reads of
different clients out of order and interleave them word by word (AXI allows both across IDs);
only the reads of one client must come back in their order. The answer goes to its tag's
FIFO; the credit rule is the same, so no answer waits either.
"""

from amaranth.hdl import Cat, Module, ResetInserter, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import check_int
from .params import TiledParams

__all__ = ["ReadDma", "REQUEST", "ADDR_BITS", "COUNT_BITS", "MAX_CLIENTS", "LATENCY",
           "tag_bits", "read_cmd_layout", "read_data_layout"]

ADDR_BITS = 32
COUNT_BITS = 16
#: Most clients one ReadDma serves (the round-robin arbiter is a plain priority scan).
MAX_CLIENTS = 16
#: Cycles from an accepted request to its first word on ``rsp_i``, on top of the memory's
#: latency (command accepted to data valid), when nothing else is queued.
LATENCY = 4

#: A client's request: ``count`` consecutive words from word address ``addr``.
REQUEST = data.StructLayout({"addr": unsigned(ADDR_BITS), "count": unsigned(COUNT_BITS)})


def tag_bits(clients):
    """Bits of a client tag (the AXI ID width): at least 1."""
    return max(1, (clients - 1).bit_length())


def read_cmd_layout(tag_width):
    """A tagged read command: a word address and the tag its answer must carry back."""
    return data.StructLayout({"addr": unsigned(ADDR_BITS), "tag": unsigned(tag_width)})


def read_data_layout(data_width, tag_width):
    """A tagged answer: one word and the tag of the command it answers."""
    return data.StructLayout({"data": unsigned(data_width), "tag": unsigned(tag_width)})


def _first_set(m, vec, n):
    """Index of the lowest set bit of ``vec`` (0 when none is set)."""
    idx = Signal(range(n), name=f"{vec.name}_first")
    for i in reversed(range(n)):
        with m.If(vec[i]):
            m.d.comb += idx.eq(i)
    return idx


def _round_robin(m, eligible, last, n):
    """The eligible client after ``last`` in circular order (``eligible`` must be non-zero for
    the answer to mean anything)."""
    after = Signal(n, name="rr_after")
    m.d.comb += after.eq(eligible & Cat(last < i for i in range(n)))
    pick_after, pick_any = _first_set(m, after, n), _first_set(m, eligible, n)
    grant = Signal(range(n), name="rr_grant")
    m.d.comb += grant.eq(pick_after)
    with m.If(~after.any()):
        m.d.comb += grant.eq(pick_any)
    return grant


class ReadDma(wiring.Component):
    """Tagged reads for ``clients`` clients, each answered in its own order; no response waits.

    Ports, per client ``i`` (``0 <= i < clients``; also listed by ``reqs``/``rsps``):

    - ``req_i``: In(stream ``REQUEST``): read ``count`` consecutive memory words from word
      address ``addr`` (addresses wrap at 2**32). ``count`` is 1..65535; a request of count 0
      is accepted and reads nothing. A client's requests are served one after the other.
    - ``rsp_i``: Out(stream ``unsigned(mem_width)``): the words of client i's requests, in
      order.

    Memory side: ``mem_rd_cmd``: Out(stream ``unsigned(32)``): word addresses (a registered
    output: valid and payload never depend on this cycle's inputs). ``mem_rd_data``: In(stream
    ``unsigned(mem_width)``): one answer per command, in command order, at least one cycle
    after the command was accepted; ``mem_rd_data.ready`` is constant 1.

    Control: ``clear`` (level, one cycle is enough): abandon everything: pending requests,
    buffered words, the issue slot; reads already accepted by the memory are counted and their
    answers dropped as they arrive. While ``clear`` is high no request is accepted
    (``req_i.ready`` 0) and no word is offered (``rsp_i.valid`` 0). ``error``: sticky until
    ``clear``: an answer arrived while no read was outstanding (an answer arriving in the clear
    cycle itself still sets it). ``busy``: Out(clients): bit i: client i has a request not
    fully issued, a read in flight, or words not yet taken from ``rsp_i``. ``idle``: no client
    busy and no abandoned read still to drop (``req_i.valid`` is not looked at).

    Rule: a word is read for client i only when its response FIFO (``fifo_depth`` words) has a
    place not yet reserved by an in-flight read of client i (credit counter per client), and
    at most ``params.max_reads`` reads are reserved in total (the issue slot, the reads in
    flight, and abandoned reads still to drop): so the memory never has more than
    ``max_reads`` reads outstanding and every answer has a place. One command per cycle at
    best, round-robin between the clients that can issue. A tag FIFO of client ids
    (``max_reads`` x ceil(log2(clients)) bits, a small LUT memory read asynchronously) routes
    the answers.

    Latency: a request accepted in cycle t gives a command on ``mem_rd_cmd`` at t+2; an answer
    in cycle u is on ``rsp_i`` at u+2 (response FIFO with a registered output). So first word
    = ``LATENCY`` (4) + memory latency. Throughput: one word per cycle while the memory latency
    L satisfies ``max_reads >= L + 1`` and, for a single client, ``fifo_depth >= L + 4`` (its
    credits come back 4 + L cycles after they are taken) with its consumer always ready; a
    client can take a new request in the cycle its last word is issued (``req_i.ready`` then
    depends combinationally on ``mem_rd_cmd.ready`` and ``mem_rd_data.valid``). Measured
    (tests/test_tiled_read_dma.py): first word L + 4 cycles after the request for L in 1, 5,
    12, then one word per cycle (max_reads = fifo_depth = 16); at L = 12 a single client gets
    2 words per 13 cycles with max_reads 2, per 16 cycles with fifo_depth 2.

    Bounds: ``clients`` 1..16, ``fifo_depth`` 1..4096 (default ``params.max_reads``). Storage:
    ``clients * fifo_depth`` words of ``mem_width`` bits in FIFOs with synchronous read ports
    (a FIFO of 2 is built 3 deep: Amaranth's buffered FIFO of depth 2 refuses a write while
    its output register is refilling).

    ``tagged=True``: ``mem_rd_cmd`` carries ``read_cmd_layout(tag_bits(clients))`` (address
    and the client's index as ``tag``) and ``mem_rd_data`` ``read_data_layout(mem_width,
    tag_bits(clients))``: the memory answers with the command's tag, in command order per tag
    but in any order across tags, word by word. No tag FIFO: per client, a count of reads in
    flight and a count of abandoned reads still to drop (both up to ``max_reads``). An answer
    whose client has abandoned reads left is dropped (one client's answers come in order, so
    the abandoned ones come first); else it goes to that client's FIFO; an answer for a client
    with nothing outstanding (or a tag >= ``clients``) sets ``error``. Same ``max_reads``
    bound, same latency.
    """

    def __init__(self, params, *, clients, fifo_depth=None, tagged=False):
        if not isinstance(params, TiledParams):
            raise TypeError(f"params must be a TiledParams, not {params!r}")
        check_int("clients", clients, 1, MAX_CLIENTS)
        if fifo_depth is None:
            fifo_depth = params.max_reads
        check_int("fifo_depth", fifo_depth, 1, 4096)
        self._params, self._clients, self._fifo_depth = params, clients, fifo_depth
        self._tagged = bool(tagged)
        members = {}
        for i in range(clients):
            members[f"req_{i}"] = In(stream.Signature(REQUEST))
            members[f"rsp_{i}"] = Out(stream.Signature(unsigned(params.mem_width)))
        if tagged:
            cmd = read_cmd_layout(tag_bits(clients))
            answer = read_data_layout(params.mem_width, tag_bits(clients))
        else:
            cmd, answer = unsigned(ADDR_BITS), unsigned(params.mem_width)
        members |= {
            "mem_rd_cmd": Out(stream.Signature(cmd)),
            "mem_rd_data": In(stream.Signature(answer)),
            "clear": In(1),
            "error": Out(1),
            "busy": Out(clients),
            "idle": Out(1),
        }
        super().__init__(members)

    params = property(lambda self: self._params)
    clients = property(lambda self: self._clients)
    fifo_depth = property(lambda self: self._fifo_depth)
    tagged = property(lambda self: self._tagged)

    @property
    def reqs(self):
        return [getattr(self, f"req_{i}") for i in range(self._clients)]

    @property
    def rsps(self):
        return [getattr(self, f"rsp_{i}") for i in range(self._clients)]

    def elaborate(self, platform):
        m = Module()
        n, depth, max_reads = self._clients, self._fifo_depth, self._params.max_reads
        clear = self.clear

        # Issue slot: the next command, registered so that mem_rd_cmd holds while not ready.
        slot_valid = Signal()
        slot_addr = Signal(ADDR_BITS)
        slot_tag = Signal(range(n))
        fire = Signal()
        m.d.comb += [
            self.mem_rd_cmd.valid.eq(slot_valid),
            fire.eq(slot_valid & self.mem_rd_cmd.ready),
        ]
        if self._tagged:
            m.d.comb += [self.mem_rd_cmd.payload.addr.eq(slot_addr),
                         self.mem_rd_cmd.payload.tag.eq(slot_tag)]
            route = _TaggedAnswers(m, self, fire, slot_tag)
        else:
            m.d.comb += self.mem_rd_cmd.payload.eq(slot_addr)
            route = _OrderedAnswers(m, self, fire, slot_tag)
        m.d.sync += self.error.eq((self.error & ~clear) | (route.arrive & ~route.owed))

        # Room for one more reservation next cycle (an answer arriving now frees one).
        reserved = Signal(range(max_reads + 2))
        room = Signal()
        slot_free = Signal()
        m.d.comb += [
            reserved.eq(route.held + slot_valid),
            room.eq((reserved < max_reads) | (route.arrive & route.owed)),
            slot_free.eq(~slot_valid | fire),
        ]

        eligible = Signal(n)
        last = Signal(range(n))
        grant = _round_robin(m, eligible, last, n)
        load = Signal()
        m.d.comb += load.eq(eligible.any() & room & slot_free & ~clear)
        with m.If(load):
            m.d.sync += [slot_valid.eq(1), slot_tag.eq(grant), last.eq(grant)]
        with m.Elif(fire | clear):
            m.d.sync += slot_valid.eq(0)

        for i, (req, rsp) in enumerate(zip(self.reqs, self.rsps, strict=True)):
            addr = Signal(ADDR_BITS, name=f"addr_{i}")
            left = Signal(COUNT_BITS, name=f"left_{i}")
            credits = Signal(range(depth + 1), name=f"credits_{i}", init=depth)
            load_i = Signal(name=f"load_{i}")
            pop = Signal(name=f"pop_{i}")
            rspq = fifo.SyncFIFOBuffered(width=self._params.mem_width,
                                         depth=3 if depth == 2 else depth)
            m.submodules[f"rspq_{i}"] = ResetInserter(clear)(rspq)
            m.d.comb += [
                eligible[i].eq((left != 0) & (credits != 0)),
                load_i.eq(load & (grant == i)),
                req.ready.eq(~clear & ((left == 0) | ((left == 1) & load_i))),
                rspq.w_en.eq(route.deliver(i)),
                rspq.w_data.eq(route.word),
                rsp.valid.eq(rspq.r_rdy & ~clear),
                rsp.payload.eq(rspq.r_data),
                rspq.r_en.eq(rsp.ready & ~clear),
                pop.eq(rsp.valid & rsp.ready),
                self.busy[i].eq((left != 0) | (credits != depth)),
            ]
            with m.If(load_i):
                m.d.sync += [slot_addr.eq(addr), addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(req.valid & req.ready):
                m.d.sync += [addr.eq(req.payload.addr), left.eq(req.payload.count)]
            m.d.sync += credits.eq(credits - load_i + pop)
            with m.If(clear):
                m.d.sync += [left.eq(0), credits.eq(depth)]

        m.d.comb += self.idle.eq(~self.busy.any() & route.settled)
        return m


class _OrderedAnswers:
    """Answers in command order: a tag FIFO of client ids says whose each answer is. Answers
    of reads abandoned by clear are counted in ``drop`` and come back before any later
    read's."""

    def __init__(self, m, dma, fire, slot_tag):
        n, max_reads, clear = dma.clients, dma.params.max_reads, dma.clear
        tagq = fifo.SyncFIFO(width=max(1, (n - 1).bit_length()), depth=max_reads)
        m.submodules.tagq = ResetInserter(clear)(tagq)
        drop = Signal(range(max_reads + 1))
        arrive = Signal()
        owed = Signal()   # an answer is expected (to drop or to deliver)
        deliver = Signal()
        m.d.comb += [
            dma.mem_rd_data.ready.eq(1),
            arrive.eq(dma.mem_rd_data.valid),
            owed.eq((drop != 0) | (tagq.level != 0)),
            deliver.eq(arrive & (drop == 0) & (tagq.level != 0) & ~clear),
            tagq.w_en.eq(fire),
            tagq.w_data.eq(slot_tag),
            tagq.r_en.eq(deliver),
        ]
        with m.If(clear):
            m.d.sync += drop.eq(drop + tagq.level + fire - (arrive & owed))
        with m.Elif(arrive & (drop != 0)):
            m.d.sync += drop.eq(drop - 1)
        #: ``arrive``: an answer is here; ``owed``: it was expected; ``held``: reads the
        #: memory holds (in flight or abandoned); ``settled``: no abandoned read is left.
        self.arrive, self.owed, self.held = arrive, owed, drop + tagq.level
        self.settled = drop == 0
        self.word = dma.mem_rd_data.payload
        self._deliver, self._tagq = deliver, tagq

    def deliver(self, i):
        """The answer here now goes to client ``i``'s FIFO."""
        return self._deliver & (self._tagq.r_data == i)


class _TaggedAnswers:
    """Answers carrying their client's tag, in order per client only: per client, reads in
    flight and abandoned reads still to drop (one client's abandoned answers come before its
    later ones, as the memory keeps one tag's order)."""

    def __init__(self, m, dma, fire, slot_tag):
        max_reads, clear = dma.params.max_reads, dma.clear
        answer = dma.mem_rd_data
        arrive = Signal()
        owed = Signal()
        held = Signal(range(max_reads + 1))
        m.d.comb += [answer.ready.eq(1), arrive.eq(answer.valid)]
        m.d.sync += held.eq(held + fire - (arrive & owed))
        self._deliver, drops, owed_any = [], [], []
        for i in range(dma.clients):
            flight = Signal(range(max_reads + 1), name=f"flight_{i}")
            drop = Signal(range(max_reads + 1), name=f"drop_{i}")
            hit = Signal(name=f"hit_{i}")
            deliver = Signal(name=f"deliver_{i}")
            issued = fire & (slot_tag == i)
            m.d.comb += [
                hit.eq(arrive & (answer.payload.tag == i)),
                deliver.eq(hit & (drop == 0) & (flight != 0) & ~clear),
            ]
            owed_i = (drop != 0) | (flight != 0)
            with m.If(clear):
                m.d.sync += [drop.eq(drop + flight + issued - (hit & owed_i)), flight.eq(0)]
            with m.Else():
                m.d.sync += flight.eq(flight + issued - deliver)
                with m.If(hit & (drop != 0)):
                    m.d.sync += drop.eq(drop - 1)
            self._deliver.append(deliver)
            drops.append(drop != 0)
            owed_any.append(hit & owed_i)
        m.d.comb += owed.eq(Cat(owed_any).any())
        self.arrive, self.owed, self.held = arrive, owed, held
        self.settled = ~Cat(drops).any()
        self.word = answer.payload.data

    def deliver(self, i):
        return self._deliver[i]
