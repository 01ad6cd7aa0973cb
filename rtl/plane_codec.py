"""Channel planes between the activation banks' lane format and the dense tensor format.

In the banks a channel plane is ``lanes`` codes, each in its own ``lane_bits``-bit lane (lane
``p`` at bits ``[p*lane_bits, (p+1)*lane_bits)``). In external memory the same plane is a dense
LSB-first bitstream of ``bits``-wide codes (``rtl/chip_format.py``: ``pack_codes``). The code
width ``bits`` (``1..lane_bits``) is a run-time input; both converters are combinational, one
constant wiring per width selected by a switch.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PlaneUnpack", "PlanePack"]


def _check(lanes, lane_bits, dense_width):
    for name, v in (("lanes", lanes), ("lane_bits", lane_bits), ("dense_width", dense_width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    if dense_width < lanes * lane_bits:
        raise ValueError(f"dense_width {dense_width} < lanes * lane_bits "
                         f"{lanes * lane_bits}")


class PlaneUnpack(wiring.Component):
    """Dense codes to lanes: ``plane`` lane ``p`` = ``dense`` bits ``[p*bits, (p+1)*bits)``,
    zero-extended. Combinational. ``bits`` above ``lane_bits`` act as ``lane_bits``."""

    def __init__(self, *, lanes, lane_bits, dense_width):
        _check(lanes, lane_bits, dense_width)
        self._lanes, self._lb = lanes, lane_bits
        super().__init__({
            "dense": In(dense_width),
            "bits": In(range(lane_bits + 1)),
            "plane": Out(lanes * lane_bits),
        })

    def elaborate(self, platform):
        m = Module()
        lb = self._lb
        with m.Switch(self.bits):
            for b in range(1, lb + 1):
                # The widest case is the default: the switch is complete (Verilator lint).
                with m.Case(b) if b < lb else m.Default():
                    m.d.comb += self.plane.eq(Cat(*(
                        Cat(self.dense[p * b:(p + 1) * b], Const(0, lb - b))
                        for p in range(self._lanes))))
        return m


class PlanePack(wiring.Component):
    """Lanes to dense codes: ``dense`` bits ``[p*bits, (p+1)*bits)`` = the low ``bits`` of lane
    ``p`` for every lane with ``valid[p]`` set, and 0 for the others and above the last lane.
    Combinational. ``bits`` above ``lane_bits`` act as ``lane_bits``."""

    def __init__(self, *, lanes, lane_bits, dense_width):
        _check(lanes, lane_bits, dense_width)
        self._lanes, self._lb = lanes, lane_bits
        super().__init__({
            "plane": In(lanes * lane_bits),
            "valid": In(lanes),
            "bits": In(range(lane_bits + 1)),
            "dense": Out(dense_width),
        })

    def elaborate(self, platform):
        m = Module()
        lb, n = self._lb, self._lanes
        # A signal, so that the switch below slices it instead of copying the muxes per case.
        kept = Signal(n * lb)
        m.d.comb += kept.eq(Cat(*(Mux(self.valid[p], self.plane[p * lb:(p + 1) * lb], 0)
                                  for p in range(n))))
        with m.Switch(self.bits):
            for b in range(1, lb + 1):
                with m.Case(b) if b < lb else m.Default():
                    m.d.comb += self.dense.eq(Cat(*(kept[p * lb:p * lb + b] for p in range(n))))
        return m
