"""A stand-in for a camera behind the DV software: serves a synthetic moving edge as a DV
event stream on 127.0.0.1, then exits, so that the stream stops under a connected reader.

    python tests/dvserver.py PORT --seconds S --rate EV_PER_S --width 346 --height 260 [--prebuilt]

Prints "ready" once listening and "sent N" at the end. Run as a second process by the tests and bench/pipeline.py.
dv's Python API builds an event store one event at a time (~0.5 µs an event), which caps a
server that converts as it goes near 1 Mev/s; --prebuilt converts the whole stream before
"ready" and then only sends, as a camera does, so the reader side can be measured at higher rates.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: find `streaming`

from streaming.datatypes import EventPacket  # noqa: E402
from streaming.outputs.event_server import serve_events  # noqa: E402
from streaming.sources.dv import to_event_store  # noqa: E402

TICK_S = 0.01  # one packet every 10 ms, like a camera's USB transfers
EDGE_PX_PER_S = 200.0


class MovingEdge:
    """A vertical edge sweeping right at EDGE_PX_PER_S, one packet a tick, stamped from the
    wall clock at the first packet."""
    live = True

    def __init__(self, seconds: float, rate: float, width: int, height: int, reset_after: float | None = None):
        self.seconds, self.rate, self.width, self.height = seconds, rate, width, height
        self.reset_after = reset_after  # seconds, after which the stamps start again from 0: a camera's reset
        self.description = "dvserver moving edge"

    def _packets(self, t0_us: int):
        rng = np.random.default_rng(0)
        tick_us = int(TICK_S * 1e6)
        n = max(1, round(self.rate * TICK_S))
        reset_k = round(self.reset_after / TICK_S) if self.reset_after else None
        for k in range(round(self.seconds / TICK_S)):
            base = t0_us + k * tick_us if reset_k is None or k < reset_k else (k - reset_k) * tick_us
            t = np.sort(base + rng.integers(0, tick_us, n))
            x = np.full(n, int(k * TICK_S * EDGE_PX_PER_S) % self.width, np.uint16)
            y = rng.integers(0, self.height, n).astype(np.uint16)
            yield EventPacket(t, x, y, np.ones(n, np.int8))

    def __iter__(self):
        return _on_ticks(self._packets(time.time_ns() // 1000))

    def close(self):
        pass


class PrebuiltEdge(MovingEdge):
    """The same stream, converted to dv stores up front: serve_events sends them as they are."""

    def __init__(self, *args):
        super().__init__(*args)
        self._stores = [to_event_store(p) for p in self._packets(time.time_ns() // 1000)]

    def stores(self):
        return _on_ticks(self._stores)


def _on_ticks(items):
    """One item per tick, in real time."""
    start = time.monotonic()
    for k, item in enumerate(items):
        time.sleep(max(0.0, start + k * TICK_S - time.monotonic()))
        yield item


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=100_000, help="events per second")
    ap.add_argument("--width", type=int, default=346)
    ap.add_argument("--height", type=int, default=260)
    ap.add_argument("--wait-client", action="store_true", help="start the stream once a reader is connected")
    ap.add_argument("--prebuilt", action="store_true", help="convert the stream to dv stores before serving")
    ap.add_argument("--reset-after", type=float, help="restart the timestamps from 0 after this many seconds")
    a = ap.parse_args()
    source = (PrebuiltEdge if a.prebuilt else MovingEdge)(a.seconds, a.rate, a.width, a.height, a.reset_after)
    sent = serve_events(source, f"127.0.0.1:{a.port}", on_listening=lambda: print("ready", flush=True),
                        wait_clients=int(a.wait_client))
    print(f"sent {sent}")


if __name__ == "__main__":
    main()
