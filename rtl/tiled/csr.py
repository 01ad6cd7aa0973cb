"""The AXI tiled chip's control and status registers, defined once.

``REGISTERS`` is the register map: the AXI4-Lite slave (``axi_lite.py``) decodes from it, the
manifest lists it (``register_map``) and ``pact gen`` prints it as Markdown
(``registers_markdown``). Registers are 32 bits at byte offsets that are multiples of 4;
``access`` is ``rw`` (read/write), ``ro`` (read only, writes ignored), ``wo`` (write only,
reads 0: the bits act for the cycle of the write) or ``w1c`` (read; writing 1 clears a bit).
"""

from dataclasses import dataclass

__all__ = ["Register", "REGISTERS", "CTRL_START", "IRQ_DONE", "IRQ_ERROR", "STATUS_BUSY",
           "STATUS_DONE", "by_name", "register_map", "registers_markdown", "ADDR_BITS"]

#: Bits of CTRL, STATUS, IRQ_ENABLE / IRQ_STATUS.
CTRL_START = 1
STATUS_BUSY, STATUS_DONE = 1, 2
IRQ_DONE, IRQ_ERROR = 1, 2


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str
    doc: str


REGISTERS = (
    Register("CTRL", 0x00, "wo", "bit 0 START: writing 1 starts the program (ignored while "
             "busy); the addresses below are sampled then"),
    Register("STATUS", 0x04, "ro", "bit 0 BUSY, bit 1 DONE (from the end of a run, every write "
             "acknowledged, until the next start)"),
    Register("PROG_ADDR", 0x08, "rw", "word address of the program's first descriptor"),
    Register("IN_ADDR", 0x0C, "rw", "word address of the input tensor"),
    Register("OUT_BASE", 0x10, "rw", "word address of the output area (layer outputs, skips)"),
    Register("CYCLES", 0x14, "ro", "clock cycles since start, frozen at done"),
    Register("ERROR", 0x18, "ro", "error flags (sequencer.Error): 1 unknown op, 2 descriptor "
             "the chip cannot run, 4 memory error (a read answer without request, or with 8), "
             "8 bus error (SLVERR/DECERR on R or B; the run stops)"),
    Register("LAYER", 0x1C, "ro", "index of the descriptor being run"),
    Register("MAC_BEATS", 0x20, "ro", "beats the MAC array took since start"),
    Register("IRQ_ENABLE", 0x24, "rw", "bit 0 done, bit 1 error: which IRQ_STATUS bits raise "
             "irq"),
    Register("IRQ_STATUS", 0x28, "w1c", "bit 0 done (set when a run ends), bit 1 error (set "
             "when a run ends with ERROR != 0); write 1 to clear"),
)
#: Bits of a register byte address the slave decodes (the map spans 2**ADDR_BITS bytes).
ADDR_BITS = 6


def _check(registers):
    offsets = [r.offset for r in registers]
    if len(set(offsets)) != len(offsets) or any(o % 4 for o in offsets):
        raise ValueError("register offsets must be distinct multiples of 4")
    if max(offsets) >= 1 << ADDR_BITS:
        raise ValueError(f"register offsets must be below {1 << ADDR_BITS}")
    if any(r.access not in ("rw", "ro", "wo", "w1c") for r in registers):
        raise ValueError("register access must be rw, ro, wo or w1c")


_check(REGISTERS)


def by_name(name):
    for reg in REGISTERS:
        if reg.name == name:
            return reg
    raise KeyError(name)


def register_map():
    """The map for the manifest: a list of dicts, offset order."""
    return [{"name": r.name, "offset": r.offset, "access": r.access, "doc": r.doc}
            for r in REGISTERS]


def registers_markdown():
    """The map as a Markdown table."""
    lines = ["| offset | name | access | meaning |", "|---|---|---|---|"]
    lines += [f"| 0x{r.offset:02X} | {r.name} | {r.access} | {r.doc} |" for r in REGISTERS]
    return "\n".join(lines) + "\n"
