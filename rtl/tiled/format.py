"""The tiled chip's binary interface: what the compiler writes and the hardware reads.

Defined once, used by the compiler (``gen/``), the instruction-level model and benches
(``cosim/``) and the RTL (``rtl/tiled/``). External memory is little-endian, LSB-first, in
words of ``mem_width`` bits addressed by word; sizes come from ``TiledParams``.

**Activation tensors** ``[C, H, W]`` of ``abits``-bit codes are sequences of *activation
words* of ``lanes = cols`` codes: word ``n = (c*H + y) * row_words(W) + j`` holds pixels
``x = j*lanes + l`` of row ``y`` of channel ``c`` in lane ``l`` (bits ``[l*abits, (l+1)*abits)``);
lanes past ``W`` hold 0. The same sequence lives

- on chip, in the activation memory, at word ``base + n``;
- in external memory as a dense array of *slots* of ``slot_bits`` bits (``act_width`` rounded
  up to a power of two) from word ``addr``: slot ``n`` at bit ``n * slot_bits``, the word in its
  low ``act_width`` bits (``ext_slot_position``).

The network input's ``in_bits``-bit codes are stored as ``a_slices = ceil(in_bits / abits)``
slice channels: channel ``ci * a_slices + i`` holds bits ``[i*abits, (i+1)*abits)`` of
channel ``ci`` (``slice_input``). There are no wider lanes anywhere.

**Logits** (16-bit signed) go to external memory only: logit ``n`` in the low 16 bits of word
``o_addr + n``, zero-extended. With ``colsum`` the convolution's output ``[N, H, W]`` is summed
over its plane before the requantizer: logit ``n`` requantizes ``sum_{y,x} acc[n, y, x]``. A fully
connected layer behind a global average pool is that sum of a 1x1 convolution (exact: the fc
weight times the plane's sum), so it runs on every column instead of one.

**Weights** of a layer are one dense bitstream of beats of ``rows * wbits`` bits from word
``w_addr``: for each channel tile ``t`` (``rows`` output channels), for each slice input
channel ``ci'`` (``ci' = ci * a_slices + i``), kernel row ``ky``, kernel column ``kx``, weight
slice ``j``: one beat, row ``r`` = slice ``j`` of the recoded weight code of output channel
``t*rows + r`` (0 past the layer's channels). Beat ``b`` of the layer is bits
``[b*beat_bits, (b+1)*beat_bits)`` (``weight_beats``).

**Constants**: one ``chip_format.CONSTS`` record per output channel at word
``c_addr + c * consts_words`` (unchanged from the plane chip).

**Tiles and order.** A tile is ``rows`` output channels x ``cols`` consecutive output pixels
``x0 .. x0+cols-1`` of output row ``oy`` (``x0`` a multiple of ``cols``). Order
(``tile_order``): channel tiles outer; then output rows (or row pairs, ``row_group``); then
pixel tiles. A pooled layer
(2x2/2 max) runs, per pooled row ``py`` and pooled word ``px``, the four conv tiles
``(oy = 2py + dy, x0 = 2*px*cols + h*cols)`` for ``dy`` in 0, 1 and ``h`` in 0, 1, so that one
pooled activation word is complete after them. The reduction of a tile runs ``ci'``, ``ky``,
``kx``, ``j`` (the weights' order), each beat shifted by ``wbits*j + abits*(ci' % a_slices)``.

**Skips** (descriptor ``skip``): the residual term's codes for output channel ``c`` and pixel
``(y, x)`` are ``src[c - skip_off, y*skip_stride, x*skip_stride]`` of the tensor at external
word ``out_base + skip_addr`` (``[skip_c, skip_h, skip_w]``), 0 for channels outside
``skip_off .. skip_off + skip_c - 1`` (ResNet's option A shortcut: stride 2, zero channels).
"""

import numpy as np
from amaranth import unsigned
from amaranth.lib import data

from ..chip_format import ADDR_BITS, record_to_words, words_for_bits, words_to_record
from .params import ceil_div

