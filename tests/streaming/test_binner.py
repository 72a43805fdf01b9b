"""The Numba binner against a plain numpy reference: events -> voxel grids."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.binner import events_to_voxel


def reference_voxel(x, y, t, p, num_bins, height, width):
    """Plain numpy, straight from the spec: every event adds max(0, 1 - |t_norm - b|) to bin b."""
    grid = np.zeros((2 * num_bins, height, width), np.float32)
    if len(t) < 3:
        return grid
    span = float(t[-1] - t[0])
    t_norm = (t - t[0]) * ((num_bins - 1) / span) if span > 0 else np.zeros(len(t))
    for b in range(num_bins):
        w = np.maximum(0.0, 1.0 - np.abs(t_norm - b)).astype(np.float32)
        ch = np.where(p > 0, b, num_bins + b)
        np.add.at(grid, (ch, y.astype(np.intp), x.astype(np.intp)), w)
    return grid


@st.composite
def windows(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    n = draw(st.integers(0, 300))
    bins = draw(st.integers(2, 9))
    # adversarial: bursts of equal timestamps, huge spans, one pixel hit many times
    t0 = draw(st.integers(0, 2**40))
    steps = draw(st.lists(st.sampled_from([0, 0, 1, 7, 1000, 2**31]), min_size=n, max_size=n))
    t = t0 + np.cumsum(np.array(steps, np.int64)) if n else np.zeros(0, np.int64)
    x = np.array(draw(st.lists(st.integers(0, w - 1), min_size=n, max_size=n)), np.uint16)
    y = np.array(draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n)), np.uint16)
    p = np.array(draw(st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n)), np.int8)
    return x, y, t.astype(np.int64), p, bins, h, w


@settings(max_examples=300, deadline=None)
@given(windows())
def test_binner_equals_numpy_reference(case):
    got = events_to_voxel(*case)
    want = reference_voxel(*case)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # same arithmetic, same order: bit-exact
    assert np.isfinite(got).all()


def test_each_event_carries_unit_weight():
    rng = np.random.default_rng(1)
    n = 5000
    t = np.sort(rng.integers(0, 10**6, n))
    grid = events_to_voxel(rng.integers(0, 346, n), rng.integers(0, 260, n), t,
                           np.where(rng.random(n) < 0.3, 1, -1).astype(np.int8), 5, 260, 346)
    assert grid.shape == (10, 260, 346)
    assert abs(grid.sum() - n) < 1e-2  # the two neighbouring bins share each event


def test_fewer_than_three_events_and_equal_timestamps():
    x = np.array([1, 2], np.uint16)
    assert not events_to_voxel(x, x, np.array([5, 9]), np.array([1, -1], np.int8), 5, 4, 4).any()
    same = events_to_voxel(np.array([0, 1, 2], np.uint16), np.zeros(3, np.uint16), np.full(3, 77),
                           np.ones(3, np.int8), 5, 2, 4)
    assert np.isfinite(same).all() and same[0, 0, :3].tolist() == [1, 1, 1] and same.sum() == 3
