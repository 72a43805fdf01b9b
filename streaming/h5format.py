"""The event HDF5 format of the EventHDR dataset and event_cnn_minimal: reader and writer.

See shared/spec/event-h5-format.md. Inside the program events are EventPackets
(int64 microseconds, +1/-1 polarity); this module is the edge where units convert.
"""
from __future__ import annotations

import atexit
import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from streaming.datatypes import EventPacket, ReferenceFrame
from streaming.errors import InputError
from streaming.exits import require_room
from streaming.sensor import check_sensor_size, reference_image, require_on_sensor

CHUNK_EVENTS = 1 << 20
MAX_SPAN_IN_SECONDS = 86400.0  # float timestamps spanning more than a day are microseconds written as floats
MAX_SECONDS = 9e12  # timestamps whose microseconds an int64 still holds
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def check_h5_name(path: str | Path, what: str) -> None:
    """HDF5 goes out under an HDF5 suffix only: an out.mp4 or out.aedat4 would mislead every reader."""
    if Path(path).suffix.lower() not in H5_SUFFIXES:
        raise InputError(f"{what} {path}: this writes HDF5; name the file {' or '.join(H5_SUFFIXES)}")


class WriteGuard:
    """Writes to an HDF5 file that a full disk (or a failing one) ends in one line.

    HDF5 that runs out of space halfway through a write cannot close that file any more: its
    clean-up at exit crashed the process (a segfault after a 45-line traceback). So each write
    first checks that the disk has room for it and for closing the file (require_room). Should a write fail
    all the same (another program filled the disk meanwhile), the file is never touched again,
    and the process ends without HDF5's clean-up, after Python's own (status 2, as the user
    error it reports). What was flushed before stays readable."""

    def __init__(self, path: str | Path, name: str | Path | None = None):
        self.path, self.name = Path(path), name or path  # name: the file as the user knows it
        self.failed = False

    def writing(self, nbytes: int, survives: str = ""):
        """A context for a write of about nbytes; survives: what the message adds about what the
        file keeps."""
        require_room(self.path, nbytes, survives, self.name)
        return self.closing(survives)

    @contextmanager
    def closing(self, survives: str = ""):
        """A context for closing the file: into the room that writing() kept free."""
        try:
            yield
        except (OSError, RuntimeError) as e:  # what h5py raises for HDF5's errors
            self.failed = True
            atexit.register(_exit_without_hdf5_cleanup)
            full = getattr(e, "errno", None) == errno.ENOSPC or "errno = 28" in str(e)
            reason = "no space left on the device" if full else f"cannot write ({str(e).splitlines()[0]})"
            raise InputError(f"{self.name}: {reason}{survives}") from None


def _exit_without_hdf5_cleanup() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)


def _seconds_to_us(ts: np.ndarray) -> np.ndarray:
    return np.rint(ts * 1e6).astype(np.int64)


