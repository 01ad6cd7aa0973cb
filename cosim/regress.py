"""``pact regress``: many flows (regressions, sweeps) as jobs on a Dask cluster.

    pact regress SPEC --out OUT                           # the SPEC's matrix, local cluster
    pact regress SPEC --out OUT --random 50 --seed 7      # 50 random configurations
    pact regress SPEC --out OUT --scheduler tcp://host:8786 --timeout 600

SPEC is a TOML file. ``[matrix]`` lists the values of each axis (a scalar is one value); every
combination is one job, which runs the whole flow (``cosim.flow``: train or reuse, export,
generate, compile, build, simulate, compare with ``==``) and returns its flow JSON. Axes:
``wbits``, ``abits``, ``rows``, ``cols``, ``model``, ``sim``, ``mem_stall``, ``mem_latency``,
``images``, ``seed`` (training seed), ``epochs``, and ``image`` (model image files, relative to
the SPEC: the job runs that image instead of training; its ``wbits``/``abits``/``model`` come
from the image). ``[chip]`` holds extra generator options for every chip (``max_channels``,
...). ``[random]`` states the ranges of ``--random``: ``{min = 2, max = 8}`` or a list of
choices per axis; an axis absent there is drawn from the matrix, else from ``RANDOM_RANGES``.

Where jobs run: with no ``--scheduler``, a ``LocalCluster`` with one single-threaded worker
process per core; with ``--scheduler tcp://HOST:PORT``, a running cluster (``dask scheduler``,
``dask worker``). A job carries what it needs (the model image's bytes, or the training
recipe, which is its configuration) and runs in a subprocess of the worker (killable: that is
how ``--timeout`` works), in the worker machine's own build tree: ``$PACT_SIM_BUILD`` (default
``sim_build/`` of the worker's checkout), chips in ``<tree>/chips``, the job's files in
``<tree>/regress/<job hash>``, training runs in ``$PACT_RUNS`` (default ``runs/`` of the
checkout). Builds and chips are content-hashed folders behind file locks (``cosim.runner``,
``cosim.flow.generate_chip``); a training run is taken under a file lock
``<runs>/<key>.lock`` here, so jobs of one machine share them.

Results in OUT: ``results.jsonl`` (one line per finished job: ``key``, ``name``, ``job``,
``status`` pass/fail/error/timeout/died, ``report`` (the flow JSON), ``seconds``, ``worker``,
``reason``), ``junit.xml``, and for a job that did not pass ``failures/<name>/`` (its log,
``mismatch.txt`` with the first-mismatch report, the waveform). A job is skipped when OUT
already holds its result (by the job's hash); ``--rerun-failed`` runs the failed ones again.
A dead worker or a job past ``--timeout`` is that job's failure; the others go on. (For
that the engine sets the scheduler's ``allowed_failures`` to 0 while it runs, and restores it:
Dask would otherwise run a job whose worker died on three more workers. Dask also fails the
jobs only queued on a dead worker; those that had not started are submitted again.) Ctrl-C
cancels what is left and writes ``junit.xml`` of what finished (``results.jsonl`` gets whole
lines only). The exit code is 0 only when every job of the SPEC is bit-exact.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pact.errors import UserError

if TYPE_CHECKING:
    from cosim.flow import FlowConfig

__all__ = ["Job", "JobResult", "AXES", "DEFAULTS", "RANDOM_RANGES", "load_spec", "matrix_jobs",
           "random_jobs", "execute", "pending", "run_jobs", "read_results", "junit_xml",
           "mismatch_text", "summary_table", "add_arguments", "run"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS, JUNIT, FAILURES = "results.jsonl", "junit.xml", "failures"
#: Dask event topic on which a job says it started (a worker that dies before that did not
#: die of this job: the job is submitted again).
TOPIC = "pact-regress"

#: The axes of a job and their types.
AXES: dict[str, type] = {
    "wbits": int, "abits": int, "rows": int, "cols": int, "model": str, "sim": str,
    "mem_stall": int, "mem_latency": int, "images": int, "seed": int, "epochs": int,
    "design": str}
#: ``design``: ``tiled`` (the tiled chip, as ``pact flow``) or ``plane`` (the first chip).
DEFAULTS: dict[str, Any] = {
    "wbits": 4, "abits": 4, "rows": 8, "cols": 8, "model": "cnn", "sim": "verilator",
    "mem_stall": 0, "mem_latency": 1, "images": 10, "seed": 0, "epochs": 40,
    "design": "tiled"}
#: ``--random`` draws an axis from here unless the SPEC says otherwise: ``(lo, hi)``
#: inclusive, or a list of choices.
RANDOM_RANGES: dict[str, tuple[int, int] | list[Any]] = {
    "wbits": (2, 8), "abits": (2, 8), "rows": [4, 8, 16], "cols": [4, 8, 16],
    "model": ["cnn", "mlp"], "sim": ["verilator"], "mem_stall": (0, 50),
    "mem_latency": (1, 4), "images": (1, 10), "seed": (0, 2), "epochs": [40],
    "design": ["tiled"]}
STATUSES = ("pass", "fail", "error", "timeout", "died")


# -- jobs -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job:
    """One flow: its axes, extra chip options, and the model image it runs (its hash; the bytes
    travel separately) or none (then it trains: the recipe is the axes)."""

    wbits: int = 4
    abits: int = 4
    rows: int = 8
    cols: int = 8
    model: str = "cnn"
    sim: str = "verilator"
    mem_stall: int = 0
    mem_latency: int = 1
    images: int = 10
    seed: int = 0
    epochs: int = 40
    design: str = "tiled"
    chip: tuple[tuple[str, int], ...] = ()  # sorted (name, value) pairs of extra options
    image_sha256: str | None = None
    image_name: str | None = None
    #: Fault injection for the engine's own tests: "kill-worker", "hang", "corrupt".
    fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["chip"] = dict(self.chip)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        fields = dict(d)
        fields["chip"] = tuple(sorted((fields.get("chip") or {}).items()))
        return cls(**fields)

    @property
    def key(self) -> str:
        """16 hex of the job's content: what decides its result (a rerun skips it)."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        parts = [self.model if not self.image_name else Path(self.image_name).stem,
                 f"w{self.wbits}a{self.abits}", f"r{self.rows}c{self.cols}", self.sim]
        if self.design != "tiled":
            parts.append(self.design)
        if not self.image_sha256:
            parts.append(f"s{self.seed}")
        if self.mem_stall:
            parts.append(f"st{self.mem_stall}")
        if self.mem_latency != 1:
            parts.append(f"lat{self.mem_latency}")
        parts.append(f"n{self.images}")
        return "-".join(parts) + f"-{self.key[:6]}"

    def flow_config(self, runs: str | os.PathLike[str],
                    work: str | os.PathLike[str] | None) -> FlowConfig:
        """The job's ``FlowConfig``. That takes the 2..8 bits training supports; a job with a
        model image runs any width its image and chip have (2..16, e.g. the report's 16)."""
        from cosim.flow import FlowConfig

        cap = 8 if self.image_sha256 else None
        cfg = FlowConfig(wbits=min(self.wbits, cap or self.wbits),
                         abits=min(self.abits, cap or self.abits), sim=self.sim,
                         images=self.images, rows=self.rows, cols=self.cols, model=self.model,
                         seed=self.seed, epochs=self.epochs, runs=runs, work=work,
                         mem_stall=self.mem_stall, mem_latency=self.mem_latency, waves=True,
                         progress=False, chip=self.design)
        cfg.wbits, cfg.abits = self.wbits, self.abits
        return cfg


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"SPEC {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"SPEC {path} is not valid TOML ({exc})") from None