__all__ = [
    "OP_END", "OP_CONV", "DESCRIPTOR", "ACT_ADDR_BITS", "descriptor_words",
    "row_words", "act_words", "ext_tensor_words", "ext_slot_position",
    "slice_input", "pack_act_words", "unpack_act_words", "act_to_ext", "ext_to_act",
    "row_group", "tile_order", "pool_codes",
]

OP_END = 0
OP_CONV = 1
#: Activation memory word addresses are this wide in a descriptor.
ACT_ADDR_BITS = 20

DESCRIPTOR = data.StructLayout({
    "op": unsigned(2),
    # Slice input channels (input channels x a_slices) and the input plane.
    "in_c": unsigned(12), "in_h": unsigned(8), "in_w": unsigned(8),
    # The convolution's output (before pooling).
    "out_c": unsigned(12), "out_h": unsigned(8), "out_w": unsigned(8),
    "kernel": unsigned(4), "stride": unsigned(2), "pad": unsigned(3),
    "w_slices": unsigned(3), "a_slices": unsigned(3),
    # 1: signed 16-bit logits to external memory only (1x1 output, or 1x1 after colsum).
    "logits": unsigned(1),
    # 1 (logits layers only): each logit is the sum of the convolution's whole output plane
    # (a fully connected layer behind a global average pool, run as a 1x1 convolution).
    "colsum": unsigned(1),
    # 1: 2x2 stride-2 max pooling of the output codes (out_h, out_w even).
    "pool": unsigned(1),
    # 1: row pairs: a tile covers output rows oy and oy+1 (``row_group``).
    "group": unsigned(1),
    # 1: before the layer, copy the input tensor from external memory (CSR in_addr) into the
    # activation memory at in_act.
    "in_load": unsigned(1),
    # Residual add from external memory (see the module docstring).
    "skip": unsigned(1),
    "skip_c": unsigned(12), "skip_off": unsigned(12), "skip_stride": unsigned(2),
    "skip_h": unsigned(8), "skip_w": unsigned(8),
    # Activation memory word addresses of the input and the output tensors.
    "in_act": unsigned(ACT_ADDR_BITS),
    "out_act": unsigned(ACT_ADDR_BITS),
    "w_addr": unsigned(ADDR_BITS),
    "c_addr": unsigned(ADDR_BITS),
    # Relative to the CSR out_base: where the output is written back, where the skip is read.
    "o_addr": unsigned(ADDR_BITS),
    "skip_addr": unsigned(ADDR_BITS),
})


def descriptor_words(mem_width):
    return words_for_bits(DESCRIPTOR.size, mem_width)


def row_words(width, params):
    """Activation words of one channel row of ``width`` pixels."""
    return ceil_div(width, params.lanes)


def act_words(shape, params):
    """Activation words of a ``[C, H, W]`` tensor."""
    c, h, w = shape
    return c * h * row_words(w, params)


def ext_tensor_words(shape, params):
    """External memory words of a ``[C, H, W]`` tensor (whole slots, whole words)."""
    return words_for_bits(act_words(shape, params) * params.slot_bits, params.mem_width)


def ext_slot_position(n, params):
    """``(word offset, bit offset)`` of activation word ``n`` of a tensor in external memory."""
    bit = n * params.slot_bits
    return bit // params.mem_width, bit % params.mem_width


