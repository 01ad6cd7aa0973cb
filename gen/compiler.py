"""``pact compile``: a model image lowered to a program and a memory image for a generated chip.

    pact compile model.pimg --hw build/chip --out build/prog.hex [--slots N]

reads ``build/chip/manifest.json`` (written by ``pact gen --block chip``), checks the image
against the hardware, and writes two files:

- ``PROG``: the external memory image for ``$readmemh``, one ``mem_width``-bit word per line in
  hex, from word 0 to the last word used.
- the layout (``prog.json`` next to ``prog.hex``; ``PROG.json`` for any other name): every
  address, shape and bit-width a bench needs, the model image's content hash and the hardware
  config hash (see :func:`layout_path` and :class:`Program`).

Memory map (word addresses, every region starts on a word)::

    0                  program: one descriptor per layer, then OP_END
    ...                per layer: weight beat stream, then its CONSTS records
    input_base         input slots: slot i's input tensor at input_base + i * input_stride
    output_base        output slots: slot i's out_base = output_base + i * output_stride; layer
                       l writes its output tensor at out_base + layers[l].o_addr

A slot is the room for one inference (input tensor and every layer's output). A bench puts N
images in N slots and runs the program N times with the CSRs ``in_addr``/``out_base`` of each
slot, so one memory load serves a batch. Output slots are filled with ``POISON`` so that an
output the chip never wrote cannot pass for a computed one.

Lowering (binary formats from ``rtl/chip_format.py``): every layer becomes one ``OP_CONV``
descriptor. A fully connected layer is a convolution whose kernel covers the whole (square)
input plane, pad 0, stride 1, output ``[N, 1, 1]``; an input vector ``[N]`` is ``[N, 1, 1]``.
Its ``[out, C*H*W]`` weights read the input flattened in ``C, H, W`` order, which is the
``[out, C, H, W]`` kernel. Weights wider than the array's ``wbits`` are re-coded and cut into
slices (``chip_format.recode_weight``), inputs wider than ``abits`` are sliced by the hardware.
A residual layer (``skip`` in the image) sets the descriptor's ``skip`` bit and its constants'
``skip_mult``: the chip reads the skip codes in place from the bank the layer writes, which holds
the output of the layer two before, so that is the only skip it accepts.

Refusals (``UserError``, one line, exit code 2, nothing written): a manifest that is not a
chip's or whose config hash does not match its parameters; a model whose hidden layers have
other weight bits than the array's ``wbits`` or whose PACT outputs have other bits than its
``abits``; a layer wider than ``max_bits``; a layer that does not fit the buffers (channels >
``max_channels``, plane > ``max_plane``, weight beats > ``wbuf_depth``), or that the descriptor
cannot express; a residual layer whose skip is not the layer two before; a logits layer
whose output is not 1x1 (the chip writes logits one word per channel).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from golden import image as image_mod
from pact.errors import UserError
from pact.paths import FILE_MODE, check_output
from rtl import chip_format as cf

__all__ = [
    "LAYOUT_VERSION", "POISON", "Hardware", "Program", "compile_image", "layout_path",
    "write", "load_hardware", "memory_words", "slot_addresses", "to_hex", "read_hex",
    "add_arguments", "run",
]

LAYOUT_VERSION = 1
#: Fill of the output slots before a run (repeated ``0xDEAD``): any output word the chip does
#: not write shows up as a mismatch instead of a lucky zero.
POISON = 0xDEAD

#: Manifest fields the compiler reads (from ``params``, then ``derived``, then the top level).
MANIFEST_FIELDS = ("wbits", "abits", "rows", "cols", "mem_width", "max_bits", "max_channels",
                   "max_plane", "wbuf_depth")


# -- the hardware -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    """The chip parameters a program depends on (from ``DIR/manifest.json``)."""

    wbits: int
    abits: int
    rows: int
    cols: int
    mem_width: int
    max_bits: int
    max_channels: int
    max_plane: int
    wbuf_depth: int
    config_hash: str = ""

    @property
    def lane_bits(self) -> int:
        """Width of one activation code in the banks."""
        return max(self.abits, self.max_bits)

    @property
    def max_w_slices(self) -> int:
        return cf.weight_slices(self.max_bits, self.wbits)

    @property
    def max_a_slices(self) -> int:
        return cf.activation_slices(self.max_bits, self.abits)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in MANIFEST_FIELDS}


def _manifest_value(manifest: Mapping[str, Any], name: str) -> Any:
    for part in (manifest.get("params", {}), manifest.get("derived", {}), manifest):
        if isinstance(part, dict) and name in part:
            return part[name]
    return None


def _expected_config_hash(manifest: Mapping[str, Any]) -> str:
    """The config hash ``pact gen`` derives from the manifest's block and parameters."""
    from gen.generate import config_hash

    return config_hash(manifest.get("block"), manifest.get("params"))