def _values(name: str, v: Any) -> list[Any]:
    values = v if isinstance(v, list) else [v]
    if not values:
        raise UserError(f"SPEC: [matrix] {name} is an empty list; give at least one value")
    typ = AXES[name]
    for x in values:
        if isinstance(x, bool) or not isinstance(x, typ):
            raise UserError(f"SPEC: [matrix] {name} = {x!r} is not {typ.__name__}")
    return values


def load_spec(path: str | os.PathLike[str]) -> tuple[dict[str, list[Any]], dict[str, int],
                                                     dict[str, Any], dict[str, bytes]]:
    """``(matrix, chip, random_ranges, images)`` from a SPEC file; ``images`` maps an image's
    path to its bytes. ``UserError`` on anything unknown or ill-typed."""
    spec_path = Path(path)
    spec = _read_toml(spec_path)
    unknown = set(spec) - {"matrix", "chip", "random"}
    if unknown:
        raise UserError(f"SPEC: unknown table(s) {', '.join(sorted(unknown))}; use [matrix], "
                        "[chip] and [random]")
    matrix_in = spec.get("matrix", {})
    axes = set(AXES) | {"image"}
    bad = sorted(set(matrix_in) - axes) + sorted(set(spec.get("random", {})) - set(AXES))
    if bad:
        raise UserError(f"SPEC: unknown axis {bad[0]!r}; axes are {', '.join(sorted(axes))}")
    matrix: dict[str, list[Any]] = {}
    images: dict[str, bytes] = {}
    for name, v in matrix_in.items():
        if name == "image":
            files = v if isinstance(v, list) else [v]
            for f in files:
                p = (spec_path.parent / str(f)).resolve()
                if not p.is_file():
                    raise UserError(f"SPEC: image {f!r} is not a file (paths are relative to "
                                    "the SPEC)")
                images[str(p)] = p.read_bytes()
            matrix["image"] = list(images)
        else:
            matrix[name] = _values(name, v)
    chip = spec.get("chip", {})
    for k, v in chip.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"SPEC: [chip] {k} = {v!r} is not an integer")
    ranges: dict[str, Any] = {}
    for name, v in spec.get("random", {}).items():
        if isinstance(v, dict) and set(v) == {"min", "max"} and AXES[name] is int:
            ranges[name] = (int(v["min"]), int(v["max"]))
        elif isinstance(v, list) and v:
            ranges[name] = _values(name, v)
        else:
            raise UserError(f"SPEC: [random] {name} must be {{min = A, max = B}} (integers) or "
                            "a list of choices")
    return matrix, dict(chip), ranges, images


