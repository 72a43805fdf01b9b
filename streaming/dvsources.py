"""Sources built on dv-processing: AEDAT4 recordings, iniVation cameras, DV network streams.

Also the other direction: serving a source's events as a DV network stream (one machine holds
the camera, another the GPU), and dv-processing's background-activity denoiser.

dv-processing speaks dv.EventStore (bool polarity); the program speaks EventPacket (+1/-1).
to_event_store / from_event_store are the only two places where one becomes the other.
from_event_store is cheap (a few ns an event); to_event_store is not (dv's Python API takes one
event at a time, ~0.6 µs each: bench.dvio), so what dv can do on its own stores (the denoiser,
forwarding a live source) is done before any conversion.
"""
from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Callable

import dv_processing as dv
import numba
import numpy as np

from streaming.datatypes import (EventPacket, InputError, Source, SourceLost, SourceUnavailable, reference_image,
                                 require_on_sensor, size_text)
from streaming.interleave import Interleaver, interleave
from streaming.sources import paced

IDLE_SLEEP_S = 0.001  # live inputs return None until the next batch: poll, don't spin
WRITER_DRAIN_S = 1.0  # at the end of serving: the most we wait for the writer's queue to empty,
WRITER_LINGER_S = 0.3  # then for the packets in flight (measured: 0.3 s loses none on loopback)
BACKGROUND_ACTIVITY_US = 2000  # dv-processing's default support window for the denoiser


def to_event_store(ev: EventPacket) -> dv.EventStore:
    """ev must be time-sorted: dv.EventStore refuses an event older than the one before.

    dv-processing's Python API builds a store one event at a time (about 0.6 µs each here: bench.dvio)."""
    store = dv.EventStore()
    for t, x, y, p in zip(ev.t.tolist(), ev.x.tolist(), ev.y.tolist(), (ev.p > 0).tolist()):
        store.push_back(t, x, y, p)
    return store


def from_event_store(store: dv.EventStore) -> EventPacket:
    a = store.numpy()  # one copy, records of timestamp (µs), x, y (int16), polarity (0/1)
    n = len(a)
    ev = EventPacket(np.empty(n, np.int64), np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.int8))
    _split_records(a, ev.t, ev.x, ev.y, ev.p)
    return ev


def _load_converter() -> None:
    """Compile (or load from numba's cache, ~0.4 s) the converter before a live stream starts:
    a reader that stalls that long at 60 Mev/s makes the sender drop events."""
    from_event_store(dv.EventStore())


@numba.njit(nogil=True, cache=True)
def _split_records(a, t, x, y, p):
    """One pass over dv's records. numpy's four strided field casts take 3x as long
    (bench.dvio), and with them a live reader at 60 Mev/s (640x480, 2 cores shared with the
    sender) fell further behind, so the sender dropped more events (README, measured)."""
    for i in range(a.shape[0]):
        t[i] = a[i]["timestamp"]
        x[i] = a[i]["x"]
        y[i] = a[i]["y"]
        p[i] = 2 * a[i]["polarity"] - 1


def denoiser(width: int, height: int) -> Callable[[dv.EventStore], dv.EventStore]:
    """dv-processing's background-activity filter, on dv's own stores: drops events with no
    neighbour active within the last BACKGROUND_ACTIVITY_US. Stateful across stores: one per
    stream."""
    filt = dv.noise.BackgroundActivityNoiseFilter(
        (width, height), backgroundActivityDuration=timedelta(microseconds=BACKGROUND_ACTIVITY_US))

    def denoise(store: dv.EventStore) -> dv.EventStore:
        filt.accept(store)
        return filt.generateEvents()

    return denoise


def _keep_all(store: dv.EventStore) -> dv.EventStore:
    return store


def _reason(err: Exception) -> str:
    """The gist of a dv-processing error. Its messages are either one line with a boost
    suffix ("connect: Connection refused [system:111 at ...]") or a C++ source location,
    then "Type: message", then a stack trace."""
    lines = str(err).splitlines() or [type(err).__name__]
    gist = lines[1] if len(lines) > 1 and lines[0].startswith("/") else lines[0]
    return gist.split(" [system:")[0]


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
            raise InputError(f"{path}: not a readable AEDAT4 recording ({_reason(e)})") from None
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
            raise InputError(f"{self._path}: damaged recording ({_reason(e)})") from None

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


def _describe_camera(d) -> str:
    return f"{str(d.cameraModel).removeprefix('CameraModel.')} {d.serialNumber}"


