"""The pipeline: a model slower than a live stream (the ring merges or drops windows, latency
stays bounded), refused windows, the stats (how far behind, the clock after the wait for
subscribers), --max-seconds, per-event models."""
import threading
import time

import h5py
import numpy as np
import pytest
import zmq

from model.highpass import HighPassFilter
from streaming.binner import events_to_voxel
from streaming.config import RunConfig, load_config
from streaming.datatypes import ClosedWindow, EventPacket, ReferenceFrame
from streaming.errors import WindowRefused
from streaming.outputs.publisher import Publisher
from streaming.outputs.sinks import Outputs
from streaming.pipeline import Pipeline
from streaming.ring import VoxelRing
from streaming.sources.hdf5 import H5Source
from streaming.stats import RunStats
from streaming.windows import WindowPolicy
from tests.conftest import free_port, make_pipeline, run_cli, write_moving_edge


class LiveEdge:
    """A live source: events stamped with the wall clock, produced in real time."""
    live = True
    height, width = 32, 48
    description = "synthetic live stream"

    def __init__(self, seconds: float, rate: float = 50_000):
        self.seconds, self.rate, self.sent = seconds, rate, 0

    def __iter__(self):
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        while (now := time.monotonic() - t0) < self.seconds:
            n = int(self.rate * 0.002)
            t = np.sort(rng.integers(int(now * 1e6), int(now * 1e6) + 2000, n)).astype(np.int64)
            self.sent += n
            yield EventPacket(t, rng.integers(0, self.width, n).astype(np.uint16),
                              rng.integers(0, self.height, n).astype(np.uint16), np.ones(n, np.int8))
            time.sleep(0.002)

    def close(self):
        pass


class SlowModel:
    """Takes 60 ms per window while windows arrive every 10 ms."""
    lookahead = 0
    uses_grid = True

    def __init__(self):
        self.events = 0
        self.windows = []

    def push(self, window):
        self.events += window.n_events
        self.windows.append((window.t_start_us, window.t_end_us, window.merged))
        time.sleep(0.06)
        return window.grid.sum(0)

    def reset(self):
        self.events = 0
        self.windows.clear()


@pytest.mark.parametrize("policy", ["merge", "drop"])
def test_slow_model_on_a_live_stream(policy):
    src, model = LiveEdge(seconds=2.0), SlowModel()
    cfg = RunConfig(window=WindowPolicy("ms", ms=10), overload=policy, publish=f"tcp://127.0.0.1:{free_port()}")
    pipe = make_pipeline(src, cfg, 1.0, model=model)
    model.reset()  # forget the warm-up windows
    stats = pipe.run()
    p50, p99 = stats.latency_ms()
    assert p99 < 400  # bounded: a few model periods, not the 2 s a growing queue would reach
    assert stats.frames < 60  # the model cannot do more than ~33 windows in 2 s
    assert stats.behind_max_s < 0.2  # while reading keeps up with the camera's clock
    if policy == "merge":
        assert stats.merged > 50 and stats.dropped == 0
        assert model.events == stats.events == src.sent  # merging loses no event
        starts, ends = [w[0] for w in model.windows], [w[1] for w in model.windows]
        assert starts[1:] == ends[:-1]  # merged windows still tile the stream
    else:
        assert stats.dropped > 50 and stats.merged == 0
        assert model.events + stats.dropped_events == stats.events == src.sent  # every event counted somewhere
        assert f"dropped {stats.dropped} ({stats.dropped_events:,} events)" in stats.summary()


def test_replay_blocks_the_reader_instead_of_losing_windows():
    ring = VoxelRing(4, 5, 4, 4, live=False)
    ev = EventPacket(np.arange(3, dtype=np.int64), np.zeros(3, np.uint16), np.zeros(3, np.uint16), np.ones(3, np.int8))
    done = threading.Event()

    def produce():
        for k in range(10):
            ring.put(ClosedWindow(k, k + 1, ev, None))
        ring.close()
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    time.sleep(0.2)
    assert not done.is_set()  # 10 windows do not fit in 4 slots: the reader waits
    seqs = []
    while (w := ring.get(timeout=2)) is not None:
        seqs.append(w.seq)
        assert w.grid[0, 0, 0] == 1.0  # its own grid, not overwritten by a later window
        ring.release()
    assert seqs == list(range(10)) and ring.merged == ring.dropped == 0


