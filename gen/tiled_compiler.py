"""A model image lowered to a program and a memory image for the tiled chip.

Binary formats are ``rtl/tiled/format.py``; sizes come from ``rtl/tiled/params.TiledParams``.
The program's layout is a typed, frozen ``ProgramLayout`` (written to and read from JSON by
one pair of functions) shared by the compiler, the instruction-level model and the benches.

External memory map (word addresses)::

    0              descriptors, one per layer, then OP_END
    ...            per layer: its weight beat stream, then its CONSTS records (one per output
                   channel, padded to whole channel tiles)
    input_base     input slots: slot i's input at input_base + i * input_stride (the network
                   input's codes as abits-bit slice channels, in activation-word slots)
    output_base    output slots: slot i's out_base = output_base + i * output_stride; layer l
                   writes its output at out_base + layers[l].o_addr, a residual layer reads its
                   skip at out_base + layers[skip].o_addr

Activation memory: the compiler places each layer's input and output tensors at its two
ends (the input at word 0, the output at the top, and the other way round for the next
layer), so they never overlap, and refuses a network whose largest input + output pair
does not fit ``act_depth`` words, naming the size the chip would need (``--act-kib``). Layers
are never tiled through external memory: the on-chip footprint of a layer is its input and its
output.

Lowering: every layer is one convolution descriptor. A fully connected layer is a convolution
whose kernel covers the whole (square) input plane, which keeps one column of the array busy.
A logits fc behind a global average pool (``in_pool`` "avg", ResNet20's last layer) is instead
a 1x1 convolution over the plane whose outputs the chip sums (``colsum``): every column works,
and the result is exact (the sum of the plane times the weight). Any other fc behind an
average pool repeats each weight over the plane. The network input's ``in_bits`` codes become
``a_slices`` slice channels and each weight is repeated for them; weights wider than ``wbits``
are recoded and sliced (``chip_format.recode_weight``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gen.compiler import check_precision, poison_word
from golden import image as image_mod
from pact.errors import UserError
from rtl import chip_format as cf
from rtl.tiled import format as tf
from rtl.tiled.params import KERNEL_MAX, STRIDE_MAX, TiledParams, ceil_div

__all__ = ["LayerPlan", "ProgramLayout", "TiledProgram", "compile_tiled", "lower",
           "layout_to_json", "layout_from_json", "weight_beat_stream", "consts_records",
           "input_words", "memory_words", "slot_addresses", "with_slots",
           "hardware_from_manifest", "load_hardware", "manifest_block", "requirements", "write",
           "drain_lanes"]

LAYOUT_VERSION = 4


@dataclass(frozen=True)
class LayerPlan:
    """One layer as the tiled chip runs it (one descriptor)."""

    index: int
    name: str
    op: str                   # the model image's op: "conv" or "fc"
    kind: str                 # "pact" or "logits"
    in_shape: tuple[int, ...]           # [C', H, W]: slice channels of the stored input
    conv_shape: tuple[int, ...]         # [C, H, W]: the convolution's output
    out_shape: tuple[int, ...]          # [C, H, W]: the stored output (pooled, or [N, 1, 1] logits)
    image_out_shape: tuple[int, ...]    # the model image's output shape of this layer
    kernel: int
    stride: int
    pad: int
    w_slices: int
    a_slices: int
    pool: bool
    colsum: bool              # logits of the conv output's plane sums (format: colsum)
    group: int                # output rows per tile (format.row_group)
    skip: int | None
    skip_stride: int
    skip_off: int
    in_act: int
    out_act: int
    w_addr: int
    w_words: int
    w_beats: int
    c_addr: int
    c_words: int
    o_addr: int
    out_words: int
    macs: int                 # real MACs of one inference
    slice_macs: int           # MACs on the k-bit array (real MACs x slices)
    mac_beats: int            # beats the array issues (tiles x reduction)


@dataclass(frozen=True)
class ProgramLayout:
    """Every address, shape and size a bench needs to run and check a compiled program."""

    version: int
    image_hash: str
    config_hash: str
    params: dict[str, Any]
    mem_width: int
    descriptor_words: int
    static_words: int
    words_used: int
    input_shape: tuple[int, ...]        # the image's input [C, H, W]
    input_bits: int
    input_words: int
    slot_count: int
    input_base: int
    output_base: int
    output_stride: int
    act_words_needed: int
    layers: tuple[LayerPlan, ...]

    @property
    def tiled_params(self) -> TiledParams:
        return TiledParams(**self.params)


@dataclass
class TiledProgram:
    words: list[int]
    layout: ProgramLayout


def layout_to_json(layout: ProgramLayout) -> str:
    """The layout as a JSON string (tuples become lists)."""
    return json.dumps(dataclasses.asdict(layout), indent=1, sort_keys=True)


def layout_from_json(text: str | bytes) -> ProgramLayout:
    """The inverse of ``layout_to_json``."""
    d = json.loads(text)
    plans: list[dict[str, Any]] = [{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in lay.items()} for lay in d["layers"]]
    d["layers"] = tuple(LayerPlan(**plan) for plan in plans)
    d["input_shape"] = tuple(d["input_shape"])
    return ProgramLayout(**d)


# -- lowering ------------------------------------------------------------------------------------


def _chw(shape: Iterable[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    return (shape[0], 1, 1) if len(shape) == 1 else shape


@dataclass
class _Lowered:
    index: int
    name: str
    logits: bool
    in_shape: tuple[int, ...]        # real input channels [C, H, W]
    conv_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    image_out_shape: tuple[int, ...]
    kernel: int
    stride: int
    pad: int
    weights: np.ndarray    # [Cout, Cin, K, K]
    wbits: int
    in_bits: int
    out_bits: int
    mult: np.ndarray
    offset: np.ndarray
    shift: np.ndarray
    pool: bool
    skip: int | None
    skip_stride: int
    skip_off: int
    skip_mult: np.ndarray | None
    colsum: bool = False

    @property
    def where(self) -> str:
        return f"layer {self.index} ({self.name})"


def lower(image: image_mod.ModelImage, *, colsum: bool = True) -> list[_Lowered]:
    """The image's layers as convolutions over ``[C, H, W]`` tensors (``_Lowered``); a logits
    fc behind a global average pool as a column sum when ``colsum`` (the chip's
    ``TiledParams.colsum``), else with the pool folded into a plane-sized kernel."""
    prev = _chw(image.input_shape)
    out = []
    for i, layer in enumerate(image.layers):
        where = f"layer {i} ({layer.name})"
        pool = layer.pool
        if pool not in (None, "max2"):
            raise UserError(f"{where}: the chip cannot run pooling {pool!r} (only 2x2 max)")
        weights = np.asarray(layer.weights, dtype=np.int64)
        c, h, w = prev
        colsum_fc = (colsum and layer.op == "fc" and layer.in_pool == "avg"
                     and layer.out_kind == "logits")
        if layer.op == "conv":
            k, s, p = int(layer.kernel), int(layer.stride), int(layer.padding)
            conv = (weights.shape[0], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        elif colsum_fc:
            weights = weights.reshape(weights.shape[0], c, 1, 1)
            k, s, p = 1, 1, 0
            conv = (weights.shape[0], h, w)
        else:
            if h != w:
                raise UserError(f"{where}: a fully connected layer after a non-square {h}x{w} "
                                "plane cannot be lowered to a convolution")
            n_out = weights.shape[0]
            if layer.in_pool == "avg":
                weights = np.repeat(np.repeat(weights.reshape(n_out, c, 1, 1), h, 2), w, 3)
            else:
                weights = weights.reshape(n_out, c, h, w)
            k, s, p = h, 1, 0
            conv = (n_out, 1, 1)
        stored = ((conv[0], conv[1] // 2, conv[2] // 2) if pool
                  else (conv[0], 1, 1) if colsum_fc else conv)
        skip = layer.skip
        out.append(_Lowered(
            index=i, name=layer.name, logits=layer.out_kind == "logits", in_shape=prev,
            conv_shape=conv, out_shape=stored,
            image_out_shape=tuple(int(x) for x in layer.out_shape), kernel=k, stride=s,
            pad=p, weights=weights, wbits=int(layer.wbits), in_bits=int(layer.in_bits),
            out_bits=int(layer.out_bits), mult=np.asarray(layer.mult, dtype=np.int64),
            offset=np.asarray(layer.offset, dtype=np.int64),
            shift=np.asarray(layer.shift, dtype=np.int64), pool=bool(pool), skip=skip,
            skip_stride=int(layer.skip_stride), skip_off=int(layer.skip_channel_offset),
            skip_mult=None if skip is None else np.asarray(layer.skip_mult, dtype=np.int64),
            colsum=colsum_fc))
        prev = stored
    return out


# -- checks ------------------------------------------------------------------------------------

_REGEN = "regenerate the chip with 'pact gen --block tiled_chip"


def _check(lays: Sequence[_Lowered], p: TiledParams, meta: Mapping[str, Any]) -> None:
    check_precision(lays, p, meta, regen=_REGEN)
    last = len(lays) - 1
    for lay in lays:
        w = lay.where
        if lay.logits and lay.index != last:
            raise UserError(f"{w}: only the last layer may produce logits")
        if lay.logits and lay.out_shape[1:] != (1, 1):
            raise UserError(f"{w} produces logits over a {lay.out_shape[1]}x{lay.out_shape[2]} "
                            "plane; the chip writes logits only for a 1x1 output")
        if lay.index > 0 and lay.in_bits != p.abits:
            raise UserError(f"{w} reads {lay.in_bits}-bit codes; only the network input may be "
                            f"wider than abits={p.abits}")
        for what, bits in (("weights", lay.wbits), ("input codes", lay.in_bits)):
            if bits > p.max_bits:
                raise UserError(f"{w}: {bits}-bit {what} > max_bits {p.max_bits}; {_REGEN} "
                                "--max-bits ...' or quantize the layer to fewer bits")
        if lay.kernel > min(p.max_kernel, KERNEL_MAX):
            raise UserError(f"{w}: kernel {lay.kernel} > max_kernel {p.max_kernel}; {_REGEN} "
                            f"--max-kernel {lay.kernel} ...'")
        if lay.stride > STRIDE_MAX:
            raise UserError(f"{w}: stride {lay.stride} > {STRIDE_MAX}")
        cin = lay.in_shape[0] * cf.activation_slices(lay.in_bits, p.abits)
        if cin > p.max_in_channels:
            raise UserError(f"{w}: {cin} (slice) input channels > max_in_channels "
                            f"{p.max_in_channels}; {_REGEN} --max-in-channels {cin} ...'")
        if layer_acc_bound(lay, p) > p.acc_bound:
            raise UserError(f"{w}: its sums reach {layer_acc_bound(lay, p)}, past the "
                            f"accumulators' {p.acc_bound} (acc_cap {p.acc_cap}); {_REGEN} "
                            f"--acc-cap {layer_acc_bound(lay, p)} ...'")
        if lay.pool:
            if lay.conv_shape[1] % 2 or lay.conv_shape[2] % 2:
                raise UserError(f"{w}: 2x2 max pooling needs an even plane, not "
                                f"{lay.conv_shape[1]}x{lay.conv_shape[2]}")
            if lay.logits or lay.skip is not None:
                raise UserError(f"{w}: the chip pools only plain PACT layers")
            # Pooling the codes equals pooling before the clip only for a monotone
            # non-decreasing requantizer: every M >= 0.
            if np.any(lay.mult < 0):
                c = int(np.argmax(lay.mult < 0))
                raise UserError(f"{w}: channel {c} has a negative requantization multiplier, "
                                "so max pooling its codes is not exact")
        if lay.skip is not None:
            _check_skip(lay, lays)
        if max(lay.in_shape[1:]) > 255 or max(lay.conv_shape[1:]) > 255:
            raise UserError(f"{w}: planes above 255x255 do not fit a descriptor")


def _check_skip(lay: _Lowered, lays: Sequence[_Lowered]) -> None:
    w = lay.where
    j = lay.skip
    assert j is not None  # called for residual layers only
    if not 0 <= j < lay.index:
        raise UserError(f"{w}: skip {j} is not an earlier layer")
    src = lays[j]
    if src.logits:
        raise UserError(f"{w}: skip layer {j} produces logits")
    if lay.logits:
        raise UserError(f"{w}: a logits layer cannot add a skip")
    sc, sh, sw = src.out_shape
    c, h, wd = lay.conv_shape
    s = lay.skip_stride
    if s not in (1, 2) or (h - 1) * s >= sh or (wd - 1) * s >= sw or lay.skip_off + sc > c:
        raise UserError(f"{w}: skip from {tuple(src.out_shape)} (stride {s}, channel offset "
                        f"{lay.skip_off}) does not cover the output {lay.conv_shape}")


# -- encoding ------------------------------------------------------------------------------------


def _pack_bits(codes: np.ndarray, bits: int, mem_width: int) -> list[int]:
    """A flat array of unsigned codes to a dense LSB-first stream of ``mem_width``-bit words."""
    codes = np.asarray(codes, dtype=np.uint64).reshape(-1)
    bitmat = ((codes[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8).reshape(-1)
    pad = (-len(bitmat)) % mem_width
    bitmat = np.concatenate([bitmat, np.zeros(pad, dtype=np.uint8)])
    raw = np.packbits(bitmat.reshape(-1, mem_width), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def weight_beat_stream(lay: _Lowered, p: TiledParams, a_slices: int,
                       w_slices: int) -> tuple[list[int], int]:
    """The layer's weight beats as memory words (``rtl/tiled/format.py``)."""
    cout = lay.weights.shape[0]
    tiles = ceil_div(cout, p.rows)
    k2 = w_slices * p.wbits
    recoded = lay.weights + (1 << (k2 - 1)) - (1 << (lay.wbits - 1))
    codes = np.zeros((tiles * p.rows,) + lay.weights.shape[1:], dtype=np.int64)
    codes[:cout] = recoded
    codes = np.repeat(codes, a_slices, axis=1)          # ci' = ci * a_slices + i
    mask = (1 << p.wbits) - 1
    slices = np.stack([(codes >> (p.wbits * j)) & mask for j in range(w_slices)], axis=-1)
    slices[cout:] = 0
    beats = slices.reshape(tiles, p.rows, *slices.shape[1:]).transpose(0, 2, 3, 4, 5, 1)
    return _pack_bits(beats, p.wbits, p.mem_width), int(np.prod(beats.shape[:-1]))


