"""The tiled chip's skip fetch: the residual term's codes, read back from a tensor already
written to external memory, one activation word per drain row, in drain order.

The skip of output channel ``c``, pixel ``(y, x)`` is ``src[c - skip_off, y*s, x*s]``
(``format.py``). With stride 1 a drain row's skip is one source activation word; with stride 2
it is the even lanes of two consecutive source words (ResNet's option A shortcut). The
sequencer turns each drain row into a job (which word, whether the channel exists); this block
only reads and selects lanes, so it keeps no knowledge of shapes.
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import check_int
from .input_loader import ADDR_BITS, READ_REQUEST, check_params

__all__ = ["SkipFetch", "JOB", "skip_layout"]

#: One drain row's skip: ``zero``: all codes 0 (a channel outside the source), nothing is
#: read; else source activation word ``n0``, and with stride 2 (or row pairs) also a second
#: word (``n0 + 1``, or ``n0 + 2`` with ``step2``) when ``pair`` (else it reads as zeros).
JOB = data.StructLayout({"zero": 1, "n0": unsigned(24), "pair": 1})


def skip_layout(params):
    """One drain row of skip codes: lane ``c`` = the skip code of pixel ``x0 + c``."""
    return data.ArrayLayout(unsigned(params.abits), params.cols)


def _info_layout(params):
    """What the response side needs to know of a job (queued between the two sides)."""
    spw, wps = params.slots_per_word, params.words_per_slot
    return data.StructLayout({
        "zero": 1, "stride2": 1, "pair": 1, "halves": 1, "step2": 1,
        "off": range(spw),                  # slot within the first memory word
        "last": range(2 if spw > 1 else 3 * wps),   # memory words of the job - 1
    })


class SkipFetch(wiring.Component):
    """Skip codes for the drain, one activation word per job, in job order.

    Ports:

    - ``job``: In(stream ``JOB``), in drain order. ``ext_base`` (In(32)) and ``stride2``
      (In(1)) are levels (``out_base + skip_addr`` and ``skip_stride == 2``), taken with each
      job, so they may change once the previous layer's jobs are accepted.
    - ``req``: Out(stream ``READ_REQUEST``), ``rsp``: In(stream ``unsigned(mem_width)``): one
      ReadDma client. A job reads the memory words that hold slot ``n0`` (and ``n0 + 1`` for
      a stride-2 pair) at ``ext_base``: 1 or 2 words when a slot is a word or less, else
      ``words_per_slot`` (or twice that) words; one request per job.
    - ``skip``: Out(stream ``skip_layout(params)``): per job, stride 1: the codes of word
      ``n0``; stride 2: lane ``l`` = lane ``2*l`` of (word ``n0``'s lanes, then word
      ``n0 + 1``'s lanes). ``zero`` jobs give all zeros.
    - ``idle`` (Out(1)): no job in flight and nothing offered on ``skip``.
    - ``clear`` (In(1), one cycle is enough): drop every job (clear the ReadDma client too).
      While it is high no handshake happens on ``job``, ``req``, ``rsp`` or ``skip``.

    Jobs in flight: up to ``depth`` (default ``params.max_reads``) jobs accepted but not yet
    output; a job is accepted together with its request (``job.ready`` depends
    combinationally on ``req.ready``). Latency: a request the cycle its job is accepted; a
    job's skip is on ``skip`` the cycle after its last memory word is on ``rsp`` (a zero job:
    3 cycles after acceptance, when it reaches the queue's head). Throughput: one job per
    cycle while each job needs one memory word and the DMA keeps up (stride 1 with a slot of
    at most a word, and stride-2 pairs within one memory word); else one memory word per
    cycle. Measured (tests/test_tiled_skip_fetch.py's model DMA, fixed latency 10, nothing
    stalled, 64 jobs, 64-bit words): act_width 16: 75 cycles at stride 1 and 2; act_width 64:
    75 (stride 1), 139 (stride 2); act_width 128: 139, 267; 64 zero jobs: 67. Storage:
    ``depth`` small queue entries, 2 memory words (or 2 slots) of gather buffer, one output
    word.
    """

    def __init__(self, params, *, depth=None):
        check_params(params)
        if depth is None:
            depth = params.max_reads
        check_int("depth", depth, 2, 256)
        self._params, self._depth = params, depth
        super().__init__({
            "job": In(stream.Signature(JOB)),
            "ext_base": In(ADDR_BITS),
            "stride2": In(1),
            # Row pairs (``format.row_group``): lanes 0.. of word n0 then of the second word,
            # ``halves`` (stride 1), or even lanes of both (``stride2``); the second word is
            # n0 + 2 with ``step2`` (stride 2: source rows 2*oy and 2*oy + 2).
            "halves": In(1),
            "step2": In(1),
            "req": Out(stream.Signature(READ_REQUEST)),
            "rsp": In(stream.Signature(unsigned(params.mem_width))),
            "skip": Out(stream.Signature(skip_layout(params))),
            "idle": Out(1),
            "clear": In(1),
        })

    params = property(lambda self: self._params)
    depth = property(lambda self: self._depth)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        spw, wps, mw = p.slots_per_word, p.words_per_slot, p.mem_width
        layout = _info_layout(p)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=layout.size, depth=self._depth)

        # Request side: one request per non-zero job, its description into the queue.
        job = self.job.payload
        info = layout(Signal(layout.size))
        pair = (self.stride2 | self.halves) & job.pair
        first = Signal(ADDR_BITS)
        if spw > 1:
            shift = spw.bit_length() - 1
            span = Mux(pair, Mux(self.step2, 2, 1), 0)
            m.d.comb += [first.eq(job.n0 >> shift), info.off.eq(job.n0[:shift]),
                         info.last.eq(((job.n0 + span) >> shift) != first)]
        else:
            m.d.comb += [first.eq(job.n0 << (wps.bit_length() - 1)),
                         info.last.eq(Mux(pair, Mux(self.step2, 3 * wps - 1, 2 * wps - 1),
                                          wps - 1))]
        m.d.comb += [
            info.halves.eq(self.halves), info.step2.eq(self.step2),
            info.zero.eq(job.zero), info.stride2.eq(self.stride2), info.pair.eq(pair),
            self.req.payload.addr.eq(self.ext_base + first),
            self.req.payload.count.eq(info.last + 1),
            self.req.valid.eq(self.job.valid & ~job.zero & queue.w_rdy & ~self.clear),
            self.job.ready.eq(queue.w_rdy & (job.zero | self.req.ready) & ~self.clear),
            queue.w_en.eq(self.job.valid & self.job.ready),
            queue.w_data.eq(info),
        ]

        # Response side: gather the head job's words, select its lanes into the output.
        head = layout(queue.r_data)
        n_buf = 2 if spw > 1 else 3 * wps
        buf, cur = Signal(n_buf * mw), Signal(n_buf * mw)   # cur: buf with this cycle's word
        k = Signal(range(n_buf))   # words of the head job received
        last = Signal()
        out_valid, out_data = Signal(), Signal(p.act_width)
        free = Signal()   # the output register can take a word this cycle
        done = Signal()   # the head job completes this cycle
        m.d.comb += [
            cur.eq(buf),
            cur.word_select(k, mw).eq(self.rsp.payload),
            last.eq(k == head.last),
            free.eq(~out_valid | self.skip.ready),
            self.rsp.ready.eq(queue.r_rdy & ~head.zero & (~last | free) & ~self.clear),
            done.eq(queue.r_rdy & free & (head.zero | (self.rsp.valid & last))),
            queue.r_en.eq(done),
            self.skip.valid.eq(out_valid & ~self.clear),
            self.skip.payload.eq(out_data),
            self.idle.eq((queue.level == 0) & ~out_valid),
        ]
        with m.If(self.rsp.valid & self.rsp.ready):
            m.d.sync += [buf.word_select(k, mw).eq(self.rsp.payload), k.eq(k + 1)]
            with m.If(last):
                m.d.sync += k.eq(0)
        with m.If(self.skip.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(done):
            m.d.sync += [out_valid.eq(1),
                         out_data.eq(Mux(head.zero, 0, self._select(cur, head)))]
        return ResetInserter(self.clear)(m)

    def _select(self, cur, head):
        """The job's output word from its gathered memory words ``cur``."""
        p = self._params
        aw, sb, bits = p.act_width, p.slot_bits, p.abits
        if p.slots_per_word > 1:
            base = head.off * sb
            a = cur.bit_select(base, aw)
            b = Mux(head.step2, cur.bit_select(base + 2 * sb, aw), cur.bit_select(base + sb, aw))
        else:
            a = cur[:aw]
            b = Mux(head.step2, cur[2 * sb:2 * sb + aw], cur[sb:sb + aw])
        b = Mux(head.pair, b, 0)
        half = p.cols // 2
        even = [w.word_select(2 * i, bits) for w in (a, b) for i in range(half)]
        low = [w.word_select(i, bits) for w in (a, b) for i in range(half)]
        return Mux(head.stride2, Cat(*even), Mux(head.halves, Cat(*low), a))
