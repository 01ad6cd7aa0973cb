"""The ``accuracy`` section: float and k-bit training runs (cached), integer accuracy."""

import json
import math
import time
from pathlib import Path

from report.config import END_BITS, _log_default


def _stats(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values),
            "values": list(values), "seeds": n}


def accuracy_section(cfg, log=_log_default):
    """Train (or reuse) float and each trainable k for ``cfg.seeds`` seeds; integer accuracy
    for quantized runs (the integer reference on the test set), fake-quant for float."""
    from golden.evaluate import evaluate
    from golden.export import export
    from golden.train import METRICS, TrainConfig, train

    keys = [None] + cfg.accuracy_bits
    out = {}
    for k in keys:
        acc, fq, secs = [], [], []
        for seed in range(cfg.seeds):
            tc = TrainConfig(wbits=k, abits=k, end_bits=END_BITS, epochs=cfg.epochs, seed=seed)
            t = time.perf_counter()
            run_dir = train(tc, reuse=True, progress=False, runs_root=cfg.runs)
            metrics = json.loads((Path(run_dir) / METRICS).read_text())
            fq.append(float(metrics["test_accuracy"]))
            secs.append(float(metrics.get("train_seconds", time.perf_counter() - t)))
            if k is None:
                acc.append(fq[-1])
            else:
                acc.append(float(evaluate(export(run_dir), run_dir=run_dir)["accuracy"]))
            log(f"accuracy {'float' if k is None else f'k={k}'} seed {seed}: "
                f"{100 * acc[-1]:.2f}%")
        entry = _stats(acc)
        entry.update(fake_quant=_stats(fq), train_seconds=_stats(secs),
                     source="fake-quant float model" if k is None
                     else "integer reference (golden/reference.py) on the test set")
        out["float" if k is None else str(k)] = entry
    if "float" in out:
        base = out["float"]["mean"]
        for e in out.values():
            e["gap_to_float_points"] = 100 * (base - e["mean"])
    return out