def consts_records(lay: _Lowered, p: TiledParams) -> list[int]:
    """CONSTS words: one record per output channel, padded with inert records (shift 1) to
    whole channel tiles."""
    n = cf.consts_words(p.mem_width)
    cout = len(lay.mult)
    sm = lay.skip_mult.tolist() if lay.skip_mult is not None else [0] * cout
    out = []
    for c in range(ceil_div(cout, p.rows) * p.rows):
        fields = (dict(mult=int(lay.mult[c]), offset=int(lay.offset[c]),
                       shift=int(lay.shift[c]), skip_mult=int(sm[c])) if c < cout
                  else dict(shift=1))
        out += cf.record_to_words(cf.pack_record(cf.CONSTS, **fields), n, p.mem_width)
    return out


def _descriptor(plan: LayerPlan, lays: Sequence[_Lowered], plans: Sequence[LayerPlan]) -> int:
    cin, h, w = plan.in_shape
    cout, ho, wo = plan.conv_shape
    fields = dict(
        op=tf.OP_CONV, in_c=cin, in_h=h, in_w=w, out_c=cout, out_h=ho, out_w=wo,
        kernel=plan.kernel, stride=plan.stride, pad=plan.pad, w_slices=plan.w_slices,
        colsum=int(plan.colsum),
        a_slices=plan.a_slices, logits=int(plan.kind == "logits"), pool=int(plan.pool),
        group=int(plan.group == 2),
        in_load=int(plan.index == 0), in_act=plan.in_act, out_act=plan.out_act,
        w_addr=plan.w_addr, c_addr=plan.c_addr, o_addr=plan.o_addr)
    if plan.skip is not None:
        src = plans[plan.skip]
        fields.update(skip=1, skip_c=src.out_shape[0], skip_off=plan.skip_off,
                      skip_stride=plan.skip_stride, skip_h=src.out_shape[1],
                      skip_w=src.out_shape[2], skip_addr=src.o_addr)
    try:
        return cf.pack_record(tf.DESCRIPTOR, **fields)
    except ValueError as exc:
        raise UserError(f"{lays[plan.index].where} cannot be expressed by a descriptor: "
                        f"{exc}") from None


