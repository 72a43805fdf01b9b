"""Frames out over ZeroMQ, to any number of subscribers."""
from __future__ import annotations

import time

import zmq

from streaming.datatypes import Frame, InputError
from streaming.protocol import encode_frame, encode_preview, encode_stats


class Publisher:
    """A PUB socket (XPUB, so that it can see subscribers arrive)."""

    def __init__(self, address: str, wait_subscribers: int = 0, wait_timeout_s: float = 30.0):
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 1000)
        try:
            self._sock.bind(address)
        except zmq.ZMQError as e:
            self._sock.close(0)
            hint = "pass another --publish address, e.g. tcp://127.0.0.1:5556" if e.errno == zmq.EADDRINUSE \
                else "give an address such as tcp://127.0.0.1:5555"
            raise InputError(f"cannot publish on {address}: {e.strerror}; {hint}") from None
        self.address = address
        self._wait(wait_subscribers, wait_timeout_s)

    def _wait(self, n: int, timeout_s: float) -> None:
        """Block until n subscriptions arrived, so that no early frame is lost to them."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while seen < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000)):
                raise InputError(f"no subscriber connected to {self.address} within {timeout_s:g} s")
            if self._sock.recv()[:1] == b"\x01":
                seen += 1

    def frame(self, frame: Frame, preview_u8=None) -> None:
        self._sock.send_multipart(encode_frame(frame), copy=False)
        if preview_u8 is not None:
            self._sock.send_multipart(encode_preview(frame, preview_u8), copy=False)

    def stats(self, stats: dict) -> None:
        self._sock.send_multipart(encode_stats(stats))

    def close(self) -> None:
        self._sock.close()
