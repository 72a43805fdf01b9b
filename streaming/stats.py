"""Counters of a run, the periodic one-line report and the summary."""
from __future__ import annotations

import time
from collections import deque

import numpy as np


class RunStats:
    def __init__(self):
        self.t0 = time.monotonic()
        self.events = self.windows = self.frames = 0
        self.merged = self.dropped = self.outside = self.unordered = self.rejected = 0
        self._latency = deque(maxlen=2000)  # seconds, recent frames
        self._last = (self.t0, 0, 0, 0)

    def frame_out(self, latency_s: float) -> None:
        self.frames += 1
        self._latency.append(latency_s)

    def latency_ms(self) -> tuple[float, float]:
        if not self._latency:
            return float("nan"), float("nan")
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
            "merged": self.merged, "dropped": self.dropped, "bad_events": self.outside + self.unordered,
            "rejected_windows": self.rejected,
        }

    @staticmethod
    def line(s: dict) -> str:
        return (f"[{s['elapsed_s']:7.1f} s] {s['events_per_s'] / 1e6:6.2f} Mev/s  "
                f"{s['windows_per_s']:6.1f} win/s  {s['frames_per_s']:6.1f} fps  "
                f"latency p50 {s['latency_p50_ms']:.0f} ms p99 {s['latency_p99_ms']:.0f} ms  "
                f"merged {s['merged']} dropped {s['dropped']} bad events {s['bad_events']}")

    def summary(self) -> str:
        el = time.monotonic() - self.t0
        p50, p99 = self.latency_ms()
        return (f"done: {self.events:,} events, {self.windows} windows, {self.frames} frames in {el:.2f} s "
                f"({self.events / max(el, 1e-9) / 1e6:.2f} Mev/s, {self.frames / max(el, 1e-9):.1f} fps); "
                f"latency p50 {p50:.0f} ms p99 {p99:.0f} ms; merged {self.merged}, dropped {self.dropped}, "
                f"bad events {self.outside + self.unordered}, rejected windows {self.rejected}")
