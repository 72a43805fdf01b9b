"""What more than one test file uses: paths, recordings written on the fly, the fronts run as a
user runs them, servers, displays. Helpers that one file alone uses stay in that file."""
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streaming.datatypes import EventPacket, ReferenceFrame, VoxelWindow
from streaming.h5format import EventH5Writer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
STREET_AEDAT4 = SHARED_DATA / "davis346_street.aedat4"
# a clone without the team's shared/ beside it (a user's) skips the tests on the real recording
needs_street = pytest.mark.skipif(not STREET_AEDAT4.exists(), reason=f"{STREET_AEDAT4} is missing")
DVSERVER = REPO / "tests" / "dvserver.py"
WAIT_S = 15  # generous: the machine is shared
TINY = {"num_feat": 4, "deformable_groups": 1, "num_extract_block": 1, "num_reconstruct_block": 1}  # a network arch
SMALL = {"num_feat": 8, "deformable_groups": 2, "num_extract_block": 1, "num_reconstruct_block": 2}  # an EventHDR arch
PROPHESEE_DATA = REPO / "tests" / "data" / "prophesee"
EVT3, EVT2 = PROPHESEE_DATA / "evt3_wrap.raw", PROPHESEE_DATA / "evt2_start.raw"
VGA = (480, 640)  # evt2_start.raw's sensor: its header does not say


def default_sigint() -> None:
    """A child's SIGINT as a terminal's: where pytest itself runs from a non-interactive shell
    (`cmd &`, a CI runner), children inherit SIGINT ignored, and a test's Ctrl-C would go
    unheard. Pass as preexec_fn to every child a test sends SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_moving_edge(path, seconds=1.0, height=48, width=64, frame_us=40000, rate=60000, seed=0):
    """A real recording in the EventHDR layout: a vertical edge sweeping across the sensor,
    with an intensity image every frame_us. Returns the events written."""
    rng = np.random.default_rng(seed)
    packets = []
    with EventH5Writer(path, height, width) as w:
        for k in range(int(seconds * 1e6 / frame_us)):
            n = int(rate * frame_us / 1e6)
            t = np.sort(rng.integers(k * frame_us, (k + 1) * frame_us, n)).astype(np.int64)
            x = ((t * 1e-6 * 40 + rng.normal(0, 1, n)) % width).astype(np.uint16)
            ev = EventPacket(t, x, rng.integers(0, height, n).astype(np.uint16),
                             rng.choice(np.array([-1, 1], np.int8), n))
            w.add_events(ev)
            packets.append(ev)
            img = np.tile(np.linspace(0, 65535, width).astype(np.uint16), (height, 1))
            w.add_image((k + 1) * frame_us, img)
    return EventPacket.concat(packets)


@pytest.fixture
def edge_h5(tmp_path):
    path = tmp_path / "edge.h5"
    write_moving_edge(path)
    return path


def run_cli(*args, timeout=120, env: dict | None = None):
    """Run a front (run_replay.py, run_live.py) as a user would, from the repository, its SIGINT a
    terminal's (default_sigint). env: variables to add."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=default_sigint)


