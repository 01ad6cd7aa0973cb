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

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, Value, signed, unsigned
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


# The chip's stages hand their signals on in these records (see ``PactChip.elaborate``). Each is
# made once, by the stage that creates its signals, and only read afterwards.


@dataclass(frozen=True)
class _Layer:
    """The run's registers (copies of the CSRs, the bank select) and the current layer: its
    descriptor ``d`` and the values DECODE derives from it, registered."""

    flush: Value         # start accepted: clear every pipeline of a previous (aborted) run
    pc: Value
    in_addr: Value
    out_base: Value
    cur: Value           # bank holding the current layer's input
    desc_raw: Value
    d: data.View
    p_out: Value
    bpt: Value           # weight beats per channel tile: in_c * K * K * w_slices
    tile_bits: Value     # bits of one channel tile's beats
    nb_total: Value      # weight beats of the layer
    cw_in: Value         # words per input channel
    cw_out: Value        # words per output channel
    in_words: Value
    maxcode: Value
    kstep: Value         # lane offset step when ky advances: in_w - (K - 1)
    s_w: Value           # stride * in_w
    pad_w: Value         # pad * in_w
    out_lanes: Value     # lanes p < P_out (write-back mask)
    obase: Value         # out_base + o_addr


@dataclass(frozen=True)
class _Reads:
    """The read side: the command generator's registers and the head of its answers (``word``
    tagged ``tag``, present when ``rsp_ok``, consumed by ``take``)."""

    tagq: object         # a SyncFIFOBuffered of tags (reset by ``flush``)
    cmd_addr: Value
    cmd_left: Value
    cmd_tag: Value
    rsp_ok: Value
    tag: Value
    word: Value
    take: Value

    def load_segment(self, addr, count, tag):
        """Start ``count`` reads from ``addr``, tagged ``tag``. Only when ``cmd_left == 0``,
        so it never collides with a command being issued."""
        return [self.cmd_addr.eq(addr), self.cmd_left.eq(count), self.cmd_tag.eq(tag)]


@dataclass(frozen=True)
class _Loads:
    """What the read side has stored of the current layer: descriptor words, input planes
    (``in_plane``, one per ``in_pend``), constants (``cbuf``) and weight beats (``wbuf``)."""

    desc_k: Value
    in_k: Value
    in_ci: Value         # channels written to the bank
    in_pend: Value       # in_dense holds a complete channel: write it this cycle
    in_plane: Value
    cbuf: Memory
    c_k: Value
    c_loaded: Value
    wbuf: Memory
    gearbox: Gearbox
    w_loaded: Value

    def clear_layer(self):
        """Empty every load counter for the next layer."""
        return [self.desc_k.eq(0), self.in_k.eq(0), self.in_ci.eq(0), self.in_pend.eq(0),
                self.c_k.eq(0), self.c_loaded.eq(0), self.w_loaded.eq(0)]


@dataclass(frozen=True)
class _Tiles:
    """The issue side: the tile being issued and the position of its reduction."""

    running: Value       # tiles left to issue
    tile_on: Value       # a tile's reduction is being issued
    a_ch: Value          # first output channel of the tile being issued
    a_p0: Value          # first output position of the tile being issued
    wtile: Value         # first weight beat of the tile's channel tile
    ci: Value
    ky: Value
    kx: Value
    si: Value
    sj: Value
    koff: Value
    wa: Value
    ash: Value           # abits * si
    sh: Value            # wbits * sj + abits * si
    first: Value
    adv: Value


@dataclass(frozen=True)
class _Walker:
    """The walker: the next tile's per-column input origins (``nxt_*``, ready at ``wk_done``)
    and the current tile's (``cur_*``)."""

    nxt_lane0: list
    nxt_iy0: list
    nxt_ix0: list
    cur_lane0: list
    cur_iy0: list
    cur_ix0: list
    wk_busy: Value
    wk_done: Value
    wk_c: Value
    wk_x: Value
    wk_ix0: Value
    wk_iy0: Value
    wk_row: Value

    def kick(self, reset, L):
        """Start a walk; ``reset``: from the first output position (a new channel tile)."""
        stmts = [self.wk_busy.eq(1), self.wk_done.eq(0), self.wk_c.eq(0)]
        if reset:
            stmts += [self.wk_x.eq(0), self.wk_ix0.eq(-L.d.pad), self.wk_iy0.eq(-L.d.pad),
                      self.wk_row.eq(-L.pad_w)]
        return stmts


@dataclass(frozen=True)
class _Drain:
    """The drain's position: the result (``d_ch``, ``d_p0``) and row ``d_cnt`` it issues."""

    d_cnt: Value
    d_ch: Value          # first channel of the result being drained
    d_p0: Value
    d1_valid: Value
    d1_r: Value          # the row in the requantizer's input register
    d1_ok: Value         # that row is an output channel of the layer (else zero constants)
    d_co: Value          # the channel whose constants (and skip plane) are read
    d_move: Value


@dataclass(frozen=True)
class _Output:
    """The output side: where the PACT unit's row goes (``o_co``, positions ``o_p0``...), the
    bank write it makes and the logit it offers to memory."""

    o_r: Value
    o_ch: Value
    o_p0: Value
    o_pt: Value
    out_done: Value
    o_co: Value
    o_ok: Value
    o_fire: Value
    logit_wr: Value
    logit0: Value
    bank_wdata: Value
    bank_wen: Value


