"""The data types that flow between the stages. Imports nothing of the project.

One clock for the whole program: int64 microseconds of the event stream. Wall-clock
instants (for latency) are `time.monotonic()` seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class EventPacket:
    """A contiguous slice of the event stream, struct of arrays.

    t: int64 microseconds, non-decreasing; x, y: uint16 pixel column/row; p: int8 +1/-1."""
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, s: slice) -> EventPacket:
        return EventPacket(self.t[s], self.x[s], self.y[s], self.p[s])

    @staticmethod
    def empty() -> EventPacket:
        return EventPacket(np.empty(0, np.int64), np.empty(0, np.uint16),
                           np.empty(0, np.uint16), np.empty(0, np.int8))

    @staticmethod
    def concat(packets: list[EventPacket]) -> EventPacket:
        if not packets:
            return EventPacket.empty()
        if len(packets) == 1:
            return packets[0]
        return EventPacket(*(np.concatenate([getattr(q, f) for q in packets]) for f in "txyp"))


@dataclass(frozen=True)
class ReferenceFrame:
    """An intensity image recorded beside the events (APS frame, ground truth).

    image: float32 (H, W), linear, 1.0 = the sensor's full scale (uint8/255, uint16/65535).
    event_idx: global index of the last event before the image (event_cnn_minimal's
    convention; its frame-aligned window ends there, exclusive), or -1 when unknown."""
    t_us: int
    image: np.ndarray
    event_idx: int = -1


@dataclass
class ClosedWindow:
    """A window's events and span, as the windower closes it: before the ring bins it."""
    t_start_us: int
    t_end_us: int
    events: EventPacket
    reference: ReferenceFrame | None


@dataclass
class VoxelWindow:
    """One window of events and its voxel grid.

    grid: (2*B, H, W) float32 in the official layout (positive bins, then negative bins); B is 0
    (an empty grid) for a model that works per event and does not read the grid.
    events: the window's events (models that work per event, such as the high-pass
    filter, use them). reference: the newest reference frame at or before t_end_us.
    t_closed: monotonic() when the window closed, the start of the latency budget."""
    seq: int
    t_start_us: int
    t_end_us: int
    grid: np.ndarray
    events: EventPacket
    reference: ReferenceFrame | None = None
    t_closed: float = 0.0
    merged: int = 1  # windows folded into this one by the overload policy

    @property
    def n_events(self) -> int:
        return len(self.events)


@dataclass
class Frame:
    """One reconstructed frame: the centre window's time span, linear float32 (H, W)."""
    seq: int
    t_start_us: int
    t_end_us: int
    image: np.ndarray
    latency_s: float = 0.0
    window: VoxelWindow | None = field(default=None, repr=False)


class Reconstructor(Protocol):
    """What the reconstructor stage runs. A model is stateful across pushes.

    push() takes the next window and returns the linear float32 (H, W) image of the
    window pushed `lookahead` calls earlier, or None while that window does not exist.
    uses_grid: whether push() reads window.grid. If not, nothing is binned: at 1280x720 a
    5-bin grid is 37 MB to clear for every window."""
    lookahead: int
    uses_grid: bool

    def push(self, window: VoxelWindow) -> np.ndarray | None: ...

    def reset(self) -> None: ...


class Source(Protocol):
    """Where events come from. Iterating yields EventPackets and ReferenceFrames in time order.

    live: True for cameras and network streams (they cannot be paused; the pipeline merges or
    drops windows when it falls behind); False for recordings (the pipeline paces them at
    --rate and blocks the reader when the ring is full). has_frames: whether it can give reference
    frames (frame-aligned windows need them; known when it opens, so a run without them ends at once)."""
    height: int
    width: int
    live: bool
    has_frames: bool
    description: str

    def __iter__(self): ...

    def close(self) -> None: ...
