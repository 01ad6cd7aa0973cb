"""Build-and-run around ``cocotb_tools.runner``: one build per simulator and configuration.

    info = build("verilator", sources, "pact_mac_array", "mac_array-w4a4-...")
    result = run("verilator", info, "cosim.mac_array_tb", config={"params": ...}, name="seed1")

- Every build lives in ``sim_build/<sim>/<config>`` (``<config>-waves`` when traced: Verilator
  needs ``--trace`` at build time). A stamp file records what was built (simulator, sources'
  contents, top level, arguments); a later call with the same inputs reuses the build.
- Builds take a file lock on ``sim_build/<sim>/<config>.lock``, so pytest-xdist workers that
  need the same configuration build it once and wait for each other.
- Each run gets its own folder ``<build>/runs/<name>`` (logs, cocotb results, the bench's
  summary JSON, waveforms), so runs that share a build can go in parallel.
- Benches get their parameters from a JSON file named by ``PACT_TB_CONFIG`` and write their
  summary to the JSON file named by ``PACT_TB_RESULT`` (see ``cosim.bench``).
- Verilator's run-time objects (``verilated*.o``, most of a build's compile time) are shared
  between builds with the same flags through ``sim_build/verilator/_runtime-<key>``.
- ``$PACT_SIM_BUILD`` moves the whole tree (default: ``sim_build/`` in the working directory,
  like ``runs/``; see ``pact.paths``).
- The stamp, written last, also records the SHA-256 of the built simulator binary; a build is
  reused only while its binary still has that hash, so a damaged (e.g. truncated) build is
  rebuilt instead of failing every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cosim.tools import prepare_environment
from pact.paths import locked, sim_build_root, write_file

__all__ = ["SIM_BUILD", "BuildInfo", "RunResult", "build", "run", "run_job", "build_folder",
           "config_name"]

#: Root of all build folders (git-ignored) when this module was imported: ``sim_build/`` in the
#: working directory, or ``$PACT_SIM_BUILD`` (``pact.paths.sim_build_root``, which the
#: functions here call each time).
SIM_BUILD = sim_build_root()

#: Icarus needs a timescale; Verilator gets the same one so that times agree.
TIMESCALE = ("1ns", "1ps")

_STAMP = "pact_build.json"


@dataclasses.dataclass
class BuildInfo:
    """A finished build: its folder, whether it was reused, and how long it took."""

    sim: str
    folder: Path
    toplevel: str
    waves: bool
    reused: bool
    seconds: float


@dataclasses.dataclass
class RunResult:
    """One simulation: cocotb's verdict, the bench's summary, and where the files are."""

    passed: bool
    summary: dict[str, Any]
    folder: Path
    log: Path
    waves: Path | None
    seconds: float


def config_name(prefix: str, params: object) -> str:
    """A readable, collision-free build folder name: ``prefix-<8 hex of the params>``."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def build_folder(sim: str, config: str, *, waves: bool = False,
                 root: str | Path | None = None) -> Path:
    """``<root>/<sim>/<config>[-waves]``."""
    base = Path(root) if root is not None else sim_build_root()
    return base / sim / (f"{config}-waves" if waves else config)


_locked = locked  # the name used before pact.paths had it


def _binary(sim: str, folder: Path, toplevel: str) -> Path:
    """The simulator binary a build makes: Verilator's ``<toplevel>``, Icarus's ``sim.vvp``."""
    return folder / (toplevel if sim == "verilator" else "sim.vvp")


def _file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _reusable(stamp_file: Path, stamp: Mapping[str, Any], binary: Path) -> bool:
    """True when the stamp says this build was made from ``stamp`` and its binary is intact."""
    try:
        done = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return False
    have = {k: v for k, v in done.items() if k != "binary_sha256"}
    return have == stamp and done.get("binary_sha256") == _file_sha256(binary)


def _stamp(sim: str, sources: Sequence[str | Path], toplevel: str, build_args: Iterable[str],
           waves: bool) -> dict[str, Any]:
    digest = hashlib.sha256()
    for src in sources:
        digest.update(Path(src).read_bytes())
    return {"sim": sim, "toplevel": toplevel, "build_args": list(build_args), "waves": waves,
            "sources": [Path(s).name for s in sources], "sources_sha256": digest.hexdigest()}