@dataclass(frozen=True)
class _WriteBack:
    """The background write-back of a PACT layer's output bank."""

    wb_on: Value         # a write-back is running; it has the write port
    wb_bank: Value       # the bank being written back
    wb_nch: Value        # its layer's out_c, words per channel, code bits, lanes
    wb_cw: Value
    wb_ob: Value
    wb_lanes: Value
    wb_rd: Value         # next plane to read
    wb_pvalid: Value     # the read port holds plane wb_rd - 1, not yet latched
    wb_have: Value       # wb_dense holds a plane being written
    wb_k: Value
    wb_addr: Value
    wb_dense: Value
    wb_adv: Value


@dataclass(frozen=True)
class _Segments:
    """RUN's read segments: per channel tile ``seg_ch``, its constants, then its weights."""

    seg_ch: Value
    seg_consts: Value    # next segment: the constants of tile seg_ch (else weights)
    seg_caddr: Value
    seg_wnext: Value
    seg_bits: Value
    seg_done: Value


@dataclass(frozen=True)
class _Decoded:
    """A layer's sizes, combinational from its descriptor (DECODE registers them)."""

    p_out: Value
    bpt: Value
    nb: Value
    cw_in: Value
    cw_out: Value
    bad: Value           # the layer does not fit the buffers, or is inconsistent


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

    ``elaborate`` builds the chip one stage at a time, in the order of the module docstring:
    each stage is a method that creates its signals and logic and hands them on in a small
    frozen record (``_Layer``, ``_Reads``, ``_Loads``, ...) to the stages that use them.
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
        # The stages are methods, not sub-components: a submodule would add a level of
        # hierarchy to the Verilog, and this chip's Verilog is frozen. They run in the order
        # of the signals' creation and of the statements, on which the Verilog depends too.
        m = Module()
        L = self._layer(m)
        rd = self._read_side(m, L)
        # _Loads' fields are, in order, what these two return.
        ld = _Loads(*self._load_input(m, L, rd), *self._load_consts_weights(m, L, rd))
        banks = self._banks(m)
        mac, pact = self._units(m, L)
        wbuf_r = ld.wbuf.read_port()
        cbuf_r = ld.cbuf.read_port()
        t = self._tile_state()
        wk = self._walker(m, L)
        issue, last_beat = self._issue(m, L, ld, t, wk)
        b_valid = self._mac_feed(m, L, t, wk, banks, mac, wbuf_r, issue, last_beat)
        dr = self._drain(m, L, ld, mac, pact, cbuf_r)
        self._requant_inputs(m, L, mac, pact, cbuf_r, banks, dr)
        wb_on = Signal()
        out = self._output(m, L, pact, wb_on)
        wb = self._write_back(m, banks, wb_on)
        self._write_port(m, L, out, wb)
        self._bank_ports(m, L, ld, t, banks, dr, out, wb)
        self._sequencer(m, L, rd, ld, t, wk, b_valid, dr, out, wb)
        return m

    def _layer(self, m):
        """CSR copies, the cycle counter, the descriptor and the layer's derived values."""
        p = self._p
        DW = fmt.descriptor_words(p.mem_width)
        flush = Signal()
        busy = self.busy
        pc = Signal(32)
        in_addr = Signal(32)
        out_base = Signal(32)
        cur = Signal()
        m.d.comb += flush.eq(self.start & ~busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        desc_raw = Signal(DW * p.mem_width)
        d = fmt.DESCRIPTOR(desc_raw[:fmt.DESCRIPTOR.size])

        # Per-layer derived values (registered in DECODE; the descriptor itself stays put).
        p_out = Signal(16)
        bpt = Signal(32)
        tile_bits = Signal(48)
        nb_total = Signal(40)
        cw_in = Signal(16)
        cw_out = Signal(16)
        in_words = Signal(32)
        maxcode = Signal(16)
        kstep = Signal(signed(16))
        s_w = Signal(16)
        pad_w = Signal(16)
        out_lanes = Signal(p.max_plane)
        obase = Signal(32)
        return _Layer(flush=flush, pc=pc, in_addr=in_addr, out_base=out_base, cur=cur,
                      desc_raw=desc_raw, d=d, p_out=p_out, bpt=bpt, tile_bits=tile_bits,
                      nb_total=nb_total, cw_in=cw_in, cw_out=cw_out, in_words=in_words,
                      maxcode=maxcode, kstep=kstep, s_w=s_w, pad_w=pad_w, out_lanes=out_lanes,
                      obase=obase)

    def _read_side(self, m, L):
        """DMA read side: the command generator (credits) and the tagged answer FIFOs."""
        p = self._p
        busy, error = self.busy, self.error
        # Credits: a read is issued only while fewer than ``max_reads`` tags wait for their
        # word to be taken, so every answer has a reserved place in ``rspq``. Both FIFOs are one
        # deeper than that: a SyncFIFOBuffered of depth N accepts a write only while its inner
        # memory (N - 1 entries) has room, which a level below N does not imply (an entry
        # moving to the output register); with at most ``max_reads`` entries in its inner
        # memory of ``max_reads``, ``w_rdy`` holds whenever an answer arrives.
        m.submodules.tagq = tagq = ResetInserter(L.flush)(fifo.SyncFIFOBuffered(
            width=2, depth=p.max_reads + 1))
        m.submodules.rspq = rspq = ResetInserter(L.flush)(fifo.SyncFIFOBuffered(
            width=p.mem_width, depth=p.max_reads + 1))
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
        return _Reads(tagq=tagq, cmd_addr=cmd_addr, cmd_left=cmd_left, cmd_tag=cmd_tag,
                      rsp_ok=rsp_ok, tag=tag, word=word, take=take)

    def _load_input(self, m, L, rd):
        """Descriptor words into ``desc_raw``; input tensor words into planes (lanes)."""
        p = self._p
        MW, PW = p.mem_width, p.plane_words
        d, tag, word, take = L.d, rd.tag, rd.word, rd.take
        desc_k = Signal(range(fmt.descriptor_words(MW) + 1))
        with m.If(take & _eq(tag, _TAG_DESC)):
            m.d.sync += [L.desc_raw.eq(Cat(L.desc_raw[MW:], word)), desc_k.eq(desc_k + 1)]

        # Input tensor: one plane per channel, expanded from dense codes into lanes.
        in_dense = Signal(PW * MW)
        in_k = Signal(16)
        in_ci = Signal(16)
        in_pend = Signal()
        with m.If(take & _eq(tag, _TAG_INPUT)):
            m.d.sync += in_k.eq(in_k + 1)
            for k in range(PW):
                with m.If(_eq(in_k, k)):
                    m.d.sync += in_dense[k * MW:(k + 1) * MW].eq(word)
            with m.If(in_k == L.cw_in - 1):
                m.d.sync += [in_k.eq(0), in_pend.eq(1)]
        with m.If(in_pend):
            m.d.sync += in_ci.eq(in_ci + 1)
            with m.If(~(take & _eq(tag, _TAG_INPUT) & (in_k == L.cw_in - 1))):
                m.d.sync += in_pend.eq(0)
        m.submodules.unpack = unpack = PlaneUnpack(lanes=p.max_plane, lane_bits=p.lane_bits,
                                                   dense_width=PW * MW)
        m.d.comb += [unpack.dense.eq(in_dense), unpack.bits.eq(d.in_bits)]
        return desc_k, in_k, in_ci, in_pend, unpack.plane

    def _load_consts_weights(self, m, L, rd):
        """Constant records into the constants buffer; weight words through the gearbox into
        the weight buffer, as beats. Drives ``take``."""
        p = self._p
        MW, CW = p.mem_width, fmt.consts_words(p.mem_width)
        tag, word, take = rd.tag, rd.word, rd.take
        # Constants: one record per output channel, into the constants buffer.
        m.submodules.cbuf = cbuf = Memory(shape=unsigned(fmt.CONSTS.size), depth=p.max_channels,
                                          init=[])
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
        m.submodules.wbuf = wbuf = Memory(shape=unsigned(p.beat_bits), depth=p.wbuf_depth,
                                          init=[])
        wbuf_w = wbuf.write_port()
        m.submodules.gearbox = gearbox = Gearbox(MW, p.beat_bits)
        w_loaded = Signal(40)
        gb_pop = Signal()
        m.d.comb += [
            gearbox.i.valid.eq(rd.rsp_ok & _eq(tag, _TAG_WEIGHT)),
            gearbox.i.payload.eq(word),
            # The bits after the layer's last beat are padding: never written.
            gearbox.o.ready.eq(w_loaded < L.nb_total),
            gb_pop.eq(gearbox.o.valid & gearbox.o.ready),
            wbuf_w.en.eq(gb_pop),
            wbuf_w.addr.eq(w_loaded),
            wbuf_w.data.eq(gearbox.o.payload),
        ]
        m.d.sync += w_loaded.eq(w_loaded + gb_pop)
        m.d.comb += take.eq(rd.rsp_ok & (~_eq(tag, _TAG_WEIGHT) | gearbox.i.ready))
        return cbuf, c_k, c_loaded, wbuf, gearbox, w_loaded

    def _banks(self, m):
        """The two activation banks, each as (compute read, write with lane enables,
        write-back read) ports."""
        p = self._p
        banks = []
        for b in range(2):
            mem = Memory(shape=unsigned(p.max_plane * p.lane_bits), depth=p.max_channels,
                         init=[])
            m.submodules[f"bank{b}"] = mem
            banks.append((mem.read_port(), mem.write_port(granularity=p.lane_bits),
                          mem.read_port()))
        return banks

    def _units(self, m, L):
        """The MAC array and the requantizer."""
        p = self._p
        m.submodules.mac = mac = ResetInserter(L.flush)(MacArray(
            wbits=p.wbits, abits=p.abits, rows=p.rows, cols=p.cols,
            max_reduction=p.max_reduction, max_shift=p.max_shift))
        # One requantizer serves both kinds of layer: it saturates to signed ``pact_bits``, and
        # clamping that to a narrower range equals clamping the exact value, as long as the
        # range holds both the logits' 16 bits and every PACT code (lane_bits + 1 bits signed).
        pact_bits = max(LOGIT_BITS, p.lane_bits + 1)
        m.submodules.pact = pact = ResetInserter(L.flush)(PactUnit(
            acc_width=p.acc_width, out_bits=pact_bits, lanes=p.cols, signed_out=True))
        return mac, pact

    @staticmethod
    def _tile_state():
        """The issue side's registers (driven by ``_issue``, ``_mac_feed`` and the sequencer)."""
        running = Signal()
        tile_on = Signal()
        a_ch = Signal(16)
        a_p0 = Signal(16)
        wtile = Signal(40)
        ci = Signal(16)
        ky = Signal(4)
        kx = Signal(4)
        si = Signal(3)
        sj = Signal(3)
        koff = Signal(signed(16))
        wa = Signal(40)
        ash = Signal(8)
        sh = Signal(8)
        first = Signal()
        adv = Signal()
        return _Tiles(running=running, tile_on=tile_on, a_ch=a_ch, a_p0=a_p0, wtile=wtile,
                      ci=ci, ky=ky, kx=kx, si=si, sj=sj, koff=koff, wa=wa, ash=ash, sh=sh,
                      first=first, adv=adv)

    def _walker(self, m, L):
        """Walker: one column per cycle, the next tile's per-column input origins."""
        C, d = self._p.cols, L.d
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

        with m.If(wk_busy):
            for c in range(C):
                with m.If(_eq(wk_c, c)):
                    m.d.sync += [nxt_lane0[c].eq(wk_row + wk_ix0), nxt_iy0[c].eq(wk_iy0),
                                 nxt_ix0[c].eq(wk_ix0)]
            with m.If(wk_x == d.out_w - 1):
                m.d.sync += [wk_x.eq(0), wk_ix0.eq(-d.pad), wk_iy0.eq(wk_iy0 + d.stride),
                             wk_row.eq(wk_row + L.s_w)]
            with m.Else():
                m.d.sync += [wk_x.eq(wk_x + 1), wk_ix0.eq(wk_ix0 + d.stride)]
            m.d.sync += wk_c.eq(wk_c + 1)
            with m.If(_eq(wk_c, C - 1)):
                m.d.sync += [wk_busy.eq(0), wk_done.eq(1), wk_c.eq(0)]
        return _Walker(nxt_lane0=nxt_lane0, nxt_iy0=nxt_iy0, nxt_ix0=nxt_ix0,
                       cur_lane0=cur_lane0, cur_iy0=cur_iy0, cur_ix0=cur_ix0, wk_busy=wk_busy,
                       wk_done=wk_done, wk_c=wk_c, wk_x=wk_x, wk_ix0=wk_ix0, wk_iy0=wk_iy0,
                       wk_row=wk_row)

    def _issue(self, m, L, ld, t, wk):
        """Stage A: the reduction's counters and addresses, one beat per cycle as long as its
        weight beat is loaded; tiles back to back. Returns ``(issue, last_beat)``."""
        p = self._p
        R, C, W, A = p.rows, p.cols, p.wbits, p.abits
        d = L.d
        last_j = t.sj == d.w_slices - 1
        last_i = t.si == d.a_slices - 1
        last_kx = t.kx == d.kernel - 1
        last_ky = t.ky == d.kernel - 1
        last_ci = t.ci == d.in_c - 1
        last_beat = last_j & last_i & last_kx & last_ky & last_ci
        last_pt = t.a_p0 + C >= L.p_out
        last_ct = t.a_ch + R >= d.out_c
        issue = Signal()
        m.d.comb += issue.eq(t.tile_on & t.adv & (t.wa < ld.w_loaded))

        with m.If(t.running & ~t.tile_on & wk.wk_done):
            self._start_tile(m, L, t, wk, last_pt, last_ct, t.wtile)

        # The tile after the current one (its origins are in the walker's registers).
        n_p0 = Mux(last_pt, 0, t.a_p0 + C)
        n_ch = Mux(last_pt, t.a_ch + R, t.a_ch)
        n_wtile = Mux(last_pt, t.wtile + L.bpt, t.wtile)
        with m.If(issue):
            m.d.sync += t.first.eq(0)
            with m.If(~last_j):
                m.d.sync += [t.sj.eq(t.sj + 1), t.wa.eq(t.wa + 1), t.sh.eq(t.sh + W)]
            with m.Elif(~last_i):
                m.d.sync += [t.sj.eq(0), t.si.eq(t.si + 1), t.wa.eq(t.wa - (d.w_slices - 1)),
                             t.ash.eq(t.ash + A), t.sh.eq(t.ash + A)]
            with m.Else():
                m.d.sync += [t.sj.eq(0), t.si.eq(0), t.wa.eq(t.wa + 1), t.ash.eq(0),
                             t.sh.eq(0)]
                with m.If(~last_kx):
                    m.d.sync += [t.kx.eq(t.kx + 1), t.koff.eq(t.koff + 1)]
                with m.Elif(~last_ky):
                    m.d.sync += [t.kx.eq(0), t.ky.eq(t.ky + 1), t.koff.eq(t.koff + L.kstep)]
                with m.Elif(~last_ci):
                    m.d.sync += [t.kx.eq(0), t.ky.eq(0), t.koff.eq(0), t.ci.eq(t.ci + 1)]
                with m.Else():
                    m.d.sync += [t.a_p0.eq(n_p0), t.a_ch.eq(n_ch), t.wtile.eq(n_wtile)]
                    with m.If(last_pt & last_ct):
                        m.d.sync += [t.tile_on.eq(0), t.running.eq(0)]
                    with m.Elif(wk.wk_done):
                        # Back to back: the next tile's first beat issues in the next cycle.
                        self._start_tile(m, L, t, wk, n_p0 + C >= L.p_out,
                                         n_ch + R >= d.out_c, n_wtile)
                    with m.Else():
                        m.d.sync += t.tile_on.eq(0)
        return issue, last_beat

    def _start_tile(self, m, L, t, wk, tile_last_pt, tile_last_ct, tile_wtile):
        """Begin the tile whose per-column origins the walker has ready (``wk_done``) and
        kick the walker for the tile after it, if any."""
        m.d.sync += [t.tile_on.eq(1), t.first.eq(1), t.ci.eq(0), t.ky.eq(0), t.kx.eq(0),
                     t.si.eq(0), t.sj.eq(0), t.koff.eq(0), t.ash.eq(0), t.sh.eq(0),
                     t.wa.eq(tile_wtile), wk.wk_done.eq(0)]
        for c in range(self._p.cols):
            m.d.sync += [wk.cur_lane0[c].eq(wk.nxt_lane0[c]), wk.cur_iy0[c].eq(wk.nxt_iy0[c]),
                         wk.cur_ix0[c].eq(wk.nxt_ix0[c])]
        with m.If(~(tile_last_pt & tile_last_ct)):
            with m.If(tile_last_pt):
                m.d.sync += wk.kick(True, L)
            with m.Else():
                m.d.sync += wk.kick(False, L)

    def _mac_feed(self, m, L, t, wk, banks, mac, wbuf_r, issue, last_beat):
        """Stage B: memory data and each column's lane (zero outside the input: padding) into
        the MAC array. Returns ``b_valid``."""
        p = self._p
        C, A, LB, MP = p.cols, p.abits, p.lane_bits, p.max_plane
        lane_idx = _bits_for(MP - 1)
        d = L.d
        b_valid = Signal()
        b_v = Signal(C)
        b_lane = [Signal(lane_idx, name=f"b_lane{c}") for c in range(C)]
        b_ash = Signal(8)
        b_sh = Signal(8)
        b_first = Signal()
        b_last = Signal()
        m.d.comb += t.adv.eq(~b_valid | mac.i.ready)
        with m.If(t.adv):
            m.d.sync += [b_valid.eq(issue), b_ash.eq(t.ash), b_sh.eq(t.sh), b_first.eq(t.first),
                         b_last.eq(last_beat)]
            for c in range(C):
                iy = wk.cur_iy0[c] + t.ky
                ix = wk.cur_ix0[c] + t.kx
                ok = (iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)
                m.d.sync += [b_v[c].eq(ok),
                             b_lane[c].eq((wk.cur_lane0[c] + t.koff)[:lane_idx])]
        m.d.comb += [wbuf_r.addr.eq(t.wa), wbuf_r.en.eq(t.adv)]
        plane = Signal(MP * LB)
        m.d.comb += plane.eq(Mux(L.cur, banks[1][0].data, banks[0][0].data))
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
        return b_valid

    def _drain(self, m, L, ld, mac, pact, cbuf_r):
        """Drain: one row (output channel) of a finished result per cycle into the PACT unit,
        once that channel's constants are loaded."""
        R, C = self._p.rows, self._p.cols
        d_cnt = Signal(range(R + 1))
        d_ch = Signal(16)
        d_p0 = Signal(16)
        d1_valid = Signal()
        d1_r = Signal(range(max(R, 2)))
        d1_ok = Signal()
        d_move = Signal()
        d_co = d_ch + d_cnt
        d_need = d_co < L.d.out_c
        d_issue = Signal()
        release = Signal()
        m.d.comb += [
            d_move.eq(~d1_valid | pact.i.ready),
            release.eq(d1_valid & pact.i.ready & _eq(d1_r, R - 1)),
            d_issue.eq(mac.o.valid & (d_cnt < R) & d_move & (~d_need | (d_co < ld.c_loaded))),
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
            with m.If(d_p0 + C >= L.p_out):
                m.d.sync += [d_p0.eq(0), d_ch.eq(d_ch + R)]
            with m.Else():
                m.d.sync += d_p0.eq(d_p0 + C)
        return _Drain(d_cnt=d_cnt, d_ch=d_ch, d_p0=d_p0, d1_valid=d1_valid, d1_r=d1_r,
                      d1_ok=d1_ok, d_co=d_co, d_move=d_move)

    def _requant_inputs(self, m, L, mac, pact, cbuf_r, banks, dr):
        """The drained row's accumulators and its channel's constants (plus, in a residual
        layer, the skip term) into the PACT unit."""
        p = self._p
        C, LB, AW = p.cols, p.lane_bits, p.acc_width
        lane_idx = _bits_for(p.max_plane - 1)
        d = L.d
        consts = fmt.CONSTS(cbuf_r.data)
        row_acc = Signal(C * AW)
        m.d.comb += row_acc.eq(_select(mac.o.payload.as_value(), dr.d1_r, C * AW))
        m.d.comb += pact.i.valid.eq(dr.d1_valid)
        # Residual layers: the bank this layer writes holds the skip tensor (the output of the
        # layer two before). Its plane d_co is read with the constants (same address timing,
        # the write-back read port of that bank, idle during this layer's RUN); lane d_p0 + c
        # of it is the skip code of column c. Nothing has written those lanes yet: only this
        # row's own PACT result will, a few cycles later.
        skip_plane = Signal(p.max_plane * LB)
        skip_codes = Signal(C * LB)
        m.d.comb += [
            skip_plane.eq(Mux(L.cur, banks[0][2].data, banks[1][2].data)),
            skip_codes.eq((Cat(skip_plane, Const(0, C * LB)) >> (dr.d_p0[:lane_idx] * LB))
                          [:C * LB]),
        ]
        for c in range(C):
            skip_term = Mux(d.skip, consts.skip_mult * skip_codes[c * LB:(c + 1) * LB], 0)
            m.d.comb += [
                pact.i.payload.acc[c].eq(row_acc[c * AW:(c + 1) * AW]),
                pact.i.payload.mult[c].eq(Mux(dr.d1_ok, consts.mult, 0)),
                # The image format keeps offset + skip_mult * skip inside 48 signed bits.
                pact.i.payload.offset[c].eq(Mux(dr.d1_ok, consts.offset + skip_term, 0)),
                pact.i.payload.shift[c].eq(Mux(dr.d1_ok, consts.shift, 1)),
            ]

    def _output(self, m, L, pact, wb_on):
        """Output side: PACT codes (clamped to the layer's range) for the other bank, or the
        logit of channel ``o_co`` for memory; which lanes of the plane a row writes."""
        p = self._p
        R, C, LB, MP = p.rows, p.cols, p.lane_bits, p.max_plane
        d = L.d
        o_r = Signal(range(max(R, 2)))
        o_ch = Signal(16)
        o_p0 = Signal(16)
        o_pt = Signal(16)
        out_done = Signal()
        o_co = o_ch + o_r
        o_ok = o_co < d.out_c
        o_fire = pact.o.valid & pact.o.ready
        logit_wr = Signal()
        nv = Mux(L.p_out - o_p0 >= C, C, L.p_out - o_p0)
        codes = []
        for c in range(C):
            y = pact.o.payload[c]
            codes.append(Mux(y < 0, 0, Mux(y > L.maxcode, L.maxcode, y))[:LB])
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
                with m.If(o_p0 + C >= L.p_out):
                    m.d.sync += [o_p0.eq(0), o_pt.eq(0), o_ch.eq(o_ch + R)]
                    with m.If(o_ch + R >= d.out_c):
                        m.d.sync += out_done.eq(1)
                with m.Else():
                    m.d.sync += [o_p0.eq(o_p0 + C), o_pt.eq(o_pt + 1)]
        return _Output(o_r=o_r, o_ch=o_ch, o_p0=o_p0, o_pt=o_pt, out_done=out_done, o_co=o_co,
                       o_ok=o_ok, o_fire=o_fire, logit_wr=logit_wr, logit0=logit0,
                       bank_wdata=bank_wdata, bank_wen=bank_wen)

    def _write_back(self, m, banks, wb_on):
        """Write-back (in the background): after a PACT layer, its output bank is compacted
        plane by plane to the dense tensor format and written to memory, one word per cycle,
        while the next layer runs (each bank has a second read port for it)."""
        p = self._p
        MW, LB, MP, PW = p.mem_width, p.lane_bits, p.max_plane, p.plane_words
        wb_bank = Signal()
        wb_nch = Signal(16)
        wb_cw = Signal(16)
        wb_ob = Signal(5)
        wb_lanes = Signal(MP)
        wb_rd = Signal(16)
        wb_pvalid = Signal()
        wb_have = Signal()
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
        return _WriteBack(wb_on=wb_on, wb_bank=wb_bank, wb_nch=wb_nch, wb_cw=wb_cw,
                          wb_ob=wb_ob, wb_lanes=wb_lanes, wb_rd=wb_rd, wb_pvalid=wb_pvalid,
                          wb_have=wb_have, wb_k=wb_k, wb_addr=wb_addr, wb_dense=wb_dense,
                          wb_adv=wb_adv)

    def _write_port(self, m, L, out, wb):
        """One write port: the write-back has priority over the logits."""
        with m.If(wb.wb_on):
            m.d.comb += [
                self.mem_wr.valid.eq(wb.wb_have),
                self.mem_wr.payload.addr.eq(wb.wb_addr),
                self.mem_wr.payload.data.eq(_select(wb.wb_dense, wb.wb_k, self._p.mem_width)),
            ]
        with m.Else():
            m.d.comb += [
                self.mem_wr.valid.eq(out.logit_wr),
                self.mem_wr.payload.addr.eq(L.obase + out.o_co),
                self.mem_wr.payload.data.eq(out.logit0.as_unsigned()),
            ]

    def _bank_ports(self, m, L, ld, t, banks, dr, out, wb):
        """Bank ports: the current bank is read by the compute and written by the input load;
        the other is written by the output side and read by the write-back."""
        MP = self._p.max_plane
        ch_idx = _bits_for(self._p.max_channels - 1)
        comp_addr = t.ci[:ch_idx]
        for b, (rp, wp, wbp) in enumerate(banks):
            is_cur = L.cur == b
            m.d.comb += [
                rp.addr.eq(comp_addr),
                rp.en.eq(t.adv),
            ]
            # The second read port: the write-back's while it reads this bank, else the drain's
            # skip read (a residual layer writes the bank whose write-back ended before it ran).
            with m.If(wb.wb_on & (wb.wb_bank == b)):
                m.d.comb += [wbp.addr.eq(wb.wb_rd[:ch_idx]), wbp.en.eq(wb.wb_adv)]
            with m.Else():
                m.d.comb += [wbp.addr.eq(dr.d_co[:ch_idx]), wbp.en.eq(dr.d_move)]
            with m.If(is_cur):
                m.d.comb += [
                    wp.addr.eq(ld.in_ci),
                    wp.data.eq(ld.in_plane),
                    wp.en.eq(Mux(ld.in_pend, (1 << MP) - 1, 0)),
                ]
            with m.Else():
                m.d.comb += [
                    wp.addr.eq(out.o_co),
                    wp.data.eq(out.bank_wdata),
                    wp.en.eq(Mux(out.o_fire & out.o_ok & ~L.d.logits, out.bank_wen, 0)),
                ]

    def _decode(self, m, L):
        """The layer's sizes and its checks, combinational from the descriptor."""
        p = self._p
        R, A, MW, LB = p.rows, p.abits, p.mem_width, p.lane_bits
        MP, MC = p.max_plane, p.max_channels
        LOG_MW = MW.bit_length() - 1
        d = L.d
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
        return _Decoded(p_out=dec_p_out, bpt=dec_bpt, nb=dec_nb, cw_in=dec_cw_in,
                        cw_out=dec_cw_out, bad=bad)

    def _latch_layer(self, m, L, dec):
        """DECODE: register the layer's derived values."""
        d, MP = L.d, self._p.max_plane
        m.d.sync += [
            L.p_out.eq(dec.p_out), L.bpt.eq(dec.bpt),
            L.tile_bits.eq(dec.bpt * self._p.beat_bits), L.nb_total.eq(dec.nb),
            L.cw_in.eq(dec.cw_in), L.cw_out.eq(dec.cw_out),
            L.in_words.eq(d.in_c * dec.cw_in),
            L.maxcode.eq(Mux(d.logits, 0, (Const(1, 17) << d.out_bits) - 1)),
            L.kstep.eq(d.in_w - (d.kernel - 1)), L.s_w.eq(d.stride * d.in_w),
            L.pad_w.eq(d.pad * d.in_w),
            L.out_lanes.eq(Cat(*(Const(q) < dec.p_out for q in range(MP)))),
            L.obase.eq(L.out_base + d.o_addr),
        ]

    def _abort_on_memory_error(self, m, state):
        # A read response without a request: the program stops where it is.
        with m.If(self.error[2]):
            m.d.sync += state.eq(_S_DONE)

    def _sequencer(self, m, L, rd, ld, t, wk, b_valid, dr, out, wb):
        """The sequencer (see the module docstring): one layer after the other."""
        p = self._p
        DW = fmt.descriptor_words(p.mem_width)
        d, busy, done, error = L.d, self.busy, self.done, self.error
        seg_ch = Signal(16)
        seg_consts = Signal()
        seg_caddr = Signal(32)
        seg_wnext = Signal(40)
        seg_bits = Signal(48)
        seg_done = Signal()
        seg = _Segments(seg_ch=seg_ch, seg_consts=seg_consts, seg_caddr=seg_caddr,
                        seg_wnext=seg_wnext, seg_bits=seg_bits, seg_done=seg_done)
        dec = self._decode(m, L)
        state = Signal(range(_S_DONE + 1))

        with m.If(_eq(state, _S_IDLE)):
            with m.If(self.start):
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), self.cycles.eq(0),
                             self.mac_beats.eq(0), self.layer.eq(0), L.cur.eq(0),
                             L.pc.eq(self.prog_addr), L.in_addr.eq(self.in_addr),
                             L.out_base.eq(self.out_base), L.nb_total.eq(0)]
                m.d.sync += ld.clear_layer()
                m.d.comb += ld.gearbox.clear.eq(1)
                # Pipelines a memory error may have stopped mid-way start empty.
                m.d.sync += [t.running.eq(0), t.tile_on.eq(0), b_valid.eq(0),
                             dr.d1_valid.eq(0), dr.d_cnt.eq(0), wk.wk_busy.eq(0),
                             wk.wk_done.eq(0), wb.wb_on.eq(0)]
                m.d.sync += rd.load_segment(self.prog_addr, DW, _TAG_DESC)
                m.d.sync += state.eq(_S_FETCH)
        with m.Elif(_eq(state, _S_FETCH)):
            with m.If(ld.desc_k == DW):
                m.d.sync += state.eq(_S_DECODE)
            self._abort_on_memory_error(m, state)
        with m.Elif(_eq(state, _S_DECODE)):
            self._latch_layer(m, L, dec)
            with m.If(_eq(d.op, fmt.OP_END)):
                m.d.sync += state.eq(_S_FINISH)
            with m.Elif(~_eq(d.op, fmt.OP_CONV)):
                m.d.sync += error.eq(error | ERR_UNKNOWN_OP)
                m.d.sync += state.eq(_S_FINISH)
            with m.Elif(dec.bad):
                m.d.sync += error.eq(error | ERR_BUFFER)
                m.d.sync += state.eq(_S_FINISH)
            with m.Else():
                m.d.sync += state.eq(_S_SETUP)
        with m.Elif(_eq(state, _S_SETUP)):
            # A write-back still running reads the previous layer's output bank, which is this
            # layer's input bank (cur): loading an input into it must wait. This layer writes
            # the other bank, and its RUN does not end before that write-back has (so the
            # write-back never overlaps a layer that writes its bank).
            with m.If(d.in_from_mem & ~wb.wb_on):
                m.d.sync += rd.load_segment(L.in_addr, L.in_words, _TAG_INPUT)
                m.d.sync += state.eq(_S_LOADIN)
            with m.Elif(~d.in_from_mem):
                m.d.sync += state.eq(_S_RUN0)
        with m.Elif(_eq(state, _S_LOADIN)):
            with m.If((ld.in_ci == d.in_c) & ~ld.in_pend):
                m.d.sync += state.eq(_S_RUN0)
            self._abort_on_memory_error(m, state)
        with m.Elif(_eq(state, _S_RUN0)):
            m.d.sync += [
                t.running.eq(1), t.tile_on.eq(0), t.a_ch.eq(0), t.a_p0.eq(0), t.wtile.eq(0),
                dr.d_cnt.eq(0), dr.d_ch.eq(0), dr.d_p0.eq(0),
                out.o_r.eq(0), out.o_ch.eq(0), out.o_p0.eq(0), out.o_pt.eq(0),
                out.out_done.eq(0),
                seg_ch.eq(0), seg_consts.eq(1), seg_caddr.eq(d.c_addr), seg_wnext.eq(0),
                seg_bits.eq(0), seg_done.eq(0),
            ]
            m.d.sync += wk.kick(True, L)
            m.d.sync += state.eq(_S_RUN)
        with m.Elif(_eq(state, _S_RUN)):
            self._load_segments(m, L, rd, seg)
            with m.If(out.out_done & seg_done & ~rd.cmd_left.any() & ~rd.tagq.level.any()
                      & (d.logits | ~wb.wb_on)):
                with m.If(~d.logits):
                    m.d.sync += [wb.wb_on.eq(1), wb.wb_bank.eq(~L.cur), wb.wb_nch.eq(d.out_c),
                                 wb.wb_cw.eq(L.cw_out), wb.wb_ob.eq(d.out_bits),
                                 wb.wb_lanes.eq(L.out_lanes), wb.wb_rd.eq(0),
                                 wb.wb_pvalid.eq(0), wb.wb_have.eq(0), wb.wb_k.eq(0),
                                 wb.wb_addr.eq(L.obase)]
                m.d.sync += state.eq(_S_NEXT)
            self._abort_on_memory_error(m, state)
        with m.Elif(_eq(state, _S_FINISH)):
            with m.If(~wb.wb_on):
                m.d.sync += state.eq(_S_DONE)
            self._abort_on_memory_error(m, state)
        with m.Elif(_eq(state, _S_NEXT)):
            m.d.sync += [L.pc.eq(L.pc + DW), self.layer.eq(self.layer + 1)]
            m.d.sync += ld.clear_layer()
            m.d.comb += ld.gearbox.clear.eq(1)
            m.d.sync += rd.load_segment(L.pc + DW, DW, _TAG_DESC)
            with m.If(~d.logits):
                m.d.sync += L.cur.eq(~L.cur)
            m.d.sync += state.eq(_S_FETCH)
        with m.Else():  # DONE
            m.d.sync += [busy.eq(0), done.eq(1), t.running.eq(0), wb.wb_on.eq(0),
                         rd.cmd_left.eq(0)]
            m.d.sync += state.eq(_S_IDLE)

    def _load_segments(self, m, L, rd, seg):
        """RUN: the next read segment once the last is issued: per channel tile, its
        constants, then its weight words up to the end of its beats."""
        p = self._p
        R, MW, CW = p.rows, p.mem_width, fmt.consts_words(p.mem_width)
        LOG_MW = MW.bit_length() - 1
        d = L.d
        seg_ch, seg_consts, seg_caddr = seg.seg_ch, seg.seg_consts, seg.seg_caddr
        seg_wnext, seg_bits, seg_done = seg.seg_wnext, seg.seg_bits, seg.seg_done
        with m.If(~rd.cmd_left.any() & ~seg_done):
            with m.If(seg_consts):
                nch = Mux(d.out_c - seg_ch >= R, R, d.out_c - seg_ch)
                m.d.sync += rd.load_segment(seg_caddr, nch * CW, _TAG_CONST)
                m.d.sync += [seg_consts.eq(0), seg_caddr.eq(seg_caddr + R * CW)]
            with m.Else():
                bits_end = seg_bits + L.tile_bits
                wend = (bits_end + MW - 1) >> LOG_MW
                m.d.sync += rd.load_segment(d.w_addr + seg_wnext, wend - seg_wnext,
                                            _TAG_WEIGHT)
                m.d.sync += [seg_wnext.eq(wend), seg_bits.eq(bits_end),
                             seg_consts.eq(1), seg_ch.eq(seg_ch + R)]
                with m.If(seg_ch + R >= d.out_c):
                    m.d.sync += seg_done.eq(1)
