"""Live sources built on dv-processing: iniVation cameras and DV network streams; and what the
other dv-processing modules share (the conversion of event stores, the denoiser, error messages).

dv-processing speaks dv.EventStore (bool polarity); the program speaks EventPacket (+1/-1).
to_event_store / from_event_store are the only two places where one becomes the other.
from_event_store is cheap (a few ns an event); to_event_store is not (dv's Python API takes one
event at a time, ~0.6 µs each: bench.dvio), so what dv can do on its own stores (the denoiser,
forwarding a live source) is done before any conversion.
"""
from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable

import dv_processing as dv
import numba
import numpy as np

from streaming.datatypes import EventPacket
from streaming.errors import InputError, SourceLost, SourceUnavailable
from streaming.sensor import reference_image, size_text
from streaming.sources.interleave import Interleaver

IDLE_SLEEP_S = 0.001  # live inputs return None until the next batch: poll, don't spin
GREETING_TIMEOUT_S = 5.0  # a DV server sends its stream's description the moment a reader connects:
GREETING_BYTES = 12  # its size (4 bytes), its flatbuffer's root offset (4) and identifier (4):
DV_HEADER_ID = b"IOHE"
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


def error_gist(err: Exception) -> str:
    """The gist of a dv-processing error. Its messages are either one line with a boost
    suffix ("connect: Connection refused [system:111 at ...]") or a C++ source location,
    then "Type: message", then a stack trace."""
    lines = str(err).splitlines() or [type(err).__name__]
    gist = lines[1] if len(lines) > 1 and lines[0].startswith("/") else lines[0]
    return gist.split(" [system:")[0]


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
            raise SourceUnavailable(f"cannot open camera {serial or serials[0]}: {error_gist(e)}; "
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
            raise SourceLost(f"{lost}: {error_gist(e)}") from None
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


@contextmanager
def _greeted(host: str, port: int, url: str):
    """Open while a DV server has been heard on a plain socket. dv's reader waits for the
    server's stream description without end and without a word: a server that accepts a
    connection and never sends it (a web server, a ZeroMQ port, a stuck process) would leave the
    run silent until Ctrl-C. A plain socket waits for a bounded time: a DV server's first bytes
    are the description's size and a flatbuffer marked "IOHE". It stays open until dv's reader
    is connected: closed before, it hung a server in this process (serve_events, in the tests),
    whose writer reports a closed connection on a thread that needs the GIL, which dv's reader
    holds while it connects."""
    greeting = b""
    try:
        probe = socket.create_connection((host, port), timeout=GREETING_TIMEOUT_S)
    except OSError as e:
        raise SourceUnavailable(f"cannot connect to {url}: is the server running? ({e.strerror or e})") from None
    with probe:
        try:
            while len(greeting) < GREETING_BYTES and (chunk := probe.recv(GREETING_BYTES - len(greeting))):
                greeting += chunk
        except OSError:  # a timeout or a reset: what came is judged below
            pass
        if greeting[8:GREETING_BYTES] != DV_HEADER_ID:
            heard = "sent nothing" if not greeting else "did not answer as a DV server does"
            raise SourceUnavailable(f"{url} accepted the connection but {heard} within {GREETING_TIMEOUT_S:g} s: is "
                                    f"it a DV event stream? (the DV software's network output, or run_live.py "
                                    f"--serve-events)")
        yield


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
            with _greeted(host, port, url):
                self._reader = dv.io.NetworkReader(host, port)
        except RuntimeError as e:
            raise SourceUnavailable(f"cannot connect to {self._url}: is the server running? ({error_gist(e)})") from None
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
