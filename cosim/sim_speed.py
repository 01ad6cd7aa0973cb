"""Whole-chip simulation speed, by where the clock comes from (for ``pact report``).

Three ways to clock the same harness and chip (``cosim/hdl/chip_harness.sv``), on Icarus or
Verilator, running the same compiled program on the same inputs:

``hdl_clock``
    The harness's own ``always #5 clk = ~clk``: the chip runs on its own and Python only awaits
    ``done`` (and the layer edges). This is ``cosim.chip_tb.run_chip`` itself.
``gpi_clock``
    A copy of the harness whose ``clk`` is an input, driven by ``cocotb.clock.Clock`` with
    ``impl="gpi"`` (the clock is scheduled by cocotb's C++ layer, no Python per cycle).
``python_clock``
    The same copy, driven by ``Clock(impl="py")``: a Python coroutine toggles ``clk`` every half
    cycle, the usual cost of a testbench that touches every cycle.

Every run's outputs are checked ``==`` against the integer reference (a speed figure of a wrong
run is worthless); ``cycles_per_second`` is simulated cycles over the wall time of the runs (the
spans from ``start`` to ``done``, not the build or the start-up of the simulator);
``cycles_per_cpu_second`` uses the CPU time of the simulator process over the same spans
(simulator and Python share that process), which a busy machine disturbs less.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cosim.runner import BuildInfo
    from gen.compiler import Program
    from golden.image import ModelImage

__all__ = ["MODES", "external_clock_harness", "measure", "test_chip_speed"]

MODES = ("hdl_clock", "gpi_clock", "python_clock")
_CLOCK_IMPL = {"gpi_clock": "gpi", "python_clock": "py"}

# The harness lines that make its clock; external_clock_harness checks they are still there.
_CLOCK_PORT = "output logic        clk,"
_CLOCK_GEN = ("initial clk = 1'b0;", "always #5 clk = ~clk;")


def external_clock_harness(text: str) -> str:
    """The harness source with ``clk`` turned into an input and its clock generator removed.

    Raises ``ValueError`` if the harness no longer has exactly the expected clock lines (so a
    change there cannot silently leave two clocks or none)."""
    if text.count(_CLOCK_PORT) != 1 or any(text.count(line) != 1 for line in _CLOCK_GEN):
        raise ValueError("chip_harness.sv no longer declares its clock as "
                         f"{_CLOCK_PORT!r} / {' '.join(_CLOCK_GEN)!r}; update cosim/sim_speed.py")
    text = text.replace(_CLOCK_PORT, "input  logic        clk,")
    for line in _CLOCK_GEN:
        text = text.replace(line, "// (clock driven from cocotb: cosim/sim_speed.py)")
    return text


def _external_build(sim: str, hw_dir: str | os.PathLike[str], mem_words: int,
                    work: str | os.PathLike[str]) -> BuildInfo:
    from cosim import chip_tb, runner

    verilog, _ = chip_tb._verilog(hw_dir)
    harness = Path(work) / "ext_clock" / "chip_harness.sv"
    harness.parent.mkdir(parents=True, exist_ok=True)
    text = external_clock_harness(chip_tb.HARNESS.read_text())
    if not harness.exists() or harness.read_text() != text:
        tmp = harness.with_name(f".{harness.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, harness)
    sources: list[Path] = [verilog, harness]
    if sim == "verilator":
        sources.insert(0, chip_tb.verilator_control_file())
        args = chip_tb.verilator_args(hw_dir, mem_words) + ["--no-public-flat-rw"]
    else:
        args = [f"-P{chip_tb.TOPLEVEL}.MEM_WORDS={mem_words}"]
    config = chip_tb._config(hw_dir, mem_words) + "-extclk"
    return runner.build(sim, sources, chip_tb.TOPLEVEL, config, build_args=args)


def _check(program: Program, expected: Sequence[Sequence[np.ndarray]],
           words: Sequence[int]) -> int:
    from cosim.chip_model import read_outputs
    from cosim.chip_tb import first_mismatch

    return sum(first_mismatch(expected[i], read_outputs(words, program.layout, i)) is None
               for i in range(len(expected)))


def measure(sim: str, mode: str, image: ModelImage, program: Program,
            hw_dir: str | os.PathLike[str], *, images: int, work: str | os.PathLike[str],
            seed: int = 1) -> dict[str, Any]:
    """Run ``images`` random inputs of ``image`` (compiled as ``program`` for ``hw_dir``) on
    ``sim`` with the clock of ``mode``; returns cycles, seconds, cycles_per_second and how many
    images were bit-exact."""
    from cosim import chip_tb
    from cosim.chip_model import random_inputs
    from gen import compiler
    from golden.reference import run as reference_run

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    inputs = random_inputs(seed, image, images)
    expected = [reference_run(image, x) for x in inputs]
    work = Path(work).resolve() / f"{Path(hw_dir).name}-{sim}-{mode}"
    work.mkdir(parents=True, exist_ok=True)
    if mode == "hdl_clock":
        run = chip_tb.run_chip(program, hw_dir, inputs, expected, sim=sim, work=work,
                               waves_on_mismatch=False)
        cycles = sum(r["cycles"] for r in run.records if r)
        return {"mode": mode, "sim": sim, "images": images, "cycles": cycles,
                "seconds": run.sim_seconds, "cpu_seconds": run.sim_cpu_seconds,
                "cycles_per_second": cycles / run.sim_seconds,
                "cycles_per_cpu_second": cycles / run.sim_cpu_seconds,
                "bit_exact_images": sum(m is None for m in run.per_image)}

    prog = chip_tb.relayout(program, images)
    mem_words = chip_tb.mem_words_for(prog.layout["words_used"])
    info = _external_build(sim, hw_dir, mem_words, work.parent)
    memfile, dumpfile = work / "mem.hex", work / "dump.hex"
    memfile.write_text(compiler.to_hex(compiler.memory_words(prog, inputs), prog.mem_width))
    dumpfile.unlink(missing_ok=True)
    job = {"impl": _CLOCK_IMPL[mode], "prog_addr": prog.layout["program_addr"],
           "slots": [list(compiler.slot_addresses(prog.layout, s)) for s in range(images)],
           "last": prog.layout["words_used"] - 1, "results": str(work / "results.json"),
           "timeout_cycles": chip_tb.run_timeout_cycles(
               sum(lay["mac_beats"] for lay in prog.layout["layers"]))}
    res = _run(sim, info, job, work, memfile, dumpfile)
    cycles = sum(r["cycles"] for r in res["runs"])
    exact = _check(prog, expected, compiler.read_hex(dumpfile)) if dumpfile.exists() else 0
    if any(r["timeout"] or r["error"] for r in res["runs"]):
        exact = 0
    return {"mode": mode, "sim": sim, "images": images, "cycles": cycles,
            "seconds": res["wall_s"], "cpu_seconds": res["cpu_s"],
            "cycles_per_second": cycles / res["wall_s"],
            "cycles_per_cpu_second": cycles / res["cpu_s"], "bit_exact_images": exact}


def _run(sim: str, info: BuildInfo, job: dict[str, Any], work: Path, memfile: Path,
         dumpfile: Path) -> Any:
    from cosim.runner import run_job

    plusargs = [f"+MEMFILE={memfile}", f"+DUMPFILE={dumpfile}", f"+MEM_LAST={job['last']}"]
    return run_job(sim, info.folder, "cosim.sim_speed", "chip_harness", job, work,
                   job_env="PACT_SPEED_JOB", plusargs=plusargs, what="speed bench")


try:
    import cocotb
    from cocotb.clock import Clock

    _HAVE_COCOTB = True
except ImportError:  # pragma: no cover - the host side runs without cocotb's simulator
    _HAVE_COCOTB = False

if _HAVE_COCOTB:

    @cocotb.test()
    async def test_chip_speed(dut: Any) -> None:
        """Clock the external-clock harness from cocotb; run every slot; dump the memory."""
        from cosim.chip_tb import CLOCK_NS, TB

        job = json.loads(Path(os.environ["PACT_SPEED_JOB"]).read_text())
        Clock(dut.clk, CLOCK_NS, unit="ns", impl=job["impl"]).start(start_high=False)
        tb = TB(dut)
        await tb.reset()
        runs: list[dict[str, Any]] = []
        wall, cpu = 0.0, 0.0
        t = time.perf_counter()
        for in_addr, out_base in job["slots"]:
            r = await tb.infer(job["prog_addr"], in_addr, out_base,
                               timeout_cycles=job["timeout_cycles"])
            runs.append(r)
            wall += r["wall_s"]
            cpu += r["cpu_s"]
            if r["timeout"]:
                break
        await tb.dump(job["last"])
        Path(job["results"]).write_text(json.dumps(
            {"runs": runs, "wall_s": wall, "cpu_s": cpu,
             "bench_s": time.perf_counter() - t}))