class CameraSource:
    """A live iniVation camera (DAVIS, DVXplorer) through dv-processing. serial None: the first
    one found. Yields its events and, for a DAVIS, its APS frames; denoise: through dv's
    background-activity filter."""
    live = True

    def __init__(self, serial: str | None = None, denoise: bool = False):
        _load_converter()
        found = dv.io.camera.discover()
        if not found:  # open() on an empty list raises a bare IndexError: check first
            raise SourceUnavailable("no event camera found (discovered: none); plug in a DAVIS/DVXplorer "
                                    "or use --camera tcp://HOST:PORT")
        serials = [d.serialNumber for d in found]
        if serial and serial not in serials:
            raise SourceUnavailable(f"no camera with serial {serial} (discovered: "
                                    f"{', '.join(_describe_camera(d) for d in found)}); give one of these serials")
        try:
            self._cam = dv.io.camera.open(serial or serials[0])
        except RuntimeError as e:  # typically in use by another program, or no USB permission
            raise SourceUnavailable(f"cannot open camera {serial or serials[0]}: {_reason(e)}; "
                                    f"close other programs using it and check its USB permissions") from None
        self.width, self.height = self._cam.getEventResolution()
        self.has_frames = self._cam.isFrameStreamAvailable()
        self._name = self._cam.getCameraName()
        self._clean = denoiser(self.width, self.height) if denoise else _keep_all
        self.description = f"camera {self._name} ({size_text(self.height, self.width)})"

    def __iter__(self):
        merge = Interleaver()
        while True:
            store, frames = self._read()
            for frame in frames:
                merge.add_frame(int(frame.timestamp), reference_image(frame.image, "bgr"))
            if store is None and not frames:
                time.sleep(IDLE_SLEEP_S)
                yield EventPacket.empty()  # nothing came: hand control back anyway, so a stop is heard
                continue
            yield from merge.events(EventPacket.empty() if store is None else from_event_store(store))

    def stores(self):
        """The events alone, as dv's stores (what serve_events forwards)."""
        while True:
            store, _ = self._read()
            if store is None:
                time.sleep(IDLE_SLEEP_S)
                store = dv.EventStore()  # empty: a stop is heard while the camera is silent
            yield store

    def _read(self) -> tuple[dv.EventStore | None, list[dv.Frame]]:
        """The next event batch, denoised if asked (None: nothing yet), and the frames that came in."""
        lost = f"camera {self._name} stopped (unplugged?)"
        if not self._cam.isRunning():
            raise SourceLost(lost)
        try:
            store = self._cam.getNextEventBatch()
            if store is not None:
                store = self._clean(store)
            frames = []
            while self.has_frames and (f := self._cam.getNextFrame()) is not None:
                frames.append(f)
        except RuntimeError as e:
            raise SourceLost(f"{lost}: {_reason(e)}") from None
        return store, frames

    def close(self):
        self._cam = None  # dv stops the camera when the object is freed


