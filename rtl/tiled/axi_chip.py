"""The tiled chip on AXI: ``TiledChip`` with an AXI4 memory master and AXI4-Lite registers.

::

    s_axil_* --> AxiLiteSlave (csr.REGISTERS) --> start, addresses --> TiledChip
                                          <-- status, counters, errors, irq <--'
    TiledChip.mem_rd_cmd/mem_rd_data <--> AxiReadMaster  <--> m_axi_ar*, m_axi_r*
    TiledChip.mem_wr                 --> AxiWriteMaster --> m_axi_aw*, m_axi_w*, m_axi_b*

Ports: ``m_axi_*`` (AXI4 master, ``mem_width`` data bits, ``addr_width`` byte-address bits,
``ID_BITS`` = 3 ID bits; a read's ARID is its ReadDma client: 0 descriptors, 1 constants, 2
weights, 3 input, 4 skips; the slave may return bursts of different IDs out of order and
interleave their beats; writes use ID 0), ``s_axil_*`` (AXI4-Lite slave, 32-bit data,
``csr.ADDR_BITS`` address bits), ``irq`` (level: ``IRQ_STATUS & IRQ_ENABLE`` is non-zero).

The chip is done only when every write is acknowledged, and a layer ends (so the next one may
read its output as a skip) only then (``TiledChip.wr_pending``). An R or B answered SLVERR
or DECERR sets ``Error.BUS`` and stops the program as a memory error does (``Error.MEMORY``
is set with it).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import csr
from .axi import (
    AXI_READ,
    AXI_WRITE,
    AxiReadMaster,
    AxiWriteMaster,
    axi_read_members,
    axi_write_members,
    connect_flat,
)
from .axi_lite import AXIL_SLAVE, AxiLiteSlave
from .chip import READ_CLIENTS, TiledChip
from .params import TiledParams
from .read_dma import tag_bits
from .sequencer import Error

__all__ = ["AxiChip", "M_AXI", "S_AXIL", "ID_BITS"]

M_AXI, S_AXIL = "m_axi_", "s_axil_"
#: AXI ID width of both directions: enough for the chip's 5 read clients.
ID_BITS = tag_bits(READ_CLIENTS)


class AxiChip(wiring.Component):
    """See the module docstring. ``write_burst``: longest write burst (the write master's W
    FIFO depth, in words)."""

    def __init__(self, params, *, addr_width=32, write_burst=16):
        if not isinstance(params, TiledParams):
            raise TypeError(f"params must be a TiledParams, not {params!r}")
        self._p, self._aw, self._wb = params, addr_width, write_burst
        mw = params.mem_width
        members = {}
        ids = {"addr_width": addr_width, "data_width": mw, "id_width": ID_BITS}
        for name, mem in (axi_read_members(**ids) | axi_write_members(**ids)).items():
            members[M_AXI + name] = mem
        for name, width, inward in AXIL_SLAVE:
            width = csr.ADDR_BITS if width == "addr" else width
            members[S_AXIL + name] = In(width) if inward else Out(width)
        members["irq"] = Out(1)
        super().__init__(members)

    params = property(lambda self: self._p)

    def elaborate(self, platform):
        p = self._p
        m = Module()
        m.submodules.core = core = TiledChip(p, bus_ports=True, read_tags=True)
        m.submodules.rd = rd = AxiReadMaster(data_width=p.mem_width, addr_width=self._aw,
                                             id_width=ID_BITS)
        m.submodules.wr = wr = AxiWriteMaster(data_width=p.mem_width, addr_width=self._aw,
                                              max_burst=self._wb, id_width=ID_BITS)
        m.submodules.regs = regs = AxiLiteSlave()
        self.core = core  # for benches that look inside

        connect_flat(m, self, rd, [n for n, _ in AXI_READ], M_AXI)
        connect_flat(m, self, wr, [n for n, _ in AXI_WRITE], M_AXI)
        connect_flat(m, self, regs, [n for n, _, _ in AXIL_SLAVE], S_AXIL)
        wiring.connect(m, core.mem_rd_cmd, rd.cmd)
        wiring.connect(m, rd.data, core.mem_rd_data)
        wiring.connect(m, core.mem_wr, wr.wr)

        bus_error = Signal()
        starting = Signal()
        m.d.comb += starting.eq(regs.ctrl[0] & ~core.busy)
        with m.If(starting):
            m.d.sync += bus_error.eq(0)
        with m.Elif(rd.error | wr.error):
            m.d.sync += bus_error.eq(1)
        error = Signal(8)
        m.d.comb += [
            core.start.eq(regs.ctrl[0]),
            core.prog_addr.eq(regs.prog_addr), core.in_addr.eq(regs.in_addr),
            core.out_base.eq(regs.out_base),
            core.bus_error.eq(rd.error | wr.error), core.wr_pending.eq(wr.pending),
            error.eq(core.error | (bus_error << Error.BUS.bit_length() - 1)),
            regs.status.eq(core.busy | (core.done << 1)),
            regs.cycles.eq(core.cycles), regs.error.eq(error), regs.layer.eq(core.layer),
            regs.mac_beats.eq(core.mac_beats),
        ]
        # IRQ_STATUS: set when a run ends (done rises), error bit if it ended with an error.
        done_q = Signal()
        m.d.sync += done_q.eq(core.done)
        ended = core.done & ~done_q
        m.d.comb += [
            regs.irq_status_set.eq(ended * (csr.IRQ_DONE | ((error != 0) * csr.IRQ_ERROR))),
            self.irq.eq((regs.irq_status & regs.irq_enable)[:2].any()),
        ]
        return m
