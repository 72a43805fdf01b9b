"""Wires the stages: source -> sanitizer -> windows -> binner -> ring -> reconstructor -> sinks.

The caller (a front: run_replay.py, run_live.py) builds the reconstructor and the publisher and
hands them in; the pipeline knows no network. One thread reads the source and bins; the calling
thread runs the model and feeds the sinks. They share the ring (the windows, under its lock) and the run's counters (the reader's plain
ints, which the reports only read).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from fractions import Fraction

import numpy as np

from streaming.binner import voxel_into
from streaming.config import RunConfig
from streaming.datatypes import EventPacket, Frame, Reconstructor, Source, VoxelWindow
from streaming.errors import InputError, WindowRefused
from streaming.exits import StopSignals, say
from streaming.outputs.publisher import Publisher
from streaming.outputs.sinks import Outputs, Sink, open_files
from streaming.outputs.tonemap import CausalToneMapper
from streaming.ring import VoxelRing
from streaming.sanitizer import Sanitizer
from streaming.sources.pacing import paced
from streaming.stats import RunStats
from streaming.windows import NEEDS_FRAMES, Windower

RING_CAPACITY = 8  # also bounds the work a stop waits for: the windows queued when it comes


def warm_up(model: Reconstructor, bins: int, height: int, width: int) -> None:
    """Compile and load every kernel before the clock starts, so the first live windows do not
    queue behind a JIT compile. A live front calls it once more at a small size before it
    connects: on a first run Numba compiles for seconds, and a stream's server may send (or end)
    meanwhile."""
    g = np.zeros((2 * bins, height, width), np.float32)
    ev = EventPacket(np.arange(3, dtype=np.int64), *np.zeros((2, 3), np.uint16), np.ones(3, np.int8))
    Sanitizer(height, width)(ev)
    voxel_into(g, ev.x, ev.y, ev.t, ev.p, bins)
    for i in range(model.lookahead + 2):
        model.push(VoxelWindow(i, i, i + 1, g, ev))
    model.reset()


class Pipeline:
    def __init__(self, source: Source, cfg: RunConfig, model: Reconstructor, publisher: Publisher,
                 rate: float = 1.0, outputs: Outputs = Outputs(), max_seconds: float | None = None, log=say):
        """publisher: the caller's, which waited for its subscribers and finishes it (the final
        stats), so that one publisher can serve several pipelines (run_live.py --reconnect)."""
        self.source, self.cfg, self.rate, self.outputs, self.max_seconds = source, cfg, rate, outputs, max_seconds
        self.log = log
        if cfg.window.frame_aligned and not source.has_frames:
            raise InputError(f"{source.description} has no intensity frames; {NEEDS_FRAMES}")
        h, w = source.height, source.width
        self.model = model
        warm_up(model, cfg.bins, h, w)
        bins = cfg.bins if self.model.uses_grid else 0
        self.ring = VoxelRing(RING_CAPACITY, bins, h, w, live=source.live, overload=cfg.overload)
        self._signals = StopSignals()
        self._stop = self._signals.first  # also set by the pipeline itself, once it ends
        self._reader_error: BaseException | None = None
        self._tonemap = CausalToneMapper()
        run = {"model": cfg.model, "device": cfg.device, "window": cfg.window.describe(), "bins": cfg.bins,
               "source": source.description}
        self._publisher = publisher
        self._publisher.run = run
        # a tick a window where windows are of one length (30 ms: 100/3 frames/s), else 25 a second
        ms = cfg.window.fixed_ms
        fps = Fraction(1000 / ms).limit_denominator(1000) if ms else Fraction(25)
        self._files = open_files(outputs, h, w, run, fps)
        self._sinks: list[Sink] = [publisher, *self._files]
        self.stats = RunStats(clock_rate=1.0 if source.live else rate)

    def _read(self) -> None:
        """Reader thread: source -> sanitizer -> windower -> ring (bins in place)."""
        sanitize = Sanitizer(self.source.height, self.source.width)
        windower = Windower(self.cfg.window)
        t_limit, reached = None, False
        try:
            for item in paced(self.source, self.rate, self._stop):
                if isinstance(item, EventPacket):
                    ev = sanitize(item)
                    dropped = len(item) - len(ev)
                    if len(ev):
                        self.stats.read_up_to(int(ev.t[-1]))
                    if self.max_seconds is not None and len(ev):
                        t_limit = t_limit or int(ev.t[0]) + int(self.max_seconds * 1e6)
                        n = int(np.searchsorted(ev.t, t_limit))
                        reached, ev = n < len(ev), ev[:n]
                    self.stats.events += len(ev)
                    self.stats.outside, self.stats.unordered = sanitize.outside, sanitize.unordered
                    closed = windower.add_events(ev, dropped)
                else:
                    closed = windower.add_reference(item)
                for w in closed:  # lazily cut: an hour's gap in 1 ms windows is 3.6 million of them
                    if self._stop.is_set():
                        return
                    self.ring.put(w)
                if reached:
                    break
            if not reached:
                sanitize.finish()
                self.stats.unordered = sanitize.unordered
            # the window open at the end (or at --max-seconds) is one too, not at a stop; frame-aligned
            # windows have none, and stopped at --max-seconds before the first image, no source lacks frames
            for w in [] if self._stop.is_set() or reached and self.cfg.window.frame_aligned else windower.flush():
                self.ring.put(w)
        except BaseException as e:  # surfaced by run() in the main thread
            self._reader_error = e
        finally:
            self.ring.close()

    def run(self) -> RunStats:
        """Until the source ends, or Ctrl-C (or SIGTERM): then reading stops at the next window
        and the windows queued (RING_CAPACITY at most) are processed; a second signal drops them.
        Signals are heard until the files are closed: a Ctrl-C while the video encoder flushes
        would lose the video."""
        reader = threading.Thread(target=self._read, name="reader", daemon=True)
        held: deque[VoxelWindow] = deque()
        next_report = time.monotonic() + self.outputs.stats_every_s
        with self._signals:
            reader.start()
            try:
                while not self._signals.second.is_set():
                    window = self.ring.get(timeout=0.2)
                    if window is not None:
                        self._process(window, held)
                    elif self.ring.finished:
                        break
                    if time.monotonic() >= next_report:
                        next_report += self.outputs.stats_every_s
                        self._report()
            finally:
                self._stop.set()
                self.ring.close()  # a reader waiting for room in the ring gives up its window
                reader.join()
                self._close()
        if self._reader_error is not None:
            raise self._reader_error
        return self.stats

    @property
    def exit_status(self) -> int:
        """0, or the status a shell expects of a run that a signal stopped (130 Ctrl-C, 143 SIGTERM)."""
        return self._signals.exit_status

    def _process(self, window: VoxelWindow, held: deque) -> None:
        self.stats.windows += 1
        held.append(window)
        try:
            image = self.model.push(window)
        except WindowRefused:  # the model's state stays as it was
            self.stats.rejected += 1
            held.pop()  # as if it never came, so that held[] still mirrors the model's windows
            self.ring.release(newest=True)
            return
        if image is not None:
            centre = held[-1 - self.model.lookahead]
            frame = Frame(centre.seq, centre.t_start_us, centre.t_end_us, image,
                          time.monotonic() - centre.t_closed, centre)
            self._emit(frame)
        while len(held) > self.model.lookahead:
            held.popleft()
            self.ring.release()
        self.stats.merged, self.stats.dropped, self.stats.dropped_events = \
            self.ring.merged, self.ring.dropped, self.ring.dropped_events

    def _emit(self, frame: Frame) -> None:
        preview = self._tonemap(frame.image)
        for sink in self._sinks:
            sink.add(frame, preview)
        self.stats.frame_out(frame.latency_s)

    def _report(self) -> None:
        s = self.stats.snapshot()
        self._publisher.stats(s)
        self.log(RunStats.line(s))

    def _close(self) -> None:
        """Each file is closed even if another's close fails (the first failure is raised after)."""
        failed = None
        try:
            for out in self._files:
                try:
                    out.close()
                except Exception as e:  # noqa: BLE001  raised below, once the rest is closed
                    failed = failed or e
        finally:
            self.source.close()
        if failed:
            raise failed
