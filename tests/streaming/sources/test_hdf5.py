"""HDF5 recordings: damaged files, unusual datasets and images, polarity conventions and
timestamps are one clear line (an InputError), never a traceback nor garbage."""
import os
import re

import h5py
import numpy as np
import pytest

from streaming.errors import InputError
from streaming.h5format import EventH5Reader
from streaming.sources.open import open_recording
from tests.conftest import free_port, run_cli


def _bad_files(d):
    (d / "notes.h5").write_text("not hdf5")
    (d / "clip.mp4").write_bytes(bytes(16))
    with h5py.File(d / "nodata.h5", "w") as f:
        f["events/xs"] = np.zeros(3, np.int16)
    (d / "image.bag").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (d / "folder").mkdir()

    def events(name, ts, xs=(1, 2, 3), res=(10, 10), ps=None):
        with h5py.File(d / name, "w") as f:
            f["events/ts"], f["events/xs"] = ts, np.array(xs, np.int16)
            f["events/ys"], f["events/ps"] = np.zeros(len(ts), np.int16), np.ones(len(ts), bool) if ps is None else ps
            f.attrs["sensor_resolution"] = res
    t = np.array([0.1, 0.2, 0.3])
    events("unsorted.h5", np.array([0.1, 0.3, 0.2]))
    events("outside.h5", t, [1, 2, 10])
    events("empty.h5", np.zeros(0), [])
    events("nan.h5", np.array([0.1, np.nan, 0.3]))
    events("res3.h5", t, res=(10, 10, 3))
    events("huge.h5", t, res=(100000, 100000))
    events("pol5.h5", t, ps=np.array([1, 5, 0], np.int8))
    events("pol_half.h5", t, ps=np.array([1.0, 0.5, 0.0]))
    events("microseconds.h5", t * 1e7)  # float microseconds: days of "seconds"
    events("event_idx.h5", t)
    with h5py.File(d / "event_idx.h5", "a") as f:
        f["images/image000000000"] = np.zeros((10, 10), np.uint8)
        f["images/image000000000"].attrs.update(timestamp=0.25, event_idx=100)
    events("inf_last.h5", np.array([0.1, 0.2, np.inf]))
    os.mkfifo(d / "fifo.raw")
    (d / "zero.raw").symlink_to("/dev/zero")
    for name, image, stamp in (("rgba.h5", np.zeros((10, 10, 4), np.uint8), 0.25),
                               ("image_1d.h5", np.zeros(10, np.uint8), 0.25),
                               ("image_text.h5", np.array([b"pixels"]), 0.25),
                               ("stamp_nan.h5", np.zeros((10, 10), np.uint8), np.nan),
                               ("stamp_text.h5", np.zeros((10, 10), np.uint8), "soon")):
        events(name, t)
        with h5py.File(d / name, "a") as f:
            f["images/image000000000"] = image
            f["images/image000000000"].attrs["timestamp"] = stamp
    events("image_group.h5", t)
    with h5py.File(d / "image_group.h5", "a") as f:
        f.create_group("images/image000000000")
    for name, key, value in (("xs_text.h5", "xs", np.array([b"a", b"b", b"c"])),
                             ("ts_records.h5", "ts", np.array([(1, 2)] * 3, [("a", "i4"), ("b", "i4")])),
                             ("xs_2d.h5", "xs", np.zeros((3, 1), np.int16)), ("ps_scalar.h5", "ps", np.int8(1)),
                             ("ys_group.h5", "ys", None)):
        events(name, t)
        with h5py.File(d / name, "a") as f:
            del f["events/" + key]
            if value is None:
                f.create_group("events/" + key)
            else:
                f["events/" + key] = value


