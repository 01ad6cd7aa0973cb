"""``pact regress``: SPEC parsing, random sweeps, JUnit and resume on their own; then real runs
on a real Dask cluster (a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1) and
on the local cluster: a bit-exact SPEC, resume, a mismatch with its report and waveform, a
killed worker, a timeout.

Cheap on purpose: one random network on a reduced 4x4 chip (the ``tests/test_flow.py`` chip),
one image per job, Verilator (one build, shared by every job through the build tree's locks).
"""

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cosim import regress
from cosim.chip_model import random_image
from golden import image as image_mod
from pact.cli import main
from pact.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SMALL_CHIP = {"max_channels": 16, "max_plane": 64, "wbuf_depth": 2048}

SPEC = """
[matrix]
image = "net.pactimg"
rows = 4
cols = 4
sim = "verilator"
images = 1
mem_stall = [0, 20]

[chip]
max_channels = 16
max_plane = 64
wbuf_depth = 2048
"""


def write_network(folder, seed=0):
    image = random_image(seed, wbits=4, abits=4, channels=(8, 8, 8))
    image.meta.update(dataset="digits", model="cnn", wbits=4, abits=4)
    path = Path(folder) / "net.pactimg"
    image_mod.save(image, path)
    return path


@pytest.fixture
def spec(tmp_path):
    write_network(tmp_path)
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def small_job(**kw):
    """A job on the reduced chip running the network of ``write_network`` (bytes separate)."""
    return regress.Job(rows=4, cols=4, images=1, chip=tuple(sorted(SMALL_CHIP.items())), **kw)


def image_job(folder, **kw):
    path = write_network(folder)
    data = path.read_bytes()
    digest = image_mod.from_bytes(data).meta["content_hash"]
    job = small_job(image_sha256=digest, image_name=path.name, sim="verilator", **kw)
    return job, {str(path): data}


def lines(out):
    return (out / regress.RESULTS).read_text().splitlines()


# -- SPEC, jobs, random sweeps (no simulator) -------------------------------------------------


def test_matrix_is_every_combination(tmp_path):
    (tmp_path / "s.toml").write_text('[matrix]\nwbits = [2, 4, 8]\nabits = 4\n'
                                     'sim = ["verilator", "icarus"]\nimages = 3\n')
    matrix, chip, ranges, images = regress.load_spec(tmp_path / "s.toml")
    jobs = regress.matrix_jobs(matrix, chip, images)
    assert [(j.wbits, j.sim) for j in jobs] == [
        (w, s) for w in (2, 4, 8) for s in ("verilator", "icarus")]
    assert all(j.abits == 4 and j.images == 3 and j.rows == 8 for j in jobs)
    assert len({j.key for j in jobs}) == 6 and len({j.name for j in jobs}) == 6


def test_image_jobs_take_their_bits_from_the_image(spec):
    jobs, images = regress.jobs_from_args(type("A", (), {"spec": spec, "random": None,
                                                         "seed": "0"}))
    assert len(jobs) == 2 and list(images) == [str((spec.parent / "net.pactimg").resolve())]
    digest = image_mod.load(spec.parent / "net.pactimg").meta["content_hash"]
    assert {j.image_sha256 for j in jobs} == {digest}
    assert {j.mem_stall for j in jobs} == {0, 20}
    assert all(dict(j.chip) == SMALL_CHIP and j.rows == 4 for j in jobs)


def test_key_changes_with_every_field():
    base = regress.Job()
    others = [regress.Job(wbits=2), regress.Job(sim="icarus"), regress.Job(mem_stall=1),
              regress.Job(seed=1), regress.Job(chip=(("max_channels", 16),)),
              regress.Job(image_sha256="ab")]
    assert len({base.key, *(o.key for o in others)}) == 1 + len(others)
    assert regress.Job.from_dict(json.loads(json.dumps(base.as_dict()))).key == base.key


def test_random_jobs_are_reproducible_distinct_and_in_range():
    ranges = {"wbits": (2, 3), "rows": [4, 8], "mem_stall": (0, 10)}
    a = regress.random_jobs(6, 7, ranges=ranges)
    assert [j.key for j in a] == [j.key for j in regress.random_jobs(6, 7, ranges=ranges)]
    assert [j.key for j in a] != [j.key for j in regress.random_jobs(6, 8, ranges=ranges)]
    assert len({j.key for j in a}) == 6
    for j in a:
        assert 2 <= j.wbits <= 3 and j.rows in (4, 8) and 0 <= j.mem_stall <= 10
        assert 2 <= j.abits <= 8  # the default range


