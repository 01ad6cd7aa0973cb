# amaranth: UnusedElaboratable=no
"""The AXI4-Lite register slave: rw registers keep what was written (per byte strobe), ro
registers read their input, a wo register gives the written word for one cycle, w1c bits
are set by their input and cleared by writing 1; unmapped offsets read 0; random
valid/ready on every channel."""

import random

from amaranth.sim import Simulator

from rtl.tiled import csr
from rtl.tiled.axi_lite import AxiLiteSlave


def run(ops, *, seed=1, status=0x1234, sets=()):
    """Do ``ops`` (("w", offset, value, strobe) or ("r", offset)) one after the other; returns
    the read values, the cycles in which CTRL was non-zero (with its value), and IRQ_STATUS
    at the end. ``sets``: (op index, bits) to pulse on irq_status_set before that op."""
    rng = random.Random(seed)
    dut = AxiLiteSlave()
    reads, ctrl = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(dut.status, status)
        set_at = dict(sets)
        for i, op in enumerate(ops):
            if i in set_at:
                ctx.set(dut.irq_status_set, set_at[i])
                await ctx.tick()
                ctx.set(dut.irq_status_set, 0)
            if op[0] == "w":
                _, off, value, strobe = op
                aw_done = w_done = False
                while not (aw_done and w_done):
                    ctx.set(dut.awvalid, not aw_done and rng.random() < 0.7)
                    ctx.set(dut.awaddr, off)
                    ctx.set(dut.wvalid, not w_done and rng.random() < 0.7)
                    ctx.set(dut.wdata, value)
                    ctx.set(dut.wstrb, strobe)
                    _, _, av, ar, wv, wr, c = await ctx.tick().sample(
                        dut.awvalid, dut.awready, dut.wvalid, dut.wready, dut.ctrl)
                    aw_done |= bool(av and ar)
                    w_done |= bool(wv and wr)
                    if c:
                        ctx_ctrl = c
                        ctrl.append(ctx_ctrl)
                ctx.set(dut.awvalid, 0)
                ctx.set(dut.wvalid, 0)
                while True:
                    ctx.set(dut.bready, rng.random() < 0.6)
                    _, _, bv, br, c = await ctx.tick().sample(dut.bvalid, dut.bready, dut.ctrl)
                    if c:
                        ctrl.append(c)
                    if bv and br:
                        break
                ctx.set(dut.bready, 0)
            else:
                _, off = op
                while True:
                    ctx.set(dut.arvalid, rng.random() < 0.7)
                    ctx.set(dut.araddr, off)
                    _, _, v, r = await ctx.tick().sample(dut.arvalid, dut.arready)
                    if v and r:
                        break
                ctx.set(dut.arvalid, 0)
                while True:
                    ctx.set(dut.rready, rng.random() < 0.6)
                    _, _, v, r, d = await ctx.tick().sample(dut.rvalid, dut.rready, dut.rdata)
                    if v and r:
                        reads.append(d)
                        break
                ctx.set(dut.rready, 0)
        reads.append(ctx.get(dut.irq_status))

    sim.add_testbench(bench)
    sim.run()
    return reads[:-1], ctrl, reads[-1]


def off(name):
    return csr.by_name(name).offset


def test_rw_registers_keep_bytes_by_strobe():
    reads, _, _ = run([("w", off("PROG_ADDR"), 0x11223344, 0xF),
                       ("w", off("PROG_ADDR"), 0xAABBCCDD, 0b0101),
                       ("w", off("IN_ADDR"), 7, 0xF),
                       ("r", off("PROG_ADDR")), ("r", off("IN_ADDR")), ("r", off("OUT_BASE"))])
    assert reads == [0x11BB33DD, 7, 0]


def test_ro_reads_input_and_ignores_writes_unmapped_reads_zero():
    reads, _, _ = run([("w", off("STATUS"), 0xFFFF, 0xF), ("r", off("STATUS")), ("r", 0x3C)],
                      status=0x2)
    assert reads == [0x2, 0]


def test_wo_pulses_once_and_reads_zero():
    reads, ctrl, _ = run([("w", off("CTRL"), 1, 0xF), ("r", off("CTRL"))])
    assert ctrl == [1] and reads == [0]


def test_w1c_set_by_input_cleared_by_writing_one():
    reads, _, final = run([("r", off("IRQ_STATUS")), ("w", off("IRQ_STATUS"), 1, 0xF),
                           ("r", off("IRQ_STATUS"))], sets=[(0, 0b11)])
    assert reads == [0b11, 0b10] and final == 0b10


def test_register_map_markdown_lists_every_register():
    text = csr.registers_markdown()
    for reg in csr.REGISTERS:
        assert f"| 0x{reg.offset:02X} | {reg.name} | {reg.access} |" in text
    assert [r["name"] for r in csr.register_map()] == [r.name for r in csr.REGISTERS]
