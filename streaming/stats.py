"""Counters of a run, the periodic one-line report and the summary."""
from __future__ import annotations

import time
from collections import deque

import numpy as np


class RunStats:
    """clock_rate: how fast the source's clock runs against the wall clock (1 for a camera, the
    replay rate for a paced recording); inf: no clock to keep up with (a replay at max)."""

    def __init__(self, clock_rate: float):
        self.t0 = time.monotonic()
        self.events = self.windows = self.frames = 0
        self.merged = self.dropped = self.dropped_events = self.outside = self.unordered = self.rejected = 0
        self._latency = deque(maxlen=2000)  # seconds, recent frames
        self._last = (self.t0, 0, 0, 0)
        self._clock_rate = clock_rate
        self._best_offset = float("inf")  # the smallest (wall clock - source clock) seen
        self.behind_s = self.behind_max_s = None if clock_rate == float("inf") else 0.0

    def read_up_to(self, t_us: int) -> None:
        """The reader now holds the events up to t_us. How far it runs behind the source's clock,
        against its best so far (the two clocks' offset cancels). Frame latency cannot show this:
        it starts when a window closes, and a reader that falls behind a camera closes windows
        late (the sender buffers, then drops events)."""
        if self.behind_s is None:
            return
        offset = time.monotonic() - t_us * 1e-6 / self._clock_rate
        self._best_offset = min(self._best_offset, offset)
        self.behind_s = offset - self._best_offset
        self.behind_max_s = max(self.behind_max_s, self.behind_s)

    def frame_out(self, latency_s: float) -> None:
        self.frames += 1
        self._latency.append(latency_s)

    def latency_ms(self) -> tuple[float, float] | tuple[None, None]:
        """p50 and p99 of recent frames; None before the first (the stats message's null: JSON
        has no NaN, and strict parsers refuse one)."""
        if not self._latency:
            return None, None
        p50, p99 = np.percentile(np.fromiter(self._latency, float), [50, 99])
        return p50 * 1e3, p99 * 1e3

    def snapshot(self) -> dict:
        """Rates since the previous snapshot, totals since the start."""
        now = time.monotonic()
        t, ev, win, fr = self._last
        dt = max(now - t, 1e-9)
        self._last = (now, self.events, self.windows, self.frames)
        p50, p99 = self.latency_ms()
        return {
            "elapsed_s": round(now - self.t0, 3),
            "events_per_s": (self.events - ev) / dt, "windows_per_s": (self.windows - win) / dt,
            "frames_per_s": (self.frames - fr) / dt, "latency_p50_ms": p50, "latency_p99_ms": p99,
            "events": self.events, "windows": self.windows, "frames": self.frames,
            "merged": self.merged, "dropped": self.dropped, "dropped_events": self.dropped_events,
            "bad_events": self.outside + self.unordered,
            "rejected_windows": self.rejected, "behind_ms": None if self.behind_s is None else self.behind_s * 1e3,
        }

    @staticmethod
    def line(s: dict) -> str:
        return (f"[{s['elapsed_s']:7.1f} s] {s['events_per_s'] / 1e6:6.2f} Mev/s  "
                f"{s['windows_per_s']:6.1f} win/s  {s['frames_per_s']:6.1f} fps  "
                f"{_latency(s['latency_p50_ms'], s['latency_p99_ms'])}  "
                + (f"behind {s['behind_ms']:.0f} ms  " if s["behind_ms"] is not None else "")
                + f"merged {s['merged']} dropped {_dropped(s['dropped'], s['dropped_events'])} "
                  f"bad events {s['bad_events']}")

    def summary(self) -> str:
        el = time.monotonic() - self.t0
        p50, p99 = self.latency_ms()
        return (f"done: {self.events:,} events, {self.windows} windows, {self.frames} frames in {el:.2f} s "
                f"({self.events / max(el, 1e-9) / 1e6:.2f} Mev/s, {self.frames / max(el, 1e-9):.1f} fps); "
                f"{_latency(p50, p99)}; "
                + (f"behind at most {self.behind_max_s * 1e3:.0f} ms; " if self.behind_max_s is not None else "")
                + f"merged {self.merged}, dropped {_dropped(self.dropped, self.dropped_events)}, "
                f"bad events {self.outside + self.unordered}, rejected windows {self.rejected}")


COUNTERS = ("events", "windows", "frames", "merged", "dropped", "dropped_events", "bad_events", "rejected_windows")


def run_totals(snapshots: list[dict]) -> dict:
    """One stats message for a run of several sequences (run_live.py --reconnect): the counters
    summed, the rest the last sequence's (all zero where none started)."""
    last = snapshots[-1] if snapshots else RunStats(float("inf")).snapshot()
    return {**last, **{k: sum(s[k] for s in snapshots) for k in COUNTERS}}


def _dropped(windows: int, events: int) -> str:
    return f"{windows} ({events:,} events)" if windows else "0"


def _latency(p50: float | None, p99: float | None) -> str:
    return "latency -" if p50 is None else f"latency p50 {p50:.0f} ms p99 {p99:.0f} ms"
