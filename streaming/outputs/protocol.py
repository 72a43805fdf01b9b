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

from streaming.datatypes import Frame
from streaming.errors import InputError
from streaming.sensor import MAX_SENSOR_SIDE

VERSION = 1
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
IMAGE_DTYPES = {"frame": "float32", "preview": "uint8"}  # the topics that carry an image, and its type


class BadMessage(InputError):
    """A message of this protocol whose fields a consumer cannot use (a wrong size, a null where
    a number goes, another topic that shares a prefix): it skips it, counts it and goes on."""


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
    """(topic, header, image or None) from a received multipart message. Another program's
    message (on a port it shares with none of ours, say) is an InputError; one of this protocol
    that a consumer could not use, a BadMessage."""
    try:
        topic, header = parts[0].decode(), json.loads(parts[1], parse_constant=_refuse)
        if header.get("v") != VERSION:
            raise ValueError(f"protocol version {header.get('v')!r}, not {VERSION}")
    except (IndexError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise InputError(f"a message that is not a frame pipeline's ({type(e).__name__}: {e}); is the address "
                         "that of run_replay.py or run_live.py?") from None
    if topic == "stats":
        _check_stats(header)
        return topic, header, None
    if topic not in IMAGE_DTYPES:  # a subscription to b"frame" also gets b"frames_x"
        raise BadMessage(f"topic {topic!r}")
    return topic, header, _image(topic, header, parts[2:])


def _refuse(constant: str):
    raise ValueError(f"{constant} in the header (strict JSON has none)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_stats(header: dict) -> None:
    """Flat: numbers, or null where none is known yet; and whether it is the final one."""
    bad = [k for k, v in header.items() if k != "final" and not (v is None or _is_number(v))]
    if bad or not isinstance(header.get("final", False), bool):
        raise BadMessage(f"stats with a field that is no number: {', '.join(bad) or 'final'}")


def _image(topic: str, header: dict, payload: list[bytes]) -> np.ndarray:
    ints = [k for k in ("seq", "t_start_us", "t_end_us", "height", "width") if not _is_int(header.get(k))]
    if ints:
        raise BadMessage(f"a {topic} whose {', '.join(ints)} is no integer")
    h, w = header["height"], header["width"]
    if not (0 < h <= MAX_SENSOR_SIDE and 0 < w <= MAX_SENSOR_SIDE):
        raise BadMessage(f"a {topic} of {h}x{w} pixels")
    if header.get("dtype") != IMAGE_DTYPES[topic] or not _is_number(header.get("latency_ms")) \
            or not isinstance(header.get("run", {}), dict):
        raise BadMessage(f"a {topic} of dtype {header.get('dtype')!r}, latency_ms {header.get('latency_ms')!r}, "
                         f"run {type(header.get('run')).__name__}")
    dtype = np.dtype(IMAGE_DTYPES[topic])
    if len(payload) != 1 or len(payload[0]) != h * w * dtype.itemsize:
        raise BadMessage(f"a {topic} of {h}x{w} {dtype} whose payload is {sum(map(len, payload))} bytes")
    return np.frombuffer(payload[0], dtype).reshape(h, w)