def _group(lay: _Lowered, lays: Sequence[_Lowered], p: TiledParams) -> int:
    """Output rows per tile of a layer (``format.row_group``); a residual layer takes row
    pairs only when its skip source's rows are one activation word each."""
    if lay.logits and not lay.colsum:
        return 1
    if lay.skip is not None and lays[lay.skip].out_shape[2] > p.cols:
        return 1
    return tf.row_group(lay.in_shape[2], lay.conv_shape[1], lay.conv_shape[2], p,
                        pool=lay.pool)


def _place(in_act: int, out_words: int, depth: int) -> int:
    """Activation memory address of a layer's output: at the end opposite its input (the
    input at word 0 puts the output at the top, and the other way round), so the two never
    overlap while their sum fits."""
    return depth - out_words if in_act == 0 else 0


# -- the compiler --------------------------------------------------------------------------------


def compile_tiled(image: image_mod.ModelImage, params: TiledParams, *, slots: int = 1,
                  config_hash: str = "") -> TiledProgram:
    """Lower ``image`` for the tiled chip ``params``; ``UserError`` if it cannot run."""
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise UserError(f"slots must be a positive integer, not {slots!r}")
    image_mod.validate(image)
    p = params
    lays = lower(image, colsum=p.colsum)
    _check(lays, p, image.meta)
    mw = p.mem_width
    dw = tf.descriptor_words(mw)
    addr = (len(lays) + 1) * dw
    blobs, plans = [], []
    o_addr, in_act, need = 0, 0, 0
    for lay in lays:
        a_sl = cf.activation_slices(lay.in_bits, p.abits)
        w_sl = cf.weight_slices(lay.wbits, p.wbits)
        w_words, w_beats = weight_beat_stream(lay, p, a_sl, w_sl)
        c_words = consts_records(lay, p)
        in_shape = (lay.in_shape[0] * a_sl,) + lay.in_shape[1:]
        in_w = tf.act_words(in_shape, p)
        if lay.logits:
            out_w, out_words, out_act = 0, lay.out_shape[0], 0
        else:
            out_w = tf.act_words(lay.out_shape, p)
            out_words = tf.ext_tensor_words(lay.out_shape, p)
            out_act = max(0, _place(in_act, out_w, p.act_depth))
        need = max(need, in_w + out_w)
        cout, ho, wo = lay.conv_shape
        group = _group(lay, lays, p)
        tiles = len(tf.tile_order(cout, ho, wo, p, pool=lay.pool, group=group))
        reduction = in_shape[0] * lay.kernel ** 2 * w_sl
        if tiles > ceil_div(cout, p.rows) and reduction > p.ring_beats:
            raise UserError(f"{lay.where}: a channel tile's {reduction} weight beats are read "
                            f"again for every position tile and must fit the weight ring "
                            f"({p.ring_beats} beats); {_REGEN} --ring-beats "
                            f"{1 << (reduction - 1).bit_length()} ...'")
        plans.append(LayerPlan(
            index=lay.index, name=lay.name, op=image.layers[lay.index].op,
            kind="logits" if lay.logits else "pact",
            in_shape=in_shape, conv_shape=lay.conv_shape, out_shape=lay.out_shape,
            image_out_shape=lay.image_out_shape, kernel=lay.kernel, stride=lay.stride,
            pad=lay.pad, w_slices=w_sl, a_slices=a_sl, pool=lay.pool, colsum=lay.colsum,
            group=group,
            skip=lay.skip,
            skip_stride=lay.skip_stride, skip_off=lay.skip_off, in_act=in_act,
            out_act=out_act, w_addr=addr, w_words=len(w_words), w_beats=w_beats,
            c_addr=addr + len(w_words), c_words=len(c_words), o_addr=o_addr,
            out_words=out_words,
            macs=int(np.prod(lay.conv_shape)) * lay.in_shape[0] * lay.kernel ** 2,
            slice_macs=int(np.prod(lay.conv_shape)) * reduction,
            mac_beats=tiles * reduction))
        blobs += [w_words, c_words]
        addr += len(w_words) + len(c_words)
        o_addr += out_words
        in_act = out_act
    if need > p.act_depth:
        kib = ceil_div(need * p.act_width, 8192)
        raise UserError(f"the network needs {need} activation words ({kib} KiB) on chip for "
                        f"one layer's input and output, the chip has {p.act_depth} "
                        f"({p.act_kib} KiB); {_REGEN} --act-kib {kib} ...'")
    static = addr
    in_words = tf.ext_tensor_words(plans[0].in_shape, p)
    input_base = static
    output_base = input_base + slots * in_words
    total = output_base + slots * o_addr
    words = []
    for plan in plans:
        words += cf.record_to_words(_descriptor(plan, lays, plans), dw, mw)
    words += cf.record_to_words(0, dw, mw)   # OP_END
    for b in blobs:
        words += b
    assert len(words) == static
    words += [0] * (slots * in_words)
    words += [poison_word(mw)] * (slots * o_addr)
    layout = ProgramLayout(
        version=LAYOUT_VERSION,
        image_hash=image.meta.get("content_hash") or image_mod.content_hash(
            image_mod.to_bytes(image)),
        config_hash=config_hash, params=dataclasses.asdict(p), mem_width=mw,
        descriptor_words=dw, static_words=static, words_used=total,
        input_shape=_chw(image.input_shape), input_bits=int(image.input_bits),
        input_words=in_words, slot_count=slots, input_base=input_base,
        output_base=output_base, output_stride=o_addr, act_words_needed=need,
        layers=tuple(plans))
    return TiledProgram(words=words, layout=layout)


