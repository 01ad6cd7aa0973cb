"""Data loaders: the embedded digits split, and MNIST/CIFAR-10 from tiny files written here."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from golden import data
from pact.errors import UserError


def test_digits_split_is_fixed_stratified_and_scaled():
    a, b = data.load_digits(), data.load_digits()
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert a.x_train.min() == 0.0 and a.x_train.max() == 1.0
    assert np.array_equal(a.x_train * 16, np.round(a.x_train * 16))  # sixteenths, exactly
    # stratified: every class is 20% test, to within one image
    total = np.bincount(np.concatenate([a.y_train, a.y_test]))
    assert np.all(np.abs(np.bincount(a.y_test) - 0.2 * total) <= 1)
    assert a.num_classes == 10 and a.input_shape == (1, 8, 8)
    assert data.load("digits").name == "digits"


@pytest.mark.parametrize("spec,message", [
    ("imagenet", "unknown data set"), ("mnist", "needs a directory"),
    ("cifar10:", "needs a directory"), ("digits:/tmp", "embedded"),
])
def test_bad_specs_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        data.load(spec)


def idx_bytes(arr, magic_type=0x08):
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, magic_type, arr.ndim) + struct.pack(
        f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_mnist(where, n_train=6, n_test=4, gz=False):
    rng = np.random.default_rng(0)
    where.mkdir(exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test),
    }
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (where / (name + ".gz")).write_bytes(gzip.compress(raw, mtime=0))
        else:
            (where / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path / "m", gz=gz)
    ds = data.load(f"mnist:{tmp_path / 'm'}")
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (4, 1, 28, 28)
    assert np.array_equal(np.round(ds.x_train[:, 0] * 255), arrays["train-images-idx3-ubyte"])
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert ds.name.startswith("mnist:") and ds.num_classes == 10


def test_mnist_missing_directory_and_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load(f"mnist:{tmp_path / 'nope'}")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        data.load(f"mnist:{tmp_path / 'f'}")
    write_mnist(tmp_path / "m")
    os.remove(tmp_path / "m" / "t10k-labels-idx1-ubyte")
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.*missing"):
        data.load(f"mnist:{tmp_path / 'm'}")


@pytest.mark.parametrize("damage,message", [
    (lambda raw: raw[:-1], "truncated"),
    (lambda raw: raw[:6], "truncated"),
    (lambda raw: b"\x00\x00\x0d" + raw[3:], "bad magic"),
    (lambda raw: b"\x01" + raw[1:], "bad magic"),
    (lambda raw: raw + b"\x00", "truncated or corrupted"),
])
def test_malformed_idx_is_a_user_error(tmp_path, damage, message):
    write_mnist(tmp_path / "m")
    path = tmp_path / "m" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=message):
        data.load(f"mnist:{tmp_path / 'm'}")


def test_mnist_inconsistent_files(tmp_path):
    write_mnist(tmp_path / "m")
    (tmp_path / "m" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(UserError, match="6 images but 5 labels"):
        data.load(f"mnist:{tmp_path / 'm'}")
    (tmp_path / "m" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(6, 12)))
    with pytest.raises(UserError, match="labels"):
        data.load(f"mnist:{tmp_path / 'm'}")
    (tmp_path / "m" / "m.gz").write_bytes(b"not gzip")
    os.remove(tmp_path / "m" / "t10k-images-idx3-ubyte")
    (tmp_path / "m" / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="gzip"):
        data.load(f"mnist:{tmp_path / 'm'}")


def write_cifar(where, per_batch=3):
    rng = np.random.default_rng(1)
    where.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in (*data.CIFAR_TRAIN, data.CIFAR_TEST):
        batch = {b"data": rng.integers(0, 256, size=(per_batch, 3072)).astype(np.uint8),
                 b"labels": rng.integers(0, 10, size=per_batch).tolist(),
                 b"batch_label": name.encode()}
        (where / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches[name] = batch
    return batches


def test_cifar10_from_python_batches(tmp_path):
    batches = write_cifar(tmp_path / "top" / "cifar-10-batches-py")
    ds = data.load(f"cifar10:{tmp_path / 'top'}")  # the parent folder works too
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    first = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32)
    assert np.array_equal(np.round(ds.x_train[0] * 255), first)
    assert ds.y_train[:3].tolist() == batches["data_batch_1"][b"labels"]
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_missing_batch(tmp_path):
    write_cifar(tmp_path / "c")
    os.remove(tmp_path / "c" / "data_batch_4")
    with pytest.raises(UserError, match="data_batch_4 is missing"):
        data.load(f"cifar10:{tmp_path / 'c'}")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload,message", [
    (b"garbage", "not a CIFAR-10 python batch"),
    (pickle.dumps({b"data": Evil(), b"labels": [1]}), "not allowed"),
    (pickle.dumps([1, 2, 3]), "not a dict"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "lacks"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "expected"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "1 labels"),
    (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "labels outside"),
])
def test_malformed_cifar_batch_is_a_user_error(tmp_path, payload, message):
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(payload)
    with pytest.raises(UserError, match=message):
        data.load(f"cifar10:{tmp_path / 'c'}")
