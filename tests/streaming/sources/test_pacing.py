"""Pacing: a recording replayed at --rate follows its event time."""
import time

import pytest

from streaming.sources.hdf5 import H5Source
from streaming.sources.pacing import paced
from tests.conftest import write_moving_edge


@pytest.mark.parametrize("rate", [1.0, 4.0])
def test_pacing_follows_event_time(tmp_path, rate):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=3.0, rate=20000)
    src = H5Source(tmp_path / "r.h5")
    first = last = None
    for item in paced(src, rate):
        if hasattr(item, "x") and len(item):
            last = time.monotonic()
            first = first or last
    src.close()
    want = (ev.t[-1] - ev.t[0]) * 1e-6 / rate
    assert abs((last - first) - want) < 0.1 * want  # bench/pipeline.py reports the exact figure
