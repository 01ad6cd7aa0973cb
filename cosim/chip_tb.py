"""The whole-chip co-simulation: compiled programs run on the generated RTL, checked with ``==``.

Two halves in one module:

- The cocotb bench (``test_chip``, run inside the simulator). ``TB`` owns reset and the CSRs
  of ``cosim/hdl/chip_harness.sv``, whose clock runs in the HDL. For each batch the bench loads
  the memory image into the harness's memory in bulk (``$readmemh`` on a rising edge of
  ``load``), then for each image sets ``in_addr``/``out_base``, pulses ``start`` and awaits
  ``done``; a helper task awaits the edges of ``layer`` to time each layer (Python runs a few
  times per layer, never per cycle). At the end of a batch it dumps the memory (``$writememh``
  on ``dump``). What it measured goes to a JSON file; it checks nothing itself.
- The host side (``run_chip``): compiles nothing, but given a compiled ``Program``, the inputs
  and the chip folder, builds the harness once per simulator and Verilog
  (``sim_build/<sim>/chip-<verilog hash>-m<words>``), writes the batch memory files, runs the
  bench, reads the dumps, and checks every layer's output tensor of every image against
  ``golden/reference.py`` with ``==`` (``check_outputs``). On a mismatch it reports the first
  diverging layer, channel, position and the layer's cycle window, and reruns that image with
  waveforms recorded over that layer (``<work>/mismatch_<image>.vcd``/``.fst``).

The job file (``PACT_CHIP_JOB``) carries: batches (memory file, dump file, last word, slots
with their CSR values), program address, a timeout in cycles, and optionally the layer to
record waves over.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pact.errors import UserError
from pact.paths import write_file
from rtl.tiled.sequencer import Error

if TYPE_CHECKING:
    from cosim.runner import BuildInfo
    from gen.compiler import Program
    from gen.tiled_compiler import TiledProgram

__all__ = ["TB", "HARNESS", "Mismatch", "ChipRun", "check_outputs", "first_mismatch",
           "build", "run_chip", "relayout", "mem_words_for", "batch_slots", "test_chip",
           "run_timeout_cycles"]

HARNESS = Path(__file__).resolve().parent / "hdl" / "chip_harness.sv"
TOPLEVEL = "chip_harness"
#: The harness memory is this many words unless a program needs more (fixed, so one build
#: serves any number of images: they run in batches).
DEFAULT_MEM_WORDS = 1 << 16
#: Most slots in one batch (more images run as further batches).
MAX_BATCH = 128
CLOCK_NS = 10


def run_timeout_cycles(mac_beats: int) -> int:
    """How long a run of a program of ``mac_beats`` array beats may take before the bench calls
    it hung: far beyond any stall the memory models inject (the chip runs at close to one
    beat a cycle), plus a floor for the loads and write-backs of tiny programs."""
    return 100 * mac_beats + 100_000

# -- checking (host side, no simulator) -----------------------------------------------------


@dataclass
class Mismatch:
    """The first output of an image that differs from the reference."""

    image: int
    layer: int | None
    name: str | None
    channel: int | None
    position: tuple[int, ...]
    expected: int | None
    got: int | None
    window: tuple[int, ...] | None = None  # (first cycle, last cycle) of the layer, since start
    waves: str | None = None
    reason: str | None = None  # the chip's own complaint: error flags, timeout, bad accesses

    def __str__(self) -> str:
        where = f"position {self.position}" if self.position else "position ()"
        if self.channel is None:
            text = f"image {self.image}: outputs match but {self.reason}"
        else:
            text = (f"image {self.image}: first mismatch at layer {self.layer} ({self.name}), "
                    f"channel {self.channel}, {where}: expected {self.expected}, got "
                    f"{self.got}")
            if self.reason:
                text += f" ({self.reason})"
        if self.window is not None:
            text += f"; layer ran in cycles {self.window[0]}..{self.window[1]}"
        if self.waves:
            text += f"; waveform {self.waves}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "layer": self.layer, "name": self.name,
                "channel": self.channel, "position": list(self.position),
                "expected": self.expected, "got": self.got,
                "window": list(self.window) if self.window else None, "waves": self.waves,
                "reason": self.reason}


def first_mismatch(expected: Sequence[Any], got: Sequence[Any],
                   names: Sequence[str] | None = None,
                   ) -> tuple[int, int, tuple[int, ...], int, int] | None:
    """``(layer, channel, position, expected, got)`` of the first difference between two lists
    of per-layer integer arrays (layer order, then C order within a layer), or ``None``."""
    for layer, (e, g) in enumerate(zip(expected, got, strict=True)):
        e, g = np.asarray(e), np.asarray(g)
        if e.shape != g.shape:
            raise ValueError(f"layer {layer}: shapes {e.shape} and {g.shape} differ")
        diff = np.argwhere(e != g)
        if len(diff):
            idx = tuple(int(i) for i in diff[0])
            return layer, idx[0], idx[1:], int(e[idx]), int(g[idx])
    return None


def check_outputs(expected: Sequence[Any], got: Sequence[Any], *, names: Sequence[str],
                  image: int = 0, windows: Sequence[tuple[int, int] | None] | None = None,
                  ) -> Mismatch | None:
    """Compare one image's per-layer outputs with ``==``; a ``Mismatch`` or ``None``."""
    found = first_mismatch(expected, got)
    if found is None:
        return None
    layer, channel, position, e, g = found
    window = windows[layer] if windows and layer < len(windows) else None
    return Mismatch(image, layer, names[layer], channel, position, e, g,
                    tuple(window) if window else None)


