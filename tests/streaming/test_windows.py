import time

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.sanitizer import Sanitizer
from streaming.datatypes import EventPacket, ReferenceFrame
from streaming.errors import InputError
from streaming.sources.aedat4 import Aedat4Source
from streaming.sources.hdf5 import H5Source
from streaming.windows import Windower, WindowPolicy
from tests.conftest import EVT3, STREET_AEDAT4, free_port, needs_street, run_cli, write_bag, write_moving_edge


def cut(path, policy):
    src = H5Source(path)
    w = Windower(policy)
    out = []
    for item in src:
        out += w.add_events(item) if isinstance(item, EventPacket) else w.add_reference(item)
    out += w.flush()
    src.close()
    return out


def test_ms_windows_are_contiguous_and_keep_every_event(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=0.5)
    wins = cut(tmp_path / "r.h5", WindowPolicy("ms", ms=10))
    assert sum(len(w.events) for w in wins) == len(ev)
    for a, b in zip(wins, wins[1:]):
        assert a.t_end_us == b.t_start_us
    for w in wins[:-1]:
        assert w.t_end_us - w.t_start_us == 10000
        assert (w.events.t >= w.t_start_us).all() and (w.events.t < w.t_end_us).all()
    np.testing.assert_array_equal(np.concatenate([w.events.t for w in wins]), ev.t)


def test_timed_windows_carry_the_newest_image_before_their_end(tmp_path):
    """100 ms windows see two or three of the 40 ms images: the video shows the newest."""
    write_moving_edge(tmp_path / "r.h5", seconds=1.0)
    images = np.arange(1, 26) * 40000
    for w in cut(tmp_path / "r.h5", WindowPolicy("ms", ms=100))[:-1]:
        assert w.reference.t_us == images[images <= w.t_end_us].max()


def test_ms_windows_span_quiet_periods():
    w = Windower(WindowPolicy("ms", ms=1))
    mk = lambda t: EventPacket(np.array(t, np.int64), np.zeros(len(t), np.uint16), np.zeros(len(t), np.uint16),
                               np.ones(len(t), np.int8))
    assert list(w.add_events(mk([0, 500]))) == []
    out = list(w.add_events(mk([5200])))  # 5 ms of silence: windows keep their constant rate
    assert [len(x.events) for x in out] == [2, 0, 0, 0, 0]
    assert [x.t_end_us for x in out] == [1000, 2000, 3000, 4000, 5000]


def test_event_count_windows(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=0.3)
    wins = cut(tmp_path / "r.h5", WindowPolicy("events", events=1000))
    sizes = [len(w.events) for w in wins]
    assert sizes[:-1] == [1000] * (len(sizes) - 1) and 0 < sizes[-1] <= 1000
    assert sum(sizes) == len(ev)


def test_event_count_windows_with_a_longest_duration_cover_quiet_periods():
    w = Windower(WindowPolicy("events", events=3, max_ms=1))
    mk = lambda t: EventPacket(np.array(t, np.int64), np.zeros(len(t), np.uint16), np.zeros(len(t), np.uint16),
                               np.ones(len(t), np.int8))
    out = list(w.add_events(mk([0, 100, 200, 300, 400])))
    assert [(len(x.events), x.t_end_us) for x in out] == [(3, 201)]  # busy: ended by the count
    out = list(w.add_events(mk([5200])))  # then 5 ms of quiet: ended by the clock, 1 ms after each start
    assert [(len(x.events), x.t_end_us) for x in out] == [(2, 1201), (0, 2201), (0, 3201), (0, 4201)]
    assert [(len(x.events), x.t_start_us, x.t_end_us) for x in w.flush()] == [(1, 4201, 5201)]


def test_event_count_windows_of_millions_of_events_cost_time_linear_in_the_events():
    """The pending packets were joined for every packet that came: a window of 5 million events
    gathered from 2 ms packets fell 26 s behind in 8 s of stream."""
    w = Windower(WindowPolicy("events", events=3_000_000))
    packet = EventPacket(np.zeros(1000, np.int64), *np.zeros((2, 1000), np.uint16), np.ones(1000, np.int8))
    t0 = time.process_time()
    windows = [x for k in range(3001) for x in w.add_events(EventPacket(packet.t + k, packet.x, packet.y, packet.p))]
    assert time.process_time() - t0 < 1.5  # joined for every packet: 6.5 s
    assert [len(x.events) for x in windows] == [3_000_000]


