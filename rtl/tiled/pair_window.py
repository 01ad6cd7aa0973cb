"""Activation beats for row pairs (``format.row_group``): the columns of a tile cover two output
rows, ``cols/2`` pixels each, so a beat needs two input rows at once.

For a layer with row pairs every input row is one activation word (``in_w <= cols``), so the
window of sub-row ``g`` (0 or 1) at kernel row ``ky`` is one word, and column ``c`` (``g = c //
(cols/2)``, ``x = c % (cols/2)``) at kernel column ``kx`` reads pixel ``stride*x + kx - pad`` of
it: zero outside ``0 .. cols-1`` (padding; lanes past the row's width are stored as zeros).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .act_memory import read_port_signature
from .window_fetch import beat_layout

__all__ = ["pair_cmd_layout", "PairWindowFetch"]


def pair_cmd_layout(params):
    """One (input channel, kernel row) of a row-pair tile: the word of sub-row 0 (``addr``) and
    of sub-row 1 (``addr + step``), which are zeros where ``zmask`` says (rows outside the
    input); ``pad``, ``kernel``, ``stride``, ``reps`` (beats per kernel column)."""
    return data.StructLayout({
        "addr": unsigned(params.act_addr_bits),
        "step": unsigned(2),
        "zmask": unsigned(2),
        "pad": unsigned(3),
        "kernel": unsigned(params.max_kernel.bit_length()),
        "stride": unsigned(2),
        "reps": unsigned(3),
    })


class PairWindowFetch(wiring.Component):
    """Row-pair windows in (``cmd``), ``kernel * reps`` beats per command out (``beats``),
    reading the activation memory's two banks (``rd0``: even words, ``rd1``: odd words).

    Timing: a command's two words are read in the cycle it is accepted and the next (one per
    cycle), into the *next* window register while the current one's beats go out; so with
    ``kernel * reps >= 3`` one beat leaves per cycle. ``beats.payload`` is a mux per column
    over the lanes of its sub-row's word.
    """

    def __init__(self, params):
        self._p = params
        super().__init__({
            "cmd": In(stream.Signature(pair_cmd_layout(params))),
            "beats": Out(stream.Signature(beat_layout(params))),
            "rd0": Out(read_port_signature(params)),
            "rd1": Out(read_port_signature(params)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        aw = p.act_width
        lay = pair_cmd_layout(p)
        # Fetch: phase 0 reads word 0 (accepting the command), phase 1 reads word 1, phase 2
        # takes word 1 and fills the next-window register.
        phase = Signal(2)
        fcmd = Signal(lay)
        nxt_valid, nxt_cmd = Signal(), Signal(lay)
        nxt_w = Signal(2 * aw)
        cur_valid, cur_cmd = Signal(), Signal(lay)
        cur_w = Signal(2 * aw)
        kx, rep = Signal(4), Signal(3)
        last_beat = (kx == cur_cmd.kernel - 1) & (rep == cur_cmd.reps - 1)
        fire = self.beats.valid & self.beats.ready
        move = (~cur_valid | (fire & last_beat)) & nxt_valid   # next window becomes current
        accept = self.cmd.valid & self.cmd.ready

        def read(addr, en):
            bank = addr[0]
            for b, port in enumerate((self.rd0, self.rd1)):
                with m.If(en & (bank == b)):
                    m.d.comb += [port.addr.eq(addr >> 1), port.en.eq(1)]

        m.d.comb += self.cmd.ready.eq((phase == 0) & (~nxt_valid | move))
        word_of = Signal(aw)
        last_bank = Signal()
        m.d.comb += word_of.eq(Mux(last_bank, self.rd1.data, self.rd0.data))
        with m.If(accept):
            read(self.cmd.payload.addr, ~self.cmd.payload.zmask[0])
            m.d.sync += [fcmd.eq(self.cmd.payload), phase.eq(1),
                         last_bank.eq(self.cmd.payload.addr[0])]
        with m.If(phase == 1):
            a1 = Signal(p.act_addr_bits)
            m.d.comb += a1.eq(fcmd.addr + fcmd.step)
            read(a1, ~fcmd.zmask[1])
            m.d.sync += [nxt_w[:aw].eq(Mux(fcmd.zmask[0], 0, word_of)), phase.eq(2),
                         last_bank.eq(a1[0])]
        with m.If(phase == 2):
            m.d.sync += [nxt_w[aw:].eq(Mux(fcmd.zmask[1], 0, word_of)), phase.eq(0),
                         nxt_valid.eq(1), nxt_cmd.eq(fcmd)]
        with m.If(move):
            m.d.sync += [cur_valid.eq(1), cur_cmd.eq(nxt_cmd), cur_w.eq(nxt_w), kx.eq(0),
                         rep.eq(0)]
            with m.If(phase != 2):
                m.d.sync += nxt_valid.eq(0)
        with m.Elif(fire):
            with m.If(last_beat):
                m.d.sync += cur_valid.eq(0)
            with m.Elif(rep == cur_cmd.reps - 1):
                m.d.sync += [rep.eq(0), kx.eq(kx + 1)]
            with m.Else():
                m.d.sync += rep.eq(rep + 1)

        # The beat: column c reads lane stride*x + kx - pad of its sub-row's word.
        half = p.cols // 2
        d = Signal(signed(6))
        m.d.comb += d.eq(kx - cur_cmd.pad)
        cols = []
        for c in range(p.cols):
            g, x = divmod(c, half)
            word = cur_w[g * aw:(g + 1) * aw]
            idx = Signal(signed(8), name=f"idx{c}")
            m.d.comb += idx.eq(Mux(cur_cmd.stride == 2, 2 * x, x) + d)
            lane = word.word_select(idx[:max(1, (p.cols - 1).bit_length())], p.abits)
            cols.append(Mux((idx >= 0) & (idx < p.cols), lane, 0))
        m.d.comb += [
            self.beats.valid.eq(cur_valid),
            self.beats.payload.eq(Cat(*cols)),
            self.idle.eq(~cur_valid & ~nxt_valid & (phase == 0)),
        ]
        return m