def _verilator_runner(cache: Path) -> Any:
    """cocotb's Verilator runner, sharing Verilator's run-time objects through ``cache``.

    ``verilated*.o`` depend only on Verilator's own headers and the compile flags, not on the
    design, yet compiling them is most of a build (about 12 of 15 s here). They are copied in
    from ``cache`` after verilating and before ``make`` (which still checks them against their
    dependencies), and copied back (atomically, by rename) after a build. The copies get a
    fresh time stamp: ``make`` would otherwise rebuild them because ``Vtop.mk`` is newer; that
    rule guards against changed flags, which the cache key already covers.
    """
    from cocotb_tools.runner import Verilator

    class CachedVerilator(Verilator):
        def _build_command(self) -> list[list[str]]:
            verilate, make = super()._build_command()
            # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model that
            # Verilator splits into several C++ files (e.g. a 16x16 array) would be compiled
            # with the precompiled header given as a bare file name, and fail.
            make = [*make, "CFG_CXXFLAGS_PCH_I=-include"]
            build = str(self.build_dir)
            restore = ["sh", "-c", 'for f in "$1"/verilated*.o; do [ -e "$f" ] || continue; '
                       'cp "$f" "${f%.o}.d" "$2"/ 2>/dev/null || true; done', "sh",
                       str(cache), build]
            save = ["sh", "-c", 'mkdir -p "$2" && for f in "$1"/verilated*.o "$1"/verilated*.d; '
                    'do [ -e "$f" ] || continue; b=$(basename "$f"); '
                    'cp -p "$f" "$2/.$b.$$" && mv -f "$2/.$b.$$" "$2/$b"; done', "sh",
                    build, str(cache)]
            return [verilate, restore, make, save]

    return CachedVerilator()


def _runtime_cache(root: Path, build_args: Iterable[str], waves: bool) -> Path:
    """Cache folder of Verilator's run-time objects for one set of flags."""
    from cosim.tools import verilator_root

    root_dir = verilator_root()
    assert root_dir is not None, "build() ran prepare_environment, which refuses a missing wheel"
    version = hashlib.sha256((root_dir / "include" / "verilated.mk").read_bytes()).hexdigest()
    key = json.dumps({"root": str(root_dir), "mk": version, "args": list(build_args),
                      "waves": waves})
    return root / "verilator" / f"_runtime-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _default_build_args(sim: str) -> list[str]:
    if sim == "verilator":
        from gen.generate import LINT_WAIVERS

        return [f"-Wno-{w}" for w in sorted(LINT_WAIVERS)]
    return []


def build(sim: str, sources: Iterable[str | Path], toplevel: str, config: str, *,
          waves: bool = False, build_args: Iterable[str] | None = None,
          root: str | Path | None = None, always: bool = False) -> BuildInfo:
    """Build ``sources`` for ``sim`` in ``build_folder(sim, config)``, or reuse that build.

    ``build_args`` default to the lint waivers of ``gen.generate`` for Verilator. Returns a
    ``BuildInfo``. Raises ``UserError`` if the simulator is missing, ``RuntimeError`` (with the
    log's path) if the build fails.
    """
    from cocotb_tools.runner import get_runner

    prepare_environment(sim)
    paths = [Path(s).resolve() for s in sources]
    args = list(_default_build_args(sim) if build_args is None else build_args)
    folder = build_folder(sim, config, waves=waves, root=root)
    stamp = _stamp(sim, paths, toplevel, args, waves)
    with _locked(folder.with_name(folder.name + ".lock")):
        stamp_file = folder / _STAMP
        binary = _binary(sim, folder, toplevel)
        if not always and _reusable(stamp_file, stamp, binary):
            return BuildInfo(sim, folder, toplevel, waves, True, 0.0)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        log = folder / "build.log"
        start = time.perf_counter()
        if sim == "verilator":
            root_dir = Path(root) if root is not None else sim_build_root()
            runner = _verilator_runner(_runtime_cache(root_dir, args, waves))
        else:
            runner = get_runner(sim)
        try:
            runner.build(sources=paths, hdl_toplevel=toplevel, build_dir=folder,
                         build_args=args, timescale=TIMESCALE, waves=waves,
                         always=True, log_file=log)
        except (RuntimeError, SystemExit) as exc:
            raise RuntimeError(f"{sim} build of {toplevel} failed ({exc}); see {log}") from None
        seconds = time.perf_counter() - start
        digest = _file_sha256(binary)
        if digest is None:
            raise RuntimeError(f"{sim} build of {toplevel} made no {binary.name}; see {log}")
        write_file(stamp_file, json.dumps({**stamp, "binary_sha256": digest}, indent=1,
                                          sort_keys=True))
        return BuildInfo(sim, folder, toplevel, waves, False, seconds)


