"""Recordings as sources, and the clock that replays them at --rate."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from streaming.datatypes import EventPacket, InputError, ReferenceFrame, Source, check_sensor_size, size_text
from streaming.h5format import H5_SUFFIXES, EventH5Reader
from streaming.prophesee import PROPHESEE_SUFFIXES, PropheseeSource

ROS2_SUFFIXES = (".mcap", ".db3")  # a ROS 2 bag's storage files; the bag itself is their folder
PACE_SLICE_US = 2000  # replay granularity: a paced stream is released in 2 ms steps
MIN_RATE, MAX_RATE = 1e-6, 1e6  # replay speeds (max: as fast as it goes)


class H5Source:
    """An EventHDR / event_cnn_minimal HDF5 recording, with its images as reference frames."""
    live = False

    def __init__(self, path: str | Path, sensor_size: tuple[int, int] | None = None):
        self._reader = EventH5Reader(path, sensor_size)
        self.height, self.width = self._reader.height, self._reader.width
        self.has_frames = self._reader.has_images
        self.description = (f"{Path(path).name} (HDF5, {size_text(self.height, self.width)}, "
                            f"{self._reader.num_events:,} events)")

    def __iter__(self):
        refs = self._reader.references()
        k = n = 0  # n: events passed on, which number the images whose file gives no event_idx
        for ev in self._reader.chunks():
            # an image goes out before the events at or after its timestamp
            while k < len(refs) and refs[k].t_us <= ev.t[-1]:
                cut = int(np.searchsorted(ev.t, refs[k].t_us, "left"))
                if cut:
                    yield ev[:cut]
                    ev, n = ev[cut:], n + cut
                yield _numbered(refs[k], n)
                k += 1
            if len(ev):
                yield ev
                n += len(ev)
        yield from (_numbered(ref, n) for ref in refs[k:])

    def close(self):
        self._reader.close()


def _numbered(ref: ReferenceFrame, n_before: int) -> ReferenceFrame:
    """The file's event_idx where it gives one (the official evaluation's windows are those);
    else the same convention from the timestamps: the last of the n_before earlier events."""
    return ref if ref.event_idx >= 0 else replace(ref, event_idx=max(n_before - 1, 0))


def is_ros2_bag(path: str | Path) -> bool:
    path = Path(path)
    return (path / "metadata.yaml").is_file() if path.is_dir() else path.suffix.lower() in ROS2_SUFFIXES


def open_recording(path: str, sensor_size: tuple[int, int] | None = None, topic: str | None = None) -> Source:
    """topic: a ROS bag's event topic (where it holds more than one camera's). The sensor size a
    file gives (a damaged header's 99999x99999, say) is checked as --sensor-size is: voxel grids
    of that size would not fit in memory."""
    if sensor_size is not None:
        _refuse_turned_round(path, sensor_size, topic)
    source = _open(path, sensor_size, topic)
    try:
        check_sensor_size(str(path), source.height, source.width)
    except InputError:
        source.close()
        raise
    return source


def _refuse_turned_round(path: str, size: tuple[int, int], topic: str | None) -> None:
    """--sensor-size given width first, for a file that knows its size: a slip, not a crop. A
    replay would drop the events outside as a camera's bad ones and go on."""
    try:
        own = _open(path, None, topic)
    except InputError:  # the file gives no size (or the open fails, as it will again below)
        return
    own.close()
    if size != (own.height, own.width) == size[::-1]:
        raise InputError(f"--sensor-size {size[0]}x{size[1]}: this file's sensor turned round; it is "
                         f"{size_text(own.height, own.width)}, height first (or leave --sensor-size out)")


def _open(path: str, sensor_size: tuple[int, int] | None, topic: str | None) -> Source:
    if not Path(path).exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = Path(path).suffix.lower()
    bag = suffix == ".bag" or is_ros2_bag(path)
    if topic is not None and not bag:
        raise InputError(f"--topic is for ROS bags, not {Path(path).name}")
    if bag:
        from streaming.rosbag import RosbagSource  # rosbags loads only for bags
        return RosbagSource(path, sensor_size, topic)
    if Path(path).is_dir():
        raise InputError(f"{path}: a folder, not a recording; give a file, or a ROS 2 bag's folder (it holds "
                         "metadata.yaml)")
    if not Path(path).is_file():  # a FIFO would block the replay, /dev/zero would never end
        raise InputError(f"{path}: not a regular file (a pipe or a device?); give a recording file")
    if suffix in H5_SUFFIXES:
        return H5Source(path, sensor_size)
    if suffix == ".aedat4":
        from streaming.dvsources import Aedat4Source
        return Aedat4Source(path, sensor_size)
    if suffix in PROPHESEE_SUFFIXES:
        return PropheseeSource(path, sensor_size)
    raise InputError(f"{path}: unknown recording type {suffix or '(no suffix)'}; give an HDF5 "
                     f"({', '.join(H5_SUFFIXES)}), AEDAT4 (.aedat4), Prophesee (.raw, .dat) file, or a ROS 1 (.bag) "
                     f"or ROS 2 bag (its folder, .mcap, .db3)")


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
