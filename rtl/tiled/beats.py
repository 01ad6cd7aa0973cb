"""Beats for the MAC array: which weight beat each cycle reads from the ring, with its shift
and reduction flags (``BeatIssuer``), and the join of weight beats, window beats and those
flags into one MAC array beat (``BeatJoin``).

A tile's reduction is ``bpt = in_c' * kernel**2 * w_slices`` beats in the weights' order
(``ci'``, ``ky``, ``kx``, ``j``): ring beat ``tbase + b``, shift ``wbits*j + abits*(ci' %
a_slices)``, ``first`` on ``b == 0`` and ``last`` on ``b == bpt - 1``. A ``colsum`` layer's
accumulators run on over the position tiles of a channel tile: ``first`` only on its first,
``last`` only on its last, so each column sums its pixels of the whole plane.

Ring release: while a channel tile's beats will be replayed by another position tile the ring
keeps them (``release = tbase``); on its last position tile each beat is released once read,
so the next channel tile streams in behind it (a tile with one position tile only streams).
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..mac_array import input_layout, shift_width
from .layer import layer_layout
from .walker import tile_layout

__all__ = ["meta_layout", "BeatIssuer", "BeatJoin"]


def meta_layout(params):
    return data.StructLayout({"shift": unsigned(shift_width(params.max_shift)),
                              "first": 1, "last": 1})


class BeatIssuer(wiring.Component):
    """Tile records in; ring read requests (``rd``, beat index) and their flags (``meta``) out,
    in lockstep, one beat per cycle; ``release`` for the ring."""

    def __init__(self, params, *, meta_depth=8):
        self._p, self._depth = params, meta_depth
        super().__init__({
            "layer": In(layer_layout()),
            "tiles": In(stream.Signature(tile_layout(params))),
            "rd": Out(stream.Signature(data.StructLayout({"index": unsigned(24)}))),
            "meta": Out(stream.Signature(meta_layout(params))),
            "release": Out(24),
            "clear": In(1),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        L = self.layer
        tile = self.tiles.payload
        # Unbuffered: a flag is readable the cycle after it is written, like the ring's beat.
        m.submodules.q = q = fifo.SyncFIFO(width=meta_layout(p).size, depth=self._depth)
        b = Signal(24)
        ci, asl, ky, kx, j = Signal(12), Signal(3), Signal(4), Signal(4), Signal(3)
        shift_a = Signal(8)
        meta = Signal(meta_layout(p))
        m.d.comb += [
            meta.shift.eq(j * p.wbits + shift_a),
            # A column-sum layer accumulates over all position tiles of a channel tile.
            meta.first.eq((b == 0) & (~L.colsum | tile.first_pos)),
            meta.last.eq((b == L.bpt - 1) & (~L.colsum | tile.last_pos)),
            self.rd.payload.index.eq(tile.tbase + b),
            self.rd.valid.eq(self.tiles.valid & q.w_rdy),
            q.w_data.eq(meta.as_value()),
            q.w_en.eq(self.rd.valid & self.rd.ready),
            self.meta.valid.eq(q.r_rdy),
            self.meta.payload.eq(q.r_data),
            q.r_en.eq(self.meta.ready),
        ]
        # release = tbase, or the current beat on the last position tile of the channel tile;
        # held between tiles, back to 0 for a new layer.
        with m.If(self.clear):
            m.d.sync += self.release.eq(0)
        with m.Elif(self.tiles.valid):
            m.d.sync += self.release.eq(Mux(tile.last_pos, tile.tbase + b, tile.tbase))
        with m.If(self.clear):
            m.d.sync += [b.eq(0), ci.eq(0), asl.eq(0), shift_a.eq(0), ky.eq(0), kx.eq(0),
                         j.eq(0)]
        with m.Elif(self.rd.valid & self.rd.ready):
            m.d.sync += b.eq(b + 1)
            with m.If(j != L.w_slices - 1):
                m.d.sync += j.eq(j + 1)
            with m.Else():
                m.d.sync += j.eq(0)
                with m.If(kx != L.kernel - 1):
                    m.d.sync += kx.eq(kx + 1)
                with m.Else():
                    m.d.sync += kx.eq(0)
                    with m.If(ky != L.kernel - 1):
                        m.d.sync += ky.eq(ky + 1)
                    with m.Else():
                        m.d.sync += [ky.eq(0), ci.eq(ci + 1), asl.eq(asl + 1),
                                     shift_a.eq(shift_a + p.abits)]
                        with m.If(asl == L.a_slices - 1):
                            m.d.sync += [asl.eq(0), shift_a.eq(0)]
            with m.If(b == L.bpt - 1):
                m.d.sync += [b.eq(0), ci.eq(0), asl.eq(0), shift_a.eq(0), ky.eq(0), kx.eq(0),
                             j.eq(0)]
                m.d.comb += self.tiles.ready.eq(1)
        return m


class BeatJoin(wiring.Component):
    """Weight beats (``w``: ``rows`` codes), window beats (``a``: ``cols`` codes) and flags
    (``meta``) in, one MAC array beat out when all three are there. Combinational."""

    def __init__(self, params):
        self._p = params
        lay = input_layout(params.wbits, params.abits, params.rows, params.cols,
                           params.max_shift)
        super().__init__({
            "w": In(stream.Signature(unsigned(params.beat_bits))),
            "a": In(stream.Signature(data.ArrayLayout(unsigned(params.abits), params.cols))),
            "meta": In(stream.Signature(meta_layout(params))),
            "o": Out(stream.Signature(lay)),
        })

    def elaborate(self, platform):
        m = Module()
        o = self.o.payload
        all_valid = self.w.valid & self.a.valid & self.meta.valid
        m.d.comb += [
            o.w.eq(self.w.payload),
            o.a.eq(self.a.payload),
            o.shift.eq(self.meta.payload.shift),
            o.first.eq(self.meta.payload.first),
            o.last.eq(self.meta.payload.last),
            self.o.valid.eq(all_valid),
            self.w.ready.eq(self.o.ready & all_valid),
            self.a.ready.eq(self.o.ready & all_valid),
            self.meta.ready.eq(self.o.ready & all_valid),
        ]
        return m
