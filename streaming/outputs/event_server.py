"""A source's events served as a DV network stream (one machine holds the camera, another the GPU)."""
from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager, suppress
from typing import Callable

import dv_processing as dv

from streaming.datatypes import EventPacket, Source
from streaming.errors import InputError
from streaming.sources.dv import IDLE_SLEEP_S, error_gist, parse_address, to_event_store
from streaming.sources.pacing import paced

CLIENT_SETTLE_S = 0.1  # a reader counts once it stays connected this long (see _wait_for_readers)
WRITER_DRAIN_S = 1.0  # at the end of serving: the most we wait for the writer's queue to empty,
WRITER_LINGER_S = 0.3  # then for the packets in flight (measured: 0.3 s loses none on loopback)


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
        raise InputError(f"cannot serve on {host}:{port}: {error_gist(e)}; pick another port") from None
    try:
        if on_listening is not None:
            on_listening()
        if wait_clients:
            _wait_for_readers(writer, wait_clients)  # so that a slow-starting reader misses nothing
        return _forward(_event_stores(source, rate), writer)
    finally:
        _hang_up(writer, port)


def _wait_for_readers(writer: dv.io.NetworkWriter, count: int) -> None:
    """Until `count` readers have stayed connected CLIENT_SETTLE_S. NetworkSource first connects
    a plain socket, to hear the server speak, and its reader a few milliseconds later: the stream
    must not start on that first connection alone."""
    since = None
    while True:
        if writer.getClientCount() < count:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= CLIENT_SETTLE_S:
            return
        time.sleep(IDLE_SLEEP_S)


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
