"""A width converter: a stream of words in, a stream of beats out, the same bitstream.

The chip uses it to cut the layer's weight stream (memory words of ``mem_width`` bits, see
``rtl/chip_format.py``) into beats of ``rows * wbits`` bits for the weight buffer.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Gearbox"]


class Gearbox(wiring.Component):
    """Words of ``in_width`` bits to beats of ``out_width`` bits, LSB first: beat ``b`` is bits
    ``[b*out_width, (b+1)*out_width)`` of the concatenated words (word 0 at bit 0).

    Ports: ``i`` (words), ``o`` (beats), ``clear`` (drop any buffered bits; a new bitstream
    starts with the next word). Bits that never fill a whole beat stay buffered until
    ``clear``.

    Timing: a beat is on ``o`` the cycle after the word that completes it is accepted; one beat
    per cycle, and one word per cycle when ``out_width >= in_width``. ``i.ready`` depends
    combinationally on ``o.ready`` (a beat leaving frees room in the same cycle). Buffer:
    ``in_width + out_width`` bits.
    """

    def __init__(self, in_width, out_width):
        for name, v in (("in_width", in_width), ("out_width", out_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._iw, self._ow = in_width, out_width
        super().__init__({
            "i": In(stream.Signature(unsigned(in_width))),
            "o": Out(stream.Signature(unsigned(out_width))),
            "clear": In(1),
        })

    in_width = property(lambda self: self._iw)
    out_width = property(lambda self: self._ow)

    def elaborate(self, platform):
        m = Module()
        iw, ow = self._iw, self._ow
        size = iw + ow
        buf = Signal(size)
        count = Signal(range(size + 1))
        pop = Signal()
        after = Signal(range(size + 1))   # bits left once this cycle's beat is gone
        push = Signal()
        m.d.comb += [
            self.o.valid.eq(count >= ow),
            self.o.payload.eq(buf[:ow]),
            pop.eq(self.o.valid & self.o.ready),
            after.eq(count - Mux(pop, ow, 0)),
            # A word fits when after + iw <= size.
            self.i.ready.eq(after <= ow),
            push.eq(self.i.valid & self.i.ready),
        ]
        kept = Mux(pop, buf >> ow, buf)   # bits above count are always 0
        m.d.sync += [
            buf.eq(Mux(push, kept | (self.i.payload << after), kept)),
            count.eq(after + Mux(push, iw, 0)),
        ]
        with m.If(self.clear):
            m.d.sync += [buf.eq(0), count.eq(0)]
        return m