def slot_addresses(layout: ProgramLayout, slot: int) -> tuple[int, int]:
    """``(in_addr, out_base)`` CSR values of one slot."""
    if not 0 <= slot < layout.slot_count:
        raise ValueError(f"slot {slot} outside 0..{layout.slot_count - 1}")
    return (layout.input_base + slot * layout.input_words,
            layout.output_base + slot * layout.output_stride)


def with_slots(program: TiledProgram, slots: int) -> TiledProgram:
    """The same program with ``slots`` slots (only the slot regions move)."""
    lay = program.layout
    if lay.slot_count == slots:
        return program
    static = program.words[:lay.static_words]
    output_base = lay.static_words + slots * lay.input_words
    words = (static + [0] * (slots * lay.input_words)
             + [poison_word(lay.mem_width)] * (slots * lay.output_stride))
    layout = dataclasses.replace(lay, slot_count=slots, input_base=lay.static_words,
                                 output_base=output_base, words_used=len(words))
    return TiledProgram(words=words, layout=layout)


def input_words(codes: np.ndarray, layout: ProgramLayout) -> list[int]:
    """One input image's codes ``[C, H, W]`` to its external memory words."""
    p = layout.tiled_params
    x = np.asarray(codes, dtype=np.int64).reshape(layout.input_shape)
    if x.min() < 0 or x.max() >= 1 << layout.input_bits:
        raise ValueError(f"input codes outside 0..{(1 << layout.input_bits) - 1}")
    sliced = tf.slice_input(x, layout.input_bits, p.abits)
    return tf.act_to_ext(tf.pack_act_words(sliced, p), p)