def parse_address(text: str) -> tuple[str, int]:
    """'tcp://HOST:PORT' or 'HOST:PORT' -> (IP address, port). dv takes addresses only: a host
    name (localhost, camera-pc.local) is looked up here."""
    host, sep, port = text.removeprefix("tcp://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"bad address {text!r}: give HOST:PORT, e.g. tcp://127.0.0.1:7777")
    try:
        return socket.gethostbyname(host), int(port)
    except (socket.gaierror, UnicodeError) as e:  # a name server may be back later: --reconnect waits
        raise SourceUnavailable(f"cannot find the host {host} ({getattr(e, 'strerror', None) or e})") from None


class NetworkSource:
    """A DV event stream over TCP, as served by the DV software's network output or by
    serve_events. The server stopping is the end of input, not an error, unless end_is_lost
    (--reconnect): a server that stops and one that dies look alike from here, and a run that
    is to outlive its source's losses takes both as a loss. denoise: through dv's
    background-activity filter."""
    live = True
    has_frames = False  # a DV stream carries one type: these are events

    def __init__(self, url: str, denoise: bool = False, end_is_lost: bool = False):
        host, port = parse_address(url)
        self._url = url  # as the user wrote it, a host name included
        self._end_is_lost = end_is_lost
        _load_converter()
        try:
            self._reader = dv.io.NetworkReader(host, port)
        except RuntimeError as e:
            raise SourceUnavailable(f"cannot connect to {self._url}: is the server running? ({_reason(e)})") from None
        if not self._reader.isEventStreamAvailable():
            raise InputError(f"{self._url} serves no events (it sends a different stream type); "
                             f"connect to the server's events output")
        resolution = self._reader.getEventResolution()
        if resolution is None:
            raise InputError(f"{self._url} does not say its sensor size; serve it from the DV software "
                             f"or serve_events, which send it")
        self.width, self.height = resolution
        self._clean = denoiser(self.width, self.height) if denoise else _keep_all
        self.description = f"{self._url} ({self._reader.getCameraName()}, {size_text(self.height, self.width)})"

    def __iter__(self):
        return map(from_event_store, self.stores())

    def stores(self):
        """The events as dv's stores, denoised if asked."""
        while True:
            store = self._reader.getNextEventBatch()
            if store is not None:
                yield self._clean(store)
            elif not self._reader.isRunning():  # the server stopped or went away
                if self._end_is_lost:
                    raise SourceLost(f"the stream from {self._url} ended (its server stopped or went away)")
                return
            else:
                time.sleep(IDLE_SLEEP_S)
                yield dv.EventStore()  # empty: a stop is heard while the stream is silent

    def close(self):
        self._reader = None  # dv disconnects when the reader is freed


def open_source(spec: str | None, denoise: bool = False, reconnect: bool = False) -> Source:
    """'' or None: the first camera; 'tcp://HOST:PORT': a network stream; else a camera serial.
    reconnect: the caller reopens a lost source, and a network stream's end counts as lost."""
    if spec and spec.startswith("tcp://"):
        return NetworkSource(spec, denoise, end_is_lost=reconnect)
    if spec and "://" in spec:
        raise InputError(f"--camera {spec}: DV streams come over tcp:// only; give tcp://HOST:PORT or a camera serial")
    if spec and ":" in spec and spec.rpartition(":")[2].isdigit():  # no camera serial ends in :PORT
        raise InputError(f"--camera {spec}: a network stream? give tcp://{spec}")
    return CameraSource(spec or None, denoise)


def serve_events(source: Source, address: str, *, rate: float = 1.0,
                 on_listening: Callable[[], None] | None = None, wait_clients: int = 0) -> int:
    """Forward the source's events as a DV network stream on HOST:PORT until the source ends;
    returns the number of events written. A camera's or a stream's dv stores go out as they
    come; other sources' events are converted (slowly: see the module's note), a recording
    replayed at `rate` x real time. Reference frames stay behind: a DV stream carries one type."""
    host, port = parse_address(address)
    stream = dv.io.Stream.EventStream(0, "events", source.description, (source.width, source.height))
    try:
        writer = dv.io.NetworkWriter(host, port, stream)
    except RuntimeError as e:
        raise InputError(f"cannot serve on {host}:{port}: {_reason(e)}; pick another port") from None
    try:
        if on_listening is not None:
            on_listening()
        while writer.getClientCount() < wait_clients:  # so that a slow-starting reader misses nothing
            time.sleep(IDLE_SLEEP_S)
        return _forward(_event_stores(source, rate), writer)
    finally:
        _hang_up(writer, port)


def _event_stores(source: Source, rate: float):
    if hasattr(source, "stores"):  # dv's cameras and streams: their stores as they come
        return source.stores()
    items = source if source.live else paced(source, rate)
    return (to_event_store(ev) for ev in items if isinstance(ev, EventPacket) and len(ev))


def _forward(stores, writer: dv.io.NetworkWriter) -> int:
    written = 0
    for store in stores:
        if store.size():
            writer.writeEvents(store)
            written += store.size()
    return written


def _hang_up(writer: dv.io.NetworkWriter, port: int):
    """Disconnect the writer's clients so that it can be freed.

    dv-processing 2.0.4 deadlocks when a NetworkWriter is freed with clients connected: its
    destructor joins its IO thread holding the GIL, and that thread needs the GIL to report
    the connections it closes. So let the last packets go out, shut the client sockets down
    ourselves (the IO thread reports it while we sleep without the GIL), then let it go."""
    deadline = time.monotonic() + WRITER_DRAIN_S
    while writer.getQueuedPacketCount() and time.monotonic() < deadline:
        time.sleep(IDLE_SLEEP_S)
    if writer.getClientCount():  # the queue count leaves out the packets still being sent
        time.sleep(WRITER_LINGER_S)
    for fd in _client_fds(port):
        with suppress(OSError), _borrowed_socket(fd) as sock:  # OSError: that client just left
            sock.shutdown(socket.SHUT_RDWR)
    while writer.getClientCount() and time.monotonic() < deadline + WRITER_DRAIN_S:
        time.sleep(IDLE_SLEEP_S)


def _client_fds(port: int) -> list[int]:
    """This process's connected sockets whose local port is `port`: a server's clients."""
    fds = []
    for fd in map(int, os.listdir("/dev/fd")):
        # OSError: not a socket (or the listing's own descriptor, closed by now), or no peer
        with suppress(OSError), _borrowed_socket(fd) as sock:
            inet = sock.family in (socket.AF_INET, socket.AF_INET6)
            if inet and sock.getsockname()[1] == port and sock.getpeername():
                fds.append(fd)
    return fds


@contextmanager
def _borrowed_socket(fd: int):
    """A socket object over a descriptor that someone else owns: it never closes it."""
    sock = socket.socket(fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()
