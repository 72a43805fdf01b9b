"""The sanitizer: events off the sensor or out of time order are dropped and counted; a clock
that jumps back for good ends the sequence."""
import h5py
import numpy as np
import pytest

from streaming.datatypes import EventPacket
from streaming.errors import SourceLost
from streaming.sanitizer import Sanitizer
from tests.conftest import free_port, run_cli


def test_sanitizer_drops_and_counts_bad_events():
    t = np.array([10, 20, 15, 30, 40, 50], np.int64)
    x = np.array([0, 1, 2, 400, 3, 4], np.uint16)
    y = np.array([0, 0, 0, 0, 300, 5], np.uint16)
    s = Sanitizer(height=260, width=346)
    out = s(EventPacket(t, x, y, np.ones(6, np.int8)))
    assert out.t.tolist() == [10, 20, 50]
    assert (s.outside, s.unordered) == (2, 1)
    # the order check carries across packets
    out2 = s(EventPacket(np.array([49, 60]), np.array([1, 1], np.uint16), np.array([1, 1], np.uint16),
                         np.ones(2, np.int8)))
    assert out2.t.tolist() == [60] and s.unordered == 2


def test_a_lone_timestamp_far_ahead_is_dropped_not_the_rest_of_the_stream():
    """One corrupted timestamp (here 10^4 s ahead) used to become 'the last kept event', so every
    event after it was out of order and dropped: the run lived on, reconstructing nothing."""
    s = Sanitizer(height=10, width=10)
    pk = lambda *t: EventPacket(np.array(t, np.int64), np.zeros(len(t), np.uint16), np.zeros(len(t), np.uint16),
                                np.ones(len(t), np.int8))
    glitch = 10**10
    assert s(pk(10, glitch, 30, 40)).t.tolist() == [10, 30, 40] and s.unordered == 1  # within a packet
    assert s(pk(50, glitch)).t.tolist() == [50]  # a packet's last: held until the next one tells
    assert s(pk(60, 70)).t.tolist() == [60, 70] and s.unordered == 2
    # a real gap: what follows it is as far ahead, so it stands
    assert s(pk(80, 5_000_000)).t.tolist() == [80]
    assert s(pk(5_000_010)).t.tolist() == [5_000_000, 5_000_010] and s.unordered == 2
    assert s(pk(5_000_020, glitch)).t.tolist() == [5_000_020]
    s.finish()  # the stream ends on a held event: nothing tells, and it is counted as dropped
    assert s.unordered == 3


def test_a_clock_that_jumps_back_for_good_ends_the_sequence():
    """A camera's timestamp reset: every later event is far behind. Dropping them as out of order
    would leave a live run reconstructing nothing for as long as the clock had run; it is a lost
    source instead, which --reconnect answers with a new sequence. A lone event far behind is a
    glitch, dropped and counted."""
    s = Sanitizer(height=10, width=10)
    pk = lambda *t: EventPacket(np.array(t, np.int64), np.zeros(len(t), np.uint16), np.zeros(len(t), np.uint16),
                                np.ones(len(t), np.int8))
    assert s(pk(5_000_000, 5_000_100, 20, 5_000_200)).t.tolist() == [5_000_000, 5_000_100, 5_000_200]
    assert s.unordered == 1
    assert s(pk(5_000_300, 30)).t.tolist() == [5_000_300]  # held: the next packet tells
    with pytest.raises(SourceLost, match="the event clock jumped back 5.0 s"):
        s(pk(40, 50))


def test_a_recording_ending_on_a_far_off_timestamp_counts_it(tmp_path):
    """The sanitizer holds a packet's last event when it lies far off, until the next packet shows
    whether it was a glitch; at the end of the stream none comes, and it is counted as dropped."""
    t = np.r_[np.arange(1000) * 100, 10**10]  # 0.1 s of events, then one 2.8 h later
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["events/ts"], f["events/xs"], f["events/ys"] = t, np.zeros(1001, np.int16), np.zeros(1001, np.int16)
        f["events/ps"] = np.ones(1001, bool)
        f.attrs["sensor_resolution"] = (4, 4)
    r = run_cli("run_replay.py", tmp_path / "g.h5", "--model", "highpass", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 0 and "done: 1,000 events" in r.stdout and "bad events 1," in r.stdout, r.stdout + r.stderr
