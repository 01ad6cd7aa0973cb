"""One layer's configuration as the tiled chip's blocks see it: the descriptor's fields plus the
sizes derived from them, computed once when the descriptor is decoded.

``LAYER`` is the layout every block reads (a level input, stable for the whole layer).
``LayerDecoder`` computes it from a ``format.DESCRIPTOR`` and says whether the chip can run it
(``ok``); ``layer_config`` is the same arithmetic in Python, for the tests and the benches.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import format as tf
from .params import ceil_div

__all__ = ["layer_layout", "LayerDecoder", "layer_config"]

_W = 24   # width of derived counts (act words, beats, tiles): 16M


def layer_layout():
    """The decoded layer: descriptor fields (see ``format.DESCRIPTOR``) and derived sizes."""
    fields = {name: f.shape for name, f in tf.DESCRIPTOR}
    fields.update({
        "rw_in": unsigned(8),          # activation words per input row
        "in_plane": unsigned(_W),      # activation words per input channel
        "in_words": unsigned(_W),      # activation words of the input tensor
        "xt_n": unsigned(8),           # pixel tiles per stored row (pooled: pooled words)
        "h_st": unsigned(8),           # stored output rows (pooled: out_h / 2)
        "h_loop": unsigned(8),         # row steps of the walk (row pairs: ceil(out_h / 2))
        "rw_st": unsigned(8),          # activation words per stored output row
        "w_st": unsigned(8),           # stored output width (pooled: out_w / 2)
        "chan_stride": unsigned(_W),   # activation words per stored output channel
        "ct_n": unsigned(12),          # channel tiles
        "bpt": unsigned(_W),           # weight beats per channel tile
        "pos_n": unsigned(_W),         # position tiles per channel tile
        "w_words": unsigned(32),       # external words of the weight stream
        "c_words": unsigned(32),       # external words of the constants (whole tiles)
        "in_ext_words": unsigned(32),  # external words of the input tensor
        "rw_skip": unsigned(8),        # activation words per skip source row
        "skip_plane": unsigned(_W),    # activation words per skip source channel
    })
    return data.StructLayout(fields)


def layer_config(d, params):
    """``layer_layout``'s derived fields for a descriptor dict ``d`` (Python)."""
    p = params
    rw_in = ceil_div(d["in_w"], p.cols)
    pool = bool(d["pool"])
    w_st = d["out_w"] // 2 if pool else d["out_w"]
    h_st = d["out_h"] // 2 if pool else d["out_h"]
    rw_st = ceil_div(w_st, p.cols)
    ct_n = ceil_div(d["out_c"], p.rows)
    bpt = d["in_c"] * d["kernel"] ** 2 * d["w_slices"]
    h_loop = ceil_div(d["out_h"], 2) if d["group"] else h_st
    pos_n = h_loop * rw_st * (4 if pool else 1)
    rw_skip = ceil_div(d["skip_w"], p.cols)
    from ..chip_format import consts_words, words_for_bits
    return dict(
        rw_in=rw_in, in_plane=d["in_h"] * rw_in, in_words=d["in_c"] * d["in_h"] * rw_in,
        xt_n=rw_st, h_st=h_st, h_loop=h_loop, rw_st=rw_st, w_st=w_st,
        chan_stride=h_st * rw_st, ct_n=ct_n,
        bpt=bpt, pos_n=pos_n,
        w_words=words_for_bits(ct_n * bpt * p.beat_bits, p.mem_width),
        c_words=ct_n * p.rows * consts_words(p.mem_width),
        in_ext_words=words_for_bits(d["in_c"] * d["in_h"] * rw_in * p.slot_bits, p.mem_width),
        rw_skip=rw_skip, skip_plane=d["skip_h"] * rw_skip)


def _ceil_shift(value, log2):
    return (value + (1 << log2) - 1) >> log2


