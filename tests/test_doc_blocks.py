"""``report.doc_blocks``: the documents' figure tables are what the results files say."""

import json
import shutil
from pathlib import Path

import pytest

from report import doc_blocks
from rtl.tiled import csr

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_documents_are_up_to_date():
    assert doc_blocks.stale(ROOT) == [], "run: python -m report.doc_blocks"


def test_every_block_is_used_and_every_used_block_is_known():
    used = set()
    for doc in doc_blocks.DOCUMENTS:
        text = (ROOT / doc).read_text()
        used |= {name for name in doc_blocks.BLOCKS
                 if f"<!-- BEGIN generated: {name} -->" in text}
    assert used == set(doc_blocks.BLOCKS)


@pytest.fixture
def results(tmp_path):
    shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
    return tmp_path


def test_a_new_measurement_changes_the_table(results):
    path = results / "bench" / "results" / "paper_networks.json"
    runs = json.loads(path.read_text())
    runs["resnet20"]["cycles_per_inference"] = 123457.0
    runs["resnet20"]["per_layer"][0]["utilization"] = 0.001
    path.write_text(json.dumps(runs))
    table = doc_blocks.render("paper_networks", results)
    row = next(line for line in table.splitlines() if line.startswith("| ResNet20"))
    assert "| 123,457 |" in row and f"{runs['resnet20']['per_layer'][0]['name']} 0.1%" in row
    begin, end = ("<!-- BEGIN generated: paper_networks -->\n",
                  "<!-- END generated: paper_networks -->\n")
    assert doc_blocks.update(f"a\n{begin}old\n{end}", results) == f"a\n{begin}{table}{end}"


def test_the_register_map_is_the_csr_contract():
    assert doc_blocks.render("registers") == csr.registers_markdown()
    assert "| 0x00 | CTRL |" in doc_blocks.render("registers")


def test_a_stale_document_is_found(results):
    (results / "docs").mkdir()
    for doc in doc_blocks.DOCUMENTS:
        shutil.copy(ROOT / doc, results / doc)
    assert doc_blocks.stale(results) == []
    path = results / "bench" / "results" / "lean_area.json"
    area = json.loads(path.read_text())
    area["mac_area_ratio_16_to_2"] = 99.0
    path.write_text(json.dumps(area))
    assert doc_blocks.stale(results) == [d for d in doc_blocks.DOCUMENTS
                                         if "generated: lean_area" in (ROOT / d).read_text()]


@pytest.mark.parametrize("text, message", [
    ("<!-- BEGIN generated: registers -->\nx\n", "do not pair up"),
    ("<!-- BEGIN generated: nosuch -->\n<!-- END generated: nosuch -->\n", "unknown generated"),
    ("<!-- BEGIN generated: registers -->\n<!-- END generated: lean_area -->\n", "pair up"),
])
def test_broken_markers_are_errors(text, message):
    with pytest.raises(ValueError, match=message):
        doc_blocks.update(text)


def _payoff_file(results, payoff):
    path = results / "bench" / "results" / "payoff.json"
    path.write_text(json.dumps({"payoff": payoff}))


def test_the_payoff_table_shows_each_measured_figure(results):
    run = {"rows": 16, "cols": 16, "cycles": 230033.0, "sim": "verilator", "images": 1,
           "bit_exact_images": 1}
    fast = {**run, "rows": 32, "cols": 32, "cycles": 65432.0, "sim": "icarus"}
    fpga = {"lut4": 12345, "ff": 6789, "dsp": 3, "bram": 7, "device": "LFE5U-25F",
            "fmax_mhz": 61.25, "fmax_source": "routed (router2)", "images_per_second": 9876.4}
    _payoff_file(results, {"detail": {"iso_area": {"resnet20": {
        "speedup": 230033 / 65432, "mac_budget": 1146, "k16": run, "k4": fast,
        "input_shape": [3, 32, 32]}}}, "fpga": {"4": fpga}})
    table = doc_blocks.render("payoff", results)
    iso = next(line for line in table.splitlines() if line.startswith("| resnet20"))
    assert "230,033 cycles (Verilator)" in iso and "32x32 (1,146), 65,432 cycles (Icarus)" in iso
    assert "| 1/1, 1/1 | 3.52x |" in iso
    row = next(line for line in table.splitlines() if line.startswith("| 4 |"))
    assert row == "| 4 | 12,345 | 6,789 | 3 | 7 | LFE5U-25F | 61.2 MHz, routed (router2) | 9,876 |"
    assert iso.endswith("| up to 4.5x; target >= 4.5x |")


def test_a_payoff_run_that_is_not_bit_exact_has_no_speed_up(results):
    run = {"rows": 16, "cols": 16, "cycles": 100.0, "sim": "icarus", "images": 2,
           "bit_exact_images": 1}
    _payoff_file(results, {"detail": {"iso_area": {"cnn": {
        "speedup": None, "mac_budget": 10, "k16": run, "k4": run, "input_shape": [1, 8, 8]}}}})
    row = next(line for line in doc_blocks.render("payoff", results).splitlines()
               if line.startswith("| cnn"))
    assert row.endswith("| 1/2, 1/2 | - | up to 4.5x |")   # the target is ResNet20's
