"""The tiled chip, ``pact_tiled_chip``: whole networks of any image size on one MAC array.

Block diagram (each block its own component and test file)::

    external memory --> ReadDma --0--> Sequencer (descriptors) --> layer config to every block
                          |--1--> Gearbox --> Drain.consts
                          |--2--> Gearbox --> WeightRing --> BeatJoin.w
                          |--3--> InputLoader --> ActMemory (input tensor)
                          '--4--> SkipFetch --> Drain.skip
    TileWalker --> WindowCommands --> WindowFetch or PairWindowFetch (read ActMemory) --> BeatJoin.a
               --> BeatIssuer --> WeightRing.rd, BeatJoin.meta
               --> SkipJobs --> SkipFetch
               --> Drain.tile
    BeatJoin --> MacArray --> Drain --> RowSplit --> WriteBack --> ActMemory (output tensor)
                                                       and external memory (every layer)

Nothing here grows with the image size: the activation memory is ``act_kib`` KiB of
``cols * abits``-bit words, the weight ring ``ring_beats`` beats, the window ``window_words``
words. Formats: ``format.py``; sizes: ``params.py``.

Ports (CSRs sampled at ``start``): ``start`` (one-cycle pulse, ignored while busy),
``prog_addr``, ``in_addr``, ``out_base`` (word addresses); ``busy``; ``done`` (from the end of a
program until the next start); ``cycles`` (since start, frozen at done); ``error`` (sticky,
``sequencer.Error``); ``layer`` (descriptor index); ``mac_beats`` (beats the MAC array took).
Memory master: ``mem_rd_cmd`` (word address), ``mem_rd_data`` (in command order, any latency
>= 1; always ready: a response always has a place), ``mem_wr`` (``write_back.write_layout``:
address, data, byte strobes). With ``read_tags`` (the AXI chip): ``mem_rd_cmd`` is
``read_dma.read_cmd_layout`` (address and the ReadDma client as tag), ``mem_rd_data``
``read_dma.read_data_layout`` (word and tag), answered in order per tag only.
"""

from amaranth.hdl import Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import chip_format as cf
from ..gearbox import Gearbox
from ..mac_array import MacArray
from .act_memory import ActMemory
from .beats import BeatIssuer, BeatJoin
from .drain import Drain
from .input_loader import InputLoader
from .pair_window import PairWindowFetch
from .params import TiledParams
from .read_dma import ReadDma, read_cmd_layout, read_data_layout, tag_bits
from .row_split import RowSplit
from .sequencer import Sequencer
from .skip_fetch import SkipFetch
from .skip_jobs import SkipJobs
from .walker import TileWalker, tile_layout
from .weight_ring import WeightRing
from .window_cmds import WindowCommands
from .window_fetch import WindowFetch, cmd_layout
from .write_back import WriteBack, write_layout

__all__ = ["TiledChip", "REQUANT_BLOCKS", "READ_CLIENTS"]

#: The blocks between the MAC array's outputs (``blocks["mac"]``) and the activation memory:
#: the requantizer, as the area benches count it.
REQUANT_BLOCKS = ("drain", "split", "wb")

# ReadDma clients.
_DESC, _CONSTS, _WEIGHTS, _INPUT, _SKIP = range(5)
#: How many ReadDma clients the chip has (the AXI chip's read IDs are these indices).
READ_CLIENTS = 5
# TileWalker outputs.
_TO_WINDOW, _TO_BEATS, _TO_DRAIN, _TO_SKIP, _TO_SPLIT = range(5)


def _tile_fifo(m, name, params, flush, depth=4):
    q = ResetInserter(flush)(fifo.SyncFIFOBuffered(width=tile_layout(params).size, depth=depth))
    m.submodules[name] = q
    return q


