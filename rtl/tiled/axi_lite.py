"""An AXI4-Lite slave for a register map (``csr.REGISTERS``): the chip's control and status.

One write and one read at a time: AW and W are taken together (the slave waits for both, as
AXI allows) and answered on B the next cycle; AR is answered on R the next cycle. Every access
answers OKAY; an unmapped offset reads 0 and ignores writes. Write strobes are honoured per
byte for ``rw`` registers; ``wo`` and ``w1c`` take the whole written word.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import csr

__all__ = ["AXIL_SLAVE", "AxiLiteSlave", "reg_member"]

#: (name, width, master drives it) of an AXI4-Lite slave port with 32-bit data.
AXIL_SLAVE = (
    ("awaddr", "addr", True), ("awprot", 3, True), ("awvalid", 1, True), ("awready", 1, False),
    ("wdata", 32, True), ("wstrb", 4, True), ("wvalid", 1, True), ("wready", 1, False),
    ("bresp", 2, False), ("bvalid", 1, False), ("bready", 1, True),
    ("araddr", "addr", True), ("arprot", 3, True), ("arvalid", 1, True), ("arready", 1, False),
    ("rdata", 32, False), ("rresp", 2, False), ("rvalid", 1, False), ("rready", 1, True),
)


def reg_member(reg):
    """The members a register gives the slave: ``rw``: Out ``name`` (the stored value);
    ``ro``: In ``name``; ``wo``: Out ``name`` (the written word for one cycle, else 0);
    ``w1c``: Out ``name`` (the stored bits) and In ``name_set`` (bits to set, any cycle)."""
    n = reg.name.lower()
    if reg.access == "ro":
        return {n: In(32)}
    if reg.access == "w1c":
        return {n: Out(32), f"{n}_set": In(32)}
    return {n: Out(32)}


class AxiLiteSlave(wiring.Component):
    """See the module docstring. Members: the AXI4-Lite ones (``AXIL_SLAVE``, ``addr_width``
    bits of byte address), then ``reg_member`` of each register."""

    def __init__(self, registers=csr.REGISTERS, *, addr_width=csr.ADDR_BITS):
        self._regs = tuple(registers)
        self._aw = addr_width
        members = {}
        for name, width, inward in AXIL_SLAVE:
            width = addr_width if width == "addr" else width
            members[name] = In(width) if inward else Out(width)
        for reg in self._regs:
            members |= reg_member(reg)
        super().__init__(members)

    registers = property(lambda self: self._regs)

    def elaborate(self, platform):
        m = Module()
        take_w = Signal()
        m.d.comb += [
            take_w.eq(self.awvalid & self.wvalid & ~self.bvalid),
            self.awready.eq(take_w), self.wready.eq(take_w), self.bresp.eq(0),
            self.arready.eq(~self.rvalid), self.rresp.eq(0),
        ]
        with m.If(take_w):
            m.d.sync += self.bvalid.eq(1)
        with m.Elif(self.bready):
            m.d.sync += self.bvalid.eq(0)
        waddr = self.awaddr[2:self._aw]
        mask = Signal(32)
        for i in range(4):
            m.d.comb += mask[8 * i:8 * i + 8].eq(self.wstrb[i].replicate(8))
        for reg in self._regs:
            n = reg.name.lower()
            port = getattr(self, n)
            hit = take_w & (waddr == reg.offset >> 2)
            if reg.access == "rw":
                with m.If(hit):
                    m.d.sync += port.eq((port & ~mask) | (self.wdata & mask))
            elif reg.access == "wo":
                m.d.comb += port.eq(_gate(hit, self.wdata))
            elif reg.access == "w1c":
                clr = Signal(32, name=f"{n}_clr")
                m.d.comb += clr.eq(_gate(hit, self.wdata))
                m.d.sync += port.eq((port & ~clr) | getattr(self, f"{n}_set"))

        take_r = self.arvalid & self.arready
        with m.If(take_r):
            m.d.sync += [self.rvalid.eq(1), self.rdata.eq(0)]
            with m.Switch(self.araddr[2:self._aw]):
                for reg in self._regs:
                    if reg.access != "wo":
                        with m.Case(reg.offset >> 2):
                            m.d.sync += self.rdata.eq(getattr(self, reg.name.lower()))
        with m.Elif(self.rready):
            m.d.sync += self.rvalid.eq(0)
        return m


def _gate(sel, value):
    """``value`` where ``sel``, else 0."""
    return value & sel.replicate(len(value))