def _image_axes(data: bytes) -> tuple[dict[str, Any], str]:
    from golden import image as image_mod

    img = image_mod.from_bytes(data)
    meta = img.meta
    out: dict[str, Any] = {"model": meta.get("model", "cnn")}
    for k in ("wbits", "abits"):
        if isinstance(meta.get(k), int):
            out[k] = meta[k]
    return out, img.meta["content_hash"]


def _make_job(values: Mapping[str, Any], chip: Mapping[str, int],
              images: Mapping[str, bytes]) -> Job:
    """A validated ``Job`` from axis values (``image``: a path into ``images``)."""
    fields = {**DEFAULTS, **values}
    extra: dict[str, Any] = {}
    path = fields.pop("image", None)
    if path is not None:
        axes, digest = _image_axes(images[path])
        fields.update(axes)
        extra = {"image_sha256": digest, "image_name": Path(path).name}
    job = Job(**fields, chip=tuple(sorted(chip.items())), **extra)
    job.flow_config("runs", None)  # UserError on a bad value
    return job


def matrix_jobs(matrix: Mapping[str, Sequence[Any]], chip: Mapping[str, int] | None = None,
                images: Mapping[str, bytes] | None = None) -> list[Job]:
    """Every combination of the matrix's values, in order, without duplicates."""
    names = list(matrix)
    jobs: list[Job] = []
    seen: set[str] = set()
    for combo in itertools.product(*(matrix[n] for n in names)):
        job = _make_job(dict(zip(names, combo, strict=True)), chip or {}, images or {})
        if job.key not in seen:
            seen.add(job.key)
            jobs.append(job)
    return jobs


