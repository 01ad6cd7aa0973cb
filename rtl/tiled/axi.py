"""AXI4 bridges of the tiled chip: its word-address memory streams as AXI4 bursts.

``AxiReadMaster`` turns the ReadDma's single-word tagged read commands into INCR bursts;
``AxiWriteMaster`` turns the WriteBack's (address, data, strobe) beats into INCR bursts, counts
every write response, and says when nothing is left unacknowledged. Reads: the command's tag
(the ReadDma client) is the ARID, and each R beat goes back with its RID, so the slave may
return bursts of different IDs out of order and interleave their beats (``ReadDma`` in tagged
mode routes by tag); several bursts are outstanding at once (as many as ``ReadDma`` has words
in flight). Writes: one AXI ID (``0``).

The AXI members are flat, named as integrators expect (``araddr``, ``arlen``, ...); the chip
prefixes them (``m_axi_araddr``). Addresses: the chip counts in words of ``data_width`` bits;
the byte address is ``word * data_width // 8``, truncated to ``addr_width`` bits.
"""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .read_dma import read_cmd_layout, read_data_layout
from .write_back import write_layout

__all__ = ["AXI_READ", "AXI_WRITE", "axi_read_members", "axi_write_members", "AxiReadMaster",
           "AxiWriteMaster", "MAX_BURST", "PAGE_BYTES", "RESP_OKAY", "RESP_SLVERR",
           "RESP_DECERR", "connect_flat", "check_data_width"]

#: AXI4 INCR bursts: at most 256 beats, never across a 4 KiB boundary.
MAX_BURST = 256
PAGE_BYTES = 4096
RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = range(4)
BURST_INCR = 1

#: (name, width or a key of the widths dict, direction seen from the master) per channel.
AXI_READ = (
    ("arid", "id"), ("araddr", "addr"), ("arlen", 8), ("arsize", 3), ("arburst", 2),
    ("arlock", 1), ("arcache", 4), ("arprot", 3), ("arvalid", 1), ("arready", -1),
    ("rid", "-id"), ("rdata", "-data"), ("rresp", -2), ("rlast", -1), ("rvalid", -1),
    ("rready", 1),
)
AXI_WRITE = (
    ("awid", "id"), ("awaddr", "addr"), ("awlen", 8), ("awsize", 3), ("awburst", 2),
    ("awlock", 1), ("awcache", 4), ("awprot", 3), ("awvalid", 1), ("awready", -1),
    ("wdata", "data"), ("wstrb", "strb"), ("wlast", 1), ("wvalid", 1), ("wready", -1),
    ("bid", "-id"), ("bresp", -2), ("bvalid", -1), ("bready", 1),
)


def check_data_width(data_width):
    if data_width < 8 or data_width & (data_width - 1) or data_width > 1024:
        raise ValueError(f"data_width must be a power of two 8..1024, not {data_width!r}")


