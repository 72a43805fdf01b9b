"""Frames out over ZeroMQ, to any number of subscribers."""
from __future__ import annotations

import time

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from streaming.datatypes import Frame
from streaming.errors import InputError
from streaming.exits import say
from streaming.outputs.protocol import check_port, encode_frame, encode_preview, encode_stats

SETTLE_S = 0.1  # quiet after the last handshake: the subscriptions that follow it have arrived


class Publisher:
    """A PUB socket (XPUB, so that it can see subscribers arrive): a Sink (sinks.py) whose owner,
    not the pipeline, ends it. `run`: the frame headers' description of the run (protocol.py),
    set by the pipeline that publishes. One publisher may outlive several pipelines (run_live.py
    --reconnect), so that subscribers stay connected: `finish` ends it with the final stats,
    which tell them the run is over."""

    def __init__(self, address: str, log=say):
        check_port(address)
        self.run: dict = {}
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 1000)
        # watching before binding: a subscriber already retrying may connect the moment it is bound
        self._handshakes = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            self._sock.bind(address)
        except zmq.ZMQError as e:
            self._stop_watching()
            self._sock.close(0)
            hint = "pass another --publish address, e.g. tcp://127.0.0.1:5556" if e.errno == zmq.EADDRINUSE \
                else "give an address such as tcp://127.0.0.1:5555"
            raise InputError(f"cannot publish on {address}: {e.strerror}; {hint}") from None
        self.address = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()  # the port bound where it says *
        if self.address != address:
            log(f"publishing on {self.address}")
        self._log = log

    def wait_for_subscribers(self, n: int, timeout_s: float = 30.0) -> None:
        """Block until n subscribers are connected and their subscriptions are in, so that no
        early frame is lost to them. Once, before the first frame: afterwards the socket no
        longer watches for them. Subscriptions cannot be counted as subscribers: one SUB
        sends one per topic, and XPUB passes on only the first subscription to a topic. So
        peers are counted by their handshakes, and their subscriptions (sent right after it)
        are in once the socket has been quiet for SETTLE_S."""
        if n > 0:
            self._log(f"waiting for {n} subscriber(s) on {self.address}")
        monitor = self._handshakes
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline, peers = time.monotonic() + timeout_s, 0
        try:
            while n > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InputError(f"{peers} of {n} subscribers connected to {self.address} "
                                     f"within {timeout_s:g} s")
                ready = dict(poller.poll(int(min(left, SETTLE_S) * 1000)))
                if monitor in ready:
                    recv_monitor_message(monitor)
                    peers += 1
                if self._sock in ready:
                    self._sock.recv()  # a new topic's subscription (polling applies every one)
                if not ready and peers >= n:
                    return
        finally:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if not self._handshakes.closed:
            self._sock.disable_monitor()
            self._handshakes.close(0)

    def add(self, frame: Frame, preview_u8: np.ndarray) -> None:
        self._sock.send_multipart(encode_frame(frame, self.run), copy=False)
        self._sock.send_multipart(encode_preview(frame, preview_u8, self.run), copy=False)

    def stats(self, stats: dict) -> None:
        self._sock.send_multipart(encode_stats(stats))

    def finish(self, stats: dict) -> None:
        """The final stats (consumers end on them), then the socket closes."""
        self.stats({**stats, "final": True})
        self._stop_watching()
        self._sock.close()
