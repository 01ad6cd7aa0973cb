"""The chip's binary interface: what the compiler writes and the hardware reads.

Defined once, used by both sides: the Amaranth chip (rtl/) decodes these layouts, and the
compiler (gen/compiler.py) and the co-simulation benches (cosim/) pack and unpack with the
functions below. Everything in external memory is little-endian, LSB-first, in words of
``mem_width`` bits, addressed by word.

External memory holds:

- The program: layer descriptors (``DESCRIPTOR``) back to back from the program address, each
  ``descriptor_words(mem_width)`` words; a descriptor with ``op == OP_END`` ends it.
- Per layer, its weights as one dense bitstream of *beats*: for each tile of ``rows`` output
  channels, for each reduction index ``(ci, ky, kx)`` (in that order), for each weight slice
  ``j``: one beat of ``rows`` weight codes, ``wbits`` bits each, row ``r`` at bits
  ``[r*wbits, (r+1)*wbits)`` of the beat. Beat ``b`` occupies bits ``[b*rows*wbits,
  (b+1)*rows*wbits)`` of the stream, which starts at bit 0 of word ``w_addr``. Rows past the
  layer's output channels hold code 0.
- Per layer, its requantization constants: one ``CONSTS`` record per output channel, channel
  ``c`` at word ``c_addr + c * consts_words(mem_width)``.
- Activation tensors (the input image, each layer's output): channel by channel, each channel's
  ``H*W`` codes in row-major order as a dense LSB-first bitstream of ``bits``-wide codes that
  starts on a word boundary: channel ``c`` at word ``base + c * channel_words(H*W, bits,
  mem_width)``. Logits are 16-bit two's complement codes in the same format (``H = W = 1``).

Residual layers (descriptor bit ``skip``): the layer adds ``skip_mult * skip_code`` (a signed
32-bit ``skip_mult`` per output channel in its ``CONSTS`` record) to the requantization offset,
``golden.integer.requantize_residual``. The skip tensor is the output of the layer two before:
the activation banks ping-pong, so it still sits in the bank this layer writes, each plane in
the lanes of its own positions. Code ``(r, p)`` is read once, in the drain, before ``out[r, p]``
is written over it, so it is read in place. The compiler emits no other skip.

Sizes (checked in tests/test_chip_format.py): ``DESCRIPTOR`` is 181 bits (3 words of 64),
``CONSTS`` 102 bits (2 words of 64).

Wide operands on the k-bit array (bit slicing): a layer with ``wbits_layer`` bit weights on a
``wbits``-bit array uses ``w_slices = ceil(wbits_layer / wbits)`` slices. Its code ``q`` is first
re-coded to ``K' = w_slices * wbits`` bits, ``q' = q + 2**(K'-1) - 2**(wbits_layer-1)`` (the same
odd value ``2q - (2**wbits_layer - 1) == 2q' - (2**K' - 1)``), then cut into ``wbits``-bit slices
``q'_j`` (slice 0 least significant); then ``sum_j 2**(wbits*j) * (2 q'_j - (2**wbits - 1))`` is
exactly the layer's odd weight value. Input codes are cut into ``abits``-bit unsigned slices
``a_i``. A beat with weight slice ``j`` and activation slice ``i`` is shifted left by
``wbits*j + abits*i`` before accumulation, so the sum is exact.
"""

from amaranth import signed, unsigned
from amaranth.lib import data

from golden.integer import REQUANT_MULT_BITS, REQUANT_OFFSET_BITS, REQUANT_SKIP_MULT_BITS

__all__ = [
    "OP_END", "OP_CONV", "DESCRIPTOR", "CONSTS", "ADDR_BITS",
    "words_for_bits", "descriptor_words", "consts_words", "channel_words", "tensor_words",
    "pack_record", "unpack_record", "record_to_words", "words_to_record",
    "pack_codes", "unpack_codes", "pack_tensor", "unpack_tensor",
    "recode_weight", "weight_slices", "activation_slices",
]

#: Word addresses are this wide.
ADDR_BITS = 32

OP_END = 0
#: Convolution (a fully connected layer is lowered to a convolution whose kernel covers the
#: whole input plane, with a 1x1 output).
OP_CONV = 1

DESCRIPTOR = data.StructLayout({
    "op": unsigned(2),
    "in_c": unsigned(12), "in_h": unsigned(8), "in_w": unsigned(8),
    "out_c": unsigned(12), "out_h": unsigned(8), "out_w": unsigned(8),
    "kernel": unsigned(4), "stride": unsigned(2), "pad": unsigned(2),
    # Slices of the layer's weight codes and input codes on the k-bit array (>= 1).
    "w_slices": unsigned(3), "a_slices": unsigned(3),
    # Code widths of this layer's input tensor and of its output tensor.
    "in_bits": unsigned(5), "out_bits": unsigned(5),
    # 1: signed 16-bit logits, written to external memory only; 0: PACT codes to the other bank.
    "logits": unsigned(1),
    # 1: read the input tensor from external memory at the CSR in_addr; 0: from the bank that
    # the previous layer wrote.
    "in_from_mem": unsigned(1),
    # 1: a residual layer: before its PACT clip, add skip_mult (CONSTS) times the codes that the
    # bank it writes holds (the output of the layer two before), read in place (see above).
    "skip": unsigned(1),
    "w_addr": unsigned(ADDR_BITS),
    "c_addr": unsigned(ADDR_BITS),
    # Where the output tensor is written, relative to the CSR out_base.
    "o_addr": unsigned(ADDR_BITS),
})

