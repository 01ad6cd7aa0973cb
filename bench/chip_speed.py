"""Whole-chip simulation speed: cocotb + Verilator against a plain Verilator binary.

    python bench/chip_speed.py [--chip tiled|plane] [--bus axi|native]
                               [--wbits 4 --abits 4 --rows 8 --cols 8] [--images 50]
                               [--hw DIR] [--json OUT]

Builds the same harness and chip RTL twice with Verilator (same flags and defines,
``--timing``, clock in the HDL): as a plain ``--binary`` that runs the images itself
(``+AUTOSTART``), and under cocotb (``cosim.chip_tb``, Python only awaits ``done`` and the
``layer`` edges). The chip is what ``pact flow`` uses unless told otherwise: the tiled chip
sized for the model (``tiled_compiler.requirements``) on its AXI bus (the harness's AXI memory
model, ``chip_harness_axi.svh``); ``--bus native`` gives the tiled chip's own streams,
``--chip plane`` the old plane chip. Both runs take the digits CNN shapes (random weights:
speed does not depend on them) on the same images, both results are checked against the
integer reference with ``==``, and the simulated cycles per second of each are reported, by
CPU time (robust on a busy machine) and by wall time, with the ratio cocotb / plain (target
>= 0.8 for the tiled chip, issue 11; 0.5 for the plane chip). ``--repeat N`` (default 3) runs
the two N times, alternating, and keeps each one's fastest run by CPU time: on a shared
machine a single run of a second or two varies by 20% (measured: 0.67 to 0.81 for the same
build) while the best of several is steady.

Exit code 1 if either run is not bit-exact or the CPU-time ratio is below the target.
"""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim import chip_tb  # noqa: E402
from cosim.chip_model import random_image, random_inputs  # noqa: E402
from cosim.flow import generate_chip  # noqa: E402
from cosim.tools import prepare_environment  # noqa: E402
from gen import compiler, tiled_compiler  # noqa: E402
from golden.reference import run as reference_run  # noqa: E402
from rtl.tiled.params import TiledParams  # noqa: E402

#: cocotb / plain cycles per CPU second, at least: issue 11 asks 0.8 of the tiled chip's fast
#: path; the plane chip's target stays what it was.
TARGET_RATIO = {"tiled": 0.8, "plane": 0.5}


def build_plain(hw_dir, mem_words):
    """``verilator --binary --timing`` of harness + chip, with the flags of the cocotb build."""
    prepare_environment("verilator")
    verilog, _ = chip_tb._verilog(hw_dir)
    bdir = chip_tb.build_dir_for("verilator", hw_dir, mem_words).with_name(
        chip_tb.build_dir_for("verilator", hw_dir, mem_words).name + "-plain")
    bdir.mkdir(parents=True, exist_ok=True)
    exe = bdir / "plain"
    stamp = bdir / "stamp.json"
    args = chip_tb.verilator_args(hw_dir, mem_words) + chip_tb.harness_defines(hw_dir)
    key = json.dumps([compiler_sha(verilog), compiler_sha(chip_tb.HARNESS), args])
    if exe.exists() and stamp.exists() and stamp.read_text() == key:
        return exe, 0.0
    cmd = (["verilator", "--binary", "-j", "2", "--top-module", chip_tb.TOPLEVEL,
            "-Mdir", str(bdir), "-o", "plain", "--timescale", "1ns/1ps"]
           + args + [str(verilog), str(chip_tb.HARNESS)])
    t = time.perf_counter()
    log = bdir / "build.log"
    with open(log, "w") as f:
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode:
        raise SystemExit(f"plain Verilator build failed; see {log}")
    stamp.write_text(key)
    return exe, time.perf_counter() - t