def random_jobs(n: int, seed: int, matrix: Mapping[str, Any] | None = None,
                chip: Mapping[str, int] | None = None, ranges: Mapping[str, Any] | None = None,
                images: Mapping[str, bytes] | None = None) -> list[Job]:
    """``n`` distinct random valid jobs (drawn with ``random.Random(seed)``): each axis from
    ``ranges``, else from the matrix's values, else from ``RANDOM_RANGES``."""
    rng = random.Random(seed)
    matrix, ranges = matrix or {}, ranges or {}
    jobs: list[Job] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(jobs) == n:
            break
        values: dict[str, Any] = {}
        for name in AXES:
            r = ranges.get(name, matrix.get(name, RANDOM_RANGES[name]))
            values[name] = rng.randint(*r) if isinstance(r, tuple) else rng.choice(r)
        if "image" in matrix:
            values["image"] = rng.choice(matrix["image"])
        try:
            job = _make_job(values, chip or {}, images or {})
        except UserError:
            continue  # outside what the flow accepts: draw again
        if job.key not in seen:
            seen.add(job.key)
            jobs.append(job)
    if len(jobs) < n:
        raise UserError(f"--random {n}: only {len(jobs)} distinct valid configurations found in "
                        "the SPEC's ranges; widen them or ask for fewer")
    return jobs


# -- on the worker --------------------------------------------------------------------------------


def _sim_build() -> Path:
    from cosim.runner import SIM_BUILD

    return SIM_BUILD


def _runs_root() -> Path:
    return Path(os.environ.get("PACT_RUNS") or ROOT / "runs")


def execute(job: dict[str, Any], image: bytes | None = None,
            timeout: float | None = None) -> dict[str, Any]:
    """Run ``job`` (a ``Job.as_dict()``) on this machine, in a subprocess killed after
    ``timeout`` seconds; returns the job's result record (see the module docstring) with
    ``files``: name -> bytes to copy back when it did not pass (log, mismatch report, waves).
    Runs on a Dask worker; also callable directly."""
    j = Job.from_dict(job)
    with contextlib.suppress(ValueError, ImportError):
        from distributed import get_worker

        get_worker().log_event(TOPIC, {"key": j.key, "state": "started"})
    if j.fault == "kill-worker":
        time.sleep(1.0)  # let the started event leave the worker
        os.kill(os.getpid(), signal.SIGKILL)
    work = _sim_build() / "regress" / j.key
    # The same job twice on one machine (two clients) takes turns in its folder.
    with _file_lock(work.with_name(j.key + ".lock")):
        _fresh(work)
        (work / "job.json").write_text(json.dumps(job, indent=1, sort_keys=True))
        if image is not None:
            (work / "model.pactimg").write_bytes(image)
        return _run_in_subprocess(j, job, work, timeout)


def _run_in_subprocess(j: Job, job: dict[str, Any], work: Path,
                       timeout: float | None) -> dict[str, Any]:
    log = work / "job.log"
    start = time.perf_counter()
    with open(log, "wb") as f:
        # Its own session: a timeout kills the whole group (the simulator too).
        p = subprocess.Popen([sys.executable, "-m", "cosim.regress", "--job", str(work)],
                             stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                             start_new_session=True)
        rc, reason = _wait(p, timeout)
    seconds = time.perf_counter() - start
    report_file = work / "flow.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    if reason:
        status = "timeout" if reason.startswith("timed out") else "error"
    elif report is None:
        status = "error"
        reason = f"the job exited with code {rc} and wrote no flow report"
    elif report["bit_exact_images"] == report["images"] and rc == 0:
        status = "pass"
    else:
        status = "fail"
        reason = (mismatch_text(report["mismatches"][:1])
                  or f"{report['bit_exact_images']}/{report['images']} images bit-exact")
    files: dict[str, bytes] = {}
    if status != "pass":
        files["job.log"] = log.read_bytes()
        if report and report["mismatches"]:
            files["mismatch.txt"] = (mismatch_text(report["mismatches"]) + "\n").encode()
            waves = report["mismatches"][0].get("waves")
            if waves and Path(waves).is_file():
                files[Path(waves).name] = Path(waves).read_bytes()
    return {"key": j.key, "name": j.name, "job": job, "status": status, "reason": reason,
            "report": report, "seconds": round(seconds, 3), "host": socket.gethostname(),
            "worker": _worker_address(), "log": str(log), "files": files}


