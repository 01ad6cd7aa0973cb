"""The tile walker: a layer's tiles in run order (``format.tile_order``), one record each,
broadcast to the blocks that expand them (window commands, weight beats, skip jobs, drain).

Each output is a stream; a record leaves on every output once (per-output ``sent`` flags),
and the walker moves to the next tile when all have taken it, so a slow consumer only delays
the walk (the consumers sit behind FIFOs in the chip).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layer import layer_layout

__all__ = ["tile_layout", "TileWalker"]


def tile_layout(params):
    """One tile: channel tile ``t`` (its first weight beat ``tbase``), conv output row ``oy`` and
    first pixel ``x0``; where its stored words go (``addr``: row ``r = 0``); which rows and
    lanes exist; pooling ``phase`` (``dy*2 + h``); first/last position tile of ``t``."""
    return data.StructLayout({
        "t": unsigned(12),
        "tbase": unsigned(24),
        "oy": unsigned(8),
        "x0": unsigned(9),
        "xw": unsigned(8),          # stored word column (pixel tile, or pooled word)
        "addr": unsigned(params.act_addr_bits),
        "rows_valid": unsigned(7),
        "lanes_valid": unsigned(7),
        "phase": unsigned(2),
        "first_pos": unsigned(1),
        "last_pos": unsigned(1),
        "pair": unsigned(1),        # row pairs: row oy + 1 exists too
    })


class TileWalker(wiring.Component):
    """Walks the tiles of the layer ``layer`` after a ``start`` pulse; ``busy`` until every
    record has left on all ``outputs`` outputs ``o0 .. o{n-1}``. An output whose ``enable``
    bit is low is skipped (e.g. skip jobs in a layer without a skip). One record per cycle at
    best."""

    def __init__(self, params, *, outputs):
        self._p, self._n = params, outputs
        sig = {"layer": In(layer_layout()), "start": In(1), "busy": Out(1),
               "enable": In(outputs)}
        for i in range(outputs):
            sig[f"o{i}"] = Out(stream.Signature(tile_layout(params)))
        super().__init__(sig)

    def elaborate(self, platform):
        p, n = self._p, self._n
        m = Module()
        L = self.layer
        R, C = p.rows, p.cols
        log_c = C.bit_length() - 1
        t, a, b, ph = Signal(12), Signal(8), Signal(8), Signal(2)
        tbase, co_base = Signal(24), Signal(p.act_addr_bits + 8)
        rec = Signal(tile_layout(p))
        sent = Signal(n)
        outs = [getattr(self, f"o{i}") for i in range(n)]
        fired = Signal(n)
        for i, o in enumerate(outs):
            m.d.comb += [
                o.payload.eq(rec),
                o.valid.eq(self.busy & self.enable[i] & ~sent[i]),
                fired[i].eq(sent[i] | ~self.enable[i] | (o.valid & o.ready)),
            ]
        advance = self.busy & fired.all()
        with m.If(self.busy & ~advance):
            m.d.sync += sent.eq(fired)
        with m.If(advance):
            m.d.sync += sent.eq(0)

        # The record of the current (t, a, b, ph).
        rows_left = Signal(signed(14))
        lanes_left = Signal(signed(10))
        last_ph = Mux(L.pool, 3, 0)
        m.d.comb += [
            rows_left.eq(L.out_c - t * R),
            lanes_left.eq(L.w_st - (b << log_c)),
            rec.t.eq(t), rec.tbase.eq(tbase),
            rec.oy.eq(Mux(L.pool | L.group, (a << 1) + ph[1], a)),
            rec.x0.eq(Mux(L.pool, ((b << 1) + ph[0]) << log_c, b << log_c)),
            rec.xw.eq(b),
            rec.addr.eq(L.out_act + co_base + Mux(L.group, a << 1, a) * L.rw_st + b),
            rec.rows_valid.eq(Mux(rows_left >= R, R, rows_left)),
            # Row pairs: every column is kept here; the row split masks each row's lanes.
            rec.lanes_valid.eq(Mux(L.group | (lanes_left >= C), C, lanes_left)),
            rec.pair.eq(L.group & ((a << 1) + 1 < L.out_h)),
            rec.phase.eq(ph),
            rec.first_pos.eq((a == 0) & (b == 0) & (ph == 0)),
            rec.last_pos.eq((a == L.h_loop - 1) & (b == L.xt_n - 1) & (ph == last_ph)),
        ]
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), t.eq(0), a.eq(0), b.eq(0), ph.eq(0), tbase.eq(0),
                         co_base.eq(0), sent.eq(0)]
        with m.Elif(advance):
            with m.If(ph != last_ph):
                m.d.sync += ph.eq(ph + 1)
            with m.Else():
                m.d.sync += ph.eq(0)
                with m.If(b != L.xt_n - 1):
                    m.d.sync += b.eq(b + 1)
                with m.Else():
                    m.d.sync += b.eq(0)
                    with m.If(a != L.h_loop - 1):
                        m.d.sync += a.eq(a + 1)
                    with m.Else():
                        m.d.sync += [a.eq(0), t.eq(t + 1), tbase.eq(tbase + L.bpt),
                                     co_base.eq(co_base + R * L.chan_stride)]
                        with m.If(t == L.ct_n - 1):
                            m.d.sync += self.busy.eq(0)
        return m
