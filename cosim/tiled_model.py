"""Instruction-level model of the tiled chip: runs a compiled program from its memory words.

It decodes exactly what the hardware reads (descriptors, weight beats, CONSTS records, slots in
external memory, activation words at on-chip addresses), so it checks the compiler's encoding
on its own, independently of the RTL; and the RTL's outputs must equal it. Arithmetic is
``golden.integer``'s. It is not cycle-accurate: ``mac_beats`` is the beat count of the tile
schedule (``format.tile_order``), which the RTL issues one per cycle at best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from cosim.chip_model import ModelError
from golden.integer import (
    LOGIT_BITS,
    clamp_signed,
    conv2d_acc,
    requantize,
    requantize_residual,
    round_half_up_shift,
)
from rtl import chip_format as cf
from rtl.tiled import format as tf
from rtl.tiled.params import TiledParams, ceil_div

if TYPE_CHECKING:
    from gen.tiled_compiler import ProgramLayout, TiledProgram

__all__ = ["ModelError", "LayerTrace", "RunResult", "TiledModel", "read_layer_outputs",
           "run_program"]


@dataclass
class LayerTrace:
    index: int
    desc: dict[str, int]
    mac_beats: int
    output: np.ndarray


@dataclass
class RunResult:
    layers: list[LayerTrace] = field(default_factory=list)

    @property
    def mac_beats(self) -> int:
        return sum(t.mac_beats for t in self.layers)


def unpack_codes(words: Sequence[int], count: int, bits: int, mem_width: int) -> np.ndarray:
    """``count`` unsigned ``bits``-bit codes of a dense LSB-first stream of words (vectorized:
    a layer's weights are millions of bits)."""
    raw = b"".join(int(w).to_bytes(mem_width // 8, "little") for w in words)
    bitarr = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    codes = bitarr[:count * bits].reshape(count, bits).astype(np.int64)
    return (codes << np.arange(bits, dtype=np.int64)).sum(axis=1)


class TiledModel:
    """The tiled chip with parameters ``params`` (a ``TiledParams``)."""

    def __init__(self, params: TiledParams) -> None:
        self.p = params

    # -- external memory ---------------------------------------------------------------------
    def _read(self, mem: Sequence[int], addr: int, n: int) -> Sequence[int]:
        if addr < 0 or addr + n > len(mem):
            raise ModelError(f"read of words {addr}..{addr + n - 1} outside memory of "
                             f"{len(mem)} words")
        return mem[addr:addr + n]

    def _read_tensor(self, mem: Sequence[int], addr: int, shape: tuple[int, int, int]) -> list[int]:
        """``[C, H, W]`` codes of the activation-word slots at external word ``addr``."""
        n = tf.act_words(shape, self.p)
        words = self._read(mem, addr, tf.ext_tensor_words(shape, self.p))
        return tf.ext_to_act(words, n, self.p)

    def _write_slots(self, mem: list[int], addr: int, act: Sequence[int]) -> None:
        """Activation words into their slots at ``addr`` (other bits of a word kept)."""
        p = self.p
        for n, v in enumerate(act):
            w, bit = tf.ext_slot_position(n, p)
            for k in range(p.words_per_slot):
                part = (v >> (k * p.mem_width)) & ((1 << p.mem_width) - 1)
                width = min(p.slot_bits, p.mem_width)
                mask = ((1 << width) - 1) << bit
                a = addr + w + k
                if not 0 <= a < len(mem):
                    raise ModelError(f"write of word {a} outside memory of {len(mem)} words")
                mem[a] = (mem[a] & ~mask) | ((part << bit) & mask)

    # -- one layer ---------------------------------------------------------------------------
    def descriptor(self, mem: Sequence[int], addr: int) -> dict[str, int]:
        dw = tf.descriptor_words(self.p.mem_width)
        return cf.unpack_record(tf.DESCRIPTOR,
                                cf.words_to_record(self._read(mem, addr, dw), self.p.mem_width))

    def effective_weights(self, mem: Sequence[int], d: dict[str, int]) -> np.ndarray:
        """``[Cout, Cin', K, K]`` signed weights as the beats multiply them: the sum of the
        slices' odd values, each shifted, and the activation slice's shift."""
        p = self.p
        k, ws, cin = d["kernel"], d["w_slices"], d["in_c"]
        tiles = ceil_div(d["out_c"], p.rows)
        nbeats = tiles * cin * k * k * ws
        nwords = cf.words_for_bits(nbeats * p.beat_bits, p.mem_width)
        q = unpack_codes(self._read(mem, d["w_addr"], nwords), nbeats * p.rows, p.wbits,
                         p.mem_width).reshape(tiles, cin, k, k, ws, p.rows)
        odd = 2 * q - ((1 << p.wbits) - 1)
        # [T, Cin', K, K, R]
        w = cast(np.ndarray, sum(odd[..., j, :] << (p.wbits * j) for j in range(ws)))
        w = w.transpose(0, 4, 1, 2, 3).reshape(tiles * p.rows, cin, k, k)[:d["out_c"]]
        a_shift = (np.arange(cin) % d["a_slices"]) * p.abits
        return w << a_shift.reshape(1, -1, 1, 1)

    def constants(self, mem: Sequence[int], d: dict[str, int]) -> dict[str, np.ndarray]:
        cw = cf.consts_words(self.p.mem_width)
        recs = [cf.unpack_record(cf.CONSTS, cf.words_to_record(
            self._read(mem, d["c_addr"] + c * cw, cw), self.p.mem_width))
            for c in range(d["out_c"])]
        return {k: np.array([r[k] for r in recs], dtype=np.int64)
                for k in ("mult", "offset", "shift", "skip_mult")}

    def skip_codes(self, mem: Sequence[int], d: dict[str, int], out_base: int) -> np.ndarray:
        src_shape = (d["skip_c"], d["skip_h"], d["skip_w"])
        src = tf.unpack_act_words(self._read_tensor(mem, out_base + d["skip_addr"], src_shape),
                                  src_shape, self.p)
        s, off = d["skip_stride"], d["skip_off"]
        c, h, w = d["out_c"], d["out_h"], d["out_w"]
        sub = src[:, :(h - 1) * s + 1:s, :(w - 1) * s + 1:s]
        if sub.shape[1:] != (h, w) or off + d["skip_c"] > c:
            raise ModelError(f"skip {src_shape} does not cover the output ({c}, {h}, {w})")
        out = np.zeros((c, h, w), dtype=np.int64)
        out[off:off + d["skip_c"]] = sub
        return out

    def run_layer(self, mem: list[int], act: list[int], d: dict[str, int], *, in_addr: int,
                  out_base: int) -> tuple[int, np.ndarray]:
        p = self.p
        in_shape = (d["in_c"], d["in_h"], d["in_w"])
        conv = (d["out_c"], d["out_h"], d["out_w"])
        if d["in_c"] > p.max_in_channels or d["kernel"] > p.max_kernel or d["kernel"] == 0:
            raise ModelError(f"descriptor outside the chip: {d}")
        n_in = tf.act_words(in_shape, p)
        if d["in_act"] + n_in > p.act_depth:
            raise ModelError("input tensor past the activation memory")
        if d["in_load"]:
            act[d["in_act"]:d["in_act"] + n_in] = self._read_tensor(mem, in_addr, in_shape)
        x = tf.unpack_act_words(act[d["in_act"]:d["in_act"] + n_in], in_shape, p)
        acc = conv2d_acc(x, self.effective_weights(mem, d), d["stride"], d["pad"])
        if acc.shape != conv:
            raise ModelError(f"convolution gives {acc.shape}, descriptor says {conv}")
        if d["colsum"]:
            if not d["logits"] or not p.colsum:
                raise ModelError("descriptor outside the chip (colsum without logits or on a "
                                 f"chip without column sums): {d}")
            acc = acc.sum(axis=(1, 2), keepdims=True)
        k = self.constants(mem, d)
        if d["logits"]:
            y = round_half_up_shift(k["mult"].reshape(-1, 1, 1) * acc
                                    + k["offset"].reshape(-1, 1, 1), k["shift"].reshape(-1, 1, 1))
            out = clamp_signed(y, LOGIT_BITS)
            for c, v in enumerate(out.reshape(-1).tolist()):
                mem[out_base + d["o_addr"] + c] = v & ((1 << LOGIT_BITS) - 1)
        else:
            if d["skip"]:
                out = requantize_residual(acc, k["mult"], k["offset"], k["skip_mult"],
                                          self.skip_codes(mem, d, out_base), k["shift"],
                                          p.abits)
            else:
                out = requantize(acc, k["mult"], k["offset"], k["shift"], p.abits)
            if d["pool"]:
                out = tf.pool_codes(out)
            words = tf.pack_act_words(out, p)
            lo, hi = d["out_act"], d["out_act"] + len(words)
            if hi > p.act_depth:
                raise ModelError("output tensor past the activation memory")
            if lo < d["in_act"] + n_in and d["in_act"] < hi:
                raise ModelError("the output tensor overlaps the input in activation memory")
            act[lo:hi] = words
            self._write_slots(mem, out_base + d["o_addr"], words)
        tiles = tf.tile_order(*conv, p, pool=bool(d["pool"]), group=2 if d["group"] else 1)
        beats = len(tiles) * d["in_c"] * d["kernel"] ** 2 * d["w_slices"]
        return beats, out

    def run(self, mem: list[int], *, prog_addr: int = 0, in_addr: int, out_base: int,
            max_layers: int = 256) -> RunResult:
        """Run the program at ``prog_addr`` on ``mem`` (a list of words, changed in place)."""
        act = [0] * self.p.act_depth
        result = RunResult()
        pc = prog_addr
        dw = tf.descriptor_words(self.p.mem_width)
        for index in range(max_layers):
            d = self.descriptor(mem, pc)
            if d["op"] == tf.OP_END:
                return result
            if d["op"] != tf.OP_CONV:
                raise ModelError(f"unknown op {d['op']} at word {pc}")
            beats, out = self.run_layer(mem, act, d, in_addr=in_addr, out_base=out_base)
            result.layers.append(LayerTrace(index, d, beats, out))
            pc += dw
        raise ModelError(f"no OP_END within {max_layers} descriptors")


def read_layer_outputs(mem: Sequence[int], layout: ProgramLayout,
                       slot: int = 0) -> list[np.ndarray]:
    """Every layer's output codes from a memory image after a run, in the image's shapes."""
    from gen.tiled_compiler import slot_addresses

    p = layout.tiled_params
    _, out_base = slot_addresses(layout, slot)
    outs: list[np.ndarray] = []
    for plan in layout.layers:
        addr = out_base + plan.o_addr
        if plan.kind == "logits":
            raw = np.array(mem[addr:addr + plan.out_shape[0]], dtype=np.int64) & 0xFFFF
            outs.append(np.where(raw >= 1 << 15, raw - (1 << 16), raw).reshape(
                plan.image_out_shape))
        else:
            n = tf.act_words(plan.out_shape, p)
            words = tf.ext_to_act(mem[addr:addr + plan.out_words], n, p)
            outs.append(tf.unpack_act_words(words, plan.out_shape, p).reshape(
                plan.image_out_shape))
    return outs


def run_program(program: TiledProgram,
                inputs: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Run a compiled program on ``inputs`` (one per slot); per slot, every layer's output."""
    from gen.tiled_compiler import memory_words, slot_addresses

    layout = program.layout
    mem = memory_words(program, inputs)
    model = TiledModel(layout.tiled_params)
    results: list[list[np.ndarray]] = []
    for slot in range(len(inputs)):
        in_addr, out_base = slot_addresses(layout, slot)
        model.run(mem, in_addr=in_addr, out_base=out_base)
        results.append(read_layer_outputs(mem, layout, slot))
    return results
