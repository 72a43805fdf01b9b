"""The high-pass filter, per event, against its formula."""
import math

import numpy as np

from model.highpass import LOG_LIMIT, HighPassFilter
from streaming.datatypes import EventPacket, VoxelWindow


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


def test_a_runaway_hot_pixel_stays_finite():
    hf = HighPassFilter(2, 2)
    n = 3000  # ON events 10 µs apart: log intensity ~600, far past float32's exp()
    out = hf.push(window(n * 10, np.arange(1, n + 1) * 10, np.zeros(n), np.ones(n), np.ones(n)))
    assert np.isfinite(out).all() and out[1, 0] == np.float32(math.exp(LOG_LIMIT))
