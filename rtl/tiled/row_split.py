"""Row split: the drain's words of a row-pair tile (``format.row_group``) become one word per
output row.

A row-pair tile's drained word for channel ``r`` holds row ``oy`` in lanes ``0 .. cols/2-1``
and row ``oy + 1`` in lanes ``cols/2 ..``. Each row is one activation word of the output
(``out_w <= cols/2``), at ``addr`` and ``addr + 1``: this block writes lanes ``0 .. out_w-1``
of each half, zeros above, and the second only when row ``oy + 1`` exists. Other layers'
words pass through unchanged.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .drain import out_layout
from .walker import tile_layout

__all__ = ["RowSplit"]


class RowSplit(wiring.Component):
    """``i``: the drain's words; ``tiles``: one record per row-pair tile (``rows_valid`` words
    each, ``pair``: the second row exists); ``group``, ``out_w``: levels of the layer. ``o``:
    the output words. One word per cycle; a row pair's two words take two cycles."""

    def __init__(self, params):
        self._p = params
        super().__init__({
            "i": In(stream.Signature(out_layout(params))),
            "tiles": In(stream.Signature(tile_layout(params))),
            "group": In(1),
            "out_w": In(8),
            "o": Out(stream.Signature(out_layout(params))),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        k, half = p.abits, p.cols // 2
        second = Signal()          # the next output is the pair's second word
        r = Signal(7)              # words of the current tile taken
        lanes = [self.i.payload.data.word_select(c, k) for c in range(p.cols)]
        keep = [Mux(x < self.out_w, 1, 0) for x in range(half)]
        row0 = Cat(*[Mux(keep[x], lanes[x], 0) for x in range(half)])
        row1 = Cat(*[Mux(keep[x], lanes[half + x], 0) for x in range(half)])
        o = self.o.payload
        with m.If(~self.group):
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
        with m.Else():
            tile = self.tiles.payload
            last_of_word = ~tile.pair | second
            m.d.comb += [
                o.addr.eq(self.i.payload.addr + second),
                o.data.eq(Mux(second, row1, row0)),
                self.o.valid.eq(self.i.valid & self.tiles.valid),
                self.i.ready.eq(self.o.ready & self.tiles.valid & last_of_word),
            ]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += second.eq(~last_of_word)
                with m.If(last_of_word):
                    m.d.sync += r.eq(r + 1)
                    with m.If(r == tile.rows_valid - 1):
                        m.d.sync += r.eq(0)
                        m.d.comb += self.tiles.ready.eq(1)
        return m