class EventH5Reader:
    """Chunked, validating reader. Nothing is read whole: files can hold 10^9 events."""

    def __init__(self, path: str | Path, sensor_size: tuple[int, int] | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{path}: no such file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError:
            raise InputError(f"{path}: not an HDF5 file, or a damaged one (expected the event_cnn_minimal/EventHDR "
                             f"layout)") from None
        with self._reading():
            self._open(sensor_size)

    def _open(self, sensor_size):
        path = self.path
        ev = self._f.get("events")
        missing = [k for k in ("xs", "ys", "ts", "ps") if not isinstance(ev, h5py.Group) or k not in ev]
        if missing:
            raise InputError(f"{path}: missing datasets {', '.join('events/' + k for k in missing)} "
                             f"(expected the event_cnn_minimal/EventHDR layout)")
        for k in ("xs", "ys", "ts", "ps"):
            if not _is_array(ev[k], 1, "biuf"):
                raise InputError(f"{path}: events/{k} is {_what(ev[k])}; expected a 1-D array of numbers")
        self._xs, self._ys, self._ts, self._ps = ev["xs"], ev["ys"], ev["ts"], ev["ps"]
        n = {len(d) for d in (self._xs, self._ys, self._ts, self._ps)}
        if len(n) != 1:
            raise InputError(f"{path}: events/xs, ys, ts, ps differ in length (truncated file?)")
        self.num_events = n.pop()
        if self.num_events == 0:
            raise InputError(f"{path}: the file holds no events")
        self._ts_in_seconds = self._ts.dtype.kind == "f"
        if self._ts_in_seconds:
            last = self.num_events - 1
            for i in (0, last):  # the span below is only a span between two times
                self._check_seconds(self._ts[i:i + 1], i)
            if abs(float(self._ts[last]) - float(self._ts[0])) > MAX_SPAN_IN_SECONDS:
                raise InputError(f"{path}: events/ts spans {float(self._ts[last]) - float(self._ts[0]):.3g} s; "
                                 f"float timestamps are seconds in this layout (microseconds are stored as integers)")
        self.height, self.width = self._resolve_size(sensor_size)
        self._last_t = np.iinfo(np.int64).min
        self._polarities = set()  # which of -1 and 0 has come: a file uses one convention

    @contextmanager
    def _reading(self):
        """h5py's errors for a damaged file (a damaged heap or B-tree, a file cut short while it
        is read) or one it cannot decode (a compression filter that is not installed): one line."""
        try:
            yield
        except (OSError, RuntimeError, KeyError, ValueError) as e:  # what h5py raises for HDF5's errors
            raise InputError(f"{self.path}: a damaged HDF5 file, or one compressed with a filter that is not "
                             f"installed ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None

    def _check_seconds(self, ts: np.ndarray, start: int) -> None:
        bad = ~(np.abs(ts) < MAX_SECONDS)  # NaN too
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise InputError(f"{self.path}: events/ts holds {ts[at]} at event {start + at}; timestamps are finite "
                             f"seconds")

    def _resolve_size(self, override):
        if override is not None:
            return override
        res = self._f.attrs.get("sensor_resolution")
        if res is None:
            raise InputError(f"{self.path}: no sensor_resolution attribute; pass --sensor-size HxW")
        res = np.asarray(res)
        if res.shape != (2,) or res.dtype.kind not in "iuf" or (res != np.round(res)).any():
            raise InputError(f"{self.path}: sensor_resolution is {res.tolist()!r}, not [height, width]; "
                             f"pass --sensor-size HxW")
        h, w = (int(v) for v in res)
        check_sensor_size(f"{self.path} (sensor_resolution)", h, w)
        return h, w

    def read(self, start: int, stop: int) -> EventPacket:
        """Events [start, stop), converted and checked; bad data ends the replay clearly."""
        with self._reading():
            ts, x, y, p = (d[start:stop] for d in (self._ts, self._xs, self._ys, self._ps))
        if self._ts_in_seconds:
            self._check_seconds(ts, start)
            t = _seconds_to_us(ts)
        else:
            t = ts.astype(np.int64)
        x, y = x.astype(np.int64), y.astype(np.int64)
        self._check(start, t, x, y)
        if p.dtype != np.bool_:
            self._check_polarity(start, p)
        return EventPacket(t, x.astype(np.uint16), y.astype(np.uint16), np.where(p > 0, 1, -1).astype(np.int8))

    def _check_polarity(self, start, p):
        """0/1 or -1/+1, one of them: anything else is not a polarity this layout knows."""
        off = (p != 1) & (p != 0) & (p != -1)
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise InputError(f"{self.path}: events/ps holds {p[i].item()!r} at event {start + i}; polarities are "
                             f"bool, 0/1 or -1/+1")
        self._polarities |= {v for v in (0, -1) if (p == v).any()}
        if len(self._polarities) == 2:
            raise InputError(f"{self.path}: events/ps mixes 0 and -1; polarities are 0/1 or -1/+1, not both")

    def _check(self, start, t, x, y):
        prev = np.concatenate(([self._last_t], t[:-1])) if start > 0 else t[:-1]
        body = t[1:] if start == 0 else t
        bad = np.flatnonzero(body < prev)
        if bad.size:
            i = start + int(bad[0]) + (1 if start == 0 else 0)
            raise InputError(f"{self.path}: timestamps decrease at event {i}; the file must be time-sorted")
        self._last_t = int(t[-1]) if t.size else self._last_t
        require_on_sensor(f"{self.path} (events {start}-{start + len(x) - 1})", x, y, self.height, self.width)

    def chunks(self, chunk: int = CHUNK_EVENTS):
        for s in range(0, self.num_events, chunk):
            yield self.read(s, min(s + chunk, self.num_events))

    @property
    def has_images(self) -> bool:
        with self._reading():
            images = self._f.get("images")
            return isinstance(images, h5py.Group) and len(images) > 0

    def references(self) -> list[ReferenceFrame]:
        """The intensity images, in timestamp order, as linear float32 in [0, 1]."""
        with self._reading():
            grp = self._f.get("images")
            if grp is None:
                return []
            if not isinstance(grp, h5py.Group):
                raise InputError(f"{self.path}: images is {_what(grp)}; expected a group of images")
            refs = [self._reference(name, grp[name]) for name in grp]
        refs.sort(key=lambda r: r.t_us)
        return refs

    def _reference(self, name: str, d) -> ReferenceFrame:
        where = f"{self.path}: images/{name}"
        if not (_is_array(d, 2, "iuf") or _is_array(d, 3, "iuf") and d.shape[2] in (1, 3)):
            raise InputError(f"{where} is {_what(d)}; an image is HxW grey or HxWx3 colour numbers")
        ts = self._attr(d, "timestamp", where)
        if ts is None:
            raise InputError(f"{where} has no timestamp attribute")
        if self._ts_in_seconds and not abs(ts) < MAX_SECONDS:
            raise InputError(f"{where} has timestamp {ts}; timestamps are finite seconds")
        event_idx = self._attr(d, "event_idx", where)
        event_idx = -1 if event_idx is None else event_idx
        if event_idx != int(event_idx) or not -1 <= event_idx <= self.num_events:  # -1: not given
            raise InputError(f"{where} has event_idx {event_idx}; the file holds {self.num_events:,} events, "
                             f"numbered from 0 (-1: not given)")
        t_us = int(_seconds_to_us(np.float64(ts))) if self._ts_in_seconds else int(ts)
        return ReferenceFrame(t_us, reference_image(d[()]), int(event_idx))

    @staticmethod
    def _attr(d, key: str, where: str) -> float | int | None:
        """A numeric attribute, one number (a string, a NaN or a list is one line)."""
        value = d.attrs.get(key)
        if value is None:
            return None
        a = np.asarray(value)
        if a.size != 1 or a.dtype.kind not in "iuf" or not np.isfinite(a).all():
            raise InputError(f"{where} has {key} {a.tolist()!r}; expected a finite number")
        return a.item()

    def close(self):
        self._f.close()


def _is_array(d, ndim: int, kinds: str) -> bool:
    return isinstance(d, h5py.Dataset) and d.ndim == ndim and d.dtype.kind in kinds


def _what(d) -> str:
    """What a dataset's place holds, as a message tells it: a group, a scalar, 2-D records..."""
    if not isinstance(d, h5py.Dataset):
        return "a group" if isinstance(d, h5py.Group) else "no dataset"
    kind = "records" if d.dtype.names else "strings" if d.dtype.kind in "SUO" else str(d.dtype)
    return f"a scalar of {kind}" if d.ndim == 0 else f"a {'x'.join(map(str, d.shape))} array of {kind}"


def _as_read(image: np.ndarray) -> np.ndarray:
    """A reference frame's [0, 1] float32 image in the integer type it was read from (uint8 or
    uint16), where that gives it back as read; anything else (linear ground truth) as float32."""
    if image.min() >= 0 and image.max() <= 1:
        for dtype in (np.uint8, np.uint16):
            scaled = image.astype(np.float64) * np.iinfo(dtype).max
            whole = np.rint(scaled)
            if np.abs(scaled - whole).max() < 0.01:  # float32 keeps v / 65535 within 0.004 of v
                return whole.astype(dtype)
    return image.astype(np.float32)


class EventH5Writer:
    """Writes every field of the spec, appending as it goes (simulators stream into it)."""

    def __init__(self, path: str | Path, height: int, width: int, name: str | Path | None = None):
        """name: the file as messages call it (convert.py writes under a temporary name)."""
        try:
            self._f = h5py.File(path, "w")
        except OSError as e:
            raise InputError(f"cannot write {name or path}: {e}") from None
        self._guard = WriteGuard(path, name)
        self.height, self.width = height, width
        with self._guard.writing(0):
            ev = self._f.create_group("events")
            for field, dt in (("xs", np.int16), ("ys", np.int16), ("ts", np.float64), ("ps", np.bool_)):
                ev.create_dataset(field, (0,), dtype=dt, maxshape=(None,), chunks=(1 << 16,))
            self._images = self._f.create_group("images")
        self._n = self._pos = self._nimg = 0
        self._t0 = self._tk = None

    def add_events(self, ev: EventPacket):
        n = len(ev)
        if n == 0:
            return
        d = self._f["events"]
        with self._guard.writing(13 * n):  # xs, ys, ts, ps: 2 + 2 + 8 + 1 bytes an event
            for name, arr in (("xs", ev.x.astype(np.int16)), ("ys", ev.y.astype(np.int16)),
                              ("ts", ev.t.astype(np.float64) * 1e-6), ("ps", ev.p > 0)):
                d[name].resize((self._n + n,))
                d[name][self._n:] = arr
        self._n += n
        self._pos += int((ev.p > 0).sum())
        self._t0 = int(ev.t[0]) if self._t0 is None else self._t0
        self._tk = int(ev.t[-1])

    def add_reference(self, ref: ReferenceFrame):
        """A reference frame read from a recording, stored as add_image stores an image, with the
        recording's own event_idx where it has one (an HDF5 file's may differ from the timestamps')."""
        self.add_image(ref.t_us, _as_read(ref.image), ref.event_idx if ref.event_idx >= 0 else None)

    def add_image(self, t_us: int, image: np.ndarray, event_idx: int | None = None):
        """image: uint8 or uint16 (H, W), or float32 for linear ground truth (unbounded). Call soon
        after adding the events up to t_us; event_idx: else from the timestamps."""
        if image.shape != (self.height, self.width):  # training and evaluation compare them pixel by pixel
            raise InputError(f"an image of {image.shape[0]}x{image.shape[1]} does not fit the "
                             f"{self.height}x{self.width} sensor (height x width)")
        if event_idx is None:  # event_cnn_minimal's convention: the index of the last event before the image
            start = max(0, self._n - (1 << 16))
            k = start + int(np.searchsorted(self._f["events/ts"][start:self._n], t_us * 1e-6, "left"))
            event_idx = max(k - 1, 0)
        with self._guard.writing(image.nbytes):
            d = self._images.create_dataset(f"image{self._nimg:09d}", data=image)
            d.attrs.update(timestamp=t_us * 1e-6, event_idx=event_idx, size=image.shape, type="greyscale")
        self._nimg += 1

    def close(self):
        if self._guard.failed:  # HDF5 cannot close it (WriteGuard)
            return
        with self._guard.closing():
            a = self._f.attrs
            a["sensor_resolution"] = np.array([self.height, self.width])
            t0, tk = (self._t0 or 0) * 1e-6, (self._tk or 0) * 1e-6
            a.update(num_events=self._n, num_pos=self._pos, num_neg=self._n - self._pos,
                     duration=tk - t0, t0=t0, tk=tk, num_imgs=self._nimg, num_flow=0)
            self._images.attrs["num_images"] = self._nimg
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
