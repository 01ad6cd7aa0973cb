"""The tiled chip for ``pact gen``: ``pact gen --block tiled_chip --wbits W --abits A --rows R
--cols C [--mem-width 64] [--act-kib 16] [--ring-beats 1024] [--max-kernel 8]
[--max-in-channels 512] [--max-bits 8] [--max-reads 16] --out DIR``.

Imported by ``gen.generate`` (its ``PLUGINS``). The chip derives its own ``max_reduction``
(``max_in_channels * max_kernel**2 * w_slices_max``) and ``max_shift``, which replace the common
``--max-reduction`` in the manifest's ``params``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gen.chip import VERILATOR_BUILD_ARGS
from gen.generate import LINT_WAIVERS, Option, register
from rtl.tiled import axi, csr
from rtl.tiled.axi_chip import ID_BITS, AxiChip
from rtl.tiled.chip import TiledChip
from rtl.tiled.params import TiledParams

__all__ = ["TILED_OPTIONS", "tiled_params", "build_tiled_chip"]

#: ``--bus`` values: ``native`` (TiledChip's own streams, for the fast harness), ``axi``
#: (``AxiChip``).
BUSES = ("native", "axi")
DEFAULT_BUS = "axi"

TILED_OPTIONS = (
    Option("mem_width", 64, "external memory word bits, a power of two 16..1024", 16),
    Option("act_kib", 16, "activation memory in KiB (words of cols*abits bits)", 1),
    Option("ring_beats", 1024, "weight ring depth in beats of rows*wbits bits (power of 2)", 16),
    Option("max_kernel", 8, "largest kernel (without --colsum a global-average-pooled fc uses "
           "the plane)", 1),
    Option("max_in_channels", 512, "most (slice) input channels of a layer", 1),
    Option("max_bits", 8, "widest layer operand (8-bit first/last layers)", 2),
    Option("max_reads", 16, "external memory reads in flight", 2),
    Option("requant_lanes", 2, "requantizer lanes shared by the drain (power of two <= cols)",
           1),
    Option("acc_cap", 0, "largest |accumulator| the programs need (0: from the max_* bounds)",
           0),
    Option("colsum", False, "column sums in the drain: a global-average-pooled logits fc runs "
           "as a 1x1 layer on every column", flag=True),
    Option("bus", DEFAULT_BUS, "the chip's ports: native streams and CSR wires, or an AXI4 "
           "master (m_axi_*) and AXI4-Lite registers (s_axil_*) with irq", choices=BUSES),
)
_FIELDS = tuple(f.name for f in dataclasses.fields(TiledParams))

#: Verilator -Wall waivers (see gen/chip.py).
TILED_LINT_WAIVERS = {
    **LINT_WAIVERS,
    "DECLFILENAME": "the submodules are emitted into the top's file pact_tiled_chip.v",
}


def tiled_params(params: Mapping[str, Any]) -> TiledParams:
    """A ``TiledParams`` from a ``pact gen`` parameter dict."""
    defaults = {opt.name: opt.default for opt in TILED_OPTIONS}
    return TiledParams(**{k: params.get(k, defaults.get(k)) for k in _FIELDS})


def build_tiled_chip(params: dict[str, Any]) -> tuple[TiledChip | AxiChip, dict[str, Any]]:
    bus = params.pop("bus", DEFAULT_BUS)
    if bus not in BUSES:
        raise ValueError(f"bus must be one of {', '.join(BUSES)}, not {bus!r}")
    tp = tiled_params(params)
    for k in _FIELDS:
        params[k] = getattr(tp, k)
    params["max_reduction"] = tp.max_reduction
    params["max_shift"] = tp.max_shift
    extra: dict[str, Any] = {**tp.derived(), "lint_waivers": sorted(TILED_LINT_WAIVERS),
             "verilator_args": list(VERILATOR_BUILD_ARGS)}
    if bus == "native":
        # (no "bus" entry: the native chip's config hash stays what it was)
        return TiledChip(tp), extra
    params["bus"] = bus
    extra["manifest"] = {"registers": csr.register_map(), "axi": axi_parameters(tp)}
    extra["files"] = {"registers.md": "# pact_tiled_chip registers (AXI4-Lite, 32-bit)\n\n"
                      + csr.registers_markdown()}
    return AxiChip(tp), extra


def axi_parameters(tp: TiledParams) -> dict[str, dict[str, int]]:
    """The AXI ports' parameters, for the manifest."""
    return {"m_axi": {"data_width": tp.mem_width, "addr_width": 32, "id_width": ID_BITS,
                      "max_burst": axi.MAX_BURST, "max_write_burst": 16,
                      "max_reads_outstanding": tp.max_reads},
            "s_axil": {"data_width": 32, "addr_width": csr.ADDR_BITS}}


register("tiled_chip", build_tiled_chip, options=TILED_OPTIONS)