def slice_input(codes, in_bits, abits):
    """``[C, H, W]`` codes of ``in_bits`` bits to ``[C * a_slices, H, W]`` ``abits``-bit slice
    channels (channel ``ci * a_slices + i`` = bits ``[i*abits, (i+1)*abits)`` of ``ci``).

    >>> slice_input(np.array([[[0xA7]]]), 8, 4).ravel().tolist()
    [7, 10]
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = ceil_div(in_bits, abits)
    c, h, w = codes.shape
    out = np.empty((c, n, h, w), dtype=np.int64)
    for i in range(n):
        out[:, i] = (codes >> (i * abits)) & ((1 << abits) - 1)
    return out.reshape(c * n, h, w)


def pack_act_words(tensor, params):
    """A ``[C, H, W]`` code tensor to its activation words (Python ints, ``act_width`` bits)."""
    t = np.asarray(tensor, dtype=np.int64)
    c, h, w = t.shape
    lanes, bits = params.lanes, params.abits
    rw = row_words(w, params)
    padded = np.zeros((c, h, rw * lanes), dtype=np.int64)
    padded[:, :, :w] = t
    if np.any(t < 0) or np.any(t >= 1 << bits):
        raise ValueError(f"codes outside 0..{(1 << bits) - 1}")
    lanes_view = padded.reshape(c * h * rw, lanes)
    words = []
    for row in lanes_view.tolist():
        v = 0
        for lane, code in enumerate(row):
            v |= code << (lane * bits)
        words.append(v)
    return words


def unpack_act_words(words, shape, params):
    """The inverse of ``pack_act_words`` (lanes past ``W`` are dropped)."""
    c, h, w = shape
    lanes, bits = params.lanes, params.abits
    rw = row_words(w, params)
    n = c * h * rw
    if len(words) < n:
        raise ValueError(f"tensor needs {n} activation words, got {len(words)}")
    mask = (1 << bits) - 1
    out = np.array([[(int(v) >> (lane * bits)) & mask for lane in range(lanes)]
                    for v in words[:n]], dtype=np.int64)
    return out.reshape(c, h, rw * lanes)[:, :, :w]


def act_to_ext(words, params):
    """Activation words to the external memory words holding them (slots, zero-filled)."""
    total = len(words) * params.slot_bits
    value = 0
    for n, v in enumerate(words):
        value |= int(v) << (n * params.slot_bits)
    return record_to_words(value, words_for_bits(total, params.mem_width), params.mem_width)


def ext_to_act(words, count, params):
    """The inverse of ``act_to_ext``: ``count`` activation words from external words."""
    value = words_to_record(words, params.mem_width)
    mask = (1 << params.act_width) - 1
    return [(value >> (n * params.slot_bits)) & mask for n in range(count)]


def row_group(in_w, out_h, out_w, params, *, pool=False):
    """Output rows per tile: 2 (a *row pair*) when a row fills at most half the columns, so
    columns ``cols/2 ..`` compute row ``oy + 1`` (its pixel ``x`` in column ``cols/2 + x``);
    else 1. Row pairs need input rows of one activation word (``in_w <= cols``) and no
    pooling.

    >>> from rtl.tiled.params import TiledParams
    >>> p = TiledParams(4, 4, 16, 16)
    >>> row_group(16, 8, 8, p), row_group(32, 16, 16, p)
    (2, 1)
    """
    ok = not pool and out_h > 1 and 2 * out_w <= params.cols and in_w <= params.cols
    return 2 if ok else 1


def tile_order(out_c, out_h, out_w, params, *, pool=False, group=1):
    """The tiles of a layer in run order: ``(channel_tile, oy, x0)``."""
    rows, cols = params.rows, params.cols
    tiles = []
    for t in range(ceil_div(out_c, rows)):
        if not pool:
            for oy in range(0, out_h, group):
                for xt in range(ceil_div(out_w, cols)):
                    tiles.append((t, oy, xt * cols))
        else:
            for py in range(out_h // 2):
                for px in range(ceil_div(out_w // 2, cols)):
                    for dy in range(2):
                        for h in range(2):
                            tiles.append((t, 2 * py + dy, 2 * px * cols + h * cols))
    return tiles


def pool_codes(codes):
    """2x2 stride-2 max pooling of ``[C, H, W]`` codes (``H``, ``W`` even).

    >>> pool_codes(np.arange(16).reshape(1, 4, 4)).tolist()
    [[[5, 7], [13, 15]]]
    """
    c = np.asarray(codes, dtype=np.int64)
    n, h, w = c.shape
    return c.reshape(n, h // 2, 2, w // 2, 2).max(axis=(2, 4))
