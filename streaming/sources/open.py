"""The one door to every source: a recording by its file (open_recording), a camera or a DV
network stream by its address (open_source)."""
from __future__ import annotations

from pathlib import Path

from streaming.datatypes import Source
from streaming.errors import InputError
from streaming.h5format import H5_SUFFIXES
from streaming.sensor import check_sensor_size, size_text
from streaming.sources.hdf5 import H5Source
from streaming.sources.prophesee import PROPHESEE_SUFFIXES, PropheseeSource

ROS2_SUFFIXES = (".mcap", ".db3")  # a ROS 2 bag's storage files; the bag itself is their folder


def is_ros2_bag(path: str | Path) -> bool:
    path = Path(path)
    return (path / "metadata.yaml").is_file() if path.is_dir() else path.suffix.lower() in ROS2_SUFFIXES


def open_recording(path: str, sensor_size: tuple[int, int] | None = None, topic: str | None = None) -> Source:
    """topic: a ROS bag's event topic (where it holds more than one camera's). The sensor size a
    file gives (a damaged header's 99999x99999, say) is checked as --sensor-size is: voxel grids
    of that size would not fit in memory."""
    if sensor_size is not None:
        _refuse_turned_round(path, sensor_size, topic)
    source = _open(path, sensor_size, topic)
    try:
        check_sensor_size(str(path), source.height, source.width)
    except InputError:
        source.close()
        raise
    return source


def _refuse_turned_round(path: str, size: tuple[int, int], topic: str | None) -> None:
    """--sensor-size given width first, for a file that knows its size: a slip, not a crop. A
    replay would drop the events outside as a camera's bad ones and go on."""
    try:
        own = _open(path, None, topic)
    except InputError:  # the file gives no size (or the open fails, as it will again below)
        return
    own.close()
    if size != (own.height, own.width) == size[::-1]:
        raise InputError(f"--sensor-size {size[0]}x{size[1]}: this file's sensor turned round; it is "
                         f"{size_text(own.height, own.width)}, height first (or leave --sensor-size out)")


def _open(path: str, sensor_size: tuple[int, int] | None, topic: str | None) -> Source:
    if not Path(path).exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = Path(path).suffix.lower()
    bag = suffix == ".bag" or is_ros2_bag(path)
    if topic is not None and not bag:
        raise InputError(f"--topic is for ROS bags, not {Path(path).name}")
    if bag:
        from streaming.sources.rosbag import RosbagSource  # rosbags loads only for bags
        return RosbagSource(path, sensor_size, topic, ros2=is_ros2_bag(path))
    if Path(path).is_dir():
        raise InputError(f"{path}: a folder, not a recording; give a file, or a ROS 2 bag's folder (it holds "
                         "metadata.yaml)")
    if not Path(path).is_file():  # a FIFO would block the replay, /dev/zero would never end
        raise InputError(f"{path}: not a regular file (a pipe or a device?); give a recording file")
    if suffix in H5_SUFFIXES:
        return H5Source(path, sensor_size)
    if suffix == ".aedat4":
        from streaming.sources.aedat4 import Aedat4Source
        return Aedat4Source(path, sensor_size)
    if suffix in PROPHESEE_SUFFIXES:
        return PropheseeSource(path, sensor_size)
    raise InputError(f"{path}: unknown recording type {suffix or '(no suffix)'}; give an HDF5 "
                     f"({', '.join(H5_SUFFIXES)}), AEDAT4 (.aedat4), Prophesee (.raw, .dat) file, or a ROS 1 (.bag) "
                     f"or ROS 2 bag (its folder, .mcap, .db3)")


def open_source(spec: str | None, denoise: bool = False, reconnect: bool = False) -> Source:
    """'' or None: the first camera; 'tcp://HOST:PORT': a network stream; else a camera serial.
    reconnect: the caller reopens a lost source, and a network stream's end counts as lost."""
    from streaming.sources.dv import CameraSource, NetworkSource  # dv-processing loads only for live sources
    if spec and spec.startswith("tcp://"):
        return NetworkSource(spec, denoise, end_is_lost=reconnect)
    if spec and "://" in spec:
        raise InputError(f"--camera {spec}: DV streams come over tcp:// only; give tcp://HOST:PORT or a camera serial")
    if spec and ":" in spec and spec.rpartition(":")[2].isdigit():  # no camera serial ends in :PORT
        raise InputError(f"--camera {spec}: a network stream? give tcp://{spec}")
    return CameraSource(spec or None, denoise)
