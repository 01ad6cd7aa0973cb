"""``pact flow``: the end-to-end command, on a reduced chip and a small random network (the
digits CNN on the 8x8 chip is ``nox -s flow``)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cosim import flow
from cosim.chip_model import random_image
from gen import compiler
from golden import image as image_mod
from pact.cli import main

SMALL_CHIP = dict(rows=4, cols=4, max_channels=16, max_plane=64, wbuf_depth=2048)


def digits_network(tmp_path, wbits=4, abits=4, seed=0):
    """A random network with the digits input (1x8x8, 8-bit) and 10 classes."""
    image = random_image(seed, wbits=wbits, abits=abits, channels=(8, 8, 8))
    image.meta.update(dataset="digits", model="cnn", wbits=wbits, abits=abits)
    path = tmp_path / "net.pactimg"
    image_mod.save(image, path)
    return path


def small_chip(wbits=4, abits=4):
    return flow.generate_chip(dict(wbits=wbits, abits=abits, **SMALL_CHIP), log=lambda m: None)


def test_utilization_from_windows():
    layout = {"layers": [{"name": "c", "op": "conv", "useful_macs": 1600},
                         {"name": "f", "op": "fc", "useful_macs": 160}]}
    recs = [{"marks": [(0, 0), (1, 100)], "cycles": 140},
            {"marks": [(0, 0), (1, 60)], "cycles": 100}]
    u = flow.utilization(layout, recs, rows=4, cols=4)
    # conv: 2 x 1600 MACs over 16 x (100 + 60) cycles; fc: 2 x 160 over 16 x (40 + 40).
    assert u["per_layer"][0]["utilization"] == pytest.approx(3200 / (16 * 160))
    assert u["per_layer"][1]["utilization"] == pytest.approx(320 / (16 * 80))
    assert u["conv"] == pytest.approx(3200 / (16 * 160))
    assert u["overall"] == pytest.approx(3520 / (16 * 240))
    assert u["per_layer"][0]["cycles"] == 80


def test_chip_dir_depends_on_parameters():
    a = flow.chip_dir({"wbits": 4, "abits": 4, "rows": 8, "cols": 8})
    b = flow.chip_dir({"wbits": 4, "abits": 4, "rows": 8, "cols": 4})
    assert a != b and a.name.startswith("chip-w4a4r8c8-")
    assert a == flow.chip_dir({"wbits": 4, "abits": 4, "rows": 8, "cols": 8})


@pytest.mark.parametrize("argv,match", [
    (["--sim", "modelsim"], "--sim must be one of"),
    (["--images", "0"], "--images must be >= 1"),
    (["--wbits", "9"], "--wbits must be an integer in 2..8"),
    (["--model", "rnn"], "--model must be one of cnn, mlp, resnet"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, match):
    args = {"--wbits": "4", "--abits": "4", "--json": str(tmp_path / "r.json")}
    for k, v in zip(argv[::2], argv[1::2], strict=True):
        args[k] = v
    assert main(["flow", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
    assert not (tmp_path / "r.json").exists()


def test_json_in_missing_folder_is_refused(tmp_path, capsys):
    assert main(["flow", "--wbits", "4", "--abits", "4", "--json",
                 str(tmp_path / "no" / "r.json")]) == 2
    assert "existing folder" in capsys.readouterr().err


@pytest.mark.sim
def test_flow_on_icarus_writes_a_bit_exact_report(require_sim, tmp_path, capsys):
    require_sim("icarus")
    net = digits_network(tmp_path)
    hw = small_chip()
    out = tmp_path / "report.json"
    assert main(["flow", "--wbits", "4", "--abits", "4", "--sim", "icarus", "--images", "3",
                 "--image", str(net), "--hw", str(hw), "--quiet", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 3 and r["bit_exact_images"] == 3 and r["mismatches"] == []
    assert r["chip_model_bit_exact"] is True
    # Bit-exact logits give the reference's predictions: the same accuracy.
    assert r["hw_accuracy"] == r["golden_accuracy"]
    assert r["mac_beats_per_inference"] == r["expected_mac_beats"]
    u = r["mac_utilization"]
    assert [p["name"] for p in u["per_layer"]] == ["conv0", "conv1", "conv2", "fc"]
    assert all(0 < p["utilization"] <= 1 for p in u["per_layer"]) and 0 < u["conv"] <= 1
    assert r["cycles_per_inference"] > r["expected_mac_beats"]
    assert r["sim_cycles_per_second"] > 0
    assert r["config_hash"] == compiler.load_hardware(hw).config_hash
    text = capsys.readouterr().out
    assert "bit-exact images   3/3" in text and "MAC utilization" in text


@pytest.mark.sim
def test_flow_exits_1_on_a_mismatch(require_sim, tmp_path, capsys, monkeypatch):
    require_sim("icarus")
    net = digits_network(tmp_path, seed=1)
    hw = small_chip()
    real = compiler.compile_image

    def corrupt(image, hw, **kw):
        program = real(image, hw, **kw)
        program.words[program.layout["layers"][2]["c_addr"]] ^= 1 << 13  # conv2's M, ch 0
        return program

    monkeypatch.setattr(compiler, "compile_image", corrupt)
    out = tmp_path / "report.json"
    assert main(["flow", "--wbits", "4", "--abits", "4", "--sim", "icarus", "--images", "2",
                 "--image", str(net), "--hw", str(hw), "--quiet", "--no-waves",
                 "--json", str(out)]) == 1
    r = json.loads(out.read_text())
    assert r["bit_exact_images"] < 2
    assert r["chip_model_bit_exact"] is False  # the encoding itself is wrong
    first = r["mismatches"][0]
    assert (first["layer"], first["name"], first["channel"]) == (2, "conv2", 0)
    assert "MISMATCH" in capsys.readouterr().out
    # a failing run keeps its own work folder (dumps) under its final name; tidy it up here
    work = Path(r["work_dir"])
    assert work.is_dir() and not work.name.startswith(".") and list(work.glob("dump_*.hex"))
    import shutil

    shutil.rmtree(work)


def test_hardware_that_does_not_match_the_model_is_refused(tmp_path, capsys):
    net = digits_network(tmp_path, wbits=2, abits=2)
    hw = tmp_path / "hw"
    hw.mkdir()
    from gen.generate import config_hash

    params = dict(wbits=4, abits=4, mem_width=64, max_bits=8, **SMALL_CHIP)
    (hw / "manifest.json").write_text(json.dumps(
        {"block": "chip", "params": params, "config_hash": config_hash("chip", params)}))
    out = tmp_path / "r.json"
    common = ["--sim", "icarus", "--images", "1", "--image", str(net), "--hw", str(hw),
              "--quiet", "--json", str(out)]
    assert main(["flow", "--wbits", "4", "--abits", "4", *common]) == 2
    assert "trained with wbits=2 but the hardware has wbits=4" in (
        capsys.readouterr().err)
    assert main(["flow", "--wbits", "2", "--abits", "2", *common]) == 2
    assert "has wbits=4 abits=4, not the --wbits 2 --abits 2" in capsys.readouterr().err
    assert not out.exists()


def test_test_images_are_quantized_digits():
    image = random_image(0, channels=(8, 8, 8))
    image.meta["dataset"] = "digits"
    xs, labels = flow.test_images(image, 5)
    assert len(xs) == 5 and xs[0].shape == (1, 8, 8) and labels.shape == (5,)
    assert all(x.min() >= 0 and x.max() <= 255 for x in xs)
    assert np.issubdtype(np.asarray(xs).dtype, np.integer)


def test_the_terminal_says_the_cause(capsys):
    """Issue 12: a timeout or an error flag was only in the JSON; the terminal said only
    'expected 4, got 13'."""
    mm = {"image": 0, "layer": 2, "name": "conv2", "channel": 0, "position": [0, 0],
          "expected": 4, "got": 13, "window": None, "waves": None,
          "reason": "timeout: no done within 213099 cycles, stuck in layer 2 after 0 MAC beats"}
    report = {"model": "cnn", "wbits": 4, "abits": 4, "rows": 8, "cols": 8, "sim": "icarus",
              "bit_exact_images": 0, "images": 1, "hw_accuracy": 0.0, "golden_accuracy": 1.0,
              "cycles_per_inference": None, "mac_utilization": None,
              "sim_cycles_per_second": None, "times": {}, "mismatches": [mm]}
    text = flow.summary(report)
    assert "expected 4, got 13" in text
    assert "cause: timeout: no done within 213099 cycles, stuck in layer 2" in text
    flagged = dict(mm, layer=None, channel=None, reason="error flags 0b0100: ERR_MEMORY (...)")
    assert "image 0: outputs match but error flags 0b0100: ERR_MEMORY" in flow.summary(
        dict(report, mismatches=[flagged]))


def test_images_past_the_test_set_are_refused_before_training(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert main(["flow", "--wbits", "4", "--abits", "4", "--images", "361", "--runs", str(runs),
                 "--quiet", "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than the 360 test images" in err
    assert list(runs.iterdir()) == []


def test_a_swapped_verilog_is_refused(tmp_path, capsys):
    """Issue 12: a chip folder whose pact_chip.v was replaced by another configuration's
    compiled (for the manifest's chip), failed with flag 0b0010, and its build overwrote the
    other configuration's build folder. The Verilog is checked against the manifest."""
    import shutil

    net = digits_network(tmp_path)
    hw = tmp_path / "hw"
    shutil.copytree(small_chip(), hw)
    other = small_chip(2, 2)
    shutil.copyfile(other / "pact_chip.v", hw / "pact_chip.v")
    out = tmp_path / "r.json"
    assert main(["flow", "--wbits", "4", "--abits", "4", "--sim", "icarus", "--images", "1",
                 "--image", str(net), "--hw", str(hw), "--quiet", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the Verilog its manifest describes" in err
    assert main(["compile", str(net), "--hw", str(hw), "--out", str(tmp_path / "p.hex")]) == 2
    assert "not the Verilog its manifest describes" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "p.hex").exists()


def test_builds_are_keyed_by_the_verilog_content(tmp_path):
    import shutil

    from cosim import chip_tb

    hw = tmp_path / "hw"
    shutil.copytree(small_chip(), hw)
    before = chip_tb.build_dir_for("icarus", hw, 1 << 16)
    (hw / "pact_chip.v").write_text((hw / "pact_chip.v").read_text() + "// edited\n")
    assert chip_tb.build_dir_for("icarus", hw, 1 << 16) != before


@pytest.mark.sim
def test_two_flows_started_together_both_pass(require_sim, tmp_path):
    """Issue 12: two identical flows started together shared one work folder, and one crashed
    (FileNotFoundError: dump_002.hex). Now each run has its own work folder, and the training
    run, the chip and the build are made once, under locks, while the other process waits."""
    import subprocess
    import sys

    require_sim("icarus")
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = [sys.executable, "-m", "pact", "flow", "--wbits", "4", "--abits", "4", "--sim",
            "icarus", "--images", "2", "--epochs", "2", "--runs", str(runs), "--quiet"]
    env = dict(__import__("os").environ, PYTHONPATH=str(Path(flow.__file__).parents[1]))
    procs = [subprocess.Popen([*argv, "--json", str(tmp_path / f"r{i}.json")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, text in zip(procs, outs, strict=True):
        assert p.returncode == 0, text
    for i in range(2):
        r = json.loads((tmp_path / f"r{i}.json").read_text())
        assert r["bit_exact_images"] == 2 and r["work_dir"] is None
    assert len(list(runs.iterdir())) == 2  # one run folder and its lock file