@needs_street
def test_bounded_event_count_windows_on_the_street_recording():
    src = Aedat4Source(STREET_AEDAT4)
    packets = [item for item in src if isinstance(item, EventPacket)]
    src.close()
    w = Windower(WindowPolicy("events", events=1800, max_ms=50))  # ~33 kev/s: 1500-2000 events per 50 ms
    wins = [x for ev in packets for x in w.add_events(ev)] + w.flush()
    sizes = np.array([len(x.events) for x in wins])
    spans = np.array([x.t_end_us - x.t_start_us for x in wins])
    assert sizes.sum() == sum(len(ev) for ev in packets)
    assert all(a.t_end_us == b.t_start_us for a, b in zip(wins, wins[1:]))
    assert (sizes <= 1800).all() and (spans <= 50000).all()
    assert (spans[:-1][sizes[:-1] < 1800] == 50000).all()  # short of the count only when the clock ran out
    assert (sizes == 1800).sum() >= 5 and (sizes < 1800).sum() >= 5  # busier stretches end by count (12 of 48)


def test_event_count_windows_hold_their_span(tmp_path):
    """A window ends 1 us after its last event: the events that share that timestamp go in too,
    else the next window starts after its own first events (2 of the street's 500-event windows
    did). So every window holds its N events or a few more, all inside [t_start, t_end)."""
    t = np.array([0, 10, 20, 20, 20, 30, 40, 50], np.int64)
    w = Windower(WindowPolicy("events", events=3))
    wins = [*w.add_events(EventPacket(t, *np.zeros((2, len(t)), np.uint16), np.ones(len(t), np.int8))), *w.flush()]
    assert [x.events.t.tolist() for x in wins] == [[0, 10, 20, 20, 20], [30, 40, 50]]
    if not STREET_AEDAT4.exists():
        pytest.skip(f"{STREET_AEDAT4} is missing")
    src = Aedat4Source(STREET_AEDAT4)
    w = Windower(WindowPolicy("events", events=500))
    wins = [x for item in src if isinstance(item, EventPacket) for x in w.add_events(item)] + w.flush()
    src.close()
    assert all(((x.events.t >= x.t_start_us) & (x.events.t < x.t_end_us)).all() for x in wins)
    sizes = np.array([len(x.events) for x in wins])
    assert (sizes[:-1] >= 500).all() and (sizes > 500).sum() >= 1 and sizes.sum() == 78_830


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.sampled_from([0, 0, 1, 7, 300, 2500]), min_size=1, max_size=200),
       cuts=st.lists(st.integers(0, 200), max_size=30),
       policy=st.sampled_from([WindowPolicy("ms", ms=1), WindowPolicy("events", events=7),
                               WindowPolicy("events", events=7, max_ms=1)]))
def test_windows_do_not_depend_on_how_the_stream_is_split_into_packets(gaps, cuts, policy):
    """Windows span packets and packets span windows: the same events in other packets
    give the same windows, event for event."""
    n = len(gaps)
    ev = EventPacket(np.cumsum(gaps).astype(np.int64), np.arange(n, dtype=np.uint16), np.zeros(n, np.uint16),
                     np.ones(n, np.int8))

    def windows(bounds):
        w = Windower(policy)
        out = [x for a, b in zip(bounds, bounds[1:]) for x in w.add_events(ev[a:b])] + w.flush()
        return [(x.t_start_us, x.t_end_us, x.events.x.tolist()) for x in out]

    split = sorted({0, n, *(c for c in cuts if c < n)})
    whole = windows([0, n])
    assert windows(split) == whole
    assert sum(len(x) for _, _, x in whole) == n
    if policy.policy == "ms":  # (an event-count window may share its first timestamp with the one before)
        assert all(a <= ev.t[i] < b for a, b, x in whole for i in x)


def test_frame_aligned_windows_follow_event_idx(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=0.4)
    src = H5Source(tmp_path / "r.h5")
    refs = src._reader.references()
    src.close()
    wins = cut(tmp_path / "r.h5", WindowPolicy("frames"))
    assert len(wins) == len(refs)  # one window per image; the events after the last one form none
    edges = [0] + [r.event_idx for r in refs]
    for j, w in enumerate(wins):
        np.testing.assert_array_equal(w.events.t, ev.t[edges[j]:edges[j + 1]])
        assert (w.reference.t_us, w.reference.event_idx, w.t_end_us) == (refs[j].t_us, refs[j].event_idx, refs[j].t_us)
    # event_idx is "the last event before the image": its window ends right before it
    assert all(ev.t[r.event_idx - 1] < r.t_us for r in refs)


