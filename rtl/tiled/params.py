"""The tiled chip's parameters and every size derived from them, defined once.

The compiler (``gen/``), the instruction-level model (``cosim/``) and the RTL components
(``rtl/tiled/``) all read their sizes from a ``TiledParams``: nothing is recomputed elsewhere.

Nothing here grows with the image size. The activation memory is a word-addressed SRAM whose
capacity is a byte parameter (``act_kib``); the weight ring holds ``ring_beats`` beats; the
window a column reads from is ``window_lanes`` codes whatever the row width.
"""

from dataclasses import dataclass

from ..params import check_int

__all__ = ["TiledParams", "next_pow2", "ceil_div", "KERNEL_MAX", "STRIDE_MAX"]

#: Largest kernel a descriptor can express (4-bit field).
KERNEL_MAX = 15
#: Largest convolution stride (the window fetch is sized for it).
STRIDE_MAX = 2


def ceil_div(a, b):
    return -(-a // b)


def next_pow2(n):
    """Smallest power of two ``>= n`` (``n >= 1``)."""
    return 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class TiledParams:
    """Validated parameters of the tiled chip.

    ``wbits``/``abits``: the array's code widths. ``rows``/``cols``: the MAC array (``rows``
    output channels x ``cols`` consecutive output pixels of one row); ``cols`` is a power of
    two and is also the number of lanes of an activation word. ``mem_width``: external memory
    word bits. ``act_kib``: activation memory capacity in KiB. ``ring_beats``: weight ring
    depth in beats (a power of two). ``max_kernel``/``max_in_channels``: the largest kernel and
    the most (slice) input channels of a layer; with the slicing of ``max_bits``-bit end layers
    they bound the accumulator (``acc_width``, see ``acc_bound``). ``max_reads``: external
    reads in flight. ``requant_lanes``: requantizer lanes of the drain (a power of two, at most
    ``cols``); a channel row takes ``cols / requant_lanes`` cycles in it, so a tile of
    ``rows x cols`` results takes ``rows * cols / requant_lanes`` cycles, hidden behind the next
    reduction when that is at least as long (every ResNet20 conv: >= 108 beats). ``acc_cap``:
    when not 0, the ``|acc|`` bound itself, which the compiler checks per layer
    (``gen.tiled_compiler.requirements`` sets it to the model's largest reduction): usually
    tighter than the ``max_*`` bounds, and wider when a column-sum layer (``format``: colsum)
    sums a whole plane; 0: any layer within the ``max_*`` bounds. ``colsum``: the drain can sum
    a logits layer's columns (``format``: colsum), so that a fc behind a global average pool
    runs on every column; without it the compiler folds the pool into a plane-sized kernel.
    """

    wbits: int
    abits: int
    rows: int
    cols: int
    mem_width: int = 64
    act_kib: int = 16
    ring_beats: int = 1024
    max_kernel: int = 8
    max_in_channels: int = 512
    max_bits: int = 8
    max_reads: int = 16
    requant_lanes: int = 2
    acc_cap: int = 0
    colsum: bool = False

    def __post_init__(self):
        check_int("wbits", self.wbits, 2, 16)
        check_int("abits", self.abits, 2, 16)
        check_int("rows", self.rows, 1, 64)
        check_int("cols", self.cols, 2, 64)
        if self.cols & (self.cols - 1):
            raise ValueError(f"cols must be a power of two, not {self.cols}")
        check_int("mem_width", self.mem_width, 16, 1024)
        if self.mem_width & (self.mem_width - 1):
            raise ValueError(f"mem_width must be a power of two, not {self.mem_width}")
        check_int("act_kib", self.act_kib, 1, 1024)
        check_int("ring_beats", self.ring_beats, 16, 1 << 20)
        if self.ring_beats & (self.ring_beats - 1):
            raise ValueError(f"ring_beats must be a power of two, not {self.ring_beats}")
        check_int("max_kernel", self.max_kernel, 1, KERNEL_MAX)
        check_int("max_in_channels", self.max_in_channels, 1, 4095)
        check_int("max_bits", self.max_bits, 2, 16)
        check_int("max_reads", self.max_reads, 2, 256)
        check_int("requant_lanes", self.requant_lanes, 1, self.cols)
        check_int("acc_cap", self.acc_cap, 0)
        if not isinstance(self.colsum, bool):
            raise TypeError(f"colsum must be True or False, not {self.colsum!r}")
        if self.requant_lanes & (self.requant_lanes - 1):
            raise ValueError(f"requant_lanes must be a power of two, not {self.requant_lanes}")
        if self.act_width < 8:
            raise ValueError(f"an activation word (cols*abits = {self.act_width} bits) must "
                             "be at least 8 bits: raise cols")
        if self.act_width > 1024:
            raise ValueError(f"an activation word (cols*abits = {self.act_width} bits) must "
                             "be at most 1024 bits: lower cols")
        for name, n in (("weight", self.w_slices_max), ("activation", self.a_slices_max)):
            if n > 7:
                raise ValueError(f"max_bits {self.max_bits} needs {n} {name} slices on this "
                                 "array; a descriptor holds at most 7: raise wbits/abits or "
                                 "lower max_bits")
        if self.acc_width > 64:
            raise ValueError(f"the accumulators would need {self.acc_width} bits (> 64); lower "
                             "max_in_channels, max_kernel or max_bits")

    # -------------------------------------------------------------- activation words
    @property
    def lanes(self):
        """Codes per activation word: ``cols`` consecutive pixels of one channel row."""
        return self.cols

    @property
    def act_width(self):
        """Bits of an activation word (``cols * abits``)."""
        return self.cols * self.abits

    @property
    def slot_bits(self):
        """Bits an activation word takes in external memory: the next power of two of
        ``act_width``, so that words never straddle a memory word unevenly."""
        return next_pow2(self.act_width)

    @property
    def slots_per_word(self):
        """Activation words per external memory word (1 when a slot is a word or more)."""
        return max(1, self.mem_width // self.slot_bits)

    @property
    def words_per_slot(self):
        """External memory words per activation word (1 when a slot is a word or less)."""
        return max(1, self.slot_bits // self.mem_width)

    @property
    def act_depth(self):
        """Words of the activation memory (even: it is two interleaved banks)."""
        return (self.act_kib * 8192 // self.act_width) & ~1

    @property
    def act_addr_bits(self):
        return max(1, (self.act_depth - 1).bit_length())

    # -------------------------------------------------------------- slicing, accumulators
    @property
    def w_slices_max(self):
        return ceil_div(self.max_bits, self.wbits)

    @property
    def a_slices_max(self):
        return ceil_div(self.max_bits, self.abits)

    @property
    def max_shift(self):
        """Largest per-beat shift: top weight slice and top activation slice."""
        return self.wbits * (self.w_slices_max - 1) + self.abits * (self.a_slices_max - 1)

    @property
    def max_reduction(self):
        """Most beats of one reduction: slice input channels x kernel^2 x weight slices."""
        return self.max_in_channels * self.max_kernel ** 2 * self.w_slices_max

    @property
    def shifts(self):
        """The legal per-beat shifts ``wbits*j + abits*i`` (weight slice ``j``, activation slice
        ``i``): the MAC array selects among these few instead of a barrel shifter."""
        return tuple(sorted({self.wbits * j + self.abits * i
                             for j in range(self.w_slices_max)
                             for i in range(self.a_slices_max)}))

    @property
    def acc_bound(self):
        """Largest ``|acc|`` of any reduction the chip accepts, at every partial sum.

        A layer with ``ws`` weight and ``as`` activation slices and ``n`` original input
        channels (``n * as <= max_in_channels`` slice channels) sums, per channel and kernel
        position, ``ws * as`` beats of ``|odd_j| * a_i * 2**(wbits*j + abits*i)``; with
        ``|odd_j| <= 2**wbits - 1`` and ``a_i <= 2**abits - 1`` those add up to at most
        ``(2**(wbits*ws) - 1) * (2**(abits*as) - 1)``. The bound is the largest of
        ``(max_in_channels // as) * max_kernel**2 * (2**(wbits*ws) - 1) * (2**(abits*as) - 1)``
        over the legal ``ws``, ``as``: exact for the widest case, where the old bound
        (``max_reduction`` products each shifted by ``max_shift``) counted every slice twice.
        ``acc_cap``, when set, replaces it: the compiler guarantees that bound per layer, which
        is tighter for a model needing less and wider for a column sum over a whole plane (no
        parameter bounds the plane: nothing on the chip grows with the image).
        """
        bound = max(self.layer_acc_bound(self.max_in_channels // a, self.max_kernel, w, a,
                                         self.wbits, self.abits)
                    for w in range(1, self.w_slices_max + 1)
                    for a in range(1, self.a_slices_max + 1))
        return self.acc_cap if self.acc_cap else bound

    @staticmethod
    def layer_acc_bound(in_channels, kernel, w_slices, a_slices, wbits, abits):
        """``|acc|`` bound of one layer (``in_channels`` original channels, sliced as given):
        ``in_channels * kernel**2 * (2**(wbits*w_slices) - 1) * (2**(abits*a_slices) - 1)``
        (see ``acc_bound``)."""
        return (in_channels * kernel ** 2 * ((1 << wbits * w_slices) - 1)
                * ((1 << abits * a_slices) - 1))

    @property
    def acc_width(self):
        """Two's-complement width holding ``[-acc_bound, acc_bound]``."""
        return self.acc_bound.bit_length() + 1

    # -------------------------------------------------------------- window, weights
    @property
    def window_lanes(self):
        """Codes of an aligned window: column ``c`` at kernel column ``kx`` reads lane
        ``stride*c + kx``."""
        return STRIDE_MAX * (self.cols - 1) + self.max_kernel

    @property
    def window_words(self):
        """Most activation words one window spans (its first pixel may sit at any lane)."""
        return ceil_div(self.cols - 1 + self.window_lanes, self.cols)

    @property
    def beat_bits(self):
        """Bits of one weight beat: ``rows`` codes."""
        return self.rows * self.wbits

    @property
    def ring_bits(self):
        return self.ring_beats * self.beat_bits

    @property
    def macs_per_cycle(self):
        return self.rows * self.cols

    def on_chip_bytes(self):
        """Bytes of the on-chip buffers: activation memory, weight ring, constants registers
        (two channel tiles of 102-bit records)."""
        from ..chip_format import CONSTS

        return {
            "activations": self.act_depth * self.act_width // 8,
            "weights": self.ring_bits // 8,
            "constants": 2 * self.rows * CONSTS.size // 8,
        }

    def derived(self):
        """The derived sizes, for the manifest."""
        return {
            "lanes": self.lanes,
            "act_width": self.act_width,
            "slot_bits": self.slot_bits,
            "act_depth": self.act_depth,
            "w_slices_max": self.w_slices_max,
            "a_slices_max": self.a_slices_max,
            "max_shift": self.max_shift,
            "max_reduction": self.max_reduction,
            "acc_width": self.acc_width,
            "shifts": list(self.shifts),
            "window_lanes": self.window_lanes,
            "window_words": self.window_words,
            "beat_bits": self.beat_bits,
            "ring_bits": self.ring_bits,
            "on_chip_bytes": self.on_chip_bytes(),
            "macs_per_cycle": self.macs_per_cycle,
        }
