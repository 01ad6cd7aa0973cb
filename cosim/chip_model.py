"""An instruction-level model of the chip: it runs a compiled memory image the way the RTL must.

``ChipModel(hw).run(words, in_addr=..., out_base=...)`` reads the descriptors from external
memory (``words``, a list of ``mem_width``-bit ints), and for each layer unpacks the weight beat
stream and the constants records, reads the input tensor (from memory for ``in_from_mem``, else
from the activation bank the previous layer wrote), computes with ``golden.integer`` and writes
the output tensor back into ``words`` at ``out_base + o_addr``, exactly as ``rtl/chip_format.py``
lays it out. It stops at ``OP_END`` or at an error, with the chip's error flags. Like the chip
it keeps two activation banks: a layer reads one and writes the other, and a residual layer
(descriptor ``skip``) adds the codes that the bank it writes holds before it writes them over.

It is a check of the compiler's encoding independent of the RTL: the weights are rebuilt from
their slices as ``sum_j 2**(wbits*j) * (2 q'_j - (2**wbits - 1))`` and the inputs cut into
``abits`` slices, one exact convolution per slice pair, shifted by ``wbits*j + abits*i`` and
summed, so a wrong re-coding, slice order, beat order, address or record shows up as a
difference from ``golden/reference.py``.

Also here: ``read_outputs`` (every layer's output tensor of one slot, from memory words, in the
model image's shapes) and ``random_image`` (random integer networks with codes and constants in
range, for tests and benches that do not need a trained model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from golden.image import Layer, ModelImage, validate
from golden.integer import (
    LOGIT_BITS,
    REQUANT_MAX_SHIFT,
    REQUANT_MULT_BITS,
    REQUANT_SKIP_MULT_BITS,
    conv2d_acc,
    dorefa_odd_values,
    requantize,
    requantize_residual,
)
from rtl import chip_format as cf
from rtl.chip import ERR_BUFFER, ERR_MEMORY, ERR_UNKNOWN_OP  # the error port's flags, defined once

if TYPE_CHECKING:
    from gen.compiler import Hardware, Program

__all__ = [
    "ERR_UNKNOWN_OP", "ERR_BUFFER", "ERR_MEMORY", "ModelError", "LayerTrace", "RunResult",
    "ChipModel", "read_outputs", "run_program", "random_image",
]

#: Upper bound on descriptors, so a program without OP_END cannot run forever.
MAX_LAYERS = 256


class ModelError(Exception):
    """The program asks for something the chip cannot do consistently (a bug, not a flag)."""


@dataclass
class LayerTrace:
    """What one descriptor did: its fields, the beats the MAC array issues, its output."""

    index: int
    desc: dict[str, int]
    mac_beats: int
    weight_beats: int
    output: np.ndarray


@dataclass
class RunResult:
    error: int = 0
    layers: list[LayerTrace] = field(default_factory=list)

    @property
    def mac_beats(self) -> int:
        return sum(t.mac_beats for t in self.layers)


class ChipModel:
    """Runs programs on a chip with the parameters of ``hw`` (a ``gen.compiler.Hardware``)."""

    def __init__(self, hw: Hardware) -> None:
        self.hw = hw
        self.mw = hw.mem_width

    # -- memory access ----------------------------------------------------------------------

    def _read(self, words: Sequence[int], addr: int, n: int) -> Sequence[int]:
        if addr < 0 or addr + n > len(words):
            raise ModelError(f"read of words {addr}..{addr + n - 1} outside memory of "
                             f"{len(words)} words")
        return words[addr:addr + n]

    def _write(self, words: list[int], addr: int, values: Sequence[int]) -> None:
        if addr < 0 or addr + len(values) > len(words):
            raise ModelError(f"write of words {addr}..{addr + len(values) - 1} outside memory "
                             f"of {len(words)} words")
        words[addr:addr + len(values)] = values

    def descriptor(self, words: Sequence[int], addr: int) -> dict[str, int]:
        dw = cf.descriptor_words(self.mw)
        return cf.unpack_record(cf.DESCRIPTOR, cf.words_to_record(self._read(words, addr, dw),
                                                                    self.mw))

    # -- one layer ----------------------------------------------------------------------------

    def _fits(self, d: Mapping[str, int]) -> tuple[bool, int]:
        hw = self.hw
        tiles = -(-d["out_c"] // hw.rows)
        wbeats = tiles * d["in_c"] * d["kernel"] ** 2 * d["w_slices"]
        return (max(d["in_c"], d["out_c"]) <= hw.max_channels
                and max(d["in_h"] * d["in_w"], d["out_h"] * d["out_w"]) <= hw.max_plane
                and wbeats <= hw.wbuf_depth
                and 1 <= d["w_slices"] <= hw.max_w_slices
                and 1 <= d["a_slices"] <= hw.max_a_slices
                and d["in_bits"] <= hw.lane_bits
                and d["kernel"] >= 1 and d["stride"] >= 1
                and not (d["skip"] and d["logits"])), wbeats

    def weight_slices(self, words: Sequence[int], d: Mapping[str, int]) -> np.ndarray:
        """Odd values of each weight slice: ``[w_slices, out_c, in_c, K, K]``."""
        hw = self.hw
        tiles = -(-d["out_c"] // hw.rows)
        k, ws = d["kernel"], d["w_slices"]
        nbeats = tiles * d["in_c"] * k * k * ws
        ncodes = nbeats * hw.rows
        nwords = cf.words_for_bits(ncodes * hw.wbits, self.mw)
        stream = self._read(words, d["w_addr"], nwords)
        codes = np.array(_unpack_chunked(stream, ncodes, hw.wbits, self.mw), dtype=np.int64)
        # Beat order: tile, ci, ky, kx, slice j; row r within a beat.
        codes = codes.reshape(tiles, d["in_c"], k, k, ws, hw.rows)
        codes = codes.transpose(4, 0, 5, 1, 2, 3).reshape(ws, tiles * hw.rows, d["in_c"], k, k)
        return dorefa_odd_values(codes[:, :d["out_c"]], hw.wbits)

    def constants(self, words: Sequence[int], d: Mapping[str, int]
                  ) -> tuple[list[int], list[int], list[int], list[int]]:
        n = cf.consts_words(self.mw)
        recs = [cf.unpack_record(cf.CONSTS, cf.words_to_record(
            self._read(words, d["c_addr"] + c * n, n), self.mw)) for c in range(d["out_c"])]
        return ([r["mult"] for r in recs], [r["offset"] for r in recs],
                [r["shift"] for r in recs], [r["skip_mult"] for r in recs])

    def accumulate(self, x: np.ndarray, s_slices: np.ndarray, d: Mapping[str, int]) -> np.ndarray:
        """``sum_{i,j} conv(a_i, s_j) << (wbits*j + abits*i)``: the sliced, shifted sum the MAC
        array forms, one exact convolution per slice pair."""
        hw = self.hw
        amask = (1 << hw.abits) - 1
        acc: np.ndarray | int = 0
        for i in range(d["a_slices"]):
            a_i = (x >> (hw.abits * i)) & amask
            for j in range(d["w_slices"]):
                part = conv2d_acc(a_i, s_slices[j], d["stride"], d["pad"])
                acc = acc + (part << (hw.wbits * j + hw.abits * i))
        assert isinstance(acc, np.ndarray), "a descriptor has at least one slice of each"
        return acc

    # -- the program --------------------------------------------------------------------------

    def run(self, words: list[int], *, prog_addr: int = 0, in_addr: int,
            out_base: int) -> RunResult:
        """Run the program at ``prog_addr``; ``words`` is updated in place with every layer's
        output. Returns a ``RunResult`` (``error`` flags as the chip's, per-layer traces)."""
        result = RunResult()
        dw = cf.descriptor_words(self.mw)
        # The two activation banks (a tensor and its code bits, or None) and the one read now.
        banks: list[tuple[np.ndarray | None, int | None]] = [(None, None), (None, None)]
        cur = 0
        for index in range(MAX_LAYERS):
            d = self.descriptor(words, prog_addr + index * dw)
            if d["op"] == cf.OP_END:
                return result
            if d["op"] != cf.OP_CONV:
                result.error |= ERR_UNKNOWN_OP
                return result
            ok, wbeats = self._fits(d)
            if not ok:
                result.error |= ERR_BUFFER
                return result
            in_shape = (d["in_c"], d["in_h"], d["in_w"])
            if d["in_from_mem"]:
                n = cf.tensor_words(in_shape, d["in_bits"], self.mw)
                x = cf.unpack_tensor(self._read(words, in_addr, n), in_shape, d["in_bits"],
                                     self.mw)
                banks[cur] = (x, d["in_bits"])
            else:
                bank, bank_bits = banks[cur]
                if bank is None or bank.shape != in_shape or bank_bits != d["in_bits"]:
                    have = None if bank is None else (bank.shape, bank_bits)
                    raise ModelError(f"descriptor {index} reads a bank of {in_shape} "
                                     f"{d['in_bits']}-bit codes, the bank holds {have}")
                x = bank
            acc = self.accumulate(x, self.weight_slices(words, d), d)
            if acc.shape != (d["out_c"], d["out_h"], d["out_w"]):
                raise ModelError(f"descriptor {index}: the convolution gives {acc.shape}, the "
                                 f"descriptor says {(d['out_c'], d['out_h'], d['out_w'])}")
            mult, offset, shift, skip_mult = self.constants(words, d)
            if min(shift) < 1 or max(shift) > REQUANT_MAX_SHIFT:
                raise ModelError(f"descriptor {index}: a shift is outside 1..{REQUANT_MAX_SHIFT}")
            if d["skip"]:
                skip = banks[1 - cur][0]
                if skip is None or skip.shape != acc.shape:
                    have = None if skip is None else skip.shape
                    raise ModelError(f"descriptor {index} adds a skip of shape {acc.shape}, the "
                                     f"bank it writes holds {have}")
                out = requantize_residual(acc, mult, offset, skip_mult, skip, shift,
                                          d["out_bits"])
            else:
                out = requantize(acc, mult, offset, shift, d["out_bits"],
                                 signed_out=bool(d["logits"]))
            self._write(words, out_base + d["o_addr"], cf.pack_tensor(out, d["out_bits"],
                                                                        self.mw))
            tiles = -(-d["out_c"] // self.hw.rows) * -(-(d["out_h"] * d["out_w"]) // self.hw.cols)
            beats = tiles * d["in_c"] * d["kernel"] ** 2 * d["w_slices"] * d["a_slices"]
            result.layers.append(LayerTrace(index, d, beats, wbeats, out))
            if not d["logits"]:
                banks[1 - cur] = (out, d["out_bits"])
                cur = 1 - cur
        raise ModelError(f"no OP_END within {MAX_LAYERS} descriptors")


def _unpack_chunked(words: Sequence[int], count: int, bits: int, mem_width: int) -> list[int]:
    """``chip_format.unpack_codes`` over a long stream, a word-aligned chunk at a time."""
    chunk_words = 64 * bits // math.gcd(bits, mem_width)
    chunk_codes = chunk_words * mem_width // bits
    out: list[int] = []
    for i in range(0, count, chunk_codes):
        n = min(chunk_codes, count - i)
        w0 = i * bits // mem_width
        out += cf.unpack_codes(words[w0:w0 + cf.words_for_bits(n * bits, mem_width)], n, bits,
                               mem_width)
    return out


def read_outputs(words: Sequence[int], layout: Mapping[str, Any],
                 slot: int = 0) -> list[np.ndarray]:
    """Every layer's output of one slot, read from memory ``words``, in the model image's
    shapes (``[N]`` for fully connected layers); logits signed."""
    from gen.compiler import slot_addresses

    _, out_base = slot_addresses(layout, slot)
    mw = layout["mem_width"]
    outs: list[np.ndarray] = []
    for lay in layout["layers"]:
        base = out_base + lay["o_addr"]
        t = cf.unpack_tensor(words[base:base + lay["out_words"]], lay["out_shape"],
                             lay["out_bits"], mw, signed_codes=lay["signed"])
        outs.append(t.reshape(lay["image_out_shape"]))
    return outs


def run_program(program: Program, hw: Hardware,
                inputs: Sequence[np.ndarray]) -> tuple[list[int], list[RunResult]]:
    """Compile-side convenience: memory words with ``inputs`` in the slots, each slot run
    through the model; returns ``(words, [RunResult per slot])``."""
    from gen.compiler import memory_words, slot_addresses

    words = memory_words(program, inputs)
    model = ChipModel(hw)
    results: list[RunResult] = []
    for slot in range(len(inputs)):
        in_addr, out_base = slot_addresses(program.layout, slot)
        results.append(model.run(words, prog_addr=program.layout["program_addr"],
                                 in_addr=in_addr, out_base=out_base))
    return words, results


# -- random networks ----------------------------------------------------------------------------


def _spec_cnn(input_shape: Sequence[int], channels: Sequence[int],
              classes: int) -> list[dict[str, Any]]:
    c, h, w = input_shape
    specs: list[dict[str, Any]] = []
    for i, (cout, stride) in enumerate(zip(channels, (1, 2, 1, 1, 1, 1), strict=False)):
        ho, wo = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
        specs.append(dict(name=f"conv{i}", op="conv", in_shape=(c, h, w),
                          out_shape=(cout, ho, wo), kernel=3, stride=stride, padding=1))
        c, h, w = cout, ho, wo
    specs.append(dict(name="fc", op="fc", in_shape=(c * h * w,), out_shape=(classes,)))
    return specs


def _spec_resnet(input_shape: Sequence[int], channels: Sequence[int],
                 classes: int) -> list[dict[str, Any]]:
    """``golden.shapes.describe_resnet``'s shapes: per stage a conv (stride 1, then 2) and a
    residual block of two convs whose second adds the stage conv's output."""
    c, h, w = input_shape
    specs: list[dict[str, Any]] = []
    for stage, cout in enumerate(channels):
        for j, stride in enumerate((1 if stage == 0 else 2, 1, 1)):
            i = len(specs)
            ho, wo = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
            sp: dict[str, Any] = dict(name=f"conv{i}", op="conv", in_shape=(c, h, w),
                                      out_shape=(cout, ho, wo), kernel=3, stride=stride,
                                      padding=1)
            if j == 2:
                sp["skip"] = i - 2
            specs.append(sp)
            c, h, w = cout, ho, wo
    specs.append(dict(name="fc", op="fc", in_shape=(c * h * w,), out_shape=(classes,)))
    return specs


def _random_skip_mult(rng: np.random.Generator, shift: np.ndarray, cout: int) -> np.ndarray:
    """Residual constants: up to 1.5 output codes per skip code, either sign."""
    scale = 2.0 ** int(shift[0])
    lim = (1 << (REQUANT_SKIP_MULT_BITS - 1)) - 1
    return np.clip(np.round(scale * rng.uniform(-1.5, 1.5, cout)), -lim, lim).astype(np.int32)


def _spec_mlp(input_shape: Sequence[int], hidden: Sequence[int],
              classes: int) -> list[dict[str, Any]]:
    n = int(np.prod(input_shape))
    specs: list[dict[str, Any]] = []
    for i, m in enumerate(list(hidden) + [classes]):
        specs.append(dict(name=f"fc{i}", op="fc", in_shape=(n,), out_shape=(m,)))
        n = m
    return specs


def _random_constants(rng: np.random.Generator, cout: int, reduction: int, wbits: int,
                      in_bits: int, out_bits: int,
                      logits: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constants that spread the outputs over the output range (some clamp at both ends)."""
    wmax, amax = (1 << wbits) - 1, (1 << in_bits) - 1
    acc_scale = max(1.0, np.sqrt(reduction) * wmax * amax / 4)
    target = 2.0 ** (13 if logits else out_bits - 1)
    shift = int(rng.integers(12, 30))
    base = target * 2.0 ** shift / acc_scale
    while abs(base) >= 2 ** (REQUANT_MULT_BITS - 1) and shift > 1:
        shift -= 1
        base /= 2
    lim = (1 << (REQUANT_MULT_BITS - 1)) - 1
    mult = np.clip(np.round(base * rng.uniform(0.3, 1.5, cout)
                            * rng.choice([1, 1, 1, -1], cout)), -lim, lim).astype(np.int16)
    center = 0 if logits else target
    offset = np.round((center + rng.normal(0, target / 2, cout)) * 2.0 ** shift).astype(np.int64)
    return mult, offset, np.full(cout, shift, dtype=np.uint8)


def random_image(seed: int, *, model: str = "cnn", wbits: int = 4, abits: int = 4,
                 end_bits: int = 8, input_shape: Sequence[int] = (1, 8, 8),
                 channels: Sequence[int] | None = None, hidden: Sequence[int] = (64, 64),
                 classes: int = 10,
                 specs: Sequence[Mapping[str, Any]] | None = None) -> ModelImage:
    """A random, valid ``ModelImage`` with the PACT bit-width policy: first and last layer
    ``end_bits`` weights, ``end_bits`` input codes, hidden ``wbits`` weights, ``abits`` PACT
    outputs, 16-bit logits. ``model`` is ``cnn`` (``channels`` default ``(16, 32, 32)``),
    ``resnet`` (``channels`` default ``(16, 32)``) or ``mlp``, or any model of
    ``golden.shapes.describe`` (``resnet20``, ``svhn``, ``lenet``, ...: its shapes, pools and
    skips, random codes and constants); ``specs`` (layer dicts with name/op/in_shape/out_shape,
    conv kernel/stride/padding and optional ``skip``, ``skip_stride``,
    ``skip_channel_offset``, ``pool``, ``in_pool``) overrides them."""
    rng = np.random.default_rng(seed)
    if specs is None:
        if model == "cnn":
            specs = _spec_cnn(input_shape, channels or (16, 32, 32), classes)
        elif model == "resnet":
            specs = _spec_resnet(input_shape, channels or (16, 32), classes)
        elif model == "mlp":
            specs = _spec_mlp(input_shape, hidden, classes)
        else:
            from golden.shapes import describe

            specs = describe(model, input_shape, classes, wbits=wbits, abits=abits,
                             end_bits=end_bits)
    layers: list[Layer] = []
    last = len(specs) - 1
    for i, sp in enumerate(specs):
        lw = end_bits if i in (0, last) else wbits
        in_bits = end_bits if i == 0 else abits
        logits = i == last
        out_bits = LOGIT_BITS if logits else abits
        cout = sp["out_shape"][0]
        wshape: tuple[int, ...]
        if sp["op"] == "conv":
            k = sp.get("kernel", 3)
            wshape = (cout, sp["in_shape"][0], k, k)
        elif sp.get("in_pool") == "avg":
            wshape = (cout, sp["in_shape"][0])
        else:
            wshape = (cout, int(np.prod(sp["in_shape"])))
        weights = rng.integers(0, 1 << lw, size=wshape).astype(np.uint8 if lw <= 8
                                                                  else np.uint16)
        reduction = int(np.prod(wshape[1:]))
        if sp.get("in_pool") == "avg":
            reduction *= int(np.prod(sp["in_shape"][1:]))
        mult, offset, shift = _random_constants(rng, cout, reduction, lw, in_bits, out_bits,
                                                logits)
        if sp.get("pool"):
            mult = np.abs(mult.astype(np.int64)).astype(np.int16)  # pooling codes needs M >= 0
        skip, skip_mult = sp.get("skip"), None
        if skip is not None:
            skip_mult = _random_skip_mult(rng, shift, cout)
        layers.append(Layer(
            name=sp["name"], op=sp["op"], in_shape=tuple(sp["in_shape"]),
            out_shape=tuple(sp["out_shape"]), wbits=lw, in_bits=in_bits, out_bits=out_bits,
            out_kind="logits" if logits else "pact", weights=weights, mult=mult,
            offset=offset, shift=shift, kernel=sp.get("kernel", 1), stride=sp.get("stride", 1),
            padding=sp.get("padding", 0), alpha=None if logits else 1.0, skip=skip,
            skip_mult=skip_mult, skip_stride=sp.get("skip_stride", 1),
            skip_channel_offset=sp.get("skip_channel_offset", 0), pool=sp.get("pool"),
            in_pool=sp.get("in_pool")))
    image = ModelImage(input_shape=tuple(input_shape), input_bits=end_bits, layers=layers,
                       meta={"source": f"random seed {seed}"})
    validate(image)
    return image


def random_inputs(seed: int, image: ModelImage, count: int) -> list[np.ndarray]:
    """``count`` random input code tensors for ``image``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1 << image.input_bits, size=image.input_shape) for _ in range(count)]