class LayerDecoder(wiring.Component):
    """Descriptor in, decoded layer out (combinational), and ``ok``: the chip can run it.

    ``ok`` is low for a descriptor outside the chip: zero sizes, more slice input channels than
    ``max_in_channels``, a kernel past ``max_kernel``, a stride other than 1 or 2, more slices
    than ``max_bits`` needs, tensors past the activation memory, a pooled layer with an odd
    plane or with a skip or logits, logits that are not 1x1 (unless ``colsum``), ``colsum``
    without logits or on a chip without ``params.colsum``, or a channel tile whose weight
    beats do not fit the ring while it is replayed over several position tiles.
    """

    def __init__(self, params):
        self._p = params
        super().__init__({
            "desc": In(tf.DESCRIPTOR),
            "layer": Out(layer_layout()),
            "ok": Out(1),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        d, o = self.desc, self.layer
        log_c = p.cols.bit_length() - 1
        for name, _ in tf.DESCRIPTOR:
            m.d.comb += getattr(o, name).eq(getattr(d, name))
        slot_log = p.slot_bits.bit_length() - 1
        mw_log = p.mem_width.bit_length() - 1
        from ..chip_format import consts_words
        cw = consts_words(p.mem_width)
        w_st = Mux(d.pool, d.out_w >> 1, d.out_w)
        h_st = Mux(d.pool, d.out_h >> 1, d.out_h)
        rw_in = _ceil_shift(d.in_w, log_c)
        rw_st = _ceil_shift(w_st, log_c)
        ct_n = Signal(12)
        m.d.comb += ct_n.eq(_ceil_div_const(d.out_c, p.rows))
        bpt = d.in_c * d.kernel * d.kernel * d.w_slices
        h_loop = Mux(d.group, (d.out_h + 1) >> 1, h_st)
        pos_n = h_loop * rw_st * Mux(d.pool, 4, 1)
        rw_skip = _ceil_shift(d.skip_w, log_c)
        m.d.comb += [
            o.rw_in.eq(rw_in), o.in_plane.eq(d.in_h * rw_in),
            o.in_words.eq(d.in_c * d.in_h * rw_in),
            o.xt_n.eq(rw_st), o.h_st.eq(h_st), o.h_loop.eq(h_loop), o.rw_st.eq(rw_st),
            o.w_st.eq(w_st),
            o.chan_stride.eq(h_st * rw_st), o.ct_n.eq(ct_n), o.bpt.eq(bpt), o.pos_n.eq(pos_n),
            o.w_words.eq((ct_n * bpt * p.beat_bits + p.mem_width - 1) >> mw_log),
            o.c_words.eq(ct_n * (p.rows * cw)),
            o.in_ext_words.eq(((d.in_c * d.in_h * rw_in << slot_log) + p.mem_width - 1)
                              >> mw_log),
            o.rw_skip.eq(rw_skip), o.skip_plane.eq(d.skip_h * rw_skip),
        ]
        out_words = d.out_c * h_st * rw_st
        in_words = d.in_c * d.in_h * rw_in
        bad = (
            (d.in_c == 0) | (d.in_c > p.max_in_channels) | (d.out_c == 0)
            | (d.in_h == 0) | (d.in_w == 0) | (d.out_h == 0) | (d.out_w == 0)
            | (d.kernel == 0) | (d.kernel > p.max_kernel)
            | (d.stride == 0) | (d.stride > 2)
            | (d.w_slices == 0) | (d.w_slices > p.w_slices_max)
            | (d.a_slices == 0) | (d.a_slices > p.a_slices_max)
            | (d.in_act + in_words > p.act_depth)
            | (~d.logits & (d.out_act + out_words > p.act_depth))
            | (d.pool & (d.out_h[0] | d.out_w[0] | d.skip | d.logits))
            | (d.logits & (((d.out_h != 1) | (d.out_w != 1)) & ~d.colsum | d.skip))
            | (d.colsum & (~d.logits | (not p.colsum)))
            | (d.skip & ((d.skip_stride == 0) | (d.skip_stride > 2)))
            | ((pos_n > 1) & (bpt > p.ring_beats))
            | (d.group & (d.pool | (d.logits & ~d.colsum) | (d.in_w > p.cols)
                          | (d.out_w > p.cols // 2) | (d.skip & (d.skip_w > p.cols))))
        )
        m.d.comb += self.ok.eq(~bad)
        return m


def _ceil_div_const(value, divisor):
    """``ceil(value / divisor)`` for a 12-bit ``value`` and a constant ``divisor``."""
    if divisor & (divisor - 1) == 0:
        return (value + divisor - 1) >> (divisor.bit_length() - 1)
    top = (1 << 12) + divisor
    for shift in range(1, 40):
        mult = -(-(1 << shift) // divisor)
        if all((x * mult) >> shift == x // divisor for x in range(top)):
            return ((value + divisor - 1) * mult) >> shift
    raise AssertionError(f"no multiply-shift division by {divisor}")
