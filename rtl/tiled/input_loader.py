"""The tiled chip's input loader: a tensor's slots from external memory into the activation
memory.

External memory holds activation words as slots of ``slot_bits`` bits (``format.py``); the
activation memory holds one activation word per address. Loading is a copy that cuts (or
gathers) memory words into slots, so the loader has no knowledge of the tensor's shape: it
moves ``count`` words.

Also defines the two payloads the slot movers share with their neighbours: ``READ_REQUEST``
(a ReadDma client's request, equal to ``read_dma.REQUEST``) and ``act_write_layout`` (one
activation memory write, ActMemory's ``wr``).
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import check_int
from .params import TiledParams

__all__ = ["InputLoader", "READ_REQUEST", "act_write_layout", "ADDR_BITS", "COUNT_BITS",
           "MAX_REQUEST"]

#: External memory word addresses.
ADDR_BITS = 32
#: ``InputLoader.count``: activation words of a tensor, up to 2**20.
COUNT_BITS = 21
#: Most words one ReadDma request may ask for (its ``count`` field is 16 bits).
MAX_REQUEST = 65535

#: A ReadDma client's request: ``count`` consecutive memory words from word address ``addr``
#: (the same layout as ``read_dma.REQUEST``, so the ports connect with ``wiring.connect``).
READ_REQUEST = data.StructLayout({"addr": unsigned(ADDR_BITS), "count": unsigned(16)})


def act_write_layout(params):
    """One activation memory write: word ``data`` at activation word address ``addr``."""
    return data.StructLayout({"addr": unsigned(params.act_addr_bits),
                              "data": unsigned(params.act_width)})


def check_params(params):
    if not isinstance(params, TiledParams):
        raise TypeError(f"params must be a TiledParams, not {params!r}")


class InputLoader(wiring.Component):
    """Copies ``count`` activation words from their slots at external word ``ext_addr`` to the
    activation memory at ``act_base``, ``act_base + 1``, ...

    Ports:

    - ``start`` (In(1), a one-cycle pulse, ignored while ``busy``) with the levels
      ``ext_addr`` (32 bits), ``act_base`` (``act_addr_bits``) and ``count`` (activation words,
      0..2**20), all sampled in the ``start`` cycle.
    - ``req``: Out(stream ``READ_REQUEST``) and ``rsp``: In(stream ``unsigned(mem_width)``):
      one ReadDma client. The loader asks for exactly the ``ceil(count * slot_bits /
      mem_width)`` words of the tensor (``format.ext_tensor_words``), in requests of at most
      ``max_request`` words, issued as early as the DMA takes them.
    - ``wr``: Out(stream ``act_write_layout(params)``): activation word ``n`` (the low
      ``act_width`` bits of slot ``n``) at address ``act_base + n`` (mod ``2**act_addr_bits``),
      in order of ``n``. ActMemory's ``wr`` is always ready; ``wr.ready`` is still obeyed.
    - ``busy`` (Out(1)): from the cycle after ``start`` until the cycle after the last ``wr``
      handshake. ``done`` (Out(1)): a one-cycle pulse in that cycle (also the cycle after a
      ``start`` with ``count == 0``, which reads nothing).
    - ``clear`` (In(1), one cycle is enough): back to idle (clear the ReadDma client too: the
      loader takes no more words). While it is high no handshake happens on ``req``, ``rsp``
      or ``wr``.

    Latency: first request the cycle after ``start``; a word on ``rsp`` is on ``wr`` the
    next cycle. Throughput: one activation word per cycle when a slot is a memory word or
    smaller (``rsp`` then takes one word per ``slots_per_word`` cycles), one memory word per
    cycle when a slot is larger (one activation word per ``words_per_slot`` cycles).
    Measured (tests/test_tiled_input_loader.py's model DMA at latency 1, no stalls): 256 words
    from start to done in 259 cycles at act_width 16, 24 and 64, 515 at 128, 1027 at 160.
    Storage: one memory word (slot <= word) or one slot (slot > word) of registers.
    """

    def __init__(self, params, *, max_request=MAX_REQUEST):
        check_params(params)
        check_int("max_request", max_request, 1, MAX_REQUEST)
        self._params, self._max_request = params, max_request
        super().__init__({
            "start": In(1),
            "ext_addr": In(ADDR_BITS),
            "act_base": In(params.act_addr_bits),
            "count": In(COUNT_BITS),
            "req": Out(stream.Signature(READ_REQUEST)),
            "rsp": In(stream.Signature(unsigned(params.mem_width))),
            "wr": Out(stream.Signature(act_write_layout(params))),
            "busy": Out(1),
            "done": Out(1),
            "clear": In(1),
        })

    params = property(lambda self: self._params)
    max_request = property(lambda self: self._max_request)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        spw, wps = p.slots_per_word, p.words_per_slot
        busy = self.busy
        # Request side: ext words not yet asked for, and where the next request starts.
        addr, left = Signal(ADDR_BITS), Signal(ADDR_BITS)
        # Write side: activation words written, out of total.
        n, total, base = Signal(COUNT_BITS), Signal(COUNT_BITS), Signal(p.act_addr_bits)
        if spw > 1:
            words = (self.count + spw - 1) >> (spw.bit_length() - 1)
        else:
            words = self.count << (wps.bit_length() - 1)

        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~busy):
            m.d.sync += [
                addr.eq(self.ext_addr), left.eq(words), n.eq(0), total.eq(self.count),
                base.eq(self.act_base), busy.eq(self.count != 0),
                self.done.eq(self.count == 0),
            ]

        chunk = Mux(left > self._max_request, self._max_request, left)
        m.d.comb += [
            self.req.valid.eq(busy & (left != 0) & ~self.clear),
            self.req.payload.addr.eq(addr),
            self.req.payload.count.eq(chunk),
        ]
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += [addr.eq(addr + chunk), left.eq(left - chunk)]

        wr_fire = Signal()
        last = Signal()   # this cycle writes the tensor's last word
        m.d.comb += [
            self.wr.payload.addr.eq(base + n),
            wr_fire.eq(self.wr.valid & self.wr.ready),
            last.eq(wr_fire & (n == total - 1)),
        ]
        with m.If(wr_fire):
            m.d.sync += n.eq(n + 1)
        with m.If(last):
            m.d.sync += [busy.eq(0), self.done.eq(1)]

        if spw > 1:
            self._cut(m, wr_fire, last)
        else:
            self._gather(m, wr_fire)
        return ResetInserter(self.clear)(m)

    def _cut(self, m, wr_fire, last):
        """Slot <= word: hold one memory word and write its slots one per cycle (the last word
        of a tensor may hold fewer)."""
        p = self._params
        hold = Signal(p.mem_width)
        slots = Signal(range(p.slots_per_word + 1))   # slots of hold still to write
        after = Signal.like(slots)
        m.d.comb += [
            self.wr.valid.eq((slots != 0) & ~self.clear),
            self.wr.payload.data.eq(hold[:p.act_width]),
            after.eq(Mux(last, 0, slots - wr_fire)),
            self.rsp.ready.eq(self.busy & (after == 0) & ~last & ~self.clear),
        ]
        with m.If(self.rsp.valid & self.rsp.ready):
            m.d.sync += [hold.eq(self.rsp.payload), slots.eq(p.slots_per_word)]
        with m.Else():
            m.d.sync += slots.eq(after)
            with m.If(wr_fire):
                m.d.sync += hold.eq(hold >> p.slot_bits)

    def _gather(self, m, wr_fire):
        """Slot >= word: collect ``words_per_slot`` memory words, then write the slot's low
        ``act_width`` bits; the next slot's words keep coming meanwhile."""
        p = self._params
        wps, mw = p.words_per_slot, p.mem_width
        k = Signal(range(wps))   # words of the current slot received
        valid, word = Signal(), Signal(p.act_width)
        m.d.comb += [
            self.wr.valid.eq(valid & ~self.clear),
            self.wr.payload.data.eq(word),
            self.rsp.ready.eq(self.busy & ~self.clear
                              & ((k != wps - 1) | ~valid | self.wr.ready)),
        ]
        with m.If(wr_fire):
            m.d.sync += valid.eq(0)
        with m.If(self.rsp.valid & self.rsp.ready):
            if wps == 1:
                m.d.sync += [word.eq(self.rsp.payload), valid.eq(1)]
            else:
                # Words 0 .. wps-2 of the slot, LSB first once complete.
                low = Signal((wps - 1) * mw)
                with m.If(k == wps - 1):
                    m.d.sync += [word.eq(Cat(low, self.rsp.payload)), valid.eq(1), k.eq(0)]
                with m.Else():
                    m.d.sync += [low.eq(Cat(low[mw:], self.rsp.payload)), k.eq(k + 1)]
