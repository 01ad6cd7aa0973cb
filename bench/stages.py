"""Time each stage of the flow from cold: train, export, generate, compile, build, simulate.

    python bench/stages.py [--wbits 4 --abits 4] [--sims verilator,icarus] [--images 20]
                           [--epochs 40] [--json OUT]

Every stage runs from scratch in a temporary folder (training runs, the chip, the simulator
builds: ``PACT_SIM_BUILD`` points there before ``cosim`` is imported), so nothing cached by an
earlier run hides a cost. Stages:

- ``train``: ``golden.train`` of one digits CNN (w/a bits, seed 0, ``--epochs``);
- ``export``: ``golden.export`` to the integer model image;
- ``reference``: the integer reference on the whole test set (``golden.evaluate``);
- ``generate``: ``pact gen --block chip`` (Amaranth elaboration and Verilog);
- ``compile``: ``gen.compiler.compile_image`` for that chip;
- ``build_<sim>``: the cocotb harness build of the chip (Verilator: verilate + C++ compile);
- ``simulate_<sim>``: ``--images`` test images on the chip, every layer checked ``==``
  (``wall`` includes starting the simulator; ``sim`` is the time the chip ran).

Prints a table and writes the figures as JSON (``--json``). Kept out of the test suite: the
numbers depend on the machine; the README quotes them with this command.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _timed(stages, name, fn):
    t, c = time.perf_counter(), time.process_time()
    result = fn()
    stages[name] = {"wall_s": round(time.perf_counter() - t, 3),
                    "cpu_s": round(time.process_time() - c, 3)}
    print(f"  {name:<20} {stages[name]['wall_s']:8.2f} s", flush=True)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--sims", default="verilator,icarus")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    sims = [s for s in args.sims.split(",") if s]

    with tempfile.TemporaryDirectory(prefix="pact-stages-") as tmp:
        tmp = Path(tmp)
        os.environ["PACT_SIM_BUILD"] = str(tmp / "sim_build")  # cold simulator builds
        import numpy as np

        from cosim import chip_tb
        from cosim.flow import generate_chip, test_images
        from gen import compiler
        from golden import image as image_mod
        from golden.evaluate import evaluate
        from golden.export import export
        from golden.reference import run_batch
        from golden.train import TrainConfig, train

        stages = {}
        print(f"pact stages: w{args.wbits}a{args.abits}, {args.rows}x{args.cols} array, "
              f"{args.images} images, cold caches in {tmp}")
        tc = TrainConfig(wbits=args.wbits, abits=args.abits, epochs=args.epochs, seed=0)
        run_dir = _timed(stages, "train", lambda: train(tc, tmp / "run", progress=False))
        image_path = _timed(stages, "export", lambda: export(run_dir))
        golden = _timed(stages, "reference", lambda: evaluate(image_path, run_dir=run_dir))
        hw_dir = _timed(stages, "generate", lambda: generate_chip(
            {"wbits": args.wbits, "abits": args.abits, "rows": args.rows, "cols": args.cols},
            log=lambda m: None, root=tmp / "chips"))
        image = image_mod.load(image_path)
        hw = compiler.load_hardware(hw_dir)
        program = _timed(stages, "compile", lambda: compiler.compile_image(image, hw))
        xs, _ = test_images(image, args.images)
        expected_b = run_batch(image, np.stack(xs))
        expected = [[e[i] for e in expected_b] for i in range(len(xs))]
        runs = {}
        for sim in sims:
            mem_words = chip_tb.mem_words_for(program.layout["words_used"])
            _timed(stages, f"build_{sim}", lambda s=sim, m=mem_words: chip_tb.build(
                s, hw_dir, mem_words=m))
            run = _timed(stages, f"simulate_{sim}", lambda s=sim: chip_tb.run_chip(
                program, hw_dir, xs, expected, sim=s, work=tmp / f"work-{s}",
                waves_on_mismatch=False))
            cycles = sum(r["cycles"] for r in run.records if r)
            stages[f"simulate_{sim}"].update(
                sim_s=round(run.sim_seconds, 3),
                bit_exact_images=sum(m is None for m in run.per_image),
                cycles=cycles, cycles_per_second=round(cycles / run.sim_seconds))
            runs[sim] = run
        result = {
            "settings": vars(args) | {"json": str(args.json) if args.json else None},
            "stages": stages,
            "golden_accuracy": golden["accuracy"],
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "processor": platform.processor() or platform.machine()},
        }
    exact = all(s.get("bit_exact_images", args.images) == args.images for s in stages.values())
    print(f"  total                {sum(s['wall_s'] for s in stages.values()):8.2f} s"
          + ("" if exact else "   (NOT bit-exact)"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
