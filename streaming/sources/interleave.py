"""Intensity frames placed among the events by timestamp, for sources that read them apart
(AEDAT4 and bag recordings, cameras)."""
from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

import numpy as np

from streaming.datatypes import EventPacket, ReferenceFrame


class Interleaver:
    """Places frames among the events by timestamp and numbers them with the global event
    count (event_idx = index of the last event before the image, as event_cnn_minimal does).

    A frame is held until an event batch reaches its timestamp. A frame that comes in behind
    events already passed on (a live camera's frame arrives after its readout) goes out at
    once, out of time order, with event_idx -1: holding the events for it would add the
    readout time to the latency."""

    def __init__(self):
        self.n_events = 0
        self._last_t = None  # timestamp of the last event passed on
        self._frames = deque()  # (t_us, image): one camera sends its frames in timestamp order

    def add_frame(self, t_us: int, image: np.ndarray):
        """image: linear float32 (H, W) in [0, 1]."""
        self._frames.append((t_us, image))

    def events(self, ev: EventPacket):
        while self._frames and self._due(self._frames[0][0], ev):
            t_us, image = self._frames.popleft()
            cut = int(np.searchsorted(ev.t, t_us, "left"))
            if cut:
                yield self._pass(ev[:cut])
                ev = ev[cut:]
            yield ReferenceFrame(t_us, image, -1 if self._late(t_us) else max(self.n_events - 1, 0))
        if len(ev):
            yield self._pass(ev)

    def _due(self, t_us: int, ev: EventPacket) -> bool:
        return self._late(t_us) or (len(ev) > 0 and t_us <= ev.t[-1])

    def _late(self, t_us: int) -> bool:
        return self._last_t is not None and t_us < self._last_t

    def flush(self):
        """End of input: the frames after the last event."""
        while self._frames:
            t_us, image = self._frames.popleft()
            yield ReferenceFrame(t_us, image, max(self.n_events - 1, 0))

    def _pass(self, ev: EventPacket) -> EventPacket:
        self.n_events += len(ev)
        self._last_t = int(ev.t[-1])
        return ev


def interleave(packets: Iterable[EventPacket], frames: Iterator[tuple[int, np.ndarray]]):
    """A recording's event packets and its (t_us, image) frames, each in time order, as one
    time-ordered stream: each frame is read ahead, and goes out before the events at or
    after its timestamp."""
    merge = Interleaver()
    frame = next(frames, None)
    for ev in packets:
        while frame is not None and len(ev) and frame[0] <= ev.t[-1]:
            merge.add_frame(*frame)
            frame = next(frames, None)
        yield from merge.events(ev)
    while frame is not None:
        merge.add_frame(*frame)
        frame = next(frames, None)
    yield from merge.flush()
