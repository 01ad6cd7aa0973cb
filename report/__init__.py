"""``pact report``: the bit-width trade-off, measured on our own generated RTL.

One module per section (``config``: the sweep and its arguments; ``area``, ``cycles``,
``accuracy``, ``sim_speed``; ``render``: tables, Markdown, HTML, plots; ``build``: the
assembly and the command), re-exported here.

    pact report --out report/                     # the full sweep
    pact report --out report/ --quick --bits 2,4  # a reduced sweep (about a minute)

The full sweep took 5.5 minutes on 2 cores with only the training runs cached (12 syntheses,
7 chips generated, built and simulated from cold), 3 minutes fully cached; the 18 trainings
add about 2 minutes. Every cache is keyed by content: a re-run redoes only what changed.

Writes ``DIR/report.json`` (every number, under stable keys), ``DIR/report.md``,
``DIR/report.html`` (self-contained: tables and the plots inlined) and the PNG plots
``DIR/area.png``, ``DIR/cycles_bytes.png``, ``DIR/accuracy.png``, ``DIR/sim_speed.png``.

Sections (``--sections``, all by default):

``area``
    Yosys generic-gate synthesis (``gen.area``) of the ``MacArray`` and the ``PactUnit`` as
    ``pact gen`` emits them, for every k in ``--bits`` (weights = activations = k), on a small
    ``--area-rows`` x ``--area-cols`` array with ``--max-reduction`` (the array is a grid of
    identical MACs, so the area per MAC is the total over ``rows * cols``). Per block and k:
    cells, gates, flip-flops, a CMOS transistor estimate, per MAC (or per PACT lane), and the
    ratio to 16-bit ``area(16) / area(k)`` (how many more MACs fit in the same area). The paper
    reports about 14x from 16 to 2 bits.
``cycles`` and ``bytes``
    The digits CNN (``golden.models.describe_cnn``'s shapes; random codes in range, since
    neither cycles nor traffic depend on the values) compiled for and run on the generated chip
    (``--rows`` x ``--cols``, the same ``--mem-width`` port for every k) at each k of
    ``--chip-bits`` that is also in ``--bits``: k-bit hidden layers, first and last layers at
    ``max(8, k)`` bits (the paper's policy; the 16-bit baseline is 16-bit throughout). Cycles
    are simulated (``cosim.chip_tb``, every layer checked ``==`` against the integer reference);
    bytes are counted from the compiled program: every word the DMA must read (descriptors,
    weights, constants, the input) and write (every layer's output tensor, as this chip does).
    Iso-area (``cycles_iso_area``): each k below 16 again, on an array with as many times more
    MACs as fit in the 16-bit array's area (the MacArray ratio, rounded down to a power of two).
    Speed-up 16 -> 4: measured on the same array and at iso-area, and the bounds (compute: MAC
    beats; bandwidth: bytes). The paper: up to 4.5x, iso-area, when memory bandwidth limits.
``accuracy``
    ``golden.train`` on digits for float and each k of ``--bits`` up to 8, ``--seeds`` seeds,
    then the integer reference on the test set (runs cached under ``--runs``).
``sim_speed``
    Simulated cycles per second of the whole chip on Icarus and Verilator (``--sims``): with the
    clock inside the HDL (the chip running on its own, Python only awaiting ``done``), driven by
    cocotb's C++ clock, and toggled from Python every half cycle (``cosim.sim_speed``).

``payoff`` and ``fpga`` (only when named in ``--sections``)
    PACT's payoff on the tiled chip (``report.payoff``: MAC area ratios 16 -> 2 and 16 -> 4,
    the requantizer's share of the array, the iso-area speed-up 16 -> 4 simulated bit-exact)
    and the 8x8 tiled chip on a Lattice ECP5 per k (``report.fpga``, ``gen.fpga``), under
    ``report.json``'s ``payoff`` object (``fpga`` inside it).

``report.json`` keys: ``area`` (``mac_array``/``pact_unit`` -> k -> figures, and
``pact_share``), ``cycles`` and ``bytes`` (k -> figures), ``cycles_iso_area`` (k -> figures),
``speedup_16_to_4``, ``accuracy`` (``float``/k -> mean, std, min, max, values), ``sim_speed``
(simulator -> clock source -> figures), ``settings`` (with the regenerating ``command``),
``paper``, ``times``, ``machine``. Bit-widths are string keys ("2", "16").
"""

from report.accuracy import accuracy_section
from report.area import area_ratios, area_section, pact_share
from report.build import build_report, run
from report.config import (
    ALL_SECTIONS,
    DEFAULT_BITS,
    DEFAULT_CHIP_BITS,
    END_BITS,
    PAPER,
    PLOTS,
    REPORT_FORMAT,
    REPORT_VERSION,
    SIMS,
    SPEED_IMAGES,
    SPEED_MODES,
    ReportConfig,
    add_arguments,
    config_from_args,
)
from report.cycles import (
    chip_hw_params,
    chip_network,
    cycles_section,
    iso_area_array,
    iso_area_section,
    speedup,
    traffic,
)
from report.render import headline, render_html, render_markdown, tables, write_plots, write_report
from report.sim_speed import sim_speed_section

__all__ = [
    "ALL_SECTIONS", "DEFAULT_BITS", "PAPER", "ReportConfig", "area_section", "cycles_section",
    "iso_area_section", "accuracy_section", "sim_speed_section", "area_ratios", "pact_share",
    "iso_area_array", "traffic", "speedup", "build_report", "tables", "headline",
    "render_markdown", "render_html", "write_plots", "write_report", "add_arguments", "run",
    "DEFAULT_CHIP_BITS", "END_BITS", "PLOTS", "REPORT_FORMAT", "REPORT_VERSION", "SIMS",
    "SPEED_IMAGES", "SPEED_MODES", "chip_hw_params", "chip_network", "config_from_args",
]
