"""``pact golden``: run the integer reference on the test set, and check it against the model.

Accuracy is the integer reference's top-1 accuracy. When the run's checkpoint is available
(``checkpoint.pt`` next to the image, or ``--run DIR``) the fake-quant PyTorch model is run in
eval mode on the same quantized inputs, and the two are compared:

- ``prediction_agreement``: fraction of test images with the same top-1 class;
- ``code_mismatch_fraction``: fraction of activation codes (all PACT layers) that differ;
- ``max_code_diff``: the largest ``|difference|`` of any activation code, in LSB.

Both models run end to end, so a 1-LSB difference early on is carried into later layers. Per
layer, ``local_mismatches``/``local_max_code_diff`` also compare each layer alone, both sides
fed the reference's input codes: that isolates the fixed-point requantization, and
``local_max_code_diff`` (the maximum over layers) is at most 1 for any sound export.

The integer path rounds with fixed-point constants (16-bit multipliers), the float path with
float32: codes may differ by 1 LSB where a value falls within rounding noise of a half. Targets:
agreement >= 99.5%, mismatches <= 1% of codes, max difference <= 1 LSB. The end-to-end max
difference holds for the 3-conv CNN; deeper networks can carry a 1-LSB difference further (the
digits resnet, six PACT layers with two residual adds, while every layer stays within 1 LSB
locally; ``bench/accuracy.py`` measures both), so there the local figure is the one that tells a
sound export.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as data_mod
from .errors import UserError
from .image import ModelImage, load
from .models import PactNet
from .paths import check_output, write_file
from .reference import quantize_input, run_batch
from .shapes import address_skip
from .train import CHECKPOINT, build_from_checkpoint, load_checkpoint, state_fingerprint

__all__ = [
    "TARGETS",
    "evaluate",
    "agreement",
    "local_code_diffs",
    "fake_quant_trace",
    "targets_met",
    "add_arguments",
    "run",
]

#: Acceptance limits of the integer reference against the fake-quant model.
TARGETS = {"prediction_agreement": 0.995, "code_mismatch_fraction": 0.01, "max_code_diff": 1}


def _checkpoint_for(image: ModelImage, image_path: str | os.PathLike[str],
                    run_dir: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The run's checkpoint, verified to be the one the image was exported from, or None."""
    if run_dir is None:
        run_dir = Path(image_path).parent
        if not (run_dir / CHECKPOINT).is_file():
            return None
    ckpt = load_checkpoint(run_dir)
    want = image.meta.get("checkpoint_fingerprint")
    if state_fingerprint(ckpt["state_dict"]) != want:
        raise UserError(f"{Path(run_dir) / CHECKPOINT} is not the checkpoint this image was "
                        "exported from; re-export the image with 'pact export'")
    return ckpt


@torch.no_grad()
def fake_quant_trace(net: PactNet, x_codes: np.ndarray, input_bits: int,
                     batch: int = 1024) -> tuple[list[np.ndarray], np.ndarray]:
    """Activation codes (int64, one array per PACT layer) and float logits of the fake-quant
    model on integer input codes, in eval mode."""
    net.eval()
    scale = (1 << input_bits) - 1
    codes: list[np.ndarray] | None = None
    logits: list[np.ndarray] = []
    for i in range(0, len(x_codes), batch):
        x = torch.as_tensor((x_codes[i:i + batch] / scale).astype(np.float32))
        layer_codes, y = net.trace_codes(x)
        part = [c.numpy().astype(np.int64) for c in layer_codes]
        codes = part if codes is None else [np.concatenate(p) for p in zip(codes, part,
                                                                            strict=True)]
        logits.append(y.numpy())
    logits_all = np.concatenate(logits)  # raises on an empty batch, as codes would be None
    return ([] if codes is None else codes), logits_all


