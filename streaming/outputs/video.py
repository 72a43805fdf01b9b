"""The side-by-side video: events | reconstruction | reference frame."""
from __future__ import annotations

from contextlib import contextmanager
from fractions import Fraction

import av
import numpy as np

from streaming.datatypes import EventPacket, Frame
from streaming.errors import InputError
from streaming.exits import require_room
from streaming.outputs.tonemap import CausalToneMapper

FULL = "; the video ends there, playable"


def event_image(ev: EventPacket, height: int, width: int) -> np.ndarray:
    """A window's events -> RGB uint8: white background; red where a pixel's events are mostly
    positive, blue where mostly negative."""
    net = np.bincount(ev.y.astype(np.int64) * width + ev.x, weights=ev.p, minlength=height * width)
    net = net.reshape(height, width)
    img = np.full((height, width, 3), 255, np.uint8)
    img[net > 0] = (220, 40, 40)
    img[net < 0] = (40, 70, 220)
    return img


def _grey(u8: np.ndarray) -> np.ndarray:
    return np.repeat(u8[..., None], 3, axis=2)


class SideBySideVideo:
    """Plays at the recording's own speed, whatever the windows: a constant frame rate, each tick
    showing the newest frame by then. Event-count windows, frame-aligned ones and windows merged
    under overload are no tick long: shown one a frame, they made a 2.4 s recording a 6 s video."""

    def __init__(self, path: str, height: int, width: int, fps: Fraction):
        self._path = path
        try:
            self._out = av.open(path, "w")
            self._stream = self._out.add_stream("libx264", rate=fps)
        except (OSError, ValueError) as e:  # ValueError: a container that takes no H.264 (.gif, .webm)
            raise InputError(f"cannot write video {path}: {e}; name it .mp4, .mkv or .avi") from None
        # the encoder wants even sizes
        self._h, self._w3 = height + height % 2, 3 * width + (3 * width) % 2
        self._stream.width, self._stream.height = self._w3, self._h
        self._stream.pix_fmt = "yuv420p"
        self._tm_ref = CausalToneMapper()  # the reconstruction comes tone-mapped: the pipeline's preview
        self._blank = np.zeros((height, width, 3), np.uint8)
        self._fps = fps
        self._t0: int | None = None  # the first frame's time, µs
        self._ticks = 0  # encoded
        # the newest frame and its preview, shown from its time until the next one's: a frame that
        # a newer one replaces within its tick is never drawn
        self._newest: tuple[Frame, np.ndarray] | None = None

    def add(self, frame: Frame, preview_u8: np.ndarray) -> None:
        t = frame.window.t_end_us
        self._t0 = t if self._t0 is None else self._t0
        due = int((t - self._t0) * self._fps // 1_000_000)  # ticks before this frame's time
        if self._newest is not None and self._ticks < due:
            self._show(self._canvas(*self._newest), due - self._ticks)
        self._newest = (frame, preview_u8)

    def _canvas(self, frame: Frame, preview_u8: np.ndarray) -> np.ndarray:
        w = frame.window
        rec = _grey(preview_u8)
        ref = _grey(self._tm_ref(w.reference.image)) if w.reference is not None else self._blank
        if ref.shape != rec.shape:  # a reference of another size is not comparable: leave the panel empty
            ref = self._blank
        canvas = np.zeros((self._h, self._w3, 3), np.uint8)
        events = event_image(w.events, *rec.shape[:2])
        canvas[:rec.shape[0], :3 * rec.shape[1]] = np.concatenate([events, rec, ref], axis=1)
        return canvas

    def _show(self, canvas: np.ndarray, ticks: int) -> None:
        require_room(self._path, canvas.nbytes, FULL)  # at most a raw frame a tick, and room to close
        with self._writing():
            for _ in range(ticks):
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(canvas, "rgb24")):
                    self._out.mux(packet)
        self._ticks += ticks

    def close(self) -> None:
        """Into the room _show kept free: a full disk ends the frames, not the video."""
        full = None
        if self._newest is not None:
            try:
                self._show(self._canvas(*self._newest), 1)
            except InputError as e:
                full = e
        with self._writing():
            for packet in self._stream.encode():  # flush
                self._out.mux(packet)
            self._out.close()
        if full:
            raise full

    @contextmanager
    def _writing(self):
        """The disk filled all the same (another program wrote to it meanwhile): one line."""
        try:
            yield
        except OSError as e:
            raise InputError(f"{self._path}: cannot write ({e.strerror or e}); the video may not play") from None
