"""Area of the tiled chip's MAC and requantizer (issue 9, items 1-2), Yosys generic gates.

    /work/venv/bin/python bench/lean_area.py [--bits 2 4 16] [--rows 16 --cols 16]
        [--area-rows 4 --area-cols 4] [--lanes 2] [--json bench/results/lean_area.json]

The chip's configuration for ResNet20 (``--max-kernel 3 --max-in-channels 64 --colsum``, 8-bit
end layers sliced on the k-bit array): per k, the MAC array exactly as ``TiledChip`` builds it
(``blocks["mac"]``) synthesized at ``--area-rows x --area-cols`` (a grid of identical MACs:
per-MAC = total / MACs; the row-shared odd-weight and shift decode are amortized over the
columns), and the requantizer blocks (``REQUANT_BLOCKS``: everything between the array's
outputs and the activation memory) at the full ``--rows x --cols``. Prints and writes per-MAC
transistors, the 16->2 and 16->4 ratios (paper: ~14x and the issue's >= 5x target) and the
requantizer's share of the ``rows x cols`` array (target <= 10% at 16x16, k=4).
"""

import argparse
import functools
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from amaranth.back import verilog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.area import synth_area  # noqa: E402
from rtl.tiled.chip import REQUANT_BLOCKS, TiledChip  # noqa: E402
from rtl.tiled.params import TiledParams  # noqa: E402

CACHE = Path("sim_build") / "area"
LOG = functools.partial(print, flush=True)
# The rest of the chip is elaborated to reach its blocks, and never used.
warnings.filterwarnings("ignore", message=".*created but never used")


def chip_params(k, rows, cols, lanes):
    """The ResNet20 configuration at ``k`` bits (kernel 3, 64 channels, 8-bit end layers, the
    drain's column sums for its averaged fc)."""
    return TiledParams(k, k, rows, cols, max_kernel=3, max_in_channels=64, max_bits=8,
                       requant_lanes=lanes, colsum=True)


def block_area(params, name):
    """Transistors (and flip-flops) of ``TiledChip(params).blocks[name]``, synthesized alone."""
    chip = TiledChip(params)
    chip.elaborate(None)
    block = chip.blocks[name]
    text = verilog.convert(block, name=f"lean_{name}", emit_src=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "block.v"
        path.write_text(text)
        fig = synth_area(path, f"lean_{name}", cache_dir=CACHE)
    return {"transistors": fig["transistors"], "flip_flops": fig["flip_flops"],
            "cells": fig["cells"]}


def measure(bits, rows, cols, area_rows, area_cols, lanes, requant_bits=None, log=LOG):
    out = {"config": {"rows": rows, "cols": cols, "area_rows": area_rows,
                      "area_cols": area_cols, "requant_lanes": lanes, "max_kernel": 3,
                      "max_in_channels": 64, "max_bits": 8, "colsum": True},
           "mac": {}, "requant": {}}
    for k in bits:
        t = time.perf_counter()
        small = chip_params(k, area_rows, area_cols, min(lanes, area_cols))
        fig = block_area(small, "mac")
        per = fig["transistors"] / (area_rows * area_cols)
        out["mac"][str(k)] = {"acc_width": small.acc_width, "shifts": list(small.shifts),
                              "per_mac_transistors": per,
                              "per_mac_flip_flops": fig["flip_flops"] / (area_rows * area_cols)}
        log(f"k={k:2d}  MAC: {per:9.0f} transistors/MAC  acc {small.acc_width} bits "
            f"({time.perf_counter() - t:.0f} s)")
    for k in bits if requant_bits is None else requant_bits:
        full = chip_params(k, rows, cols, lanes)
        blocks = {name: block_area(full, name) for name in REQUANT_BLOCKS}
        total = sum(b["transistors"] for b in blocks.values())
        array = out["mac"][str(k)]["per_mac_transistors"] * rows * cols
        out["requant"][str(k)] = {"blocks": blocks, "transistors": total,
                                  "array_transistors": array, "share_of_array": total / array}
        parts = ", ".join(f"{n} {b['transistors']}" for n, b in blocks.items())
        log(f"k={k:2d}  requantizer {total:9.0f} transistors = {total / array:.1%} of the "
            f"{rows}x{cols} array ({parts})")
    mac = out["mac"]
    for lo in (2, 4):
        if "16" in mac and str(lo) in mac:
            r = mac["16"]["per_mac_transistors"] / mac[str(lo)]["per_mac_transistors"]
            out[f"mac_area_ratio_16_to_{lo}"] = r
            log(f"MAC area ratio 16->{lo}: {r:.2f}x")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 16])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--area-rows", type=int, default=4)
    ap.add_argument("--area-cols", type=int, default=4)
    ap.add_argument("--lanes", type=int, default=TiledParams.requant_lanes)
    ap.add_argument("--requant-bits", type=int, nargs="+", default=None,
                    help="k of the requantizer figures (default: --bits)")
    ap.add_argument("--json", default="bench/results/lean_area.json")
    a = ap.parse_args(argv)
    out = measure(a.bits, a.rows, a.cols, a.area_rows, a.area_cols, a.lanes, a.requant_bits)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
