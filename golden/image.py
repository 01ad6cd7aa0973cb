"""The model image: one versioned, hashed file that carries an integer network to the hardware.

Layout (all integers little-endian)::

    offset 0   8 bytes   magic b"PACTIMG\\0"
    offset 8   u32       format version (FORMAT_VERSION)
    offset 12  u32       header length H
    offset 16  H bytes   header, UTF-8 JSON (layers, shapes, bit-widths, alpha, array table)
    ...        P bytes   payload: the arrays named in the header, back to back
    end - 32   32 bytes  SHA-256 of everything before it (the content hash)

Encodings in the payload:

- ``weights``: DoReFa weight codes ``q``, unsigned, one per element, ``uint8`` when
  ``wbits <= 8`` else ``uint16``; the value multiplied is ``2*q - (2**wbits - 1)``
  (``golden.integer.dorefa_odd_values``). Conv weights are ``[Cout, Cin, K, K]``, fully
  connected ``[out, in]``; a fully connected layer after a conv reads the conv output flattened
  in ``C, H, W`` order.
- ``mult`` (int16), ``offset`` (int64, < 2**47 in magnitude), ``shift`` (uint8, 1..47): the
  per-output-channel requantization constants of ``golden.integer.requantize``.
- ``skip_mult`` (int32, one per output channel), only for a residual layer: a layer whose
  header entry has ``"skip": j`` adds the output codes of the earlier layer ``j`` (a PACT layer
  with the same output shape) before its own PACT clip, ``golden.integer.requantize_residual``.
  The offset plus the largest skip term stays inside the signed 48-bit offset range. (Version 3
  lets the skip be strided and channel-shifted; see below.)

Version 3 adds, per layer, keys that are written only when they differ from the default (so
older files keep their bytes):

- ``"pool": "max2"`` (conv, PACT): a 2x2 stride-2 max pool of the output codes after the clamp
  and the residual add (``golden.integer.max_pool2``); ``out_shape`` is the pooled shape, the
  convolution's own output is twice as high and wide (``Layer.conv_shape``). Every ``mult`` of
  a pooled layer is ``>= 0``: the requantizer is then non-decreasing in the accumulator, the
  condition under which a float model that pools before its clip gives the same codes.
- ``"in_pool": "avg"`` (fc): the layer reads a ``[C, H, W]`` input (its ``in_shape``) through a
  global average pool; weights are ``[out, C]`` and the accumulator is ``sum_c s[o, c] *
  sum_{y,x} a[c, y, x]`` (``golden.integer.avg_pool_acc``).
- ``"skip_stride": 2`` and ``"skip_channel_offset": o`` (residual layers): the skip tensor is
  ``golden.integer.skip_tensor`` of layer ``skip``'s output codes, shaped like this layer's
  ``conv_shape`` (defaults 1 and 0: the same-shape skip).

Versions: a file is written with the lowest version that can hold it: 1 without residual layers
(those files are byte-identical to the ones written before residual layers existed), 2 with
same-shape residual layers only (so a tool that only knows version 1 refuses them instead of
ignoring the skip), 3 with any of the keys above. All three are read.

Loading checks the magic, version, lengths, hash, shapes, code ranges and constant ranges, and
raises ``ImageError`` with a one-line message naming the problem.
"""

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .errors import UserError
from .integer import (
    LOGIT_BITS,
    REQUANT_MAX_SHIFT,
    REQUANT_MULT_BITS,
    REQUANT_OFFSET_BITS,
    REQUANT_SKIP_MULT_BITS,
)

__all__ = ["MAGIC", "FORMAT_VERSION", "READABLE_VERSIONS", "ImageError", "Layer", "ModelImage",
           "format_version", "save", "load"]

MAGIC = b"PACTIMG\0"
#: The newest format version (written only for images with residual layers; see the docstring).
FORMAT_VERSION = 3
#: Versions this module reads.
READABLE_VERSIONS = (1, 2, 3)
#: The version of an image without residual layers.
_PLAIN_VERSION = 1
#: The version of an image whose only addition is same-shape residual layers.
_RESIDUAL_VERSION = 2
_HASH_BYTES = 32
_PREFIX = struct.Struct("<8sII")

