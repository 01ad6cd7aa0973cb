"""pact train: run directories, determinism, caching, and argument errors."""

import json

import numpy as np
import pytest
import torch

from golden.reference import quantize_input
from golden.train import (
    CHECKPOINT,
    IMAGE_NAME,
    METRICS,
    TrainConfig,
    load_checkpoint,
    network_input,
    run_key,
    state_fingerprint,
    train,
)
from pact.cli import main as pact_main
from pact.errors import UserError

TINY = {"epochs": 1, "subset": 200, "batch_size": 50}


def test_train_writes_checkpoint_and_metrics(tmp_path):
    out = train(TrainConfig(wbits=3, abits=4, seed=5, **TINY), tmp_path / "run", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, METRICS]
    m = json.loads((out / METRICS).read_text())
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["test_images"] == 360
    assert (m["wbits"], m["abits"], m["end_bits"], m["epochs"], m["seed"]) == (3, 4, 8, 1, 5)
    assert set(m["alpha"]) == {"conv0", "conv1", "conv2"}
    assert all(a > 0 for a in m["alpha"].values())
    assert m["train_seconds"] > 0 and m["train_images"] == 200
    ckpt = load_checkpoint(out)
    assert ckpt["config"] == TrainConfig(wbits=3, abits=4, seed=5, **TINY).to_dict()
    assert [lay["name"] for lay in ckpt["layers"]] == ["conv0", "conv1", "conv2", "fc"]
    assert ckpt["fingerprint"] == state_fingerprint(ckpt["state_dict"])


def test_resnet_trains(tmp_path):
    out = train(TrainConfig(model="resnet", wbits=4, abits=4, seed=1, **TINY), tmp_path / "r",
                progress=False)
    m = json.loads((out / METRICS).read_text())
    assert set(m["alpha"]) == {f"conv{i}" for i in range(6)} and m["model"] == "resnet"
    layers = load_checkpoint(out)["layers"]
    assert [lay.get("skip") for lay in layers] == [None, None, 0, None, None, 3, None]
    assert run_key(TrainConfig(model="resnet")).startswith("resnet-w4a4b8-ep40-s0-")


def test_training_learns(tmp_path):
    # three short epochs on 400 images: far above chance (10%), for PACT and the baseline
    for name, bits in (("q", 2), ("f", None)):
        config = TrainConfig(wbits=bits, abits=bits, epochs=3, subset=400, batch_size=32)
        out = train(config, tmp_path / name, progress=False)
        assert json.loads((out / METRICS).read_text())["test_accuracy"] > 0.7


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = train(TrainConfig(seed=1, **TINY), tmp_path / "a", progress=False)
    b = train(TrainConfig(seed=1, **TINY), tmp_path / "b", progress=False)
    c = train(TrainConfig(seed=2, **TINY), tmp_path / "c", progress=False)
    fa, fb, fc = (load_checkpoint(p)["fingerprint"] for p in (a, b, c))
    assert fa == fb != fc


def test_float_baseline_and_mlp(tmp_path):
    out = train(TrainConfig(wbits=None, abits=None, model="mlp", **TINY), tmp_path / "f",
                progress=False)
    m = json.loads((out / METRICS).read_text())
    assert m["float"] and m["alpha"] == {} and m["wbits"] is None


def test_reuse_returns_a_finished_run_without_training(tmp_path):
    config = TrainConfig(**TINY)
    out = train(config, runs_root=tmp_path, progress=False)
    assert out == tmp_path / run_key(config)
    stamp = (out / CHECKPOINT).stat().st_mtime_ns
    assert train(config, runs_root=tmp_path, reuse=True, progress=False) == out
    assert (out / CHECKPOINT).stat().st_mtime_ns == stamp
    # a different configuration in the same directory is not reused, and the image exported
    # from the old run is removed with it
    (out / IMAGE_NAME).write_bytes(b"stale")
    train(TrainConfig(**{**TINY, "seed": 9}), out, reuse=True, progress=False)
    assert (out / CHECKPOINT).stat().st_mtime_ns != stamp
    assert not (out / IMAGE_NAME).exists()


