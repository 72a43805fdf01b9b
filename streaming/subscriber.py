"""The stock consumers' end of the wire (view.py, the recorder): a SUB socket on a pipeline."""
from __future__ import annotations

import zmq

from streaming.datatypes import InputError
from streaming.protocol import DEFAULT_ADDRESS, check_port


def subscriber(address: str, topics) -> zmq.Socket:
    """A SUB socket connected to a pipeline at `address`, subscribed to `topics`."""
    check_port(address)
    sock = zmq.Context.instance().socket(zmq.SUB)
    try:
        sock.connect(address)
    except zmq.ZMQError as e:
        sock.close(0)
        raise InputError(f"cannot connect to {address}: {e.strerror}; give an address such as "
                         f"{DEFAULT_ADDRESS}") from None
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock
