"""What every output of a pipeline is (a Sink), and the files a run asks for (Outputs)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np

from streaming.datatypes import Frame
from streaming.outputs.recorder import FrameRecorder
from streaming.outputs.video import SideBySideVideo


class Sink(Protocol):
    """Where frames go: each frame with its 8-bit causal preview (tonemap.py), in order."""

    def add(self, frame: Frame, preview_u8: np.ndarray) -> None: ...


class FileSink(Sink, Protocol):
    """A sink the pipeline opens for its run, and closes at its end."""

    def close(self) -> None: ...


@dataclass
class Outputs:
    """Where a pipeline's frames go besides its publisher, and how often it reports."""
    record: str | None = None  # HDF5 file of the linear frames
    video: str | None = None  # events | reconstruction | reference, side by side
    wait_subscribers: int = 0
    stats_every_s: float = 2.0


def open_files(outputs: Outputs, height: int, width: int, run: dict, fps: Fraction) -> list[FileSink]:
    """The --record and --video files. run: the run's description, kept in the recording.
    fps: the video's, one tick a window."""
    files: list[FileSink] = []
    try:
        if outputs.record:
            files.append(FrameRecorder(outputs.record, height, width, run))
        if outputs.video:
            files.append(SideBySideVideo(outputs.video, height, width, fps))
    except BaseException:
        for f in files:
            f.close()
        raise
    return files
