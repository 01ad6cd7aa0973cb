"""The paper's networks on the tiled chip, measured with ``pact flow`` (issue 8's targets).

    python bench/paper_networks.py [--only resnet20,svhn,lenet,lenet_icarus] [--warm]

Runs, each a whole ``pact flow`` (train or reuse on the stand-in data, export, generate the
chip the model needs, compile, build, simulate, compare every layer with ``==``):

- ResNet20 w4a4 on a 16x16 array, 10 images, Verilator;
- the SVHN network w4a4 on 16x16, 4 images, Verilator;
- LeNet w4a4 on 8x8 (real MNIST digits), 20 images on Verilator and 2 on Icarus.

For each: bit-exact images, cycles per inference, MAC utilization per layer and overall in
slice-MACs and in real MACs, the chip's on-chip buffer bytes, the Verilator build time (a
cold build: the run's own build folder is removed first), and the simulation speed. Targets
(ResNet20): every conv layer >= 90% and overall >= 85%; build < 120 s; >= 100k cycles/s;
on-chip buffers <= 32 KiB. The machine's load average is recorded next to the times.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim.flow import FlowConfig, flow  # noqa: E402

RUNS = {
    "resnet20": dict(model="resnet20", rows=16, cols=16, images=10, sim="verilator"),
    "svhn": dict(model="svhn", rows=16, cols=16, images=4, sim="verilator"),
    "lenet": dict(model="lenet", rows=8, cols=8, images=20, sim="verilator"),
    "lenet_icarus": dict(model="lenet", rows=8, cols=8, images=2, sim="icarus"),
}


def measure(name, spec, cold):
    cfg = FlowConfig(wbits=4, abits=4, progress=False, **spec)
    if cold:   # a cold Verilator build: first find the build folder, then remove it
        report = flow(FlowConfig(wbits=4, abits=4, progress=False,
                                 **dict(spec, images=1)), log=lambda m: None)
        shutil.rmtree(report["build_dir"], ignore_errors=True)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    r = flow(cfg, log=lambda m: print(f"  {name}: {m}", file=sys.stderr))
    wall = time.perf_counter() - t
    u = r["mac_utilization"] or {}
    conv = [p for p in u.get("per_layer", []) if p["op"] == "conv"]
    return {
        "model": spec["model"], "array": f"{spec['rows']}x{spec['cols']}", "sim": spec["sim"],
        "images": r["images"], "bit_exact_images": r["bit_exact_images"],
        "cycles_per_inference": r["cycles_per_inference"],
        "utilization_overall": u.get("overall"), "utilization_overall_real": u.get("overall_real"),
        "utilization_conv_min": min((p["utilization"] for p in conv), default=None),
        "utilization_conv_min_real": min((p["utilization_real"] for p in conv), default=None),
        "per_layer": [{k: p[k] for k in ("name", "op", "utilization", "utilization_real")}
                      for p in u.get("per_layer", [])],
        "on_chip_bytes": r.get("on_chip_bytes"),
        "build_s": r["times"].get("build_s"), "simulate_s": r["times"].get("simulate_s"),
        "sim_cycles_per_second": r["sim_cycles_per_second"],
        "hw_accuracy": r["hw_accuracy"], "golden_accuracy": r["golden_accuracy"],
        "wall_s": round(wall, 1), "load_average": round(load, 1),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(RUNS))
    ap.add_argument("--warm", action="store_true", help="reuse existing builds")
    ap.add_argument("--json", default="bench/results/paper_networks.json")
    args = ap.parse_args(argv)
    # --only re-measures some networks and keeps the others' last figures.
    path = Path(args.json)
    out = json.loads(path.read_text()) if path.exists() else {}
    for name in args.only.split(","):
        spec = RUNS[name]
        out[name] = res = measure(name, spec, cold=not args.warm and spec["sim"] == "verilator")
        print(f"{name}: {res['bit_exact_images']}/{res['images']} bit-exact, "
              f"{res['cycles_per_inference']:.0f} cycles, utilization overall "
              f"{res['utilization_overall']:.1%} (real {res['utilization_overall_real']:.1%}), "
              f"worst conv {res['utilization_conv_min']:.1%}, build {res['build_s']:.0f} s, "
              f"{res['sim_cycles_per_second']:,.0f} cycles/s, on chip {res['on_chip_bytes']}, "
              f"load {res['load_average']}")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
