"""The chip, ``pact_chip``: a whole PACT network runs on one MAC array and one PACT unit.

Microarchitecture (one layer at a time, each layer one convolution descriptor):

- **Sequencer**: ``IDLE -> FETCH`` (descriptor words) ``-> DECODE`` (checks, derived sizes)
  ``-> SETUP -> LOADIN`` (input tensor from memory into the current bank, only for
  ``in_from_mem``) ``-> RUN`` (weights and constants stream in while the array computes)
  ``-> NEXT`` (swap banks, next descriptor). ``OP_END`` or a bad descriptor ends the program
  (``FINISH`` waits for the last write-back, then ``done``).
- **DMA read side**: a command generator issues word reads in *segments* (descriptor, input
  tensor, and per tile of ``rows`` output channels: that tile's constants, then the weight
  words up to the end of that tile's beats). Each command pushes a tag into a FIFO, and a
  command is issued only while fewer than ``max_reads`` tags wait for their word to be taken
  (credits), so every response has a reserved place in the data FIFO and
  ``mem_rd_data.ready`` stays high. A response without an outstanding read (or, by
  construction never, without room) sets error bit 2.
- **Weight buffer** (``wbuf_depth`` beats of ``rows * wbits`` bits): a gearbox turns memory
  words into beats; the array may read beat ``b`` as soon as it has been written, so the weight
  load overlaps the compute of the first position tile (a scoreboard, not double buffering).
  The whole layer's weights stay, so every further position tile reuses them.
- **Activation banks**: two memories of ``max_channels`` words, one word = one channel plane of
  ``max_plane`` lanes of ``lane_bits = max(abits, max_bits)`` bits. A layer reads one bank and
  its PACT codes go into the other (lane write enables).
- **Compute**: tiles of ``rows`` output channels x ``cols`` consecutive output positions
  (row-major), channel tiles outer, position tiles inner. Per tile the reduction runs over
  ``ci, ky, kx``, activation slice ``i``, weight slice ``j`` (one beat each, shift
  ``wbits*j + abits*i``). A *walker* computes, one column per cycle during the previous tile,
  each column's input origin; per beat each column picks its lane from the plane (zero outside
  the input: padding). Two pipeline stages (addresses, then memory data + lane select) feed the
  MacArray; one beat per cycle.
- **Drain**: each finished ``rows x cols`` result goes one row (channel) per cycle through a
  ``cols``-lane PactUnit (signed 16-bit saturation) with that channel's constants; PACT layers
  clamp to ``[0, 2**out_bits - 1]`` and write the bank, logits (1x1 output) are written to
  memory directly, one word per channel. The drain overlaps the next tile's reduction.
- **Residual layers** (descriptor ``skip``): the bank a layer writes still holds the output of
  the layer two before (the banks ping-pong), which is the skip tensor. The drain reads plane
  ``r`` of it with channel ``r``'s constants, on that bank's second read port (the write-back
  reads the other bank meanwhile), and gives lane ``c`` the offset ``B + skip_mult * skip[r,
  p0 + c]`` (one ``32 x lane_bits`` multiplier per column). Each skip code is read once, before
  this row's own PACT result overwrites it in place; nothing else writes those lanes.
- **Write-back**: after a PACT layer, a background engine compacts each output plane to the
  dense tensor format and writes it, one memory word per cycle, while the next layer runs (the
  banks have a second read port for it); it has priority on the write port over the logits.
  The next layer reads that bank too but writes the other one, and does not finish before the
  write-back has; an input load into that bank waits for it. So the layer after next, which
  writes that bank again (and a residual one reads its skip from it), starts after the
  write-back is over.

Exactness: the MacArray accumulators are ``acc_width`` bits for ``max_reduction =
max_channels * 15**2 * w_slices_max * a_slices_max`` beats shifted by at most ``max_shift`` (see
``ChipParams``), so no layer a descriptor can express without an error flag overflows.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.integer import LOGIT_BITS

from . import chip_format as fmt
from .gearbox import Gearbox
from .mac_array import MacArray, accumulator_width
from .pact_unit import PactUnit
from .params import check_int
from .plane_codec import PlanePack, PlaneUnpack

__all__ = ["ChipParams", "PactChip", "write_layout", "KERNEL_MAX",
           "ERR_UNKNOWN_OP", "ERR_BUFFER", "ERR_MEMORY"]

#: Largest kernel a descriptor can express (4-bit field).
KERNEL_MAX = 15
#: ``error`` bits.
ERR_UNKNOWN_OP, ERR_BUFFER, ERR_MEMORY = 1, 2, 4

_TAG_DESC, _TAG_INPUT, _TAG_CONST, _TAG_WEIGHT = range(4)
# Sequencer states (an If/Elif chain, not m.FSM: its Verilog has no incomplete case).
(_S_IDLE, _S_FETCH, _S_DECODE, _S_SETUP, _S_LOADIN, _S_RUN0, _S_RUN, _S_NEXT, _S_FINISH,
 _S_DONE) = range(10)


def write_layout(mem_width):
    """Payload of ``mem_wr``: ``addr`` in bits ``[0, 32)``, ``data`` above it."""
    return data.StructLayout({"addr": unsigned(fmt.ADDR_BITS), "data": unsigned(mem_width)})


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class ChipParams:
    """The chip's parameters (validated) and the sizes derived from them."""

    wbits: int
    abits: int
    rows: int
    cols: int
    mem_width: int = 64
    max_bits: int = 8
    max_channels: int = 64
    max_plane: int = 64
    wbuf_depth: int = 4096
    max_reads: int = 16

    def __post_init__(self):
        check_int("wbits", self.wbits, 2, 16)
        check_int("abits", self.abits, 2, 16)
        check_int("rows", self.rows, 1, 64)
        check_int("cols", self.cols, 1, 64)
        check_int("mem_width", self.mem_width, 16, 1024)
        if self.mem_width & (self.mem_width - 1):
            raise ValueError(f"mem_width must be a power of two, not {self.mem_width}")
        check_int("max_bits", self.max_bits, 2, 16)
        check_int("max_channels", self.max_channels, 1, 4095)
        check_int("max_plane", self.max_plane, 1, 4096)
        check_int("wbuf_depth", self.wbuf_depth, 1, 1 << 20)
        check_int("max_reads", self.max_reads, 2, 256)
        for name, n in (("weight", self.w_slices_max), ("activation", self.a_slices_max)):
            if n > 7:
                raise ValueError(f"max_bits {self.max_bits} needs {n} {name} slices on this "
                                 "array; a descriptor holds at most 7: raise wbits/abits or "
                                 "lower max_bits")
        if self.acc_width > 64:
            raise ValueError(f"the accumulators would need {self.acc_width} bits (> 64); "
                             "lower max_channels or max_bits")

    @property
    def lane_bits(self):
        """Bits of one activation code in the banks."""
        return max(self.abits, self.max_bits)

    @property
    def w_slices_max(self):
        return fmt.weight_slices(self.max_bits, self.wbits)

    @property
    def a_slices_max(self):
        return fmt.activation_slices(self.max_bits, self.abits)

    @property
    def max_shift(self):
        """Largest per-beat shift: top weight slice and top activation slice."""
        return self.wbits * (self.w_slices_max - 1) + self.abits * (self.a_slices_max - 1)

    @property
    def max_reduction(self):
        """Most beats in one reduction: channels x 15x15 kernel x slices."""
        return self.max_channels * KERNEL_MAX ** 2 * self.w_slices_max * self.a_slices_max

    @property
    def acc_width(self):
        return accumulator_width(self.wbits, self.abits, self.max_reduction, self.max_shift)

    @property
    def beat_bits(self):
        return self.rows * self.wbits

    @property
    def plane_bits(self):
        return self.max_plane * self.lane_bits

    @property
    def plane_words(self):
        """Memory words of the densest plane (``max_plane`` codes of ``lane_bits``)."""
        return _ceil_div(self.plane_bits, self.mem_width)

    def derived(self):
        """The derived sizes, for the manifest."""
        return {
            "lane_bits": self.lane_bits,
            "w_slices_max": self.w_slices_max,
            "a_slices_max": self.a_slices_max,
            "max_shift": self.max_shift,
            "max_reduction": self.max_reduction,
            "acc_width": self.acc_width,
            "beat_bits": self.beat_bits,
            "plane_bits": self.plane_bits,
            "descriptor_words": fmt.descriptor_words(self.mem_width),
            "consts_words": fmt.consts_words(self.mem_width),
            "max_reads_in_flight": self.max_reads,
            "bank_bits": 2 * self.max_channels * self.plane_bits,
            "wbuf_bits": self.wbuf_depth * self.beat_bits,
            "macs_per_cycle": self.rows * self.cols,
        }