@torch.no_grad()
def local_code_diffs(net: PactNet, int_outputs: Sequence[np.ndarray], x_codes: np.ndarray,
                     input_bits: int, batch: int = 1024) -> list[tuple[int, int]]:
    """Per hidden layer, ``(mismatches, max |diff|)`` of the fake-quant layer's codes against the
    reference when both start from the *reference's* input codes.

    This isolates the requantization of each layer (fixed point against float) from errors
    that an earlier 1-LSB difference carries forward, which the end-to-end figures include.
    """
    net.eval()
    results: list[tuple[int, int]] = []
    scale = (1 << input_bits) - 1

    def passed_on(layer: int, j: int) -> torch.Tensor:
        # exactly what a PACT passes on: code * alpha / (2^k - 1), of the reference's codes
        act = net.blocks[layer].act
        assert act is not None and act.bits is not None  # a hidden layer of a quantized net
        codes = torch.as_tensor(int_outputs[layer][j:j + batch].astype(np.float32))
        return codes * act.alpha.detach() / ((1 << act.bits) - 1)

    for i, block in enumerate(net.blocks):
        act = block.act
        if act is None:
            break
        bad, worst = 0, 0
        skip = block.spec.get("skip")
        for j in range(0, len(x_codes), batch):
            if i == 0:
                x = torch.as_tensor((x_codes[j:j + batch] / scale).astype(np.float32))
            else:
                x = passed_on(i - 1, j)
            y = block.pre_activation(x)
            if skip is not None:
                y = y + address_skip(block.spec, passed_on(skip, j))
            fq = block.pool(act.codes(y)).numpy().astype(np.int64)
            diff = np.abs(fq - int_outputs[i][j:j + batch])
            bad += int(np.count_nonzero(diff))
            worst = max(worst, int(diff.max()) if diff.size else 0)
        results.append((bad, worst))
    return results


