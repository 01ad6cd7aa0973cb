"""The generated blocks of the README and ``docs/``: measured figures and the register map.

A figure copied by hand into a document goes stale the day it is re-measured; so the documents
hold no figure of their own. Each table of measured figures (and the AXI register map, a
contract defined in ``rtl/tiled/csr.py``) sits between two markers::

    <!-- BEGIN generated: paper_networks -->
    ...
    <!-- END generated: paper_networks -->

and is rendered here from the file that holds it (``bench/results/*.json`` and ``*.md``, written
by the benches). ``python -m report.doc_blocks`` rewrites the blocks; ``--check`` only says
which documents are stale (exit 1), and ``tests/test_doc_blocks.py`` fails on a stale one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["BLOCKS", "DOCUMENTS", "render", "update", "stale", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("bench") / "results"
#: The documents that hold generated blocks, relative to the repository root.
DOCUMENTS = ("README.md", "docs/chip.md")

_BLOCK = re.compile(r"(<!-- BEGIN generated: (\w+) -->\n)(.*?)(<!-- END generated: (\w+) -->)",
                    re.S)


def _json(root: Path, name: str) -> Any:
    return json.loads((root / RESULTS / name).read_text())


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _registers(root: Path) -> str:
    from rtl.tiled import csr

    return csr.registers_markdown()


def _table_file(name: str) -> Callable[[Path], str]:
    """A table a bench already writes as Markdown (``bench/accuracy.py``)."""
    def render_file(root: Path) -> str:
        return (root / RESULTS / name).read_text().strip() + "\n"
    return render_file


#: ``bench/paper_networks.py``'s runs: what each network reads.
_NETWORKS = {"resnet20": "ResNet20 32x32", "svhn": "SVHN 40x40", "lenet": "LeNet 28x28",
             "lenet_icarus": "LeNet 28x28"}


def _paper_networks(root: Path) -> str:
    runs = _json(root, "paper_networks.json")
    lines = ["| network, array, simulator | bit-exact | cycles/inference | MAC utilization, "
             "slice-MACs (real MACs) | worst conv layer, slice (real) | on-chip buffers "
             "(act + weights + consts) | cold Verilator build | sim speed | load average |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in runs.items():
        convs = [lay for lay in r["per_layer"] if lay["op"] == "conv"]
        worst = min(convs, key=lambda lay: lay["utilization"])
        b = r["on_chip_bytes"]
        kib = sum(b.values()) / 1024
        build = f"{r['build_s']:.0f} s" if r["sim"] == "verilator" else "-"
        lines.append(
            f"| {_NETWORKS.get(key, key)}, {r['array']}, {r['sim'].capitalize()} "
            f"| {r['bit_exact_images']}/{r['images']} | {r['cycles_per_inference']:,.0f} "
            f"| {_pct(r['utilization_overall'])} ({_pct(r['utilization_overall_real'])}) "
            f"| {worst['name']} {_pct(worst['utilization'])} ({_pct(worst['utilization_real'])}) "
            f"| {kib:.1f} KiB ({b['activations'] / 1024:g} + {b['weights'] / 1024:g} + "
            f"{b['constants'] / 1024:.1f}) | {build} | {r['sim_cycles_per_second']:,.0f} cycles/s "
            f"| {r['load_average']} |")
    return "\n".join(lines) + "\n"


def _lean_area(root: Path) -> str:
    r = _json(root, "lean_area.json")
    mac, cfg = r["mac"], r["config"]
    per = " / ".join(f"{mac[k]['per_mac_transistors']:,.0f} ({mac[k]['acc_width']})"
                     for k in ("2", "4", "16"))
    rq = r["requant"]["4"]
    blocks = ", ".join(f"{name} {b['transistors']:,}" for name, b in rq["blocks"].items())
    return "\n".join([
        "| figure | measured | paper / target |", "|---|---|---|",
        f"| transistors per MAC, k = 2 / 4 / 16 (accumulator bits) | {per} | - |",
        f"| MAC area 16 -> 2 bits | {r['mac_area_ratio_16_to_2']:.2f}x | ~14x; target >= 14x |",
        f"| MAC area 16 -> 4 bits | {r['mac_area_ratio_16_to_4']:.2f}x | target >= 5x |",
        f"| requantizer / MAC array, {cfg['rows']}x{cfg['cols']}, k=4, "
        f"{cfg['requant_lanes']} lanes | {_pct(rq['share_of_array'])} ({blocks} of "
        f"{rq['array_transistors']:,.0f} transistors) | \"almost free\"; target <= 10% |",
    ]) + "\n"


def _plane_chip(root: Path) -> str:
    runs = _json(root, "flow_configs.json")
    lines = ["| config, simulator | bit-exact | cycles/inference | MAC utilization, conv "
             "layers (per layer) | overall | sim speed |", "|---|---|---|---|---|---|"]
    for key in sorted(runs, key=lambda k: (not k.startswith("vl"), k)):
        r = runs[key]
        u = r["mac_utilization"]
        layers = ", ".join(f"{n} {_pct(v)}" for n, v in u["per_layer"].items())
        lines.append(
            f"| {r['model'].upper()} w{r['wbits']}a{r['abits']}, {r['sim'].capitalize()} "
            f"| {r['bit_exact_images']}/{r['images']} | {r['cycles_per_inference']:,.0f} "
            f"| {_pct(u['conv'])} ({layers}) | {_pct(u['overall'])} "
            f"| {r['sim_cycles_per_second']:,.0f} cycles/s |")
    return "\n".join(lines) + "\n"


def _load(r: Mapping[str, Any]) -> str:
    """The 1-minute load average before the run, where the bench recorded it."""
    load = r.get("load_avg_1_5_15")
    return "-" if load is None else f"{load['before'][0]}"


def _sim_speed(root: Path) -> str:
    lines = ["| chip | cocotb + Verilator | plain Verilator binary | ratio (CPU time) | target "
             "| load average |", "|---|---|---|---|---|---|"]
    for name, label in (("chip_speed_tiled_axi.json", "tiled chip, AXI"),
                        ("chip_speed_tiled_native.json", "tiled chip, native ports"),
                        ("chip_speed.json", "plane chip")):
        if not (root / RESULTS / name).exists():
            continue
        r = _json(root, name)
        lines.append(
            f"| {label}, w{r['wbits']}a{r['abits']} {r['rows']}x{r['cols']}, "
            f"{r['images']} images | {r['cocotb']['cycles_per_cpu_s']:,.0f} cycles/s "
            f"| {r['plain']['cycles_per_cpu_s']:,.0f} cycles/s | {r['ratio_cpu']:.2f} "
            f"| {r['target_ratio']} | {_load(r)} |")
    return "\n".join(lines) + "\n"


def _payoff(root: Path) -> str:
    """``bench/payoff.py``'s iso-area speed-up per model and ECP5 figures per k."""
    name = "payoff.json"
    if not (root / RESULTS / name).exists():
        return "(not measured yet: `python bench/payoff.py`)\n"
    p = _json(root, name)["payoff"]
    lines = ["| iso-area run | 16-bit chip | 4-bit chip (MAC budget) | bit-exact | speed-up "
             "| paper |", "|---|---|---|---|---|---|"]
    for model, e in sorted(((p.get("detail") or {}).get("iso_area") or {}).items()):
        slow, fast = e["k16"], e["k4"]
        exact = f"{slow['bit_exact_images']}/{slow['images']}, " \
                f"{fast['bit_exact_images']}/{fast['images']}"
        speed = "-" if e["speedup"] is None else f"{e['speedup']:.2f}x"
        lines.append(
            f"| {model} {'x'.join(map(str, e['input_shape']))} | {slow['rows']}x{slow['cols']}, "
            f"{slow['cycles']:,.0f} cycles ({slow['sim'].capitalize()}) | {fast['rows']}x"
            f"{fast['cols']} ({e['mac_budget']:,}), {fast['cycles']:,.0f} cycles "
            f"({fast['sim'].capitalize()}) | {exact} | {speed} | up to 4.5x"
            + ("; target >= 4.5x |" if model == "resnet20" else " |"))
    fpga = p.get("fpga") or {}
    if fpga:
        lines += ["", "| ECP5, 8x8 chip, k | LUT4 | flip-flops | MULT18X18D | DP16KD | device "
                  "| Fmax | images/s (digits CNN) |", "|---|---|---|---|---|---|---|---|"]
        for k in sorted(fpga, key=int):
            f = fpga[k]
            ips = "-" if f["images_per_second"] is None else f"{f['images_per_second']:,.0f}"
            lines.append(
                f"| {k} | {f['lut4']:,} | {f['ff']:,} | {f['dsp']} | {f['bram']} "
                f"| {f['device']} | {f['fmax_mhz']:.1f} MHz, {f['fmax_source']} | {ips} |")
    return "\n".join(lines) + "\n"