OPS = ("conv", "fc")
OUT_KINDS = ("pact", "logits")
POOLS = ("max2",)
IN_POOLS = ("avg",)
SKIP_STRIDES = (1, 2)


class ImageError(UserError, ValueError):
    """A model image that cannot be used: truncated, corrupted or inconsistent."""


@dataclass
class Layer:
    """One integer layer.

    ``in_shape``/``out_shape`` are ``(C, H, W)`` for conv and ``(N,)`` for fc (``(C, H, W)``
    for an fc with ``in_pool="avg"``). ``alpha`` is the PACT clip of this layer's output
    (``None`` for logits); ``in_bits`` is the width of the input codes and ``out_bits`` the
    width of the output codes (``LOGIT_BITS`` for logits). ``pool``, ``in_pool``,
    ``skip_stride`` and ``skip_channel_offset`` are the version-3 fields (module docstring).
    """

    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    wbits: int
    in_bits: int
    out_bits: int
    out_kind: str
    weights: np.ndarray
    mult: np.ndarray
    offset: np.ndarray
    shift: np.ndarray
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    alpha: float | None = None
    skip: int | None = None
    skip_mult: np.ndarray | None = None
    skip_stride: int = 1
    skip_channel_offset: int = 0
    pool: str | None = None
    in_pool: str | None = None

    @property
    def conv_shape(self) -> tuple[int, ...]:
        """The shape the layer computes before its pool (``out_shape`` without a pool)."""
        if self.pool == "max2":
            c, h, w = self.out_shape
            return (c, 2 * h, 2 * w)
        return tuple(self.out_shape)

    @property
    def needs_v3(self) -> bool:
        """True if this layer uses a field that only format version 3 holds."""
        return (self.pool is not None or self.in_pool is not None or self.skip_stride != 1
                or self.skip_channel_offset != 0)

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def reduction(self) -> int:
        """Products summed into one accumulator."""
        return int(np.prod(self.weights.shape[1:]))

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference of this layer (an averaged input counts one
        addition per code, not as MACs)."""
        return int(np.prod(self.conv_shape)) * self.reduction


@dataclass
class ModelImage:
    """An integer network: input quantization, layers, and free-form metadata.

    The input is an image with values in ``[0, 1]``, quantized to ``input_bits`` unsigned codes
    by ``round_half_up(x * (2**input_bits - 1))``.
    """

    input_shape: tuple[int, ...]
    input_bits: int
    layers: list[Layer]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def logit_scale(self) -> float | None:
        """Real logit per integer logit code (for reporting; argmax does not need it)."""
        return self.meta.get("logit_scale")


def _fail(msg: str) -> NoReturn:
    raise ImageError(msg)


def _code_dtype(bits: int) -> type[np.unsignedinteger[Any]]:
    return np.uint8 if bits <= 8 else np.uint16


def _check_bits(where: str, name: str, bits: object, lo: int = 2, hi: int = 16) -> None:
    if not isinstance(bits, int) or not lo <= bits <= hi:
        _fail(f"{where}: {name} must be an integer in {lo}..{hi}, not {bits!r}")


def validate(image: ModelImage) -> None:
    """Check that an image is internally consistent; raise ``ImageError`` if not."""
    _check_bits("input", "input_bits", image.input_bits)
    if not image.layers:
        _fail("the image has no layers")
    prev_shape, prev_bits = tuple(image.input_shape), image.input_bits
    for i, layer in enumerate(image.layers):
        where = f"layer {i} ({layer.name})"
        if layer.op not in OPS:
            _fail(f"{where}: unknown op {layer.op!r} (expected one of {', '.join(OPS)})")
        if layer.out_kind not in OUT_KINDS:
            _fail(f"{where}: unknown out_kind {layer.out_kind!r}")
        _check_bits(where, "wbits", layer.wbits)
        _check_bits(where, "in_bits", layer.in_bits)
        if layer.out_kind == "logits":
            if layer.out_bits != LOGIT_BITS:
                _fail(f"{where}: logits must be {LOGIT_BITS} bits, not {layer.out_bits}")
            if i != len(image.layers) - 1:
                _fail(f"{where}: only the last layer may produce logits")
        else:
            _check_bits(where, "out_bits", layer.out_bits)
        if layer.in_bits != prev_bits:
            _fail(f"{where}: in_bits {layer.in_bits} but the previous output is {prev_bits}-bit")
        in_shape = tuple(layer.in_shape)
        _validate_pools(layer, where)
        if layer.op == "fc" and layer.in_pool == "avg":
            if in_shape != prev_shape or len(in_shape) != 3:
                _fail(f"{where}: an averaged input must be the previous [C, H, W] output "
                      f"{prev_shape}, not {in_shape}")
            expected: tuple[int, ...] = (layer.out_shape[0], in_shape[0])
            if layer.weights.shape != expected or len(layer.out_shape) != 1:
                _fail(f"{where}: weights {layer.weights.shape} should be {expected}")
        elif layer.op == "fc":
            if int(np.prod(prev_shape)) != int(np.prod(in_shape)) or len(in_shape) != 1:
                _fail(f"{where}: input shape {in_shape} does not match previous {prev_shape}")
            expected = (layer.out_shape[0], in_shape[0])
            if layer.weights.shape != expected or len(layer.out_shape) != 1:
                _fail(f"{where}: weights {layer.weights.shape} should be {expected}")
        else:
            if in_shape != prev_shape or len(in_shape) != 3:
                _fail(f"{where}: input shape {in_shape} does not match previous {prev_shape}")
            k, s, p = layer.kernel, layer.stride, layer.padding
            if k < 1 or s < 1 or p < 0:
                _fail(f"{where}: bad kernel/stride/padding {k}/{s}/{p}")
            cout = layer.out_shape[0]
            ho = (in_shape[1] + 2 * p - k) // s + 1
            wo = (in_shape[2] + 2 * p - k) // s + 1
            if layer.pool == "max2" and (ho % 2 or wo % 2 or ho < 2 or wo < 2):
                _fail(f"{where}: a 2x2 max pool needs an even plane, not {ho}x{wo}")
            want = (cout, ho // 2, wo // 2) if layer.pool == "max2" else (cout, ho, wo)
            if tuple(layer.out_shape) != want:
                _fail(f"{where}: output shape {tuple(layer.out_shape)} should be {want}")
            expected = (cout, in_shape[0], k, k)
            if layer.weights.shape != expected:
                _fail(f"{where}: weights {layer.weights.shape} should be {expected}")
        for name in ("weights", "mult", "offset", "shift"):
            if np.asarray(getattr(layer, name)).dtype.kind not in "iu":
                _fail(f"{where}: {name} must be integers, not "
                      f"{np.asarray(getattr(layer, name)).dtype}")
        w = np.asarray(layer.weights)
        if w.size and (w.min() < 0 or w.max() > (1 << layer.wbits) - 1):
            _fail(f"{where}: weight codes outside 0..{(1 << layer.wbits) - 1}")
        cout = layer.out_shape[0]
        for name in ("mult", "offset", "shift"):
            if np.asarray(getattr(layer, name)).shape != (cout,):
                _fail(f"{where}: {name} must have one entry per output channel ({cout})")
        lim_m = 1 << (REQUANT_MULT_BITS - 1)
        lim_b = 1 << (REQUANT_OFFSET_BITS - 1)
        if np.any(np.abs(layer.mult.astype(np.int64)) >= lim_m):
            _fail(f"{where}: mult outside the signed {REQUANT_MULT_BITS}-bit range")
        if np.any(np.abs(layer.offset.astype(np.int64)) >= lim_b):
            _fail(f"{where}: offset outside the signed {REQUANT_OFFSET_BITS}-bit range")
        sh = layer.shift.astype(np.int64)
        if np.any(sh < 1) or np.any(sh > REQUANT_MAX_SHIFT):
            _fail(f"{where}: shift outside 1..{REQUANT_MAX_SHIFT}")
        if layer.pool is not None and np.any(layer.mult.astype(np.int64) < 0):
            c = int(np.flatnonzero(layer.mult.astype(np.int64) < 0)[0])
            _fail(f"{where}: channel {c} has a negative mult in a pooled layer (pooling codes "
                  "is exact only for a non-decreasing requantizer)")
        _validate_skip(image, i, layer, where)
        prev_shape, prev_bits = tuple(layer.out_shape), layer.out_bits


def _validate_pools(layer: Layer, where: str) -> None:
    """``pool``/``in_pool``: known kinds, on the layers that can carry them."""
    if layer.pool is not None:
        if layer.pool not in POOLS:
            _fail(f"{where}: unknown pool {layer.pool!r} (expected one of {', '.join(POOLS)})")
        if layer.op != "conv" or layer.out_kind != "pact":
            _fail(f"{where}: only a PACT conv layer may pool its output")
    if layer.in_pool is not None:
        if layer.in_pool not in IN_POOLS:
            _fail(f"{where}: unknown in_pool {layer.in_pool!r} (expected one of "
                  f"{', '.join(IN_POOLS)})")
        if layer.op != "fc":
            _fail(f"{where}: only a fully connected layer may average its input")


def _validate_skip(image: ModelImage, i: int, layer: Layer, where: str) -> None:
    """A residual layer's ``skip``/``skip_mult`` (see the module docstring)."""
    if layer.skip is None:
        if layer.skip_mult is not None:
            _fail(f"{where}: skip_mult without skip")
        if layer.skip_stride != 1 or layer.skip_channel_offset != 0:
            _fail(f"{where}: skip_stride/skip_channel_offset without skip")
        return
    j = layer.skip
    if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < i:
        _fail(f"{where}: skip must be the index of an earlier layer (0..{i - 1}), not {j!r}")
    src = image.layers[j]
    if layer.out_kind != "pact":
        _fail(f"{where}: only a PACT layer may add a skip input, not a {layer.out_kind} layer")
    if src.out_kind != "pact":
        _fail(f"{where}: skip layer {j} ({src.name}) produces {src.out_kind}, not PACT codes")
    s, o = layer.skip_stride, layer.skip_channel_offset
    if isinstance(s, bool) or not isinstance(s, int) or s not in SKIP_STRIDES:
        _fail(f"{where}: skip_stride must be one of {SKIP_STRIDES}, not {s!r}")
    if isinstance(o, bool) or not isinstance(o, int) or o < 0:
        _fail(f"{where}: skip_channel_offset must be an integer >= 0, not {o!r}")
    src_shape, shape = tuple(src.out_shape), tuple(layer.conv_shape)
    if len(src_shape) != 3 or len(shape) != 3:
        if src_shape != shape:
            _fail(f"{where}: skip layer {j} ({src.name}) has output shape {src_shape}, "
                  f"this layer {shape}")
        if s != 1 or o != 0:
            _fail(f"{where}: a strided or channel-offset skip needs [C, H, W] tensors")
    else:
        if (shape[1] - 1) * s >= src_shape[1] or (shape[2] - 1) * s >= src_shape[2]:
            _fail(f"{where}: skip layer {j} ({src.name}) output {src_shape} at stride {s} "
                  f"cannot cover this layer's {shape[1]}x{shape[2]} plane")
        if o + src_shape[0] > shape[0]:
            _fail(f"{where}: skip layer {j} ({src.name}) has {src_shape[0]} channels; at offset "
                  f"{o} they do not fit this layer's {shape[0]}")
        if s == 1 and o == 0 and src_shape != shape:
            _fail(f"{where}: skip layer {j} ({src.name}) has output shape {src_shape}, "
                  f"this layer {shape}")
    sm = layer.skip_mult
    if sm is None:
        _fail(f"{where}: skip is set but skip_mult is missing")
    sm = np.asarray(sm)
    if sm.dtype.kind not in "iu":
        _fail(f"{where}: skip_mult must be integers, not {sm.dtype}")
    if sm.shape != (layer.out_shape[0],):
        _fail(f"{where}: skip_mult must have one entry per output channel "
              f"({layer.out_shape[0]})")
    sm = sm.astype(np.int64)
    if np.any(np.abs(sm) >= 1 << (REQUANT_SKIP_MULT_BITS - 1)):
        _fail(f"{where}: skip_mult outside the signed {REQUANT_SKIP_MULT_BITS}-bit range")
    # offset + skip_mult * skip for every skip code must stay a signed 48-bit offset.
    top = (1 << src.out_bits) - 1
    ends = np.stack([layer.offset.astype(np.int64), layer.offset.astype(np.int64) + sm * top])
    if np.any(np.abs(ends) >= 1 << (REQUANT_OFFSET_BITS - 1)):
        _fail(f"{where}: offset + skip_mult * skip leaves the signed "
              f"{REQUANT_OFFSET_BITS}-bit range")


