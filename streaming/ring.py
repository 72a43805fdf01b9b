"""The ring of voxel windows between the reader thread and the model thread.

Preallocated: `capacity` grids of (2*B, H, W) float32, binned in place (B = 0: no grids, for
models that work per event). File replay blocks the reader when the ring is full (nothing
lost). Live sources cannot be paused: when the model falls behind, pending windows are merged into one
(every event kept, the frame rate falls) or, with the drop policy, the oldest are dropped.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from streaming.binner import voxel_into
from streaming.datatypes import ClosedWindow, EventPacket, VoxelWindow

OVERLOAD_POLICIES = ("merge", "drop")


class VoxelRing:
    def __init__(self, capacity: int, num_bins: int, height: int, width: int,
                 live: bool = False, overload: str = "merge"):
        self._grids = np.zeros((capacity, 2 * num_bins, height, width), np.float32)
        self._free = deque(range(capacity))
        self._pending: deque[tuple[int, VoxelWindow]] = deque()
        self._held: deque[int] = deque()  # slots handed to the consumer, released in order
        self._cv = threading.Condition()
        self.num_bins, self.live, self.overload = num_bins, live, overload
        self._seq = 0
        self._closed = False
        self.merged = self.dropped = 0  # windows folded away / thrown away by the overload policy
        self.dropped_events = 0  # the thrown-away windows' events

    def put(self, w: ClosedWindow) -> None:
        window = VoxelWindow(0, w.t_start_us, w.t_end_us, None, w.events, w.reference, time.monotonic())
        with self._cv:
            while not self._free:
                if self._closed:  # the run is over: nothing will take this window
                    return
                if not self.live:
                    self._cv.wait()
                elif self.overload == "drop":
                    self._drop_oldest()
                else:  # fold the new window into the newest pending one
                    slot, last = self._pending.pop()
                    self._pending.append((slot, self._merge([last, window])))
                    return
            slot = self._free.popleft()
        window.grid = self._grids[slot]
        self._bin(window.grid, w.events)
        with self._cv:
            window.seq = self._seq
            self._seq += 1
            self._pending.append((slot, window))
            self._cv.notify_all()

    def _merge(self, windows: list[VoxelWindow]) -> VoxelWindow:
        """One window spanning `windows`, re-binned into the first one's grid."""
        first, last = windows[0], windows[-1]
        ev = EventPacket.concat([w.events for w in windows])
        self._bin(first.grid, ev)
        self.merged += len(windows) - 1
        refs = [w.reference for w in windows if w.reference is not None]
        return VoxelWindow(first.seq, first.t_start_us, last.t_end_us, first.grid, ev,
                           refs[-1] if refs else None, first.t_closed, sum(w.merged for w in windows))

    def _bin(self, grid: np.ndarray, ev: EventPacket) -> None:
        if self.num_bins:
            voxel_into(grid, ev.x, ev.y, ev.t, ev.p, self.num_bins)

    def get(self, timeout: float | None = None) -> VoxelWindow | None:
        """The next window, or None when the ring is closed and empty (or on timeout)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._pending or self._closed, timeout):
                return None
            if not self._pending:
                return None
            if self.live and len(self._pending) > 1:
                self._catch_up()
            slot, window = self._pending.popleft()
            self._held.append(slot)
            return window

    def _catch_up(self) -> None:
        """The model is behind a live source: serve everything pending as one window."""
        if self.overload == "drop":
            while len(self._pending) > 1:
                self._drop_oldest()
            return
        slots = [slot for slot, _ in self._pending]
        merged = self._merge([w for _, w in self._pending])
        self._pending.clear()
        self._free.extend(slots[1:])
        self._pending.append((slots[0], merged))
        self._cv.notify_all()

    def _drop_oldest(self) -> None:
        slot, window = self._pending.popleft()
        self._free.append(slot)
        self.dropped += 1
        self.dropped_events += len(window.events)

    def release(self, newest: bool = False) -> None:
        """Return the oldest (or the newest) window handed out by get(): its grid may be reused."""
        with self._cv:
            self._free.append(self._held.pop() if newest else self._held.popleft())
            self._cv.notify_all()

    @property
    def finished(self) -> bool:
        """Closed by the reader and nothing left pending."""
        with self._cv:
            return self._closed and not self._pending

    def close(self) -> None:
        """No more windows will come; get() drains what is pending, then returns None, and a
        put() waiting for room gives up."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
