"""convert.py: recordings of every readable format to the EventHDR HDF5 layout, read back."""
import os
import shutil

import h5py
import numpy as np
import pytest

from streaming.h5format import EventH5Writer
from tests.conftest import EVT2, EVT3, STREET_AEDAT4, VGA, assert_same, items, needs_street, run_cli, write_moving_edge


def convert(src, out, *flags):
    r = run_cli("convert.py", src, out, *flags)
    assert r.returncode == 0, r.stderr
    return r.stdout


@needs_street
def test_aedat4_with_frames_round_trips(tmp_path):
    out = tmp_path / "street.h5"
    assert "78,830 events and 59 images" in convert(STREET_AEDAT4, out)
    assert_same(items(STREET_AEDAT4), items(out))
    with h5py.File(out, "r") as f:  # the APS frames keep their 8 bits, as the dataset stores them
        assert f["images/image000000000"].dtype == np.uint8
        assert tuple(f.attrs["sensor_resolution"]) == (260, 346)


@pytest.mark.parametrize("path,flags", [(EVT3, []), (EVT2, ["--sensor-size", "480x640"])], ids=["evt3", "evt2"])
def test_prophesee_round_trips(tmp_path, path, flags):
    out = tmp_path / "p.h5"
    convert(path, out, *flags)
    assert_same(items(path, VGA if flags else None), items(out))


def test_hdf5_with_16_bit_and_linear_frames_round_trips(tmp_path):
    edge, hdr = tmp_path / "edge.h5", tmp_path / "hdr.h5"
    write_moving_edge(edge, seconds=0.2)
    ev, refs, (h, w) = items(edge)
    with EventH5Writer(hdr, h, w) as writer:  # linear ground truth: float, above 1
        writer.add_events(ev)
        # an index of the file's own (the first event at or after the image, say): kept as it is,
        # since frame-aligned windows, and so the evaluation's frames, follow it
        writer.add_image(int(ev.t[-1]), np.full((h, w), 3.5, np.float32), event_idx=len(ev) - 1)
    for path in (edge, hdr):
        out = tmp_path / f"converted-{path.name}"
        convert(path, out)
        assert_same(items(path), items(out))
    with h5py.File(tmp_path / "converted-edge.h5", "r") as f:
        assert f["images/image000000000"].dtype == np.uint16


@pytest.mark.parametrize("case,message", [
    ("too small", "lies outside the HxW 100x100 sensor: damaged data, or a wrong sensor size"),
    ("onto itself", "the output would replace the recording"),
    ("no size", "the header gives no sensor size"),
    ("not HDF5", "this writes HDF5; name the file .h5"),
])
def test_bad_conversions_give_one_line_and_leave_no_file(tmp_path, case, message):
    src = tmp_path / "in.raw"
    src.write_bytes(EVT2.read_bytes())
    out = {"onto itself": src, "not HDF5": tmp_path / "out.aedat4"}.get(case, tmp_path / "out.h5")
    flags = {"too small": ["--sensor-size", "100x100"], "onto itself": ["--sensor-size", "480x640"]}.get(case, [])
    r = run_cli("convert.py", src, out, *flags)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert src.read_bytes() == EVT2.read_bytes()
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.aedat4").exists()


def test_a_failed_conversion_keeps_the_file_it_would_replace(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"an earlier conversion")
    r = run_cli("convert.py", EVT2, out, "--sensor-size", "100x100")  # events off that sensor: it fails
    assert r.returncode == 2 and out.read_bytes() == b"an earlier conversion", r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]  # and no partial file is left


def test_outputs_that_are_the_input_by_another_name_or_a_folder_are_refused(tmp_path):
    write_moving_edge(tmp_path / "in.h5", seconds=0.1)
    os.link(tmp_path / "in.h5", tmp_path / "alias.h5")
    before = (tmp_path / "in.h5").read_bytes()
    r = run_cli("convert.py", tmp_path / "alias.h5", tmp_path / "in.h5")
    assert r.returncode == 2 and "would replace the recording" in r.stderr and (tmp_path / "in.h5").read_bytes() == before
    (tmp_path / "dir.h5").mkdir()
    r = run_cli("convert.py", tmp_path / "in.h5", tmp_path / "dir.h5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "a folder" in r.stderr, r.stderr


@needs_street
def test_a_sensor_size_that_does_not_fit_the_images_is_refused(tmp_path):
    """--sensor-size overrides an AEDAT4 file's too; its 260x346 APS frames do not fit 480x640,
    and training and evaluation compare them with the frames pixel by pixel."""
    shutil.copy(STREET_AEDAT4, tmp_path / "street.aedat4")
    assert items(tmp_path / "street.aedat4", (480, 640))[2] == (480, 640)
    r = run_cli("convert.py", tmp_path / "street.aedat4", tmp_path / "out.h5", "--sensor-size", "480x640")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not fit the 480x640 sensor" in r.stderr, r.stderr
    assert not (tmp_path / "out.h5").exists()


def test_the_writer_sums_up_the_file_as_event_cnn_minimal_does(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=0.4)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        a = dict(f.attrs)
    assert (a["num_events"], a["num_pos"], a["num_neg"], a["num_imgs"]) == (len(ev), (ev.p > 0).sum(), (ev.p < 0).sum(), 10)
    assert (a["t0"], a["tk"]) == (ev.t[0] * 1e-6, ev.t[-1] * 1e-6) and a["duration"] == pytest.approx(a["tk"] - a["t0"])


@needs_street
@pytest.mark.parametrize("front", ["run_replay.py", "convert.py"])
def test_a_sensor_size_given_width_first_is_refused(tmp_path, front):
    """A replay dropped the 15% of the street's events beyond row 260 and went on, status 0."""
    r = run_cli(front, STREET_AEDAT4, *(["--rate", "max"] if front == "run_replay.py" else [tmp_path / "o.h5"]),
                "--sensor-size", "346x260")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--sensor-size 346x260: this file's sensor turned round; it is HxW 260x346" in r.stderr