def _events(t0: int, n: int, x: int) -> EventPacket:
    return EventPacket(np.arange(t0, t0 + n, dtype=np.int64), np.full(n, x, np.uint16), np.zeros(n, np.uint16),
                       np.ones(n, np.int8))


def test_a_merged_window_is_binned_from_all_its_events_and_keeps_the_newest_reference():
    ring = VoxelRing(8, 2, 4, 4, live=True)
    refs = [ReferenceFrame(10 * k + 9, np.full((4, 4), k, np.float32)) for k in range(3)]
    for k in range(3):  # nothing taken yet: a live ring serves the three as one
        ring.put(ClosedWindow(10 * k, 10 * k + 10, _events(10 * k, 5, k), refs[k]))
    w = ring.get(timeout=1)
    assert (w.t_start_us, w.t_end_us, len(w.events), ring.merged) == (0, 30, 15, 2)
    np.testing.assert_array_equal(w.grid, events_to_voxel(w.events.x, w.events.y, w.events.t, w.events.p, 2, 4, 4))
    assert w.reference is refs[-1]


def test_releasing_the_newest_window_keeps_the_older_ones_grid():
    """The pipeline holds a model's lookahead of windows; one the model refuses is released
    first, and the slot freed must be its own."""
    ring = VoxelRing(2, 2, 4, 4)
    ring.put(ClosedWindow(0, 10, _events(0, 3, 0), None))
    ring.put(ClosedWindow(10, 20, _events(10, 3, 1), None))
    older = ring.get(timeout=1)
    ring.get(timeout=1)  # the newer window, taken and then released
    kept = older.grid.copy()
    ring.release(newest=True)
    ring.put(ClosedWindow(20, 30, _events(20, 3, 2), None))  # reuses the freed slot
    np.testing.assert_array_equal(older.grid, kept)
    assert ring.get(timeout=1).grid[:, 0, 2].sum() == 3


class RejectingModel:
    """Lookahead 1; refuses every third window, as EventHDRStream refuses a NaN grid. Each frame
    holds the sequence number of the centre window the model itself used."""
    lookahead = 1
    uses_grid = True

    def __init__(self, refusal=WindowRefused):
        self.accepted, self.refusal = [], refusal

    def push(self, window):
        if window.seq % 3 == 2 and window.n_events > 3:  # not the pipeline's 3-event warm-up windows
            raise self.refusal("refused")
        self.accepted.append(window.seq)
        if len(self.accepted) < 2:
            return None
        return np.full(window.grid.shape[1:], self.accepted[-2], np.float32)

    def reset(self):
        self.accepted.clear()


def test_refused_windows_do_not_shift_later_frames(tmp_path):
    write_moving_edge(tmp_path / "r.h5", seconds=0.4)
    cfg = RunConfig(window=WindowPolicy("ms", ms=10), publish=f"tcp://127.0.0.1:{free_port()}")
    model = RejectingModel()
    pipe = make_pipeline(H5Source(tmp_path / "r.h5"), cfg, outputs=Outputs(record=str(tmp_path / "o.h5"),
                         stats_every_s=1e9), model=model)
    model.reset()
    stats = pipe.run()
    assert stats.rejected == 13  # seq 2, 5, ..., 38 of 40 windows
    with h5py.File(tmp_path / "o.h5", "r") as f:
        seqs, frames = f["seq"][:], f["frames"][:]
    assert len(seqs) == 40 - 13 - 1
    assert (frames.mean(axis=(1, 2)) == seqs).all()  # each frame is labelled with its own window


