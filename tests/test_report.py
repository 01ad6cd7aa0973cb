"""report (the package): a reduced sweep end to end, the report's structure, and its arithmetic."""

import fcntl
import json
import os

import pytest

import report as rp
from pact.cli import main
from pact.errors import UserError

# Two bit-widths, every section, on Icarus (the quickest simulator to build): real synthesis,
# real training (3 epochs, one seed), the real chip checked == against the integer reference.
REDUCED = ["--quick", "--bits", "2,4", "--chip-bits", "2,4", "--seeds", "1", "--sims", "icarus",
           "--cycles-sim", "icarus", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def reduced(tmp_path_factory, require_sim_module):
    """The reduced report, made once per test session: pytest-xdist workers share it through
    a folder above their own temporary roots, behind a file lock."""
    require_sim_module("icarus")

    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's root is <session>/popen-gwN: share <session>, this run's own.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    shared = root / "pact-report-reduced"
    shared.mkdir(exist_ok=True)
    out, runs = shared / "out", shared / "runs"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "report.json").exists():
            code = main(["report", "--out", str(out), "--runs", str(runs), *REDUCED])
            assert code == 0
    return out, json.loads((out / "report.json").read_text())


def test_files_exist_and_are_not_empty(reduced):
    out, _ = reduced
    for name in ("report.json", "report.md", "report.html", *rp.PLOTS):
        assert (out / name).stat().st_size > 0, name
    for name in rp.PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".report-*"))  # no temporary folder left behind


def test_stable_top_level_keys(reduced):
    _, rep = reduced
    assert rep["format"] == rp.REPORT_FORMAT and rep["version"] == rp.REPORT_VERSION
    for key in ("area", "cycles", "bytes", "accuracy", "sim_speed", "settings", "paper",
                "times", "speedup_16_to_4"):
        assert key in rep, key
    assert set(rep["area"]) == {"mac_array", "pact_unit", "pact_share"}
    for block in ("mac_array", "pact_unit"):
        assert set(rep["area"][block]) == {"2", "4"}
    assert set(rep["cycles"]) == set(rep["bytes"]) == {"2", "4"}
    assert set(rep["accuracy"]) == {"float", "2", "4"}
    assert set(rep["sim_speed"]) == {"icarus"}
    assert rep["speedup_16_to_4"] is None  # neither 16 nor the pair was swept
    assert rep["cycles_iso_area"] is None  # no 16-bit chip to compare with


def test_area_entries_are_consistent(reduced):
    _, rep = reduced
    for block in ("mac_array", "pact_unit"):
        for k, e in rep["area"][block].items():
            assert e["k"] == int(k)
            assert e["cells"] == e["gates"] + e["flip_flops"] == sum(e["by_type"].values())
            assert e["per_unit"]["transistors"] == e["transistors"] / e["units"]
            assert e["unknown_types"] == []
            assert "ratio_to_16" not in e  # no 16-bit entry to compare with
    mac = rep["area"]["mac_array"]
    # Fewer bits, fewer gates: the point of the whole exercise.
    assert mac["2"]["transistors"] < mac["4"]["transistors"]
    assert mac["2"]["acc_width"] < mac["4"]["acc_width"]
    s = rep["settings"]
    for k, share in rep["area"]["pact_share"].items():
        pact = rep["area"]["pact_unit"][k]["per_unit"]["transistors"]
        per_mac = mac[k]["per_unit"]["transistors"]
        assert share["transistors"] == s["cols"] * pact / (s["rows"] * s["cols"] * per_mac)


def test_cycles_are_simulated_and_bit_exact(reduced):
    _, rep = reduced
    for k, c in rep["cycles"].items():
        assert c["source"] == "simulated" and c["sim"] == "icarus"
        assert c["bit_exact_images"] == c["images"] >= 1
        # One beat per cycle at best, one memory word per cycle at best.
        assert c["cycles"] >= c["compute_bound_cycles"] == c["mac_beats"]
        assert c["cycles"] >= c["memory_bound_cycles"]
        b = rep["bytes"][k]
        assert b["total"] == b["read"] + b["written"] == sum(b["by_kind"].values())
    # 2-bit weights take half the bytes of 4-bit ones (same network, same port).
    w2, w4 = rep["bytes"]["2"]["by_kind"]["weights"], rep["bytes"]["4"]["by_kind"]["weights"]
    assert w2 < w4


