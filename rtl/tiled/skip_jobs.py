"""Skip jobs: for each channel row of a residual tile, which activation words of the skip
tensor the skip fetch reads (``format.py``: skip codes of output channel ``c``, pixel ``(y, x)``
are ``src[c - skip_off, y*stride, x*stride]``, zeros outside the source's channels).

Row ``r`` of tile ``(t, oy, x0)``: source channel ``cs = t*rows + r - skip_off``; with stride 1
the source word is ``n0 = (cs*skip_h + oy)*rw_skip + x0/cols``; with stride 2 it is
``n0 = (cs*skip_h + 2*oy)*rw_skip + 2*x0/cols`` and, when it exists, ``n0 + 1`` (``pair``).
A row-pair tile also needs row ``oy + 1``'s word (one word per row): ``pair`` when that row
exists (the skip fetch finds it at ``n0 + stride``).
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layer import layer_layout
from .skip_fetch import JOB
from .walker import tile_layout

__all__ = ["job_layout", "SkipJobs"]


def job_layout():
    """A skip job (the skip fetch's ``JOB``)."""
    return JOB


class SkipJobs(wiring.Component):
    """Tile records in; ``rows_valid`` skip jobs per tile out, one per cycle."""

    def __init__(self, params):
        self._p = params
        super().__init__({
            "layer": In(layer_layout()),
            "tiles": In(stream.Signature(tile_layout(params))),
            "jobs": Out(stream.Signature(job_layout())),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        L = self.layer
        tile = self.tiles.payload
        log_c = p.cols.bit_length() - 1
        r = Signal(7)
        cs = Signal(signed(16))
        xw = Signal(9)
        n0 = Signal(signed(40))
        m.d.comb += [
            cs.eq(tile.t * p.rows + r - L.skip_off),
            xw.eq((tile.x0 >> log_c) * L.skip_stride),
            n0.eq(cs * L.skip_plane + tile.oy * L.skip_stride * L.rw_skip + xw),
            self.jobs.payload.zero.eq((cs < 0) | (cs >= L.skip_c)),
            self.jobs.payload.n0.eq(n0[:24]),
            # Row pairs: the second word is row oy + 1's (when it exists).
            self.jobs.payload.pair.eq(Mux(L.group, tile.pair,
                                          (L.skip_stride == 2) & (xw + 1 < L.rw_skip))),
            self.jobs.valid.eq(self.tiles.valid),
        ]
        with m.If(self.jobs.valid & self.jobs.ready):
            m.d.sync += r.eq(r + 1)
            with m.If(r == tile.rows_valid - 1):
                m.d.sync += r.eq(0)
                m.d.comb += self.tiles.ready.eq(1)
        return m
