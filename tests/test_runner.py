"""The build-and-run helper: folder layout, reuse, rebuild on change, locking, failed runs."""

import threading

import pytest

from cosim import runner
from cosim import sim as cosim_sim

pytestmark = pytest.mark.sim

COUNTER = """
module counter(input clk, input rst, output reg [{msb}:0] count);
  always @(posedge clk) count <= rst ? 0 : count + 1;
endmodule
"""


# A job-file bench for run_job: echoes the job's "echo" into its results file.
JOB_BENCH = """
import json, os
from pathlib import Path

import cocotb

@cocotb.test()
async def echo(dut):
    job = json.loads(Path(os.environ["TEST_JOB"]).read_text())
    Path(job["results"]).write_text(json.dumps({"echo": job["echo"]}))
"""


def write_counter(path, bits=4):
    path.write_text(COUNTER.format(msb=bits - 1))
    return path


def test_folder_layout(tmp_path):
    assert runner.build_folder("icarus", "x", root=tmp_path) == tmp_path / "icarus" / "x"
    assert runner.build_folder("verilator", "x", waves=True, root=tmp_path).name == "x-waves"
    a = runner.config_name("blk", {"a": 1, "b": 2})
    assert a == runner.config_name("blk", {"b": 2, "a": 1}) != runner.config_name("blk", {"a": 2})
    assert a.startswith("blk-")


def test_build_once_reuse_rebuild_on_change(require_sim, tmp_path):
    require_sim("icarus")
    src = write_counter(tmp_path / "counter.v")
    first = runner.build("icarus", [src], "counter", "cfg", root=tmp_path / "b")
    assert not first.reused and first.folder == tmp_path / "b" / "icarus" / "cfg"
    assert (first.folder / "sim.vvp").exists()
    again = runner.build("icarus", [src], "counter", "cfg", root=tmp_path / "b")
    assert again.reused
    write_counter(src, bits=5)
    changed = runner.build("icarus", [src], "counter", "cfg", root=tmp_path / "b")
    assert not changed.reused


def test_concurrent_builds_of_one_config_build_once(require_sim, tmp_path):
    require_sim("icarus")
    src = write_counter(tmp_path / "counter.v")
    results = []

    def build():
        results.append(runner.build("icarus", [src], "counter", "same", root=tmp_path / "b"))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.reused for r in results) == [False, True, True]


def test_build_failure_names_the_log(require_sim, tmp_path):
    require_sim("icarus")
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk; endmodule\n")
    with pytest.raises(RuntimeError, match="build.log"):
        runner.build("icarus", [bad], "bad", "bad", root=tmp_path / "b")


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_bench_error_is_a_failed_run_not_an_exception(require_sim, tmp_path, sim):
    """A bench that crashes (here: no 'vectors' in its config) gives passed=False."""
    require_sim(sim)
    params = cosim_sim.block_params("pact_unit", 2, 2, 2, 3)
    info, manifest = cosim_sim.prepare("pact_unit", sim, params)
    result = runner.run(sim, info, "cosim.pact_unit_tb", config={"params": {}}, name="broken")
    assert not result.passed and result.summary == {}
    assert result.log.exists() and result.folder == info.folder / "runs" / "broken"


def test_run_job_returns_the_results_and_names_the_log_when_there_are_none(
        require_sim, tmp_path, monkeypatch):
    require_sim("icarus")
    info = runner.build("icarus", [write_counter(tmp_path / "counter.v")], "counter", "cfg",
                        root=tmp_path / "b")
    (tmp_path / "job_bench.py").write_text(JOB_BENCH)
    monkeypatch.syspath_prepend(str(tmp_path))  # the simulator's Python gets sys.path
    work = tmp_path / "work"
    work.mkdir()
    job = {"results": str(work / "results.json"), "echo": 7}
    got = runner.run_job("icarus", info.folder, "job_bench", "counter", job, work,
                         job_env="TEST_JOB")
    assert got == {"echo": 7}
    # The bench now fails before writing: the previous results file must not be read back.
    del job["echo"]
    with pytest.raises(RuntimeError, match=r"the icarus speed bench wrote no results; see .*sim"):
        runner.run_job("icarus", info.folder, "job_bench", "counter", job, work,
                       job_env="TEST_JOB", what="speed bench")


def test_verilator_build_is_reused(require_sim):
    require_sim("verilator")
    params = cosim_sim.block_params("mac_array", 2, 2, 2, 3)
    cosim_sim.prepare("mac_array", "verilator", params)
    info, _ = cosim_sim.prepare("mac_array", "verilator", params)
    assert info.reused and info.folder.parent.name == "verilator"


def test_verilator_split_model_builds(require_sim, tmp_path):
    """A model split into several C++ files uses the precompiled header; the wheel's make rules
    need CFG_CXXFLAGS_PCH_I for that (large arrays split on their own)."""
    require_sim("verilator")
    src = write_counter(tmp_path / "counter.v", bits=8)
    from gen.generate import LINT_WAIVERS

    args = [f"-Wno-{w}" for w in sorted(LINT_WAIVERS)] + ["--output-split", "1",
                                                          "--output-split-cfuncs", "1"]
    info = runner.build("verilator", [src], "counter", "split", build_args=args,
                        root=tmp_path / "b")
    assert (info.folder / "counter").exists()
    assert len(list(info.folder.glob("Vtop___024root__*.cpp"))) > 1  # really split


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_build_is_rebuilt_not_reused(require_sim, tmp_path, damage):
    """Issue 12: a truncated simulator binary was reused, and every run failed until the
    folder was deleted by hand. The stamp holds the binary's hash; a damaged one is rebuilt."""
    require_sim("icarus")
    src = write_counter(tmp_path / "counter.v")
    first = runner.build("icarus", [src], "counter", "cfg", root=tmp_path / "b")
    binary = first.folder / "sim.vvp"
    if damage == "truncate":
        binary.write_bytes(binary.read_bytes()[:40])
    else:
        binary.unlink()
    again = runner.build("icarus", [src], "counter", "cfg", root=tmp_path / "b")
    assert not again.reused
    assert runner.build("icarus", [src], "counter", "cfg", root=tmp_path / "b").reused
    assert binary.read_bytes() == (first.folder / "sim.vvp").read_bytes()
    assert binary.stat().st_size > 40
