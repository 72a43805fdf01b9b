"""ROS 1 bags of event cameras: dvs_msgs/EventArray (rpg_dvs_ros, the driver most event datasets
were recorded with: MVSEC, the Event Camera Dataset, ...) or prophesee_event_msgs/EventArray
(Prophesee's ROS driver; the same layout), with the sensor_msgs/Image frames of the same camera
as reference frames.

rosbags reads the bag. An EventArray is read from its serialized bytes as one numpy array
(13 bytes an event in ROS 1), not through rosbags' message objects, which cost a Python object
per event.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.rosbag1 import Reader, ReaderError
from rosbags.typesys import Stores, get_typestore

from streaming.datatypes import EventPacket, InputError, reference_image
from streaming.interleave import interleave

EVENT_TYPES = ("dvs_msgs/msg/EventArray", "prophesee_event_msgs/msg/EventArray")
IMAGE_TYPE = "sensor_msgs/msg/Image"
# One Event: uint16 x, uint16 y, time ts (uint32 sec, uint32 nsec), bool polarity; packed.
EVENT = np.dtype([("x", "<u2"), ("y", "<u2"), ("sec", "<u4"), ("nsec", "<u4"), ("polarity", "u1")])
GREY = {"mono8": (1, np.uint8), "mono16": (1, np.dtype("<u2")), "rgb8": (3, np.uint8), "bgr8": (3, np.uint8)}


def _event_array(raw: memoryview) -> tuple[int, int, EventPacket]:
    """(height, width, events) of one serialized EventArray: a std_msgs/Header (uint32 seq,
    time stamp, string frame_id), uint32 height, uint32 width, then the Event[] sequence."""
    frame_id = int.from_bytes(raw[12:16], "little")
    at = 16 + frame_id
    height, width, n = (int(v) for v in np.frombuffer(raw, "<u4", 3, at))
    if len(raw) != at + 12 + n * EVENT.itemsize:
        raise ValueError("not the EventArray layout")
    ev = np.frombuffer(raw, EVENT, n, at + 12)
    t = ev["sec"].astype(np.int64) * 1_000_000 + ev["nsec"] // 1000
    return height, width, EventPacket(t, ev["x"].copy(), ev["y"].copy(),
                                      np.where(ev["polarity"], 1, -1).astype(np.int8))


class RosbagSource:
    """A ROS 1 bag: one camera's events (`topic`, or the bag's only event topic) and the
    images published beside them (a sensor_msgs/Image topic in the same namespace)."""
    live = False

    def __init__(self, path: str | Path, sensor_size: tuple[int, int] | None = None, topic: str | None = None):
        self._path = path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            with Reader(path) as bag:
                connections = list(bag.connections)
        except ReaderError as e:
            raise InputError(f"{path}: not a readable ROS 1 bag ({e})") from None
        events = sorted({c.topic for c in connections if c.msgtype in EVENT_TYPES})
        if topic is None and len(events) == 1:
            topic = events[0]
        if topic not in events:
            raise InputError(f"{path}: {'no event topic ' + topic if topic else 'which event topic?'} "
                             f"(event topics: {', '.join(events) or 'none'}; dvs_msgs or prophesee_event_msgs "
                             f"EventArray); give one with --topic")
        self.topic = topic
        self._events = [c for c in connections if c.topic == topic]
        namespace = topic.rsplit("/", 1)[0]
        images = sorted({c.topic for c in connections
                         if c.msgtype == IMAGE_TYPE and c.topic.rsplit("/", 1)[0] == namespace})
        self.image_topic = images[0] if images else None
        self._images = [c for c in connections if c.topic == self.image_topic]
        self._typestore = get_typestore(Stores.ROS1_NOETIC)
        size = sensor_size or self._size_in_messages()
        if size is None:
            raise InputError(f"{path}: the event messages give no sensor size; pass --sensor-size HxW")
        self.height, self.width = size
        self.description = (f"{path.name} (ROS bag, {topic}, {self.width}x{self.height}"
                            f"{', frames from ' + self.image_topic if self.image_topic else ''})")

    def _size_in_messages(self) -> tuple[int, int] | None:
        for height, width, _ in self._arrays():
            return (height, width) if height and width else None
        raise InputError(f"{self._path}: {self.topic} holds no events")

    def __iter__(self):
        packets = 0
        for item in interleave((ev for _, _, ev in self._arrays() if len(ev)), self._frames()):
            packets += isinstance(item, EventPacket)
            yield item
        if packets == 0:
            raise InputError(f"{self._path}: {self.topic} holds no events")

    def _arrays(self):
        with Reader(self._path) as bag:
            for _, _, raw in bag.messages(connections=self._events):
                try:
                    yield _event_array(memoryview(raw))
                except ValueError:
                    raise InputError(f"{self._path}: a message on {self.topic} is not an EventArray of "
                                     f"dvs_msgs' layout") from None

    def _frames(self):
        """(t_us, linear float32 image) of the image topic, by the images' own stamps."""
        if not self._images:
            return
        with Reader(self._path) as bag:
            for conn, _, raw in bag.messages(connections=self._images):
                img = self._typestore.deserialize_ros1(raw, conn.msgtype)
                if img.encoding not in GREY:
                    raise InputError(f"{self._path}: {self.image_topic} has {img.encoding} images; "
                                     f"{', '.join(GREY)} are read")
                channels, dtype = GREY[img.encoding]
                dtype = np.dtype(dtype).newbyteorder(">" if img.is_bigendian else "<")
                pixels = np.frombuffer(img.data, dtype).reshape(img.height, -1)[:, :img.width * channels]
                yield (img.header.stamp.sec * 1_000_000 + img.header.stamp.nanosec // 1000,
                       reference_image(pixels.reshape(img.height, img.width, channels),
                                       "bgr" if img.encoding == "bgr8" else "rgb"))

    def close(self):
        pass  # each pass opens and closes the bag itself