def compiler_sha(path):
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_plain(exe, view, inputs, work):
    """Run all ``inputs`` in one process (``view``: ``chip_tb.program_view`` of a program
    with one slot per input); returns cycles, CPU and wall seconds, dump words."""
    hexfile, dump = work / "plain_mem.hex", work / "plain_dump.hex"
    hexfile.write_text(compiler.to_hex(view.memory_words(inputs), view.mem_width))
    in0, out0 = view.slot_addresses(0)
    in1, out1 = view.slot_addresses(1) if len(inputs) > 1 else (in0, out0)
    args = [str(exe), "+AUTOSTART", f"+MEMFILE={hexfile}", f"+DUMPFILE={dump}",
            f"+MEM_LAST={view.words_used - 1}", f"+IMAGES={len(inputs)}",
            f"+PROG_ADDR={view.program_addr}", f"+IN_ADDR={in0}",
            f"+IN_STRIDE={in1 - in0}", f"+OUT_BASE={out0}", f"+OUT_STRIDE={out1 - out0}"]
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, cwd=work, check=True).stdout
    wall = time.perf_counter() - t
    m = re.search(r"AUTOSTART images=(\d+) cycles=(\d+) error=(\d+)", out)
    cpu = re.search(r"cpu ([\d.]+) s", out)
    vwall = re.search(r"walltime ([\d.]+) s", out)
    if not m:
        raise SystemExit(f"the plain binary printed no result:\n{out}")
    return {"cycles": int(m.group(2)), "error": int(m.group(3)),
            "cpu_s": float(cpu.group(1)) if cpu else None,
            "wall_s": float(vwall.group(1)) if vwall else wall, "process_s": wall,
            "words": compiler.read_hex(dump)}


