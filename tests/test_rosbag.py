"""ROS 1 bags: the street recording's events and APS frames, written into a bag by rosbags as
rpg_dvs_ros publishes them (dvs_msgs/EventArray every 10 ms, sensor_msgs/Image mono8), read back."""
import numpy as np
import pytest
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from streaming.datatypes import EventPacket, InputError, ReferenceFrame
from streaming.rosbag import RosbagSource
from streaming.sources import open_recording
from tests.conftest import STREET_AEDAT4, run_cli
from tests.test_convert import assert_same, items

EVENT_MSG = "uint16 x\nuint16 y\ntime ts\nbool polarity\n"  # rpg_dvs_ros's; Prophesee's driver: the same
EVENT_ARRAY_MSG = "std_msgs/Header header\nuint32 height\nuint32 width\n{package}/Event[] events\n"
PACKET_US = 10_000


def typestore(package="dvs_msgs"):
    """ROS 1's message types, and the event driver's."""
    store = get_typestore(Stores.ROS1_NOETIC)
    store.register(get_types_from_msg(EVENT_MSG, f"{package}/msg/Event"))
    store.register(get_types_from_msg(EVENT_ARRAY_MSG.format(package=package), f"{package}/msg/EventArray"))
    return store


def image_bytes(image: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """A linear image as a sensor_msgs/Image's data and step: grey, or for colour encodings
    in the red channel alone (so that reading it back shows the channel order)."""
    if encoding == "mono16":
        return np.rint(image * 65535).astype("<u2").view(np.uint8).ravel(), 2 * image.shape[1]
    grey = np.rint(image * 255).astype(np.uint8)
    if encoding == "mono8":
        return grey.ravel(), image.shape[1]
    colour = np.zeros((*image.shape, 3), np.uint8)
    colour[..., {"rgb8": 0, "bgr8": 2}[encoding]] = grey
    return colour.ravel(), 3 * image.shape[1]


def write_bag(path, events: EventPacket, frames: list[ReferenceFrame], height: int, width: int,
              cameras=("/dvs",), package="dvs_msgs", encoding="mono8"):
    store = typestore(package)
    Time, Header = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    Event, EventArray = store.types[f"{package}/msg/Event"], store.types[f"{package}/msg/EventArray"]
    Image = store.types["sensor_msgs/msg/Image"]
    stamp = lambda t_us: Time(sec=int(t_us) // 1_000_000, nanosec=int(t_us) % 1_000_000 * 1000)
    with Writer(path) as bag:
        for ns in cameras:
            ev_conn = bag.add_connection(f"{ns}/events", EventArray.__msgtype__, typestore=store)
            img_conn = bag.add_connection(f"{ns}/image_raw", Image.__msgtype__, typestore=store)
            ends = np.arange(events.t[0] + PACKET_US, events.t[-1] + 2 * PACKET_US, PACKET_US)
            edges = np.searchsorted(events.t, ends)
            messages = []
            for seq, (a, b) in enumerate(zip(np.r_[0, edges[:-1]], edges)):  # quiet periods: empty arrays
                ev = events[a:b]
                msg = EventArray(header=Header(seq=seq, stamp=stamp(ends[seq]), frame_id=""), height=height,
                                 width=width, events=[Event(x=int(x), y=int(y), ts=stamp(t), polarity=bool(p > 0))
                                                      for t, x, y, p in zip(ev.t, ev.x, ev.y, ev.p)])
                messages.append((int(ends[seq]), ev_conn, store.serialize_ros1(msg, EventArray.__msgtype__)))
            for seq, f in enumerate(frames):
                data, step = image_bytes(f.image, encoding)
                msg = Image(header=Header(seq=seq, stamp=stamp(f.t_us), frame_id=""), height=height, width=width,
                            encoding=encoding, is_bigendian=0, step=step, data=data)
                messages.append((f.t_us + 5_000, img_conn, store.serialize_ros1(msg, Image.__msgtype__)))  # readout
            for t_us, conn, raw in sorted(messages, key=lambda m: m[0]):
                bag.write(conn, t_us * 1000, raw)


@pytest.fixture(scope="module")
def street():
    return items(STREET_AEDAT4)


@pytest.fixture(scope="module")
def street_bag(street, tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "street.bag"
    events, frames, (h, w) = street
    write_bag(path, events, frames, h, w)
    return path


def test_events_and_frames_as_the_aedat4_recording_has_them(street, street_bag):
    src = RosbagSource(street_bag)
    assert (src.topic, src.image_topic) == ("/dvs/events", "/dvs/image_raw")
    assert_same(street, items(street_bag))


@pytest.mark.parametrize("encoding, gain", [("mono16", 1.0), ("rgb8", 0.299), ("bgr8", 0.299)])
def test_image_encodings_read_as_linear_grey(street, tmp_path, encoding, gain):
    """16-bit frames keep their scale; colour frames become their luma (red weighs 0.299),
    whichever the channel order."""
    events, frames, (h, w) = street
    write_bag(tmp_path / "s.bag", events[:5000], frames[:3], h, w, encoding=encoding)
    got = [i for i in RosbagSource(tmp_path / "s.bag") if isinstance(i, ReferenceFrame)]
    assert len(got) == 3
    for f, g in zip(frames, got):
        assert np.abs(g.image - gain * f.image).max() <= 0.5 / 255 + 1e-6


def test_prophesee_driver_bags_read_the_same(street, tmp_path):
    events, frames, (h, w) = street
    path = tmp_path / "prophesee.bag"
    write_bag(path, events, frames, h, w, package="prophesee_event_msgs")
    assert_same(street, items(path))


def test_replay_and_convert(street_bag, tmp_path):
    r = run_cli("run_replay.py", street_bag, "--rate", "max", "--window", "frames", "--publish", "tcp://127.0.0.1:*")
    assert r.returncode == 0, r.stderr
    assert "ROS bag, /dvs/events, 346x260, frames from /dvs/image_raw" in r.stdout
    assert "59 windows, 59 frames" in r.stdout
    r = run_cli("convert.py", street_bag, tmp_path / "street.h5")
    assert r.returncode == 0 and "78,830 events and 59 images" in r.stdout, r.stderr


def test_a_stereo_bag_needs_a_topic(street, tmp_path):
    events, frames, (h, w) = street
    path = tmp_path / "stereo.bag"
    write_bag(path, events[:20000], frames[:5], h, w, cameras=("/davis/left", "/davis/right"))
    with pytest.raises(InputError, match="which event topic.*/davis/left/events, /davis/right/events.*--topic"):
        RosbagSource(path)
    right = open_recording(str(path), topic="/davis/right/events")
    assert right.image_topic == "/davis/right/image_raw" and len(EventPacket.concat(
        [i for i in right if isinstance(i, EventPacket)])) == 20000


def test_a_bag_without_events_gives_one_clear_line(tmp_path):
    path = tmp_path / "silent.bag"
    with Writer(path) as bag:
        bag.add_connection("/dvs/events", "dvs_msgs/msg/EventArray", typestore=typestore())
    r = run_cli("run_replay.py", path, "--rate", "max")
    assert r.returncode == 2 and r.stderr.strip() == f"error: {path}: /dvs/events holds no events", r.stderr


@pytest.mark.parametrize("name,flags,message", [
    ("notes.bag", [], "not a readable ROS 1 bag"),
    ("street.h5", ["--topic", "/dvs/events"], "--topic is for ROS bags"),
])
def test_bad_bags_give_one_clear_line(tmp_path, name, flags, message):
    (tmp_path / name).write_text("not a bag")
    r = run_cli("run_replay.py", tmp_path / name, *flags, "--rate", "max")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
