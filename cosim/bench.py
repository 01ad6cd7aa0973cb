"""Parts of the cocotb benches: TB (clock, reset), stream driver, stream monitor, checker.

Timing discipline (the same on Icarus and Verilator): drivers change inputs just after a rising
edge; handshakes are sampled at the falling edge, when every combinational path has settled
for the coming rising edge. A transfer happens at a rising edge when ``valid & ready`` was
sampled high just before it.

The bench's parameters come from the JSON file named by ``PACT_TB_CONFIG`` (written by
``cosim.runner.run``); the summary goes to the file named by ``PACT_TB_RESULT``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

__all__ = ["TB", "StreamDriver", "StreamMonitor", "InOrderChecker", "load_config",
           "write_summary"]

#: Clock period of every bench.
PERIOD_NS = 10


def load_config() -> dict[str, Any]:
    """The bench parameters: the JSON file named by ``PACT_TB_CONFIG``."""
    with open(os.environ["PACT_TB_CONFIG"]) as f:
        config: dict[str, Any] = json.load(f)
    return config


def write_summary(summary: Mapping[str, Any]) -> None:
    """Write the summary JSON for ``pact sim`` and the pytest side (atomic rename)."""
    path = os.environ.get("PACT_TB_RESULT")
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


class TB:
    """Owns the clock and reset of a DUT with Amaranth's ``clk``/``rst`` ports, counts cycles."""

    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.cycle = 0
        Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False)
        cocotb.start_soon(self._count())

    async def _count(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def reset(self, cycles: int = 3) -> None:
        """Hold ``rst`` for ``cycles`` rising edges with every stream idle, then release it."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)


class StreamDriver:
    """Drives ``<prefix>__valid``/``__payload`` of a stream, with random bubbles.

    A word stays on the bus with ``valid`` high until it is taken (no retraction).
    """

    def __init__(self, dut: Any, prefix: str, *, rng: random.Random, bubbles: float = 0.0,
                 tb: TB | None = None) -> None:
        self.clk = dut.clk
        self.tb = tb
        self.first_cycle: int | None = None  # of accepted words (needs ``tb``)
        self.last_cycle: int | None = None
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.rng, self.bubbles = rng, bubbles
        self.queue: deque[int] = deque()
        self.sent = 0
        self.valid.value = 0

    def send(self, words: Iterable[int]) -> None:
        self.queue.extend(words)

    async def run(self) -> None:
        presenting = False
        while True:
            if not presenting and self.queue and self.rng.random() >= self.bubbles:
                self.payload.value = self.queue[0]
                self.valid.value = 1
                presenting = True
            await FallingEdge(self.clk)
            taken = presenting and int(self.ready.value)
            await RisingEdge(self.clk)
            if taken:
                if self.tb is not None:
                    self.last_cycle = self.tb.cycle
                    if self.first_cycle is None:
                        self.first_cycle = self.last_cycle
                self.queue.popleft()
                self.sent += 1
                presenting = False
                self.valid.value = 0


class StreamMonitor:
    """Drives ``<prefix>__ready`` with random back-pressure, calls ``sink(payload, cycle)`` per
    transfer."""

    def __init__(self, dut: Any, prefix: str, tb: TB, sink: Callable[[int, int], object], *,
                 rng: random.Random, backpressure: float = 0.0) -> None:
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.tb, self.sink = tb, sink
        self.rng, self.backpressure = rng, backpressure
        self.received = 0
        self.ready.value = 0

    async def run(self) -> None:
        while True:
            ready = self.rng.random() >= self.backpressure
            self.ready.value = int(ready)
            await FallingEdge(self.clk)
            if ready and int(self.valid.value):
                self.received += 1
                self.sink(int(self.payload.value), self.tb.cycle)
            await RisingEdge(self.clk)


class InOrderChecker:
    """Compares each received result with the next expected one, with ``==``.

    ``expected`` are the golden values in order; ``decode`` turns a raw payload into the same
    form. Mismatches are counted, and the first few are kept for the report.
    """

    def __init__(self, expected: Iterable[Any], decode: Callable[[int], Any], *,
                 keep: int = 5) -> None:
        self.expected = deque(expected)
        self.total = len(self.expected)
        self.decode = decode
        self.keep = keep
        self.checked = 0
        self.mismatches = 0
        self.first: list[dict[str, Any]] = []
        self.last_cycle: int | None = None

    def __call__(self, raw: int, cycle: int) -> None:
        got = self.decode(raw)
        self.last_cycle = cycle
        if not self.expected:
            self._mismatch({"index": self.checked, "cycle": cycle, "got": got,
                            "expected": "nothing (extra output)"})
            return
        want = self.expected.popleft()
        if got != want:
            self._mismatch({"index": self.checked, "cycle": cycle, "got": got,
                            "expected": want})
        self.checked += 1

    def _mismatch(self, record: dict[str, Any]) -> None:
        self.mismatches += 1
        if len(self.first) < self.keep:
            self.first.append(record)

    @property
    def done(self) -> bool:
        return not self.expected

    def finish(self) -> int:
        """Missing outputs count as mismatches; returns the total number of mismatches."""
        missing = len(self.expected)
        if missing:
            self._mismatch({"index": self.checked, "missing": missing})
            self.mismatches += missing - 1
        return self.mismatches


async def run_until_checked(tb: TB, checker: InOrderChecker, max_cycles: int) -> None:
    """Wait until ``checker`` has everything or ``max_cycles`` pass (a hang is a failure)."""
    start = tb.cycle
    while not checker.done and tb.cycle - start < max_cycles:
        await RisingEdge(tb.dut.clk)
    # A few more cycles so that an unexpected extra output would be seen.
    for _ in range(8):
        await RisingEdge(tb.dut.clk)


def rngs(seed: int) -> tuple[random.Random, random.Random]:
    """Independent random streams for the driver and the monitor, from one seed."""
    return random.Random(f"{seed}-driver"), random.Random(f"{seed}-monitor")


async def run_stream_bench(tb: TB, config: Mapping[str, Any], words: list[int],
                           checker: InOrderChecker, *,
                           sink: Callable[[int, int], object] | None = None
                           ) -> tuple[StreamDriver, int, float]:
    """Reset, then stream ``words`` into ``i`` (random bubbles) while ``o`` (random
    back-pressure) feeds ``sink`` (default: ``checker``), until ``checker`` has every result.

    ``config`` gives ``seed``, ``bubbles`` and ``backpressure``. Returns ``(driver, cycles,
    wall_start)``: the driver (its accepted-beat cycles), the cycles from the end of reset to
    the last result, and the ``time.perf_counter()`` at the end of reset.
    """
    dut = tb.dut
    drv_rng, mon_rng = rngs(config["seed"])
    driver = StreamDriver(dut, "i", rng=drv_rng, bubbles=config.get("bubbles", 0.0), tb=tb)
    monitor = StreamMonitor(dut, "o", tb, checker if sink is None else sink, rng=mon_rng,
                            backpressure=config.get("backpressure", 0.0))
    await tb.reset()
    wall = time.perf_counter()
    start = tb.cycle
    driver.send(words)
    cocotb.start_soon(driver.run())
    cocotb.start_soon(monitor.run())
    await run_until_checked(tb, checker, max_cycles=20 * len(words) + 1000)
    return driver, (checker.last_cycle or tb.cycle) - start, wall


def summarize(block: str, config: Mapping[str, Any], checker: InOrderChecker, cycles: int,
              wall_start: float, **extra: Any) -> dict[str, Any]:
    """The bench summary (also what ``pact sim`` prints and writes); ``cycles`` from the end of
    reset to the last result."""
    return {
        "block": block,
        "params": config.get("params", {}),
        "seed": config.get("seed"),
        "vectors": checker.total,
        "checked": checker.checked,
        "mismatches": checker.mismatches,
        "first_mismatches": checker.first,
        "cycles": cycles,
        "sim_wall_seconds": round(time.perf_counter() - wall_start, 3),
        **extra,
    }
