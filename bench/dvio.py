"""What dv-processing costs per event, and why the live path stays in dv's own stores.

    python -m bench.dvio [--events 500000]

On one batch of random events at 346x260 (a DAVIS346 at 5-10 Mev/s for 50-100 ms), in the
same run: from_event_store (dv -> ours: dv's numpy copy, then one pass that splits the records)
against numpy's field casts of the same copy (the reference), to_event_store (ours -> dv: dv's
Python API takes one event at a time), dv's background-activity denoiser on a dv store (how the live
sources run `--denoise`), and the same denoiser behind a conversion each way (what it would
cost on our packets). Prints ns per event, the event rate one core could sustain, and the
ratio of the converted denoiser to the native one.
"""
import argparse
import time

import numpy as np

from bench.args import positive_int
from streaming.datatypes import EventPacket
from streaming.exits import run_main
from streaming.sources.dv import denoiser, from_event_store, to_event_store

H, W = 260, 346
UNIX_US = 1_700_000_000_000_000  # camera clocks: dv's filter treats times near 0 as its own start


def per_event_ns(fn, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def numpy_casts(store) -> EventPacket:
    """The reference conversion: numpy casts of each field of dv's records."""
    a = store.numpy()
    return EventPacket(a["timestamp"].astype(np.int64), a["x"].astype(np.uint16), a["y"].astype(np.uint16),
                       np.where(a["polarity"] > 0, 1, -1).astype(np.int8))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=positive_int, default=500_000)
    n = ap.parse_args().events
    rng = np.random.default_rng(0)
    ev = EventPacket(UNIX_US + np.sort(rng.integers(0, 100_000, n)), rng.integers(0, W, n).astype(np.uint16),
                     rng.integers(0, H, n).astype(np.uint16), rng.choice(np.array([-1, 1], np.int8), n))
    store = to_event_store(ev)
    rows = {
        "from_event_store": per_event_ns(lambda: from_event_store(store), n),
        "numpy field casts": per_event_ns(lambda: numpy_casts(store), n),
        "to_event_store": per_event_ns(lambda: to_event_store(ev), n),
        # a fresh filter each time: its state would otherwise hold the previous run's events
        "denoise, dv store": per_event_ns(lambda: denoiser(W, H)(store), n),
        "denoise, via EventPacket": per_event_ns(lambda: from_event_store(denoiser(W, H)(to_event_store(ev))), n),
    }
    print(f"dv-processing per event, {n:,} events at HxW {H}x{W}, one thread (best of 3)")
    for name, ns in rows.items():
        print(f"  {name:<26}{ns:8.1f} ns/event  ({1e3 / ns:7.1f} Mev/s)")
    print(f"from_event_store / numpy field casts: {rows['from_event_store'] / rows['numpy field casts']:.2f}")
    ratio = rows["denoise, via EventPacket"] / rows["denoise, dv store"]
    print(f"denoise via EventPacket / on the dv store: {ratio:.1f}x")


if __name__ == "__main__":
    run_main(main)
