"""A consumer of the frame stream with nothing but pyzmq and numpy.

    python examples/subscribe.py [tcp://127.0.0.1:5555]

Prints one line per frame; stops when the pipeline sends its final stats message.
"""
import json
import sys

import numpy as np
import zmq

address = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"
sock = zmq.Context().socket(zmq.SUB)
try:
    sock.connect(address)
except zmq.ZMQError as e:
    sys.exit(f"error: cannot subscribe to {address} ({e}); give tcp://HOST:PORT")
sock.setsockopt(zmq.SUBSCRIBE, b"frame")
sock.setsockopt(zmq.SUBSCRIBE, b"stats")
while True:
    topic, header, *payload = sock.recv_multipart()
    h = json.loads(header)
    if topic == b"stats":
        if h.get("final"):
            break
        continue
    frame = np.frombuffer(payload[0], dtype=h["dtype"]).reshape(h["height"], h["width"])
    print(h["seq"], h["t_start_us"], h["t_end_us"], f"{frame.mean():.4g}", flush=True)
