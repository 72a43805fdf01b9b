"""The high-pass filter, per event, against its formula."""
import math

import numpy as np
import pytest

from model.highpass import LOG_LIMIT, HighPassFilter, TextbookHighPass
from streaming.datatypes import EventPacket, VoxelWindow
from streaming.offline import voxel_windows
from streaming.sources.open import open_recording
from streaming.windows import WindowPolicy
from tests.conftest import EVT3, STREET_AEDAT4, needs_street


def window(t_end: int, t=(), x=(), y=(), p=()) -> VoxelWindow:
    ev = EventPacket(np.array(t, np.int64), np.array(x, np.uint16), np.array(y, np.uint16), np.array(p, np.int8))
    return VoxelWindow(0, 0, t_end, None, ev)


def test_an_event_steps_the_log_intensity_which_then_decays_at_the_cutoff():
    hf = HighPassFilter(2, 3, cutoff_hz=0.5, contrast=0.2)
    out = hf.push(window(1000, [1000], [1], [0], [1]))
    assert out.dtype == np.float32 and out[0, 1] == np.float32(math.exp(0.2))
    assert np.all(np.delete(out.ravel(), 1) == 1.0)  # no event: log intensity 0
    out = hf.push(window(1_001_000))  # one second later
    assert np.isclose(out[0, 1], math.exp(0.2 * math.exp(-2 * math.pi * 0.5)), rtol=1e-6)
    out = hf.push(window(1_001_100, [1_001_100], [1], [0], [-1]))  # an OFF event on top
    assert np.isclose(out[0, 1], math.exp(0.2 * math.exp(-2 * math.pi * 0.5 * 1.0001) - 0.2), rtol=1e-6)


def test_reset_forgets_every_event():
    """A new sequence (or the pipeline's warm-up before a replay) must not show the last one's."""
    hf = HighPassFilter(2, 3)
    hf.push(window(1000, [10, 20], [0, 2], [1, 0], [1, -1]))
    hf.reset()
    assert np.all(hf.push(window(500)) == 1.0)


def test_a_runaway_hot_pixel_stays_finite():
    hf = HighPassFilter(2, 2)
    n = 3000  # ON events 10 µs apart: log intensity ~600, far past float32's exp()
    out = hf.push(window(n * 10, np.arange(1, n + 1) * 10, np.zeros(n), np.ones(n), np.ones(n)))
    assert np.isfinite(out).all() and out[1, 0] == np.float32(math.exp(LOG_LIMIT))


def test_a_window_of_an_hour_matches_the_textbook_form():
    """The filter's state carries a gain exp(2*pi*cutoff*(t - t_ref)), which would overflow
    within a long window (an event-count window in a still scene) unless it is rebased."""
    hour = 3_600_000_000
    t = [1, 2, hour // 2, hour - 5, hour - 1]
    w = window(hour, t, [0, 1, 1, 2, 2], [0, 0, 1, 1, 1], [1, 1, -1, 1, 1])
    for cutoff_hz in (0.5, 50.0):  # a cutoff a user set high: the gain grows 100x faster
        ours = HighPassFilter(2, 3, cutoff_hz).push(w)
        textbook = TextbookHighPass(2, 3, cutoff_hz).push(w)
        assert np.isfinite(ours).all() and np.allclose(ours, textbook, rtol=1e-6, atol=0)
        assert ours[1, 2] > 1.2  # two ON events just now


@pytest.mark.parametrize("path", [pytest.param(STREET_AEDAT4, marks=needs_street),
                                  EVT3], ids=["street", "imx636"])
def test_frames_match_the_textbook_form_on_real_recordings(path):
    src = open_recording(str(path))
    windows = list(voxel_windows(src, WindowPolicy("ms", ms=25), 5))
    ours, textbook = HighPassFilter(src.height, src.width), TextbookHighPass(src.height, src.width)
    src.close()
    for w in windows:
        a, b = ours.push(w), textbook.push(w)
        assert np.allclose(a, b, rtol=1e-6, atol=0), w.seq
    assert a.std() > 0
