"""The weight ring: a few channel tiles of weight beats, not a whole layer.

Tiles run channel-outer, position-inner (``format.tile_order``), so only the current channel
tile's beats are read again; the ring keeps them while the next tile's beats stream in behind
them. Beats are numbered by absolute counters (since ``clear``) and stored at ``number %
ring_beats``; the consumer says with ``release`` which beats it will not ask for again.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..params import check_int

__all__ = ["WeightRing", "request_layout", "INDEX_BITS", "LATENCY"]

#: Width of beat numbers (``rd.index``, ``release``, ``written``).
INDEX_BITS = 24
#: Cycles from an accepted request on ``rd`` to its beat on ``beat`` (without back-pressure).
LATENCY = 1


def request_layout(index_bits=INDEX_BITS):
    """Payload layout of ``WeightRing.rd``: the absolute number of the beat wanted."""
    return data.StructLayout({"index": unsigned(index_bits)})


class WeightRing(wiring.Component):
    """A ring of ``params.ring_beats`` weight beats of ``params.beat_bits`` bits in one
    ``Memory`` (one write port, one synchronous non-transparent read port).

    Ports
    -----
    ``fill``: In(stream of beats): the layer's beats in order; beat ``n`` is the ``n``-th beat
    accepted since ``clear``. Ready while ``written < release + ring_beats`` (and not ``clear``).
    ``rd``: In(stream of ``request_layout``): the consumer asks for beat ``index``. Accepted
    only when ``index < written``; before that it waits, it is never answered with a wrong
    beat. ``beat``: Out(stream of beats): the answers, in request order.
    ``release``: In(``index_bits``), a level: beats numbered ``< release`` may be overwritten.
    The consumer promises never to ask for them again; ``release`` must not go down except at
    ``clear``, and is counted since ``clear`` like the rest: the consumer must bring it back to
    0 (or near) with ``clear``, or the fill would overrun the new layer's unread beats.
    ``clear``: In(1): a new layer; ``written`` goes to 0, a beat waiting on ``beat`` is
    dropped, ``error`` is cleared, nothing is accepted during the ``clear`` cycle.
    ``written``: Out(``index_bits``): beats accepted on ``fill`` since ``clear``.
    ``error``: Out(1) (not in the first interface sketch; added as a guard): sticky until
    ``clear``, a request was accepted for a beat already overwritten (``index + ring_beats <
    written``), i.e. the consumer broke its ``release`` promise. Its answer is then wrong.

    Counters wrap: ``index``, ``release`` and ``written`` are taken modulo ``2**index_bits``
    and compared through their signed difference, so a layer may have any number of beats as
    long as the consumer's ``index`` and ``release`` stay within ``2**(index_bits-1) -
    ring_beats`` of ``written``. ``index_bits`` (default 24, the interface's width) is a
    constructor argument only so that the tests can wrap the counters quickly.

    Timing: latency ``LATENCY`` = 1: a request accepted in cycle ``t`` is on ``beat`` in cycle
    ``t+1``; a beat accepted on ``fill`` in cycle ``t`` can be requested in cycle ``t+1``.
    Throughput: one beat per cycle on ``fill`` and, at the same time, one answer per cycle on
    ``beat``. Measured without bubbles (tests): ``n`` answers take ``n + 2`` cycles for tiles
    of ``T`` in 1, 8, 12, 16 beats x ``P`` in 1, 2, 4 passes on a 16-beat ring, and for
    ``T = 200``, ``P = 1`` (streaming).
    ``rd.ready`` depends combinationally on ``rd.payload``, ``beat.ready`` and ``clear``;
    ``fill.ready`` on ``release`` and ``clear``. Storage: ``params.ring_bits`` bits, plus one
    ``index_bits`` counter.

    Use: a channel tile of ``T`` beats read ``P`` times runs with ``release`` = the tile's
    first beat on passes ``0..P-2`` and = the index being requested on the last pass, so the
    next tile fills behind the last pass; ``P == 1`` streams any ``T``. Any ``T <= ring_beats``
    runs at full rate if the fill keeps one beat per cycle, but with ``T > ring_beats / 2``
    part of the next tile can only fill during the last pass, right behind the reads, so fill
    bubbles stall the reads; ``T <= ring_beats / 2`` leaves it the earlier passes as slack.
    """

    def __init__(self, params, *, index_bits=INDEX_BITS):
        depth_bits = params.ring_beats.bit_length() - 1
        # Two spare bits: the signed difference of two counters must hold +-2*ring_beats.
        check_int("index_bits", index_bits, depth_bits + 2, 32)
        self._params = params
        self._index_bits = index_bits
        super().__init__({
            "fill": In(stream.Signature(unsigned(params.beat_bits))),
            "rd": In(stream.Signature(request_layout(index_bits))),
            "beat": Out(stream.Signature(unsigned(params.beat_bits))),
            "release": In(unsigned(index_bits)),
            "clear": In(1),
            "written": Out(unsigned(index_bits)),
            "error": Out(1),
        })

    params = property(lambda self: self._params)
    index_bits = property(lambda self: self._index_bits)

    def _ahead(self, a, b):
        """``a - b`` modulo ``2**index_bits``, as a signed number."""
        return (a - b)[:self._index_bits].as_signed()

    def elaborate(self, platform):
        m = Module()
        p = self._params
        depth = p.ring_beats
        depth_bits = depth.bit_length() - 1
        m.submodules.mem = mem = Memory(shape=unsigned(p.beat_bits), depth=depth, init=[])
        wr = mem.write_port()
        # Non-transparent: a read and a write of the same word in one cycle return the old
        # beat, which is the one asked for (the write is its successor, ring_beats later).
        rdp = mem.read_port(transparent_for=())

        written = Signal(self._index_bits)
        held = Signal()      # an answer is on ``beat`` (the read port holds it while en is low)
        error = Signal()
        take_fill = Signal()
        take_rd = Signal()
        index = self.rd.payload.index
        m.d.comb += [
            self.written.eq(written),
            self.error.eq(error),
            self.fill.ready.eq(~self.clear & (self._ahead(written, self.release) < depth)),
            take_fill.eq(self.fill.valid & self.fill.ready),
            wr.en.eq(take_fill),
            wr.addr.eq(written[:depth_bits]),
            wr.data.eq(self.fill.payload),
            self.rd.ready.eq(~self.clear & (self._ahead(written, index) > 0)
                             & (~held | self.beat.ready)),
            take_rd.eq(self.rd.valid & self.rd.ready),
            rdp.en.eq(take_rd),
            rdp.addr.eq(index[:depth_bits]),
            self.beat.valid.eq(held),
            self.beat.payload.eq(rdp.data),
        ]
        m.d.sync += written.eq(written + take_fill)
        with m.If(take_rd):
            m.d.sync += held.eq(1)
        with m.Elif(self.beat.ready):
            m.d.sync += held.eq(0)
        with m.If(take_rd & (self._ahead(written, index) > depth)):
            m.d.sync += error.eq(1)
        with m.If(self.clear):
            m.d.sync += [written.eq(0), held.eq(0), error.eq(0)]
        return m
