"""Test helpers for the tiled chip's slot movers (no tests here): parameters covering every
slot case, a ReadDma client's far side modelled as a memory server, and a stream sink with
random back-pressure.

Used by tests/test_tiled_input_loader.py, tests/test_tiled_write_back.py and
tests/test_tiled_skip_fetch.py.
"""

import random
from collections import deque

from amaranth.hdl import Const

from rtl.tiled.params import TiledParams

#: By ``act_width``, with 64-bit memory words: 16 (4 slots per word), 24 (32-bit slots with 8
#: padding bits), 64 (a slot is a word), 128 (two words per slot), 160 (256-bit slots: four
#: words, the last one padding only).
PARAMS = {
    16: TiledParams(wbits=4, abits=4, rows=4, cols=4),
    24: TiledParams(wbits=4, abits=3, rows=4, cols=8),
    64: TiledParams(wbits=4, abits=4, rows=4, cols=16),
    128: TiledParams(wbits=4, abits=4, rows=4, cols=32),
    160: TiledParams(wbits=4, abits=5, rows=4, cols=32),
}


class DmaServer:
    """Answers the requests on ``req`` (stream ``{addr, count}``) with the words of ``mem`` (a
    dict: word address -> value; a read outside it fails the test) on ``rsp``, in order.

    Each request's first word is due a random ``min_latency..max_latency`` cycles after it is
    accepted (never before the previous word), then one word per cycle at best. ``req.ready``
    drops with probability ``stall``; a due word is offered after a bubble with probability
    ``bubbles`` and, once offered, stays valid until taken. ``requests`` lists the accepted
    ``(addr, count)``; ``words`` counts the words taken. When ``clear`` (a signal, e.g. the
    client's) is high at a clock edge, that edge's handshakes do not count and every pending
    word is dropped, as ReadDma's ``clear`` does.
    """

    def __init__(self, req, rsp, mem, *, seed, max_latency=12, stall=0.3, bubbles=0.3,
                 min_latency=1, clear=None):
        self.req, self.rsp, self.mem, self.clear = req, rsp, mem, clear
        self.rng = random.Random(seed)
        self.min_latency, self.max_latency = min_latency, max_latency
        self.stall, self.bubbles = stall, bubbles
        self.requests, self.words = [], 0

    async def bench(self, ctx):
        rng, cycle, due = self.rng, 0, 0
        pending = deque()   # (cycle due, word address)
        offered = None
        while True:
            ready = rng.random() >= self.stall
            ctx.set(self.req.ready, ready)
            if offered is None and pending and pending[0][0] <= cycle \
                    and rng.random() >= self.bubbles:
                offered = self.mem[pending.popleft()[1]]
            ctx.set(self.rsp.valid, offered is not None)
            ctx.set(self.rsp.payload, 0 if offered is None else offered)
            _, _, r_valid, r_req, r_ready, clear = await ctx.tick().sample(
                self.req.valid, self.req.payload, self.rsp.ready,
                Const(0) if self.clear is None else self.clear)
            if clear:
                offered = None
                pending.clear()
                cycle += 1
                continue
            if ready and r_valid:
                addr, count = int(r_req.addr), int(r_req.count)
                assert count >= 1, "a request for 0 words"
                self.requests.append((addr, count))
                due = max(due + 1, cycle + rng.randint(self.min_latency, self.max_latency))
                for i in range(count):
                    pending.append((due + i, (addr + i) % (1 << 32)))
                due += count - 1
            if offered is not None and r_ready:
                offered = None
                self.words += 1
            cycle += 1


async def collect(ctx, port, n, *, backpressure, seed, limit, unpack=int, cycles=None):
    """Take ``n`` payloads from stream ``port`` with ``ready`` dropped at random; fail after
    ``limit`` cycles. Appends each payload's cycle to ``cycles`` when given."""
    rng = random.Random(seed)
    out, cycle = [], 0
    while len(out) < n:
        assert cycle < limit, f"stuck: {len(out)} of {n} payloads after {limit} cycles"
        ready = rng.random() >= backpressure
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            out.append(unpack(payload))
            if cycles is not None:
                cycles.append(cycle)
        cycle += 1
    ctx.set(port.ready, 0)
    return out