# -- the cocotb bench (inside the simulator) ------------------------------------------------

try:
    import cocotb
    from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

    _HAVE_COCOTB = True
except ImportError:  # the host side works without cocotb
    _HAVE_COCOTB = False


class TB:
    """Drives ``chip_harness``: reset, bulk load/dump of the memory, one inference."""

    def __init__(self, dut: Any) -> None:
        self.dut = dut

    async def reset(self, cycles: int = 4) -> None:
        d = self.dut
        for sig in (d.start, d.load, d.dump, d.wave_on, d.prog_addr, d.in_addr, d.out_base,
                    d.dump_last):
            sig.value = 0
        d.rst.value = 1
        await ClockCycles(d.clk, cycles)
        await FallingEdge(d.clk)
        d.rst.value = 0
        await FallingEdge(d.clk)

    async def _pulse(self, sig: Any) -> None:
        await FallingEdge(self.dut.clk)
        sig.value = 1
        await FallingEdge(self.dut.clk)
        sig.value = 0
        await FallingEdge(self.dut.clk)

    async def load(self) -> None:
        """Reload the memory from +MEMFILE (the caller has rewritten the file)."""
        await self._pulse(self.dut.load)

    async def dump(self, last: int) -> None:
        """Write memory words ``0..last`` to +DUMPFILE."""
        self.dut.dump_last.value = last
        await self._pulse(self.dut.dump)

    async def _watch_layers(self, marks: list[tuple[int, int]], wave_layer: int | None) -> None:
        d = self.dut
        while True:
            await d.layer.value_change
            layer = int(d.layer.value)
            marks.append((layer, int(d.cycles.value)))
            if wave_layer is not None:
                # Record from the diverging layer's start to the start of the next one.
                d.wave_on.value = int(layer == wave_layer)

    async def infer(self, prog_addr: int, in_addr: int, out_base: int, *, timeout_cycles: int,
                    wave_layer: int | None = None) -> dict[str, Any]:
        """Run the program once; returns cycles, per-layer start marks, flags, counters."""
        d = self.dut
        await FallingEdge(d.clk)
        d.prog_addr.value = prog_addr
        d.in_addr.value = in_addr
        d.out_base.value = out_base
        d.start.value = 1
        if wave_layer == 0:
            d.wave_on.value = 1
        marks = [(0, 0)]
        watcher = cocotb.start_soon(self._watch_layers(marks, wave_layer))
        await FallingEdge(d.clk)
        d.start.value = 0
        t0, c0 = time.perf_counter(), time.process_time()
        done = RisingEdge(d.done)
        # No garbage collection while the chip runs: Python allocates almost nothing then,
        # yet a collection would walk every object the bench holds.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            if int(d.done.value) and not int(d.busy.value):
                await First(FallingEdge(d.done), RisingEdge(d.busy))
            fired = await First(done, Timer(timeout_cycles * CLOCK_NS, unit="ns"))
        finally:
            if gc_was_on:
                gc.enable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        watcher.cancel()
        if wave_layer is not None:
            await ClockCycles(d.clk, 8)  # a little context after the window
            d.wave_on.value = 0
        return {
            "timeout": fired is not done,
            "cycles": int(d.cycles.value),
            "marks": marks,
            "error": int(d.error.value),
            "mac_beats": int(d.mac_beats.value),
            "mem_errors": int(d.mem_errors.value),
            "wall_s": wall,
            # The simulator and this Python share one process: CPU time of the run.
            "cpu_s": cpu,
        }