def _wait(p: subprocess.Popen[bytes], timeout: float | None) -> tuple[int | None, str | None]:
    """Wait for the job's process; kill its group past ``timeout`` or when the client cancels
    the task (Ctrl-C). Returns ``(exit code or None, reason or None)``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return p.wait(1.0), None
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() > deadline:
            reason = f"timed out after {timeout:g} s"
        elif _cancelled():
            reason = "cancelled"
        else:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return None, reason


def _cancelled() -> bool:
    """True when this task runs on a Dask worker that no longer wants it."""
    try:
        from distributed import get_worker

        worker = get_worker()
        ts = worker.state.tasks.get(worker.get_current_task())
    except (ValueError, ImportError, KeyError, AttributeError):
        return False
    return ts is None or ts.state in ("cancelled", "released", "forgotten")


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ValueError, ImportError):
        return None


def _fresh(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def mismatch_text(mismatches: Sequence[Mapping[str, Any]]) -> str:
    """One line per mismatch of a flow report (``report["mismatches"]``)."""
    lines = []
    for m in mismatches:
        if m["channel"] is None:
            lines.append(f"image {m['image']}: outputs match but {m['reason']}")
            continue
        text = (f"image {m['image']}: first mismatch at layer {m['layer']} ({m['name']}), "
                f"channel {m['channel']}, position {tuple(m['position'])}: expected "
                f"{m['expected']}, got {m['got']}")
        if m.get("reason"):
            text += f" ({m['reason']})"
        if m.get("window"):
            text += f"; layer ran in cycles {m['window'][0]}..{m['window'][1]}"
        if m.get("waves"):
            text += f"; waveform {Path(m['waves']).name}"
        lines.append(text)
    return "\n".join(lines)


def _watch_parent() -> None:
    """Exit (with the whole process group: the simulator too) when the worker that started
    this job is gone, so a killed worker leaves nothing running."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def job_main(work: str | os.PathLike[str]) -> int:
    """The job's subprocess: the flow of ``<work>/job.json``, its report to
    ``<work>/flow.json``. Exit 0 only when every image is bit-exact."""
    from cosim import flow as flow_mod
    from cosim.tools import prepare_environment
    from golden import train as train_mod

    _watch_parent()
    work = Path(work)
    j = Job.from_dict(json.loads((work / "job.json").read_text()))
    runs = _runs_root()
    cfg = j.flow_config(runs, work / "flow")

    def log(msg: str) -> None:
        print(f"pact regress [{j.name}]: {msg}", flush=True)

    if j.fault == "hang":
        log("hanging (fault injection)")
        time.sleep(1e6)
    if j.fault == "corrupt":
        _corrupt_compiler()
    prepare_environment(cfg.sim)
    t = time.perf_counter()
    if j.image_sha256:
        image_path = work / "model.pactimg"
    else:
        tc = train_mod.TrainConfig(wbits=j.wbits, abits=j.abits, model=j.model, seed=j.seed,
                                   epochs=j.epochs)
        # Jobs of one machine that need the same run take turns: one trains, the rest reuse.
        with _file_lock(runs / f"{train_mod.run_key(tc)}.lock"):
            image_path = flow_mod.train_and_export(cfg, log)
    tg = time.perf_counter()
    if j.design == "tiled":
        from golden import image as image_mod

        params = flow_mod.tiled_chip_params(cfg, image_mod.load(image_path))
        hw_dir = flow_mod.generate_chip({**params, **dict(j.chip)}, log,
                                        root=_sim_build() / "chips", block="tiled_chip")
    else:
        hw_dir = flow_mod.generate_chip({**cfg.chip_params(), **dict(j.chip)}, log,
                                        root=_sim_build() / "chips")
    generate_s = time.perf_counter() - tg
    report = flow_mod.flow(cfg, image_path=image_path, hw_dir=hw_dir, log=log)
    report["times"]["generate_s"] = round(generate_s, 3)
    report["times"]["total_s"] = round(time.perf_counter() - t, 3)
    tmp = work / ".flow.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, work / "flow.json")
    print(flow_mod.summary(report), flush=True)
    return 0 if report["bit_exact_images"] == report["images"] else 1


