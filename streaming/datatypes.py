"""The data types that flow between the stages. Imports nothing of the project.

One clock for the whole program: int64 microseconds of the event stream. Wall-clock
instants (for latency) are `time.monotonic()` seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class InputError(Exception):
    """A problem the user can fix (missing file, wrong format, bad config, no camera).

    The command-line fronts print its message as one line and exit non-zero."""


class SourceLost(InputError):
    """A live input went away mid-run (camera unplugged), or its clock jumped back (a timestamp
    reset: `still_there`, the source can be reopened at once). The pipeline may re-open the
    source; left unhandled it ends the run with one line like any InputError."""

    def __init__(self, message: str, still_there: bool = False):
        super().__init__(message)
        self.still_there = still_there


class SourceUnavailable(InputError):
    """A live input that is not there (yet): no camera plugged in, or in another program's hands;
    no server listening. --reconnect waits for it; else it ends the run with one line."""


MAX_SENSOR_SIDE = 4096  # an IMX636 is 1280x720: a larger side is a typo, whose voxel grids would not fit in memory


def size_text(height: int, width: int) -> str:
    """A sensor's size as every flag takes it, height first (sensors are named the other way
    round: a DAVIS346 is 346 pixels wide), so that what a run prints can be passed back."""
    return f"HxW {height}x{width}"


def check_sensor_size(where: str, height: int, width: int, flag: str = "--sensor-size") -> None:
    if not (0 < height <= MAX_SENSOR_SIDE and 0 < width <= MAX_SENSOR_SIDE):
        raise InputError(f"{where}: a sensor of {height}x{width} (height x width)? Each side is 1 to "
                         f"{MAX_SENSOR_SIDE} pixels; give the size with {flag} HxW, e.g. 260x346")


def require_on_sensor(where: str, x: np.ndarray, y: np.ndarray, height: int, width: int) -> None:
    """A recording's events off its sensor mean a wrong size (the file's or --sensor-size) or
    damaged data: one line, rather than a replay whose sanitizer drops them as it does a live
    camera's."""
    out = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if out.any():
        i = int(np.argmax(out))
        raise InputError(f"{where}: an event at (x={x[i]}, y={y[i]}) lies outside the {size_text(height, width)} "
                         f"sensor: damaged data, or a wrong sensor size (run_replay.py and convert.py "
                         f"take --sensor-size HxW, height first)")


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


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 weights of R, G, B (as OpenCV's grey)


def reference_image(pixels: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
    """A recorded image as a ReferenceFrame's: (H, W) or (H, W, 1 or 3), integer or float ->
    linear float32 (H, W); integers divided by their type's maximum, colour (channel_order "rgb"
    or "bgr") to its luma."""
    img = pixels.astype(np.float32)
    if np.issubdtype(pixels.dtype, np.integer):
        img /= np.iinfo(pixels.dtype).max
    if img.ndim == 3:
        img = img[..., 0] if img.shape[2] == 1 else img @ (_LUMA if channel_order == "rgb" else _LUMA[::-1])
    return img


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


@dataclass
class Outputs:
    """Where a pipeline's frames go besides its publisher, and how often it reports."""
    record: str | None = None  # HDF5 file of the linear frames
    video: str | None = None  # events | reconstruction | reference, side by side
    wait_subscribers: int = 0
    stats_every_s: float = 2.0


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
