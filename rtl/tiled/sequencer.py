"""The sequencer: runs the program, one descriptor at a time.

``IDLE -> FETCH`` (the descriptor's words) ``-> DECODE`` (``LayerDecoder``; an unknown op or a
descriptor the chip cannot run sets an error flag and ends the program) ``-> LOAD`` (for
``in_load``: the input tensor into the activation memory) ``-> RUN`` (the weights and constants
are requested, the tile walker starts; the layer ends when the walker is done, every output
word of the layer has left the drain and the write-back is idle) ``-> NEXT`` (clears the
per-layer blocks) ``-> FETCH`` ... ``OP_END`` ends the program: ``DONE``.
"""

import enum

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import chip_format as cf
from . import format as tf
from .layer import LayerDecoder, layer_layout

__all__ = ["request_layout", "Requests", "Sequencer", "Error"]


class Error(enum.IntFlag):
    """Bits of the chip's ``error`` register."""

    UNKNOWN_OP = 1
    DESCRIPTOR = 2      # a layer the chip cannot run
    MEMORY = 4          # a read response without a request
    BUS = 8             # SLVERR or DECERR on an AXI read or write response (AxiChip)


def request_layout():
    return data.StructLayout({"addr": unsigned(cf.ADDR_BITS), "count": unsigned(16)})


class Requests(wiring.Component):
    """``total`` words from ``addr`` (latched on ``start``) as read requests of at most 65535
    words each."""

    def __init__(self):
        super().__init__({
            "start": In(1), "addr": In(32), "total": In(32),
            "req": Out(stream.Signature(request_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        addr, left = Signal(32), Signal(32)
        chunk = Mux(left > 0xFFFF, 0xFFFF, left)
        m.d.comb += [
            self.req.valid.eq(left != 0),
            self.req.payload.addr.eq(addr),
            self.req.payload.count.eq(chunk),
        ]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.addr), left.eq(self.total)]
        with m.Elif(self.req.valid & self.req.ready):
            m.d.sync += [addr.eq(addr + chunk), left.eq(left - chunk)]
        return m


class _State(enum.Enum):
    IDLE = 0
    FETCH = 1
    DECODE = 2
    LOAD = 3
    RUN = 4
    DRAIN = 5
    NEXT = 6
    DONE = 7


class Sequencer(wiring.Component):
    """See the module docstring. ``layer`` is the decoded layer, stable from ``LOAD`` to the
    end of the layer; ``clear`` pulses when a layer starts (the per-layer blocks start
    empty); ``load_start`` and ``walk_start`` pulse; ``outputs`` counts the layer's output
    words (one per ``out_fire``)."""

    def __init__(self, params):
        self._p = params
        mw = params.mem_width
        super().__init__({
            "start": In(1), "prog_addr": In(32), "in_addr": In(32),
            "busy": Out(1), "done": Out(1), "error": Out(4), "layer_index": Out(8),
            "desc_req": Out(stream.Signature(request_layout())),
            "desc_rsp": In(stream.Signature(unsigned(mw))),
            "w_req": Out(stream.Signature(request_layout())),
            "c_req": Out(stream.Signature(request_layout())),
            "layer": Out(layer_layout()),
            "clear": Out(1),
            "load_start": Out(1), "load_busy": In(1),
            "walk_start": Out(1), "walk_busy": In(1),
            "out_fire": In(1), "wb_idle": In(1), "mem_error": In(1),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        mw = p.mem_width
        dw = tf.descriptor_words(mw)
        m.submodules.dec = dec = LayerDecoder(p)
        m.submodules.wreq = wreq = Requests()
        m.submodules.creq = creq = Requests()
        wiring.connect(m, wiring.flipped(self.w_req), wreq.req)
        wiring.connect(m, wiring.flipped(self.c_req), creq.req)

        desc_raw = Signal(dw * mw)
        got = Signal(range(dw + 1))
        pc = Signal(32)
        outputs = Signal(32)
        state = Signal(_State)
        load_pending = Signal()
        m.d.comb += dec.desc.eq(desc_raw[:tf.DESCRIPTOR.size])
        L = self.layer
        expected = Mux(L.logits, L.out_c, L.out_c * L.chan_stride)
        with m.If(self.out_fire):
            m.d.sync += outputs.eq(outputs + 1)

        # Descriptor words arrive LSB first.
        m.d.comb += self.desc_rsp.ready.eq(state == _State.FETCH)
        with m.If(self.desc_rsp.valid & self.desc_rsp.ready):
            m.d.sync += [desc_raw.eq((desc_raw >> mw) | (self.desc_rsp.payload << (dw - 1) * mw)),
                         got.eq(got + 1)]
        m.d.comb += [self.desc_req.payload.addr.eq(pc), self.desc_req.payload.count.eq(dw)]
        req_sent = Signal()
        m.d.comb += self.desc_req.valid.eq((state == _State.FETCH) & ~req_sent)
        with m.If(self.desc_req.valid & self.desc_req.ready):
            m.d.sync += req_sent.eq(1)

        def fail(flag):
            return [self.error.eq(self.error | flag), state.eq(_State.DONE)]

        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.layer_index.eq(0), pc.eq(self.prog_addr), got.eq(0),
                                 req_sent.eq(0), state.eq(_State.FETCH)]
                    m.d.comb += self.clear.eq(1)
            with m.Case(_State.FETCH):
                with m.If(got == dw):
                    m.d.sync += state.eq(_State.DECODE)
            with m.Case(_State.DECODE):
                m.d.sync += L.eq(dec.layer)
                with m.If(dec.desc.op == tf.OP_END):
                    m.d.sync += state.eq(_State.DRAIN)
                with m.Elif(dec.desc.op != tf.OP_CONV):
                    m.d.sync += fail(Error.UNKNOWN_OP)
                with m.Elif(~dec.ok):
                    m.d.sync += fail(Error.DESCRIPTOR)
                with m.Else():
                    m.d.sync += [state.eq(_State.LOAD), outputs.eq(0),
                                 load_pending.eq(dec.desc.in_load)]
            with m.Case(_State.LOAD):
                # The loader samples its addresses at load_start: from the registered layer.
                m.d.comb += self.load_start.eq(load_pending)
                m.d.sync += load_pending.eq(0)
                with m.If(~self.load_busy & ~load_pending):
                    m.d.comb += [self.walk_start.eq(1), wreq.start.eq(1), creq.start.eq(1)]
                    m.d.sync += state.eq(_State.RUN)
            with m.Case(_State.RUN):
                with m.If(~self.walk_busy & (outputs == expected) & self.wb_idle
                          & ~self.walk_start):
                    m.d.sync += state.eq(_State.NEXT)
            with m.Case(_State.NEXT):
                m.d.sync += [pc.eq(pc + dw), self.layer_index.eq(self.layer_index + 1),
                             got.eq(0), req_sent.eq(0), state.eq(_State.FETCH)]
                m.d.comb += self.clear.eq(1)
            with m.Case(_State.DRAIN):
                with m.If(self.wb_idle):
                    m.d.sync += state.eq(_State.DONE)
            with m.Case(_State.DONE):
                m.d.sync += [self.busy.eq(0), self.done.eq(1), state.eq(_State.IDLE)]
        # A memory error stops the program wherever it is (after the state logic: it wins).
        with m.If(self.mem_error & self.busy & (state != _State.DONE)):
            m.d.sync += fail(Error.MEMORY)
        m.d.comb += [
            wreq.addr.eq(L.w_addr), wreq.total.eq(L.w_words),
            creq.addr.eq(L.c_addr), creq.total.eq(L.c_words),
        ]
        return m