@pytest.mark.parametrize("name,message", [
    ("missing.h5", "no such file"), ("notes.h5", "not an HDF5 file"), ("nodata.h5", "missing datasets"),
    ("unsorted.h5", "time-sorted"), ("outside.h5", "outside the HxW 10x10 sensor"), ("empty.h5", "no events"),
    ("nan.h5", "events/ts holds nan at event 1"), ("clip.mp4", "unknown recording type"),
    ("res3.h5", "sensor_resolution is [10, 10, 3], not [height, width]"), ("huge.h5", "Each side is 1 to 4096"),
    ("pol5.h5", "events/ps holds 5 at event 1"), ("pol_half.h5", "holds 0.5 at event 1"),
    ("microseconds.h5", "float timestamps are seconds"), ("event_idx.h5", "has event_idx 100; the file holds 3 events"),
    ("image.bag", "not a readable ROS 1 bag"), ("folder", "a folder, not a recording"),
    ("inf_last.h5", "events/ts holds inf at event 2"),  # not "float timestamps are seconds"
    ("rgba.h5", "image000000000 is a 10x10x4 array of uint8; an image is HxW grey or HxWx3"),
    ("stamp_nan.h5", "has timestamp nan; expected a finite number"),  # it became INT64_MIN
    ("fifo.raw", "fifo.raw: not a regular file"), ("zero.raw", "zero.raw: not a regular file"),  # "no such file"
])
def test_bad_input_gives_one_clear_line(tmp_path, name, message):
    _bad_files(tmp_path)
    r = run_cli("run_replay.py", tmp_path / name, "--model", "highpass", "--rate", "max",  # highpass: no torch to import
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr


@pytest.mark.parametrize("name,message", [
    ("image_1d.h5", "is a 10 array of uint8"), ("image_text.h5", "array of strings"),
    ("image_group.h5", "images/image000000000 is a group"),
    ("stamp_text.h5", "has timestamp 'soon'; expected a finite number"),
    ("xs_text.h5", "events/xs is a 3 array of strings; expected a 1-D array of numbers"),
    ("ts_records.h5", "events/ts is a 3 array of records"), ("xs_2d.h5", "events/xs is a 3x1 array of int16"),
    ("ps_scalar.h5", "events/ps is a scalar of int8"), ("ys_group.h5", "events/ys is a group"),
])
def test_unusual_datasets_and_images_are_input_errors(tmp_path, name, message):
    """They crashed (a TypeError, a matmul's ValueError) or gave garbage. An InputError is one line
    in every front (the cases above show it for run_replay.py)."""
    _bad_files(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        source = open_recording(str(tmp_path / name))
        for _ in source:
            pass


def test_polarities_mixing_0_and_minus_1_across_chunks_are_refused(tmp_path):
    """Each chunk alone is a valid convention (0/1, then -1/+1): only the file as a whole is not."""
    with h5py.File(tmp_path / "mixed.h5", "w") as f:
        f["events/ts"], f["events/xs"], f["events/ys"] = np.arange(8) * 1e-3, np.zeros(8, np.int16), np.zeros(8, np.int16)
        f["events/ps"] = np.array([0, 1, 0, 1, -1, 1, -1, 1], np.int8)
        f.attrs["sensor_resolution"] = (4, 4)
    reader = EventH5Reader(tmp_path / "mixed.h5")
    with pytest.raises(InputError, match="mixes 0 and -1"):
        list(reader.chunks(4))
    reader.close()


@pytest.mark.parametrize("ts,chunk,bad", [([0.1, 0.3, 0.2, 0.4], 4, 2),  # in the first chunk
                                           ([0.1, 0.2, 0.15, 0.3], 2, 2),  # across two chunks
                                           ([0.1, 0.2, 0.3, 0.25], 2, 3)])  # in a later chunk
def test_timestamps_that_decrease_are_found_at_their_event_within_and_across_chunks(tmp_path, ts, chunk, bad):
    with h5py.File(tmp_path / "u.h5", "w") as f:
        f["events/ts"], f["events/xs"], f["events/ys"] = np.array(ts), np.zeros(4, np.int16), np.zeros(4, np.int16)
        f["events/ps"] = np.ones(4, bool)
        f.attrs["sensor_resolution"] = (4, 4)
    reader = EventH5Reader(tmp_path / "u.h5")
    with pytest.raises(InputError, match=f"timestamps decrease at event {bad};"):
        list(reader.chunks(chunk))
    reader.close()
