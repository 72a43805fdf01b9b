"""Prophesee RAW (EVT 2.0, EVT 3.0) and DAT recordings, on real files (tests/data/prophesee)."""
import hashlib

import h5py
import numpy as np
import pytest

from streaming.datatypes import EventPacket
from streaming.errors import InputError
from streaming.sources.prophesee import PropheseeSource
from tests.conftest import EVT2, EVT3, PROPHESEE_DATA, VGA, free_port, run_cli

DAT = PROPHESEE_DATA / "gen4_wrap.dat"
DAT_CLOCK_BEHIND_US = 11_194_368  # gen4.dat was written from evt3.raw with its clock starting later
EVT3_WRAP_US = 1 << 24


def decode(path, sensor_size=None, **kw) -> EventPacket:
    src = PropheseeSource(path, sensor_size, **kw)
    try:
        return EventPacket.concat(list(src))
    finally:
        src.close()


def digest(ev: EventPacket) -> str:
    h = hashlib.sha256()
    for a in (ev.t.astype("<i8"), ev.x.astype("<u2"), ev.y.astype("<u2"), ev.p.astype("i1")):
        h.update(a.tobytes())
    return h.hexdigest()


# Decoded by faery 0.7.1 (faery.evt.Decoder, faery.dat.Decoder): count, first and last time, and
# the sha256 of t (<i8), x, y (<u2), polarity (+1/-1, i1), concatenated as digest() does.
@pytest.mark.parametrize("path,size,expected", [
    (EVT3, None, ((720, 1280), 30460, 16502848, 17002464,
                  "36f7fd85218e2618dce0e2a215f10a0affbc3177e97bbc30e30620f07898977d")),
    (DAT, None, ((720, 1280), 30460, 5308480, 5808096,
                 "c7cc2e23baf97055d46961db956c947e884eeff0d0b8c90147f45288db78d70d")),
    (EVT2, VGA, ((480, 640), 32679, 913716224, 913717633,
                 "98b0a66f6fd5d26feeaae07942f5a925ae875503d1f6d23f2340ef244c63251a")),
], ids=["evt3", "dat", "evt2"])
def test_decodes_as_faery_does(path, size, expected):
    src = PropheseeSource(path, size)
    ev = EventPacket.concat(list(src))
    assert ((src.height, src.width), len(ev), ev.t[0], ev.t[-1], digest(ev)) == expected
    assert (ev.t.dtype, ev.x.dtype, ev.y.dtype, ev.p.dtype) == (np.int64, np.uint16, np.uint16, np.int8)
    assert np.all(np.diff(ev.t) >= 0)
    src.close()


def test_evt3_and_dat_of_one_recording_agree_across_the_evt3_clock_wrap():
    evt3, dat = decode(EVT3), decode(DAT)
    assert evt3.t[0] < EVT3_WRAP_US < evt3.t[-1]  # the 24-bit EVT 3.0 clock wraps inside the file
    for f in "xyp":
        assert np.array_equal(getattr(evt3, f), getattr(dat, f))
    assert np.all(evt3.t - dat.t == DAT_CLOCK_BEHIND_US)


@pytest.mark.parametrize("path,size", [(EVT3, None), (DAT, None), (EVT2, VGA)], ids=["evt3", "dat", "evt2"])
def test_chunk_boundaries_do_not_change_the_events(path, size):
    whole = decode(path, size)
    for chunk_bytes in (1, 1000, 4099):  # rounded down to whole words or records, at least one
        cut = decode(path, size, chunk_bytes=chunk_bytes)
        assert all(np.array_equal(getattr(whole, f), getattr(cut, f)) for f in "txyp"), chunk_bytes


def data_start(path) -> int:
    """Where the header's '%' lines end."""
    data, end = path.read_bytes(), 0
    while data[end:end + 1] == b"%":
        end = data.index(b"\n", end) + 1
    return end


def test_a_file_cut_mid_word_ends_at_its_last_whole_word(tmp_path):
    data, end = EVT3.read_bytes(), data_start(EVT3) + 2 * 15000  # 15000 whole 16-bit words in
    (tmp_path / "words.raw").write_bytes(data[:end])
    (tmp_path / "killed.raw").write_bytes(data[:end + 1])  # and half of the next
    words, killed = decode(tmp_path / "words.raw"), decode(tmp_path / "killed.raw")
    assert 0 < len(killed) < len(decode(EVT3))
    assert all(np.array_equal(getattr(words, f), getattr(killed, f)) for f in "txyp")


