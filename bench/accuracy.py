"""Accuracy of PACT on the default data: k = 2, 3, 4, 5, 8 bits and the float baseline.

For each bit-width ``k`` (weights and activations k bits, first/last layer ``--end-bits``) and
for the float baseline, trains ``--seeds`` seeds, then exports each quantized run and runs the
integer reference on the test set (accuracy, agreement with the fake-quant model, time).
Writes ``OUT/accuracy.json`` (every run) and ``OUT/accuracy.md`` (the table: mean and spread).
Runs are cached under ``--runs`` by configuration, so a re-run only trains what is missing.

    python bench/accuracy.py                      # the full table (about 18 trainings)
    python bench/accuracy.py --bits 4 --seeds 1   # one quick point
    python bench/accuracy.py --model lenet --bits 4 --epochs 15   # LeNet-5 on mnist5k

``--data`` defaults to the model's stand-in (``golden.data.stand_in``: digits for the CNN,
mnist5k for LeNet); models other than the CNN write ``accuracy_<model>.json``/``.md`` so the
CNN's table stays.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from golden.data import stand_in
from golden.evaluate import evaluate
from golden.export import export
from golden.train import METRICS, TrainConfig, train


def _stats(values):
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "values": [float(v) for v in a],
    }


def measure(config, runs_root):
    """Train (or reuse) one configuration; export and evaluate it when it is quantized."""
    out = train(config, reuse=True, progress=False, runs_root=runs_root)
    metrics = json.loads((out / METRICS).read_text())
    row = {
        "k": None if config.is_float else config.wbits,
        "seed": config.seed,
        "run": str(out),
        "fake_quant_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "alpha": metrics["alpha"],
    }
    if not config.is_float:
        image = export(out)
        golden = evaluate(image, run_dir=out)
        row.update({
            "integer_accuracy": golden["accuracy"],
            "prediction_agreement": golden["prediction_agreement"],
            "code_mismatch_fraction": golden["code_mismatch_fraction"],
            "max_code_diff": golden["max_code_diff"],
            "local_max_code_diff": golden["local_max_code_diff"],
            "reference_seconds": golden["reference_seconds"],
            "test_images": golden["images"],
        })
    return row


def summarize(rows):
    """Per-k aggregates, and each k's gap to the float baseline (mean of seeds, in points)."""
    by_k = {}
    for row in rows:
        by_k.setdefault(row["k"], []).append(row)
    summary = {}
    for k, group in by_k.items():
        s = {"seeds": len(group),
             "fake_quant_accuracy": _stats([r["fake_quant_accuracy"] for r in group]),
             "train_seconds": _stats([r["train_seconds"] for r in group])}
        if k is not None:
            for name in ("integer_accuracy", "prediction_agreement", "code_mismatch_fraction",
                         "max_code_diff", "local_max_code_diff", "reference_seconds"):
                s[name] = _stats([r[name] for r in group])
        summary["float" if k is None else str(k)] = s
    if "float" in summary:
        base = summary["float"]["fake_quant_accuracy"]["mean"]
        for key, s in summary.items():
            if key != "float":
                s["gap_points"] = 100 * (base - s["integer_accuracy"]["mean"])
    return summary


def markdown(summary, args):
    def pct(stat):
        return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"

    lines = [
        f"{args.model} on {args.data}, {args.seeds} seeds (mean ± sample std, %), "
        f"{args.epochs} epochs, first/last layer {args.end_bits}-bit. "
        "Gap: float mean minus integer mean, points.",
        "",
        "| k (w = a) | fake-quant acc | integer ref acc | gap to float | pred. agreement (min) "
        "| code mismatch (max) | max diff | train s (mean) | ref s (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted((k for k in summary if k != "float"), key=int)
    for key in keys:
        s = summary[key]
        lines.append(
            f"| {key} | {pct(s['fake_quant_accuracy'])} | {pct(s['integer_accuracy'])} | "
            f"{s.get('gap_points', float('nan')):+.2f} | "
            f"{100 * s['prediction_agreement']['min']:.2f}% | "
            f"{100 * s['code_mismatch_fraction']['max']:.3f}% | "
            f"{int(s['max_code_diff']['max'])} | {s['train_seconds']['mean']:.1f} | "
            f"{s['reference_seconds']['mean']:.3f} |")
    if "float" in summary:
        s = summary["float"]
        lines.append(f"| float | {pct(s['fake_quant_accuracy'])} | - | - | - | - | - | "
                     f"{s['train_seconds']['mean']:.1f} | - |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="2,3,4,5,8", help="comma-separated k values")
    parser.add_argument("--no-float", action="store_true", help="skip the float baseline")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--end-bits", type=int, default=defaults.end_bits)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--data", help="data set spec (default: the model's stand-in)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",") if b]
    if args.data is None:
        args.data = stand_in(args.model)
    configs = [TrainConfig(wbits=k, abits=k, end_bits=args.end_bits, model=args.model,
                           data=args.data, epochs=args.epochs, seed=s)
               for k in bits for s in range(args.seeds)]
    if not args.no_float:
        configs += [TrainConfig(wbits=None, abits=None, model=args.model, data=args.data,
                                epochs=args.epochs, seed=s) for s in range(args.seeds)]
    rows, start = [], time.perf_counter()
    for i, config in enumerate(configs):
        row = measure(config, args.runs)
        rows.append(row)
        name = "float" if row["k"] is None else f"k={row['k']}"
        extra = ("" if row["k"] is None else
                 f" integer {100 * row['integer_accuracy']:.2f}%"
                 f" agree {100 * row['prediction_agreement']:.2f}%")
        print(f"[{i + 1}/{len(configs)}] {name} seed {row['seed']}: "
              f"{100 * row['fake_quant_accuracy']:.2f}%{extra} ({row['train_seconds']:.1f} s)",
              flush=True)
    summary = summarize(rows)
    result = {
        "summary": summary,
        "runs": rows,
        "settings": {"bits": bits, "seeds": args.seeds, "epochs": args.epochs,
                     "end_bits": args.end_bits, "model": args.model, "data": args.data,
                     "threads": defaults.threads},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine()},
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "accuracy" if args.model == "cnn" else f"accuracy_{args.model}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    table = markdown(summary, args)
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
