"""AEDAT4 recordings (DV software, dv-processing) as a source."""
from __future__ import annotations

from pathlib import Path

import dv_processing as dv

from streaming.datatypes import EventPacket
from streaming.errors import InputError
from streaming.sensor import reference_image, require_on_sensor, size_text
from streaming.sources.dv import error_gist, from_event_store
from streaming.sources.interleave import interleave


class Aedat4Source:
    """An AEDAT4 recording (DV software, dv-processing): its events, and its APS frames as
    reference frames. Not paced: the pipeline paces recordings."""
    live = False

    def __init__(self, path: str | Path, sensor_size: tuple[int, int] | None = None):
        self._path = path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            self._rec = dv.io.MonoCameraRecording(str(path))
        except RuntimeError as e:
            raise InputError(f"{path}: not a readable AEDAT4 recording ({error_gist(e)})") from None
        if not self._rec.isEventStreamAvailable():
            raise InputError(f"{path}: no event stream (streams: {', '.join(self._rec.getStreamNames()) or 'none'}); "
                             f"record the camera's events output")
        self.width, self.height = self._rec.getEventResolution()
        if sensor_size is not None:
            self.height, self.width = sensor_size
        self.has_frames = self._rec.isFrameStreamAvailable()
        self.description = (f"{path.name} (AEDAT4, {self._rec.getCameraName()}, {size_text(self.height, self.width)}"
                            f"{', with frames' if self.has_frames else ''})")

    def __iter__(self):
        try:
            yield from self._items()
        except RuntimeError as e:  # a damaged packet further in than the open-time checks reach
            raise InputError(f"{self._path}: damaged recording ({error_gist(e)})") from None

    def _items(self):
        self._rec.resetSequentialRead()
        stores = iter(self._rec.getNextEventBatch, None)
        frames = iter(self._rec.getNextFrame, None) if self.has_frames else iter(())
        # dv frames are OpenCV's: BGR where they have colour
        yield from interleave(map(self._on_sensor, map(from_event_store, stores)),
                              ((int(f.timestamp), reference_image(f.image, "bgr")) for f in frames))

    def _on_sensor(self, ev: EventPacket) -> EventPacket:
        require_on_sensor(str(self._path), ev.x, ev.y, self.height, self.width)
        return ev

    def close(self):
        self._rec = None  # dv closes the file when the reader is freed
