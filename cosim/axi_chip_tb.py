"""The AXI tiled chip (``rtl.tiled.axi_chip.AxiChip``) checked with a library made for AXI:
cocotbext-axi's ``AxiLiteMaster`` drives the registers, its ``AxiRam`` serves the memory with
random pauses on all five channels. ``AxiRam`` (0.1.28) answers read bursts one at a time in AR
order (one coroutine takes an AR and sends all its beats), so it never reorders or interleaves
the chip's read IDs; tests/test_tiled_axi_chip.py does, with its own slave model.

Two halves, as in ``cosim/chip_tb.py``:

- The cocotb bench (``test_axi_chip``, in the simulator; clock from cocotb). For each run of
  the job (``PACT_AXI_JOB``): write IRQ_ENABLE, PROG_ADDR, IN_ADDR, OUT_BASE through AXI4-Lite,
  write CTRL.START, await ``irq``, read STATUS, ERROR, CYCLES, MAC_BEATS, LAYER, IRQ_STATUS,
  clear IRQ_STATUS (write 1) and record that ``irq`` fell. Regions of the memory can be made
  to fail (``bad_read``/``bad_write`` byte ranges: the ram raises, so the AXI slave answers
  SLVERR). At the end the memory's words go to the results file. It checks nothing itself.
- The host side (``run_axi_chip``): the Verilog of ``AxiChip(params)``, a Verilator build
  (``sim_build/verilator/axi-<hash>``), the job, the run; returns the results with the memory
  as words.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rtl.tiled import csr
from rtl.tiled.params import TiledParams

__all__ = ["run_axi_chip", "axi_verilog", "test_axi_chip", "JOB_ENV"]

JOB_ENV = "PACT_AXI_JOB"
TOPLEVEL = "pact_tiled_chip"
CLOCK_NS = 10

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
    _HAVE_COCOTB = True
except ImportError:  # the host side works without cocotb
    _HAVE_COCOTB = False


def _pauses(rng: random.Random, p: float) -> Iterator[bool]:
    """An endless random pause pattern: paused with probability ``p`` each cycle."""
    while True:
        yield rng.random() < p


def _reg(name: str) -> int:
    return csr.by_name(name).offset


if _HAVE_COCOTB:

    @cocotb.test()
    async def test_axi_chip(dut: Any) -> None:
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

        job = json.loads(Path(os.environ[JOB_ENV]).read_text())
        mw = job["mem_width"]
        nbytes = mw // 8
        Clock(dut.clk, CLOCK_NS, unit="ns").start()  # returns the (already running) task
        ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=job["mem_bytes"])
        axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        words = [int(x, 16) for x in Path(job["memfile"]).read_text().split()]
        ram.write(0, b"".join(w.to_bytes(nbytes, "little") for w in words))
        bad_read, bad_write = job.get("bad_read"), job.get("bad_write")
        if bad_read:
            read = ram.read_if._read

            async def failing_read(address: int, length: int) -> bytes:
                if bad_read[0] <= address < bad_read[1]:
                    raise ValueError("bad read region")
                return await read(address, length)
            ram.read_if._read = failing_read
        if bad_write:
            write = ram.write_if._write

            async def failing_write(address: int, data: bytes) -> None:
                if bad_write[0] <= address < bad_write[1]:
                    raise ValueError("bad write region")
                await write(address, data)
            ram.write_if._write = failing_write
        rng = random.Random(job.get("seed", 1))
        p = job.get("pause", 0.0)
        if p:
            for ch in (ram.write_if.aw_channel, ram.write_if.w_channel,
                       ram.write_if.b_channel, ram.read_if.ar_channel, ram.read_if.r_channel):
                ch.set_pause_generator(_pauses(random.Random(rng.random()), p))

        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)
        runs = []
        for prog, in_addr, out_base in job["runs"]:
            await axil.write_dword(_reg("IRQ_ENABLE"), csr.IRQ_DONE | csr.IRQ_ERROR)
            await axil.write_dword(_reg("PROG_ADDR"), prog)
            await axil.write_dword(_reg("IN_ADDR"), in_addr)
            await axil.write_dword(_reg("OUT_BASE"), out_base)
            await axil.write_dword(_reg("CTRL"), csr.CTRL_START)
            irq = RisingEdge(dut.irq)
            fired = dut.irq.value == 1 or (
                await First(irq, Timer(job["timeout_cycles"] * CLOCK_NS, unit="ns"))) is irq
            r: dict[str, Any] = {"irq": bool(fired)}
            for name in ("STATUS", "ERROR", "CYCLES", "MAC_BEATS", "LAYER", "IRQ_STATUS"):
                r[name.lower()] = await axil.read_dword(_reg(name))
            await axil.write_dword(_reg("IRQ_STATUS"), csr.IRQ_DONE | csr.IRQ_ERROR)
            await ClockCycles(dut.clk, 2)
            r["irq_after_clear"] = int(dut.irq.value)
            runs.append(r)
            if not fired:
                break
        mem = ram.read(0, job["dump_words"] * nbytes)
        dump = [int.from_bytes(mem[i:i + nbytes], "little") for i in range(0, len(mem), nbytes)]
        Path(job["results"]).write_text(json.dumps({"runs": runs, "words": dump}))


# -- the host side --------------------------------------------------------------------------


def axi_verilog(params: TiledParams) -> str:
    """The Verilog text of ``AxiChip(params)`` (module ``pact_tiled_chip``)."""
    from amaranth.back import verilog

    from rtl.tiled.axi_chip import AxiChip

    return verilog.convert(AxiChip(params), name=TOPLEVEL, emit_src=False)


def run_axi_chip(params: TiledParams, words: Sequence[int],
                 runs: Iterable[tuple[int, int, int]], work: str | os.PathLike[str], *,
                 pause: float = 0.3, seed: int = 1, timeout_cycles: int = 2_000_000,
                 bad_read: Sequence[int] | None = None, bad_write: Sequence[int] | None = None,
                 dump_words: int | None = None) -> dict[str, Any]:
    """Run ``runs`` ((prog_addr, in_addr, out_base) word addresses) on the AXI chip with the
    memory ``words``; return ``{"runs": [...], "words": [...]}`` from the bench."""
    from cosim import runner
    from gen.chip import VERILATOR_BUILD_ARGS
    from gen.tiled import TILED_LINT_WAIVERS

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    text = axi_verilog(params)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    src = work / f"{TOPLEVEL}.v"
    src.write_text(text)
    # Only the top's ports are visible to cocotb (every signal public made the plain chip
    # 14x slower; see cosim/chip_tb.py).
    vlt = work / "ports.vlt"
    vlt.write_text('`verilator_config\npublic_flat_rw -module "pact_tiled_chip" -var "*"\n')
    build_args = (["-Wno-fatal", "--no-public-flat-rw"] + list(VERILATOR_BUILD_ARGS)
                  + [f"-Wno-{w}" for w in sorted(TILED_LINT_WAIVERS)])
    info = runner.build("verilator", [vlt, src], TOPLEVEL, f"axi-{digest}",
                        build_args=build_args)
    mw = params.mem_width
    mem_words = 1 << max(12, (len(words) - 1).bit_length())
    memfile = work / "mem.hex"
    memfile.write_text("\n".join(f"{w:x}" for w in words) + "\n")
    job = {"memfile": str(memfile), "mem_width": mw, "mem_bytes": mem_words * mw // 8,
           "runs": [list(r) for r in runs], "pause": pause, "seed": seed,
           "timeout_cycles": timeout_cycles, "bad_read": bad_read, "bad_write": bad_write,
           "dump_words": dump_words or mem_words, "results": str(work / "results.json")}
    return runner.run_job("verilator", info.folder, "cosim.axi_chip_tb", TOPLEVEL, job, work,
                          job_env=JOB_ENV, what="AXI bench")