def hardware_from_manifest(manifest: object, where: str = "the manifest") -> Hardware:
    """A ``Hardware`` from a parsed manifest; ``UserError`` on a bad or stale one."""
    if not isinstance(manifest, dict):
        raise UserError(f"{where} is not a JSON object; regenerate it with 'pact gen --block chip'")
    block = manifest.get("block")
    if block is not None and block != "chip":
        raise UserError(f"{where} describes block {block!r}, not the chip; generate one with "
                        "'pact gen --block chip'")
    values = {}
    for name in MANIFEST_FIELDS:
        v = _manifest_value(manifest, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{where} lacks a positive integer {name!r} (found {v!r}); "
                            "regenerate it with 'pact gen --block chip'")
        values[name] = v
    stored = manifest.get("config_hash")
    if not isinstance(stored, str) or not stored:
        raise UserError(f"{where} has no config_hash; regenerate it with 'pact gen --block chip'")
    expected = _expected_config_hash(manifest)
    if stored != expected:
        raise UserError(f"{where}: config hash {stored[:12]} does not match its parameters "
                        f"({expected[:12]}); the manifest was edited or is stale, regenerate "
                        "it with 'pact gen --block chip'")
    if values["mem_width"] % 8:
        raise UserError(f"{where}: mem_width {values['mem_width']} is not a multiple of 8")
    return Hardware(**values, config_hash=stored)


def load_hardware(hw_dir: str | os.PathLike[str], *, check_verilog: bool = False) -> Hardware:
    """Read and check ``hw_dir/manifest.json``; with ``check_verilog``, also that the chip's
    Verilog is the one the manifest describes (its SHA-256): a swapped or edited file would
    otherwise be compiled for, and simulated as, the chip of the manifest."""
    path = Path(hw_dir) / "manifest.json"
    if not Path(hw_dir).is_dir():
        raise UserError(f"--hw {hw_dir} is not a folder; give the folder of "
                        "'pact gen --block chip --out DIR'")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no manifest at {path}; generate the chip with "
                        "'pact gen --block chip --out DIR'") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); regenerate it") from None
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror}); regenerate the chip") from None
    hw = hardware_from_manifest(manifest, where=str(path))
    if check_verilog and "verilog_sha256" in manifest:  # (hand-written manifests have none)
        check_verilog_hash(hw_dir, manifest)
    return hw


