"""The MAC array: an output-stationary outer-product array of k-bit multiply-accumulate units.

Dataflow (output-stationary, outer product). Each input beat carries one weight code per row
(``w[r]``, the output channel) and one activation code per column (``a[c]``, the output position).
Every processing element ``PE(r, c)`` multiplies the odd weight value of its row by the
activation of its column and adds it to its own accumulator; after the ``last`` beat of a
reduction the ``rows x cols`` sums leave on ``o`` at once. One beat is ``rows * cols`` MACs, so
the array sustains ``rows * cols`` MACs per cycle when the input has no bubbles and ``o`` is
consumed in time.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["MacArray", "input_layout", "output_layout", "accumulator_bound", "accumulator_width",
           "check_parameters"]

#: Range of the weight and activation code widths.
MIN_BITS, MAX_BITS = 2, 16


def accumulator_bound(wbits, abits, max_reduction, max_shift=0):
    """Largest ``|acc|``: ``max_reduction`` products, each ``<= (2**wbits-1)(2**abits-1)``
    in magnitude, shifted left by at most ``max_shift``.

    The odd weight value ``2q - (2**wbits - 1)`` lies in ``[-(2**wbits-1), 2**wbits-1]`` and
    the activation code in ``[0, 2**abits - 1]``.
    """
    return max_reduction * ((1 << wbits) - 1) * ((1 << abits) - 1) << max_shift


def accumulator_width(wbits, abits, max_reduction, max_shift=0):
    """Two's-complement width that holds ``[-bound, bound]``: ``bound.bit_length() + 1``.

    With ``max_shift == 0`` this equals ``golden.integer.accumulator_width``.
    """
    return accumulator_bound(wbits, abits, max_reduction, max_shift).bit_length() + 1


def shift_width(max_shift):
    """Width of the per-beat ``shift`` field (one bit even when it is always 0)."""
    return max(1, max_shift.bit_length())


def input_layout(wbits, abits, rows, cols, max_shift=0):
    """Payload layout of ``MacArray.i``; also used by the benches to pack beats."""
    return data.StructLayout({
        "w": data.ArrayLayout(unsigned(wbits), rows),
        "a": data.ArrayLayout(unsigned(abits), cols),
        "shift": unsigned(shift_width(max_shift)),
        "first": 1,
        "last": 1,
    })


def output_layout(acc_width, rows, cols):
    """Payload layout of ``MacArray.o``: ``o.payload[r][c]`` is the sum of ``PE(r, c)``."""
    return data.ArrayLayout(data.ArrayLayout(signed(acc_width), cols), rows)


def check_parameters(*, wbits, abits, rows, cols, max_reduction, max_shift=0):
    """Raise ``ValueError`` (``TypeError`` for a non-integer) naming the first bad parameter."""
    check_int("wbits", wbits, MIN_BITS, MAX_BITS)
    check_int("abits", abits, MIN_BITS, MAX_BITS)
    check_int("rows", rows, 1)
    check_int("cols", cols, 1)
    check_int("max_reduction", max_reduction, 1)
    check_int("max_shift", max_shift, 0)


#: Activation codes this wide or narrower are multiplied as a sum of shifted copies of the
#: odd weight, one per activation bit, instead of with ``*``: FPGA synthesis (Yosys
#: ``synth_ecp5``) maps every ``*`` of at least 2x2 bits onto a MULT18X18D block, so each
#: 2-bit MAC would take a whole 18x18 multiplier; the shift-add form is the few LUTs such a
#: MAC needs. Wider codes keep ``*`` (a DSP block is then the right home for it).
SHIFT_ADD_MAX_BITS = 4


def _product(odd, a):
    """``odd * a`` (``a`` unsigned), exactly; see ``SHIFT_ADD_MAX_BITS``."""
    if len(a) > SHIFT_ADD_MAX_BITS:
        return odd * a
    out = Mux(a[0], odd, 0)
    for i in range(1, len(a)):
        out = out + Mux(a[i], odd << i, 0)
    return out


def _select_shift(product, sel, shifts):
    """``product << v`` for the one ``v`` of ``shifts`` whose select is high: an AND-OR mux of
    ``len(shifts)`` inputs (one-hot selects), far smaller than a barrel shifter."""
    terms = [Mux(s, product << v, 0) for s, v in zip(sel, shifts, strict=True)]
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


class MacArray(wiring.Component):
    """``rows x cols`` output-stationary MAC array for DoReFa weights and unsigned activations.

    Parameters
    ----------
    wbits, abits : int
        Weight and activation code widths, each 2..16.
    rows, cols : int
        Array size: ``rows`` output channels times ``cols`` output positions (>= 1 each).
    max_reduction : int
        Most beats in one reduction (``first`` to ``last`` inclusive), >= 1.
    max_shift : int
        Largest per-beat left shift (for bit-sliced operands wider than the array), >= 0.
    acc_width : int or None
        Accumulator width when the caller knows a tighter bound than the one below (the tiled
        chip: ``TiledParams.acc_bound``, exact for bit-sliced reductions); ``None`` (default)
        derives it from ``max_reduction`` and ``max_shift``. The caller owns the bound.
    shifts : tuple of int or None
        The legal per-beat shifts (the tiled chip: ``wbits*j + abits*i``, a handful); the
        product is then shifted by a small mux over them, selected by ``shift``, instead of a
        barrel shifter. A shift outside the tuple is outside the contract. ``None``
        (default): any shift ``0..max_shift``.

    Ports
    -----
    i : In(stream.Signature(input_layout(...)))
        ``w[r]``: weight code of row ``r``; ``a[c]``: activation code of column ``c``;
        ``shift``: products of this beat are shifted left by it (must be ``<= max_shift``;
        0 when ``max_shift == 0``); ``first``: the accumulators load the product instead of
        adding it; ``last``: the finished sums are emitted on ``o``.
    o : Out(stream.Signature(output_layout(...)))
        ``o.payload[r][c] = sum over the reduction of (2*w[r] - (2**wbits-1)) * a[c] << shift``,
        exactly ``golden.integer`` (odd weight values).

    Accumulator bound: ``|acc| <= max_reduction * (2**wbits-1) * (2**abits-1) * 2**max_shift``,
    so ``acc_width = bound.bit_length() + 1`` bits never overflow for any reduction of at most
    ``max_reduction`` beats. Reductions longer than ``max_reduction``, or shifts above
    ``max_shift``, are outside the contract.

    Timing. Latency 1: the sums of a reduction whose ``last`` beat is accepted in cycle ``t``
    are valid on ``o`` in cycle ``t + 1``. On ``last`` the sums are written into a separate
    output register, so the next reduction starts in the very next cycle: no bubble between
    reductions. ``i.ready`` is low only while a ``last`` beat is offered and the previous
    result is still waiting on ``o`` (``o.valid & ~o.ready``); beats that are not ``last``
    are always accepted. Peak throughput: one beat, ``rows * cols`` MACs, per cycle.
    """

    def __init__(self, *, wbits, abits, rows, cols, max_reduction, max_shift=0, acc_width=None,
                 shifts=None):
        try:
            check_parameters(wbits=wbits, abits=abits, rows=rows, cols=cols,
                             max_reduction=max_reduction, max_shift=max_shift)
            if acc_width is not None:
                check_int("acc_width", acc_width, 2, 64)
            if shifts is not None:
                shifts = tuple(sorted(set(shifts)))
                for v in shifts:
                    check_int("shifts", v, 0, max_shift)
        except (TypeError, ValueError):
            self._MustUse__used = True  # a rejected block is not an unused one
            raise
        self._wbits, self._abits = wbits, abits
        self._rows, self._cols = rows, cols
        self._max_reduction, self._max_shift = max_reduction, max_shift
        self._acc_width = (accumulator_width(wbits, abits, max_reduction, max_shift)
                           if acc_width is None else acc_width)
        self._shifts = shifts
        super().__init__({
            "i": In(stream.Signature(input_layout(wbits, abits, rows, cols, max_shift))),
            "o": Out(stream.Signature(output_layout(self._acc_width, rows, cols))),
        })

    wbits = property(lambda self: self._wbits, doc="Weight code width.")
    abits = property(lambda self: self._abits, doc="Activation code width.")
    rows = property(lambda self: self._rows, doc="Rows (output channels).")
    cols = property(lambda self: self._cols, doc="Columns (output positions).")
    max_reduction = property(lambda self: self._max_reduction, doc="Most beats per reduction.")
    max_shift = property(lambda self: self._max_shift, doc="Largest per-beat left shift.")
    acc_width = property(lambda self: self._acc_width, doc="Accumulator and output width.")

    def elaborate(self, platform):
        m = Module()
        beat = self.i.payload
        offset = (1 << self._wbits) - 1
        take = self.i.valid & self.i.ready
        emit = take & beat.last

        # A finished result may only be overwritten once it has been handed over.
        m.d.comb += self.i.ready.eq(~beat.last | ~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(emit):
            m.d.sync += self.o.valid.eq(1)

        # The odd weight value per row: wbits + 1 bits, signed.
        odd = [Signal(signed(self._wbits + 1), name=f"odd{r}") for r in range(self._rows)]
        for r in range(self._rows):
            m.d.comb += odd[r].eq(beat.w[r] * 2 - offset)

        # With a legal-shift set, one decoded select per beat (shared by every PE).
        sel = None
        if self._shifts is not None and self._max_shift:
            sel = [Signal(name=f"shift_is_{v}") for v in self._shifts]
            m.d.comb += [s.eq(beat.shift == v) for s, v in zip(sel, self._shifts, strict=True)]

        for r in range(self._rows):
            for c in range(self._cols):
                acc = Signal(signed(self._acc_width), name=f"acc_{r}_{c}")
                product = _product(odd[r], beat.a[c])
                if sel is not None:
                    product = _select_shift(product, sel, self._shifts)
                elif self._max_shift:
                    product = product << beat.shift
                total = Signal(signed(self._acc_width), name=f"sum_{r}_{c}")
                m.d.comb += total.eq(Mux(beat.first, 0, acc) + product)
                with m.If(take):
                    m.d.sync += acc.eq(total)
                with m.If(emit):
                    m.d.sync += self.o.payload[r][c].eq(total)
        return m
