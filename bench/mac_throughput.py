"""MAC array throughput in simulation: results and MACs per cycle over a long stream.

    python bench/mac_throughput.py [--sim verilator] [--wbits 4 --abits 4 --rows 8 --cols 8]
                                   [--beats 20000] [--lengths 1,9,64] [--json OUT]

For each reduction length L, streams ``beats`` input beats of random codes (reductions of
exactly L beats, back to back) into the generated MacArray with no input bubbles and a sink
that is always ready, checks every result against golden.integer with ``==``, and reports, in
steady state (first to last accepted beat; first to last result):

- beats per cycle (target 1.0), MACs per cycle (target rows * cols),
- results per cycle (target 1/L: one R x C block of sums every L cycles).

Exit code 1 if any result mismatches or MACs per cycle fall below rows * cols.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim import sim as cosim_sim  # noqa: E402


def measure(sim, wbits, abits, rows, cols, beats, length, seed=1):
    params = cosim_sim.block_params("mac_array", wbits, abits, rows, cols,
                                    max_reduction=max(64, length))
    result, info = cosim_sim.regress(
        "mac_array", sim, params, vectors=max(2, beats // length), seed=seed, bubbles=0.0,
        backpressure=0.0, name=f"throughput-L{length}-b{beats}",
        extra={"random_only": True, "min_len": length, "max_len": length})
    s = result.summary
    return {
        "length": length,
        "beats": s.get("beats"),
        "results": s.get("checked"),
        "mismatches": s.get("mismatches"),
        "beats_per_cycle": s.get("beats_per_cycle"),
        "macs_per_cycle": s.get("macs_per_cycle"),
        "results_per_cycle": s.get("results_per_cycle"),
        "target_macs_per_cycle": rows * cols,
        "target_results_per_cycle": round(1 / length, 6),
        "sim_seconds": round(result.seconds, 2),
        "build_seconds": round(info.seconds, 2),
        "passed": result.passed,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", default="verilator", choices=["icarus", "verilator"])
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--beats", type=int, default=20000)
    ap.add_argument("--lengths", default="1,9,64")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    ok = True
    print(f"MacArray {args.rows}x{args.cols}, w{args.wbits}a{args.abits}, {args.sim}, "
          f"~{args.beats} beats per run, no bubbles, sink always ready")
    print(f"{'L':>4} {'beats':>7} {'results':>8} {'beats/cyc':>10} {'MACs/cyc':>9} "
          f"{'results/cyc':>12} {'target':>8} {'mismatch':>9}")
    for length in (int(x) for x in args.lengths.split(",")):
        r = measure(args.sim, args.wbits, args.abits, args.rows, args.cols, args.beats, length)
        rows.append(r)
        ok &= bool(r["passed"]) and r["macs_per_cycle"] >= r["target_macs_per_cycle"]
        print(f"{length:>4} {r['beats']:>7} {r['results']:>8} {r['beats_per_cycle']:>10.4f} "
              f"{r['macs_per_cycle']:>9.2f} {r['results_per_cycle']:>12.4f} "
              f"{r['target_macs_per_cycle']:>8} {r['mismatches']:>9}")
    if args.json:
        args.json.write_text(json.dumps({"sim": args.sim, "runs": rows}, indent=2) + "\n")
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