def _layer_arrays(layer: Layer) -> dict[str, np.ndarray]:
    arrays = {
        "weights": np.ascontiguousarray(layer.weights, dtype=_code_dtype(layer.wbits)),
        "mult": np.ascontiguousarray(layer.mult, dtype=np.int16),
        "offset": np.ascontiguousarray(layer.offset, dtype=np.int64),
        "shift": np.ascontiguousarray(layer.shift, dtype=np.uint8),
    }
    if layer.skip is not None:
        arrays["skip_mult"] = np.ascontiguousarray(layer.skip_mult, dtype=np.int32)
    return arrays


def format_version(image: ModelImage) -> int:
    """The version ``to_bytes`` writes for ``image``: 3 with a pool, an averaged input or a
    strided/channel-offset skip; else 2 with residual layers; else 1."""
    if any(layer.needs_v3 for layer in image.layers):
        return FORMAT_VERSION
    if any(layer.skip is not None for layer in image.layers):
        return _RESIDUAL_VERSION
    return _PLAIN_VERSION


def to_bytes(image: ModelImage) -> bytes:
    """Serialize a validated image (see the module docstring for the layout)."""
    validate(image)
    table, chunks, offset = [], [], 0
    layers_json = []
    for layer in image.layers:
        arrays = {}
        for name, arr in _layer_arrays(layer).items():
            data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            arrays[name] = {
                "dtype": arr.dtype.str.replace(">", "<").replace("|", "<"),
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": len(data),
            }
            chunks.append(data)
            offset += len(data)
        table.append(arrays)
        entry = {
            "name": layer.name, "op": layer.op,
            "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
            "kernel": layer.kernel, "stride": layer.stride, "padding": layer.padding,
            "wbits": layer.wbits, "in_bits": layer.in_bits, "out_bits": layer.out_bits,
            "out_kind": layer.out_kind, "alpha": layer.alpha, "arrays": arrays,
        }
        if layer.skip is not None:
            # absent (not null) without a skip: version-1 files stay byte-identical
            entry["skip"] = int(layer.skip)
        # the version-3 keys likewise appear only when they differ from the default
        if layer.skip_stride != 1:
            entry["skip_stride"] = int(layer.skip_stride)
        if layer.skip_channel_offset != 0:
            entry["skip_channel_offset"] = int(layer.skip_channel_offset)
        if layer.pool is not None:
            entry["pool"] = layer.pool
        if layer.in_pool is not None:
            entry["in_pool"] = layer.in_pool
        layers_json.append(entry)
    header = {
        "input_shape": list(image.input_shape),
        "input_bits": image.input_bits,
        "layers": layers_json,
        "payload_bytes": offset,
        "meta": {k: v for k, v in image.meta.items() if k != "content_hash"},
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, format_version(image), len(head)) + head + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def content_hash(data: bytes) -> str:
    """The hex SHA-256 stored at the end of a serialized image."""
    return data[-_HASH_BYTES:].hex()