if _HAVE_COCOTB:

    @cocotb.test()
    async def test_chip(dut: Any) -> None:
        """Run every batch of the job in ``PACT_CHIP_JOB``; write what was measured."""
        job = json.loads(Path(os.environ["PACT_CHIP_JOB"]).read_text())
        tb = TB(dut)
        await tb.reset()
        out: dict[str, Any] = {"batches": [], "sim_s": 0.0, "cpu_s": 0.0}
        memfile = Path(job["memfile"])
        for b, batch in enumerate(job["batches"]):
            if b > 0:
                shutil.copyfile(batch["hex"], memfile)
                await tb.load()
            runs = []
            for in_addr, out_base in batch["slots"]:
                r = await tb.infer(job["prog_addr"], in_addr, out_base,
                                   timeout_cycles=job["timeout_cycles"],
                                   wave_layer=job.get("wave_layer"))
                runs.append(r)
                out["sim_s"] += r["wall_s"]
                out["cpu_s"] += r["cpu_s"]
                if r["timeout"]:
                    break
            await tb.dump(batch["last"])
            if batch.get("dump") and batch["dump"] != job.get("dumpfile"):
                shutil.copyfile(job["dumpfile"], batch["dump"])
            out["batches"].append({"runs": runs})
            if runs and runs[-1]["timeout"]:
                break
        Path(job["results"]).write_text(json.dumps(out))


# -- the host side --------------------------------------------------------------------------


class _Plane:
    """A program of the plane chip (``gen.compiler``: a dict layout)."""

    program: Any  # Program here, TiledProgram in _Tiled
    c: Any  # the compiler module of the program's chip

    def __init__(self, program: Program) -> None:
        from gen import compiler

        self.program, self.c = program, compiler
        lay = program.layout
        self.words_used, self.static_words = lay["words_used"], lay["static_words"]
        self.mem_width, self.program_addr = lay["mem_width"], lay["program_addr"]
        self.per_slot = lay["slots"]["input_stride"] + lay["slots"]["output_stride"]
        self.mac_beats = sum(x["mac_beats"] for x in lay["layers"])
        self.names = [x["name"] for x in lay["layers"]]
        self.image_hash = lay["image_hash"]

    def with_slots(self, n: int) -> _Plane:
        return type(self)(relayout(self.program, n))

    def memory_words(self, inputs: Sequence[np.ndarray]) -> list[int]:
        return self.c.memory_words(self.program, inputs)

    def slot_addresses(self, slot: int) -> tuple[int, int]:
        return self.c.slot_addresses(self.program.layout, slot)

    def read_outputs(self, words: Sequence[int], slot: int) -> list[np.ndarray]:
        from cosim.chip_model import read_outputs

        return read_outputs(words, self.program.layout, slot)


class _Tiled(_Plane):
    """A program of the tiled chip (``gen.tiled_compiler``: a ``ProgramLayout``)."""

    def __init__(self, program: TiledProgram) -> None:
        from gen import tiled_compiler

        self.program, self.c = program, tiled_compiler
        lay = program.layout
        self.words_used, self.static_words = lay.words_used, lay.static_words
        self.mem_width, self.program_addr = lay.mem_width, 0
        self.per_slot = lay.input_words + lay.output_stride
        self.mac_beats = sum(x.mac_beats for x in lay.layers)
        self.names = [x.name for x in lay.layers]
        self.image_hash = lay.image_hash

    def with_slots(self, n: int) -> _Tiled:
        return type(self)(self.c.with_slots(self.program, n))

    def read_outputs(self, words: Sequence[int], slot: int) -> list[np.ndarray]:
        from cosim.tiled_model import read_layer_outputs

        return read_layer_outputs(words, self.program.layout, slot)


def program_view(program: Program | TiledProgram) -> _Plane:
    """What the bench needs of a compiled program, for either chip."""
    return _Plane(program) if isinstance(program.layout, dict) else _Tiled(program)



def mem_words_for(words_used: int) -> int:
    """Harness memory size: ``DEFAULT_MEM_WORDS``, or the next power of two that holds a
    program with one slot."""
    n = DEFAULT_MEM_WORDS
    while n < words_used:
        n *= 2
    return n