def _eq(value, const):
    """``value == const`` (as ``~value.any()`` for 0: Amaranth's ``== 0`` becomes a Verilog
    ``!`` of a vector, which Verilator flags as a truncation)."""
    return ~value.any() if const == 0 else value == const


def _select(value, index, width):
    """Word ``index`` of ``width`` bits of ``value``: a full-width shift, then a constant slice
    (``word_select`` would assign a wide shift to a narrow net: a Verilator truncation)."""
    return (value >> (index * width))[:width]


def _div_by_const(value, divisor, value_max):
    """``value // divisor`` for ``0 <= value <= value_max`` as a multiply and a shift (a Verilog
    division would be a large, lint-unclean block). The constants are the smallest exact ones,
    checked here for every value in range."""
    if divisor & (divisor - 1) == 0:
        return value >> (divisor.bit_length() - 1)
    for shift in range(1, 64):
        mult = -(-(1 << shift) // divisor)
        if all((x * mult) >> shift == x // divisor for x in range(value_max + 1)):
            return (value * mult) >> shift
    raise AssertionError(f"no multiply-shift division by {divisor} up to {value_max}")


def _bits_for(n):
    """Unsigned bits that hold ``0..n``."""
    return max(1, int(n).bit_length())


class PactChip(wiring.Component):
    """The whole chip (see the module docstring). Verilog module name: ``pact_chip``.

    Ports (CSRs sampled at ``start``): ``start`` (one-cycle pulse, ignored while busy),
    ``prog_addr``, ``in_addr``, ``out_base`` (word addresses); ``busy``; ``done`` (from the end
    of a program until the next start); ``cycles`` (since start, frozen at done); ``error``
    (sticky: bit 0 unknown op, bit 1 a layer does not fit the buffers or the descriptor is
    inconsistent, e.g. logits with a skip, bit 2 a read response without a request);
    ``layer`` (descriptor index);
    ``mac_beats`` (beats accepted by the MAC array since start). Memory master: ``mem_rd_cmd``
    (word address), ``mem_rd_data`` (in request order, any latency >= 1), ``mem_wr``
    (``write_layout``). At most ``max_reads`` reads are in flight.

    Timing of a layer (memory latency ``L``, no back-pressure): descriptor fetch ``DW + L + 3``
    cycles; for ``in_from_mem`` the input load (one word per cycle); then one MAC beat per
    cycle (``mac_beats``) from about ``L + 2 * rows * consts_words`` cycles after the run
    starts (the first tile's constants come first, then its weights stream in faster than
    they are used); the last tile drains in ``rows + 5`` cycles. The write-back of a PACT
    layer (one word per cycle) overlaps the next layer. The digits CNN on 8x8 at 4 bits runs
    its conv layers at 96% of peak (``bench/chip_utilization.py``).
    """

    def __init__(self, params):
        if not isinstance(params, ChipParams):
            raise TypeError(f"params must be a ChipParams, not {params!r}")
        self._p = params
        mw = params.mem_width
        super().__init__({
            "start": In(1),
            "prog_addr": In(fmt.ADDR_BITS),
            "in_addr": In(fmt.ADDR_BITS),
            "out_base": In(fmt.ADDR_BITS),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(32),
            "error": Out(4),
            "layer": Out(8),
            "mac_beats": Out(32),
            "mem_rd_cmd": Out(stream.Signature(unsigned(fmt.ADDR_BITS))),
            "mem_rd_data": In(stream.Signature(unsigned(mw))),
            "mem_wr": Out(stream.Signature(write_layout(mw))),
        })

    params = property(lambda self: self._p, doc="The ``ChipParams``.")

    def elaborate(self, platform):
        p = self._p
        m = Module()
        R, C, W, A = p.rows, p.cols, p.wbits, p.abits
        MW, LB, MP, MC = p.mem_width, p.lane_bits, p.max_plane, p.max_channels
        RW, PW = p.beat_bits, p.plane_words
        DW, CW = fmt.descriptor_words(MW), fmt.consts_words(MW)
        LOG_MW = MW.bit_length() - 1
        lane_idx = _bits_for(MP - 1)
        ch_idx = _bits_for(MC - 1)

        # ------------------------------------------------------------------ CSRs, state
        flush = Signal()  # start accepted: clear every pipeline of a previous (aborted) run
        busy, done = self.busy, self.done
        error = self.error
        pc = Signal(32)
        in_addr = Signal(32)
        out_base = Signal(32)
        cur = Signal()  # bank holding the current layer's input
        m.d.comb += flush.eq(self.start & ~busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        desc_raw = Signal(DW * MW)
        d = fmt.DESCRIPTOR(desc_raw[:fmt.DESCRIPTOR.size])

        # Per-layer derived values (registered in DECODE; the descriptor itself stays put).
        p_out = Signal(16)
        bpt = Signal(32)         # weight beats per channel tile: in_c * K * K * w_slices
        tile_bits = Signal(48)   # bits of one channel tile's beats
        nb_total = Signal(40)    # weight beats of the layer
        cw_in = Signal(16)       # words per input channel
        cw_out = Signal(16)      # words per output channel
        in_words = Signal(32)
        maxcode = Signal(16)
        kstep = Signal(signed(16))   # lane offset step when ky advances: in_w - (K - 1)
        s_w = Signal(16)             # stride * in_w
        pad_w = Signal(16)           # pad * in_w
        out_lanes = Signal(MP)       # lanes p < P_out (write-back mask)
        obase = Signal(32)           # out_base + o_addr

        # ------------------------------------------------------------------ DMA read side
        # Credits: a read is issued only while fewer than ``max_reads`` tags wait for their
        # word to be taken, so every answer has a reserved place in ``rspq``. Both FIFOs are one
        # deeper than that: a SyncFIFOBuffered of depth N accepts a write only while its inner
        # memory (N - 1 entries) has room, which a level below N does not imply (an entry
        # moving to the output register); with at most ``max_reads`` entries in its inner
        # memory of ``max_reads``, ``w_rdy`` holds whenever an answer arrives.
        m.submodules.tagq = tagq = ResetInserter(flush)(fifo.SyncFIFOBuffered(
            width=2, depth=p.max_reads + 1))
        m.submodules.rspq = rspq = ResetInserter(flush)(fifo.SyncFIFOBuffered(
            width=MW, depth=p.max_reads + 1))
        cmd_addr = Signal(32)
        cmd_left = Signal(32)
        cmd_tag = Signal(2)
        cmd_fire = Signal()
        m.d.comb += [
            self.mem_rd_cmd.valid.eq(cmd_left.any() & (tagq.level < p.max_reads)),
            self.mem_rd_cmd.payload.eq(cmd_addr),
            cmd_fire.eq(self.mem_rd_cmd.valid & self.mem_rd_cmd.ready),
            tagq.w_en.eq(cmd_fire),
            tagq.w_data.eq(cmd_tag),
        ]
        with m.If(cmd_fire):
            m.d.sync += [cmd_addr.eq(cmd_addr + 1), cmd_left.eq(cmd_left - 1)]

        def load_segment(addr, count, tag):
            # Only when cmd_left == 0, so it never collides with cmd_fire.
            return [cmd_addr.eq(addr), cmd_left.eq(count), cmd_tag.eq(tag)]

        # Responses: every read is tagged, so the data FIFO never overflows (credits).
        inflight = Signal(range(p.max_reads + 2))
        rsp_in = self.mem_rd_data.valid & self.mem_rd_data.ready
        m.d.comb += [
            self.mem_rd_data.ready.eq(1),
            rspq.w_en.eq(rsp_in & inflight.any()),
            rspq.w_data.eq(self.mem_rd_data.payload),
        ]
        m.d.sync += inflight.eq(inflight + cmd_fire - (rsp_in & inflight.any()))
        # An answer without a request, or (impossible with the credits above) one with no room.
        with m.If(rsp_in & (~inflight.any() | ~rspq.w_rdy) & busy):
            m.d.sync += error.eq(error | ERR_MEMORY)

        rsp_ok = rspq.r_rdy & tagq.r_rdy
        tag, word = tagq.r_data, rspq.r_data
        take = Signal()
        m.d.comb += [rspq.r_en.eq(take), tagq.r_en.eq(take)]

        # Descriptor words.
        desc_k = Signal(range(DW + 1))
        with m.If(take & _eq(tag, _TAG_DESC)):
            m.d.sync += [desc_raw.eq(Cat(desc_raw[MW:], word)), desc_k.eq(desc_k + 1)]

        # Input tensor: one plane per channel, expanded from dense codes into lanes.
        in_dense = Signal(PW * MW)
        in_k = Signal(16)
        in_ci = Signal(16)      # channels written to the bank
        in_pend = Signal()      # in_dense holds a complete channel: write it this cycle
        with m.If(take & _eq(tag, _TAG_INPUT)):
            m.d.sync += in_k.eq(in_k + 1)
            for k in range(PW):
                with m.If(_eq(in_k, k)):
                    m.d.sync += in_dense[k * MW:(k + 1) * MW].eq(word)
            with m.If(in_k == cw_in - 1):
                m.d.sync += [in_k.eq(0), in_pend.eq(1)]
        with m.If(in_pend):
            m.d.sync += in_ci.eq(in_ci + 1)
            with m.If(~(take & _eq(tag, _TAG_INPUT) & (in_k == cw_in - 1))):
                m.d.sync += in_pend.eq(0)
        m.submodules.unpack = unpack = PlaneUnpack(lanes=MP, lane_bits=LB,
                                                   dense_width=PW * MW)
        m.d.comb += [unpack.dense.eq(in_dense), unpack.bits.eq(d.in_bits)]
        in_plane = unpack.plane

        # Constants: one record per output channel, into the constants buffer.
        m.submodules.cbuf = cbuf = Memory(shape=unsigned(fmt.CONSTS.size), depth=MC, init=[])
        cbuf_w = cbuf.write_port()
        c_raw = Signal(CW * MW)
        c_k = Signal(range(CW + 1))
        c_loaded = Signal(16)
        with m.If(take & _eq(tag, _TAG_CONST)):
            m.d.sync += [c_raw.eq(Cat(c_raw[MW:], word)), c_k.eq(c_k + 1)]
            with m.If(c_k == CW - 1):
                m.d.sync += [c_k.eq(0), c_loaded.eq(c_loaded + 1)]
                m.d.comb += [
                    cbuf_w.en.eq(1),
                    cbuf_w.addr.eq(c_loaded),
                    cbuf_w.data.eq(Cat(c_raw[MW:], word)),
                ]

        # Weights: gearbox from words to beats, into the weight buffer.
        m.submodules.wbuf = wbuf = Memory(shape=unsigned(RW), depth=p.wbuf_depth, init=[])
        wbuf_w = wbuf.write_port()
        m.submodules.gearbox = gearbox = Gearbox(MW, RW)
        w_loaded = Signal(40)
        gb_pop = Signal()
        m.d.comb += [
            gearbox.i.valid.eq(rsp_ok & _eq(tag, _TAG_WEIGHT)),
            gearbox.i.payload.eq(word),
            # The bits after the layer's last beat are padding: never written.
            gearbox.o.ready.eq(w_loaded < nb_total),
            gb_pop.eq(gearbox.o.valid & gearbox.o.ready),
            wbuf_w.en.eq(gb_pop),
            wbuf_w.addr.eq(w_loaded),
            wbuf_w.data.eq(gearbox.o.payload),
        ]
        m.d.sync += w_loaded.eq(w_loaded + gb_pop)
        m.d.comb += take.eq(rsp_ok & (~_eq(tag, _TAG_WEIGHT) | gearbox.i.ready))

        # ------------------------------------------------------------------ banks
        banks = []
        for b in range(2):
            mem = Memory(shape=unsigned(MP * LB), depth=MC, init=[])
            m.submodules[f"bank{b}"] = mem
            # Ports: compute read, write (lane enables), write-back read.
            banks.append((mem.read_port(), mem.write_port(granularity=LB), mem.read_port()))

        # ------------------------------------------------------------------ compute
        m.submodules.mac = mac = ResetInserter(flush)(MacArray(
            wbits=W, abits=A, rows=R, cols=C, max_reduction=p.max_reduction,
            max_shift=p.max_shift))
        # One requantizer serves both kinds of layer: it saturates to signed ``pact_bits``, and
        # clamping that to a narrower range equals clamping the exact value, as long as the
        # range holds both the logits' 16 bits and every PACT code (lane_bits + 1 bits signed).
        pact_bits = max(LOGIT_BITS, LB + 1)
        m.submodules.pact = pact = ResetInserter(flush)(PactUnit(
            acc_width=p.acc_width, out_bits=pact_bits, lanes=C, signed_out=True))
        wbuf_r = wbuf.read_port()
        cbuf_r = cbuf.read_port()

        running = Signal()   # tiles left to issue
        tile_on = Signal()   # a tile's reduction is being issued
        a_ch = Signal(16)    # first output channel of the tile being issued
        a_p0 = Signal(16)    # first output position of the tile being issued
        wtile = Signal(40)   # first weight beat of the tile's channel tile
        ci = Signal(16)
        ky = Signal(4)
        kx = Signal(4)
        si = Signal(3)
        sj = Signal(3)
        koff = Signal(signed(16))
        wa = Signal(40)
        ash = Signal(8)      # abits * si
        sh = Signal(8)       # wbits * sj + abits * si
        first = Signal()
        adv = Signal()

        # Walker: the next tile's per-column input origins.
        LSW = 24
        nxt_lane0 = [Signal(signed(LSW), name=f"nxt_lane0_{c}") for c in range(C)]
        nxt_iy0 = [Signal(signed(12), name=f"nxt_iy0_{c}") for c in range(C)]
        nxt_ix0 = [Signal(signed(12), name=f"nxt_ix0_{c}") for c in range(C)]
        cur_lane0 = [Signal(signed(LSW), name=f"cur_lane0_{c}") for c in range(C)]
        cur_iy0 = [Signal(signed(12), name=f"cur_iy0_{c}") for c in range(C)]
        cur_ix0 = [Signal(signed(12), name=f"cur_ix0_{c}") for c in range(C)]
        wk_busy = Signal()
        wk_done = Signal()
        wk_c = Signal(range(max(C, 2)))
        wk_x = Signal(8)
        wk_ix0 = Signal(signed(12))
        wk_iy0 = Signal(signed(12))
        wk_row = Signal(signed(LSW))

        def walker_kick(reset):
            stmts = [wk_busy.eq(1), wk_done.eq(0), wk_c.eq(0)]
            if reset:
                stmts += [wk_x.eq(0), wk_ix0.eq(-d.pad), wk_iy0.eq(-d.pad),
                          wk_row.eq(-pad_w)]
            return stmts

        with m.If(wk_busy):
            for c in range(C):
                with m.If(_eq(wk_c, c)):
                    m.d.sync += [nxt_lane0[c].eq(wk_row + wk_ix0), nxt_iy0[c].eq(wk_iy0),
                                 nxt_ix0[c].eq(wk_ix0)]
            with m.If(wk_x == d.out_w - 1):
                m.d.sync += [wk_x.eq(0), wk_ix0.eq(-d.pad), wk_iy0.eq(wk_iy0 + d.stride),
                             wk_row.eq(wk_row + s_w)]
            with m.Else():
                m.d.sync += [wk_x.eq(wk_x + 1), wk_ix0.eq(wk_ix0 + d.stride)]
            m.d.sync += wk_c.eq(wk_c + 1)
            with m.If(_eq(wk_c, C - 1)):
                m.d.sync += [wk_busy.eq(0), wk_done.eq(1), wk_c.eq(0)]

        # Stage A: counters and addresses.
        last_j = sj == d.w_slices - 1
        last_i = si == d.a_slices - 1
        last_kx = kx == d.kernel - 1
        last_ky = ky == d.kernel - 1
        last_ci = ci == d.in_c - 1
        last_beat = last_j & last_i & last_kx & last_ky & last_ci
        last_pt = a_p0 + C >= p_out
        last_ct = a_ch + R >= d.out_c
        issue = Signal()
        m.d.comb += issue.eq(tile_on & adv & (wa < w_loaded))

        def start_tile(tile_last_pt, tile_last_ct, tile_wtile):
            """Begin the tile whose per-column origins the walker has ready (``wk_done``) and
            kick the walker for the tile after it, if any."""
            m.d.sync += [tile_on.eq(1), first.eq(1), ci.eq(0), ky.eq(0), kx.eq(0), si.eq(0),
                         sj.eq(0), koff.eq(0), ash.eq(0), sh.eq(0), wa.eq(tile_wtile),
                         wk_done.eq(0)]
            for c in range(C):
                m.d.sync += [cur_lane0[c].eq(nxt_lane0[c]), cur_iy0[c].eq(nxt_iy0[c]),
                             cur_ix0[c].eq(nxt_ix0[c])]
            with m.If(~(tile_last_pt & tile_last_ct)):
                with m.If(tile_last_pt):
                    m.d.sync += walker_kick(True)
                with m.Else():
                    m.d.sync += walker_kick(False)

        with m.If(running & ~tile_on & wk_done):
            start_tile(last_pt, last_ct, wtile)

        # The tile after the current one (its origins are in the walker's registers).
        n_p0 = Mux(last_pt, 0, a_p0 + C)
        n_ch = Mux(last_pt, a_ch + R, a_ch)
        n_wtile = Mux(last_pt, wtile + bpt, wtile)
        with m.If(issue):
            m.d.sync += first.eq(0)
            with m.If(~last_j):
                m.d.sync += [sj.eq(sj + 1), wa.eq(wa + 1), sh.eq(sh + W)]
            with m.Elif(~last_i):
                m.d.sync += [sj.eq(0), si.eq(si + 1), wa.eq(wa - (d.w_slices - 1)),
                             ash.eq(ash + A), sh.eq(ash + A)]
            with m.Else():
                m.d.sync += [sj.eq(0), si.eq(0), wa.eq(wa + 1), ash.eq(0), sh.eq(0)]
                with m.If(~last_kx):
                    m.d.sync += [kx.eq(kx + 1), koff.eq(koff + 1)]
                with m.Elif(~last_ky):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1), koff.eq(koff + kstep)]
                with m.Elif(~last_ci):
                    m.d.sync += [kx.eq(0), ky.eq(0), koff.eq(0), ci.eq(ci + 1)]
                with m.Else():
                    m.d.sync += [a_p0.eq(n_p0), a_ch.eq(n_ch), wtile.eq(n_wtile)]
                    with m.If(last_pt & last_ct):
                        m.d.sync += [tile_on.eq(0), running.eq(0)]
                    with m.Elif(wk_done):
                        # Back to back: the next tile's first beat issues in the next cycle.
                        start_tile(n_p0 + C >= p_out, n_ch + R >= d.out_c, n_wtile)
                    with m.Else():
                        m.d.sync += tile_on.eq(0)

        # Stage B: memory data, lane select, into the MAC array.
        b_valid = Signal()
        b_v = Signal(C)
        b_lane = [Signal(lane_idx, name=f"b_lane{c}") for c in range(C)]
        b_ash = Signal(8)
        b_sh = Signal(8)
        b_first = Signal()
        b_last = Signal()
        m.d.comb += adv.eq(~b_valid | mac.i.ready)
        with m.If(adv):
            m.d.sync += [b_valid.eq(issue), b_ash.eq(ash), b_sh.eq(sh), b_first.eq(first),
                         b_last.eq(last_beat)]
            for c in range(C):
                iy = cur_iy0[c] + ky
                ix = cur_ix0[c] + kx
                ok = (iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)
                m.d.sync += [b_v[c].eq(ok), b_lane[c].eq((cur_lane0[c] + koff)[:lane_idx])]
        m.d.comb += [wbuf_r.addr.eq(wa), wbuf_r.en.eq(adv)]
        plane = Signal(MP * LB)
        m.d.comb += plane.eq(Mux(cur, banks[1][0].data, banks[0][0].data))
        beat = mac.i.payload
        m.d.comb += [
            mac.i.valid.eq(b_valid),
            beat.w.eq(wbuf_r.data),
            beat.shift.eq(b_sh),
            beat.first.eq(b_first),
            beat.last.eq(b_last),
        ]
        for c in range(C):
            code = Mux(b_v[c], _select(plane, b_lane[c], LB), 0)
            m.d.comb += beat.a[c].eq((code >> b_ash)[:A])
        with m.If(mac.i.valid & mac.i.ready):
            m.d.sync += self.mac_beats.eq(self.mac_beats + 1)

        # Drain: one row (output channel) per cycle into the PACT unit.
        d_cnt = Signal(range(R + 1))
        d_ch = Signal(16)        # first channel of the result being drained
        d_p0 = Signal(16)
        d1_valid = Signal()
        d1_r = Signal(range(max(R, 2)))
        d1_ok = Signal()
        d_move = Signal()
        d_co = d_ch + d_cnt
        d_need = d_co < d.out_c
        d_issue = Signal()
        release = Signal()
        m.d.comb += [
            d_move.eq(~d1_valid | pact.i.ready),
            release.eq(d1_valid & pact.i.ready & _eq(d1_r, R - 1)),
            d_issue.eq(mac.o.valid & (d_cnt < R) & d_move & (~d_need | (d_co < c_loaded))),
            cbuf_r.addr.eq(d_co),
            cbuf_r.en.eq(d_move),
            mac.o.ready.eq(release),
        ]
        with m.If(d_move):
            m.d.sync += [d1_valid.eq(d_issue), d1_r.eq(d_cnt), d1_ok.eq(d_need)]
        with m.If(d_issue):
            m.d.sync += d_cnt.eq(d_cnt + 1)
        with m.If(release):
            m.d.sync += d_cnt.eq(0)
            with m.If(d_p0 + C >= p_out):
                m.d.sync += [d_p0.eq(0), d_ch.eq(d_ch + R)]
            with m.Else():
                m.d.sync += d_p0.eq(d_p0 + C)
        consts = fmt.CONSTS(cbuf_r.data)
        AW = p.acc_width
        row_acc = Signal(C * AW)
        m.d.comb += row_acc.eq(_select(mac.o.payload.as_value(), d1_r, C * AW))
        m.d.comb += pact.i.valid.eq(d1_valid)
        # Residual layers: the bank this layer writes holds the skip tensor (the output of the
        # layer two before). Its plane d_co is read with the constants (same address timing,
        # the write-back read port of that bank, idle during this layer's RUN); lane d_p0 + c
        # of it is the skip code of column c. Nothing has written those lanes yet: only this
        # row's own PACT result will, a few cycles later.
        skip_plane = Signal(MP * LB)
        skip_codes = Signal(C * LB)
        m.d.comb += [
            skip_plane.eq(Mux(cur, banks[0][2].data, banks[1][2].data)),
            skip_codes.eq((Cat(skip_plane, Const(0, C * LB)) >> (d_p0[:lane_idx] * LB))
                          [:C * LB]),
        ]
        for c in range(C):
            skip_term = Mux(d.skip, consts.skip_mult * skip_codes[c * LB:(c + 1) * LB], 0)
            m.d.comb += [
                pact.i.payload.acc[c].eq(row_acc[c * AW:(c + 1) * AW]),
                pact.i.payload.mult[c].eq(Mux(d1_ok, consts.mult, 0)),
                # The image format keeps offset + skip_mult * skip inside 48 signed bits.
                pact.i.payload.offset[c].eq(Mux(d1_ok, consts.offset + skip_term, 0)),
                pact.i.payload.shift[c].eq(Mux(d1_ok, consts.shift, 1)),
            ]

        # Output side: PACT codes into the other bank, or logits into memory.
        wb_on = Signal()         # a write-back is running (below); it has the write port
        o_r = Signal(range(max(R, 2)))
        o_ch = Signal(16)
        o_p0 = Signal(16)
        o_pt = Signal(16)
        out_done = Signal()
        o_co = o_ch + o_r
        o_ok = o_co < d.out_c
        o_fire = pact.o.valid & pact.o.ready
        logit_wr = Signal()
        nv = Mux(p_out - o_p0 >= C, C, p_out - o_p0)
        codes = []
        for c in range(C):
            y = pact.o.payload[c]
            codes.append(Mux(y < 0, 0, Mux(y > maxcode, maxcode, y))[:LB])
        lo, hi = -(1 << (LOGIT_BITS - 1)), (1 << (LOGIT_BITS - 1)) - 1
        y0 = pact.o.payload[0]
        logit0 = Mux(y0 < lo, lo, Mux(y0 > hi, hi, y0))[:LOGIT_BITS].as_signed()
        group_data = Cat(*codes)
        bank_wdata = Cat(*([group_data] * _ceil_div(MP, C)))[:MP * LB]
        bank_wen = Signal(MP)
        for q in range(MP):
            m.d.comb += bank_wen[q].eq(_eq(o_pt, q // C) & (q % C < nv))
        m.d.comb += [
            logit_wr.eq(pact.o.valid & o_ok & d.logits & ~wb_on),
            pact.o.ready.eq(~(o_ok & d.logits) | (self.mem_wr.ready & ~wb_on)),
        ]
        with m.If(o_fire):
            m.d.sync += o_r.eq(o_r + 1)
            with m.If(_eq(o_r, R - 1)):
                m.d.sync += o_r.eq(0)
                with m.If(o_p0 + C >= p_out):
                    m.d.sync += [o_p0.eq(0), o_pt.eq(0), o_ch.eq(o_ch + R)]
                    with m.If(o_ch + R >= d.out_c):
                        m.d.sync += out_done.eq(1)
                with m.Else():
                    m.d.sync += [o_p0.eq(o_p0 + C), o_pt.eq(o_pt + 1)]

        # Write-back (in the background): after a PACT layer, its output bank is compacted
        # plane by plane to the dense tensor format and written to memory, one word per cycle,
        # while the next layer runs (each bank has a second read port for it).
        wb_bank = Signal()       # the bank being written back
        wb_nch = Signal(16)      # its layer's out_c, words per channel, code bits, lanes
        wb_cw = Signal(16)
        wb_ob = Signal(5)
        wb_lanes = Signal(MP)
        wb_rd = Signal(16)       # next plane to read
        wb_pvalid = Signal()     # the read port holds plane wb_rd - 1, not yet latched
        wb_have = Signal()       # wb_dense holds a plane being written
        wb_k = Signal(16)
        wb_addr = Signal(32)
        wb_dense = Signal(PW * MW)
        wb_plane = Signal(MP * LB)
        wb_fire = Signal()
        wb_latch = Signal()
        wb_adv = Signal()
        wb_issue = Signal()
        m.d.comb += wb_plane.eq(Mux(wb_bank, banks[1][2].data, banks[0][2].data))
        m.submodules.pack = pack = PlanePack(lanes=MP, lane_bits=LB, dense_width=PW * MW)
        m.d.comb += [pack.plane.eq(wb_plane), pack.valid.eq(wb_lanes), pack.bits.eq(wb_ob)]
        compact = pack.dense
        wb_last_word = wb_k == wb_cw - 1
        m.d.comb += [
            wb_fire.eq(wb_on & wb_have & self.mem_wr.ready),
            wb_latch.eq(wb_pvalid & (~wb_have | (wb_fire & wb_last_word))),
            wb_adv.eq(~wb_pvalid | wb_latch),
            wb_issue.eq(wb_on & wb_adv & (wb_rd < wb_nch)),
        ]
        with m.If(wb_adv):
            m.d.sync += wb_pvalid.eq(wb_issue)
        with m.If(wb_issue):
            m.d.sync += wb_rd.eq(wb_rd + 1)
        with m.If(wb_fire):
            m.d.sync += [wb_addr.eq(wb_addr + 1), wb_k.eq(wb_k + 1)]
            with m.If(wb_last_word):
                m.d.sync += wb_have.eq(0)
        with m.If(wb_latch):
            m.d.sync += [wb_dense.eq(compact), wb_have.eq(1), wb_k.eq(0)]
        with m.If(wb_on & (wb_rd == wb_nch) & ~wb_pvalid & ~wb_have):
            m.d.sync += wb_on.eq(0)

        # One write port: the write-back has priority over the logits.
        with m.If(wb_on):
            m.d.comb += [
                self.mem_wr.valid.eq(wb_have),
                self.mem_wr.payload.addr.eq(wb_addr),
                self.mem_wr.payload.data.eq(_select(wb_dense, wb_k, MW)),
            ]
        with m.Else():
            m.d.comb += [
                self.mem_wr.valid.eq(logit_wr),
                self.mem_wr.payload.addr.eq(obase + o_co),
                self.mem_wr.payload.data.eq(logit0.as_unsigned()),
            ]

        # Bank ports: the current bank is read by the compute and written by the input load;
        # the other is written by the output side and read by the write-back.
        comp_addr = ci[:ch_idx]
        for b, (rp, wp, wbp) in enumerate(banks):
            is_cur = cur == b
            m.d.comb += [
                rp.addr.eq(comp_addr),
                rp.en.eq(adv),
            ]
            # The second read port: the write-back's while it reads this bank, else the drain's
            # skip read (a residual layer writes the bank whose write-back ended before it ran).
            with m.If(wb_on & (wb_bank == b)):
                m.d.comb += [wbp.addr.eq(wb_rd[:ch_idx]), wbp.en.eq(wb_adv)]
            with m.Else():
                m.d.comb += [wbp.addr.eq(d_co[:ch_idx]), wbp.en.eq(d_move)]
            with m.If(is_cur):
                m.d.comb += [
                    wp.addr.eq(in_ci),
                    wp.data.eq(in_plane),
                    wp.en.eq(Mux(in_pend, (1 << MP) - 1, 0)),
                ]
            with m.Else():
                m.d.comb += [
                    wp.addr.eq(o_co),
                    wp.data.eq(bank_wdata),
                    wp.en.eq(Mux(o_fire & o_ok & ~d.logits, bank_wen, 0)),
                ]

        # ------------------------------------------------------------------ sequencer
        seg_ch = Signal(16)
        seg_consts = Signal()    # next segment: the constants of tile seg_ch (else weights)
        seg_caddr = Signal(32)
        seg_wnext = Signal(40)
        seg_bits = Signal(48)
        seg_done = Signal()

        # DECODE values, combinational from the descriptor.
        dec_p_in = d.in_h * d.in_w
        dec_p_out = d.out_h * d.out_w
        dec_bpt = d.in_c * (d.kernel * d.kernel) * d.w_slices
        n_ct = _div_by_const(d.out_c + R - 1, R, (1 << len(d.out_c)) + R - 2)
        dec_nb = n_ct * dec_bpt
        dec_cw_in = (dec_p_in * d.in_bits + MW - 1) >> LOG_MW
        dec_cw_out = (dec_p_out * d.out_bits + MW - 1) >> LOG_MW
        bad = Signal()
        m.d.comb += bad.eq(
            _eq(d.in_c, 0) | (d.in_c > MC) | _eq(d.out_c, 0) | (d.out_c > MC)
            | _eq(dec_p_in, 0) | (dec_p_in > MP) | _eq(dec_p_out, 0)
            | (~d.logits & (dec_p_out > MP)) | (d.logits & (dec_p_out != 1))
            | _eq(d.kernel, 0) | _eq(d.stride, 0)
            | _eq(d.w_slices, 0) | (d.w_slices > p.w_slices_max)
            | _eq(d.a_slices, 0) | (d.a_slices > p.a_slices_max)
            | _eq(d.in_bits, 0) | (d.in_bits > LB) | (d.in_bits > d.a_slices * A)
            | (~d.logits & (_eq(d.out_bits, 0) | (d.out_bits > LB)))
            | (d.logits & (d.out_bits != LOGIT_BITS)) | (d.logits & d.skip)
            | (dec_nb > p.wbuf_depth))

        def clear_layer():
            return [desc_k.eq(0), in_k.eq(0), in_ci.eq(0), in_pend.eq(0), c_k.eq(0),
                    c_loaded.eq(0), w_loaded.eq(0)]

        state = Signal(range(_S_DONE + 1))

        def abort_on_memory_error():
            # A read response without a request: the program stops where it is.
            with m.If(error[2]):
                m.d.sync += state.eq(_S_DONE)

        with m.If(_eq(state, _S_IDLE)):
            with m.If(self.start):
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), self.cycles.eq(0),
                             self.mac_beats.eq(0), self.layer.eq(0), cur.eq(0),
                             pc.eq(self.prog_addr), in_addr.eq(self.in_addr),
                             out_base.eq(self.out_base), nb_total.eq(0)]
                m.d.sync += clear_layer()
                m.d.comb += gearbox.clear.eq(1)
                # Pipelines a memory error may have stopped mid-way start empty.
                m.d.sync += [running.eq(0), tile_on.eq(0), b_valid.eq(0), d1_valid.eq(0),
                             d_cnt.eq(0), wk_busy.eq(0), wk_done.eq(0), wb_on.eq(0)]
                m.d.sync += load_segment(self.prog_addr, DW, _TAG_DESC)
                m.d.sync += state.eq(_S_FETCH)
        with m.Elif(_eq(state, _S_FETCH)):
            with m.If(desc_k == DW):
                m.d.sync += state.eq(_S_DECODE)
            abort_on_memory_error()
        with m.Elif(_eq(state, _S_DECODE)):
            m.d.sync += [
                p_out.eq(dec_p_out), bpt.eq(dec_bpt),
                tile_bits.eq(dec_bpt * RW), nb_total.eq(dec_nb),
                cw_in.eq(dec_cw_in), cw_out.eq(dec_cw_out),
                in_words.eq(d.in_c * dec_cw_in),
                maxcode.eq(Mux(d.logits, 0, (Const(1, 17) << d.out_bits) - 1)),
                kstep.eq(d.in_w - (d.kernel - 1)), s_w.eq(d.stride * d.in_w),
                pad_w.eq(d.pad * d.in_w),
                out_lanes.eq(Cat(*(Const(q) < dec_p_out for q in range(MP)))),
                obase.eq(out_base + d.o_addr),
            ]
            with m.If(_eq(d.op, fmt.OP_END)):
                m.d.sync += state.eq(_S_FINISH)
            with m.Elif(~_eq(d.op, fmt.OP_CONV)):
                m.d.sync += error.eq(error | ERR_UNKNOWN_OP)
                m.d.sync += state.eq(_S_FINISH)
            with m.Elif(bad):
                m.d.sync += error.eq(error | ERR_BUFFER)
                m.d.sync += state.eq(_S_FINISH)
            with m.Else():
                m.d.sync += state.eq(_S_SETUP)
        with m.Elif(_eq(state, _S_SETUP)):
            # A write-back still running reads the previous layer's output bank, which is this
            # layer's input bank (cur): loading an input into it must wait. This layer writes
            # the other bank, and its RUN does not end before that write-back has (so the
            # write-back never overlaps a layer that writes its bank).
            with m.If(d.in_from_mem & ~wb_on):
                m.d.sync += load_segment(in_addr, in_words, _TAG_INPUT)
                m.d.sync += state.eq(_S_LOADIN)
            with m.Elif(~d.in_from_mem):
                m.d.sync += state.eq(_S_RUN0)
        with m.Elif(_eq(state, _S_LOADIN)):
            with m.If((in_ci == d.in_c) & ~in_pend):
                m.d.sync += state.eq(_S_RUN0)
            abort_on_memory_error()
        with m.Elif(_eq(state, _S_RUN0)):
            m.d.sync += [
                running.eq(1), tile_on.eq(0), a_ch.eq(0), a_p0.eq(0), wtile.eq(0),
                d_cnt.eq(0), d_ch.eq(0), d_p0.eq(0),
                o_r.eq(0), o_ch.eq(0), o_p0.eq(0), o_pt.eq(0), out_done.eq(0),
                seg_ch.eq(0), seg_consts.eq(1), seg_caddr.eq(d.c_addr), seg_wnext.eq(0),
                seg_bits.eq(0), seg_done.eq(0),
            ]
            m.d.sync += walker_kick(True)
            m.d.sync += state.eq(_S_RUN)
        with m.Elif(_eq(state, _S_RUN)):
            with m.If(~cmd_left.any() & ~seg_done):
                with m.If(seg_consts):
                    nch = Mux(d.out_c - seg_ch >= R, R, d.out_c - seg_ch)
                    m.d.sync += load_segment(seg_caddr, nch * CW, _TAG_CONST)
                    m.d.sync += [seg_consts.eq(0), seg_caddr.eq(seg_caddr + R * CW)]
                with m.Else():
                    bits_end = seg_bits + tile_bits
                    wend = (bits_end + MW - 1) >> LOG_MW
                    m.d.sync += load_segment(d.w_addr + seg_wnext, wend - seg_wnext,
                                             _TAG_WEIGHT)
                    m.d.sync += [seg_wnext.eq(wend), seg_bits.eq(bits_end),
                                 seg_consts.eq(1), seg_ch.eq(seg_ch + R)]
                    with m.If(seg_ch + R >= d.out_c):
                        m.d.sync += seg_done.eq(1)
            with m.If(out_done & seg_done & ~cmd_left.any() & ~tagq.level.any()
                      & (d.logits | ~wb_on)):
                with m.If(~d.logits):
                    m.d.sync += [wb_on.eq(1), wb_bank.eq(~cur), wb_nch.eq(d.out_c),
                                 wb_cw.eq(cw_out), wb_ob.eq(d.out_bits), wb_lanes.eq(out_lanes),
                                 wb_rd.eq(0), wb_pvalid.eq(0), wb_have.eq(0), wb_k.eq(0),
                                 wb_addr.eq(obase)]
                m.d.sync += state.eq(_S_NEXT)
            abort_on_memory_error()
        with m.Elif(_eq(state, _S_FINISH)):
            with m.If(~wb_on):
                m.d.sync += state.eq(_S_DONE)
            abort_on_memory_error()
        with m.Elif(_eq(state, _S_NEXT)):
            m.d.sync += [pc.eq(pc + DW), self.layer.eq(self.layer + 1)]
            m.d.sync += clear_layer()
            m.d.comb += gearbox.clear.eq(1)
            m.d.sync += load_segment(pc + DW, DW, _TAG_DESC)
            with m.If(~d.logits):
                m.d.sync += cur.eq(~cur)
            m.d.sync += state.eq(_S_FETCH)
        with m.Else():  # DONE
            m.d.sync += [busy.eq(0), done.eq(1), running.eq(0), wb_on.eq(0),
                         cmd_left.eq(0)]
            m.d.sync += state.eq(_S_IDLE)
        return m
