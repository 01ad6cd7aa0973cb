"""``pact train``: quantization-aware training with PACT activations and DoReFa weights.

A run directory holds ``checkpoint.pt`` (weights, the layer description and the configuration)
and ``metrics.json`` (``test_accuracy`` in 0..1, bit-widths, per-layer ``alpha``, ``epochs``,
``seed``, ``train_seconds``, ...). Python callers use :func:`train` with a :class:`TrainConfig`;
:func:`run_key` names a configuration so that ``pact flow`` can reuse a finished run.

Recipe: Adam with a one-cycle learning-rate schedule, cross-entropy plus the PACT penalty
``lambda_alpha * sum(alpha**2)`` (``lambda_alpha`` = the weight decay, which also applies to
conv/fc weights; batch-norm parameters, biases and alphas get none), alphas clamped positive
after every step. The defaults (40 epochs, batch 32, peak lr 0.01, alpha 2.0) reach the float
baseline's accuracy within a point at 2..8 bits on digits; see ``bench/accuracy.py``.

Reproducibility: torch and NumPy are seeded from ``seed`` and the batch order comes from a
seeded generator, so a configuration gives the same weights (and the same image bytes) on the
same machine and thread count. Training uses one thread by default: the network is so small
that more threads only add synchronization, and OpenMP threads that share cores with other
work slow training by an order of magnitude.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.nn import functional as F

from . import data as data_mod
from .errors import UserError
from .models import BITS_RANGE, MODELS, LayerSpec, PactNet, describe
from .paths import check_output, locked
from .paths import runs_root as _runs_root
from .reference import quantize_input

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "IMAGE_NAME",
    "DEFAULT_RUNS",
    "TrainConfig",
    "run_key",
    "is_cached",
    "train",
    "load_checkpoint",
    "network_input",
    "state_fingerprint",
    "add_arguments",
    "run",
]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
#: File name of the exported image inside a run directory (written by ``golden.export``).
IMAGE_NAME = "model.pactimg"
CHECKPOINT_FORMAT = "pact-checkpoint/1"
#: Where runs go when no ``--out`` is given (``runs/<run_key>``).
DEFAULT_RUNS = Path("runs")

_T = TypeVar("_T")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (and so its cache key).

    ``wbits``/``abits`` of ``None`` train the float baseline (ReLU, float weights, float input).
    ``weight_decay`` is also PACT's ``lambda_alpha``. ``subset`` trains on the first ``subset``
    training images only (quick tests). ``threads`` is the number of torch CPU threads.
    """

    wbits: int | None = 4
    abits: int | None = 4
    end_bits: int = 8
    model: str = "cnn"
    data: str = "digits"
    epochs: int = 40
    seed: int = 0
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 5e-4
    alpha_init: float = 2.0
    subset: int | None = None
    threads: int = 1

    @property
    def is_float(self) -> bool:
        return self.wbits is None

    def validate(self) -> None:
        """Raise ``UserError`` naming the first bad parameter."""
        lo, hi = BITS_RANGE
        if (self.wbits is None) != (self.abits is None):
            raise UserError("give both --wbits and --abits, or --float for the baseline")
        for name in ("wbits", "abits", "end_bits"):
            bits = getattr(self, name)
            if self.is_float and name != "end_bits":
                continue
            if not isinstance(bits, int) or not lo <= bits <= hi:
                raise UserError(f"{name} must be in {lo}..{hi}, not {bits!r}")
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; use one of {', '.join(MODELS)}")
        data_mod.parse_spec(self.data)
        for name in ("epochs", "batch_size", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if not self.lr > 0 or not self.alpha_init > 0 or not self.weight_decay >= 0:
            raise UserError("lr and alpha_init must be positive and weight_decay non-negative")
        if self.subset is not None and self.subset < 1:
            raise UserError(f"subset must be positive, not {self.subset!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def run_key(config: TrainConfig) -> str:
    """A directory name that identifies ``config``: readable prefix plus a hash of all fields.

    >>> run_key(TrainConfig(wbits=4, abits=4, epochs=30, seed=1))[:18]
    'cnn-w4a4b8-ep30-s1'
    """
    bits = "float" if config.is_float else f"w{config.wbits}a{config.abits}b{config.end_bits}"
    kind = data_mod.parse_spec(config.data)[0]
    prefix = "" if kind == "digits" else f"{kind}-"
    blob = json.dumps(config.to_dict(), sort_keys=True).encode()
    digest = hashlib.sha256(blob).hexdigest()[:8]
    return f"{prefix}{config.model}-{bits}-ep{config.epochs}-s{config.seed}-{digest}"


def network_input(x: np.ndarray, layers: Sequence[LayerSpec]) -> torch.Tensor:
    """Images in ``[0, 1]`` to the network's input tensor.

    Quantized networks see ``quantize_input(x, input_bits) / (2**input_bits - 1)``: exactly the
    codes the integer reference consumes, as real values. The float baseline sees ``x``.
    """
    bits = layers[0]["in_bits"]
    if bits is None:
        return torch.as_tensor(np.asarray(x, dtype=np.float32))
    codes = quantize_input(x, bits)
    return torch.as_tensor((codes / ((1 << bits) - 1)).astype(np.float32))


def state_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@torch.no_grad()
def accuracy(net: PactNet, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    """Top-1 accuracy (0..1) of ``net`` in eval mode on input tensor ``x`` and labels ``y``."""
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def _fit(net: PactNet, config: TrainConfig, x: torch.Tensor, y: torch.Tensor,
         progress: bool) -> list[float]:
    """The training loop; returns the per-epoch mean loss."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in net.parameters():
        # alpha gets its L2 penalty in the loss (lambda_alpha * alpha^2); BN and biases none.
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.Adam([
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ], lr=config.lr)
    steps_per_epoch = (len(x) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=0.15,
    )
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    bar = _progress(range(config.epochs), progress, f"train {run_key(config)}")
    for _epoch in bar:
        net.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for i in range(0, len(x), config.batch_size):
            idx = order[i:i + config.batch_size]
            if len(idx) < 2:  # batch-norm needs two samples
                continue
            loss = F.cross_entropy(net(x[idx]), y[idx])
            if not config.is_float:
                loss = loss + config.weight_decay * net.alpha_penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            net.clamp_alphas()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def _progress(iterable: Iterable[_T], enabled: bool, desc: str) -> Iterable[_T]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit="epoch", leave=False, dynamic_ncols=True)


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict of a run directory; ``UserError`` if it is missing or not ours."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise UserError(f"{path} does not exist; train a run with 'pact train --out {run_dir}'")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise UserError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                        "train the run again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint; train the run again")
    # A file damaged in place still loads; only the fingerprint tells its weights changed.
    try:
        intact = state_fingerprint(ckpt["state_dict"]) == ckpt.get("fingerprint")
    except (KeyError, AttributeError, TypeError):
        intact = False
    if not intact:
        raise UserError(f"{path} is damaged: its weights do not match the fingerprint stored "
                        "with them; train the run again")
    return ckpt


def build_from_checkpoint(ckpt: Mapping[str, Any]) -> PactNet:
    """The network of a checkpoint, weights loaded, in eval mode."""
    config = TrainConfig.from_dict(ckpt["config"])
    net = PactNet(ckpt["layers"], alpha_init=config.alpha_init)
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net


def is_cached(out: str | os.PathLike[str], config: TrainConfig) -> bool:
    """True if ``out`` holds a finished run (checkpoint and metrics) of exactly ``config``."""
    out = Path(out)
    try:
        ckpt = load_checkpoint(out)
    except UserError:
        return False
    return ckpt["config"] == config.to_dict() and (out / METRICS).is_file()


_cached = is_cached  # the name cosim.flow used first


def train(config: TrainConfig, out: str | os.PathLike[str] | None = None, *, reuse: bool = False,
          progress: bool = True, runs_root: str | os.PathLike[str] | None = None) -> Path:
    """Train ``config`` into ``out`` (default ``runs_root/run_key(config)``, ``runs_root``
    defaulting to ``$PACT_RUNS`` or ``runs/``); return the dir.

    With ``reuse=True`` a directory that already holds a finished run of the same configuration
    is returned as is. Processes training into the same directory take turns (a lock beside
    it), so two identical flows started together train once.
    """
    config.validate()
    root = _runs_root() if runs_root is None else Path(runs_root)
    out = Path(out) if out is not None else root / run_key(config)
    if reuse and is_cached(out, config):
        return out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.with_name(f".{out.name}.lock")):
        if reuse and is_cached(out, config):
            return out
        return _train_locked(config, out, progress)


def _train_locked(config: TrainConfig, out: Path, progress: bool) -> Path:
    dataset = data_mod.load(config.data)

    torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    wbits = None if config.is_float else config.wbits
    abits = None if config.is_float else config.abits
    try:
        layers = describe(config.model, dataset.input_shape, dataset.num_classes,
                          wbits=wbits, abits=abits, end_bits=config.end_bits)
    except ValueError as exc:
        shape = "x".join(map(str, dataset.input_shape))
        raise UserError(f"{config.model} cannot take the {shape} images of {dataset.name} "
                        f"({exc}); use --data {data_mod.stand_in(config.model)}") from None
    net = PactNet(layers, alpha_init=config.alpha_init)

    x_train, y_train = dataset.x_train, dataset.y_train
    if config.subset is not None:
        x_train, y_train = x_train[:config.subset], y_train[:config.subset]
    x = network_input(x_train, layers)
    y = torch.as_tensor(y_train)
    x_test = network_input(dataset.x_test, layers)
    y_test = torch.as_tensor(dataset.y_test)

    start = time.perf_counter()
    losses = _fit(net, config, x, y, progress)
    seconds = time.perf_counter() - start
    net.eval()
    metrics = {
        "test_accuracy": accuracy(net, x_test, y_test),
        "train_accuracy": accuracy(net, x, y),
        "model": config.model,
        "dataset": dataset.name,
        "float": config.is_float,
        "wbits": wbits,
        "abits": abits,
        "end_bits": None if config.is_float else config.end_bits,
        "alpha": {} if config.is_float else net.alphas(),
        "epochs": config.epochs,
        "seed": config.seed,
        "train_images": len(x),
        "test_images": len(x_test),
        "final_loss": losses[-1] if losses else None,
        "train_seconds": round(seconds, 3),
        "threads": config.threads,
        "run_key": run_key(config),
    }
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "layers": layers,
        "dataset": dataset.name,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "state_dict": state,
        "fingerprint": state_fingerprint(state),
        "test_accuracy": metrics["test_accuracy"],
    }
    out.mkdir(parents=True, exist_ok=True)
    # an image exported from an earlier run in this directory no longer matches
    (out / IMAGE_NAME).unlink(missing_ok=True)
    _atomic_write(out / CHECKPOINT, lambda p: torch.save(ckpt, p))
    _atomic_write(out / METRICS,
                  lambda p: p.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n"))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wbits", type=int, help="weight bits of the hidden layers (2..8)")
    parser.add_argument("--abits", type=int, help="activation bits of every PACT layer (2..8)")
    parser.add_argument("--end-bits", type=int, default=8,
                        help="weight bits of the first and last layer, and input bits "
                             "(default: %(default)s)")
    parser.add_argument("--float", action="store_true", dest="float_baseline",
                        help="train the float baseline (ReLU, no quantization)")
    parser.add_argument("--model", choices=MODELS, default="cnn", help="default: %(default)s")
    parser.add_argument("--data",
                        help="digits (embedded), mnist5k[@CxHxW] (embedded), mnist:DIR, "
                             "cifar10:DIR or svhn:DIR (default: the model's stand-in: digits "
                             "for cnn/mlp/resnet, mnist5k for lenet, mnist5k@3x32x32 for "
                             "resnet20, mnist5k@3x40x40 for svhn)")
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help="peak learning rate (Adam, one-cycle; default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help="weight decay, also PACT's lambda_alpha (default: %(default)s)")
    parser.add_argument("--alpha-init", type=float, default=defaults.alpha_init,
                        help="initial PACT alpha (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="torch CPU threads (default: %(default)s: this small network "
                             "trains fastest on one; weights are reproducible per count)")
    parser.add_argument("--subset", type=int,
                        help="train on the first N training images only (quick checks)")
    parser.add_argument("--out", type=Path,
                        help=f"run directory (default: $PACT_RUNS or {DEFAULT_RUNS}, then "
                             "/<configuration key>)")
    parser.add_argument("--reuse", action="store_true",
                        help="return at once if --out already holds this exact configuration")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (also: environment PACT_NO_PROGRESS=1)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``pact train`` arguments."""
    if args.float_baseline and (args.wbits is not None or args.abits is not None):
        raise UserError("--float trains without quantization; drop --wbits/--abits")
    if not args.float_baseline and (args.wbits is None or args.abits is None):
        raise UserError("give --wbits and --abits (e.g. --wbits 4 --abits 4), or --float")
    return TrainConfig(
        wbits=args.wbits, abits=args.abits, end_bits=args.end_bits, model=args.model,
        data=args.data if args.data is not None else data_mod.stand_in(args.model),
        epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, alpha_init=args.alpha_init,
        threads=args.threads, subset=args.subset,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.out is not None:
        check_output(args.out, "--out", folder=True)
    if args.data is None and args.model in data_mod.OWN_DATA:
        print(f"no --data: {args.model} trains on the stand-in {config.data} (embedded MNIST "
              f"digits), not its own {data_mod.OWN_DATA[args.model]}")
    progress = not args.quiet and os.environ.get("PACT_NO_PROGRESS") is None
    out = train(config, args.out, reuse=args.reuse, progress=progress)
    metrics = json.loads((out / METRICS).read_text())
    what = ("float" if config.is_float
            else f"w{config.wbits}a{config.abits} (ends {config.end_bits})")
    alphas = " ".join(f"{k}={v:.3g}" for k, v in metrics["alpha"].items())
    print(f"{config.model} {what} on {metrics['dataset']}: test accuracy "
          f"{100 * metrics['test_accuracy']:.2f}% after {metrics['epochs']} epochs "
          f"({metrics['train_seconds']:.1f} s)")
    if alphas:
        print(f"alpha: {alphas}")
    print(f"run: {out}")
    return 0
