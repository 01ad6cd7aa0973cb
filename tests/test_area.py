"""gen.area: Yosys generic synthesis figures, their summary, and the result cache."""

import json

import pytest

from gen import area
from pact.errors import UserError

# Four AND gates feeding four flip-flops, by construction: nothing for Yosys to share or remove.
TINY = """
module tiny(input clk, input [3:0] a, input [3:0] b, output reg [3:0] q);
  always @(posedge clk) q <= a & b;
endmodule
"""

# A 3-bit register with a synchronous reset and an enable: after dffunmap the enable and reset
# are gates in front of three plain flip-flops.
WITH_ENABLE = """
module en(input clk, input rst, input en, input [2:0] d, output reg [2:0] q);
  always @(posedge clk) if (rst) q <= 3'd0; else if (en) q <= d;
endmodule
"""


def _stat(by_type, top="top", num_cells=None):
    module = {"num_cells_by_type": by_type}
    if num_cells is not None:
        module["num_cells"] = num_cells
    return {"modules": {f"\\{top}": module}}


@pytest.mark.parametrize(
    "cell_type, expected",
    [
        ("$_DFF_P_", True),
        ("$_DFF_N_", True),
        ("$_SDFFE_PP0P_", True),
        ("$_DFFSR_PPP_", True),
        ("$_DLATCH_P_", True),
        ("$_AND_", False),
        ("$_MUX_", False),
        ("$_XNOR_", False),
        ("$dff", False),  # a coarse cell: never present after synth, not counted as a bit
    ],
)
def test_is_flip_flop(cell_type, expected):
    assert area.is_flip_flop(cell_type) is expected


def test_summarize_counts_gates_flops_and_transistors():
    s = area.summarize_stat(_stat({"$_XOR_": 3, "$_NAND_": 2, "$_DFF_P_": 5}, num_cells=10), "top")
    assert s["cells"] == 10
    assert s["flip_flops"] == 5
    assert s["gates"] == 5
    # 3 XOR * 12 + 2 NAND * 4 + 5 DFF * 16 transistors (Yosys' CMOS cost model).
    assert s["transistors"] == 3 * 12 + 2 * 4 + 5 * 16
    assert s["nand2_equivalents"] == (3 * 12 + 2 * 4 + 5 * 16) / 4
    assert s["by_type"] == {"$_DFF_P_": 5, "$_NAND_": 2, "$_XOR_": 3}
    assert s["unknown_types"] == []


def test_summarize_lists_cells_without_a_transistor_count():
    s = area.summarize_stat(_stat({"$_AND_": 1, "$_SDFFE_PP0P_": 2}), "top")
    assert s["flip_flops"] == 2
    assert s["transistors"] == 6  # the unknown flip-flops add nothing: a lower bound
    assert s["unknown_types"] == ["$_SDFFE_PP0P_"]


def test_summarize_accepts_an_unescaped_module_name():
    stat = {"modules": {"top": {"num_cells_by_type": {"$_NOT_": 1}}}}
    assert area.summarize_stat(stat, "top")["transistors"] == 2


def test_summarize_rejects_a_missing_top():
    with pytest.raises(area.SynthesisError, match="no module 'other'"):
        area.summarize_stat(_stat({"$_AND_": 1}), "other")


def test_summarize_rejects_a_design_that_is_not_flat():
    with pytest.raises(area.SynthesisError, match="not flat"):
        area.summarize_stat(_stat({"$_AND_": 1, "sub": 2}), "top")


def test_summarize_rejects_inconsistent_cell_totals():
    with pytest.raises(area.SynthesisError, match="add up to 3"):
        area.summarize_stat(_stat({"$_AND_": 3}, num_cells=4), "top")


def test_script_reads_synthesizes_flat_and_unmaps_enables(tmp_path):
    script = area.yosys_script(tmp_path / "a.v", "top", tmp_path / "s.json")
    lines = script.splitlines()
    assert lines[0] == f'read_verilog -sv "{tmp_path / "a.v"}"'
    assert "synth -top top -flatten" in lines
    assert lines.index("dffunmap") > lines.index("synth -top top -flatten")
    assert f'tee -q -o "{tmp_path / "s.json"}" stat -json' in lines


def test_synth_area_of_a_known_design(tmp_path):
    path = tmp_path / "tiny.v"
    path.write_text(TINY)
    cache = tmp_path / "cache"
    first = area.synth_area(path, "tiny", cache_dir=cache)
    assert first["cached"] is False
    assert first["by_type"] == {"$_AND_": 4, "$_DFF_P_": 4}
    assert (first["cells"], first["gates"], first["flip_flops"]) == (8, 4, 4)
    assert first["transistors"] == 4 * 6 + 4 * 16
    assert first["top"] == "tiny"

    # The second call is served from the cache, with the same figures.
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    second = area.synth_area(path, "tiny", cache_dir=cache)
    assert second["cached"] is True
    assert {k: v for k, v in second.items() if k != "cached"} == {
        k: v for k, v in first.items() if k != "cached"
    }

    # A damaged cache entry is recomputed, not trusted.
    entries[0].write_text("{not json")
    third = area.synth_area(path, "tiny", cache_dir=cache)
    assert third["cached"] is False
    assert third["cells"] == 8
    assert json.loads(entries[0].read_text())["cells"] == 8


def test_synth_area_unmaps_enables_and_resets(tmp_path):
    path = tmp_path / "en.v"
    path.write_text(WITH_ENABLE)
    result = area.synth_area(path, "en", cache_dir=None)
    assert result["flip_flops"] == 3
    assert set(t for t in result["by_type"] if area.is_flip_flop(t)) == {"$_DFF_P_"}
    assert result["gates"] >= 3  # at least one gate per bit carries the enable/reset
    assert result["unknown_types"] == []


def test_cache_key_depends_on_the_verilog(tmp_path):
    a, b = tmp_path / "a.v", tmp_path / "b.v"
    a.write_text(TINY)
    b.write_text(TINY.replace("a & b", "a | b"))
    cache = tmp_path / "cache"
    ra = area.synth_area(a, "tiny", cache_dir=cache)
    rb = area.synth_area(b, "tiny", cache_dir=cache)
    assert ra["cache_key"] != rb["cache_key"]
    assert rb["cached"] is False
    assert rb["by_type"] == {"$_DFF_P_": 4, "$_OR_": 4}


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no Verilog file"):
        area.synth_area(tmp_path / "nope.v", "tiny", cache_dir=None)


def test_bad_top_name_is_a_user_error(tmp_path):
    path = tmp_path / "tiny.v"
    path.write_text(TINY)
    with pytest.raises(UserError, match="not a plain Verilog identifier"):
        area.synth_area(path, "tiny; shell", cache_dir=None)


def test_yosys_failure_is_reported_with_its_log(tmp_path):
    path = tmp_path / "broken.v"
    path.write_text("module broken(input a; endmodule\n")
    with pytest.raises(area.SynthesisError, match=r"(?s)Yosys failed on .*broken.v.*syntax error"):
        area.synth_area(path, "broken", cache_dir=tmp_path / "cache")
    assert not list(tmp_path.glob("cache/*.json"))  # nothing half-done is cached


def test_wrong_top_is_a_synthesis_error(tmp_path):
    path = tmp_path / "tiny.v"
    path.write_text(TINY)
    with pytest.raises(area.SynthesisError, match=r"(?s)Yosys failed.*absent"):
        area.synth_area(path, "absent", cache_dir=None)