def _read_results(xml: Path) -> bool:
    from cocotb_tools.runner import get_results

    try:
        tests, failed = get_results(xml)
    except (RuntimeError, FileNotFoundError):
        return False
    return tests > 0 and failed == 0


def run(sim: str, info: BuildInfo, test_module: str, *, config: object, name: str = "run",
        seed: int | None = None, extra_env: Mapping[str, str] | None = None) -> RunResult:
    """Run ``test_module`` (a cocotb module) on the build ``info``; return a ``RunResult``.

    ``config`` is written to ``<run folder>/config.json`` and named by ``PACT_TB_CONFIG``; the
    bench writes its summary to ``<run folder>/summary.json`` (``PACT_TB_RESULT``). A failed
    simulation does not raise: ``passed`` is False and ``summary`` holds what the bench wrote
    (empty if it wrote nothing). ``passed`` means every cocotb test passed and, if the summary
    has ``mismatches``, that it is 0.
    """
    prepare_environment(sim)
    folder = info.folder / "runs" / name
    # Two runs of the same name (e.g. the same pact sim command twice) take turns.
    with _locked(folder.with_name(name + ".lock")):
        return _run_locked(sim, info, test_module, folder, config, seed, extra_env)


def _run_locked(sim: str, info: BuildInfo, test_module: str, folder: Path, config: object,
                seed: int | None, extra_env: Mapping[str, str] | None) -> RunResult:
    from cocotb_tools.runner import get_runner

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config_file, result_file = folder / "config.json", folder / "summary.json"
    config_file.write_text(json.dumps(config, indent=1, sort_keys=True))
    env = {"PACT_TB_CONFIG": str(config_file), "PACT_TB_RESULT": str(result_file),
           **(extra_env or {})}
    waves: Path | None = None
    plusargs: list[str] = []
    if info.waves:
        if sim == "icarus":
            waves = folder / f"{info.toplevel}.fst"
            plusargs.append(f"+dumpfile_path={waves}")
        else:
            waves = folder / "dump.vcd"
    log, xml = folder / "sim.log", folder / "results.xml"
    runner = get_runner(sim)
    runner.build_dir = info.folder
    start = time.perf_counter()
    try:
        runner.test(hdl_toplevel=info.toplevel, test_module=test_module, build_dir=info.folder,
                    hdl_toplevel_lang="verilog", test_dir=folder, results_xml=str(xml),
                    extra_env=env, seed=seed,
                    waves=info.waves, plusargs=plusargs, timescale=TIMESCALE, log_file=log)
    except (RuntimeError, SystemExit):
        pass  # the verdict comes from the results file and the summary below
    seconds = time.perf_counter() - start
    summary = json.loads(result_file.read_text()) if result_file.exists() else {}
    # cocotb's verdict, and the bench's own count when it reports one.
    passed = _read_results(xml) and summary.get("mismatches", 0) == 0
    return RunResult(passed, summary, folder, log, waves if waves and waves.exists() else None,
                     seconds)



#: The simulator process's environment for the chip benches: numpy's BLAS would otherwise
#: keep a thread spinning beside the simulator after the bench's first array operation (about
#: 1% of the process's CPU time while the chip runs, measured with perf).
QUIET_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def run_job(sim: str, build_dir: str | Path, test_module: str, toplevel: str,
            job: Mapping[str, Any], work: Path, *, job_env: str, plusargs: Iterable[str] = (),
            waves: bool = False, what: str = "bench") -> Any:
    """Run the cocotb ``test_module`` on the build in ``build_dir`` for a bench driven by a job
    file (the chip benches); return the results the bench wrote, parsed.

    ``job`` is written to ``<work>/job.json``, named by the environment variable ``job_env``;
    the bench writes its results to ``job["results"]``. A failed simulation does not raise (the
    caller judges the results); no results file raises ``RuntimeError`` with the log's tail.
    """
    from cocotb_tools.runner import get_runner

    prepare_environment(sim)
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    results = Path(job["results"])
    results.unlink(missing_ok=True)
    log = work / "sim.log"
    runner = get_runner(sim)
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    hdl_toplevel_lang="verilog", test_dir=work, plusargs=list(plusargs),
                    extra_env={job_env: str(job_path), **QUIET_THREADS}, timescale=TIMESCALE,
                    results_xml=str(work / "results.xml"), log_file=log, waves=waves)
    except (RuntimeError, SystemExit):
        pass  # judged by the results file below
    if not results.exists():
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"the {sim} {what} wrote no results; see {log}\n{tail}")
    return json.loads(results.read_text())