def test_a_model_bug_ends_the_run_rather_than_counting_as_a_refused_window(tmp_path):
    """Only WindowRefused means "refused": a ValueError from a model's own code is a bug."""
    write_moving_edge(tmp_path / "r.h5", seconds=0.4)
    cfg = RunConfig(window=WindowPolicy("ms", ms=10), publish=f"tcp://127.0.0.1:{free_port()}")
    model = RejectingModel(refusal=ValueError)
    pipe = make_pipeline(H5Source(tmp_path / "r.h5"), cfg, model=model)
    model.reset()
    with pytest.raises(ValueError, match="refused"):
        pipe.run()
    assert pipe.stats.rejected == 0


def test_a_per_event_model_gets_no_voxel_grids(edge_h5):
    """The filter reads events, not grids: at 1280x720 the ring's 8 grids would be 295 MB, each
    cleared for every window."""
    cfg = RunConfig(publish=f"tcp://127.0.0.1:{free_port()}")
    pipe = make_pipeline(H5Source(edge_h5), cfg)
    assert cfg.model["type"] == "highpass" and pipe.ring.num_bins == 0
    assert pipe.run().frames > 0


def test_the_stats_clock_starts_after_the_wait_for_subscribers(edge_h5):
    """Else a run's frame rate counts the time before anyone subscribed."""
    cfg = load_config("highpass")
    cfg.publish = f"tcp://127.0.0.1:{free_port()}"
    publisher = Publisher(cfg.publish, log=lambda s: None)
    waited = threading.Thread(target=publisher.wait_for_subscribers, args=(1,))
    waited.start()
    time.sleep(1.0)
    assert waited.is_alive()
    subscribed_at = time.monotonic()
    with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
        sub.connect(cfg.publish)
        sub.subscribe(b"")
        waited.join(timeout=30)
        assert not waited.is_alive()
        src = H5Source(edge_h5)
        pipe = Pipeline(src, cfg, HighPassFilter(src.height, src.width), publisher, float("inf"),
                        Outputs(stats_every_s=1e9), log=lambda s: None)
        assert pipe.stats.t0 >= subscribed_at
        assert pipe.run().frames > 0
        publisher.finish(pipe.stats.snapshot())


def test_stats_say_how_far_reading_runs_behind_the_source_clock(edge_h5):
    """A model slower than real time stalls a 1x replay (a replay never drops events), so reading
    falls behind the recording's clock: frame latency, counted from each window's close, does
    not show it; `behind` does. A replay at max has no clock to be behind."""
    def run(model: str, rate: float) -> RunStats:
        cfg = load_config("highpass")
        cfg.model = {"type": model}
        # 2 ms: 500 windows a second, more than PIE-Net does at this size on an idle 2-core machine
        cfg.window, cfg.publish = WindowPolicy("ms", ms=2), f"tcp://127.0.0.1:{free_port()}"
        return make_pipeline(H5Source(edge_h5), cfg, rate).run()

    kept_up, stalled = run("highpass", 1.0), run("pienet", 1.0)
    assert stalled.windows == kept_up.windows > 100  # every window, however late
    assert kept_up.behind_max_s < 0.1 < 0.5 < stalled.behind_max_s
    assert "behind at most" in stalled.summary()
    assert run("highpass", float("inf")).behind_max_s is None


def test_max_seconds_keeps_the_last_window(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=1.0)
    cfg = RunConfig(window=WindowPolicy("ms", ms=25), publish=f"tcp://127.0.0.1:{free_port()}")
    stats = make_pipeline(H5Source(tmp_path / "r.h5"), cfg, max_seconds=0.5).run()
    assert stats.events == np.count_nonzero(ev.t < ev.t[0] + 500_000)
    assert stats.windows == stats.frames == 20  # 0.5 s of 25 ms windows, the last one too


def test_frame_aligned_windows_stopped_before_the_first_image_are_no_error(tmp_path):
    write_moving_edge(tmp_path / "r.h5", seconds=0.5)  # images every 40 ms, from 40 ms on
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--window", "frames", "--max-seconds", "0.02", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 0 and "0 frames" in r.stdout, r.stdout + r.stderr
