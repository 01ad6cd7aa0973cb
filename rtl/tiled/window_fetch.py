"""Window fetch: the activation operand of the MAC array, one beat of ``cols`` codes per cycle.

For one (input channel, kernel row) of a tile the columns read a window of consecutive pixels of
one input row: column ``c`` at kernel column ``kx`` takes pixel ``stride*c + kx`` of it. The
window spans a few activation words (``params.window_words`` at most); they are read from the
two banks of ``ActMemory`` two at a time into a window register, while the previous window's
beats go out (double buffer), and each column picks its code with a small mux.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .act_memory import read_port_signature
from .format import row_words
from .params import STRIDE_MAX, TiledParams, ceil_div

__all__ = ["WindowFetch", "cmd_layout", "beat_layout", "window_command", "mux_tree"]


def cmd_layout(params):
    """Payload of ``WindowFetch.cmd``: one window and how its beats are cut.

    - ``addr``: activation word address of window word 0;
    - ``zmask``: bit ``i`` set: window word ``i`` reads as zeros and is not read (outside the
      row or the tensor: padding);
    - ``off``: lane of the window's first pixel in word 0 (``0..cols-1``);
    - ``kernel``: kernel columns (``1..max_kernel``); ``stride``: 1 or 2;
    - ``reps``: beats per kernel column (the weight slices, ``1..7``).
    """
    return data.StructLayout({
        "addr": unsigned(params.act_addr_bits),
        "zmask": unsigned(params.window_words),
        "off": unsigned((params.cols - 1).bit_length()),
        "kernel": unsigned(params.max_kernel.bit_length()),
        "stride": unsigned(STRIDE_MAX.bit_length()),
        "reps": unsigned(3),
    })


def window_command(params, *, base, shape, ci, y, x0, kernel, stride, pad, reps):
    """The command (a dict of ``cmd_layout`` fields) for input channel ``ci`` and input row
    ``y`` (``oy*stride - pad + ky``; outside ``0..H-1`` it is padding) of the tile whose first
    output pixel is ``x0``, the input ``[C, H, W]`` tensor ``shape`` being at activation word
    ``base`` (``rtl.tiled.format``). Column ``c`` then reads input pixel
    ``(x0 + c)*stride - pad + kx``: words left or right of the row are masked, and pixels past
    ``W`` inside the row's last word are 0 by the word format. The address is taken modulo
    ``2**act_addr_bits``, as the hardware adds (a masked word left of address 0)."""
    if not (1 <= kernel <= params.max_kernel and 1 <= stride <= STRIDE_MAX and 1 <= reps <= 7):
        raise ValueError(f"kernel {kernel}, stride {stride}, reps {reps} outside "
                         f"1..{params.max_kernel}, 1..{STRIDE_MAX}, 1..7")
    _, h, w = shape
    rw = row_words(w, params)
    j0, off = divmod(x0 * stride - pad, params.cols)
    inside = 0 <= y < h
    zmask = sum(1 << i for i in range(params.window_words)
                if not (inside and 0 <= j0 + i < rw))
    addr = base + (ci * h + y) * rw + j0 if inside else base
    return {"addr": addr % (1 << params.act_addr_bits), "zmask": zmask, "off": off,
            "kernel": kernel, "stride": stride, "reps": reps}


def beat_layout(params):
    """Payload of ``WindowFetch.beats``: one code per column (the MAC array's ``a``)."""
    return data.ArrayLayout(unsigned(params.abits), params.cols)


def mux_tree(values, sel):
    """``values[sel]`` as a tree of 2:1 muxes (lint-clean, unlike a variable shift or an
    incomplete case); an index past the end selects the last value."""
    level = list(values)
    for b in range(len(sel)):
        if len(level) % 2:
            level.append(level[-1])
        level = [Mux(sel[b], level[i + 1], level[i]) for i in range(0, len(level), 2)]
    return level[0]


class WindowFetch(wiring.Component):
    """Activation beats for the MAC array from windows of the activation memory.

    Ports:

    - ``cmd``: In(stream of ``cmd_layout``): one window per command.
    - ``beats``: Out(stream of ``beat_layout``): per command, for ``kx`` in
      ``0..kernel-1``, ``reps`` times the beat whose column ``c`` is
      ``window[off + stride*c + kx]``, where ``window`` is the lanes of window words
      ``0, 1, ...`` (word ``i`` = activation word ``(addr + i) mod 2**act_addr_bits``, or
      zeros when ``zmask[i]``). ``window_command`` builds the command of a convolution row.
    - ``rd0``, ``rd1``: Out(``act_memory.read_port_signature``): connect to ``ActMemory.rd0``
      and ``rd1`` (even and odd bank). Only the words the command needs are read:
      ``0 .. (off + stride*(cols-1) + kernel - 1) // cols``, minus the masked ones; words past
      that count are neither read nor used.
    - ``idle``: Out(1): no command held, no beat left to send.

    Timing. A command takes ``n = (off + stride*(cols-1) + kernel - 1) // (2*cols) + 1``
    fetch cycles (two words per cycle; the first in the cycle the command is accepted). Its
    first beat is valid ``n`` cycles after the command is accepted when a window register is
    free (the last pair of words is forwarded from the memory ports straight to ``beats``).
    The next command's window is fetched while the current one's beats go out, so with
    ``kernel * reps >= n`` and no back-pressure one beat leaves per cycle, including across
    commands. Measured (tests/test_tiled_window_fetch.py, cols 8, max_kernel 8, reps 1,
    random ``off`` and addresses, ``beats`` always ready): kernel 3 stride 1: 1.0 beat/cycle;
    kernel 3 stride 2: 1.0; kernel 1 stride 1: 1.0; kernel 1 stride 2: 0.57 (0.5 when the
    window spans 3 words, ``off >= 2``, n = 2; 1.0 with reps 2).

    Paths: ``cmd.ready`` and ``beats.valid`` come from registers only (neither depends on
    ``beats.ready`` or ``cmd.valid``). The first pair is read in the accepting cycle, so
    ``cmd.payload`` reaches ``rd*.addr``/``rd*.en`` through a small adder: give ``cmd`` from
    a register. ``beats.payload`` is combinational from the window registers and the memory
    ports (a mux tree of ``cols + c + max_kernel - 1`` lanes for column ``c``). There is no
    ``clear``: abandon a layer with a reset (``ResetInserter``). Storage: two window registers
    of ``window_words`` words plus two commands.

    Bounds (the sequencer's contract, not checked): ``1 <= kernel <= max_kernel``,
    ``stride`` in 1..2, ``1 <= reps <= 7``, unmasked words inside the activation memory and
    not written while they are being fetched.
    """

    def __init__(self, params):
        if not isinstance(params, TiledParams):
            self._MustUse__used = True  # a rejected block is not an unused one
            raise TypeError(f"params must be a TiledParams, not {params!r}")
        self._params = params
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(params))),
            "beats": Out(stream.Signature(beat_layout(params))),
            "rd0": Out(read_port_signature(params)),
            "rd1": Out(read_port_signature(params)),
            "idle": Out(1),
        })

    params = property(lambda self: self._params)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        nw = p.window_words
        # Two window registers (slot 0, 1), each with the output half of its command.
        self._buf = [[Signal(p.act_width, name=f"win{s}_{w}") for w in range(nw)]
                     for s in range(2)]
        self._full = [Signal(name=f"full{s}") for s in range(2)]
        layout = cmd_layout(p)
        self._scmd = [Signal(layout, name=f"cmd{s}") for s in range(2)]
        self._oslot = Signal()
        self._fetch(m)
        self._output(m)
        m.d.comb += self.idle.eq(~self._pend & ~self._full[0] & ~self._full[1])
        return m

    def _fetch(self, m):
        """Accept a command into the free window register and read its words, two a cycle."""
        p = self._params
        nw, lc = p.window_words, (p.cols - 1).bit_length()
        cmd = self.cmd.payload
        pend = self._pend = Signal()           # pairs of the current command still to read
        fslot = Signal()                       # window register being filled
        faddr = Signal(p.act_addr_bits)        # word address of the next pair
        fzm = Signal(nw)                       # mask, bit 0 = the next pair's first word
        fpair = Signal(range(ceil_div(nw, 2)))
        fleft = Signal(range(ceil_div(nw, 2)))  # pairs after the next one

        # Last window word the command needs: its last lane is off + stride*(cols-1) + kernel-1.
        last_lane = Signal(range(p.cols * nw))
        m.d.comb += last_lane.eq(cmd.off + Mux(cmd.stride[1], 2 * (p.cols - 1), p.cols - 1)
                                 + cmd.kernel - 1)
        last_word = last_lane >> lc
        last_pair = Signal.like(fleft)
        m.d.comb += last_pair.eq(last_lane >> (lc + 1))
        # Words past the last one needed are masked too: never read, never used.
        zmask = Signal(nw)
        m.d.comb += zmask.eq(Cat(cmd.zmask[0], *(cmd.zmask[w] | (last_word < w)
                                                 for w in range(1, nw))))

        free = Mux(fslot, ~self._full[1], ~self._full[0])
        m.d.comb += self.cmd.ready.eq(~pend & free)
        accept = self.cmd.valid & self.cmd.ready
        issue = pend | accept
        addr, zm = Signal.like(faddr), Signal.like(fzm)
        par = addr[0]
        m.d.comb += [
            addr.eq(Mux(pend, faddr, cmd.addr)),
            zm.eq(Mux(pend, fzm, zmask)),
            self.rd0.addr.eq((addr >> 1) + par),
            self.rd1.addr.eq(addr >> 1),
            self.rd0.en.eq(issue & ~Mux(par, zm[1], zm[0])),
            self.rd1.en.eq(issue & ~Mux(par, zm[0], zm[1])),
        ]
        done = Signal()   # this cycle reads the command's last pair
        with m.If(pend):
            m.d.sync += [fpair.eq(fpair + 1), faddr.eq(faddr + 2), fzm.eq(fzm >> 2),
                         fleft.eq(fleft - 1)]
            m.d.comb += done.eq(~fleft.any())
        with m.Elif(accept):
            with m.If(fslot):
                m.d.sync += self._scmd[1].eq(cmd)
            with m.Else():
                m.d.sync += self._scmd[0].eq(cmd)
            m.d.sync += [fpair.eq(1), faddr.eq(cmd.addr + 2), fzm.eq(zmask >> 2),
                         fleft.eq(last_pair - 1)]
            m.d.comb += done.eq(~last_pair.any())
        m.d.sync += pend.eq(issue & ~done)
        with m.If(done):
            m.d.sync += fslot.eq(~fslot)
            for s in range(2):
                with m.If(fslot == s):
                    m.d.sync += self._full[s].eq(1)

        # The pair's words arrive on the ports the next cycle: into the window register, and
        # (self._incoming) forwarded to the output while they are written.
        rv, rslot, rpar = Signal(), Signal(), Signal()
        rpair = Signal.like(fpair)
        rz = Signal(2)
        m.d.sync += [rv.eq(issue), rslot.eq(fslot), rpar.eq(par), rz.eq(zm[:2]),
                     rpair.eq(Mux(pend, fpair, 0))]
        lo, hi = Signal(p.act_width), Signal(p.act_width)   # window words 2*rpair, +1
        m.d.comb += [lo.eq(Mux(rz[0], 0, Mux(rpar, self.rd1.data, self.rd0.data))),
                     hi.eq(Mux(rz[1], 0, Mux(rpar, self.rd0.data, self.rd1.data)))]
        self._incoming = []
        for w in range(nw):
            arrives = Signal(name=f"arrives{w}")
            m.d.comb += arrives.eq(rv & (rpair == w // 2))
            word = hi if w % 2 else lo
            self._incoming.append((arrives & (rslot == self._oslot), word))
            for s in range(2):
                with m.If(arrives & (rslot == s)):
                    m.d.sync += self._buf[s][w].eq(word)

    def _output(self, m):
        """Send the full window register's beats: kernel columns x reps."""
        p = self._params
        oslot = self._oslot
        cur = Signal(cmd_layout(p))
        m.d.comb += cur.eq(Mux(oslot, self._scmd[1], self._scmd[0]))
        window = Signal(p.act_width * p.window_words)
        for w in range(p.window_words):
            bypass, word = self._incoming[w]
            stored = Mux(oslot, self._buf[1][w], self._buf[0][w])
            m.d.comb += window.word_select(w, p.act_width).eq(Mux(bypass, word, stored))
        kx = Signal(range(p.max_kernel))
        rep = Signal(3)
        ab = p.abits
        for c in range(p.cols):
            # Column c reads lanes c .. c + (cols-1) + c + (max_kernel-1) of the window.
            reach = range(c, 2 * c + p.cols + p.max_kernel - 1)
            lanes = [window.word_select(i, ab) for i in reach]
            sel = Signal(range(len(lanes)), name=f"sel{c}")
            m.d.comb += [sel.eq(cur.off + kx + Mux(cur.stride[1], c, 0)),
                         self.beats.payload[c].eq(mux_tree(lanes, sel))]
        m.d.comb += self.beats.valid.eq(Mux(oslot, self._full[1], self._full[0]))
        with m.If(self.beats.valid & self.beats.ready):
            m.d.sync += rep.eq(rep + 1)
            with m.If(rep == cur.reps - 1):
                m.d.sync += [rep.eq(0), kx.eq(kx + 1)]
                with m.If(kx == cur.kernel - 1):
                    m.d.sync += [kx.eq(0), oslot.eq(~oslot)]
                    for s in range(2):
                        with m.If(oslot == s):
                            m.d.sync += self._full[s].eq(0)