def start_cli(*args) -> subprocess.Popen:
    """A front started as run_cli runs it, not waited for (communicate() is): several can run at
    once where none needs another's output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dvserver():
    """Start tests/dvserver.py on a free port; yields (port, process). Never outlives the test."""
    procs = []

    def start(*args: str) -> tuple[int, subprocess.Popen]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(DVSERVER), str(port), *args],
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
        procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)
        assert ready and proc.stdout.readline().strip() == "ready", "dvserver did not start"
        return port, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 4 MiB, a tmpfs: full disks are tried on it. Mounting one needs root
    (or a user namespace): elsewhere the test is skipped."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def fill(disk, leave_kib: int) -> None:
    """Fill the disk but leave_kib KiB."""
    st = os.statvfs(disk)
    (disk / "filler").write_bytes(bytes(max(st.f_bavail * st.f_frsize - leave_kib * 1024, 0)))


def make_pipeline(source, cfg, rate=float("inf"), outputs=None, model=None, **kw):
    """A pipeline as a front builds it (the model, a publisher nobody waits for), quiet, and with
    no stats lines unless `outputs` asks."""
    from model.factory import make_reconstructor, run_device
    from streaming.outputs.publisher import Publisher
    from streaming.outputs.sinks import Outputs
    from streaming.pipeline import Pipeline
    if model is None:
        model = make_reconstructor(cfg.model, source.height, source.width, run_device(cfg.model, cfg.device),
                                   live=source.live or rate < float("inf"))
    outputs = outputs or Outputs(stats_every_s=1e9)
    return Pipeline(source, cfg, model, Publisher(cfg.publish, log=lambda s: None), rate, outputs,
                    log=lambda s: None, **kw)


def video_ticks(path) -> int:
    """The frames of a video written with --video."""
    import av
    with av.open(str(path)) as v:
        return sum(1 for _ in v.decode(video=0))


def real_speed_ticks(t_end_us, fps) -> int:
    """Ticks from the first frame's time to the last's, the last included."""
    return int((t_end_us[-1] - t_end_us[0]) * fps // 1_000_000) + 1


# --- reading recordings back (convert, the ROS bags) -------------------------------------------

def items(path, sensor_size=None) -> tuple[EventPacket, list[ReferenceFrame], tuple[int, int]]:
    """A recording's events, reference frames and sensor size, read through open_recording."""
    from streaming.sources.open import open_recording
    src = open_recording(str(path), sensor_size)
    try:
        got = list(src)
    finally:
        src.close()
    return (EventPacket.concat([i for i in got if isinstance(i, EventPacket)]),
            [i for i in got if isinstance(i, ReferenceFrame)], (src.height, src.width))


def assert_same(a, b):
    (ev_a, refs_a, size_a), (ev_b, refs_b, size_b) = a, b
    assert size_a == size_b
    assert all(np.array_equal(getattr(ev_a, f), getattr(ev_b, f)) for f in "txyp")
    assert [(r.t_us, r.event_idx) for r in refs_a] == [(r.t_us, r.event_idx) for r in refs_b]
    assert all(np.array_equal(r.image, s.image) for r, s in zip(refs_a, refs_b))


# --- ROS bags, written as the drivers publish them ---------------------------------------------

# rpg_dvs_ros's Event (Prophesee's drivers: the same); ROS 2 spells its time builtin_interfaces/Time
EVENT_MSG = "uint16 x\nuint16 y\n{time} ts\nbool polarity\n"
EVENT_ARRAY_MSG = "std_msgs/Header header\nuint32 height\nuint32 width\n{package}/Event[] events\n"
PACKET_US = 10_000