def test_accuracy_entries_hold_their_seeds(reduced):
    _, rep = reduced
    for k, e in rep["accuracy"].items():
        assert e["seeds"] == len(e["values"]) == 1
        assert e["min"] <= e["mean"] <= e["max"]
        assert 0.0 <= e["mean"] <= 1.0
        assert e["std"] == 0.0
        assert e["gap_to_float_points"] == pytest.approx(
            100 * (rep["accuracy"]["float"]["mean"] - e["mean"]), abs=1e-12)
        assert k == "float" or e["source"].startswith("integer reference")


def test_sim_speed_measured_per_clock(reduced):
    _, rep = reduced
    e = rep["sim_speed"]["icarus"]
    assert e["available"] is True
    for mode in rp.SPEED_MODES:
        m = e[mode]
        assert m["bit_exact_images"] == m["images"]
        assert m["cycles_per_second"] == m["cycles"] / m["seconds"]
        assert m["cycles_per_cpu_second"] == m["cycles"] / m["cpu_seconds"]
        assert m["images"] == rep["settings"]["speed_images"]["icarus"]
    # The same program on the same chip: the clock source changes the speed, not the cycles.
    assert e["hdl_clock"]["cycles"] == e["gpi_clock"]["cycles"] == e["python_clock"]["cycles"]
    assert e["hdl_over_python"] == (e["hdl_clock"]["cycles_per_cpu_second"]
                                    / e["python_clock"]["cycles_per_cpu_second"])


def test_markdown_and_html_show_the_tables(reduced):
    out, rep = reduced
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for title, _, header, rows in rp.tables(rep):
        assert all(len(r) == len(header) for r in rows), title
        assert f"## {title}" in md
        assert "| " + " | ".join(header) + " |" in md
        for r in rows:
            assert "| " + " | ".join(r) + " |" in md
    assert page.count("<table>") == len(rp.tables(rep))
    assert page.count("data:image/png;base64,") == len(rp.PLOTS)


# -- the arithmetic, on hand-made entries -------------------------------------------------------


def _area_entry(k, transistors, cells, units=4):
    return {"k": k, "per_unit": {"transistors": transistors / units, "cells": cells / units,
                                 "gates": cells / units}}


def test_area_ratios_divide_16_bit_by_k_bit_per_unit():
    entries = {"2": _area_entry(2, 400, 40), "16": _area_entry(16, 5600, 400)}
    r = rp.area_ratios(entries)
    assert r["2"] == {"cells": 10.0, "gates": 10.0, "transistors": 14.0}
    assert r["16"] == {"cells": 1.0, "gates": 1.0, "transistors": 1.0}


def test_area_ratios_need_a_16_bit_entry():
    assert rp.area_ratios({"2": _area_entry(2, 400, 40)}) == {}


def test_speedup_from_cycles_beats_and_bytes():
    cycles = {"16": {"cycles": 9000.0, "mac_beats": 4000, "source": "simulated"},
              "4": {"cycles": 2000.0, "mac_beats": 1000, "source": "simulated"}}
    traffic = {"16": {"total": 48000}, "4": {"total": 12000}}
    s = rp.speedup(cycles, traffic)
    assert s["cycles"] == 4.5 and s["compute_bound"] == 4.0 and s["bandwidth_bound"] == 4.0
    assert s["cycles_source"] == ["simulated"]
    assert s["iso_area_model"] is None
    assert rp.speedup({"4": cycles["4"]}, traffic) is None


def test_iso_area_model_scales_the_beats_of_the_narrow_array():
    cycles = {"16": {"cycles": 9000.0, "mac_beats": 4000, "memory_bound_cycles": 6000,
                     "source": "simulated"},
              "4": {"cycles": 6000.0, "mac_beats": 6000, "memory_bound_cycles": 1000,
                    "source": "simulated"}}
    traffic = {"16": {"total": 48000}, "4": {"total": 8000}}
    model = rp.speedup(cycles, traffic, mac_area_ratio=3.0)["iso_area_model"]
    # 16 bits: max(4000 beats, 6000 words); 4 bits: max(6000 / 3 beats, 1000 words).
    assert model["speedup"] == 6000 / 2000
    model = rp.speedup(cycles, traffic, mac_area_ratio=12.0)["iso_area_model"]
    assert model["speedup"] == 6000 / 1000  # now the narrow chip waits for its memory


@pytest.mark.parametrize("rows, cols, ratio, expected", [
    (8, 8, 1.99, (8, 8, 1)),
    (8, 8, 2.0, (16, 8, 2)),
    (8, 8, 5.59, (16, 16, 4)),
    (8, 8, 8.52, (32, 16, 8)),
    (32, 64, 16.0, (64, 64, 2)),  # capped at 64 rows and columns
])
def test_iso_area_array_grows_by_powers_of_two_within_the_ratio(rows, cols, ratio, expected):
    r, c, f = rp.iso_area_array(rows, cols, ratio)
    assert (r, c, f) == expected
    assert r * c == f * rows * cols and f <= max(ratio, 1)


