"""The stock consumers' end of the wire (view.py, the recorder): a SUB socket on a pipeline."""
from __future__ import annotations

import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from streaming.errors import InputError
from streaming.outputs.protocol import DEFAULT_ADDRESS, BadMessage, check_port, decode


class Subscription:
    """Decoded messages from a pipeline at `address`, on `topics`, and whether it has gone.

    A pipeline ends by sending its final stats, but ZeroMQ drops what a subscriber's full queue
    cannot take, so a consumer that fell behind may never get that message. The pipeline's
    process ending closes the connection, though: a consumer that watches for that, and has
    read what was queued before it, knows that nothing more will come."""

    def __init__(self, address: str, topics):
        check_port(address)
        self._sock = zmq.Context.instance().socket(zmq.SUB)
        # watching before connecting, so that a publisher already there is seen to arrive
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        try:
            self._sock.connect(address)
        except zmq.ZMQError as e:
            self.close()
            raise InputError(f"cannot connect to {address}: {e.strerror}; give an address such as "
                             f"{DEFAULT_ADDRESS}") from None
        for topic in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._connected = self.gone = False
        self._address = address
        self.skipped = 0  # bad messages

    def recv(self, timeout_ms: int | None = None):
        """The next message as (topic, header, image or None), or None: nothing came within
        timeout_ms (None: wait), or the pipeline has gone (then `gone` is set)."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1e3
        while not self.gone:
            left = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1e3))
            ready = dict(self._poller.poll(left))
            if self._sock in ready:  # queued messages first: they were sent before it went
                if msg := self._decoded():
                    return msg
                continue
            if self._monitor not in ready:
                return None
            event = recv_monitor_message(self._monitor)["event"]
            # a disconnect before any handshake is a refused attempt: the pipeline is not up yet
            self.gone = event == zmq.EVENT_DISCONNECTED and self._connected
            self._connected |= event == zmq.EVENT_HANDSHAKE_SUCCEEDED
        while self._sock.poll(0):
            if msg := self._decoded():
                return msg
        return None

    def _decoded(self):
        """The next message, or None where it was a bad one (skipped)."""
        try:
            return decode(self._sock.recv_multipart())
        except BadMessage as e:
            self.skip(str(e))
            return None

    def skip(self, reason: str) -> None:
        """Count a message the consumer cannot use. Said on stderr for the 1st, 10th, 100th, ...:
        a sender that sends nothing else must not flood the terminal."""
        self.skipped += 1
        if str(self.skipped).strip("0") == "1":
            print(f"warning: skipped a bad message from {self._address} ({reason}); {self.skipped} so far",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)