def memory_words(program: TiledProgram, inputs: Sequence[np.ndarray]) -> list[int]:
    """The program's words with ``inputs`` (one per slot) in the input slots."""
    layout = program.layout
    if len(inputs) > layout.slot_count:
        raise ValueError(f"{len(inputs)} inputs for {layout.slot_count} slots")
    words = list(program.words)
    for i, x in enumerate(inputs):
        packed = input_words(x, layout)
        base, _ = slot_addresses(layout, i)
        words[base:base + len(packed)] = packed
    return words


# -- the chip folder and files -------------------------------------------------------------------


def hardware_from_manifest(manifest: object,
                           where: str = "the manifest") -> tuple[TiledParams, str]:
    """``(TiledParams, config_hash)`` of a tiled chip's manifest; ``UserError`` on a bad one."""
    from gen.compiler import _expected_config_hash

    if not isinstance(manifest, dict) or manifest.get("block") != "tiled_chip":
        raise UserError(f"{where} does not describe a tiled chip; generate one with "
                        "'pact gen --block tiled_chip'")
    params = manifest.get("params", {})
    try:
        p = TiledParams(**{f.name: params[f.name] for f in dataclasses.fields(TiledParams)})
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where} has bad or missing chip parameters ({exc}); regenerate it "
                        "with 'pact gen --block tiled_chip'") from None
    stored = manifest.get("config_hash")
    expected = _expected_config_hash(manifest)
    if stored != expected:
        raise UserError(f"{where}: config hash {str(stored)[:12]} does not match its "
                        f"parameters ({expected[:12]}); the manifest was edited or is stale, "
                        "regenerate it with 'pact gen --block tiled_chip'")
    return p, stored