@pytest.mark.parametrize("path,size,record", [(EVT3, None, 2), (DAT, None, 8), (EVT2, VGA, 4)],
                         ids=["evt3", "dat", "evt2"])
def test_a_clock_that_runs_backwards_is_damaged_data(tmp_path, path, size, record):
    """The data from the start spliced in again: where it begins (each file starts with a time
    word), the clock runs back. The events before the splice still come out."""
    data, start = path.read_bytes(), data_start(path) + (2 if path.suffix == ".dat" else 0)
    splice = start + record * 5000
    spliced = tmp_path / f"spliced{path.suffix}"
    spliced.write_bytes(data[:splice] + data[start:start + record * 1000])
    src, items = PropheseeSource(spliced, size), []
    with pytest.raises(InputError, match=f"damaged {src.encoding} data at byte {splice}: its clock runs backwards"):
        items.extend(src)
    src.close()
    whole = decode(path, size)
    before = EventPacket.concat(items)
    assert 0 < len(before) and np.array_equal(before.t, whole.t[:len(before)])


def test_events_before_the_first_time_word_are_skipped(tmp_path):
    """Their time is unknown (a file cut in the middle): they are not given time 0."""
    data, start = EVT2.read_bytes(), data_start(EVT2)
    headless = tmp_path / "headless.raw"
    headless.write_bytes(data[:start] + data[start + 4:])  # without the first time-high word
    whole, cut = decode(EVT2, VGA), decode(headless, VGA)
    assert 0 < len(cut) < len(whole)
    assert cut.t[0] >= whole.t[0] and np.array_equal(cut.t, whole.t[-len(cut):])


def test_replay_of_a_raw_file(tmp_path):
    r = run_cli("run_replay.py", EVT3, "--model", "highpass", "--rate", "max", "--record", tmp_path / "out.h5",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 0, r.stderr
    assert "Prophesee EVT3, HxW 720x1280" in r.stdout
    with h5py.File(tmp_path / "out.h5", "r") as f:
        frames, t_end = f["frames"], f["t_end_us"][:]
        assert frames.shape[1:] == (720, 1280)
        assert len(frames) == 20  # 0.5 s in 25 ms windows
        assert t_end[-1] > EVT3_WRAP_US  # windows go on through the clock wrap
        assert all(np.abs(frames[k]).max() > 0 for k in range(len(frames)))


def _header_only(path, *lines: str, tail: bytes = b""):
    path.write_bytes("".join(f"% {line}\n" for line in lines).encode() + tail)


@pytest.mark.parametrize("name,lines,tail,message", [
    ("missing.raw", None, b"", "no such file"),
    ("vga.raw", ["evt 2.0"], b"", "the header gives no sensor size; pass --sensor-size"),
    ("evt4.raw", ["evt 4.0", "geometry 640x480"], b"", "unsupported RAW encoding (4.0)"),
    ("nothing.raw", ["date 2026-11-24"], b"", "unsupported RAW encoding (none named in the header)"),
    ("empty.raw", ["evt 3.0", "geometry 640x480"], b"", "the file holds no change-detection events"),
    ("huge.raw", ["evt 3.0", "geometry 99999x99999"], b"", "a sensor of 99999x99999 (height x width)?"),
    ("triggers.dat", ["Height 720", "Width 1280"], bytes([14, 8]), "not a DAT file of CD events"),
])
def test_bad_files_give_one_clear_line(tmp_path, name, lines, tail, message):
    path = tmp_path / name
    if lines is not None:
        _header_only(path, *lines, tail=tail)
    r = run_cli("run_replay.py", path, "--model", "highpass", "--rate", "max",  # highpass: no torch to import
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], r.stderr


def test_sensor_size_from_the_command_line_or_the_header(tmp_path):
    assert decode(EVT2, VGA).x.max() < 640
    with pytest.raises(InputError, match="--sensor-size"):
        PropheseeSource(EVT2)
    override = PropheseeSource(EVT3, (800, 1400))
    assert (override.height, override.width) == (800, 1400)
    override.close()
    r = run_cli("run_replay.py", EVT2, "--sensor-size", "200x300", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")  # a size too small: not a replay that drops events
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "lies outside the HxW 200x300 sensor" in r.stderr, r.stderr
