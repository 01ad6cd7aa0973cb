"""``pact sim``: one block regression on Icarus or Verilator, from the command line.

    pact sim --block mac_array --sim verilator --wbits 4 --abits 4 --rows 2 --cols 3 \\
        --vectors 500 --seed 7 --json out.json [--waves]

generates the block's Verilog (``gen.generate``, into ``sim_build/gen/<config>``), builds it
once per simulator and configuration (``sim_build/<sim>/<config>``, reused on later runs), runs
the cocotb bench (``cosim.mac_array_tb`` or ``cosim.pact_unit_tb``) and writes a JSON summary:
``vectors`` (results checked: reductions for the MAC array, beats for the PACT unit; the corner
cases plus ``--vectors`` random ones), ``mismatches``, ``cycles``, ``wall_seconds`` (simulation
run, without the build), ``build_seconds``, and more. Exit code 0 only when ``mismatches`` is 0.
``--waves`` builds a traced variant (``<config>-waves``) and writes the waveform into the run
folder: ``<run>/pact_<block>.fst`` (Icarus) or ``<run>/dump.vcd`` (Verilator); the summary and
the terminal say where.

``PACT_VECTORS`` and ``PACT_SEED`` set the defaults of ``--vectors`` and ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cosim import runner
from cosim.tools import SIMULATORS
from gen import generate
from pact.errors import UserError
from pact.paths import check_output, sim_build_root, write_file

__all__ = ["BENCHES", "regress", "block_params", "add_arguments", "run"]

#: block -> cocotb test module
BENCHES = {"mac_array": "cosim.mac_array_tb", "pact_unit": "cosim.pact_unit_tb"}

#: Defaults of a regression (the CLI and the pytest matrix share them).
DEFAULT_VECTORS = 200
DEFAULT_SEED = 1
DEFAULT_BUBBLES = 0.25
DEFAULT_BACKPRESSURE = 0.25
#: Shorter than ``pact gen``'s default so the three bound-reaching corner reductions stay quick.
DEFAULT_MAX_REDUCTION = 256


def env_int(name: str, default: int) -> int:
    """An integer from the environment (``PACT_VECTORS``, ``PACT_SEED``) or ``default``."""
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} must be an integer, not {text!r}") from None


def block_params(block: str, wbits: int, abits: int, rows: int, cols: int,
                 max_reduction: int = DEFAULT_MAX_REDUCTION, max_shift: int = 0) -> dict[str, Any]:
    """Generator parameters of ``block`` (validated; a bad value is a ``UserError``)."""
    params: dict[str, Any] = {"wbits": wbits, "abits": abits, "rows": rows, "cols": cols,
              "max_reduction": max_reduction, "max_shift": max_shift}
    if block == "pact_unit":
        params.update(out_bits=None, signed_out=False)
    generate.validate(block, params)  # validates (and resolves defaults) before anything is built
    _check_golden_range(block, params)
    return params


def _check_golden_range(block: str, params: Mapping[str, Any]) -> None:
    """The golden model computes in int64: refuse sizes whose values would not fit."""
    from golden.integer import REQUANT_MULT_BITS
    from rtl.mac_array import accumulator_width

    width = accumulator_width(params["wbits"], params["abits"], params["max_reduction"],
                              params["max_shift"])
    need = width + (REQUANT_MULT_BITS if block == "pact_unit" else 0)
    if need > 62:
        raise UserError(f"a {width}-bit accumulator is too wide for the int64 golden model; "
                        f"lower --max-reduction or the bit-widths")


def _bench_params(block: str, params: Mapping[str, Any],
                  manifest: Mapping[str, Any]) -> dict[str, Any]:
    if block == "pact_unit":
        d = manifest["derived"]
        return {**params, "acc_width": d["acc_width"], "out_bits": d["out_bits"],
                "lanes": d["lanes"], "signed_out": d["signed_out"]}
    return dict(params)


def prepare(block: str, sim: str, params: Mapping[str, Any], *, waves: bool = False,
            root: str | os.PathLike[str] | None = None) -> tuple[runner.BuildInfo, dict[str, Any]]:
    """Generate (once) and build (once per simulator) ``block``; ``(BuildInfo, manifest)``."""
    params = dict(params)
    name = config_of(block, params)
    base = Path(root) if root is not None else sim_build_root()
    gen_dir = base / "gen" / name
    with runner._locked(base / "gen" / f"{name}.lock"):
        manifest_file = gen_dir / "manifest.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else None
        if manifest is None or manifest["config_hash"] != generate.config_hash(block, params):
            manifest = generate.generate(block, params, gen_dir)
    info = runner.build(sim, [gen_dir / manifest["verilog"]], manifest["module"], name,
                        waves=waves, root=base)
    return info, manifest


def config_of(block: str, params: Mapping[str, Any]) -> str:
    """The build folder name of a block configuration, e.g. ``mac_array-w4a4r2c3-1a2b3c4d``."""
    p = params
    return runner.config_name(f"{block}-w{p['wbits']}a{p['abits']}r{p['rows']}c{p['cols']}",
                              {"block": block, **params})


def regress(block: str, sim: str, params: Mapping[str, Any], *, vectors: int | None = None,
            seed: int | None = None, waves: bool = False, inject_error: bool = False,
            bubbles: float = DEFAULT_BUBBLES, backpressure: float = DEFAULT_BACKPRESSURE,
            name: str | None = None, root: str | os.PathLike[str] | None = None,
            extra: Mapping[str, Any] | None = None) -> tuple[runner.RunResult, runner.BuildInfo]:
    """Build (or reuse) and run one regression; return ``(RunResult, BuildInfo)``.

    ``params`` come from ``block_params``. ``inject_error`` corrupts one golden value, so a
    working checker must report a mismatch. ``extra`` adds keys to the bench config.
    """
    if block not in BENCHES:
        raise UserError(f"unknown block {block!r}; choose one of {', '.join(BENCHES)}")
    vectors = env_int("PACT_VECTORS", DEFAULT_VECTORS) if vectors is None else vectors
    seed = env_int("PACT_SEED", DEFAULT_SEED) if seed is None else seed
    params = dict(params)
    generate.validate(block, params)  # resolve defaults such as out_bits
    info, manifest = prepare(block, sim, params, waves=waves, root=root)
    config = {"params": _bench_params(block, params, manifest), "vectors": vectors,
              "seed": seed, "bubbles": bubbles, "backpressure": backpressure,
              "inject_error": inject_error, **(extra or {})}
    name = name or f"seed{seed}-v{vectors}" + ("-inject" if inject_error else "")
    result = runner.run(sim, info, BENCHES[block], config=config, name=name, seed=seed)
    return result, info


# -- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block", required=True, choices=sorted(BENCHES))
    parser.add_argument("--sim", required=True, choices=SIMULATORS)
    parser.add_argument("--wbits", required=True, metavar="W")
    parser.add_argument("--abits", required=True, metavar="A")
    parser.add_argument("--rows", required=True, metavar="R")
    parser.add_argument("--cols", required=True, metavar="C")
    parser.add_argument("--max-reduction", default=str(DEFAULT_MAX_REDUCTION), metavar="N",
                        help=f"most beats per reduction (default {DEFAULT_MAX_REDUCTION})")
    parser.add_argument("--vectors", default=None, metavar="N",
                        help=f"random vectors after the corner cases (default $PACT_VECTORS "
                             f"or {DEFAULT_VECTORS})")
    parser.add_argument("--seed", default=None, metavar="S",
                        help=f"random seed (default $PACT_SEED or {DEFAULT_SEED})")
    parser.add_argument("--waves", action="store_true",
                        help="record a waveform (FST on Icarus, VCD on Verilator)")
    parser.add_argument("--json", required=True, metavar="OUT", help="summary JSON file")


def _write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def run(args: argparse.Namespace) -> int:
    check_output(args.json, "--json")
    num = {name: generate.parse_int(name, getattr(args, name), 0)
           for name in ("wbits", "abits", "rows", "cols", "max_reduction")}
    vectors = (env_int("PACT_VECTORS", DEFAULT_VECTORS) if args.vectors is None
               else generate.parse_int("vectors", args.vectors, 0))
    seed = env_int("PACT_SEED", DEFAULT_SEED) if args.seed is None else generate.parse_int(
        "seed", args.seed)
    params = block_params(args.block, **num)
    start = time.perf_counter()
    try:
        result, info = regress(args.block, args.sim, params, vectors=vectors, seed=seed,
                               waves=args.waves)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    wall = time.perf_counter() - start
    s = result.summary
    out = {
        "block": args.block,
        "sim": args.sim,
        "params": params,
        "seed": seed,
        "vectors": s.get("vectors", 0),
        "mismatches": s.get("mismatches", 0) if s else None,
        "cycles": s.get("cycles"),
        "wall_seconds": round(result.seconds, 3),
        "build_seconds": round(info.seconds, 3),
        "build_reused": info.reused,
        "total_seconds": round(wall, 3),
        "passed": result.passed,
        "first_mismatches": s.get("first_mismatches", []),
        "build_folder": str(info.folder),
        "log": str(result.log),
        "waves": str(result.waves) if result.waves else None,
    }
    for key in ("beats", "macs_per_cycle", "beats_per_cycle", "acc_width"):
        if key in s:
            out[key] = s[key]
    if not s:
        out["mismatches"] = None
        out["error"] = f"the bench wrote no summary; see {result.log}"
    _write_json(args.json, out)
    verdict = "PASS" if result.passed else "FAIL"
    built = "reused" if info.reused else f"{info.seconds:.1f} s"
    print(f"pact sim: {verdict} {args.block} on {args.sim}: {out['vectors']} vectors, "
          f"{out['mismatches']} mismatches, {out['cycles']} cycles, "
          f"{out['wall_seconds']} s sim, build {built}")
    for m in out["first_mismatches"][:3]:
        print(f"  mismatch: {m}")
    if out["waves"]:
        print(f"  waveform: {out['waves']}")
    if not result.passed:
        print(f"  log: {result.log}")
    return 0 if result.passed and out["mismatches"] == 0 else 1