CONSTS = data.StructLayout({
    "mult": signed(REQUANT_MULT_BITS),
    "offset": signed(REQUANT_OFFSET_BITS),
    "shift": unsigned(6),
    # Residual layers only (0 otherwise): the multiplier of the skip codes.
    "skip_mult": signed(REQUANT_SKIP_MULT_BITS),
})


def words_for_bits(bits, mem_width):
    """Words of ``mem_width`` bits needed for ``bits`` bits."""
    return -(-bits // mem_width)


def descriptor_words(mem_width):
    return words_for_bits(DESCRIPTOR.size, mem_width)


def consts_words(mem_width):
    return words_for_bits(CONSTS.size, mem_width)


def channel_words(plane, bits, mem_width):
    """Words of one channel plane of ``plane`` codes, ``bits`` each."""
    return words_for_bits(plane * bits, mem_width)


def tensor_words(shape, bits, mem_width):
    """Words of a ``[C, H, W]`` tensor (or ``[N]``, taken as ``[N, 1, 1]``)."""
    c, plane = _channels_and_plane(shape)
    return c * channel_words(plane, bits, mem_width)


def _channels_and_plane(shape):
    shape = tuple(shape)
    if len(shape) == 1:
        return shape[0], 1
    c, h, w = shape
    return c, h * w


def pack_record(layout, **fields):
    """Fields of a ``StructLayout`` to one integer (missing fields are 0; signed wrap)."""
    value = 0
    names = {name for name, _ in layout}
    unknown = set(fields) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    for name, field in layout:
        v = int(fields.get(name, 0))
        lo, hi = _field_range(field.shape)
        if not lo <= v <= hi:
            raise ValueError(f"field {name}={v} does not fit {field.shape}")
        value |= (v & ((1 << field.width) - 1)) << field.offset
    return value


def unpack_record(layout, value):
    """One integer to a dict of a ``StructLayout``'s fields (signed fields sign-extended)."""
    out = {}
    for name, field in layout:
        v = (value >> field.offset) & ((1 << field.width) - 1)
        if field.shape.signed and v >> (field.width - 1):
            v -= 1 << field.width
        out[name] = v
    return out


def _field_range(shape):
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def record_to_words(value, nwords, mem_width):
    mask = (1 << mem_width) - 1
    return [(value >> (i * mem_width)) & mask for i in range(nwords)]


def words_to_record(words, mem_width):
    value = 0
    for i, w in enumerate(words):
        value |= int(w) << (i * mem_width)
    return value


def pack_codes(codes, bits, mem_width):
    """A flat sequence of codes (two's complement if negative) to a dense LSB-first bitstream
    of ``words_for_bits(len(codes) * bits)`` words."""
    mask = (1 << bits) - 1
    value = 0
    for i, c in enumerate(codes):
        value |= (int(c) & mask) << (i * bits)
    return record_to_words(value, words_for_bits(len(codes) * bits, mem_width), mem_width)


def unpack_codes(words, count, bits, mem_width, *, signed_codes=False):
    """The inverse of ``pack_codes``."""
    value = words_to_record(words, mem_width)
    out = []
    for i in range(count):
        c = (value >> (i * bits)) & ((1 << bits) - 1)
        if signed_codes and c >> (bits - 1):
            c -= 1 << bits
        out.append(c)
    return out


def pack_tensor(tensor, bits, mem_width):
    """An activation tensor (``[C, H, W]`` or ``[N]``) to its words (see the module doc)."""
    import numpy as np

    t = np.asarray(tensor)
    c, plane = _channels_and_plane(t.shape)
    flat = t.reshape(c, plane)
    words = []
    for ch in range(c):
        words += pack_codes(flat[ch].tolist(), bits, mem_width)
    return words


def unpack_tensor(words, shape, bits, mem_width, *, signed_codes=False):
    """The inverse of ``pack_tensor``: words to an int64 array of ``shape``."""
    import numpy as np

    c, plane = _channels_and_plane(shape)
    per = channel_words(plane, bits, mem_width)
    if len(words) < c * per:
        raise ValueError(f"tensor needs {c * per} words, got {len(words)}")
    out = [unpack_codes(words[ch * per:(ch + 1) * per], plane, bits, mem_width,
                        signed_codes=signed_codes) for ch in range(c)]
    return np.array(out, dtype=np.int64).reshape(shape)


def weight_slices(layer_bits, wbits):
    return -(-layer_bits // wbits)


activation_slices = weight_slices


def recode_weight(q, layer_bits, wbits):
    """Re-code a ``layer_bits``-bit DoReFa code to ``weight_slices * wbits`` bits (same value).

    >>> recode_weight(0, 8, 3)   # -255 as a 9-bit code: 2*128 - 511
    128
    """
    k2 = weight_slices(layer_bits, wbits) * wbits
    return int(q) + (1 << (k2 - 1)) - (1 << (layer_bits - 1))
