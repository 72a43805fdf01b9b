"""ROS bags of event cameras, ROS 1 or ROS 2: dvs_msgs/EventArray (rpg_dvs_ros and its ROS 2
ports, the driver most event datasets were recorded with: MVSEC, the Event Camera Dataset, ...)
or prophesee_event_msgs/EventArray (Prophesee's ROS drivers; the same layout), with the
sensor_msgs/Image frames of the same camera as reference frames; or event_camera_msgs/EventPacket
in the evt3 encoding (metavision_driver: a Prophesee camera's raw EVT 3.0 stream in packets).

rosbags reads the bag: a ROS 1 `.bag` file, or a ROS 2 bag (its folder, or one `.mcap` or
`.db3` file of it). An EventArray is read from its serialized bytes as numpy arrays, not
through rosbags' message objects, which cost a Python object per event.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags import rosbag1, rosbag2
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from streaming.datatypes import EventPacket
from streaming.errors import InputError
from streaming.sensor import reference_image, require_on_sensor, size_text
from streaming.sources.interleave import interleave
from streaming.sources.prophesee import StreamDecoder

EVENT_TYPES = ("dvs_msgs/msg/EventArray", "prophesee_event_msgs/msg/EventArray")
PACKED_EVENT_TYPE = "event_camera_msgs/msg/EventPacket"
PACKED_EVENT_MSG = ("std_msgs/Header header\nuint32 height\nuint32 width\nuint64 seq\nuint64 time_base\n"
                    "string encoding\nbool is_bigendian\nuint8[] events\n")  # the same in ROS 1 and 2
IMAGE_TYPE = "sensor_msgs/msg/Image"
# read as grey: (channels, dtype) of each image encoding taken; colour goes to its luma
IMAGE_ENCODINGS = {"mono8": (1, np.uint8), "mono16": (1, np.dtype("<u2")), "rgb8": (3, np.uint8), "bgr8": (3, np.uint8)}
# One Event: uint16 x, uint16 y, time ts (sec, nanosec), bool polarity. ROS 1 packs them.
ROS1_EVENT = np.dtype([("x", "<u2"), ("y", "<u2"), ("sec", "<u4"), ("nsec", "<u4"), ("polarity", "u1")])


def _packet(ev: np.ndarray) -> EventPacket:
    """Events as parsed (fields x, y, sec, nsec, polarity) -> our packet (copies, in our types)."""
    return EventPacket(ev["sec"].astype(np.int64) * 1_000_000 + ev["nsec"] // 1000, ev["x"].astype(np.uint16),
                       ev["y"].astype(np.uint16), np.where(ev["polarity"], 1, -1).astype(np.int8))


def _ros1_event_array(raw: memoryview) -> tuple[int, int, EventPacket]:
    """(height, width, events) of one serialized EventArray: a std_msgs/Header (uint32 seq,
    time stamp, string frame_id), uint32 height, uint32 width, then the Event[] sequence."""
    frame_id = int.from_bytes(raw[12:16], "little")
    at = 16 + frame_id
    height, width, n = (int(v) for v in np.frombuffer(raw, "<u4", 3, at))
    if len(raw) != at + 12 + n * ROS1_EVENT.itemsize:
        raise ValueError("not the EventArray layout")
    ev = np.frombuffer(raw, ROS1_EVENT, n, at + 12)
    return height, width, _packet(ev)


def _cdr_events(order: str) -> tuple[np.dtype, np.dtype]:
    """CDR aligns each number to its size from the payload's start and pads no struct's end:
    the first Event starts aligned (its Time 4 bytes in), each later one 2 bytes past an
    aligned offset (its Time 6 bytes in), 16 bytes apart."""
    fields = lambda sec: {"names": ["x", "y", "sec", "nsec", "polarity"],  # noqa: E731
                          "formats": [order + "u2", order + "u2", order + "i4", order + "u4", "u1"],
                          "offsets": [0, 2, sec, sec + 4, sec + 8]}
    return np.dtype({**fields(4), "itemsize": 13}), np.dtype({**fields(6), "itemsize": 16})


CDR_EVENTS = {order: _cdr_events(order) for order in "<>"}


def _ros2_event_array(raw: memoryview) -> tuple[int, int, EventPacket]:
    """The same from ROS 2's CDR: a 4-byte encapsulation header (byte 1: 1 little-endian, 0
    big-endian), then std_msgs/Header (time stamp, string frame_id), height, width, Event[]."""
    if len(raw) < 16 or raw[0] != 0 or raw[1] not in (0, 1):
        raise ValueError("not CDR")
    order = "<" if raw[1] == 1 else ">"
    body = np.frombuffer(raw, np.uint8, offset=4)
    frame_id = int(body[8:12].view(order + "u4")[0])
    at = -(-(12 + frame_id) // 4) * 4
    if len(body) < at + 12:
        raise ValueError("not the EventArray layout")
    height, width, n = (int(v) for v in body[at:at + 12].view(order + "u4"))
    start = at + 12
    end = start + (0 if n == 0 else 13 if n == 1 else 16 * n - 3)
    if not end <= len(body) <= end + 3:  # serializers may pad the message to 4 bytes
        raise ValueError("not the EventArray layout")
    first, rest = CDR_EVENTS[order]
    if n == 0:
        ev = np.zeros(0, rest)
    else:
        padded = np.zeros(end + 1, np.uint8)  # the last Event lacks the byte its 16-byte dtype spans
        padded[:end] = body[:end]
        ev = np.concatenate([np.frombuffer(padded, first, 1, start).astype(rest),
                             np.frombuffer(padded, rest, n - 1, start + 14)])
    return height, width, _packet(ev)


class RosbagSource:
    """A ROS 1 or ROS 2 bag: one camera's events (`topic`, or the bag's only event topic) and
    the images published beside them (a sensor_msgs/Image topic in the same namespace)."""
    live = False

    def __init__(self, path: str | Path, sensor_size: tuple[int, int] | None = None, topic: str | None = None,
                 ros2: bool = False):
        """ros2: a ROS 2 bag (its folder, or an .mcap or .db3 file: streaming.sources.open tells), else ROS 1."""
        self._path = path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        self._reader = rosbag2.Reader if ros2 else rosbag1.Reader
        self._event_array = _ros2_event_array if ros2 else _ros1_event_array
        self._typestore = get_typestore(Stores.ROS2_HUMBLE if ros2 else Stores.ROS1_NOETIC)
        self._typestore.register(get_types_from_msg(PACKED_EVENT_MSG, PACKED_EVENT_TYPE))
        self._deserialize = self._typestore.deserialize_cdr if ros2 else self._typestore.deserialize_ros1
        kind = "ROS 2" if ros2 else "ROS 1"
        try:
            with self._reader(path) as bag:
                connections = list(bag.connections)
        except (rosbag1.ReaderError, rosbag2.ReaderError, OSError, UnicodeDecodeError) as e:  # Unicode: not a bag at all
            raise InputError(f"{path}: not a readable {kind} bag ({e})") from None
        events = sorted({c.topic for c in connections if c.msgtype in (*EVENT_TYPES, PACKED_EVENT_TYPE)})
        if topic is None and len(events) == 1:
            topic = events[0]
        if topic not in events:
            raise InputError(f"{path}: {'no event topic ' + topic if topic else 'which event topic?'} "
                             f"(event topics: {', '.join(events) or 'none'}; dvs_msgs or prophesee_event_msgs "
                             f"EventArray, or event_camera_msgs EventPacket); give one with --topic")
        self.topic = topic
        self._events = [c for c in connections if c.topic == topic]
        self._packed = self._events[0].msgtype == PACKED_EVENT_TYPE
        namespace = topic.rsplit("/", 1)[0]
        images = sorted({c.topic for c in connections
                         if c.msgtype == IMAGE_TYPE and c.topic.rsplit("/", 1)[0] == namespace})
        # packed events run on the sensor's clock, images on ROS time: they cannot be placed
        self.image_topic = images[0] if images and not self._packed else None
        self._images = [c for c in connections if c.topic == self.image_topic]
        self.has_frames = bool(self._images)
        size = sensor_size or self._size_in_messages()
        if size is None:
            raise InputError(f"{path}: the event messages give no sensor size; pass --sensor-size HxW")
        self.height, self.width = size
        self.description = (f"{path.name} ({kind} bag, {topic}, {size_text(self.height, self.width)}"
                            f"{', frames from ' + self.image_topic if self.image_topic else ''})")

    def _size_in_messages(self) -> tuple[int, int] | None:
        for height, width, _ in self._arrays():
            return (height, width) if height and width else None
        raise InputError(f"{self._path}: {self.topic} holds no events")

    def __iter__(self):
        packets = 0
        for item in interleave((ev for _, _, ev in self._arrays() if len(ev)), self._frames()):
            if isinstance(item, EventPacket):
                require_on_sensor(f"{self._path} ({self.topic})", item.x, item.y, self.height, self.width)
                packets += 1
            yield item
        if packets == 0:
            raise InputError(f"{self._path}: {self.topic} holds no events")

    def _arrays(self):
        """(height, width, events) of each event message, in order."""
        with self._reader(self._path) as bag:
            messages = bag.messages(connections=self._events)
            if self._packed:
                yield from self._evt3_packets(messages)
                return
            for _, _, raw in messages:
                try:
                    yield self._event_array(memoryview(raw))
                except ValueError:
                    raise InputError(f"{self._path}: a message on {self.topic} is not an EventArray of "
                                     f"dvs_msgs' layout") from None

    def _evt3_packets(self, messages):
        """event_camera_msgs packets of a Prophesee camera's raw EVT 3.0 stream, cut wherever the
        SDK handed out a buffer: decoded as one stream (the decoder's state, and an odd byte,
        carry over from packet to packet), on the sensor's clock."""
        decoder, tail = StreamDecoder("EVT3"), b""
        for k, (conn, _, raw) in enumerate(messages):
            msg = self._deserialize(raw, conn.msgtype)
            if msg.encoding != "evt3" or msg.is_bigendian:
                raise InputError(f"{self._path}: {self.topic} holds {'big-endian ' * msg.is_bigendian}"
                                 f"{msg.encoding} packets; evt3 (little-endian) is read")
            data = tail + msg.events.tobytes()
            whole = len(data) // 2 * 2
            ev = decoder.decode(np.frombuffer(data, np.uint16, whole // 2))
            tail = data[whole:]
            if decoder.backwards_at >= 0:
                raise InputError(f"{self._path}: damaged EVT 3.0 data in packet {k} of {self.topic}: its clock "
                                 f"runs backwards there")
            yield msg.height, msg.width, ev

    def _frames(self):
        """(t_us, linear float32 image) of the image topic, by the images' own stamps."""
        if not self._images:
            return
        with self._reader(self._path) as bag:
            for conn, _, raw in bag.messages(connections=self._images):
                img = self._deserialize(raw, conn.msgtype)
                if img.encoding not in IMAGE_ENCODINGS:
                    raise InputError(f"{self._path}: {self.image_topic} has {img.encoding} images; "
                                     f"{', '.join(IMAGE_ENCODINGS)} are read")
                channels, dtype = IMAGE_ENCODINGS[img.encoding]
                dtype = np.dtype(dtype).newbyteorder(">" if img.is_bigendian else "<")
                pixels = np.frombuffer(img.data, dtype).reshape(img.height, -1)[:, :img.width * channels]
                yield (img.header.stamp.sec * 1_000_000 + img.header.stamp.nanosec // 1000,
                       reference_image(pixels.reshape(img.height, img.width, channels),
                                       "bgr" if img.encoding == "bgr8" else "rgb"))

    def close(self):
        pass  # each pass opens and closes the bag itself
