"""``pact gen --block chip``: deterministic Verilog, a manifest the compiler accepts, a clean
Verilator lint with the chip's short waiver list, an Icarus build, one-line errors."""

import json
import re
import subprocess

import pytest

from cosim.tools import prepare_environment
from gen.chip import CHIP_LINT_WAIVERS, build_chip, chip_params
from gen.compiler import load_hardware
from pact.cli import main

SMALL = ["--wbits", "3", "--abits", "5", "--rows", "2", "--cols", "3", "--mem-width", "32",
         "--max-channels", "8", "--max-plane", "16", "--wbuf-depth", "128"]
DEFAULT = ["--wbits", "4", "--abits", "4", "--rows", "8", "--cols", "8"]


def gen(tmp_path, extra, sub="out"):
    out = tmp_path / sub
    assert main(["gen", "--block", "chip", *extra, "--out", str(out)]) == 0
    return out


@pytest.mark.slow  # two whole plane chips
def test_same_arguments_give_identical_files(tmp_path):
    a, b = gen(tmp_path, SMALL, "a"), gen(tmp_path, SMALL, "b")
    for name in ("pact_chip.v", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    text = (a / "pact_chip.v").read_text()
    assert "module pact_chip(" in text
    assert "src =" not in text  # no source-location attributes


def test_manifest_has_the_parameters_and_derived_sizes(tmp_path):
    out = gen(tmp_path, SMALL)
    manifest = json.loads((out / "manifest.json").read_text())
    params, derived = manifest["params"], manifest["derived"]
    assert params["mem_width"] == 32 and params["wbuf_depth"] == 128
    p = chip_params(params)
    assert params["max_reduction"] == p.max_reduction == 8 * 225 * 3 * 2
    assert derived["acc_width"] == p.acc_width
    assert derived["lane_bits"] == 8 and derived["max_shift"] == 3 * 2 + 5 * 1
    # 181 descriptor bits, 102 constants bits (with the residual skip_mult) in 32-bit words
    assert derived["descriptor_words"] == 6 and derived["consts_words"] == 4
    assert derived["lint_waivers"] == sorted(CHIP_LINT_WAIVERS)
    names = {port["name"] for port in manifest["ports"]}
    assert {"start", "busy", "done", "cycles", "error", "layer", "mac_beats",
            "mem_rd_cmd__payload", "mem_rd_data__ready", "mem_wr__payload"} <= names
    hw = load_hardware(out)  # the compiler accepts it (config hash included)
    assert (hw.rows, hw.cols, hw.mem_width) == (2, 3, 32)


@pytest.mark.parametrize("flag, value, word", [
    ("--mem-width", "48", "power of two"), ("--max-bits", "17", "max_bits"),
    ("--rows", "0", "rows"), ("--wbits", "2", "slices"),
])
def test_bad_parameters_are_one_line_errors(tmp_path, capsys, flag, value, word):
    args = list(DEFAULT)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    if word == "slices":
        args += ["--max-bits", "16"]
    rc = main(["gen", "--block", "chip", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and word in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_builder_fills_in_defaults():
    params = {"wbits": 4, "abits": 4, "rows": 8, "cols": 8, "max_reduction": 1024}
    chip, extra = build_chip(params)
    chip._MustUse__used = True
    assert params["mem_width"] == 64 and params["max_reduction"] == 64 * 225 * 4
    assert extra["acc_width"] == 33


@pytest.fixture(scope="module")
def default_verilog(tmp_path_factory):
    return gen(tmp_path_factory.mktemp("chip"), DEFAULT) / "pact_chip.v"


ODD = ["--wbits", "2", "--abits", "8", "--rows", "3", "--cols", "5", "--mem-width", "32",
       "--max-bits", "12", "--max-channels", "20", "--max-plane", "30", "--wbuf-depth", "300"]


@pytest.mark.parametrize("extra", [DEFAULT, ODD, SMALL], ids=["default", "odd", "small"])
def test_verilator_lint_is_clean_with_the_chip_waivers(tmp_path, extra, require_sim):
    require_sim("verilator")
    verilog = gen(tmp_path, extra) / "pact_chip.v"
    prepare_environment("verilator")
    waivers = [f"-Wno-{w}" for w in sorted(CHIP_LINT_WAIVERS)]
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *waivers, "--top-module",
                        "pact_chip", str(verilog)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "%Warning" not in r.stderr


def test_verilator_lint_fails_without_the_waivers(default_verilog, require_sim):
    """The lint check can fail: the waived warnings are real."""
    require_sim("verilator")
    prepare_environment("verilator")
    r = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", "pact_chip",
                        str(default_verilog)], capture_output=True, text=True)
    assert r.returncode != 0
    found = set(re.findall(r"%Warning-(\w+)", r.stderr))
    assert found and found <= set(CHIP_LINT_WAIVERS)


def test_icarus_builds_it(default_verilog, tmp_path, require_sim):
    require_sim("icarus")
    r = subprocess.run(["iverilog", "-g2012", "-s", "pact_chip", "-o", str(tmp_path / "a.vvp"),
                        str(default_verilog)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "a.vvp").stat().st_size > 0
