"""The ``pact`` command. Each subcommand lives in the module that owns its work.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``. Errors a user
can cause (``UserError``, which includes a bad model image) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import UserError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("golden.train", "train a PACT (or float) network on the embedded data"),
    "export": ("golden.export", "write the integer model image of a trained run"),
    "golden": ("golden.evaluate", "run the integer reference on the test set"),
    "gen": ("gen.generate", "generate Verilog and a manifest for a block or the chip"),
    "sim": ("cosim.sim", "run one block regression on Icarus or Verilator"),
    "compile": ("gen.compiler", "lower a model image to a program for generated hardware"),
    "flow": ("cosim.flow", "train, export, generate, compile and simulate, end to end"),
    "regress": ("cosim.regress", "run many flows (a TOML matrix or random) on a Dask cluster"),
    "report": ("report", "sweep bit-widths: area, cycles, traffic, accuracy, sim speed"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pact", description="PACT-quantized networks to bit-exact, simulated Verilog."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"pact {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pact {args.command}: interrupted", file=sys.stderr)
        return 130
