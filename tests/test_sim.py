"""Block regressions on the generated Verilog, through ``cosim.sim`` and ``pact sim``.

The CI matrix: both blocks, (wbits, abits) in {(2,2), (4,4), (8,8), (2,8), (8,2)}, on Icarus and
Verilator; each configuration is built once (``sim_build/<sim>/<config>``) and reused. Vector
counts and seeds come from ``PACT_VECTORS`` / ``PACT_SEED`` (see ``cosim.sim``).
"""

import json
from pathlib import Path

import pytest

from cosim import sim as cosim_sim
from pact.cli import main

pytestmark = pytest.mark.sim

SIMS = ["icarus", "verilator"]
BITS = [(2, 2), (4, 4), (8, 8), (2, 8), (8, 2)]
ROWS, COLS = 2, 3  # not square: a transposed result would show


def params(block, wbits, abits, **kw):
    return cosim_sim.block_params(block, wbits, abits, ROWS, COLS, **kw)


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("wbits, abits", BITS)
@pytest.mark.parametrize("block", ["mac_array", "pact_unit"])
def test_matrix(require_sim, block, wbits, abits, sim):
    require_sim(sim)
    result, _ = cosim_sim.regress(block, sim, params(block, wbits, abits))
    s = result.summary
    assert s, f"the bench wrote no summary; see {result.log}"
    assert s["mismatches"] == 0, s["first_mismatches"]
    assert s["checked"] == s["vectors"] > 0
    assert result.passed, f"see {result.log}"


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("block", ["mac_array", "pact_unit"])
def test_checker_reports_a_wrong_expected_value(require_sim, block, sim):
    """One deliberately wrong golden value: the bench must fail with exactly one mismatch."""
    require_sim(sim)
    result, _ = cosim_sim.regress(block, sim, params(block, 4, 4), vectors=20,
                                  inject_error=True)
    assert not result.passed
    assert result.summary["mismatches"] == 1
    assert result.summary["first_mismatches"][0]["index"] == result.summary["vectors"] // 2


def test_mac_array_with_shift(require_sim):
    """Bit-sliced operands: per-beat shifts up to max_shift, bound reached with the shift."""
    require_sim("icarus")
    p = params("mac_array", 3, 2, max_reduction=40, max_shift=5)
    result, _ = cosim_sim.regress("mac_array", "icarus", p, vectors=50)
    assert result.passed and result.summary["mismatches"] == 0


def test_pact_sim_command(require_sim, tmp_path, capsys):
    require_sim("icarus")
    out = tmp_path / "sim.json"  # in an existing folder: pact sim creates none
    argv = ["sim", "--block", "pact_unit", "--sim", "icarus", "--wbits", "4", "--abits", "4",
            "--rows", str(ROWS), "--cols", str(COLS), "--vectors", "30", "--seed", "5",
            "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    for key in ("vectors", "mismatches", "cycles", "wall_seconds"):
        assert key in data
    assert data["mismatches"] == 0 and data["seed"] == 5 and data["cycles"] > data["vectors"]
    assert "PASS" in capsys.readouterr().out


def test_pact_sim_waves(require_sim, tmp_path):
    require_sim("icarus")
    out = tmp_path / "sim.json"
    argv = ["sim", "--block", "mac_array", "--sim", "icarus", "--wbits", "2", "--abits", "2",
            "--rows", str(ROWS), "--cols", str(COLS), "--vectors", "5", "--waves",
            "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["waves"].endswith(".fst")
    assert Path(data["waves"]).stat().st_size > 0


def test_pact_sim_exit_code_follows_mismatches(require_sim, tmp_path, monkeypatch):
    require_sim("icarus")
    real = cosim_sim.regress
    monkeypatch.setattr(cosim_sim, "regress",
                        lambda *a, **kw: real(*a, **kw, inject_error=True))
    out = tmp_path / "sim.json"
    argv = ["sim", "--block", "pact_unit", "--sim", "icarus", "--wbits", "4", "--abits", "4",
            "--rows", str(ROWS), "--cols", str(COLS), "--vectors", "10", "--json", str(out)]
    assert main(argv) == 1
    assert json.loads(out.read_text())["mismatches"] == 1


@pytest.mark.parametrize("bad", [
    ["--wbits", "17"], ["--rows", "0"], ["--cols", "x"],
    ["--wbits", "16", "--abits", "16", "--max-reduction", str(10**12)],  # beyond int64 golden
])
def test_pact_sim_bad_parameters(tmp_path, capsys, bad):
    args = {"--wbits": "4", "--abits": "4", "--rows": "2", "--cols": "2"}
    args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
    out = tmp_path / "sim.json"
    argv = ["sim", "--block", "mac_array", "--sim", "icarus",
            *[x for kv in args.items() for x in kv], "--json", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pact sim: error:")
    assert not out.exists()


def test_vectors_and_seed_from_environment(monkeypatch):
    monkeypatch.setenv("PACT_VECTORS", "77")
    assert cosim_sim.env_int("PACT_VECTORS", 1) == 77
    monkeypatch.setenv("PACT_SEED", "x")
    with pytest.raises(Exception, match="PACT_SEED"):
        cosim_sim.env_int("PACT_SEED", 1)


@pytest.mark.parametrize("sim", SIMS)
def test_mac_array_full_rate_in_hdl(require_sim, sim):
    """No bubbles in, sink always ready: one beat per cycle, one result every L cycles."""
    require_sim(sim)
    result, _ = cosim_sim.regress(
        "mac_array", sim, params("mac_array", 4, 4), vectors=60, bubbles=0.0, backpressure=0.0,
        name="full-rate", extra={"random_only": True, "min_len": 3, "max_len": 3})
    s = result.summary
    assert result.passed and s["mismatches"] == 0
    assert s["beats_per_cycle"] == 1.0 and s["macs_per_cycle"] == ROWS * COLS
    assert s["results_per_cycle"] == round(1 / 3, 6)
