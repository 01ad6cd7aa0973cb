"""The ``accuracy`` section: float and k-bit training runs (cached), integer accuracy."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from report.config import END_BITS, Log, ReportConfig, _log_default


def _stats(values: Sequence[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values),
            "values": list(values), "seeds": n}


def accuracy_section(cfg: ReportConfig, log: Log = _log_default) -> dict[str, dict[str, Any]]:
    """Train (or reuse) float and each trainable k for ``cfg.seeds`` seeds; integer accuracy
    for quantized runs (the integer reference on the test set), fake-quant for float."""
    from golden.evaluate import evaluate
    from golden.export import export
    from golden.train import METRICS, TrainConfig, train

    keys: list[int | None] = [None, *cfg.accuracy_bits]
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        acc: list[float] = []
        fq: list[float] = []
        secs: list[float] = []
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