def test_images_without_event_idx_are_numbered_from_their_timestamps(tmp_path):
    """Files from other writers may leave event_idx out: the convention, computed from the
    timestamps, gives the windows the writer's own indices give."""
    write_moving_edge(tmp_path / "r.h5", seconds=0.4)
    stored = cut(tmp_path / "r.h5", WindowPolicy("frames"))
    with h5py.File(tmp_path / "r.h5", "a") as f:
        for d in f["images"].values():
            del d.attrs["event_idx"]
    computed = cut(tmp_path / "r.h5", WindowPolicy("frames"))
    assert len(computed) == len(stored) == 10
    for a, b in zip(computed, stored):
        assert (a.t_start_us, a.t_end_us, a.reference.event_idx) == (b.t_start_us, b.t_end_us, b.reference.event_idx)
        np.testing.assert_array_equal(a.events.t, b.events.t)


@needs_street
def test_frame_aligned_windows_keep_every_frame_where_events_are_dropped():
    """A live camera's events off its sensor: the sanitizer drops them (bad events), and each
    window still ends at its own image. The sources' event_idx counted the dropped events too:
    read as is, 33 of the street's 59 windows came, each later than its image. (A recording's
    events off the sensor end its replay instead.)"""
    sanitize, windower, windows, images = Sanitizer(200, 300), Windower(WindowPolicy("frames")), [], []
    source = Aedat4Source(STREET_AEDAT4)
    for item in source:
        if isinstance(item, EventPacket):
            ev = sanitize(item)
            windows += windower.add_events(ev, len(item) - len(ev))
        else:
            images.append(item.t_us)
            windows += windower.add_reference(item)
    source.close()
    assert sanitize.outside == 34859 and len(images) == 59
    assert [w.t_end_us for w in windows] == images


@needs_street
def test_a_recordings_events_off_the_sensor_end_its_replay_in_one_line_whatever_its_format(tmp_path):
    """AEDAT4 files and bags dropped them as a camera's bad events: "done: 0 events ... bad
    events 78830", exit 0. HDF5 and Prophesee files refused them."""
    events = write_moving_edge(tmp_path / "r.h5", seconds=0.2)
    write_bag(tmp_path / "r.bag", events, [], 48, 64)
    for path in (STREET_AEDAT4, tmp_path / "r.bag", tmp_path / "r.h5"):
        r = run_cli("run_replay.py", path, "--model", "highpass", "--rate", "max", "--sensor-size", "10x10",
                    "--publish", f"tcp://127.0.0.1:{free_port()}")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert path.name in r.stderr and "lies outside the HxW 10x10 sensor" in r.stderr, r.stderr


def test_frame_aligned_windows_need_event_indices():
    with pytest.raises(InputError, match="frame-aligned"):
        Windower(WindowPolicy("frames")).add_reference(ReferenceFrame(0, np.zeros((2, 2), np.float32)))


@pytest.mark.parametrize("source", ["prophesee", "hdf5 without images", "dv stream"])
def test_frame_aligned_windows_without_frames_end_when_the_source_opens(source, tmp_path, dvserver):
    """A Prophesee sensor, an HDF5 file without images, a DV event stream: no intensity frames.
    The run ends with one line as it starts, not after replaying 100 s at 1x (with 0 frames),
    nor never (live)."""
    if source == "dv stream":
        port, _ = dvserver("--seconds", "100", "--rate", "1000", "--width", "64", "--height", "48")
        cmd = ["run_live.py", "--camera", f"tcp://127.0.0.1:{port}"]
    else:
        path = EVT3
        if source == "hdf5 without images":
            path = tmp_path / "r.h5"
            write_moving_edge(path, seconds=100, rate=1000, frame_us=1_000_000)  # an image a second: quicker to write
            with h5py.File(path, "a") as f:
                del f["images"]
        cmd = ["run_replay.py", path, "--rate", "1x"]
    r = run_cli(*cmd, "--window", "frames", "--publish", f"tcp://127.0.0.1:{free_port()}", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "has no intensity frames" in r.stderr, r.stderr


def test_frame_aligned_windows_that_get_no_frame_are_one_error():
    """A source that said it has frames, yet gave none (an empty images group)."""
    w = Windower(WindowPolicy("frames"))
    w.add_events(EventPacket(np.arange(3, dtype=np.int64), *np.zeros((2, 3), np.uint16), np.ones(3, np.int8)))
    with pytest.raises(InputError, match="gave no intensity frames"):
        w.flush()


def test_bad_policies_are_user_errors():
    for kw in ({"policy": "seconds"}, {"policy": "ms", "ms": 0}, {"policy": "ms", "ms": 0.0004},
               {"policy": "events", "events": 0}, {"policy": "events", "max_ms": 0.0004}, {"policy": "ms", "max_ms": 5}):
        with pytest.raises(InputError):
            WindowPolicy(**kw)
