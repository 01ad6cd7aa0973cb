"""The PACT clip-and-quantize unit: accumulators in, k-bit activation codes out.

It computes ``golden.integer.requantize`` bit for bit, per lane::

    out = clamp(round_half_up_shift(M * acc + B, S))

with ``M`` signed ``REQUANT_MULT_BITS``, ``B`` signed ``REQUANT_OFFSET_BITS`` and
``1 <= S <= REQUANT_MAX_SHIFT``. The clamp is PACT's clip at alpha (unsigned ``out_bits``) or,
for the logits layer, a signed saturation.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.integer import REQUANT_MAX_SHIFT, REQUANT_MULT_BITS, REQUANT_OFFSET_BITS

from .params import check_int

__all__ = ["PactUnit", "input_layout", "output_layout", "LATENCY"]

#: Cycles from an accepted input beat to its result on ``o`` (without back-pressure).
LATENCY = 3
#: Width of the per-lane shift field (holds ``REQUANT_MAX_SHIFT``).
SHIFT_BITS = REQUANT_MAX_SHIFT.bit_length()
#: Accepted ``out_bits`` (activation codes are 2..16 bits, logits ``LOGIT_BITS``).
MIN_OUT_BITS, MAX_OUT_BITS = 2, 32
#: Accepted accumulator widths.
MIN_ACC_WIDTH, MAX_ACC_WIDTH = 2, 64


def input_layout(acc_width, lanes):
    """Payload layout of ``PactUnit.i``; also used by the benches to pack beats."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), lanes),
        "mult": data.ArrayLayout(signed(REQUANT_MULT_BITS), lanes),
        "offset": data.ArrayLayout(signed(REQUANT_OFFSET_BITS), lanes),
        "shift": data.ArrayLayout(unsigned(SHIFT_BITS), lanes),
    })


def output_layout(out_bits, lanes, signed_out=False):
    """Payload layout of ``PactUnit.o``: one code per lane."""
    shape = signed(out_bits) if signed_out else unsigned(out_bits)
    return data.ArrayLayout(shape, lanes)


class PactUnit(wiring.Component):
    """Requantize ``lanes`` accumulators per cycle to ``out_bits`` codes, as ``golden.integer``.

    Parameters
    ----------
    acc_width : int
        Width of the signed accumulators (2..64), e.g. ``MacArray.acc_width``.
    out_bits : int
        Width of the output codes (2..32): ``abits`` for a PACT layer, ``LOGIT_BITS`` for logits.
    lanes : int
        Independent lanes, each with its own constants (>= 1).
    signed_out : bool
        Saturate to signed ``out_bits`` (logits) instead of clamping to ``[0, 2**out_bits-1]``.

    Ports
    -----
    i : In(stream.Signature(input_layout(acc_width, lanes)))
        Per lane: ``acc`` the accumulator, ``mult`` the multiplier ``M``, ``offset`` the offset
        ``B``, ``shift`` the rounding shift ``S`` (1..``REQUANT_MAX_SHIFT``; 0 is outside the
        contract).
    o : Out(stream.Signature(output_layout(out_bits, lanes, signed_out)))
        ``clamp(floor((M*acc + B + 2**(S-1)) / 2**S))`` per lane: rounding half up.

    Pipeline: three register stages (multiply; add and rounding shift; clamp). A beat accepted in
    cycle ``t`` is valid on ``o`` in cycle ``t + 3``; one beat per cycle in steady state. Stall
    is global: while ``o.valid & ~o.ready`` no stage moves and ``i.ready`` is low.
    """

    def __init__(self, *, acc_width, out_bits, lanes=1, signed_out=False):
        try:
            check_int("acc_width", acc_width, MIN_ACC_WIDTH, MAX_ACC_WIDTH)
            check_int("out_bits", out_bits, MIN_OUT_BITS, MAX_OUT_BITS)
            check_int("lanes", lanes, 1)
            if not isinstance(signed_out, bool):
                raise TypeError(f"signed_out must be a bool, not {signed_out!r}")
        except (TypeError, ValueError):
            self._MustUse__used = True  # a rejected block is not an unused one
            raise
        self._acc_width, self._out_bits = acc_width, out_bits
        self._lanes, self._signed_out = lanes, signed_out
        super().__init__({
            "i": In(stream.Signature(input_layout(acc_width, lanes))),
            "o": Out(stream.Signature(output_layout(out_bits, lanes, signed_out))),
        })

    acc_width = property(lambda self: self._acc_width, doc="Accumulator width.")
    out_bits = property(lambda self: self._out_bits, doc="Output code width.")
    lanes = property(lambda self: self._lanes, doc="Lanes per beat.")
    signed_out = property(lambda self: self._signed_out, doc="Signed saturation (logits).")
    latency = property(lambda self: LATENCY, doc="Cycles from input beat to output.")

    @property
    def sum_width(self):
        """Width of ``M*acc + B``: it cannot overflow (one bit above the wider addend)."""
        return max(self._acc_width + REQUANT_MULT_BITS, REQUANT_OFFSET_BITS) + 1

    def elaborate(self, platform):
        m = Module()
        beat = self.i.payload
        # Global stall: every stage moves only when the output register can take a value.
        move = Signal()
        m.d.comb += [
            move.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(move),
        ]
        valid1, valid2 = Signal(), Signal()
        with m.If(move):
            m.d.sync += [
                valid1.eq(self.i.valid),
                valid2.eq(valid1),
                self.o.valid.eq(valid2),
            ]

        if self._signed_out:
            lo, hi = -(1 << (self._out_bits - 1)), (1 << (self._out_bits - 1)) - 1
        else:
            lo, hi = 0, (1 << self._out_bits) - 1

        for n in range(self._lanes):
            # Stage 1: the product; offset and shift travel alongside.
            product = Signal(signed(self._acc_width + REQUANT_MULT_BITS), name=f"product{n}")
            offset1 = Signal(signed(REQUANT_OFFSET_BITS), name=f"offset{n}")
            shift1 = Signal(unsigned(SHIFT_BITS), name=f"shift{n}")
            # Stage 2: floor((x) / 2**(S-1)) with x = M*acc + B. Rounding half up by S is then
            # floor((q + 1) / 2): adding 2**(S-1) before shifting by S is the same as adding 1
            # after shifting by S-1, and needs no variable-width constant.
            x = Signal(signed(self.sum_width), name=f"x{n}")
            shift_less1 = Signal(unsigned(SHIFT_BITS), name=f"shift_less1_{n}")
            q = Signal(signed(self.sum_width), name=f"q{n}")
            y = Signal(signed(self.sum_width), name=f"y{n}")
            m.d.comb += [
                x.eq(product + offset1),
                shift_less1.eq(shift1 - 1),
                y.eq((q + 1) >> 1),
            ]
            with m.If(move):
                m.d.sync += [
                    product.eq(beat.mult[n] * beat.acc[n]),
                    offset1.eq(beat.offset[n]),
                    shift1.eq(beat.shift[n]),
                    q.eq(x >> shift_less1),
                    # Stage 3: the clamp (PACT's clip at alpha, or signed saturation).
                    self.o.payload[n].eq(Mux(y < lo, lo, Mux(y > hi, hi, y))),
                ]
        return m
