"""Window commands: each tile's reduction rows, one command per (slice input channel ``ci'``,
kernel row ``ky``), for the window fetch.

For a tile at conv row ``oy`` and first pixel ``x0`` the window of ``(ci', ky)`` is input row
``iy = oy*stride - pad + ky`` of channel ``ci'``, from pixel ``ix0 = x0*stride - pad``: the words
from ``wx0 = floor(ix0 / cols)`` on, the first pixel at lane ``ix0 mod cols``. A word is masked
(reads as zeros: padding) when the row is outside the input or the word outside the row.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layer import layer_layout
from .pair_window import pair_cmd_layout
from .walker import tile_layout

__all__ = ["WindowCommands"]


class WindowCommands(wiring.Component):
    """Tile records in, ``in_c * kernel`` window commands per tile out: on ``cmd``
    (``cmd_layout``: the window fetch's command: ``addr``, ``zmask``, ``off``, ``kernel``,
    ``stride``, ``reps``), or for a layer of row pairs on ``pcmd`` (the pair window fetch's:
    the words of input rows ``iy`` and ``iy + stride``). One command per cycle."""

    def __init__(self, params, cmd_layout):
        self._p = params
        super().__init__({
            "layer": In(layer_layout()),
            "tiles": In(stream.Signature(tile_layout(params))),
            "cmd": Out(stream.Signature(cmd_layout)),
            "pcmd": Out(stream.Signature(pair_cmd_layout(params))),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        L = self.layer
        log_c = p.cols.bit_length() - 1
        tile = self.tiles.payload
        ci, ky = Signal(12), Signal(4)
        chan = Signal(signed(32))      # ci' * in_plane
        y0 = Signal(signed(12))        # oy*stride - pad
        ix0 = Signal(signed(12))       # x0*stride - pad
        iy = Signal(signed(12))
        wx0 = Signal(signed(12))
        addr = Signal(signed(34))
        m.d.comb += [
            y0.eq(tile.oy * L.stride - L.pad),
            ix0.eq(tile.x0 * L.stride - L.pad),
            iy.eq(y0 + ky),
            wx0.eq(ix0 >> log_c),
            addr.eq(L.in_act + chan + iy * L.rw_in + wx0),
        ]
        cmd = self.cmd.payload
        row_out = (iy < 0) | (iy >= L.in_h)
        nwords = len(cmd.zmask)
        m.d.comb += [
            cmd.addr.eq(addr[:len(cmd.addr)]),
            cmd.off.eq(ix0[:log_c] if log_c else 0),
            cmd.kernel.eq(L.kernel),
            cmd.stride.eq(L.stride),
            cmd.reps.eq(L.w_slices),
        ]
        for i in range(nwords):
            wx = wx0 + i
            m.d.comb += cmd.zmask[i].eq(row_out | (wx < 0) | (wx >= L.rw_in))
        pc = self.pcmd.payload
        iy1 = iy + L.stride
        m.d.comb += [
            pc.addr.eq((L.in_act + chan + iy * L.rw_in)[:len(pc.addr)]),
            pc.step.eq(L.stride), pc.pad.eq(L.pad), pc.kernel.eq(L.kernel),
            pc.stride.eq(L.stride), pc.reps.eq(L.w_slices),
            pc.zmask[0].eq(row_out), pc.zmask[1].eq((iy1 < 0) | (iy1 >= L.in_h)),
        ]
        m.d.comb += [self.cmd.valid.eq(self.tiles.valid & ~L.group),
                     self.pcmd.valid.eq(self.tiles.valid & L.group)]
        last_ky = ky == L.kernel - 1
        last_ci = ci == L.in_c - 1
        with m.If((self.cmd.valid & self.cmd.ready) | (self.pcmd.valid & self.pcmd.ready)):
            with m.If(~last_ky):
                m.d.sync += ky.eq(ky + 1)
            with m.Else():
                m.d.sync += [ky.eq(0), ci.eq(ci + 1), chan.eq(chan + L.in_plane)]
                with m.If(last_ci):
                    m.d.sync += [ci.eq(0), chan.eq(0)]
                    m.d.comb += self.tiles.ready.eq(1)
        return m