def test_traffic_counts_every_word_once():
    layout = {"mem_width": 64, "descriptor_words": 2, "input": {"words": 3},
              "layers": [{"w_words": 10, "c_words": 4, "out_words": 5},
                         {"w_words": 6, "c_words": 2, "out_words": 1}]}
    t = rp.traffic(layout)
    assert t["words"] == {"descriptors": 6, "weights": 16, "constants": 6, "input": 3,
                          "outputs": 6}
    assert t["read"] == (6 + 16 + 6 + 3) * 8
    assert t["written"] == 6 * 8
    assert t["logits_only_total"] == (6 + 16 + 6 + 3 + 1) * 8


def test_render_from_a_dict_without_sections(tmp_path):
    cfg = rp.ReportConfig(bits=[2], sections=["area"])
    report = {"format": rp.REPORT_FORMAT, "version": rp.REPORT_VERSION,
              "settings": cfg.as_dict(), "paper": rp.PAPER, "area": None, "cycles": None,
              "bytes": None, "speedup_16_to_4": None, "accuracy": None, "sim_speed": None,
              "times": {"total_s": 1.0}}
    files = rp.write_report(report, tmp_path)
    assert sorted(f.name for f in files) == ["report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text()) == report


@pytest.mark.parametrize("argv, message", [
    (["--bits", "2,17"], "outside 2..16"),
    (["--bits", "two"], "not valid"),
    (["--sections", "area,colour"], "not one of"),
    (["--sims", "modelsim"], "not one of"),
    (["--seeds", "0"], ">= 1"),
    (["--mem-width", "48"], "power of two"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["report", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # validated before anything is written


def test_config_rejects_an_unknown_simulator():
    with pytest.raises(UserError, match="unknown simulator"):
        rp.ReportConfig(cycles_sim="xcelium")


def test_headline_warns_about_a_chip_that_is_not_bit_exact():
    entry = {"source": "simulated", "rows": 8, "cols": 8, "images": 4, "bit_exact_images": 3,
             "first_mismatch": "image 2: first mismatch at layer 0"}
    lines = rp.headline({"cycles": {"16": entry}, "settings": {"rows": 8, "cols": 8}})
    assert lines[0].startswith("WARNING: the 8x8 chip at k=16 is NOT bit-exact (3/4 images")
    assert rp.headline({"cycles": {"16": dict(entry, bit_exact_images=4)}}) == []


# -- payoff and fpga sections: their arithmetic and choices ---------------------------------


def test_payoff_ratio_divides_16_bit_area_by_k_bit_area():
    from report.payoff import ratio

    per_mac = {16: 3000.0, 4: 600.0, 2: 250.0}
    assert ratio(per_mac, 16, 2) == 12.0
    assert ratio(per_mac, 16, 4) == 5.0
    assert ratio(per_mac, 16, 8) is None


def test_requant_share_scales_the_array_to_16x16():
    from report.payoff import requant_share

    # 8 MACs of 100 transistors each -> 256 MACs of 100: 25,600; 2,560 of requantizer = 10%.
    assert requant_share(2560.0, 800.0, 8, 16, 16) == pytest.approx(0.10)
    assert requant_share(2560.0, 800.0, 8, 8, 8) == pytest.approx(0.40)


def test_tile_beats_counts_partial_tiles_as_whole():
    from report.payoff import tile_beats

    # 20 channels on 16 rows: 2 row tiles; 10 pixels on 8 cols: 2 col tiles; 3 rows; 9 beats.
    assert tile_beats([(20, 3, 10, 9)], 16, 8) == 2 * 3 * 2 * 9
    assert tile_beats([(16, 1, 8, 5), (1, 1, 1, 1)], 16, 8) == 5 + 1


def test_iso_area_shape_fits_the_budget_and_the_network():
    from report.payoff import iso_area_shape, tile_beats

    layers = [(16, 32, 32, 144), (32, 16, 16, 288), (64, 8, 8, 576)]
    r, c = iso_area_shape(1000, layers)
    assert r * c <= 1000 and c & (c - 1) == 0 and 1 <= r <= 64
    # No legal shape within the budget is faster on this model.
    best = min(tile_beats(layers, rr, cc) for cc in (2, 4, 8, 16, 32, 64)
               for rr in range(1, 65) if rr * cc <= 1000)
    assert tile_beats(layers, r, c) == best
    # 8 pixels wide, 64 channels: columns past 8 are wasted, so the shape stays 8 wide.
    assert iso_area_shape(1024, [(64, 8, 8, 576)]) == (64, 8)
    # A tie on beats goes to the smaller array.
    assert iso_area_shape(64, [(4, 1, 4, 1)]) == (4, 4)
    with pytest.raises(ValueError):
        iso_area_shape(1, layers)
    # No legal shape at all (cols must be >= 2): a ValueError naming the limits, not a crash.
    with pytest.raises(ValueError, match="cols 2..1"):
        iso_area_shape(1024, layers, max_cols=1)


def test_images_per_second_at_fmax():
    from report.fpga import images_per_second

    assert images_per_second(50.0, 25_000) == 2000.0
    assert images_per_second(None, 25_000) is None
    assert images_per_second(50.0, None) is None


def test_fpga_section_implements_every_k_at_once(monkeypatch, tmp_path):
    """Each k's chip goes to the FPGA flow, all of them in flight together (one per core);
    images per second come from the Fmax and the cycles given."""
    import threading

    import cosim.flow
    import gen.fpga
    from report.fpga import fpga_section

    started, release = [], threading.Barrier(2, timeout=10)

    def fake_implement(path, top, **kw):
        started.append(path.parent.name)
        release.wait()   # both k are in flight before either finishes (else: BrokenBarrier)
        k = int(path.parent.name)
        return {"lut4": 100 * k, "ff": 10 * k, "dsp": 0, "bram": 1, "dist_ram": 0,
                "fmax_mhz": 10.0 * k, "device": "LFE5U-25F", "fmax_source": "routed",
                "package": "CABGA381", "freq_target_mhz": 50, "seconds": {}, "cached": False,
                "tools": {}}

    monkeypatch.setattr(cosim.flow, "generate_chip",
                        lambda params, log, block: tmp_path / str(params["wbits"]))
    monkeypatch.setattr(gen.fpga, "implement", fake_implement)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = rp.ReportConfig(sections=["fpga"], fpga_bits=[2, 4])
    out = fpga_section(cfg, cycles={"2": 1000.0, "4": 500.0}, log=lambda m: None)
    assert sorted(started) == ["2", "4"]
    assert out["2"]["lut4"] == 200 and out["4"]["fmax_mhz"] == 40.0
    assert out["2"]["images_per_second"] == 20e6 / 1000
    assert out["4"]["images_per_second"] == 40e6 / 500


def test_payoff_options_are_validated():
    from report.config import parse_shape

    assert parse_shape("payoff-area", "2x4") == (2, 4)
    with pytest.raises(UserError, match="ROWSxCOLS"):
        parse_shape("payoff-area", "16")
    with pytest.raises(UserError, match="power of two"):
        rp.ReportConfig(payoff_area=(16, 12))
    with pytest.raises(UserError, match="payoff-models"):
        rp.ReportConfig(payoff_models=["vgg"])
    with pytest.raises(UserError, match="fpga-bits"):
        rp.ReportConfig(fpga_bits=[1, 4])
    cfg = rp.ReportConfig(sections=["payoff", "fpga"], fpga_bits=[4, 2])
    assert cfg.fpga_bits == [2, 4]
    assert "--sections payoff,fpga" in cfg.command() and "--fpga-bits 2,4" in cfg.command()
    assert "payoff" not in rp.ReportConfig().sections   # only when named


def test_payoff_tables_say_when_a_figure_is_short_of_the_paper():
    from report.payoff import PAPER_PAYOFF
    from report.render import payoff_tables

    payoff = {"mac_area_ratio_16_to_2": 15.0, "mac_area_ratio_16_to_4": 4.0,
              "requant_share_of_array": {"4": 0.08, "16": 0.5},
              "iso_area_speedup_16_to_4": {"cnn": None}, "paper": PAPER_PAYOFF,
              "fpga": {"4": {"lut4": 10, "ff": 5, "dsp": 1, "bram": 2, "device": "LFE5U-25F",
                             "fmax_mhz": 40.0, "cycles_per_image": 1000,
                             "images_per_second": 40000.0}}}
    (title, _, _, rows), (fpga_title, _, _, fpga_rows) = payoff_tables(payoff)
    verdicts = {r[0]: r[3] for r in rows}
    assert verdicts["MAC area 16 -> 2 bits (per MAC)"] == "meets it"
    assert verdicts["MAC area 16 -> 4 bits (per MAC)"] == "short of it"
    assert verdicts["requantizer / MAC array area, k=4, 16x16"] == "meets it"
    assert rows[-1][1] == "NOT bit-exact" and rows[-1][3] == "not measured"
    assert fpga_rows == [["4", "10", "5", "1", "2", "LFE5U-25F", "40.0", "1,000", "40,000"]]
    assert payoff_tables(None) == []