def test_run_key_names_the_configuration():
    base = TrainConfig(wbits=4, abits=4, epochs=40, seed=0)
    assert run_key(base).startswith("cnn-w4a4b8-ep40-s0-")
    assert run_key(TrainConfig(wbits=None, abits=None)).startswith("cnn-float-")
    assert run_key(TrainConfig(data="mnist:/x")).startswith("mnist-cnn-")
    keys = {run_key(base), run_key(TrainConfig(wbits=4, abits=4, epochs=40, seed=0, lr=0.02)),
            run_key(TrainConfig(wbits=4, abits=4, epochs=40, seed=0, end_bits=6))}
    assert len(keys) == 3
    assert run_key(base) == run_key(TrainConfig(wbits=4, abits=4, epochs=40, seed=0))


def test_network_input_is_the_reference_input_grid():
    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    layers = [{"in_bits": 5}]
    got = network_input(x, layers)
    assert torch.equal(got * 31, torch.as_tensor(quantize_input(x, 5).astype(np.float32)))
    assert torch.equal(network_input(x, [{"in_bits": None}]), torch.as_tensor(x))


@pytest.mark.parametrize("config,message", [
    (TrainConfig(wbits=9), "wbits"),
    (TrainConfig(abits=1), "abits"),
    (TrainConfig(end_bits=0), "end_bits"),
    (TrainConfig(wbits=None), "both"),
    (TrainConfig(model="vgg"), "unknown model"),
    (TrainConfig(data="imagenet"), "unknown data set"),
    (TrainConfig(epochs=0), "epochs"),
    (TrainConfig(lr=0.0), "lr"),
    (TrainConfig(subset=0), "subset"),
])
def test_bad_configurations_are_user_errors_before_any_output(tmp_path, config, message):
    with pytest.raises(UserError, match=message):
        train(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path)
    torch.save({"format": "other"}, tmp_path / CHECKPOINT)
    with pytest.raises(UserError, match="not a pact-checkpoint"):
        load_checkpoint(tmp_path)


def test_cli_trains_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = pact_main(["train", "--wbits", "2", "--abits", "2", "--epochs", "1", "--subset", "100",
                    "--quiet", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "w2a2" in text and "test accuracy" in text and str(out) in text
    assert json.loads((out / METRICS).read_text())["abits"] == 2


@pytest.mark.parametrize("argv,message", [
    (["--float", "--wbits", "4"], "--float"),
    (["--wbits", "4"], "--abits"),
    (["--wbits", "4", "--abits", "12"], "abits"),
    (["--wbits", "4", "--abits", "4", "--data", "mnist:/no/such/dir"], "does not exist"),
    (["--wbits", "4", "--abits", "4", "--model", "lenet", "--data", "digits"],
     "lenet cannot take the 1x8x8 images of digits"),
])
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert pact_main(["train", *argv, "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_without_data_trains_the_model_on_its_stand_in(tmp_path, capsys):
    out = tmp_path / "lenet"
    rc = pact_main(["train", "--model", "lenet", "--wbits", "4", "--abits", "4", "--epochs", "1",
                    "--subset", "64", "--quiet", "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("no --data: lenet trains on the stand-in mnist5k (embedded MNIST "
                        "digits), not its own mnist:DIR")
    metrics = json.loads((out / METRICS).read_text())
    assert metrics["dataset"] == "mnist5k" and metrics["test_images"] == 1000
    assert load_checkpoint(out)["config"]["data"] == "mnist5k"
    # a model built for digits says nothing and trains on digits, as before
    rc = pact_main(["train", "--wbits", "2", "--abits", "2", "--epochs", "1", "--subset", "64",
                    "--quiet", "--out", str(tmp_path / "cnn")])
    assert rc == 0 and "stand-in" not in capsys.readouterr().out


def test_stand_in_runs_are_keyed_by_their_data_spec():
    a = run_key(TrainConfig(model="resnet20", data="mnist5k@3x32x32"))
    b = run_key(TrainConfig(model="resnet20", data="mnist5k@3x40x40"))
    assert a.startswith("mnist5k-resnet20-") and b.startswith("mnist5k-resnet20-") and a != b