def manifest_block(hw_dir: str | os.PathLike[str]) -> str | None:
    """The block a chip folder holds (``chip`` or ``tiled_chip``), or ``None``."""
    try:
        return json.loads((Path(hw_dir) / "manifest.json").read_text()).get("block")
    except (OSError, ValueError, AttributeError):
        return None


def load_hardware(hw_dir: str | os.PathLike[str], *,
                  check_verilog: bool = False) -> tuple[TiledParams, str]:
    """Read and check ``hw_dir/manifest.json`` of a tiled chip; with ``check_verilog``, also
    that the chip's Verilog is the one the manifest describes."""
    path = Path(hw_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no manifest at {path}; generate the chip with "
                        "'pact gen --block tiled_chip --out DIR'") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read as JSON ({exc}); regenerate it") from None
    hw = hardware_from_manifest(manifest, where=str(path))
    if check_verilog and "verilog_sha256" in manifest:
        from gen.compiler import check_verilog_hash

        check_verilog_hash(hw_dir, manifest)
    return hw


def requirements(image: image_mod.ModelImage, params: TiledParams) -> TiledParams:
    """``params`` (a ``TiledParams``) sized for ``image``: activation memory and ring only
    grown; ``max_kernel``, ``max_in_channels`` (slice channels) and ``max_bits`` set to exactly
    what the model needs, so that the accumulators (``TiledParams.acc_bound``) are no wider
    than its largest reduction requires; ``colsum`` set when the model has a logits fc behind a
    global average pool. For ``pact flow``, which generates the chip for the model it runs."""
    lays = lower(image, colsum=True)
    kernel = max(lay.kernel for lay in lays)
    bits = max(max(lay.wbits, lay.in_bits) for lay in lays)
    cin = max(lay.in_shape[0] * cf.activation_slices(lay.in_bits, params.abits) for lay in lays)
    need_ring = params.ring_beats
    shortest = None   # the shortest reduction of a layer of several tiles
    act = 0
    for lay in lays:
        a_sl = cf.activation_slices(lay.in_bits, params.abits)
        w_sl = cf.weight_slices(lay.wbits, params.wbits)
        in_shape = (lay.in_shape[0] * a_sl,) + lay.in_shape[1:]
        out = 0 if lay.logits else tf.act_words(lay.out_shape, params)
        act = max(act, tf.act_words(in_shape, params) + out)
        cout, ho, wo = lay.conv_shape
        group = _group(lay, lays, params)
        red = in_shape[0] * lay.kernel ** 2 * w_sl
        positions = ceil_div(ho, group) * ceil_div(wo, params.cols)
        if positions > 1:
            while need_ring < red:
                need_ring *= 2
        if lay.colsum:   # the drain sees one tile per channel tile, after all positions
            red *= positions
            positions = 1
        if ceil_div(cout, params.rows) * positions > 1:
            shortest = red if shortest is None else min(shortest, red)
    kib = max(params.act_kib, 1 << (ceil_div(act * params.act_width, 8192) - 1).bit_length())
    return dataclasses.replace(params, act_kib=kib, max_kernel=kernel, max_in_channels=cin,
                               max_bits=max(2, bits), ring_beats=need_ring,
                               requant_lanes=drain_lanes(params, shortest),
                               acc_cap=max(layer_acc_bound(lay, params) for lay in lays),
                               colsum=any(lay.colsum for lay in lays))