def typestore(package="dvs_msgs", ros2=False):
    """ROS 1's or ROS 2's message types, and the event driver's."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_HUMBLE if ros2 else Stores.ROS1_NOETIC)
    time = "builtin_interfaces/Time" if ros2 else "time"
    store.register(get_types_from_msg(EVENT_MSG.format(time=time), f"{package}/msg/Event"))
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
              cameras=("/dvs",), package="dvs_msgs", encoding="mono8", ros2=None, compression=None):
    """A ROS 1 bag, or with `ros2` (rosbags' StoragePlugin) a ROS 2 bag folder, zstd-compressed
    as `compression` (rosbags' CompressionMode) says: dvs_msgs/EventArray every 10 ms,
    sensor_msgs/Image."""
    from rosbags import rosbag1, rosbag2
    from rosbags.rosbag2 import CompressionFormat, CompressionMode
    compression = CompressionMode.NONE if compression is None else compression
    store = typestore(package, ros2 is not None)
    Time, Header = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    Event, EventArray = store.types[f"{package}/msg/Event"], store.types[f"{package}/msg/EventArray"]
    Image = store.types["sensor_msgs/msg/Image"]
    stamp = lambda t_us: Time(sec=int(t_us) // 1_000_000, nanosec=int(t_us) % 1_000_000 * 1000)  # noqa: E731
    header = lambda seq, t_us: Header(stamp=stamp(t_us), frame_id="", **({} if ros2 else {"seq": seq}))  # noqa: E731
    serialize = store.serialize_cdr if ros2 else store.serialize_ros1
    writer = rosbag2.Writer(path, version=9, storage_plugin=ros2) if ros2 else rosbag1.Writer(path)
    if compression != CompressionMode.NONE:
        writer.set_compression(compression, CompressionFormat.ZSTD)
    with writer as bag:
        for ns in cameras:
            ev_conn = bag.add_connection(f"{ns}/events", EventArray.__msgtype__, typestore=store)
            img_conn = bag.add_connection(f"{ns}/image_raw", Image.__msgtype__, typestore=store)
            ends = np.arange(events.t[0] + PACKET_US, events.t[-1] + 2 * PACKET_US, PACKET_US)
            edges = np.searchsorted(events.t, ends)
            messages = []
            for seq, (a, b) in enumerate(zip(np.r_[0, edges[:-1]], edges)):  # quiet periods: empty arrays
                ev = events[a:b]
                msg = EventArray(header=header(seq, ends[seq]), height=height, width=width,
                                 events=[Event(x=int(x), y=int(y), ts=stamp(t), polarity=bool(p > 0))
                                         for t, x, y, p in zip(ev.t, ev.x, ev.y, ev.p)])
                messages.append((int(ends[seq]), ev_conn, serialize(msg, EventArray.__msgtype__)))
            for seq, f in enumerate(frames):
                data, step = image_bytes(f.image, encoding)
                msg = Image(header=header(seq, f.t_us), height=height, width=width, encoding=encoding,
                            is_bigendian=0, step=step, data=data)
                messages.append((f.t_us + 5_000, img_conn, serialize(msg, Image.__msgtype__)))  # readout
            for t_us, conn, raw in sorted(messages, key=lambda m: m[0]):
                bag.write(conn, t_us * 1000, raw)


# --- an X server for the desktop viewer --------------------------------------------------------

NO_DISPLAY_ENV = {**{k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")},
                  "PYTHONPATH": str(REPO)}


class XDisplay:
    """An X server of the test's own (Xvfb on a free display number), and what its screen shows."""

    def __init__(self, fbdir):
        self._fbdir = fbdir
        read, write = os.pipe()
        self._xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24",
                                       "-nolisten", "tcp", "-fbdir", str(fbdir)],
                                      pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        number = b""
        while not number.endswith(b"\n") and select.select([read], [], [], WAIT_S)[0]:
            if not (more := os.read(read, 64)):
                break
            number += more
        os.close(read)  # only now: Xvfb fails where the pipe closes before it has written all of it
        number = number.decode().strip()
        if not number.isdigit():
            self.close()
            pytest.fail("Xvfb did not start")
        self.env = {**NO_DISPLAY_ENV, "DISPLAY": f":{number}"}

    def screen(self) -> np.ndarray:
        """The screen as BGR, from the frame buffer that Xvfb keeps in a file (XWD format:
        a big-endian header, a colour map, then 32-bit little-endian BGRX pixels)."""
        data = np.fromfile(self._fbdir / "Xvfb_screen0", np.uint8)
        fields = struct.unpack(">25I", data[:100].tobytes())
        header, height, bytes_per_line, colours = fields[0], fields[5], fields[12], fields[19]
        start = header + 12 * colours
        return data[start:start + height * bytes_per_line].reshape(height, bytes_per_line // 4, 4)[:, :, :3]

    def close(self) -> None:
        self._xvfb.terminate()
        self._xvfb.wait()


@pytest.fixture
def x_display(tmp_path):
    if not shutil.which("Xvfb"):
        pytest.skip("no Xvfb here: get it with `apt-get install xvfb`")
    display = XDisplay(tmp_path)
    yield display
    display.close()


# --- EventHDR networks on small tensors ------------------------------------------------------

@pytest.fixture
def one_torch_thread():
    """Small tensors on a shared machine: a second thread only adds contention."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_grids(n: int, height: int, width: int, seed=0) -> list[np.ndarray]:
    """Voxel-grid-like inputs: sparse non-negative counts."""
    rng = np.random.default_rng(seed)
    return [rng.poisson(0.5, (10, height, width)).astype(np.float32) for _ in range(n)]


def as_window(seq: int, grid: np.ndarray) -> VoxelWindow:
    return VoxelWindow(seq, seq * 1000, (seq + 1) * 1000, grid, EventPacket.empty())


def push_all(stream, grids: list[np.ndarray], first_seq=0) -> list[np.ndarray | None]:
    """Each grid into a streaming network (EventHDRStream) as window first_seq + j: its outputs."""
    return [stream.push(as_window(first_seq + j, g)) for j, g in enumerate(grids)]
