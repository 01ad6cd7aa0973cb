"""Time of ``pact flow`` after the hardware build (target: < 60 s for 100 images on Verilator).

    python bench/flow_time.py [--wbits 4 --abits 4] [--images 100] [--sim verilator]
                              [--json OUT]

Runs the flow twice: a first run trains or reuses the model and generates and builds the
hardware (whatever is not cached yet); the second run, with everything cached, is the one
timed: model image reuse, chip reuse, compile, the integer reference, simulation of every image
and the ``==`` check of every layer. Reports both, the per-stage times of the timed run, and
whether every image was bit-exact. Exit code 1 if not bit-exact or over the target.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim.flow import FlowConfig, flow  # noqa: E402

TARGET_S = 60.0


def timed(cfg):
    t = time.perf_counter()
    report = flow(cfg, log=lambda msg: None)
    return report, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cfg = FlowConfig(wbits=args.wbits, abits=args.abits, sim=args.sim, images=args.images,
                     model=args.model, progress=False)
    first, first_s = timed(cfg)
    second, second_s = timed(cfg)
    exact = second["bit_exact_images"] == second["images"]
    out = {
        "images": args.images, "sim": args.sim, "wbits": args.wbits, "abits": args.abits,
        "first_run_s": round(first_s, 2), "first_run_stages": first["times"],
        "after_build_s": round(second_s, 2), "after_build_stages": second["times"],
        "bit_exact": exact, "target_s": TARGET_S,
        "cycles_per_inference": second["cycles_per_inference"],
        "sim_cycles_per_second": second["sim_cycles_per_second"],
    }
    print(f"pact flow, {args.images} images on {args.sim}: first run {first_s:.1f} s "
          f"(train/generate/build as needed), after the build {second_s:.1f} s "
          f"(target < {TARGET_S:.0f} s), bit-exact {second['bit_exact_images']}/"
          f"{second['images']}")
    print("  stages: " + "  ".join(f"{k} {v}" for k, v in second["times"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0 if exact and second_s < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