def test_random_refuses_more_jobs_than_the_ranges_hold():
    fixed = {name: [regress.DEFAULTS[name]] for name in regress.AXES}
    with pytest.raises(UserError, match="only 1 distinct"):
        regress.random_jobs(2, 0, ranges=fixed)


@pytest.mark.parametrize("text, message", [
    ("[matrix]\nwbits = [2, 4\n", "not valid TOML"),
    ("[matrix]\nbits = 4\n", "unknown axis 'bits'"),
    ("[matrix]\nwbits = 'four'\n", "is not int"),
    ("[matrix]\nwbits = 12\n", "wbits must be an integer in 2..8"),
    ("[matrix]\nimage = 'missing.pactimg'\n", "is not a file"),
    ("[other]\nx = 1\n", "unknown table"),
    ("[random]\nwbits = 3\n", "min = A, max = B"),
])
def test_bad_spec_is_a_one_line_error(tmp_path, capsys, text, message):
    (tmp_path / "s.toml").write_text(text)
    assert main(["regress", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_bad_timeout_is_refused(spec, capsys):
    assert main(["regress", str(spec), "--out", str(spec.parent / "o"), "--timeout", "0"]) == 2
    assert "--timeout must be a positive" in capsys.readouterr().err


@pytest.mark.slow  # waits for Dask's connect timeout
def test_a_scheduler_that_does_not_answer_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "s.toml").write_text("[matrix]\nwbits = 4\n")
    out = tmp_path / "out"
    assert main(["regress", str(tmp_path / "s.toml"), "--out", str(out), "--scheduler",
                 "tcp://127.0.0.1:9", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cannot connect" in err[-1] and len(err) == 2  # the plan, then the error
    assert not out.exists()


def test_report_takes_the_same_scheduler_option():
    import argparse

    import report

    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    cfg = report.config_from_args(parser.parse_args(
        ["--out", "x", "--scheduler", "tcp://10.0.0.1:8786", "--workers", "3"]))
    assert (cfg.scheduler, cfg.workers) == ("tcp://10.0.0.1:8786", 3)
    assert report.config_from_args(parser.parse_args(["--out", "x"])).scheduler is None


def record(job, status, reason=None):
    rec = {"key": job.key, "name": job.name, "job": job.as_dict(), "status": status,
           "reason": reason, "report": None, "seconds": 1.5, "files": []}
    if status == "pass":
        rec["report"] = {"bit_exact_images": 2, "images": 2, "cycles_per_inference": 3000.0,
                         "mac_utilization": {"overall": 0.5}}
    return rec


def test_junit_parses_back_with_one_case_per_job():
    jobs = [regress.Job(wbits=w) for w in (2, 3, 4, 5, 6)]
    results = [regress.JobResult(jobs[0], record(jobs[0], "pass")),
               regress.JobResult(jobs[1], record(jobs[1], "fail", "image 0: first mismatch")),
               regress.JobResult(jobs[2], record(jobs[2], "timeout", "timed out after 5 s")),
               regress.JobResult(jobs[3], record(jobs[3], "died", "the worker died")),
               regress.JobResult(jobs[4], None)]
    suite = ET.fromstring(regress.junit_xml(results))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("5", "1", "2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == [j.name for j in jobs]
    assert list(cases[jobs[0].name]) == []
    assert cases[jobs[1].name].find("failure").get("message") == "image 0: first mismatch"
    assert cases[jobs[2].name].find("error").get("type") == "timeout"
    assert cases[jobs[3].name].find("error").get("type") == "died"
    assert cases[jobs[4].name].find("skipped") is not None


def test_summary_table_shows_each_job_and_the_failures():
    a, b = regress.Job(wbits=2), regress.Job(wbits=3)
    text = regress.summary_table([regress.JobResult(a, record(a, "pass")),
                                  regress.JobResult(b, record(b, "fail", "layer 2 differs"))])
    assert a.name in text and "2/2" in text and "3000" in text and "50.0%" in text
    assert "1/2 jobs bit-exact" in text and f"{b.name}: fail: layer 2 differs" in text


def test_pending_skips_done_jobs_and_reruns_failed_ones_on_request():
    a, b, c = regress.Job(wbits=2), regress.Job(wbits=3), regress.Job(wbits=4)
    done = {a.key: record(a, "pass"), b.key: record(b, "timeout")}
    assert regress.pending([a, b, c], done) == [c]
    assert regress.pending([a, b, c], done, rerun_failed=True) == [b, c]
    assert regress.pending([a, b, c], {}) == [a, b, c]


def test_a_torn_last_line_is_ignored(tmp_path):
    a, b = regress.Job(wbits=2), regress.Job(wbits=3)
    text = (json.dumps(record(a, "fail")) + "\n" + json.dumps(record(a, "pass")) + "\n"
            + json.dumps(record(b, "pass"))[:40])
    (tmp_path / regress.RESULTS).write_text(text)
    got = regress.read_results(tmp_path)
    assert list(got) == [a.key] and got[a.key]["status"] == "pass"  # the last line wins


# -- real runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster(require_sim_module, tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1;
    yields the scheduler's address."""
    require_sim_module("verilator")
    folder = tmp_path_factory.mktemp("dask")
    sfile = folder / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    procs = []

    def start(*args, log):
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=ROOT, env=env,
                                      stdout=open(folder / log, "wb"), stderr=subprocess.STDOUT))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(sfile), log="scheduler.log")
        for i in range(2):
            start("worker", "--scheduler-file", str(sfile), "--host", "127.0.0.1",
                  "--nthreads", "1", "--no-dashboard", "--memory-limit", "0",
                  "--name", f"w{i}", log=f"worker{i}.log")
        deadline = time.monotonic() + 60
        while not sfile.exists():
            assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(sfile.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        wait_for_workers(address, 2)
        yield address
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_for_workers(address, n):
    from distributed import Client

    with Client(address, timeout=30) as c:
        c.wait_for_workers(n, timeout=60)


@pytest.mark.sim
def test_spec_on_a_dask_scheduler_then_resume(dask_cluster, spec, capsys):
    out = spec.parent / "out"
    assert main(["regress", str(spec), "--out", str(out), "--scheduler", dask_cluster,
                 "--quiet"]) == 0
    recs = [json.loads(line) for line in lines(out)]
    assert len(recs) == 2 and {r["status"] for r in recs} == {"pass"}
    for r in recs:
        rep = r["report"]
        assert rep["bit_exact_images"] == rep["images"] == 1 and rep["mismatches"] == []
        assert (rep["rows"], rep["cols"], rep["sim"]) == (4, 4, "verilator")
        assert r["worker"].startswith("tcp://127.0.0.1:")
    assert sorted(r["job"]["mem_stall"] for r in recs) == [0, 20]
    suite = ET.parse(out / regress.JUNIT).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert "2/2 jobs bit-exact" in capsys.readouterr().out

    # The same SPEC into the same OUT runs nothing again.
    assert main(["regress", str(spec), "--out", str(out), "--scheduler", dask_cluster,
                 "--quiet"]) == 0
    assert len(lines(out)) == 2
    assert "2 of 2 jobs already have results" in capsys.readouterr().err


@pytest.mark.sim
def test_mismatch_report_and_waves_come_back(dask_cluster, require_sim, tmp_path):
    require_sim("icarus")
    good, images = image_job(tmp_path)
    # On Icarus: its waveform needs no second (tracing) build.
    bad = small_job(image_sha256=good.image_sha256, image_name=good.image_name,
                    sim="icarus", fault="corrupt")
    out = tmp_path / "out"
    results, interrupted = regress.run_jobs([good, bad], out, images=images,
                                            scheduler=dask_cluster, progress=False)
    assert not interrupted
    assert [r.status for r in results] == ["pass", "fail"]
    rec = results[1].record
    first = rec["report"]["mismatches"][0]
    assert (first["layer"], first["name"], first["channel"]) == (2, "conv2", 0)
    folder = out / regress.FAILURES / bad.name
    assert "first mismatch at layer 2 (conv2), channel 0" in (folder / "mismatch.txt").read_text()
    assert (folder / "job.log").stat().st_size > 0
    waves = folder / Path(first["waves"]).name
    assert waves.suffix == ".fst" and waves.stat().st_size > 0
    assert not (out / regress.FAILURES / good.name).exists()
    suite = ET.parse(out / regress.JUNIT).getroot()
    assert suite.get("failures") == "1"
    assert "conv2" in suite.find("testcase/failure").get("message")


@pytest.mark.sim
def test_a_killed_worker_fails_its_job_and_the_others_go_on(dask_cluster, tmp_path):
    good, images = image_job(tmp_path)
    doomed = small_job(sim="verilator", fault="kill-worker", seed=5)
    out = tmp_path / "out"
    try:
        results, _ = regress.run_jobs([doomed, good], out, images=images,
                                      scheduler=dask_cluster, progress=False)
    finally:
        wait_for_workers(dask_cluster, 2)  # the nanny restarts the killed worker
    assert [r.status for r in results] == ["died", "pass"]
    assert "died" in results[0].record["reason"]
    suite = ET.parse(out / regress.JUNIT).getroot()
    assert suite.get("errors") == "1" and suite.find("testcase/error").get("type") == "died"


@pytest.mark.sim
def test_timeout_on_the_local_cluster_kills_only_that_job(require_sim, tmp_path):
    require_sim("verilator")
    good, images = image_job(tmp_path)
    stuck = small_job(sim="verilator", fault="hang", seed=6)
    out = tmp_path / "out"
    t = time.monotonic()
    results, _ = regress.run_jobs([stuck, good], out, images=images, timeout=30, workers=2,
                                  progress=False)
    assert time.monotonic() - t < 200
    assert [r.status for r in results] == ["timeout", "pass"]
    rec = results[0].record
    assert rec["reason"] == "timed out after 30 s"
    log = (out / regress.FAILURES / stuck.name / "job.log").read_text()
    assert "hanging (fault injection)" in log
    # The job's process group is gone: nothing of it still runs.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(Path(rec["log"]).parent) not in ps


# Python's own SIGINT handler, whatever the test runner's process inherited (a background
# job starts with SIGINT ignored).
CTRL_C_SCRIPT = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from cosim import regress
jobs = [regress.Job.from_dict(d) for d in {jobs!r}]
results, interrupted = regress.run_jobs(jobs, {out!r}, scheduler={address!r}, progress=False)
sys.exit(130 if interrupted else 0)
"""


@pytest.mark.sim
def test_ctrl_c_cancels_the_running_jobs_and_leaves_out_consistent(dask_cluster, tmp_path):
    import signal

    jobs = [small_job(sim="verilator", fault="hang", seed=s) for s in (7, 8)]
    out = tmp_path / "out"
    script = CTRL_C_SCRIPT.format(jobs=[j.as_dict() for j in jobs], out=str(out),
                                  address=dask_cluster)
    err = tmp_path / "stderr.txt"
    p = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=open(err, "wb"),
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                             [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])))
    logs = [regress._sim_build() / "regress" / j.key / "job.log" for j in jobs]
    for f in logs:
        f.unlink(missing_ok=True)  # an earlier run's log would say "hanging" too soon
    try:
        deadline = time.monotonic() + 90
        while not all(f.exists() and "hanging" in f.read_text() for f in logs):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 130, err.read_text()
    finally:
        if p.poll() is None:
            p.kill()
    suite = ET.parse(out / regress.JUNIT).getroot()
    assert (suite.get("tests"), suite.get("skipped")) == ("2", "2")
    assert not (out / regress.RESULTS).exists()  # nothing finished, nothing half-written
    # The workers stop the cancelled jobs' processes.
    deadline = time.monotonic() + 30
    while any(str(f.parent) in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                              text=True).stdout for f in logs):
        assert time.monotonic() < deadline, "a cancelled job is still running"
        time.sleep(1.0)


def test_the_example_spec_is_valid():
    matrix, chip, ranges, images = regress.load_spec(ROOT / "docs" / "regress" / "nightly.toml")
    assert len(regress.matrix_jobs(matrix, chip, images)) == 3 * 3 * 2 * 2
    jobs = regress.random_jobs(20, 7, matrix, chip, ranges, images)
    assert {j.model for j in jobs} <= {"cnn", "mlp", "resnet"} and len(jobs) == 20
