import numpy as np
import pytest

from streaming.datatypes import EventPacket, InputError, ReferenceFrame
from streaming.sources import H5Source
from streaming.windows import WindowPolicy, Windower
from tests.conftest import write_moving_edge


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


def test_ms_windows_span_quiet_periods():
    w = Windower(WindowPolicy("ms", ms=1))
    mk = lambda t: EventPacket(np.array(t, np.int64), np.zeros(len(t), np.uint16), np.zeros(len(t), np.uint16),
                               np.ones(len(t), np.int8))
    assert w.add_events(mk([0, 500])) == []
    out = w.add_events(mk([5200]))  # 5 ms of silence: windows keep their constant rate
    assert [len(x.events) for x in out] == [2, 0, 0, 0, 0]
    assert [x.t_end_us for x in out] == [1000, 2000, 3000, 4000, 5000]


def test_event_count_windows(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=0.3)
    wins = cut(tmp_path / "r.h5", WindowPolicy("events", events=1000))
    sizes = [len(w.events) for w in wins]
    assert sizes[:-1] == [1000] * (len(sizes) - 1) and 0 < sizes[-1] <= 1000
    assert sum(sizes) == len(ev)


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


def test_frame_aligned_windows_need_event_indices():
    with pytest.raises(InputError, match="frame-aligned"):
        Windower(WindowPolicy("frames")).add_reference(ReferenceFrame(0, np.zeros((2, 2), np.float32)))


def test_bad_policies_are_user_errors():
    for kw in ({"policy": "seconds"}, {"policy": "ms", "ms": 0}, {"policy": "events", "events": 0}):
        with pytest.raises(InputError):
            WindowPolicy(**kw)
