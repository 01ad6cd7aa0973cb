"""The tiled chip's activation memory: two interleaved SRAM banks of activation words.

A window of consecutive activation words is read two words per cycle (one from each bank), so
the banks hold the even and the odd word addresses. Nothing here grows with the image size: the
depth is ``params.act_depth`` (a byte budget, ``act_kib``).
"""

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import TiledParams

__all__ = ["ActMemory", "write_layout", "read_port_signature", "bank_depth", "bank_addr_bits"]


def bank_depth(params):
    """Words of one bank (``act_depth`` is even)."""
    return params.act_depth // 2


def bank_addr_bits(params):
    return max(1, (bank_depth(params) - 1).bit_length())


def write_layout(params):
    """Payload of ``ActMemory.wr``: one activation word and its word address."""
    return data.StructLayout({
        "addr": unsigned(params.act_addr_bits),
        "data": unsigned(params.act_width),
    })


def read_port_signature(params):
    """One bank's synchronous read port, seen from the reader (``WindowFetch``): ``addr`` is a
    bank word address (activation word ``2*addr + bank``); ``data`` is valid the cycle after
    ``en`` and holds while ``en`` is low."""
    return wiring.Signature({
        "addr": Out(unsigned(bank_addr_bits(params))),
        "en": Out(1),
        "data": In(unsigned(params.act_width)),
    })


class ActMemory(wiring.Component):
    """``params.act_depth`` activation words of ``params.act_width`` bits in two banks.

    Bank 0 holds the even word addresses, bank 1 the odd ones; each is one ``Memory`` with one
    write port and one synchronous, non-transparent read port (maps to block RAM / an SRAM
    macro).

    Ports:

    - ``wr``: In(stream of ``write_layout``), ``ready`` constant 1: word ``addr`` is written at the
      clock edge that accepts it (``addr < act_depth``; larger addresses are outside the
      contract).
    - ``rd0``, ``rd1``: In(``read_port_signature``): the read ports of bank 0 (even words) and
      bank 1 (odd words). ``data`` is the word at bank address ``addr`` sampled at the edge
      where ``en`` was high: valid the cycle after ``en``, held while ``en`` stays low.

    Latency: a read issued in the cycle a write to the same word is accepted returns the OLD
    word (not transparent); from the next cycle on it returns the new one. The user keeps
    reads and writes of the same words apart (the input and the output tensor of a layer are
    different regions).
    """

    def __init__(self, params):
        if not isinstance(params, TiledParams):
            self._MustUse__used = True  # a rejected block is not an unused one
            raise TypeError(f"params must be a TiledParams, not {params!r}")
        self._params = params
        super().__init__({
            "wr": In(stream.Signature(write_layout(params))),
            "rd0": In(read_port_signature(params)),
            "rd1": In(read_port_signature(params)),
        })

    params = property(lambda self: self._params)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.d.comb += self.wr.ready.eq(1)
        for bank, rd in enumerate((self.rd0, self.rd1)):
            mem = Memory(shape=unsigned(p.act_width), depth=bank_depth(p), init=[])
            m.submodules[f"bank{bank}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=())
            m.d.comb += [
                wp.addr.eq(self.wr.payload.addr[1:]),
                wp.data.eq(self.wr.payload.data),
                wp.en.eq(self.wr.valid & (self.wr.payload.addr[0] == bank)),
                rp.addr.eq(rd.addr),
                rp.en.eq(rd.en),
                rd.data.eq(rp.data),
            ]
        return m