def chip_and_programs(args, image, images):
    """The chip folder, and the program compiled for it with ``images`` slots and with one
    slot, for ``--chip`` (``--hw`` if given, else generated as ``pact flow`` would)."""
    if args.hw:
        hw_dir = Path(args.hw)
        tiled = chip_tb._is_tiled(hw_dir)
    elif args.chip == "tiled":
        params = tiled_compiler.requirements(
            image, TiledParams(args.wbits, args.abits, args.rows, args.cols))
        hw_dir = generate_chip({**dataclasses.asdict(params), "bus": args.bus},
                               block="tiled_chip")
        tiled = True
    else:
        hw_dir = generate_chip({"wbits": args.wbits, "abits": args.abits, "rows": args.rows,
                                "cols": args.cols})
        tiled = False
    if tiled:
        hw, config_hash = tiled_compiler.load_hardware(hw_dir)
        programs = [tiled_compiler.compile_tiled(image, hw, slots=n, config_hash=config_hash)
                    for n in (images, 1)]
    else:
        hw = compiler.load_hardware(hw_dir)
        programs = [compiler.compile_image(image, hw, slots=n) for n in (images, 1)]
    return hw_dir, hw, tiled, programs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", choices=("tiled", "plane"), default="tiled")
    ap.add_argument("--bus", choices=("axi", "native"), default="axi",
                    help="the tiled chip's bus (default axi, as pact flow)")
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each, alternating; the fastest by CPU time counts")
    ap.add_argument("--hw", help="a generated chip folder (default: generate one)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    image = random_image(0, wbits=args.wbits, abits=args.abits)
    load_before = os.getloadavg()
    hw_dir, hw, tiled, (program, one) = chip_and_programs(args, image, args.images)
    if (hw.wbits, hw.abits) != (args.wbits, args.abits):
        raise SystemExit(f"the chip in {hw_dir} is w{hw.wbits}a{hw.abits}; give --wbits "
                         f"{hw.wbits} --abits {hw.abits}")
    inputs = random_inputs(1, image, args.images)
    expected = [reference_run(image, x) for x in inputs]
    view = chip_tb.program_view(program)
    work = chip_tb.build_dir_for("verilator", hw_dir, 0).parent / "speed"
    work.mkdir(parents=True, exist_ok=True)

    mem_words = chip_tb.mem_words_for(view.words_used)
    exe, plain_build = build_plain(hw_dir, mem_words)
    plains, runs = [], []
    for _ in range(max(1, args.repeat)):
        plains.append(run_plain(exe, view, inputs, work))
        runs.append(chip_tb.run_chip(one, hw_dir, inputs, expected, sim="verilator",
                                     work=work / "cocotb", waves_on_mismatch=False))
    plain_exact = all(
        chip_tb.first_mismatch(expected[i], view.read_outputs(pl["words"], i)) is None
        and pl["error"] == 0 for pl in plains for i in range(len(inputs)))
    plain = min(plains, key=lambda pl: pl["cpu_s"] or pl["wall_s"])
    run = min(runs, key=lambda r: r.sim_cpu_seconds)
    cycles = sum(r["cycles"] for r in run.records)
    chip = "tiled" if tiled else "plane"
    bus = json.loads((hw_dir / "manifest.json").read_text())["params"].get("bus", "native")
    target = TARGET_RATIO[chip]
    figures = {
        "chip": chip, "bus": bus if tiled else None, "hw": hw_dir.name,
        "wbits": hw.wbits, "abits": hw.abits, "rows": hw.rows, "cols": hw.cols,
        "images": len(inputs),
        "cycles_per_inference": cycles / len(inputs),
        "plain": {"cycles": plain["cycles"], "cpu_s": plain["cpu_s"], "wall_s": plain["wall_s"],
                  "cycles_per_cpu_s": plain["cycles"] / plain["cpu_s"] if plain["cpu_s"] else None,
                  "cycles_per_wall_s": plain["cycles"] / plain["wall_s"],
                  "bit_exact": plain_exact, "build_s": round(plain_build, 1),
                  "cpu_s_all": [pl["cpu_s"] for pl in plains]},
        "cocotb": {"cycles": cycles, "cpu_s": run.sim_cpu_seconds, "wall_s": run.sim_seconds,
                   "cycles_per_cpu_s": cycles / run.sim_cpu_seconds,
                   "cycles_per_wall_s": cycles / run.sim_seconds,
                   "bit_exact": not any(r.mismatches for r in runs),
                   "build_s": round(runs[0].build_seconds, 1),
                   "cpu_s_all": [r.sim_cpu_seconds for r in runs]},
        "repeat": len(runs),
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": {"before": [round(x, 2) for x in load_before],
                            "after": [round(x, 2) for x in os.getloadavg()]},
    }
    p, c = figures["plain"], figures["cocotb"]
    figures["ratio_cpu"] = (c["cycles_per_cpu_s"] / p["cycles_per_cpu_s"]
                            if p["cycles_per_cpu_s"] else None)
    figures["ratio_wall"] = c["cycles_per_wall_s"] / p["cycles_per_wall_s"]
    figures["target_ratio"] = target
    print(f"{chip} chip{' on ' + bus if tiled else ''} w{hw.wbits}a{hw.abits} "
          f"{hw.rows}x{hw.cols}, {len(inputs)} images, "
          f"{figures['cycles_per_inference']:.0f} cycles each")
    for name, f in (("plain verilator", p), ("cocotb+verilator", c)):
        cpu = f"{f['cycles_per_cpu_s']:,.0f}" if f["cycles_per_cpu_s"] else "?"
        print(f"  {name:17s} {cpu:>12s} cycles/CPU-s  {f['cycles_per_wall_s']:>12,.0f} "
              f"cycles/wall-s  bit-exact {f['bit_exact']}")
    ratio = figures["ratio_cpu"] if figures["ratio_cpu"] is not None else figures["ratio_wall"]
    print(f"  ratio cocotb/plain: {ratio:.2f} by CPU time, {figures['ratio_wall']:.2f} by wall "
          f"time (target >= {target}); load average {figures['load_avg_1_5_15']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    ok = p["bit_exact"] and c["bit_exact"] and ratio >= target
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
