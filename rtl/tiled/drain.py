"""The drain of the tiled chip: accumulator tiles in, activation words (or logits) out.

Per channel row of a finished ``rows x cols`` tile it computes ``golden.integer.requantize``
(or ``requantize_residual`` with the skip codes) on ``requant_lanes`` lanes at a time, one lane
group of the row per cycle, collects the row's codes, then either writes them as one
activation word, keeps them for a 2x2 max pool (``format.pool_codes``), or sends lane 0 out as
a signed 16-bit logit.

Why few lanes: a tile yields ``rows * cols`` results every ``L`` beats (``L = in_c' * K^2 *
w_slices``, >= 108 on every ResNet20 conv), so ``rows * cols / L`` lanes keep up; the array's
output register holds the tile while it drains, so the next reduction runs meanwhile.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import LOGIT_BITS

from ..chip_format import CONSTS
from ..mac_array import output_layout as acc_layout
from ..pact_unit import LATENCY as PACT_LATENCY
from ..pact_unit import PactUnit, input_layout
from .params import TiledParams

__all__ = ["Drain", "tile_layout", "out_layout", "skip_layout", "LOGIT", "LATENCY"]

#: Cycles from a channel row's issue (the cycle ``acc``, ``tile`` (and ``consts``, ``skip``
#: when needed) are all valid for it) to its word on ``out`` or logit on ``logit``, without
#: back-pressure: one register stage, then the PactUnit's three.
LATENCY = 1 + PACT_LATENCY

#: Payload of ``Drain.logit``: logit ``index`` (the output channel) and its value.
LOGIT = data.StructLayout({"index": unsigned(16), "value": signed(LOGIT_BITS)})


def tile_layout(params):
    """Payload of ``Drain.tile``: how one accumulator tile is drained (see ``Drain``)."""
    aab = params.act_addr_bits
    return data.StructLayout({
        "addr": unsigned(aab),
        "chan_stride": unsigned(aab),
        "chan0": unsigned(16),
        "rows_valid": unsigned(params.rows.bit_length()),
        "lanes_valid": unsigned(params.cols.bit_length()),
        "logits": 1,
        "colsum": 1,
        "pool": 1,
        "phase": 2,
        "skip": 1,
        "consts_new": 1,
    })


def out_layout(params):
    """Payload of ``Drain.out``: one activation memory write (ActMemory's ``wr``)."""
    return data.StructLayout({"addr": unsigned(params.act_addr_bits),
                              "data": unsigned(params.act_width)})


def skip_layout(params):
    """Payload of ``Drain.skip``: one channel row of skip codes, lane ``c`` = pixel ``x0+c``."""
    return data.ArrayLayout(unsigned(params.abits), params.cols)


def _meta_layout(params):
    """What travels beside a row through the PactUnit."""
    return data.StructLayout({
        "addr": unsigned(params.act_addr_bits),
        "lanes_valid": unsigned(params.cols.bit_length()),
        "index": unsigned(16),
        "row": unsigned(max(1, (params.rows - 1).bit_length())),
        "grp": unsigned(max(1, (_groups(params) - 1).bit_length())),
        "row_end": 1,
        "logits": 1, "pool": 1, "phase": 2,
    })


def _groups(params):
    """Lane groups of a channel row: cycles one row takes in the requantizer lanes."""
    return params.cols // params.requant_lanes


def _max(a, b):
    return Mux(a > b, a, b)


class Drain(wiring.Component):
    """Requantize, residual add, 2x2 max pool and write, one channel row per cycle.

    Ports
    -----
    acc : In(stream ``mac_array.output_layout(acc_width, rows, cols)``)
        One finished tile; held (not copied) while its rows drain: ``acc.ready`` rises in the
        cycle its last row is issued, so a MacArray's next reduction runs meanwhile.
    tile : In(stream ``tile_layout(params)``), one per ``acc``, taken with it
        ``addr``: act word address of row 0's output word (pooled: the pooled word, given on
        phase 3); ``chan_stride``: words between two channels' words; ``chan0``: channel of row
        0 (logit index); ``rows_valid`` (1..rows): rows (channels) that exist, rows past it are
        not computed and write nothing; ``lanes_valid`` (1..cols): lanes of the written word
        kept, the others zeroed; for a pooled tile the valid *pooled* lanes of the group's
        word (only phase 3's is used); ``logits``: send lane 0 of each valid row to ``logit``
        (``index = chan0 + r``), nothing to ``out``; with ``colsum`` too, the sum of all
        ``cols`` lanes of the row instead of lane 0 (``format``: a column-sum layer, whose
        array accumulated the whole plane over the channel tile's position tiles; built only
        with ``params.colsum``, else ``colsum`` is ignored); ``pool``
        with ``phase = dy*2 + h`` (0..3, ``format.tile_order``); ``skip``: residual tile, take
        one ``skip`` row per valid row;
        ``consts_new``: first tile of a channel tile, take ``rows`` records from ``consts``.
    consts : In(stream ``chip_format.CONSTS``)
        ``rows`` records per channel tile (rows past the layer's channels too). Record ``r`` is
        taken with the first lane group of row ``r`` of the ``consts_new`` tile and kept in a
        register for the channel tile's further tiles: no double buffer, no load stall. A
        ``consts_new`` tile therefore visits all ``rows`` rows even when ``rows_valid < rows``
        (one cycle for each missing row).
    skip : In(stream ``skip_layout(params)``)
        Residual tiles: one per valid row, in row order; lane ``c`` is the skip code of column
        ``c``. The offset becomes ``B + skip_mult * skip`` truncated to 48 signed bits (the
        image format keeps it inside them).
    out : Out(stream ``out_layout(params)``)
        Non-pooled tiles: one word per valid row, ``addr + r*chan_stride``, lane ``c`` the code
        of column ``c``. Pooled tiles: at phase 3 one word per valid row, lane ``l`` = max over
        ``dy`` of columns ``2*(l % (cols/2))`` and ``+1`` of the phase ``dy*2 + l // (cols/2)``
        tile (``format.pool_codes``). ``addr`` is phase 3's ``addr + r*chan_stride``.
    logit : Out(stream ``LOGIT``)
        Logits tiles: ``requantize(..., 16, signed_out=True)`` of column 0 (``colsum``: of the
        sum of the columns, which the compiler bounds like any accumulator).

    One PactUnit of ``requant_lanes`` lanes (``out_bits = max(16, abits + 1)``, signed) serves
    both kinds of layer; lane ``n`` of group ``g`` is column ``g * requant_lanes + n``. Codes are
    clamped to ``[0, 2**abits - 1]`` after it (exact: the clamp ranges nest).

    Timing: a channel row takes ``G = cols / requant_lanes`` cycles (one per lane group; a
    logits row or a row past ``rows_valid`` takes one); a tile of ``n`` valid rows takes
    ``n * G`` cycles (plus one per missing row with ``consts_new``; a ``colsum`` row takes
    ``G``: its lane groups are summed, ``requant_lanes`` columns per cycle, into one register of
    ``acc_width`` bits that feeds lane 0 with the last group) and the next tile's first
    group may issue the cycle after its last. ``LATENCY`` (4) cycles from a row's last group's
    issue to its word or logit. Stall is global from ``out``/``logit`` back to the inputs
    (``ready`` is combinational through the PactUnit). Registers: ``rows`` constants records
    (the current channel tile's only), ``rows x cols`` codes for pooling, ``cols -
    requant_lanes`` codes collecting a row, one group stage.
    No ``clear``: a sequencer that abandons a layer wraps the drain in a ``ResetInserter``.
    Measured (Yosys generic, ``gen.area``): see ``bench/lean_area.py`` and docs/chip.md
    ("The lean MAC and the requantizer"). Before shared lanes (w4a4, 8x8, max_kernel 3, 64
    channels, acc 27 bits): 433.7k transistors, of which the 8-lane PactUnit was 267.5k.
    """

    def __init__(self, params):
        if not isinstance(params, TiledParams):
            self._MustUse__used = True  # a rejected block is not an unused one
            raise TypeError(f"params must be a TiledParams, not {params!r}")
        self._params = params
        super().__init__({
            "acc": In(stream.Signature(acc_layout(params.acc_width, params.rows, params.cols))),
            "tile": In(stream.Signature(tile_layout(params))),
            "consts": In(stream.Signature(CONSTS)),
            "skip": In(stream.Signature(skip_layout(params))),
            "out": Out(stream.Signature(out_layout(params))),
            "logit": Out(stream.Signature(LOGIT)),
        })

    params = property(lambda self: self._params, doc="The chip's TiledParams.")
    latency = property(lambda self: LATENCY, doc="Cycles from a row's issue to its output.")

    @property
    def pact_bits(self):
        """Signed width of the PactUnit's saturation: holds the logits and every code."""
        return max(LOGIT_BITS, self._params.abits + 1)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.submodules.pact = pact = PactUnit(acc_width=p.acc_width, out_bits=self.pact_bits,
                                            lanes=p.requant_lanes, signed_out=True)
        meta = [Signal(_meta_layout(p), name=f"meta{i}") for i in range(PACT_LATENCY + 1)]
        self._issue(m, pact, meta[0])
        # The PactUnit's stages all move together when it takes an input (global stall), so
        # the row's metadata follows it in a shift register moved by the same condition.
        with m.If(pact.i.ready):
            m.d.sync += [meta[i + 1].eq(meta[i]) for i in range(PACT_LATENCY)]
        self._output(m, pact, meta[-1])
        return m

    def _issue(self, m, pact, meta):
        """Rows of the current tile into the row register (``meta``) that feeds the PactUnit."""
        p = self._params
        R, N, G = p.rows, p.requant_lanes, _groups(p)
        tile, acc = self.tile.payload, self.acc.payload
        row = Signal(range(max(R, 2)))
        grp = Signal(range(max(G, 2)))        # lane group of the row being issued
        row_end = Signal()                    # this step issues the row's last group
        raddr = Signal(p.act_addr_bits)       # address of the next row's word
        creg = Signal(data.ArrayLayout(CONSTS, R))
        valid = Signal()                      # the row register holds a row
        addr = Signal(p.act_addr_bits)
        live = Signal()                       # this row exists (else: constants only)
        last = Signal()
        step = Signal()
        need_s = tile.skip & live
        # Without params.colsum the chip has no column sums (the decoder refuses the layer).
        colsum = tile.colsum if p.colsum else Const(0, 1)
        take_c = tile.consts_new & (grp == 0)  # a row's record arrives with its first group
        move = ~valid | pact.i.ready
        m.d.comb += [
            addr.eq(Mux(row == 0, tile.addr, raddr)),
            live.eq(row < tile.rows_valid),
            # A logits row needs lane 0 only (a colsum row all groups); a row that does not
            # exist only takes constants.
            row_end.eq((grp == G - 1) | ~live | (tile.logits & ~colsum)),
            # (rows_valid 0 is outside the contract; it drops the tile rather than hang.)
            last.eq(row_end & Mux(tile.consts_new, row == R - 1, row + 1 >= tile.rows_valid)),
            step.eq(self.acc.valid & self.tile.valid & move
                    & (~take_c | self.consts.valid) & (~need_s | self.skip.valid)),
            self.consts.ready.eq(step & take_c),
            self.skip.ready.eq(step & need_s & row_end),
            self.acc.ready.eq(step & last),
            self.tile.ready.eq(step & last),
        ]
        k = CONSTS(Mux(take_c, self.consts.payload.as_value(), creg[row].as_value()))
        with m.If(step):
            with m.If(row_end):
                m.d.sync += [row.eq(Mux(last, 0, row + 1)), raddr.eq(addr + tile.chan_stride),
                             grp.eq(0)]
            with m.Else():
                m.d.sync += grp.eq(grp + 1)
            with m.If(take_c):
                for r in range(R):
                    with m.If(row == r):
                        m.d.sync += creg[r].eq(self.consts.payload)

        beat = Signal(input_layout(p.acc_width, N))
        m.d.comb += [pact.i.valid.eq(valid), pact.i.payload.eq(beat)]
        a_lanes = [Array(acc[r][g * N + n] for r in range(R) for g in range(G))[row * G + grp]
                   if G > 1 else acc[row][n] for n in range(N)]
        # Column sum: the row's earlier lane groups; any part of the sum is bounded like the
        # whole (the compiler's acc bound counts every term), so acc_width bits hold it.
        lane0 = a_lanes[0]
        if p.colsum:
            part = Signal(signed(p.acc_width))
            group_sum = Signal(signed(p.acc_width))
            m.d.comb += group_sum.eq(part + sum(a_lanes))
            with m.If(step & colsum):
                m.d.sync += part.eq(Mux(row_end, 0, group_sum))
            lane0 = Mux(colsum, group_sum, a_lanes[0])
        with m.If(move):
            m.d.sync += [
                valid.eq(step & live & (~colsum | row_end)),
                meta.addr.eq(addr),
                meta.lanes_valid.eq(tile.lanes_valid),
                meta.index.eq(tile.chan0 + row),
                meta.row.eq(row),
                meta.grp.eq(grp),
                meta.row_end.eq(row_end),
                meta.logits.eq(tile.logits),
                meta.pool.eq(tile.pool),
                meta.phase.eq(tile.phase),
            ]
            for n in range(N):
                # Lane n of group g is column g*N + n: one (rows*G)-input mux per lane, indexed
                # by (row, group) at once.
                a_n = lane0 if n == 0 else a_lanes[n]
                s_n = Array(self.skip.payload[g * N + n] for g in range(G))[grp] if G > 1 \
                    else self.skip.payload[n]
                skip_term = Mux(tile.skip, k.skip_mult * s_n, 0)
                m.d.sync += [
                    beat.acc[n].eq(a_n),
                    beat.mult[n].eq(k.mult),
                    beat.offset[n].eq(k.offset + skip_term),
                    beat.shift[n].eq(k.shift),
                ]

    def _output(self, m, pact, meta):
        """PactUnit results to codes, the pool registers, ``out`` and ``logit``."""
        p = self._params
        R, C, A, N, G = p.rows, p.cols, p.abits, p.requant_lanes, _groups(p)
        half = C // 2
        y = pact.o.payload
        maxcode = (1 << A) - 1
        lane_codes = [Mux(y[n] < 0, 0, Mux(y[n] > maxcode, maxcode, y[n]))[:A]
                      for n in range(N)]
        # A row's first G - 1 groups wait in a collector; its last group completes it.
        collect = Signal(data.ArrayLayout(unsigned(A), max(C - N, 1)))
        codes = [collect[c] for c in range(C - N)] + lane_codes
        fire_part = pact.o.valid & ~meta.row_end
        with m.If(fire_part):
            for g in range(G - 1):
                with m.If(meta.grp == g):
                    m.d.sync += [collect[g * N + n].eq(lane_codes[n]) for n in range(N)]
        hmax = [_max(codes[2 * j], codes[2 * j + 1]) for j in range(half)]
        # Pool registers: row r holds, per half h, the pairwise maxima of phase h (dy = 0),
        # then their maxima with phase 2 + h's (dy = 1); at phase 3 that is the pooled word.
        pool = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(A), C), R))
        cur = pool[meta.row]
        upd = []
        for lane in range(C):
            mine = meta.phase[0] == lane // half
            new = Mux(meta.phase[1], _max(cur[lane], hmax[lane % half]), hmax[lane % half])
            upd.append(Mux(mine, new, cur[lane]))
        word = [Mux(meta.pool, upd[lane], codes[lane]) for lane in range(C)]
        word = Cat(*(Mux(lane < meta.lanes_valid, word[lane], 0) for lane in range(C)))

        lo, hi = -(1 << (LOGIT_BITS - 1)), (1 << (LOGIT_BITS - 1)) - 1
        emit = ~meta.logits & (~meta.pool | (meta.phase == 3))
        fire = pact.o.valid & pact.o.ready & meta.row_end
        m.d.comb += [
            self.out.valid.eq(pact.o.valid & meta.row_end & emit),
            self.out.payload.addr.eq(meta.addr),
            self.out.payload.data.eq(word),
            self.logit.valid.eq(pact.o.valid & meta.logits),
            self.logit.payload.index.eq(meta.index),
            self.logit.payload.value.eq(Mux(y[0] < lo, lo, Mux(y[0] > hi, hi, y[0]))),
            pact.o.ready.eq(Mux(~meta.row_end, 1,
                                Mux(meta.logits, self.logit.ready,
                                    Mux(emit, self.out.ready, 1)))),
        ]
        with m.If(fire & ~meta.logits & meta.pool):
            for r in range(R):
                with m.If(meta.row == r):
                    m.d.sync += pool[r].eq(Cat(*upd))