def drain_lanes(params: TiledParams, shortest: int | None) -> int:
    """Requantizer lanes (only grown from ``params.requant_lanes``) that let the drain keep up
    with the array: a tile's ``rows * cols`` results take ``rows * cols / lanes`` cycles in the
    drain, hidden behind the next tile's reduction when that is no shorter (``shortest``: the
    shortest reduction, in beats, of a layer with more than one tile; ``None``: no such layer).
    ResNet20's stem on 16x16 (108 beats) needs 4 lanes; the digits CNN on 8x8 (36) keeps 2."""
    lanes = params.requant_lanes
    if shortest is not None:
        while lanes < params.cols and lanes * shortest < params.rows * params.cols:
            lanes *= 2
    return lanes


def layer_acc_bound(lay: _Lowered, params: TiledParams) -> int:
    """Largest ``|acc|`` of ``lay``'s reductions on the array of ``params``, every partial sum
    included (``TiledParams.layer_acc_bound``); a column-sum layer sums its whole plane."""
    plane = lay.conv_shape[1] * lay.conv_shape[2] if lay.colsum else 1
    return params.layer_acc_bound(lay.in_shape[0] * plane, lay.kernel,
                                  cf.weight_slices(lay.wbits, params.wbits),
                                  cf.activation_slices(lay.in_bits, params.abits),
                                  params.wbits, params.abits)


def write(program: TiledProgram, path: str | os.PathLike[str]) -> Path:
    """The hex memory image to ``path`` and the layout (JSON) beside it, both atomically."""
    from gen.compiler import _write_temp, layout_path, to_hex

    path = Path(path)
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name such as prog.hex")
    if not path.parent.is_dir():
        raise UserError(f"the folder of --out {path} does not exist; create it first")
    lpath = layout_path(path)
    tmps = []
    try:
        tmps.append((_write_temp(path, to_hex(program.words, program.layout.mem_width)), path))
        tmps.append((_write_temp(lpath, layout_to_json(program.layout) + "\n"), lpath))
    except BaseException:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, final in tmps:
        os.replace(tmp, final)
    return lpath