class TiledChip(wiring.Component):
    """See the module docstring."""

    def __init__(self, params, *, bus_ports=False, read_tags=False):
        if not isinstance(params, TiledParams):
            raise TypeError(f"params must be a TiledParams, not {params!r}")
        self._p = params
        # A bus wrapper (axi_chip.AxiChip) stops the program on a bus error and holds the end
        # of a layer while writes are unacknowledged; the native ports stay as they were.
        self._bus = bus_ports
        # With read_tags, reads carry their ReadDma client as a tag and may be answered out of
        # order across clients (read_dma.read_cmd_layout/read_data_layout; AXI IDs).
        self._tags = read_tags
        if read_tags:
            rd_cmd = read_cmd_layout(tag_bits(READ_CLIENTS))
            rd_data = read_data_layout(params.mem_width, tag_bits(READ_CLIENTS))
        else:
            rd_cmd, rd_data = unsigned(cf.ADDR_BITS), unsigned(params.mem_width)
        extra = {"bus_error": In(1), "wr_pending": In(1)} if bus_ports else {}
        super().__init__({**extra,
            "start": In(1), "prog_addr": In(32), "in_addr": In(32), "out_base": In(32),
            "busy": Out(1), "done": Out(1), "cycles": Out(32), "error": Out(4),
            "layer": Out(8), "mac_beats": Out(32),
            "mem_rd_cmd": Out(stream.Signature(rd_cmd)),
            "mem_rd_data": In(stream.Signature(rd_data)),
            "mem_wr": Out(stream.Signature(write_layout(params.mem_width))),
        })

    params = property(lambda self: self._p)

    def elaborate(self, platform):
        p = self._p
        m = Module()
        m.submodules.seq = seq = Sequencer(p)
        clear = seq.clear
        L = seq.layer
        m.submodules.dma = dma = ReadDma(p, clients=READ_CLIENTS, tagged=self._tags)
        blocks = {
            "wgear": Gearbox(p.mem_width, p.beat_bits),
            "cgear": Gearbox(p.mem_width, cf.consts_words(p.mem_width) * p.mem_width),
            "ring": WeightRing(p), "act": ActMemory(p), "win": WindowFetch(p),
            "pwin": PairWindowFetch(p), "split": RowSplit(p),
            "walker": TileWalker(p, outputs=5), "wcmds": WindowCommands(p, cmd_layout(p)),
            "issuer": BeatIssuer(p), "join": BeatJoin(p),
            "mac": MacArray(wbits=p.wbits, abits=p.abits, rows=p.rows, cols=p.cols,
                            max_reduction=p.max_reduction, max_shift=p.max_shift,
                            acc_width=p.acc_width, shifts=p.shifts),
            "drain": Drain(p), "skipjobs": SkipJobs(p), "skipf": SkipFetch(p),
            "loader": InputLoader(p), "wb": WriteBack(p),
        }
        for name, block in blocks.items():
            # Every per-layer block starts a layer (and a program) empty.
            m.submodules[name] = ResetInserter(clear)(block)
        b = type("Blocks", (), blocks)
        self.blocks = blocks   # for benches that look inside

        # Control and status; the CSRs of a run, latched at its start.
        in_addr, out_base = Signal(32), Signal(32)
        with m.If(self.start & ~seq.busy):
            m.d.sync += [in_addr.eq(self.in_addr), out_base.eq(self.out_base)]
        m.d.comb += [
            self.busy.eq(seq.busy), self.done.eq(seq.done), self.error.eq(seq.error),
            self.layer.eq(seq.layer_index),
            seq.start.eq(self.start), seq.prog_addr.eq(self.prog_addr),
            seq.in_addr.eq(self.in_addr), dma.clear.eq(clear),
            seq.mem_error.eq(dma.error | self.bus_error if self._bus else dma.error),
        ]
        with m.If(self.start & ~seq.busy):
            m.d.sync += [self.cycles.eq(0), self.mac_beats.eq(0)]
        with m.Elif(seq.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(b.mac.i.valid & b.mac.i.ready):
            m.d.sync += self.mac_beats.eq(self.mac_beats + 1)
        for blk in (b.walker, b.wcmds, b.issuer, b.skipjobs):
            m.d.comb += blk.layer.eq(L)

        # External memory.
        wiring.connect(m, wiring.flipped(self.mem_rd_cmd), dma.mem_rd_cmd)
        wiring.connect(m, wiring.flipped(self.mem_rd_data), dma.mem_rd_data)
        wiring.connect(m, wiring.flipped(self.mem_wr), b.wb.mem_wr)
        wiring.connect(m, seq.desc_req, dma.req_0)
        wiring.connect(m, dma.rsp_0, seq.desc_rsp)
        wiring.connect(m, seq.c_req, dma.req_1)
        wiring.connect(m, dma.rsp_1, b.cgear.i)
        wiring.connect(m, seq.w_req, dma.req_2)
        wiring.connect(m, dma.rsp_2, b.wgear.i)
        wiring.connect(m, b.loader.req, dma.req_3)
        wiring.connect(m, dma.rsp_3, b.loader.rsp)
        wiring.connect(m, b.skipf.req, dma.req_4)
        wiring.connect(m, dma.rsp_4, b.skipf.rsp)
        m.d.comb += [b.wgear.clear.eq(clear), b.cgear.clear.eq(clear)]

        # Weights: words -> beats -> ring -> join.
        wiring.connect(m, b.wgear.o, b.ring.fill)
        wiring.connect(m, b.issuer.rd, b.ring.rd)
        m.d.comb += [b.ring.release.eq(b.issuer.release), b.ring.clear.eq(clear),
                     b.issuer.clear.eq(clear)]
        wiring.connect(m, b.ring.beat, b.join.w)
        wiring.connect(m, b.issuer.meta, b.join.meta)

        # Activations: input load, windows, beats.
        m.d.comb += [
            b.loader.start.eq(seq.load_start), b.loader.ext_addr.eq(in_addr),
            b.loader.act_base.eq(L.in_act), b.loader.count.eq(L.in_words),
            seq.load_busy.eq(b.loader.busy), b.loader.clear.eq(clear), b.skipf.clear.eq(clear),
        ]
        # Windows: the window fetch, or for row-pair layers the pair window fetch, owns the
        # activation memory's read ports and feeds the join.
        wiring.connect(m, b.wcmds.cmd, b.win.cmd)
        wiring.connect(m, b.wcmds.pcmd, b.pwin.cmd)
        for port in ("rd0", "rd1"):
            mem_port = getattr(b.act, port)
            for name in ("addr", "en"):
                m.d.comb += getattr(mem_port, name).eq(
                    Mux(L.group, getattr(getattr(b.pwin, port), name),
                        getattr(getattr(b.win, port), name)))
            m.d.comb += [getattr(b.win, port).data.eq(mem_port.data),
                         getattr(b.pwin, port).data.eq(mem_port.data)]
        with m.If(L.group):
            wiring.connect(m, b.pwin.beats, b.join.a)
        with m.Else():
            wiring.connect(m, b.win.beats, b.join.a)
        wiring.connect(m, b.join.o, b.mac.i)
        wiring.connect(m, b.mac.o, b.drain.acc)

        # The walk: one record per tile to each expander, through small FIFOs.
        m.d.comb += [b.walker.start.eq(seq.walk_start), seq.walk_busy.eq(b.walker.busy),
                     b.walker.enable.eq(0b0111 | (L.skip << _TO_SKIP)
                                        | ((L.group & ~L.logits) << _TO_SPLIT))]
        queues = {}
        for i, name in ((_TO_WINDOW, "q_win"), (_TO_BEATS, "q_beats"), (_TO_DRAIN, "q_drain"),
                        (_TO_SKIP, "q_skip"), (_TO_SPLIT, "q_split")):
            q = queues[i] = _tile_fifo(m, name, p, clear)
            src = getattr(b.walker, f"o{i}")
            m.d.comb += [q.w_data.eq(src.payload), q.w_en.eq(src.valid), src.ready.eq(q.w_rdy)]
        self._connect_records(m, queues[_TO_WINDOW], b.wcmds.tiles)
        self._connect_records(m, queues[_TO_BEATS], b.issuer.tiles)
        self._connect_records(m, queues[_TO_SKIP], b.skipjobs.tiles)
        self._connect_records(m, queues[_TO_SPLIT], b.split.tiles)
        self._drain_records(m, queues[_TO_DRAIN], b.drain, L)

        # Constants records, skips, outputs.
        m.d.comb += [
            b.drain.consts.payload.eq(b.cgear.o.payload[:cf.CONSTS.size]),
            b.drain.consts.valid.eq(b.cgear.o.valid), b.cgear.o.ready.eq(b.drain.consts.ready),
        ]
        wiring.connect(m, b.skipjobs.jobs, b.skipf.job)
        wiring.connect(m, b.skipf.skip, b.drain.skip)
        m.d.comb += [b.skipf.ext_base.eq(out_base + L.skip_addr),
                     b.skipf.stride2.eq(L.skip_stride == 2),
                     b.skipf.halves.eq(L.group & (L.skip_stride == 1)),
                     b.skipf.step2.eq(L.group & (L.skip_stride == 2))]
        wiring.connect(m, b.drain.out, b.split.i)
        m.d.comb += [b.split.group.eq(L.group), b.split.out_w.eq(L.out_w)]
        wiring.connect(m, b.split.o, b.wb.out)
        wiring.connect(m, b.drain.logit, b.wb.logit)
        m.d.comb += [b.wb.act_base.eq(L.out_act), b.wb.ext_base.eq(out_base + L.o_addr),
                     seq.out_fire.eq((b.split.o.valid & b.split.o.ready)
                                     | (b.drain.logit.valid & b.drain.logit.ready)),
                     seq.wb_idle.eq(b.wb.idle & ~self.wr_pending if self._bus else b.wb.idle)]
        # One activation memory write port: the input loader while it runs, then the drain's.
        with m.If(b.loader.busy):
            wiring.connect(m, b.loader.wr, b.act.wr)
        with m.Else():
            wiring.connect(m, b.wb.wr, b.act.wr)
        return m

    @staticmethod
    def _connect_records(m, q, sink):
        m.d.comb += [sink.payload.eq(q.r_data), sink.valid.eq(q.r_rdy), q.r_en.eq(sink.ready)]

    def _drain_records(self, m, q, drain, L):
        rec = tile_layout(self._p)(q.r_data)
        t = drain.tile.payload
        # A column-sum layer's array emits one tile per channel tile, on its last position
        # tile (beats.BeatIssuer): the drain sees that record only, as the channel tile's first.
        dropped = L.colsum & ~rec.last_pos
        m.d.comb += [
            t.addr.eq(rec.addr), t.chan_stride.eq(L.chan_stride),
            t.chan0.eq(rec.t * self._p.rows), t.rows_valid.eq(rec.rows_valid),
            t.lanes_valid.eq(rec.lanes_valid), t.logits.eq(L.logits), t.colsum.eq(L.colsum),
            t.pool.eq(L.pool), t.phase.eq(rec.phase), t.skip.eq(L.skip),
            t.consts_new.eq(rec.first_pos | L.colsum),
            drain.tile.valid.eq(q.r_rdy & ~dropped),
            q.r_en.eq(Mux(dropped, q.r_rdy, drain.tile.ready)),
        ]