def _members(table, *, addr_width, data_width, id_width):
    widths = {"id": id_width, "addr": addr_width, "data": data_width, "strb": data_width // 8}
    out = {}
    for name, w in table:
        inward = (isinstance(w, int) and w < 0) or (isinstance(w, str) and w.startswith("-"))
        width = abs(w) if isinstance(w, int) else widths[w.lstrip("-")]
        out[name] = In(width) if inward else Out(width)
    return out


def axi_read_members(*, addr_width, data_width, id_width=1):
    """The AR and R members of an AXI4 master (flip them for a slave)."""
    return _members(AXI_READ, addr_width=addr_width, data_width=data_width, id_width=id_width)


def axi_write_members(*, addr_width, data_width, id_width=1):
    """The AW, W and B members of an AXI4 master."""
    return _members(AXI_WRITE, addr_width=addr_width, data_width=data_width, id_width=id_width)


def connect_flat(m, outer, inner, names, prefix):
    """Wire ``inner``'s members ``names`` to ``outer``'s ``prefix + name`` ports of the same
    direction (a component's ports to a submodule's: outputs out, inputs in)."""
    for name in names:
        o, i = getattr(outer, prefix + name), getattr(inner, name)
        if inner.signature.members[name].flow == Out:
            m.d.comb += o.eq(i)
        else:
            m.d.comb += i.eq(o)


def _size(data_width):
    return (data_width // 8).bit_length() - 1


def _page_last(word, data_width):
    """The word is the last of its 4 KiB page (a burst must end there)."""
    words = max(1, PAGE_BYTES // (data_width // 8))
    return word[:(words - 1).bit_length()] == words - 1 if words > 1 else Const(1)


class AxiReadMaster(wiring.Component):
    """Single-word tagged read commands in, AXI4 INCR read bursts out (ARID = tag); the words
    back with their RID as tag, as the slave returns them.

    Ports: ``cmd`` (In stream ``read_cmd_layout(id_width)``: 32-bit word address and tag:
    tagged ReadDma's ``mem_rd_cmd``), ``data`` (Out stream ``read_data_layout(data_width,
    id_width)``: word and tag: tagged ReadDma's ``mem_rd_data``; ``data.ready`` is not looked
    at: ReadDma always takes a word), the AR and R members (``axi_read_members`` with
    ``id_width``; ``rready`` is 1), ``error`` (Out(1), a one-cycle pulse per R beat answered
    SLVERR or DECERR; the beat is still delivered). Beats of different IDs may come in any
    order, interleaved (nothing here depends on the order: ``rlast`` is not looked at).

    Bursts: a command extends the burst being built when it has the burst's tag, its address
    follows the burst's last word, the burst is shorter than ``max_burst`` (at most 256) and
    does not end at a 4 KiB boundary; otherwise, or in a cycle without a command, the burst
    goes to the AR register. So a steady stream of consecutive commands of one client gives
    long bursts and a lone command costs one cycle more than a bare read; clients that issue
    at the same time take turns command by command (ReadDma's round robin), so their bursts
    are one beat long. Latency: command accepted in cycle t, AR valid at t+2 at the
    earliest. Storage: two (address, length, tag) registers.
    """

    def __init__(self, *, data_width, addr_width=32, max_burst=MAX_BURST, id_width=1):
        check_data_width(data_width)
        if not 1 <= max_burst <= MAX_BURST:
            raise ValueError(f"max_burst must be 1..{MAX_BURST}, not {max_burst!r}")
        if not 1 <= id_width <= 16:
            raise ValueError(f"id_width must be 1..16, not {id_width!r}")
        self._dw, self._aw, self._max, self._idw = data_width, addr_width, max_burst, id_width
        super().__init__({
            "cmd": In(stream.Signature(read_cmd_layout(id_width))),
            "data": Out(stream.Signature(read_data_layout(data_width, id_width))),
            "error": Out(1),
            **axi_read_members(addr_width=addr_width, data_width=data_width,
                               id_width=id_width),
        })

    id_width = property(lambda self: self._idw)

    def elaborate(self, platform):
        m = Module()
        dw = self._dw
        c_valid, c_addr, c_len = Signal(), Signal(32), Signal(range(self._max + 1))
        c_tag = Signal(self._idw)
        cmd = self.cmd.payload
        ar_free = Signal()
        m.d.comb += ar_free.eq(~self.arvalid | self.arready)
        c_end = Signal(32)
        m.d.comb += c_end.eq(c_addr + c_len - 1)
        extend = Signal()
        m.d.comb += extend.eq(c_valid & self.cmd.valid & (cmd.tag == c_tag)
                              & (cmd.addr == c_end + 1) & (c_len < self._max)
                              & ~_page_last(c_end, dw))
        flush = Signal()
        m.d.comb += [
            flush.eq(c_valid & ~extend & ar_free),
            self.cmd.ready.eq(extend | ~c_valid | flush),
        ]
        with m.If(flush):
            m.d.sync += [self.arvalid.eq(1), self.araddr.eq(c_addr << _size(dw)),
                         self.arlen.eq(c_len - 1), self.arid.eq(c_tag), c_valid.eq(0)]
        with m.Elif(self.arready):
            m.d.sync += self.arvalid.eq(0)
        with m.If(extend):
            m.d.sync += c_len.eq(c_len + 1)
        with m.Elif(self.cmd.valid & self.cmd.ready):
            m.d.sync += [c_valid.eq(1), c_addr.eq(cmd.addr), c_len.eq(1), c_tag.eq(cmd.tag)]
        m.d.comb += [
            self.arsize.eq(_size(dw)), self.arburst.eq(BURST_INCR),
            self.arcache.eq(0b0011), self.arprot.eq(0), self.arlock.eq(0),
            self.rready.eq(1),
            self.data.valid.eq(self.rvalid), self.data.payload.data.eq(self.rdata),
            self.data.payload.tag.eq(self.rid),
            self.error.eq(self.rvalid & self.rresp[1]),
        ]
        return m


class AxiWriteMaster(wiring.Component):
    """(address, data, strobe) word writes in, AXI4 INCR write bursts out, every response
    counted.

    Ports: ``wr`` (In stream ``write_layout(data_width)``: WriteBack's ``mem_wr``), the AW, W
    and B members (``axi_write_members``; ``bready`` is 1), ``pending`` (Out(1): a write was
    taken whose response has not come back; low only when every accepted write is
    acknowledged), ``error`` (Out(1): a one-cycle pulse per B answered SLVERR or DECERR).

    Bursts: the beat taken last waits in a register until the next one shows whether it
    continues the burst (its address follows, the burst is shorter than ``max_burst`` and
    does not end at a 4 KiB boundary); then it goes to the W FIFO (``max_burst`` beats), with
    ``wlast`` set when the burst ends there, and the burst's AW is queued. A cycle without a
    beat ends the burst too, so a lone write is never held. W beats may reach the bus before
    their AW (AXI allows it); a burst is never longer than the W FIFO, so no deadlock with a
    slave that waits for AW. Non-consecutive writes are single-beat bursts. ``awid`` is 0
    (``id_width`` bits); ``bid`` is not looked at.
    """

    def __init__(self, *, data_width, addr_width=32, max_burst=16, max_outstanding=256,
                 id_width=1):
        check_data_width(data_width)
        if not 1 <= max_burst <= MAX_BURST:
            raise ValueError(f"max_burst must be 1..{MAX_BURST}, not {max_burst!r}")
        self._dw, self._aw, self._max, self._out = data_width, addr_width, max_burst, \
            max_outstanding
        super().__init__({
            "wr": In(stream.Signature(write_layout(data_width))),
            "pending": Out(1),
            "error": Out(1),
            **axi_write_members(addr_width=addr_width, data_width=data_width,
                                id_width=id_width),
        })

    def elaborate(self, platform):
        m = Module()
        dw, strb = self._dw, self._dw // 8
        wq = fifo.SyncFIFOBuffered(width=dw + strb + 1, depth=self._max)
        awq = fifo.SyncFIFOBuffered(width=32 + 8, depth=4)
        m.submodules.wq, m.submodules.awq = wq, awq

        # The tail: the last beat taken, and the burst it belongs to.
        t_valid, t_addr, t_data, t_strb = Signal(), Signal(32), Signal(dw), Signal(strb)
        b_addr, b_len = Signal(32), Signal(range(self._max + 1))
        inp = self.wr.payload
        cont = Signal()
        m.d.comb += cont.eq(t_valid & self.wr.valid & (inp.addr == t_addr + 1)
                            & (b_len < self._max) & ~_page_last(t_addr, dw))
        # Pushing the tail needs a W place; ending a burst also needs an AW place.
        can_push = Signal()
        m.d.comb += can_push.eq(wq.w_rdy & (cont | awq.w_rdy))
        push = Signal()
        m.d.comb += [
            push.eq(t_valid & can_push),
            self.wr.ready.eq(~t_valid | push),
            wq.w_en.eq(push),
            wq.w_data.eq(t_data | (t_strb << dw) | (~cont << (dw + strb))),
            awq.w_en.eq(push & ~cont),
            awq.w_data.eq(b_addr | ((b_len - 1) << 32)),
        ]
        with m.If(self.wr.valid & self.wr.ready):
            m.d.sync += [t_valid.eq(1), t_addr.eq(inp.addr), t_data.eq(inp.data),
                         t_strb.eq(inp.strobe)]
            with m.If(cont):
                m.d.sync += b_len.eq(b_len + 1)
            with m.Else():
                m.d.sync += [b_addr.eq(inp.addr), b_len.eq(1)]
        with m.Elif(push):
            m.d.sync += t_valid.eq(0)

        # Outstanding bursts: AW accepted minus B received (at most max_outstanding).
        outstanding = Signal(range(self._out + 1))
        aw_fire = self.awvalid & self.awready
        b_fire = self.bvalid & self.bready
        m.d.sync += outstanding.eq(outstanding + aw_fire - b_fire)
        m.d.comb += [
            self.awvalid.eq(awq.r_rdy & (outstanding < self._out)),
            self.awaddr.eq(awq.r_data[:32] << _size(dw)),
            self.awlen.eq(awq.r_data[32:]),
            awq.r_en.eq(aw_fire),
            self.awid.eq(0), self.awsize.eq(_size(dw)), self.awburst.eq(BURST_INCR),
            self.awcache.eq(0b0011), self.awprot.eq(0), self.awlock.eq(0),
            self.wvalid.eq(wq.r_rdy),
            self.wdata.eq(wq.r_data[:dw]), self.wstrb.eq(wq.r_data[dw:dw + strb]),
            self.wlast.eq(wq.r_data[dw + strb]),
            wq.r_en.eq(self.wready),
            self.bready.eq(1),
            self.error.eq(b_fire & self.bresp[1]),
            self.pending.eq(t_valid | (wq.level != 0) | (awq.level != 0) | (outstanding != 0)),
        ]
        return m
