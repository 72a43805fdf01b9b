"""The clock that replays a recording at --rate."""
from __future__ import annotations

import time

import numpy as np

from streaming.datatypes import EventPacket, ReferenceFrame
from streaming.errors import InputError

PACE_SLICE_US = 2000  # replay granularity: a paced stream is released in 2 ms steps
MIN_RATE, MAX_RATE = 1e-6, 1e6  # replay speeds (max: as fast as it goes)


def parse_rate(text: str) -> float:
    """'1x', '0.5x', '4', 'max' -> replay speed factor (inf for max)."""
    t = text.strip().lower()
    if t == "max":
        return float("inf")
    try:
        rate = float(t[:-1] if t.endswith("x") else t)
    except ValueError:
        rate = 0.0
    if not MIN_RATE <= rate <= MAX_RATE:  # 1e-20x: a second of events in 3e12 years, past any timer
        raise InputError(f"bad --rate {text!r}: give a factor from {MIN_RATE:g}x to {MAX_RATE:g}x, such as 1x, "
                         f"0.5x, 4x, or max")
    return rate


def paced(items, rate: float, stop=None):
    """Release a recording's items when their timestamps come due at `rate` x real time.

    Packets are split in PACE_SLICE_US steps so that a large file chunk streams out
    smoothly instead of in one burst. stop: a threading.Event; once it is set, nothing more
    comes out (live sources, rate inf, included)."""
    if rate == float("inf"):
        for item in items:
            if _stopped(stop):
                return
            yield item
        return
    origin = None  # (stream µs, wall s) of the first event
    for item in items:
        if isinstance(item, ReferenceFrame):
            if _stopped(stop):
                return
            yield item
            continue
        if origin is None and len(item):
            origin = (int(item.t[0]), time.monotonic())
        for part in _slices(item):  # a chunk may span minutes: `stop` is heard between slices
            if _sleep_until(origin[1] + (int(part.t[-1]) - origin[0]) * 1e-6 / rate, stop):
                return
            yield part


def _stopped(stop) -> bool:
    return stop is not None and stop.is_set()


def _sleep_until(t: float, stop) -> bool:
    """Sleep until monotonic time t; True, at once, when `stop` (a threading.Event) is set."""
    delay = max(t - time.monotonic(), 0.0)
    if stop is None:
        time.sleep(delay)
        return False
    return stop.wait(delay)


def _slices(ev: EventPacket):
    if len(ev) == 0:
        return
    edges = np.arange(int(ev.t[0]) + PACE_SLICE_US, int(ev.t[-1]) + 1, PACE_SLICE_US)
    cuts = np.searchsorted(ev.t, edges, "left")
    start = 0
    for c in list(cuts) + [len(ev)]:
        if c > start:
            yield ev[start:c]
            start = c