def batch_slots(view: _Plane, mem_words: int, images: int) -> int:
    """Slots per batch that fit ``mem_words`` (at least 1, at most ``MAX_BATCH``)."""
    fit = (mem_words - view.static_words) // view.per_slot
    if fit < 1:
        raise UserError(f"the program needs {view.static_words + view.per_slot} words, more "
                        f"than the harness memory of {mem_words}")
    return max(1, min(images, fit, MAX_BATCH))


def _verilog(hw_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    folder = Path(hw_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    default = "pact_tiled_chip.v" if manifest.get("block") == "tiled_chip" else "pact_chip.v"
    return folder / manifest.get("verilog", default), manifest


def _config(hw_dir: str | os.PathLike[str], mem_words: int) -> str:
    """Build folder name: ``chip-<12 hex of the Verilog file's content>-m<mem_words>`` (the
    file's own hash, not the manifest's claim: two different files never share a build)."""
    verilog, _ = _verilog(hw_dir)
    tag = hashlib.sha256(verilog.read_bytes()).hexdigest()
    return f"chip-{tag[:12]}-m{mem_words}"


def _is_tiled(hw_dir: str | os.PathLike[str]) -> bool:
    """The chip of ``hw_dir`` is the tiled chip (``pact gen --block tiled_chip``)."""
    return _verilog(hw_dir)[1].get("block") == "tiled_chip"


def build_dir_for(sim: str, hw_dir: str | os.PathLike[str], mem_words: int,
                  waves: bool = False) -> Path:
    """``sim_build/<sim>/chip-<12 hex of the Verilog>-m<mem_words>[-waves]``."""
    from cosim.runner import build_folder

    return build_folder(sim, _config(hw_dir, mem_words), waves=waves)


#: Verilator arguments of every chip build (the cocotb one and the plain benchmark binary).
VERILATOR_ARGS = ["--timing", "-CFLAGS", "-std=c++20", "-Wno-fatal"]

#: The harness signals cocotb touches. Only these are visible to VPI: cocotb's runner passes
#: ``--public-flat-rw``, which keeps every signal of the chip too and made this design 14x
#: slower (Verilator can no longer optimise the chip's internals); it is undone with
#: ``--no-public-flat-rw`` and a control file names the harness ports instead: the ones the
#: bench writes read-write, the ones it only reads (``HARNESS_READ_ONLY``) read-only, so
#: Verilator need not re-evaluate logic after each call in case the bench changed them.
HARNESS_PORTS = ("clk", "rst", "start", "prog_addr", "in_addr", "out_base", "load", "dump",
                 "dump_last", "wave_on", "busy", "done", "cycles", "error", "layer",
                 "mac_beats", "mem_errors", "harness_cycle")
HARNESS_READ_ONLY = ("clk", "busy", "done", "cycles", "error", "layer", "mac_beats",
                     "mem_errors", "harness_cycle")


def verilator_control_file() -> Path:
    """``sim_build/verilator/chip_harness.vlt``: the harness ports, public for cocotb."""
    from pact.paths import sim_build_root

    path = sim_build_root() / "verilator" / f"{TOPLEVEL}.vlt"
    text = "`verilator_config\n" + "".join(
        f'public_flat_{"rd" if name in HARNESS_READ_ONLY else "rw"} -module "{TOPLEVEL}" '
        f'-var "{name}"\n' for name in HARNESS_PORTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        write_file(path, text)
    return path


def verilator_args(hw_dir: str | os.PathLike[str], mem_words: int) -> list[str]:
    """Verilator arguments for the harness with the chip of ``hw_dir``: the common ones, the
    chip's own (its manifest's ``verilator_args`` and lint waivers), the memory size."""
    _, manifest = _verilog(hw_dir)
    derived = manifest.get("derived", {})
    waivers = derived.get("lint_waivers", manifest.get("lint_waivers", []))
    return (list(VERILATOR_ARGS) + list(derived.get("verilator_args", []))
            + [f"-Wno-{w}" for w in waivers] + [f"-GMEM_WORDS={mem_words}"])


def harness_defines(hw_dir: str | os.PathLike[str]) -> list[str]:
    """The harness's defines for the chip of ``hw_dir`` (the tiled chip; its AXI bus), for
    the cocotb build and the plain benchmark binary alike."""
    _, manifest = _verilog(hw_dir)
    define = ["-DPACT_TILED"] if _is_tiled(hw_dir) else []
    if manifest.get("params", {}).get("bus", "native") == "axi":
        # The harness's AXI memory model (chip_harness_axi.svh, included from HARNESS).
        # (its hash as a define: the build is redone when the included file changes)
        svh = HARNESS.with_name("chip_harness_axi.svh")
        define += ["-DPACT_AXI", f"-I{HARNESS.parent}",
                   f"-DPACT_AXI_SVH={hashlib.sha256(svh.read_bytes()).hexdigest()[:12]}"]
    return define


def build(sim: str, hw_dir: str | os.PathLike[str], *, mem_words: int,
          waves: bool = False) -> BuildInfo:
    """Build the harness with the chip of ``hw_dir`` for ``sim``, once per Verilog and memory
    size (``cosim.runner``: reused while the sources and arguments are unchanged; a lock lets
    parallel workers share it). Returns the ``cosim.runner.BuildInfo``."""
    from cosim import runner
    from gen.compiler import check_verilog_hash

    verilog, manifest = _verilog(hw_dir)
    if not verilog.exists():
        raise UserError(f"{verilog} does not exist; generate the chip with "
                        "'pact gen --block chip --out DIR'")
    if "verilog_sha256" in manifest:
        check_verilog_hash(hw_dir, manifest)
    sources: list[Path] = [verilog, HARNESS]
    define = harness_defines(hw_dir)
    if sim == "verilator":
        # (first: cocotb takes the language of the top level from the last source)
        sources.insert(0, verilator_control_file())
        args = verilator_args(hw_dir, mem_words) + ["--no-public-flat-rw"] + define
    else:
        args = [f"-P{TOPLEVEL}.MEM_WORDS={mem_words}"] + define
    return runner.build(sim, sources, TOPLEVEL, _config(hw_dir, mem_words), waves=waves,
                        build_args=args)


@dataclass
class ChipRun:
    """What one ``run_chip`` measured and found, per image."""

    images: int
    # per image: list of per-layer arrays
    outputs: list[list[np.ndarray]] = field(default_factory=list)
    # per image: bench record (cycles, marks...), None for an image the bench did not reach
    records: list[dict[str, Any] | None] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    sim_seconds: float = 0.0  # wall time while the chip ran (inside the simulator)
    sim_cpu_seconds: float = 0.0  # CPU time of the simulator process over the same spans
    build_seconds: float = 0.0
    wall_seconds: float = 0.0
    build_dir: str = ""

    @property
    def bit_exact(self) -> list[bool]:
        return [m is None for m in self.per_image]

    per_image: list[Mismatch | None] = field(default_factory=list)  # Mismatch or None, per image


def layer_windows(record: Mapping[str, Any], nlayers: int) -> list[tuple[int, int] | None]:
    """Per-layer ``(first, last)`` cycles from the bench's marks (cycle counts at each change
    of ``layer``) and the final cycle count."""
    starts: dict[int, int] = {}
    for layer, cyc in record["marks"]:
        if layer < nlayers and layer not in starts:
            starts[layer] = cyc
    out: list[tuple[int, int] | None] = []
    for i in range(nlayers):
        first = starts.get(i)
        nxt = [starts[j] for j in range(i + 1, nlayers) if j in starts]
        last = (nxt[0] if nxt else record["cycles"]) - 1
        out.append((first, last) if first is not None else None)
    return out


def _run_bench(info: BuildInfo, sim: str, job: Mapping[str, Any], work: Path,
               plusargs: Sequence[str], waves: bool = False) -> Any:
    """One simulator process running the cocotb bench on the build ``info``."""
    from cosim.runner import run_job

    return run_job(sim, info.folder, "cosim.chip_tb", TOPLEVEL, job, work,
                   job_env="PACT_CHIP_JOB", plusargs=plusargs, waves=waves)


def run_chip(program: Program | TiledProgram, hw_dir: str | os.PathLike[str],
             inputs: Sequence[np.ndarray], expected: Sequence[Sequence[np.ndarray]], *,
             sim: str, work: str | os.PathLike[str], waves_on_mismatch: bool = True,
             mem_stall: int = 0, mem_latency: int = 1,
             progress: Callable[[int], object] | None = None, per_process: int | None = None,
             on_built: Callable[[float], object] | None = None) -> ChipRun:
    """Run ``inputs`` (input code tensors) through the chip of ``hw_dir`` on ``sim`` and compare
    every layer of every image with ``expected`` (per image, per layer, from
    ``golden.reference.run``). ``program`` is compiled with any slot count; it is re-laid out
    here into batches that fit the harness memory, one simulator process per batch (at most
    ``per_process`` images each, so that ``progress(n)`` is called often enough). The
    harness memory stalls ``mem_stall`` percent of the cycles on each channel and answers
    reads after ``mem_latency`` cycles."""
    from gen import compiler

    t_start = time.perf_counter()
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    view = program_view(program)
    mem_words = mem_words_for(view.with_slots(1).words_used)
    per_batch = batch_slots(view, mem_words, len(inputs))
    if per_process:
        per_batch = max(1, min(per_batch, per_process))
    prog = view.with_slots(per_batch)
    t_build = time.perf_counter()
    info = build(sim, hw_dir, mem_words=mem_words)
    build_seconds = time.perf_counter() - t_build
    if on_built is not None:
        on_built(build_seconds)
    batches, chunks = [], []
    for b, i0 in enumerate(range(0, len(inputs), per_batch)):
        chunk = inputs[i0:i0 + per_batch]
        hexfile = work / f"batch_{b:03d}.hex"
        hexfile.write_text(compiler.to_hex(prog.memory_words(chunk), prog.mem_width))
        slots = [list(prog.slot_addresses(s)) for s in range(len(chunk))]
        batches.append({"hex": str(hexfile), "dump": str(work / f"dump_{b:03d}.hex"),
                        "last": prog.words_used - 1, "slots": slots})
        chunks.append(chunk)
    job = {"memfile": str(work / "mem.hex"), "dumpfile": str(work / "dump.hex"),
           "prog_addr": prog.program_addr,
           "timeout_cycles": run_timeout_cycles(prog.mac_beats),
           "results": str(work / "results.json"),
           "batches": []}
    run = ChipRun(images=len(inputs), build_dir=str(info.folder), build_seconds=build_seconds)
    names = prog.names
    nl = len(names)
    image = 0
    # One simulator process per batch: its dump is checked while the next batch is prepared,
    # and a progress bar can advance per batch.
    for b, batch in enumerate(batches):
        shutil.copyfile(batch["hex"], job["memfile"])
        res = _run_bench(info, sim, dict(job, batches=[batch]), work,
                         _plusargs(job["memfile"], job["dumpfile"], batch["last"], mem_stall,
                                   mem_latency))
        run.sim_seconds += res["sim_s"]
        run.sim_cpu_seconds += res["cpu_s"]
        words = compiler.read_hex(batch["dump"])
        runs = res["batches"][0]["runs"]
        for s in range(len(chunks[b])):
            rec = runs[s] if s < len(runs) else None
            run.records.append(rec)
            outs = prog.read_outputs(words, s)
            run.outputs.append(outs)
            windows = layer_windows(rec, nl) if rec else None
            mm = check_outputs(expected[image], outs, names=names, image=image, windows=windows)
            reason = _complaint(rec)
            if reason:
                if mm is None:
                    mm = Mismatch(image, None, None, None, (), None, None, None, reason=reason)
                else:
                    mm.reason = reason
            run.per_image.append(mm)
            if mm is not None:
                run.mismatches.append(mm)
            image += 1
        if progress is not None:
            progress(len(chunks[b]))
    located = [m for m in run.mismatches if m.layer is not None]
    if waves_on_mismatch and located:
        mm = located[0]
        mm.waves = str(_rerun_with_waves(program, hw_dir, inputs[mm.image], mm, sim=sim,
                                         work=work, mem_words=mem_words))
    run.wall_seconds = time.perf_counter() - t_start
    return run


#: The chips' error bits (``rtl.tiled.sequencer.Error``; the plane chip's ``rtl.chip.ERR_*`` are
#: the same three low bits) with the words a failure report uses.
ERROR_FLAGS = {
    Error.UNKNOWN_OP: ("ERR_UNKNOWN_OP", "a descriptor with an unknown op"),
    Error.DESCRIPTOR: ("ERR_BUFFER", "a layer that does not fit the buffers or an inconsistent "
                                     "descriptor"),
    Error.MEMORY: ("ERR_MEMORY", "a read response without a request"),
    Error.BUS: ("ERR_BUS", "SLVERR or DECERR on an AXI response"),
}


def flag_names(error: int) -> str:
    """``'ERR_BUFFER (a layer that ...)'`` for each bit set in ``error``, joined."""
    names = [f"{name} ({what})" for bit, (name, what) in ERROR_FLAGS.items() if error & bit]
    unknown = error & ~sum(ERROR_FLAGS)
    if unknown:
        names.append(f"unknown bits 0b{unknown:b}")
    return ", ".join(names)


def _last_layer(rec: Mapping[str, Any]) -> int:
    marks = rec.get("marks") or []
    return marks[-1][0] if marks else 0


def _complaint(rec: Mapping[str, Any] | None) -> str | None:
    """What the chip or the harness reported besides the outputs (the cause: timeout or which
    error flag, and the layer the chip was in), or ``None``."""
    if rec is None:
        return "the bench did not reach this image (an earlier image timed out)"
    parts = []
    if rec["timeout"]:
        parts.append(f"timeout: no done within {rec['cycles']} cycles, stuck in layer "
                     f"{_last_layer(rec)} after {rec['mac_beats']} MAC beats")
    if rec["error"]:
        parts.append(f"error flags 0b{rec['error']:04b}: {flag_names(rec['error'])} at layer "
                     f"{_last_layer(rec)}")
    if rec["mem_errors"]:
        parts.append(f"{rec['mem_errors']} memory accesses outside the harness memory")
    return ", ".join(parts) or None


def _plusargs(memfile: str | Path, dumpfile: str | Path, last: int, mem_stall: int = 0,
              mem_latency: int = 1, waves: str | Path | None = None) -> list[str]:
    out = [f"+MEMFILE={memfile}", f"+DUMPFILE={dumpfile}", f"+MEM_LAST={last}"]
    if mem_stall:
        out.append(f"+MEM_STALL={int(mem_stall)}")
    if mem_latency != 1:
        out.append(f"+MEM_LATENCY={int(mem_latency)}")
    if waves:
        out.append(f"+WAVES={waves}")
    return out


def relayout(program: Program, slots: int) -> Program:
    """The same program with ``slots`` slots (only the slot regions move)."""
    from gen import compiler

    lay = program.layout
    if lay["slots"]["count"] == slots:
        return program
    s = lay["slots"]
    static = program.words[:lay["static_words"]]
    input_base = lay["static_words"]
    output_base = input_base + slots * s["input_stride"]
    words = (static + [0] * (slots * s["input_stride"])
             + [compiler.poison_word(lay["mem_width"])] * (slots * s["output_stride"]))
    layout = dict(lay, words_used=len(words),
                  slots=dict(s, count=slots, input_base=input_base, output_base=output_base))
    return compiler.Program(words=words, layout=layout)


#: Old name, still used by cosim/sim_speed.py.
_relayout = relayout


def _rerun_with_waves(program: Program | TiledProgram, hw_dir: str | os.PathLike[str],
                      x: np.ndarray, mm: Mismatch, *, sim: str, work: Path,
                      mem_words: int) -> Path:
    """Run one image again on a tracing build, recording the diverging layer's window."""
    from gen import compiler

    prog = program_view(program).with_slots(1)
    info = build(sim, hw_dir, mem_words=mem_words, waves=sim == "verilator")
    wdir = work / f"waves_{mm.image}"
    wdir.mkdir(parents=True, exist_ok=True)
    hexfile = wdir / "mem.hex"
    hexfile.write_text(compiler.to_hex(prog.memory_words([x]), prog.mem_width))
    # Icarus writes the harness's $dumpfile as FST when run with -fst (its default for
    # waves=True; it otherwise runs with -none, no dump at all); Verilator (a --trace build)
    # writes VCD.
    ext = "fst" if sim == "icarus" else "vcd"
    wave = work / f"mismatch_{mm.image}.{ext}"
    job = {"memfile": str(hexfile), "dumpfile": str(wdir / "dump.hex"),
           "prog_addr": prog.program_addr,
           "timeout_cycles": run_timeout_cycles(prog.mac_beats),
           "results": str(wdir / "results.json"), "wave_layer": mm.layer,
           "batches": [{"hex": str(hexfile), "dump": str(wdir / "dump.hex"),
                        "last": prog.words_used - 1, "slots": [list(prog.slot_addresses(0))]}]}
    _run_bench(info, sim, job, wdir,
               _plusargs(hexfile, wdir / "dump.hex", prog.words_used - 1, waves=wave),
               waves=sim == "icarus")
    return wave
