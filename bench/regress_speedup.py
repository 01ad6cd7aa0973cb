"""``pact regress`` on the local cluster against the same jobs one after another (targets: at
most 0.6x the time; under 2 s of overhead per job over ``pact flow`` run directly).

    python bench/regress_speedup.py [--images 100] [--json bench/results/regress_speedup.json]

The SPEC: the digits CNN at w4a4 on the 8x8 chip, Verilator, 4 memory stall rates x 4 memory
latencies = 16 jobs (one training run, one chip, one build: the bench times the jobs, not the
caches, so a first pass warms them). Then, each from cold OUT folders:

1. ``sequential``: the 16 ``pact flow`` commands, one after another (each its own process,
   as a user would run them);
2. ``regress``: ``pact regress SPEC`` on the default local cluster (one worker per core);
3. ``regress_1``: ``pact regress SPEC --workers 1``: the same jobs one after another through
   the engine; ``(regress_1 - sequential) / 16`` is the engine's overhead per job (cluster
   start-up included).

The machine is shared: the load average before and after each pass is recorded with the times.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
[matrix]
model = "cnn"
wbits = 4
abits = 4
rows = 8
cols = 8
sim = "verilator"
images = {images}
mem_stall = [0, 10, 25, 50]
mem_latency = [1, 2, 3, 4]
"""


def pact(*args, quiet=True):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pact", *args], cwd=ROOT, env=env,
                       capture_output=quiet, text=True)
    return p.returncode, time.perf_counter() - t


def load():
    return round(os.getloadavg()[0], 2)


def timed_pass(name, fn):
    before = load()
    code, seconds = fn()
    entry = {"seconds": round(seconds, 2), "exit": code, "load_before": before,
             "load_after": load()}
    print(f"{name}: {seconds:.1f} s (exit {code}, load {before} -> {entry['load_after']})",
          flush=True)
    return entry


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="regress-bench-"))
    try:
        spec = tmp / "spec.toml"
        spec.write_text(SPEC.format(images=args.images))
        stalls, latencies = (0, 10, 25, 50), (1, 2, 3, 4)
        jobs = [(s, lat) for s in stalls for lat in latencies]
        # Warm the caches (training run, chip, build) once.
        warm = timed_pass("warm-up (one job: train/generate/build as needed)", lambda: pact(
            "flow", "--wbits", "4", "--abits", "4", "--images", "1", "--quiet", "--json",
            str(tmp / "warm.json")))

        def sequential():
            t = time.perf_counter()
            codes = [pact("flow", "--wbits", "4", "--abits", "4", "--sim", "verilator",
                          "--images", str(args.images), "--mem-stall", str(s),
                          "--mem-latency", str(lat), "--quiet", "--json",
                          str(tmp / f"flow-{s}-{lat}.json"))[0] for s, lat in jobs]
            return max(codes), time.perf_counter() - t

        seq = timed_pass("sequential pact flow x16", sequential)
        par = timed_pass("pact regress (local cluster)", lambda: pact(
            "regress", str(spec), "--out", str(tmp / "out"), "--quiet"))
        one = timed_pass("pact regress --workers 1", lambda: pact(
            "regress", str(spec), "--out", str(tmp / "out1"), "--workers", "1", "--quiet"))
        recs = [json.loads(x) for x in (tmp / "out" / "results.jsonl").read_text().splitlines()]
        exact = sum(r["status"] == "pass" for r in recs)
        job_s = sorted(r["seconds"] for r in recs)
        out = {
            "jobs": len(jobs), "images": args.images, "cpus": os.cpu_count(),
            "warm_up": warm, "sequential": seq, "regress": par, "regress_1_worker": one,
            "ratio_regress_to_sequential": round(par["seconds"] / seq["seconds"], 3),
            "overhead_per_job_s": round((one["seconds"] - seq["seconds"]) / len(jobs), 2),
            "flow_per_job_s": round(seq["seconds"] / len(jobs), 2),
            "regress_job_seconds_median": job_s[len(job_s) // 2],
            "bit_exact_jobs": exact,
            "targets": {"ratio": 0.6, "overhead_per_job_s": 2.0},
        }
        print(f"ratio regress/sequential {out['ratio_regress_to_sequential']} (target <= 0.6), "
              f"overhead per job {out['overhead_per_job_s']} s (target < 2), "
              f"{exact}/{len(jobs)} jobs bit-exact")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        return 0 if exact == len(jobs) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
