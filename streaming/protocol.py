"""The ZeroMQ wire protocol: multipart [topic, header, payload].

- b"frame":   JSON header {v, seq, t_start_us, t_end_us, height, width, dtype: "float32",
              encoding: "linear", latency_ms, run}; payload: the raw C-order (height, width) array.
              run describes what made the frame ({model, device, window, bins, source}, what
              --record stores as attributes), in every frame so that a late subscriber has it too.
- b"preview": the same header with dtype "uint8", encoding "tonemapped".
- b"stats":   a JSON header only.
Headers are strict JSON (no NaN or Infinity, which most languages' parsers refuse).
A consumer needs nothing but pyzmq and numpy: see README.md. Free of ZeroMQ itself, so that
the offline tools, which read DEFAULT_ADDRESS through the configs, run where it is missing.
"""
from __future__ import annotations

import json

import numpy as np

from streaming.datatypes import Frame, InputError

VERSION = 1
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


def check_port(address: str) -> None:
    """ZeroMQ takes a TCP port modulo 65536 (tcp://127.0.0.1:99999 binds 34463, where no
    subscriber will look): refuse it instead. '*' (any free port) passes."""
    port = address.rpartition(":")[2]
    if address.startswith("tcp://") and port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise InputError(f"bad address {address}: a TCP port is 1-65535 (e.g. {DEFAULT_ADDRESS})")


def frame_header(frame: Frame, image: np.ndarray, encoding: str, run: dict) -> bytes:
    return json.dumps({
        "v": VERSION, "seq": frame.seq, "t_start_us": frame.t_start_us, "t_end_us": frame.t_end_us,
        "height": image.shape[0], "width": image.shape[1], "dtype": str(image.dtype),
        "encoding": encoding, "latency_ms": round(frame.latency_s * 1e3, 3), "run": run,
    }, allow_nan=False).encode()


def encode_frame(frame: Frame, run: dict) -> list[bytes]:
    img = np.ascontiguousarray(frame.image, np.float32)
    return [b"frame", frame_header(frame, img, "linear", run), img.tobytes()]


def encode_preview(frame: Frame, image_u8: np.ndarray, run: dict) -> list[bytes]:
    img = np.ascontiguousarray(image_u8, np.uint8)
    return [b"preview", frame_header(frame, img, "tonemapped", run), img.tobytes()]


def encode_stats(stats: dict) -> list[bytes]:
    return [b"stats", json.dumps({"v": VERSION, **stats}, allow_nan=False).encode()]


def decode(parts: list[bytes]) -> tuple[str, dict, np.ndarray | None]:
    """(topic, header, image or None) from a received multipart message; another program's
    message (on a port it shares with none of ours, say) is an InputError."""
    try:
        topic, header = parts[0].decode(), json.loads(parts[1])
        if header.get("v") != VERSION:
            raise ValueError(f"protocol version {header.get('v')!r}, not {VERSION}")
        if len(parts) < 3:
            return topic, header, None
        img = np.frombuffer(parts[2], dtype=header["dtype"]).reshape(header["height"], header["width"])
    except (IndexError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"a message that is not a frame pipeline's ({type(e).__name__}: {e}); is the address "
                         "that of run_replay.py or run_live.py?") from None
    return topic, header, img