def check_verilog_hash(hw_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """``UserError`` unless the chip's Verilog file has the manifest's ``verilog_sha256``."""
    verilog = Path(hw_dir) / manifest.get("verilog", "pact_chip.v")
    try:
        digest = hashlib.sha256(verilog.read_bytes()).hexdigest()
    except OSError:
        raise UserError(f"{verilog} is missing; regenerate the chip with "
                        "'pact gen --block chip'") from None
    if digest != manifest.get("verilog_sha256"):
        raise UserError(f"{verilog} is not the Verilog its manifest describes (SHA-256 "
                        f"{digest[:12]}, manifest {str(manifest.get('verilog_sha256'))[:12]}); "
                        "regenerate the chip with 'pact gen --block chip'")


# -- lowering -----------------------------------------------------------------------------------


def _chw(shape: Iterable[int]) -> tuple[int, ...]:
    """``[C, H, W]`` of a tensor shape (a vector ``[N]`` is ``[N, 1, 1]``)."""
    dims = tuple(int(s) for s in shape)
    return (dims[0], 1, 1) if len(dims) == 1 else dims


@dataclass
class Lowered:
    """One layer as the chip runs it: a convolution over ``[C, H, W]`` tensors."""

    index: int
    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    image_out_shape: tuple[int, ...]
    kernel: int
    stride: int
    pad: int
    weights: np.ndarray  # [Cout, Cin, K, K] codes of wbits
    wbits: int
    in_bits: int
    out_bits: int
    logits: bool
    mult: np.ndarray
    offset: np.ndarray
    shift: np.ndarray
    skip: int | None = None
    skip_mult: np.ndarray | None = None
    w_slices: int = 0
    a_slices: int = 0

    @property
    def where(self) -> str:
        return f"layer {self.index} ({self.name})"


def _lower(image: image_mod.ModelImage) -> list[Lowered]:
    prev = _chw(image.input_shape)
    out: list[Lowered] = []
    for i, layer in enumerate(image.layers):
        if layer.needs_v3:
            raise UserError(f"layer {i} ({layer.name}): the chip cannot run pooling, averaged "
                            "inputs or strided/channel-offset skips yet (image format v3)")
        if layer.op == "conv":
            cin = prev
            weights = np.asarray(layer.weights)
            k, s, p = layer.kernel, layer.stride, layer.padding
            oshape = _chw(layer.out_shape)
        else:  # fc: a convolution whose kernel is the input plane
            cin = prev
            c, h, w = cin
            if h != w:
                raise UserError(f"layer {i} ({layer.name}): a fully connected layer after a "
                                f"non-square {h}x{w} plane cannot be lowered to a convolution")
            weights = np.asarray(layer.weights).reshape(layer.out_shape[0], c, h, w)
            k, s, p = h, 1, 0
            oshape = (layer.out_shape[0], 1, 1)
        out.append(Lowered(
            index=i, name=layer.name, op=layer.op, in_shape=cin, out_shape=oshape,
            image_out_shape=tuple(int(x) for x in layer.out_shape),
            kernel=int(k), stride=int(s), pad=int(p), weights=weights,
            wbits=int(layer.wbits), in_bits=int(layer.in_bits), out_bits=int(layer.out_bits),
            logits=layer.out_kind == "logits",
            mult=np.asarray(layer.mult, dtype=np.int64),
            offset=np.asarray(layer.offset, dtype=np.int64),
            shift=np.asarray(layer.shift, dtype=np.int64),
            skip=layer.skip,
            skip_mult=(None if layer.skip is None
                       else np.asarray(layer.skip_mult, dtype=np.int64)),
        ))
        prev = oshape
    return out


# -- checks -------------------------------------------------------------------------------------

_REGEN = "regenerate the chip with 'pact gen --block chip"


class _PrecisionLayer(Protocol):
    """What ``check_precision`` reads of a layer (both compilers' lowered layers have it)."""

    @property
    def index(self) -> int: ...
    @property
    def where(self) -> str: ...
    @property
    def wbits(self) -> int: ...
    @property
    def logits(self) -> bool: ...
    @property
    def out_bits(self) -> int: ...


class _PrecisionHardware(Protocol):
    """What ``check_precision`` reads of a chip's parameters."""

    @property
    def wbits(self) -> int: ...
    @property
    def abits(self) -> int: ...


def check_precision(layers: Sequence[_PrecisionLayer], hw: _PrecisionHardware,
                    meta: Mapping[str, Any], *, regen: str = _REGEN) -> None:
    """The array's wbits/abits must be the model's: hidden weights and PACT outputs (either
    chip: ``layers`` have ``index``, ``where``, ``wbits``, ``logits``, ``out_bits``; ``regen``
    starts the advice)."""
    for key, hw_value in (("wbits", hw.wbits), ("abits", hw.abits)):
        v = meta.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v != hw_value:
            raise UserError(f"the model was trained with {key}={v} but the hardware has "
                            f"{key}={hw_value}; {regen} --{key} {v} ...' or compile another "
                            "model")
    last = len(layers) - 1
    for lay in layers:
        if 0 < lay.index < last and lay.wbits != hw.wbits:
            raise UserError(f"{lay.where} has {lay.wbits}-bit weights but the hardware has "
                            f"wbits={hw.wbits}; {regen} --wbits {lay.wbits} ...'")
        if not lay.logits and lay.out_bits != hw.abits:
            raise UserError(f"{lay.where} outputs {lay.out_bits}-bit activations but the "
                            f"hardware has abits={hw.abits}; {regen} --abits {lay.out_bits} "
                            "...'")


def _check_chip_semantics(lay: Lowered) -> None:
    """What the chip's datapath cannot do, whatever its size: skips other than the layer two
    before, and logits that are not 1x1."""
    if lay.skip is not None and lay.skip != lay.index - 2:
        raise UserError(f"{lay.where} adds the output of layer {lay.skip}; the chip can only add "
                        f"the output of the layer two before (layer {lay.index - 2}), which "
                        "still sits in the bank this layer writes")
    if lay.logits and lay.out_shape[1:] != (1, 1):
        raise UserError(f"{lay.where} produces logits over a {lay.out_shape[1]}x"
                        f"{lay.out_shape[2]} plane; the chip writes logits only for a 1x1 "
                        "output (end the network with a fully connected layer)")


def _check_fit(lay: Lowered, hw: Hardware) -> None:
    """Buffers and slices: each layer must fit the generated chip."""
    w = lay.where
    fix = "regenerate the chip ('pact gen --block chip') with a larger"
    for what, bits in (("weights", lay.wbits), ("input codes", lay.in_bits)):
        if bits > hw.max_bits:
            raise UserError(f"{w}: {bits}-bit {what} > max_bits {hw.max_bits}; {fix} "
                            f"--max-bits or quantize the layer to fewer bits")
    for what, c in (("input", lay.in_shape[0]), ("output", lay.out_shape[0])):
        if c > hw.max_channels:
            raise UserError(f"{w}: {c} {what} channels > max_channels {hw.max_channels}; "
                            f"{fix} --max-channels")
    for what, shape in (("input", lay.in_shape), ("output", lay.out_shape)):
        plane = shape[1] * shape[2]
        if plane > hw.max_plane:
            raise UserError(f"{w}: {what} plane {shape[1]}x{shape[2]} = {plane} > max_plane "
                            f"{hw.max_plane}; {fix} --max-plane")
    beats = weight_beats(lay, hw)
    if beats > hw.wbuf_depth:
        raise UserError(f"{w}: {beats} weight beats > wbuf_depth {hw.wbuf_depth}; "
                        f"{fix} --wbuf-depth")


def weight_beats(lay: Lowered, hw: Hardware) -> int:
    """Beats of a layer's weight stream: tiles of ``rows`` channels x reduction x slices."""
    tiles = -(-lay.out_shape[0] // hw.rows)
    cin = lay.in_shape[0]
    return tiles * cin * lay.kernel * lay.kernel * lay.w_slices


def mac_beats(lay: Lowered, hw: Hardware) -> int:
    """Beats the MAC array must issue for a layer (tiles of ``rows`` channels x ``cols``
    consecutive output positions, each the full sliced reduction)."""
    cout, ho, wo = lay.out_shape
    tiles = -(-cout // hw.rows) * -(-(ho * wo) // hw.cols)
    return tiles * lay.in_shape[0] * lay.kernel ** 2 * lay.w_slices * lay.a_slices


def useful_macs(lay: Lowered) -> int:
    """Slice-MACs a layer needs: its nominal MACs times weight and activation slices."""
    cout, ho, wo = lay.out_shape
    return cout * ho * wo * lay.in_shape[0] * lay.kernel ** 2 * lay.w_slices * lay.a_slices


# -- encoding -----------------------------------------------------------------------------------


def weight_stream(lay: Lowered, hw: Hardware) -> list[int]:
    """The layer's beat stream as words (see ``chip_format``): per tile of ``rows`` output
    channels, per ``(ci, ky, kx)``, per weight slice, one beat of ``rows`` ``wbits`` codes."""
    cout = lay.out_shape[0]
    tiles = -(-cout // hw.rows)
    codes = np.zeros((tiles * hw.rows,) + lay.weights.shape[1:], dtype=np.int64)
    codes[:cout] = lay.weights
    recoded = codes.copy()
    recode = np.vectorize(lambda q: cf.recode_weight(q, lay.wbits, hw.wbits), otypes=[np.int64])
    recoded[:cout] = recode(lay.weights)
    mask = (1 << hw.wbits) - 1
    # slices[j] = bits [j*wbits, (j+1)*wbits) of the re-coded code; padded rows stay code 0.
    slices = np.stack([(recoded >> (hw.wbits * j)) & mask for j in range(lay.w_slices)], axis=-1)
    # [tiles*R, Cin, K, K, ws] -> [tiles, Cin, K, K, ws, R]: beat order, then row within a beat.
    beats = slices.reshape(tiles, hw.rows, *slices.shape[1:]).transpose(0, 2, 3, 4, 5, 1)
    return pack_codes_chunked(beats.reshape(-1), hw.wbits, hw.mem_width)


def pack_codes_chunked(codes: Iterable[int], bits: int, mem_width: int) -> list[int]:
    """``chip_format.pack_codes`` of a long stream, in chunks that end on word boundaries (the
    same words; packing one huge integer would be quadratic)."""
    chunk = 64 * mem_width // math.gcd(bits, mem_width)  # codes per chunk: whole words
    ints = [int(c) for c in codes]
    out: list[int] = []
    for i in range(0, len(ints), chunk):
        out += cf.pack_codes(ints[i:i + chunk], bits, mem_width)
    return out


def consts_words(lay: Lowered, hw: Hardware) -> list[int]:
    """One ``CONSTS`` record per output channel, each ``consts_words(mem_width)`` words."""
    n = cf.consts_words(hw.mem_width)
    skip_mult = (lay.skip_mult.tolist() if lay.skip_mult is not None and lay.skip is not None
                 else [0] * len(lay.mult))
    out: list[int] = []
    for m, b, s, sm in zip(lay.mult.tolist(), lay.offset.tolist(), lay.shift.tolist(),
                           skip_mult, strict=True):
        out += cf.record_to_words(
            cf.pack_record(cf.CONSTS, mult=m, offset=b, shift=s, skip_mult=sm), n, hw.mem_width)
    return out


def _descriptor(lay: Lowered, *, first: bool, w_addr: int, c_addr: int, o_addr: int) -> int:
    cin, h, w = lay.in_shape
    cout, ho, wo = lay.out_shape
    fields = dict(
        op=cf.OP_CONV, in_c=cin, in_h=h, in_w=w, out_c=cout, out_h=ho, out_w=wo,
        kernel=lay.kernel, stride=lay.stride, pad=lay.pad,
        w_slices=lay.w_slices, a_slices=lay.a_slices,
        in_bits=lay.in_bits, out_bits=lay.out_bits, logits=int(lay.logits),
        in_from_mem=int(first), skip=int(lay.skip is not None),
        w_addr=w_addr, c_addr=c_addr, o_addr=o_addr,
    )
    try:
        return cf.pack_record(cf.DESCRIPTOR, **fields)
    except ValueError as exc:
        raise UserError(f"{lay.where} cannot be expressed by a chip descriptor: {exc}") from None


@dataclass
class Program:
    """A compiled program: the memory ``words`` (program, weights, constants, then zeroed input
    slots and poisoned output slots) and the ``layout`` dict (see ``layout_path``)."""

    words: list[int]
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def mem_width(self) -> int:
        return self.layout["mem_width"]


def compile_image(image: image_mod.ModelImage, hw: Hardware | dict[str, Any], *,
                  slots: int = 1) -> Program:
    """Lower ``image`` (a ``ModelImage``) for ``hw`` (a ``Hardware`` or a parsed manifest dict)
    with ``slots`` input/output slots; raise ``UserError`` if it does not fit."""
    if isinstance(hw, dict):
        hw = hardware_from_manifest(hw)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise UserError(f"slots must be a positive integer, not {slots!r}")
    image_mod.validate(image)
    layers = _lower(image)
    check_precision(layers, hw, image.meta)
    for lay in layers:
        lay.w_slices = cf.weight_slices(lay.wbits, hw.wbits)
        lay.a_slices = cf.activation_slices(lay.in_bits, hw.abits)
        _check_chip_semantics(lay)
        _check_fit(lay, hw)
    mw = hw.mem_width
    dw = cf.descriptor_words(mw)
    addr = (len(layers) + 1) * dw
    streams: list[list[int]] = []
    meta: list[dict[str, int]] = []
    o_addr = 0
    for lay in layers:
        w_words = weight_stream(lay, hw)
        c_words = consts_words(lay, hw)
        w_addr, c_addr = addr, addr + len(w_words)
        addr = c_addr + len(c_words)
        out_words = cf.tensor_words(lay.out_shape, lay.out_bits, mw)
        streams.append(w_words + c_words)
        meta.append(dict(w_addr=w_addr, c_addr=c_addr, o_addr=o_addr, w_words=len(w_words),
                         c_words=len(c_words), out_words=out_words))
        o_addr += out_words
    static_words = addr
    in_shape = _chw(image.input_shape)
    input_words = cf.tensor_words(in_shape, image.input_bits, mw)
    output_stride = o_addr
    input_base = static_words
    output_base = input_base + slots * input_words
    total = output_base + slots * output_stride

    words: list[int] = []
    for lay, m in zip(layers, meta, strict=True):
        words += cf.record_to_words(
            _descriptor(lay, first=lay.index == 0, w_addr=m["w_addr"], c_addr=m["c_addr"],
                        o_addr=m["o_addr"]), dw, mw)
    words += cf.record_to_words(cf.pack_record(cf.DESCRIPTOR, op=cf.OP_END), dw, mw)
    for s in streams:
        words += s
    assert len(words) == static_words
    words += [0] * (slots * input_words)
    words += [poison_word(mw)] * (slots * output_stride)
    assert len(words) == total

    layout = {
        "format": "pact-chip-program",
        "version": LAYOUT_VERSION,
        "image_hash": image.meta.get("content_hash") or _image_hash(image),
        "config_hash": hw.config_hash,
        "hw": hw.as_dict(),
        "mem_width": mw,
        "program_addr": 0,
        "descriptor_words": dw,
        "static_words": static_words,
        "words_used": total,
        "input": {"shape": list(in_shape), "image_shape": list(image.input_shape),
                  "bits": image.input_bits, "words": input_words},
        "slots": {"count": slots, "input_base": input_base, "input_stride": input_words,
                  "output_base": output_base, "output_stride": output_stride},
        "layers": [_layer_layout(lay, m, hw) for lay, m in zip(layers, meta, strict=True)],
    }
    return Program(words=words, layout=layout)


def poison_word(mem_width: int) -> int:
    """``POISON`` repeated over a word."""
    digits = mem_width // 4
    return int((f"{POISON:04x}" * (digits // 4 + 1))[:digits], 16)


def _image_hash(image: image_mod.ModelImage) -> str:
    """Content hash of an in-memory image (same as the file's: SHA-256 of its bytes)."""
    return image_mod.content_hash(image_mod.to_bytes(image))


def _layer_layout(lay: Lowered, m: Mapping[str, int], hw: Hardware) -> dict[str, Any]:
    return {
        "index": lay.index, "name": lay.name, "op": lay.op,
        "kind": "logits" if lay.logits else "pact",
        "in_shape": list(lay.in_shape), "out_shape": list(lay.out_shape),
        "image_out_shape": list(lay.image_out_shape),
        "kernel": lay.kernel, "stride": lay.stride, "pad": lay.pad,
        "wbits": lay.wbits, "in_bits": lay.in_bits, "out_bits": lay.out_bits,
        "signed": lay.logits, "skip": lay.skip,
        "w_slices": lay.w_slices, "a_slices": lay.a_slices,
        "w_addr": m["w_addr"], "w_words": m["w_words"], "w_beats": weight_beats(lay, hw),
        "c_addr": m["c_addr"], "c_words": m["c_words"],
        "o_addr": m["o_addr"], "out_words": m["out_words"],
        "macs": int(np.prod(lay.out_shape)) * lay.in_shape[0] * lay.kernel ** 2,
        "useful_macs": useful_macs(lay),
        "mac_beats": mac_beats(lay, hw),
    }


# -- slots and files ----------------------------------------------------------------------------


def slot_addresses(layout: Mapping[str, Any], slot: int) -> tuple[int, int]:
    """``(in_addr, out_base)`` CSR values for one slot."""
    s = layout["slots"]
    if not 0 <= slot < s["count"]:
        raise ValueError(f"slot {slot} outside 0..{s['count'] - 1}")
    return (s["input_base"] + slot * s["input_stride"],
            s["output_base"] + slot * s["output_stride"])


def memory_words(program: Program, inputs: Sequence[np.ndarray]) -> list[int]:
    """The program's words with ``inputs`` (input codes, one tensor per slot, at most
    ``slots`` of them) packed into the input slots."""
    layout = program.layout
    if len(inputs) > layout["slots"]["count"]:
        raise ValueError(f"{len(inputs)} inputs for {layout['slots']['count']} slots")
    words = list(program.words)
    shape, bits, mw = layout["input"]["shape"], layout["input"]["bits"], layout["mem_width"]
    for i, codes in enumerate(inputs):
        x = np.asarray(codes, dtype=np.int64).reshape(shape)
        if x.min() < 0 or x.max() >= 1 << bits:
            raise ValueError(f"input {i} has codes outside 0..{(1 << bits) - 1}")
        packed = cf.pack_tensor(x, bits, mw)
        addr, _ = slot_addresses(layout, i)
        words[addr:addr + len(packed)] = packed
    return words


def to_hex(words: Iterable[int], mem_width: int) -> str:
    """``$readmemh`` text: one word per line, ``mem_width / 4`` hex digits."""
    digits = -(-mem_width // 4)
    return "".join(f"{w:0{digits}x}\n" for w in words)


def read_hex(path: str | os.PathLike[str]) -> list[int]:
    """Words of a ``$readmemh``/``$writememh`` file (``@addr`` lines and comments allowed;
    ``x``/``z`` digits read as 0)."""
    words: dict[int, int] = {}
    addr = 0
    for line in Path(path).read_text().splitlines():
        line = line.split("//", 1)[0].strip()
        for tok in line.split():
            if tok.startswith("@"):
                addr = int(tok[1:], 16)
                continue
            tok = tok.lower().replace("x", "0").replace("z", "0").replace("_", "")
            words[addr] = int(tok, 16)
            addr += 1
    n = max(words) + 1 if words else 0
    return [words.get(i, 0) for i in range(n)]


def layout_path(prog: str | os.PathLike[str]) -> Path:
    """Where the layout of program ``prog`` goes: ``x.json`` for ``x.hex``, else ``PROG.json``."""
    p = Path(prog)
    return p.with_suffix(".json") if p.suffix == ".hex" else Path(str(p) + ".json")


def _write_temp(path: Path, text: str) -> str:
    """Write ``text`` to a temporary file next to ``path``; return its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        return tmp
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(program: Program, path: str | os.PathLike[str]) -> Path:
    """Write the hex memory image to ``path`` and the layout to ``layout_path(path)``.

    Both are written to temporary files first and renamed only when both are complete.
    """
    out = check_output(path, "--out")
    lpath = check_output(layout_path(out), "--out's layout")
    layout = dict(program.layout, memory_file=out.name,
                  memory_sha256=hashlib.sha256(
                      to_hex(program.words, program.mem_width).encode()).hexdigest())
    tmps: list[tuple[str, Path]] = []
    try:
        tmps.append((_write_temp(out, to_hex(program.words, program.mem_width)), out))
        tmps.append((_write_temp(lpath, json.dumps(layout, indent=1, sort_keys=True) + "\n"),
                     lpath))
    except BaseException:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, final in tmps:
        os.replace(tmp, final)
    return lpath


# -- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="model image (from 'pact export')")
    parser.add_argument("--hw", required=True, metavar="DIR",
                        help="chip folder from 'pact gen --block chip' (reads DIR/manifest.json)")
    parser.add_argument("--out", required=True, metavar="PROG",
                        help="memory image to write (hex for $readmemh); the layout goes to "
                             "PROG's name with .json")
    parser.add_argument("--slots", default="1", metavar="N",
                        help="input/output slots to reserve, one per inference (default 1)")


def run(args: argparse.Namespace) -> int:
    from gen.generate import parse_int

    slots = parse_int("slots", args.slots, 1)
    check_output(args.out, "--out")
    check_output(layout_path(args.out), "--out's layout")
    from gen import tiled_compiler

    if tiled_compiler.manifest_block(args.hw) == "tiled_chip":
        params, config_hash = tiled_compiler.load_hardware(args.hw, check_verilog=True)
        image = image_mod.load(args.image)
        tiled = tiled_compiler.compile_tiled(image, params, slots=slots,
                                             config_hash=config_hash)
        lpath = tiled_compiler.write(tiled, args.out)
        tlay = tiled.layout
        kib = tlay.act_words_needed * params.act_width / 8192
        print(f"pact compile: {len(tlay.layers)} layers, {tlay.words_used} words of "
              f"{tlay.mem_width} bits ({tlay.static_words} program+weights+constants, {slots} "
              f"slot(s)), {kib:.1f} of {params.act_kib} KiB activation memory -> {args.out}, "
              f"{lpath}")
        return 0
    hw = load_hardware(args.hw, check_verilog=True)
    image = image_mod.load(args.image)
    program = compile_image(image, hw, slots=slots)
    lpath = write(program, args.out)
    lay = program.layout
    print(f"pact compile: {len(lay['layers'])} layers, {lay['words_used']} words of "
          f"{lay['mem_width']} bits ({lay['static_words']} program+weights+constants, "
          f"{slots} slot(s)) -> {args.out}, {lpath}")
    return 0
