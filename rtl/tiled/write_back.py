"""The tiled chip's write-back: every finished activation word goes to the activation memory
and to its slot in external memory; logits go to external memory only.

Every layer's output is written back so that a later layer can read it as a skip and the bench
can compare every layer. Slots are powers of two of at least 8 bits, so a slot is a byte-aligned
part of one memory word (byte strobes) or a whole number of memory words.
"""

from amaranth.hdl import Const, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .input_loader import ADDR_BITS, act_write_layout, check_params

__all__ = ["WriteBack", "write_layout", "LOGIT"]

#: A logit to write: logit ``index`` of the layer and its signed 16-bit value (the same layout
#: as the drain's ``LOGIT``).
LOGIT = data.StructLayout({"index": unsigned(16), "value": signed(16)})


def write_layout(mem_width):
    """Payload of an external memory write (the chip's ``mem_wr``): ``data`` to word ``addr``,
    byte ``b`` of the word written only where bit ``b`` of ``strobe`` is set."""
    return data.StructLayout({"addr": unsigned(ADDR_BITS), "data": unsigned(mem_width),
                              "strobe": unsigned(mem_width // 8)})


class WriteBack(wiring.Component):
    """Activation words to the activation memory and to their external slots; logits to
    external memory.

    Ports:

    - ``out``: In(stream ``act_write_layout(params)``): the drain's finished words, any order.
      Word ``data`` at activation address ``addr`` is slot ``n = addr - act_base`` (mod
      ``2**act_addr_bits``) of the layer's output tensor.
    - ``act_base`` (In(act_addr_bits)), ``ext_base`` (In(32)): levels: the layer's ``out_act``
      and the external word address of its output (``out_base + o_addr``).
    - ``wr``: Out(stream ``act_write_layout(params)``): the word, unchanged, to ActMemory.
    - ``mem_wr``: Out(stream ``write_layout(mem_width)``): slot ``n`` at bit ``n * slot_bits``
      from word ``ext_base``, zero-padded to ``slot_bits``: when a slot is smaller than a word,
      one beat to word ``ext_base + n // slots_per_word`` with only the slot's bytes strobed;
      otherwise ``words_per_slot`` beats (words ``ext_base + n * words_per_slot + k``, all
      bytes strobed).
    - ``logit``: In(stream ``LOGIT``): one beat to word ``ext_base + index``: the value's 16
      bits zero-extended, all bytes strobed. An ``out`` word has priority; a slot's beats are
      never split by a logit.
    - ``idle`` (Out(1)): no slot part-written and nothing offered on ``out`` or ``logit``.

    Handshakes: an ``out`` word is taken (``out.ready``) together with its last ``mem_wr``
    beat, and ``wr`` fires in that same cycle, so both writes happen on one handshake for a
    single-beat slot. ``out.ready`` and ``wr.valid`` depend combinationally on
    ``mem_wr.ready``, and ``mem_wr.valid`` on ``wr.ready`` (ActMemory's ``wr.ready`` is
    constant 1); no register sits on the path. Latency 0; throughput one word per cycle up to
    a slot per memory word, else one memory word per cycle. Storage: one beat counter.
    """

    def __init__(self, params):
        check_params(params)
        self._params = params
        super().__init__({
            "out": In(stream.Signature(act_write_layout(params))),
            "logit": In(stream.Signature(LOGIT)),
            "act_base": In(params.act_addr_bits),
            "ext_base": In(ADDR_BITS),
            "wr": Out(stream.Signature(act_write_layout(params))),
            "mem_wr": Out(stream.Signature(write_layout(params.mem_width))),
            "idle": Out(1),
        })

    params = property(lambda self: self._params)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        spw, wps, mw = p.slots_per_word, p.words_per_slot, p.mem_width
        out, mem = self.out, self.mem_wr
        n = Signal(p.act_addr_bits)          # slot number
        k = Signal(range(wps))               # beat of a multi-word slot
        last = Signal()                      # this beat finishes the slot
        slot = Signal(max(p.slot_bits, mw))  # the slot's bits, zero-padded
        m.d.comb += [
            n.eq(out.payload.addr - self.act_base),
            last.eq(k == wps - 1),
            slot.eq(out.payload.data),
            self.wr.payload.eq(out.payload),
            self.idle.eq((k == 0) & ~out.valid & ~self.logit.valid),
        ]
        full = Const((1 << (mw // 8)) - 1, mw // 8)
        if spw > 1:
            sub = n[:spw.bit_length() - 1]   # slot within the word
            strobe = Const((1 << (p.slot_bits // 8)) - 1, mw // 8)
            beat = [mem.payload.addr.eq(self.ext_base + (n >> (spw.bit_length() - 1))),
                    mem.payload.data.eq(slot << (sub * p.slot_bits)),
                    mem.payload.strobe.eq(strobe << (sub * (p.slot_bits // 8)))]
        else:
            word = slot[:mw] if wps == 1 else slot.word_select(k, mw)
            beat = [mem.payload.addr.eq(self.ext_base + (n << (wps.bit_length() - 1)) + k),
                    mem.payload.data.eq(word),
                    mem.payload.strobe.eq(full)]

        with m.If(out.valid):
            m.d.comb += beat
            m.d.comb += [
                mem.valid.eq(~last | self.wr.ready),
                self.wr.valid.eq(last & mem.ready),
                out.ready.eq(last & mem.ready & self.wr.ready),
            ]
            with m.If(mem.valid & mem.ready):
                m.d.sync += k.eq(0 if wps == 1 else k + 1)
                with m.If(last):
                    m.d.sync += k.eq(0)
        with m.Elif(self.logit.valid & (k == 0)):
            m.d.comb += [
                mem.valid.eq(1),
                mem.payload.addr.eq(self.ext_base + self.logit.payload.index),
                mem.payload.data.eq(self.logit.payload.value.as_unsigned()),
                mem.payload.strobe.eq(full),
                self.logit.ready.eq(mem.ready),
            ]
        return m
