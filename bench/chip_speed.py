"""Whole-chip simulation speed: cocotb + Verilator against a plain Verilator binary.

    python bench/chip_speed.py [--wbits 4 --abits 4 --rows 8 --cols 8] [--images 50]
                               [--hw DIR] [--json OUT]

Builds the same harness and chip RTL twice with Verilator (same flags, ``--timing``, clock in
the HDL): as a plain ``--binary`` that runs the images itself (``+AUTOSTART``), and under cocotb
(``cosim.chip_tb``, Python only awaits ``done`` and the ``layer`` edges). Both run the digits
CNN shapes (random weights: speed does not depend on them) on the same images, both results are
checked against the integer reference with ``==``, and the simulated cycles per second of each
are reported, by CPU time (robust on a busy machine) and by wall time, with the ratio
cocotb / plain (target >= 0.5).

Exit code 1 if either run is not bit-exact or the CPU-time ratio is below the target.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim import chip_tb  # noqa: E402
from cosim.chip_model import random_image, random_inputs, read_outputs  # noqa: E402
from cosim.flow import generate_chip  # noqa: E402
from cosim.tools import prepare_environment  # noqa: E402
from gen import compiler  # noqa: E402
from golden.reference import run as reference_run  # noqa: E402

TARGET_RATIO = 0.5


def build_plain(hw_dir, mem_words):
    """``verilator --binary --timing`` of harness + chip, with the flags of the cocotb build."""
    prepare_environment("verilator")
    verilog, _ = chip_tb._verilog(hw_dir)
    bdir = chip_tb.build_dir_for("verilator", hw_dir, mem_words).with_name(
        chip_tb.build_dir_for("verilator", hw_dir, mem_words).name + "-plain")
    bdir.mkdir(parents=True, exist_ok=True)
    exe = bdir / "plain"
    stamp = bdir / "stamp.json"
    key = json.dumps([compiler_sha(verilog), compiler_sha(chip_tb.HARNESS),
                      chip_tb.verilator_args(hw_dir, mem_words)])
    if exe.exists() and stamp.exists() and stamp.read_text() == key:
        return exe, 0.0
    cmd = (["verilator", "--binary", "-j", "2", "--top-module", chip_tb.TOPLEVEL,
            "-Mdir", str(bdir), "-o", "plain", "--timescale", "1ns/1ps"]
           + chip_tb.verilator_args(hw_dir, mem_words) + [str(verilog), str(chip_tb.HARNESS)])
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


def run_plain(exe, program, inputs, work):
    """Run all ``inputs`` in one process; returns cycles, CPU and wall seconds, dump words."""
    lay = program.layout
    hexfile, dump = work / "plain_mem.hex", work / "plain_dump.hex"
    hexfile.write_text(compiler.to_hex(compiler.memory_words(program, inputs),
                                       program.mem_width))
    s = lay["slots"]
    args = [str(exe), "+AUTOSTART", f"+MEMFILE={hexfile}", f"+DUMPFILE={dump}",
            f"+MEM_LAST={lay['words_used'] - 1}", f"+IMAGES={len(inputs)}",
            f"+PROG_ADDR={lay['program_addr']}", f"+IN_ADDR={s['input_base']}",
            f"+IN_STRIDE={s['input_stride']}", f"+OUT_BASE={s['output_base']}",
            f"+OUT_STRIDE={s['output_stride']}"]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--hw", help="a generated chip folder (default: generate one)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    hw_dir = Path(args.hw) if args.hw else generate_chip(
        {"wbits": args.wbits, "abits": args.abits, "rows": args.rows, "cols": args.cols})
    hw = compiler.load_hardware(hw_dir)
    image = random_image(0, wbits=hw.wbits, abits=hw.abits)
    inputs = random_inputs(1, image, args.images)
    expected = [reference_run(image, x) for x in inputs]
    program = compiler.compile_image(image, hw, slots=args.images)
    work = chip_tb.build_dir_for("verilator", hw_dir, 0).parent / "speed"
    work.mkdir(parents=True, exist_ok=True)

    one = compiler.compile_image(image, hw)
    mem_words = chip_tb.mem_words_for(program.layout["words_used"])
    exe, plain_build = build_plain(hw_dir, mem_words)
    plain = run_plain(exe, program, inputs, work)
    plain_exact = all(
        chip_tb.first_mismatch(expected[i], read_outputs(plain["words"], program.layout, i))
        is None for i in range(len(inputs)))

    run = chip_tb.run_chip(one, hw_dir, inputs, expected, sim="verilator", work=work / "cocotb",
                           waves_on_mismatch=False)
    cycles = sum(r["cycles"] for r in run.records)
    figures = {
        "wbits": hw.wbits, "abits": hw.abits, "rows": hw.rows, "cols": hw.cols,
        "images": len(inputs),
        "cycles_per_inference": cycles / len(inputs),
        "plain": {"cycles": plain["cycles"], "cpu_s": plain["cpu_s"], "wall_s": plain["wall_s"],
                  "cycles_per_cpu_s": plain["cycles"] / plain["cpu_s"] if plain["cpu_s"] else None,
                  "cycles_per_wall_s": plain["cycles"] / plain["wall_s"],
                  "bit_exact": plain_exact and plain["error"] == 0,
                  "build_s": round(plain_build, 1)},
        "cocotb": {"cycles": cycles, "cpu_s": run.sim_cpu_seconds, "wall_s": run.sim_seconds,
                   "cycles_per_cpu_s": cycles / run.sim_cpu_seconds,
                   "cycles_per_wall_s": cycles / run.sim_seconds,
                   "bit_exact": not run.mismatches, "build_s": round(run.build_seconds, 1)},
    }
    p, c = figures["plain"], figures["cocotb"]
    figures["ratio_cpu"] = (c["cycles_per_cpu_s"] / p["cycles_per_cpu_s"]
                            if p["cycles_per_cpu_s"] else None)
    figures["ratio_wall"] = c["cycles_per_wall_s"] / p["cycles_per_wall_s"]
    figures["target_ratio"] = TARGET_RATIO
    print(f"chip w{hw.wbits}a{hw.abits} {hw.rows}x{hw.cols}, {len(inputs)} images, "
          f"{figures['cycles_per_inference']:.0f} cycles each")
    for name, f in (("plain verilator", p), ("cocotb+verilator", c)):
        cpu = f"{f['cycles_per_cpu_s']:,.0f}" if f["cycles_per_cpu_s"] else "?"
        print(f"  {name:17s} {cpu:>12s} cycles/CPU-s  {f['cycles_per_wall_s']:>12,.0f} "
              f"cycles/wall-s  bit-exact {f['bit_exact']}")
    ratio = figures["ratio_cpu"] if figures["ratio_cpu"] is not None else figures["ratio_wall"]
    print(f"  ratio cocotb/plain: {ratio:.2f} by CPU time, {figures['ratio_wall']:.2f} by wall "
          f"time (target >= {TARGET_RATIO})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    ok = p["bit_exact"] and c["bit_exact"] and ratio >= TARGET_RATIO
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