def from_bytes(data: bytes) -> ModelImage:
    """Parse and validate a serialized image; raise ``ImageError`` on any problem."""
    if len(data) < _PREFIX.size + _HASH_BYTES:
        _fail(f"model image is truncated ({len(data)} bytes)")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        _fail("not a PACT model image (bad magic); create one with 'pact export'")
    if version not in READABLE_VERSIONS:
        _fail(f"model image format version {version} is not supported (this tool reads "
              f"{', '.join(map(str, READABLE_VERSIONS))}); re-export it with 'pact export'")
    body, digest = data[:-_HASH_BYTES], data[-_HASH_BYTES:]
    start = _PREFIX.size + head_len
    if start > len(body):
        _fail("model image is truncated (header runs past the end)")
    try:
        header = json.loads(body[_PREFIX.size:start])
    except (UnicodeDecodeError, json.JSONDecodeError):
        if hashlib.sha256(body).digest() != digest:
            _fail("model image is corrupted (content hash mismatch)")
        _fail("model image header is not valid JSON")
    try:
        payload_bytes = int(header["payload_bytes"])
    except (KeyError, TypeError, ValueError):
        _fail("model image header lacks payload_bytes")
    if len(body) - start != payload_bytes:
        _fail(f"model image is truncated or padded: payload is {len(body) - start} bytes, "
              f"header says {payload_bytes}")
    if hashlib.sha256(body).digest() != digest:
        _fail("model image is corrupted (content hash mismatch)")
    payload = memoryview(body)[start:]
    try:
        layers = []
        for lj in header["layers"]:
            arrays = {}
            for name, spec in lj["arrays"].items():
                end = spec["offset"] + spec["nbytes"]
                if spec["offset"] < 0 or end > payload_bytes:
                    _fail(f"layer {lj['name']}: array {name} runs past the payload")
                arr = np.frombuffer(payload[spec["offset"]:end], dtype=np.dtype(spec["dtype"]))
                arrays[name] = arr.reshape(spec["shape"]).copy()
            layers.append(Layer(
                name=lj["name"], op=lj["op"],
                in_shape=tuple(lj["in_shape"]), out_shape=tuple(lj["out_shape"]),
                kernel=lj["kernel"], stride=lj["stride"], padding=lj["padding"],
                wbits=lj["wbits"], in_bits=lj["in_bits"], out_bits=lj["out_bits"],
                out_kind=lj["out_kind"], alpha=lj["alpha"],
                weights=arrays["weights"], mult=arrays["mult"],
                offset=arrays["offset"], shift=arrays["shift"],
                skip=lj.get("skip"), skip_mult=arrays.get("skip_mult"),
                skip_stride=lj.get("skip_stride", 1),
                skip_channel_offset=lj.get("skip_channel_offset", 0),
                pool=lj.get("pool"), in_pool=lj.get("in_pool"),
            ))
            if version < _RESIDUAL_VERSION and lj.get("skip") is not None:
                _fail(f"layer {lj['name']}: a residual layer in a version-{version} image")
            if version < FORMAT_VERSION and layers[-1].needs_v3:
                _fail(f"layer {lj['name']}: pool, in_pool or a strided/offset skip in a "
                      f"version-{version} image")
        image = ModelImage(
            input_shape=tuple(header["input_shape"]), input_bits=header["input_bits"],
            layers=layers, meta=header.get("meta", {}),
        )
    except ImageError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        _fail(f"model image header is inconsistent ({type(exc).__name__}: {exc})")
    image.meta = dict(image.meta, content_hash=content_hash(data))
    validate(image)
    return image


def save(image: ModelImage, path: str | os.PathLike[str]) -> str:
    """Write an image atomically (a partial file never appears under ``path``)."""
    from .paths import write_file

    data = to_bytes(image)
    write_file(path, data)
    return content_hash(data)


def load(path: str | os.PathLike[str]) -> ModelImage:
    """Read and validate an image file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _fail(f"model image {path} does not exist; create it with 'pact export'")
    except IsADirectoryError:
        _fail(f"{path} is a directory, not a model image")
    return from_bytes(data)