def agreement(int_outputs: Sequence[np.ndarray], fq_codes: Sequence[np.ndarray],
              fq_logits: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Agreement figures between integer reference outputs and fake-quant codes and logits.

    ``int_outputs`` is ``run_batch``'s list (hidden layers then logits); ``fq_codes`` one array
    per hidden layer; ``fq_logits`` the float logits.
    """
    per_layer: list[dict[str, Any]] = []
    mismatches, elements, worst = 0, 0, 0
    for name, ref, fq in zip(names, int_outputs[:-1], fq_codes, strict=True):
        if ref.shape != fq.shape:
            raise ValueError(f"layer {name}: reference shape {ref.shape} != model {fq.shape}")
        diff = np.abs(ref - fq)
        bad = int(np.count_nonzero(diff))
        layer_max = int(diff.max()) if diff.size else 0
        per_layer.append({"layer": name, "elements": int(diff.size), "mismatches": bad,
                          "mismatch_fraction": bad / max(1, diff.size),
                          "max_code_diff": layer_max})
        mismatches += bad
        elements += diff.size
        worst = max(worst, layer_max)
    same = np.argmax(int_outputs[-1], axis=1) == np.argmax(fq_logits, axis=1)
    return {
        "prediction_agreement": float(np.mean(same)) if len(same) else 1.0,
        "code_mismatch_fraction": mismatches / max(1, elements),
        "max_code_diff": worst,
        "layers": per_layer,
    }


def targets_met(figures: Mapping[str, Any]) -> dict[str, bool]:
    """``{figure: bool}`` for each acceptance target present in ``figures``."""
    met = {}
    if "prediction_agreement" in figures:
        met["prediction_agreement"] = (figures["prediction_agreement"]
                                       >= TARGETS["prediction_agreement"])
        met["code_mismatch_fraction"] = (figures["code_mismatch_fraction"]
                                         <= TARGETS["code_mismatch_fraction"])
        met["max_code_diff"] = figures["max_code_diff"] <= TARGETS["max_code_diff"]
    return met


def evaluate(image_path: str | os.PathLike[str], *, run_dir: str | os.PathLike[str] | None = None,
             data: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Integer reference accuracy (and agreement with the fake-quant model when its checkpoint
    is found) on the test set; returns the result dict that ``pact golden --json`` writes."""
    image_path = Path(image_path)
    image = load(image_path)
    spec = data or image.meta.get("dataset")
    if spec is None:
        raise UserError("the image does not name its data set; pass --data")
    dataset = data_mod.load(spec)
    if tuple(dataset.input_shape) != tuple(image.input_shape):
        raise UserError(f"data set {spec} has {dataset.input_shape} images, the image expects "
                        f"{tuple(image.input_shape)}")
    x, y = dataset.x_test, dataset.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x_codes = quantize_input(x, image.input_bits)

    start = time.perf_counter()
    outputs = run_batch(image, x_codes)
    seconds = time.perf_counter() - start
    predictions = np.argmax(outputs[-1], axis=1)
    result = {
        "image": str(image_path),
        "content_hash": image.meta.get("content_hash"),
        "dataset": spec,
        "images": int(len(y)),
        "accuracy": float(np.mean(predictions == y)) if len(y) else 0.0,
        "reference_seconds": round(seconds, 4),
        "logit_max_abs": int(np.abs(outputs[-1]).max()) if len(y) else 0,
        "checkpoint": None,
    }
    ckpt = _checkpoint_for(image, image_path, run_dir)
    if ckpt is not None:
        net = build_from_checkpoint(ckpt)
        fq_codes, fq_logits = fake_quant_trace(net, x_codes, image.input_bits)
        names = [layer.name for layer in image.layers[:-1]]
        figures = agreement(outputs, fq_codes, fq_logits, names)
        local = local_code_diffs(net, outputs, x_codes, image.input_bits)
        for entry, (bad, worst) in zip(figures["layers"], local, strict=True):
            entry["local_mismatches"] = bad
            entry["local_max_code_diff"] = worst
        figures["local_max_code_diff"] = max((w for _, w in local), default=0)
        result.update(figures)
        result["fake_quant_accuracy"] = float(np.mean(np.argmax(fq_logits, axis=1) == y))
        result["checkpoint"] = str(Path(run_dir or image_path.parent) / CHECKPOINT)
        result["targets"] = TARGETS
        result["targets_met"] = targets_met(figures)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, metavar="IMAGE", help="a model image (pact export)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--run", type=Path, metavar="DIR", dest="run_dir",
                        help="run directory with the checkpoint (default: the image's folder)")
    parser.add_argument("--data", help="override the data set named in the image")
    parser.add_argument("--limit", type=int, help="use only the first N test images")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless every agreement target is met")


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be positive, not {args.limit}")
    if args.json is not None:
        check_output(args.json, "--json")
    if args.check and args.run_dir is None and not (args.image.parent / CHECKPOINT).is_file():
        raise UserError("--check needs the run's checkpoint: pass --run DIR")
    result = evaluate(args.image, run_dir=args.run_dir, data=args.data, limit=args.limit)
    print(f"integer reference: accuracy {100 * result['accuracy']:.2f}% on {result['images']} "
          f"images of {result['dataset']} ({result['reference_seconds']:.2f} s)")
    if result["checkpoint"] is not None:
        print(f"vs fake-quant model ({100 * result['fake_quant_accuracy']:.2f}%): "
              f"predictions agree {100 * result['prediction_agreement']:.2f}%, "
              f"codes differ {100 * result['code_mismatch_fraction']:.3f}%, "
              f"max diff {result['max_code_diff']} LSB")
    else:
        print("no checkpoint next to the image: agreement not measured (pass --run DIR)")
    if args.json is not None:
        write_file(args.json, json.dumps(result, indent=2, sort_keys=True) + "\n")
    if args.check and not all(result["targets_met"].values()):
        failed = [k for k, ok in result["targets_met"].items() if not ok]
        print(f"targets missed: {', '.join(failed)}")
        return 1
    return 0
