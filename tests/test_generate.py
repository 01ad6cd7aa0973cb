"""``pact gen``: deterministic Verilog, a complete manifest, clean lint, and one-line errors."""

import json
import re
import subprocess

import pytest

from cosim.tools import prepare_environment
from gen import generate
from pact.cli import main

CONFIGS = [
    ("mac_array", ["--wbits", "2", "--abits", "8", "--rows", "2", "--cols", "3"]),
    ("mac_array", ["--wbits", "8", "--abits", "2", "--rows", "3", "--cols", "2",
                   "--max-shift", "6", "--max-reduction", "50"]),
    ("pact_unit", ["--wbits", "4", "--abits", "4", "--rows", "2", "--cols", "3"]),
    ("pact_unit", ["--wbits", "8", "--abits", "8", "--rows", "2", "--cols", "2",
                   "--signed-out"]),
]


def gen(tmp_path, block, extra, sub="out"):
    out = tmp_path / sub
    assert main(["gen", "--block", block, *extra, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("block, extra", CONFIGS)
def test_same_arguments_give_identical_files(tmp_path, block, extra):
    a, b = gen(tmp_path, block, extra, "a"), gen(tmp_path, block, extra, "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == ["manifest.json", f"pact_{block}.v"]
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_different_parameters_give_a_different_hash(tmp_path):
    a = gen(tmp_path, "mac_array", CONFIGS[0][1], "a")
    b = gen(tmp_path, "mac_array", CONFIGS[0][1] + ["--max-reduction", "7"], "b")
    ha = json.loads((a / "manifest.json").read_text())["config_hash"]
    hb = json.loads((b / "manifest.json").read_text())["config_hash"]
    assert ha != hb


def verilog_ports(text, module):
    """``{name: (direction, width)}`` from the module's port declarations."""
    body = text[text.index(f"module {module}("):]
    found = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                           body, re.M):
        found[name] = (direction, int(msb) + 1 if msb else 1)
    return found


@pytest.mark.parametrize("block, extra", CONFIGS)
def test_manifest_matches_the_verilog(tmp_path, block, extra):
    out = gen(tmp_path, block, extra)
    manifest = json.loads((out / "manifest.json").read_text())
    text = (out / manifest["verilog"]).read_text()
    assert manifest["module"] == f"pact_{block}"
    assert "(* src" not in text  # no source-location attributes
    want = {p["name"]: (p["direction"], p["width"]) for p in manifest["ports"]}
    assert verilog_ports(text, manifest["module"]) == want
    for port in manifest["ports"]:
        if "fields" in port:  # the fields tile the payload exactly
            assert sum(f["width"] for f in port["fields"]) == port["width"]
    assert manifest["config_hash"] == generate.config_hash(block, manifest["params"])
    for key in ("wbits", "abits", "rows", "cols", "max_reduction", "max_shift"):
        assert key in manifest["params"]
    assert manifest["derived"]["acc_width"] >= 2
    assert manifest["tools"]["amaranth"]


def test_pact_unit_is_sized_from_the_array(tmp_path):
    from rtl.mac_array import accumulator_width

    out = gen(tmp_path, "pact_unit", ["--wbits", "4", "--abits", "3", "--rows", "2",
                                      "--cols", "5", "--max-reduction", "77"])
    derived = json.loads((out / "manifest.json").read_text())["derived"]
    assert derived["acc_width"] == accumulator_width(4, 3, 77)
    assert derived["lanes"] == 5
    assert derived["out_bits"] == 3


@pytest.mark.parametrize("bad, message", [
    (["--wbits", "1"], "wbits"),
    (["--wbits", "17"], "wbits"),
    (["--abits", "1"], "abits"),
    (["--abits", "17"], "abits"),
    (["--rows", "0"], "rows"),
    (["--cols", "0"], "cols"),
    (["--rows", "2.5"], "--rows"),
    (["--abits", "four"], "--abits"),
    (["--max-reduction", "0"], "max_reduction"),
])
@pytest.mark.parametrize("block", ["mac_array", "pact_unit"])
def test_invalid_parameters_one_line_exit_2_nothing_written(tmp_path, capsys, block, bad,
                                                            message):
    out = tmp_path / "out"
    args = {"--wbits": "4", "--abits": "4", "--rows": "2", "--cols": "2"}
    args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
    argv = ["gen", "--block", block, *[x for kv in args.items() for x in kv], "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pact gen: error:") and message in err
    assert not out.exists()


def test_registry_accepts_another_block(tmp_path, monkeypatch):
    from rtl.pact_unit import PactUnit

    def build(params):
        return PactUnit(acc_width=params["wbits"] + 8, out_bits=params["abits"]), {"x": 1}

    monkeypatch.setitem(generate.BLOCKS, "toy", build)
    monkeypatch.setitem(generate.OPTIONS, "toy", ())
    manifest = generate.generate("toy", {"wbits": 4, "abits": 3, "rows": 1, "cols": 1,
                                         "max_reduction": 1}, tmp_path)
    assert manifest["module"] == "pact_toy" and manifest["derived"] == {"x": 1}
    assert "module pact_toy(" in (tmp_path / "pact_toy.v").read_text()


@pytest.mark.parametrize("block, extra", CONFIGS)
def test_verilator_lint_wall_with_documented_waivers(tmp_path, require_sim, block, extra):
    require_sim("verilator")
    prepare_environment("verilator")
    out = gen(tmp_path, block, extra)
    waivers = [f"-Wno-{w}" for w in sorted(generate.LINT_WAIVERS)]
    res = subprocess.run(["verilator", "--lint-only", "-Wall", *waivers, f"pact_{block}.v"],
                         cwd=out, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "%Warning" not in res.stderr


@pytest.mark.parametrize("block, extra", CONFIGS)
def test_iverilog_compiles(tmp_path, require_sim, block, extra):
    require_sim("icarus")
    out = gen(tmp_path, block, extra)
    res = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.vvp"),
                          str(out / f"pact_{block}.v")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
