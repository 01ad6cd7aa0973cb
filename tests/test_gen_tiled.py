# amaranth: UnusedElaboratable=no
"""``pact gen --block tiled_chip --bus``: native leaves the chip (and its config hash) as it
was; axi gives the AXI ports, the register map in the manifest and registers.md."""

import json

import pytest

from gen.generate import config_hash, generate
from pact.cli import main
from rtl.tiled import csr

SMALL = {"wbits": 4, "abits": 4, "rows": 4, "cols": 8, "max_reduction": 4096, "act_kib": 4,
         "ring_beats": 512}


@pytest.mark.slow  # whole-chip Verilog, 10-20 s each
def test_axi_is_the_default_native_keeps_its_old_hash(tmp_path):
    a = generate("tiled_chip", SMALL, tmp_path / "a")
    b = generate("tiled_chip", {**SMALL, "bus": "native"}, tmp_path / "b")
    assert a["params"]["bus"] == "axi" and "registers" in a
    # The native chip's manifest has no "bus" entry: its hash is the one it had before --bus.
    assert "bus" not in b["params"] and "registers" not in b
    assert b["config_hash"] == config_hash("tiled_chip", b["params"])
    assert any(p.startswith("mem_rd_cmd") for p in json.dumps(b["ports"]).split('"'))


@pytest.mark.slow  # whole-chip Verilog, 10-20 s each
def test_axi_has_axi_ports_and_the_register_map(tmp_path):
    m = generate("tiled_chip", {**SMALL, "bus": "axi"}, tmp_path)
    text = (tmp_path / m["verilog"]).read_text()
    header = text[text.index("module pact_tiled_chip("):].split(";")[0]
    for port in ("m_axi_araddr", "m_axi_arlen", "m_axi_rdata", "m_axi_awaddr", "m_axi_wstrb",
                 "m_axi_bresp", "s_axil_awaddr", "s_axil_rdata", "irq"):
        assert port in header
    assert "mem_rd_cmd" not in header
    assert m["params"]["bus"] == "axi"
    assert m["registers"] == csr.register_map()
    ports = {port["name"]: port["width"] for port in m["ports"]}
    assert m["axi"]["m_axi"]["id_width"] == ports["m_axi_arid"] == ports["m_axi_rid"] == 3
    assert (tmp_path / "registers.md").read_text().endswith(csr.registers_markdown())
    again = generate("tiled_chip", {**SMALL, "bus": "axi"}, tmp_path / "again")
    assert again["verilog_sha256"] == m["verilog_sha256"]


def test_bad_bus_is_a_one_line_error(tmp_path, capsys):
    try:
        rc = main(["gen", "--block", "tiled_chip", "--wbits", "4", "--abits", "4", "--rows",
                   "4", "--cols", "8", "--bus", "pci", "--out", str(tmp_path / "x")])
    except SystemExit as exc:   # argparse's own choice check
        rc = exc.code
    assert rc == 2 and "pci" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_readme_shows_the_register_map():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert csr.registers_markdown() in readme