def _corrupt_compiler() -> None:
    """Fault injection: flip a bit of the third layer's first multiplier in every compiled
    program (the RTL then disagrees with the reference at that layer)."""
    from gen import compiler

    real = compiler.compile_image

    def corrupt(image: Any, hw: Any, **kw: Any) -> Any:
        program = real(image, hw, **kw)
        program.words[program.layout["layers"][2]["c_addr"]] ^= 1 << 13
        return program

    compiler.compile_image = corrupt

    from gen import tiled_compiler

    real_tiled = tiled_compiler.compile_tiled

    def corrupt_tiled(image: Any, params: Any, **kw: Any) -> Any:
        program = real_tiled(image, params, **kw)
        program.words[program.layout.layers[2].c_addr] ^= 1 << 13
        return program

    tiled_compiler.compile_tiled = corrupt_tiled


# -- on the client --------------------------------------------------------------------------------


@dataclasses.dataclass
class JobResult:
    """What OUT holds about one job after a run."""

    job: Job
    record: dict[str, Any] | None  # None: not run (interrupted)

    @property
    def status(self) -> str:
        return self.record["status"] if self.record else "not run"


def read_results(out: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{key: record}`` from ``OUT/results.jsonl``; the last line of a key wins, and a torn
    last line (a crash while writing) is ignored."""
    path = Path(out) / RESULTS
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[rec["key"]] = rec
    return records


def _append_result(out: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(Path(out) / RESULTS, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _store(out: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Write a record's files to ``OUT/failures/<name>/``, then its line (a line in
    results.jsonl means its files are there)."""
    files = record.pop("files", {}) or {}
    if files:
        folder = Path(out) / FAILURES / record["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        record["files"] = sorted(str(Path(FAILURES) / record["name"] / n) for n in files)
    _append_result(out, record)


def _failure_record(job: Job, status: str, reason: str,
                    log: bytes | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": job.key, "name": job.name, "job": job.as_dict(), "status": status,
           "reason": reason, "report": None, "seconds": None, "host": None, "worker": None,
           "log": None, "files": {}}
    if log:
        rec["files"]["job.log"] = log
    return rec


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client on ``scheduler``, or on a new ``LocalCluster`` (one single-threaded worker
    process per core) that is closed afterwards."""
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout=10)
        except OSError as exc:
            raise UserError(f"--scheduler {scheduler}: cannot connect ({exc}); start "
                            "'dask scheduler' there or check the address") from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", memory_limit=0,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def _set_allowed_failures(client: Any, n: int) -> Any:
    """A job whose worker dies fails at once (the scheduler's default retries it three times
    elsewhere); returns the scheduler's previous value."""

    def set_it(dask_scheduler: Any = None, value: int = n) -> Any:
        old = dask_scheduler.allowed_failures
        dask_scheduler.allowed_failures = value
        return old

    return client.run_on_scheduler(set_it)


def _started(client: Any) -> set[str]:
    try:
        return {msg["key"] for _, msg in client.get_events(TOPIC)
                if isinstance(msg, dict) and msg.get("state") == "started"}
    except Exception:
        return set()  # no events known: every job counts as not started


def _submit(client: Any, job: Job, payload: bytes | None, timeout: float | None,
            attempt: int) -> Any:
    return client.submit(execute, job.as_dict(), payload, timeout, pure=False,
                         key=f"pact-regress-{job.key}-{attempt}-{os.getpid()}-{time.time_ns()}")


def pending(jobs: Sequence[Job], done: Mapping[str, Mapping[str, Any]],
            rerun_failed: bool = False) -> list[Job]:
    """The jobs to run: those without a result in ``done``, and with ``rerun_failed`` those
    whose result is not a pass."""
    return [j for j in jobs
            if j.key not in done or (rerun_failed and done[j.key]["status"] != "pass")]


def run_jobs(jobs: Sequence[Job], out: str | os.PathLike[str], *,
             images: Mapping[str, bytes] | None = None, scheduler: str | None = None,
             timeout: float | None = None, rerun_failed: bool = False, workers: int | None = None,
             progress: bool = True,
             log: Callable[[str], object] = print) -> tuple[list[JobResult], bool]:
    """Run ``jobs`` into ``out`` (skipping those already there; see the module docstring).
    Returns ``(results, interrupted)``: a ``JobResult`` per job, in order."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    out = Path(out)
    images = images or {}
    by_hash: dict[str | None, bytes] = {_image_axes(data)[1]: data for data in images.values()}
    missing = sorted({str(j.image_name) for j in jobs if j.image_sha256 and j.image_sha256
                      not in by_hash})
    if missing:
        raise UserError(f"no bytes given for the model image(s) {', '.join(missing)}")
    done = read_results(out)
    todo = pending(jobs, done, rerun_failed)
    skipped = len(jobs) - len(todo)
    if skipped:
        log(f"{skipped} of {len(jobs)} jobs already have results in {out}; skipping them")
    interrupted = False
    if todo:
        bar = _bar(len(todo), progress)
        with _client(scheduler, workers) as client:
            out.mkdir(parents=True, exist_ok=True)  # not before: a refused scheduler leaves none
            previous = _set_allowed_failures(client, 0)
            futures: dict[Any, tuple[Job, int]] = {}
            failed = 0
            try:
                for j in todo:
                    futures[_submit(client, j, by_hash.get(j.image_sha256), timeout, 0)] = (j, 0)
                stream = as_completed(list(futures))
                for fut in stream:
                    j, attempt = futures.pop(fut)
                    rec: dict[str, Any]
                    if fut.status == "error":
                        exc = fut.exception()
                        if isinstance(exc, KilledWorker):
                            if j.key not in _started(client) and attempt == 0:
                                nf = _submit(client, j, by_hash.get(j.image_sha256), timeout, 1)
                                futures[nf] = (j, 1)
                                stream.add(nf)
                                continue
                            rec = _failure_record(j, "died", f"the worker running this job "
                                                  f"died ({exc})", _dead_log(j))
                        else:
                            rec = _failure_record(j, "error", f"{type(exc).__name__}: {exc}")
                    elif fut.status == "cancelled":
                        continue
                    else:
                        rec = fut.result()
                    _store(out, rec)
                    done[j.key] = rec
                    failed += rec["status"] != "pass"
                    if bar:
                        bar.update(1)
                        bar.set_postfix(failed=failed)
            except KeyboardInterrupt:
                interrupted = True
                log("interrupted: cancelling the remaining jobs")
                client.cancel(list(futures), force=True)
            finally:
                if bar:
                    bar.close()
                with contextlib.suppress(Exception):
                    _set_allowed_failures(client, previous)
    results = [JobResult(j, done.get(j.key)) for j in jobs]
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / JUNIT, junit_xml(results))
    return results, interrupted


def _dead_log(job: Job) -> bytes | None:
    """The log of a job whose worker died, when the worker shares this machine's tree."""
    path = _sim_build() / "regress" / job.key / "job.log"
    return path.read_bytes() if path.is_file() else None


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="pact regress", unit="job", file=sys.stderr)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- reporting ------------------------------------------------------------------------------------


def junit_xml(results: Sequence[JobResult]) -> str:
    """JUnit XML: one ``testcase`` per job (``failure`` for a mismatch, ``error`` for an error,
    a timeout or a dead worker, ``skipped`` for a job that did not run)."""
    counts = {"tests": len(results), "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.Element("testsuite", name="pact regress")
    total = 0.0
    for r in results:
        rec = r.record
        case = ET.SubElement(suite, "testcase", classname="pact.regress", name=r.job.name)
        if rec is None:
            ET.SubElement(case, "skipped", message="not run (interrupted)")
            counts["skipped"] += 1
            continue
        secs = rec.get("seconds") or 0.0
        total += secs
        case.set("time", f"{secs:.3f}")
        if rec["status"] == "fail":
            el = ET.SubElement(case, "failure", message=rec["reason"] or "not bit-exact",
                               type="mismatch")
            counts["failures"] += 1
        elif rec["status"] != "pass":
            el = ET.SubElement(case, "error", message=rec["reason"] or rec["status"],
                               type=rec["status"])
            counts["errors"] += 1
        else:
            continue
        el.text = "\n".join(filter(None, [rec["reason"], *rec.get("files", [])]))
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{total:.3f}")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def summary_table(results: Sequence[JobResult]) -> str:
    """The terminal table: one row per job."""
    rows = [("job", "status", "bit-exact", "cycles/inf", "MAC util", "time")]
    for r in results:
        rec = r.record or {}
        rep = rec.get("report") or {}
        util = (rep.get("mac_utilization") or {}).get("overall")
        cyc = rep.get("cycles_per_inference")
        rows.append((
            r.job.name, r.status,
            f"{rep['bit_exact_images']}/{rep['images']}" if rep else "-",
            f"{cyc:.0f}" if cyc else "-",
            f"{util:.1%}" if util is not None else "-",
            f"{rec['seconds']:.1f}s" if rec.get("seconds") is not None else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    passed = sum(r.status == "pass" for r in results)
    lines.append(f"{passed}/{len(results)} jobs bit-exact")
    for r in results:
        if r.record is not None and r.status != "pass":
            lines.append(f"  {r.job.name}: {r.status}: {r.record['reason']}")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="TOML file: [matrix], [chip], [random]")
    parser.add_argument("--out", required=True, metavar="OUT", help="results folder")
    parser.add_argument("--random", metavar="N", help="N random configurations instead of the "
                        "matrix, within the SPEC's [random] ranges")
    parser.add_argument("--seed", default="0", metavar="S", help="seed of --random (default 0)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="a running Dask scheduler (default: a local cluster, one worker "
                             "per core)")
    parser.add_argument("--workers", metavar="N", help="local cluster workers (default: cores)")
    parser.add_argument("--timeout", metavar="SECONDS",
                        help="a job running longer fails (default: no limit)")
    parser.add_argument("--rerun-failed", action="store_true",
                        help="run again the jobs whose results in OUT are not a pass")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def jobs_from_args(args: argparse.Namespace) -> tuple[list[Job], dict[str, bytes]]:
    """The jobs and image bytes a command line asks for."""
    from gen.generate import parse_int

    matrix, chip, ranges, images = load_spec(args.spec)
    if args.random is not None:
        jobs = random_jobs(parse_int("random", args.random, 1), parse_int("seed", args.seed, 0),
                           matrix, chip, ranges, images)
    else:
        jobs = matrix_jobs(matrix, chip, images)
    return jobs, images


def run(args: argparse.Namespace) -> int:
    from gen.generate import parse_int

    jobs, images = jobs_from_args(args)
    timeout = None
    if args.timeout is not None:
        try:
            timeout = float(args.timeout)
        except ValueError:
            timeout = -1
        if not timeout > 0:
            raise UserError(f"--timeout must be a positive number of seconds, not "
                            f"{args.timeout!r}")
    workers = parse_int("workers", args.workers, 1) if args.workers else None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")

    def log(msg: str) -> None:
        print(f"pact regress: {msg}", file=sys.stderr)

    log(f"{len(jobs)} jobs on "
        + (args.scheduler or f"a local cluster of {workers or os.cpu_count()} workers"))
    results, interrupted = run_jobs(jobs, out, images=images, scheduler=args.scheduler,
                                    timeout=timeout, rerun_failed=args.rerun_failed,
                                    workers=workers, progress=not args.quiet, log=log)
    print(summary_table(results))
    print(f"  results            {out / RESULTS}, {out / JUNIT}")
    if interrupted:
        raise KeyboardInterrupt
    return 0 if all(r.status == "pass" for r in results) else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--job":
        sys.exit(job_main(sys.argv[2]))
    sys.exit("usage: python -m cosim.regress --job WORK_FOLDER (used by pact regress)")