#: Block name -> renderer (given the repository root).
BLOCKS: Mapping[str, Callable[[Path], str]] = {
    "registers": _registers,
    "accuracy_digits": _table_file("accuracy.md"),
    "accuracy_lenet": _table_file("accuracy_lenet.md"),
    "paper_networks": _paper_networks,
    "lean_area": _lean_area,
    "plane_chip": _plane_chip,
    "sim_speed": _sim_speed,
    "payoff": _payoff,
}


def render(name: str, root: Path = ROOT) -> str:
    """The content of block ``name``, from the files under ``root``."""
    if name not in BLOCKS:
        raise ValueError(f"unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
    return BLOCKS[name](root)


def update(text: str, root: Path = ROOT) -> str:
    """``text`` with every generated block re-rendered (markers checked: a BEGIN without its
    own END is an error rather than a silently skipped block)."""
    begins = re.findall(r"<!-- BEGIN generated: (\w+) -->", text)
    ends = re.findall(r"<!-- END generated: (\w+) -->", text)
    if begins != ends:
        raise ValueError(f"generated-block markers do not pair up: BEGIN {begins}, END {ends}")

    def one(match: re.Match[str]) -> str:
        if match.group(2) != match.group(5):
            raise ValueError(f"block {match.group(2)!r} ends as {match.group(5)!r}")
        return match.group(1) + render(match.group(2), root) + match.group(4)

    return _BLOCK.sub(one, text)


def stale(root: Path = ROOT) -> list[str]:
    """The documents whose blocks differ from what the results files give."""
    return [doc for doc in DOCUMENTS
            if (root / doc).read_text() != update((root / doc).read_text(), root)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale documents")
    args = ap.parse_args(argv)
    if args.check:
        docs = stale()
        for doc in docs:
            print(f"{doc}: generated blocks are stale (run python -m report.doc_blocks)")
        return 1 if docs else 0
    for doc in DOCUMENTS:
        path = ROOT / doc
        text = path.read_text()
        new = update(text)
        if new != text:
            path.write_text(new)
            print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
