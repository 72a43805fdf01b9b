"""ROS bags: the street recording's events and APS frames, written into ROS 1 and ROS 2 bags
by rosbags as the drivers publish them (dvs_msgs/EventArray every 10 ms, sensor_msgs/Image),
read back."""
import numpy as np
import pytest
from rosbags import rosbag1, rosbag2
from rosbags.rosbag2 import CompressionMode, StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from streaming.datatypes import EventPacket, ReferenceFrame
from streaming.errors import InputError
from streaming.sources.open import open_recording
from streaming.sources.prophesee import PropheseeSource, _read_header
from streaming.sources.rosbag import PACKED_EVENT_MSG, RosbagSource, _ros2_event_array
from tests.conftest import EVT3, STREET_AEDAT4, assert_same, items, run_cli, start_cli, typestore, write_bag


@pytest.fixture(scope="module")
def street():
    if not STREET_AEDAT4.exists():
        pytest.skip(f"{STREET_AEDAT4} is missing")
    return items(STREET_AEDAT4)


@pytest.fixture(scope="module")
def street_bag(street, tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "street.bag"
    events, frames, (h, w) = street
    write_bag(path, events, frames, h, w)
    return path


@pytest.fixture(scope="module")
def street_ros2_bag(street, tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "street"
    events, frames, (h, w) = street
    write_bag(path, events, frames, h, w, ros2=StoragePlugin.MCAP)
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


def test_ros2_bags_read_the_same(street, street_ros2_bag, tmp_path):
    """A ROS 2 bag reads as its folder or as its storage file, MCAP or sqlite3."""
    assert_same(street, items(street_ros2_bag))
    events, frames, (h, w) = street
    write_bag(tmp_path / "sqlite", events, frames, h, w, ros2=StoragePlugin.SQLITE3)
    for bag in (street_ros2_bag, tmp_path / "sqlite"):
        (storage_file,) = [f for f in bag.iterdir() if f.suffix in (".db3", ".mcap")]
        assert_same(street, items(storage_file))


@pytest.mark.parametrize("compression", [CompressionMode.FILE, CompressionMode.MESSAGE])
def test_zstd_compressed_ros2_bags_read_the_same(street, tmp_path, compression):
    events, frames, (h, w) = street
    write_bag(tmp_path / "z", events[:20000], frames[:5], h, w, ros2=StoragePlugin.MCAP, compression=compression)
    write_bag(tmp_path / "plain", events[:20000], frames[:5], h, w, ros2=StoragePlugin.MCAP)
    assert_same(items(tmp_path / "plain"), items(tmp_path / "z"))


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd"])  # each alignment of what follows
@pytest.mark.parametrize("n", [0, 1, 2, 5])
@pytest.mark.parametrize("little_endian", [True, False])
def test_ros2_event_arrays_read_as_rosbags_deserializes_them(frame_id, n, little_endian):
    store = typestore(ros2=True)
    Time, Header = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    Event, EventArray = store.types["dvs_msgs/msg/Event"], store.types["dvs_msgs/msg/EventArray"]
    rng = np.random.default_rng(n)
    events = [Event(x=int(rng.integers(0, 65536)), y=int(rng.integers(0, 65536)),
                    ts=Time(sec=int(rng.integers(0, 2**31)), nanosec=int(rng.integers(0, 10**9))),
                    polarity=bool(rng.integers(0, 2))) for _ in range(n)]
    msg = EventArray(header=Header(stamp=Time(sec=1, nanosec=2), frame_id=frame_id), height=720, width=1280,
                     events=events)
    raw = store.serialize_cdr(msg, EventArray.__msgtype__, little_endian=little_endian)
    height, width, got = _ros2_event_array(memoryview(raw))
    assert (height, width, len(got)) == (720, 1280, n)
    back = store.deserialize_cdr(raw, EventArray.__msgtype__).events
    assert got.x.tolist() == [e.x for e in back] and got.y.tolist() == [e.y for e in back]
    assert got.t.tolist() == [e.ts.sec * 1_000_000 + e.ts.nanosec // 1000 for e in back]
    assert got.p.tolist() == [1 if e.polarity else -1 for e in back]


def write_packets(path, payload: bytes, sizes, ros2: bool, encoding="evt3"):
    """metavision_driver's messages: event_camera_msgs/EventPacket, `payload` cut into `sizes`."""
    store = get_typestore(Stores.ROS2_HUMBLE if ros2 else Stores.ROS1_NOETIC)
    store.register(get_types_from_msg(PACKED_EVENT_MSG, "event_camera_msgs/msg/EventPacket"))
    Header, Packet = store.types["std_msgs/msg/Header"], store.types["event_camera_msgs/msg/EventPacket"]
    Time = store.types["builtin_interfaces/msg/Time"]
    writer = rosbag2.Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) if ros2 else rosbag1.Writer(path)
    serialize = store.serialize_cdr if ros2 else store.serialize_ros1
    with writer as bag:
        conn = bag.add_connection("/event_camera/events", Packet.__msgtype__, typestore=store)
        at = 0
        for seq, size in enumerate(sizes):
            header = Header(stamp=Time(sec=seq, nanosec=0), frame_id="", **({} if ros2 else {"seq": seq}))
            msg = Packet(header=header, height=720, width=1280, seq=seq, time_base=0, encoding=encoding,
                         is_bigendian=False, events=np.frombuffer(payload[at:at + size], np.uint8))
            bag.write(conn, (seq + 1) * 10**9, serialize(msg, Packet.__msgtype__))
            at += size


@pytest.mark.parametrize("ros2", [False, True])
def test_metavision_driver_packets_read_as_the_raw_file(tmp_path, ros2):
    """The IMX636 clip's EVT 3.0 stream, in packets cut anywhere (odd sizes too, across the
    clock's wrap), decodes to the events of the RAW file."""
    with open(EVT3, "rb") as f:
        _read_header(f)
        payload = f.read()
    sizes = np.random.default_rng(0).integers(1, 40_000, len(payload) // 25_000)  # mean 20 kB: 80% of it
    sizes[-1] = len(payload) - sizes[:-1].sum()
    assert sizes[-1] > 0
    bag = tmp_path / ("evk4" if ros2 else "evk4.bag")
    write_packets(bag, payload, sizes, ros2)
    src = open_recording(str(bag))
    assert (src.height, src.width, src.image_topic) == (720, 1280, None)
    got = EventPacket.concat([i for i in src if isinstance(i, EventPacket)])
    want = EventPacket.concat([i for i in PropheseeSource(EVT3) if isinstance(i, EventPacket)])
    assert len(got) == len(want) > 0
    for name in "txyp":
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_packets_of_another_encoding_give_one_clear_line(tmp_path):
    write_packets(tmp_path / "dvx", b"\0" * 64, [64], ros2=True, encoding="libcaer_cmp")
    r = run_cli("run_replay.py", tmp_path / "dvx", "--model", "highpass", "--rate", "max")  # highpass: no torch to import
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "libcaer_cmp packets; evt3" in r.stderr, r.stderr


@pytest.mark.parametrize("ros", [1, 2])
def test_replay_convert_and_evaluate(street, street_bag, street_ros2_bag, tmp_path, ros):
    bag = street_bag if ros == 1 else street_ros2_bag
    replay = start_cli("run_replay.py", bag, "--model", "highpass", "--rate", "max", "--window", "frames",
                       "--publish", "tcp://127.0.0.1:*")
    convert = start_cli("convert.py", bag, tmp_path / "street.h5")  # at the same time: both only read the bag
    # evaluate.py runs every standard model, PIE-Net's two at 0.2 s a frame: it evaluates the
    # street's first 8 frames, written as the same kind of bag (meanwhile), and with one torch
    # thread (two wait on each other on a busy machine)
    events, frames, (h, w) = street
    short = tmp_path / bag.name
    write_bag(short, events[:np.searchsorted(events.t, frames[7].t_us)], frames[:8], h, w,
              ros2=None if ros == 1 else StoragePlugin.MCAP)
    out, err = replay.communicate(timeout=120)
    assert replay.returncode == 0, err
    assert f"ROS {ros} bag, /dvs/events, HxW 260x346, frames from /dvs/image_raw" in out
    assert "59 windows, 59 frames" in out
    out, err = convert.communicate(timeout=120)
    assert convert.returncode == 0 and "78,830 events and 59 images" in out, err
    r = run_cli("evaluate.py", short, "--threads", "1")  # a ROS 2 bag is a folder: one recording, not a folder of them
    assert r.returncode == 0 and f"1 sequence(s): {short.name}" in r.stdout, r.stderr


def test_events_off_the_bags_sensor_end_evaluation_and_training_in_one_line(street, tmp_path):
    """No sanitizer stands between a recording and the binner there: an event outside the
    message's 100x100 would be written outside the voxel grid."""
    events, frames, _ = street
    crops = [ReferenceFrame(f.t_us, f.image[:100, :100]) for f in frames[:8]]
    write_bag(tmp_path / "small.bag", events[:20000], crops, 100, 100)
    fronts = [start_cli(*front, tmp_path / "small.bag")  # both at once: each only reads the bag
              for front in (["evaluate.py"], ["train.py", "--out", tmp_path / "run", "--iters", "1"])]
    for p in fronts:
        err = p.communicate(timeout=120)[1]
        last = err.strip().splitlines()[-1]  # after the progress bar's
        assert p.returncode == 2 and "Traceback" not in err, err
        assert "small.bag" in last and "lies outside the HxW 100x100 sensor" in last, err


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
    with rosbag1.Writer(path) as bag:
        bag.add_connection("/dvs/events", "dvs_msgs/msg/EventArray", typestore=typestore())
    r = run_cli("run_replay.py", path, "--model", "highpass", "--rate", "max")  # highpass: no torch to import
    assert r.returncode == 2 and r.stderr.strip() == f"error: {path}: /dvs/events holds no events", r.stderr


@pytest.mark.parametrize("name,flags,message", [
    ("notes.bag", [], "not a readable ROS 1 bag"),
    ("notes.mcap", [], "not a readable ROS 2 bag"),
    ("notes.db3", [], "not a readable ROS 2 bag"),
    ("bag/metadata.yaml", [], "not a readable ROS 2 bag"),
    ("street.h5", ["--topic", "/dvs/events"], "--topic is for ROS bags"),
])
def test_bad_bags_give_one_clear_line(tmp_path, name, flags, message):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text("not a bag")
    path = tmp_path / name if name.count("/") == 0 else (tmp_path / name).parent  # a ROS 2 bag is its folder
    r = run_cli("run_replay.py", path, *flags, "--model", "highpass", "--rate", "max")  # highpass: no torch to import
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
