"""The replay path end to end, as a user runs it: real HDF5 files, real sockets, real processes."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import av
import h5py
import numpy as np
import pytest
import zmq

from streaming.config import RunConfig, load_config
from streaming.datatypes import EventPacket, InputError, Outputs
from streaming.h5format import EventH5Reader, EventH5Writer
from streaming.pipeline import Pipeline
from streaming.protocol import encode_stats
from streaming.sources import H5Source, open_recording, paced
from streaming.stats import RunStats
from streaming.video import event_image
from streaming.windows import WindowPolicy
from tests.conftest import REPO, free_port, run_cli, write_moving_edge


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


def test_subscribers_in_other_processes_receive_every_frame(tmp_path):
    """Two subscribers to the same topics: XPUB passes on only the first subscription to a
    topic, so --wait-subscribers 2 must count connections, not subscriptions."""
    write_moving_edge(tmp_path / "r.h5", seconds=1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subs = [subprocess.Popen([sys.executable, "examples/subscribe.py", address], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window-ms", "20", "--publish", address,
                    "--wait-subscribers", "2", "--record", tmp_path / "out.h5")
        assert r.returncode == 0, r.stderr
        outs = [sub.communicate(timeout=30)[0] for sub in subs]
    finally:
        for sub in subs:
            sub.kill()
    with h5py.File(tmp_path / "out.h5", "r") as f:
        recorded = f["seq"][:]
    assert recorded.tolist() == list(range(50))  # 1 s in 20 ms windows
    for out in outs:
        assert [int(line.split()[0]) for line in out.splitlines()] == list(range(50))  # none lost to either


def test_the_example_subscriber_refuses_a_bad_address_in_one_line():
    r = run_cli("examples/subscribe.py", "nonsense")
    assert r.returncode == 1 and r.stderr.startswith("error: cannot subscribe to nonsense") and r.stderr.count("\n") == 1


def test_recording_and_video(tmp_path):
    write_moving_edge(tmp_path / "r.h5", seconds=0.6)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window", "frames",
                "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5", "--video", tmp_path / "o.mp4")
    assert r.returncode == 0, r.stderr
    assert "done:" in r.stdout
    with h5py.File(tmp_path / "o.h5", "r") as f:
        frames, t0, t1 = f["frames"][:], f["t_start_us"][:], f["t_end_us"][:]
        assert f.attrs["window"] == "frame-aligned" and "highpass" in f.attrs["model"]
    assert frames.shape == (15, 48, 64) and frames.dtype == np.float32  # one per image (40 ms apart)
    assert np.isfinite(frames).all() and frames.std() > 0
    assert (t1 == np.arange(1, 16) * 40000).all() and (t0[1:] == t1[:-1]).all()
    with av.open(str(tmp_path / "o.mp4")) as v:
        decoded = [f.to_ndarray(format="rgb24") for f in v.decode(video=0)]
    assert len(decoded) == 15 and decoded[0].shape == (48, 3 * 64, 3)


def test_the_video_plays_at_the_recordings_speed_whatever_the_windows(tmp_path):
    """Event-count windows come faster than the video's 25 frames a second: each tick shows the
    newest frame by then, so the video lasts as long as the recording (it used to last 2.6x)."""
    write_moving_edge(tmp_path / "r.h5", seconds=2.0)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window-events", "100",
                "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5", "--video", tmp_path / "o.mp4")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "o.h5", "r") as f:
        t_end = f["t_end_us"][:]
    ticks = video_ticks(tmp_path / "o.mp4")
    assert ticks == real_speed_ticks(t_end, fps=25) and 45 <= ticks <= 51 < len(t_end)
    with av.open(str(tmp_path / "o.mp4")) as v:
        assert v.streams.video[0].average_rate == 25


def video_ticks(path) -> int:
    with av.open(str(path)) as v:
        return sum(1 for _ in v.decode(video=0))


def real_speed_ticks(t_end_us, fps) -> int:
    """Ticks from the first frame's time to the last's, the last included."""
    return int((t_end_us[-1] - t_end_us[0]) * fps // 1_000_000) + 1


def test_video_events_panel_colours_each_pixel_by_its_net_polarity():
    ev = EventPacket(np.arange(4, dtype=np.int64), np.array([1, 1, 1, 3], np.uint16),
                     np.array([2, 2, 2, 0], np.uint16), np.array([1, 1, -1, -1], np.int8))
    img = event_image(ev, 4, 5)
    assert tuple(img[2, 1]) == (220, 40, 40) and tuple(img[0, 3]) == (40, 70, 220)  # red ON, blue OFF
    img[2, 1] = img[0, 3] = 255
    assert (img == 255).all()  # white where nothing happened


def test_a_per_event_model_gets_no_voxel_grids(edge_h5):
    """The filter reads events, not grids: at 1280x720 the ring's 8 grids would be 295 MB, each
    cleared for every window."""
    cfg = RunConfig(publish=f"tcp://127.0.0.1:{free_port()}")
    pipe = Pipeline(H5Source(edge_h5), cfg, float("inf"), Outputs(stats_every_s=1e9), log=lambda s: None)
    assert cfg.model["type"] == "highpass" and pipe.ring.num_bins == 0
    assert pipe.run().frames > 0


def test_the_stats_clock_starts_after_the_wait_for_subscribers(edge_h5):
    """Else a run's frame rate counts the time before anyone subscribed."""
    cfg = load_config("highpass")
    cfg.publish = f"tcp://127.0.0.1:{free_port()}"
    built = []
    maker = threading.Thread(target=lambda: built.append(
        Pipeline(H5Source(edge_h5), cfg, float("inf"), Outputs(wait_subscribers=1), log=lambda s: None)))
    maker.start()
    time.sleep(1.0)
    subscribed_at = time.monotonic()
    with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
        sub.connect(cfg.publish)
        sub.subscribe(b"")
        maker.join(timeout=30)
        assert built and built[0].stats.t0 >= subscribed_at
        assert built[0].run().frames > 0


def test_stats_say_how_far_reading_runs_behind_the_source_clock(edge_h5):
    """A model slower than real time stalls a 1x replay (a replay never drops events), so reading
    falls behind the recording's clock: frame latency, counted from each window's close, does
    not show it; `behind` does. A replay at max has no clock to be behind."""
    def run(model: str, rate: float) -> RunStats:
        cfg = load_config("highpass")
        cfg.model = {"type": model}
        # 2 ms: 500 windows a second, more than PIE-Net does at this size on an idle 2-core machine
        cfg.window, cfg.publish = WindowPolicy("ms", ms=2), f"tcp://127.0.0.1:{free_port()}"
        return Pipeline(H5Source(edge_h5), cfg, rate, Outputs(stats_every_s=1e9), log=lambda s: None).run()

    kept_up, stalled = run("highpass", 1.0), run("pienet", 1.0)
    assert stalled.windows == kept_up.windows > 100  # every window, however late
    assert kept_up.behind_max_s < 0.1 < 0.5 < stalled.behind_max_s
    assert "behind at most" in stalled.summary()
    assert run("highpass", float("inf")).behind_max_s is None


def test_max_seconds_keeps_the_last_window(tmp_path):
    ev = write_moving_edge(tmp_path / "r.h5", seconds=1.0)
    cfg = RunConfig(window=WindowPolicy("ms", ms=25), publish=f"tcp://127.0.0.1:{free_port()}")
    stats = Pipeline(H5Source(tmp_path / "r.h5"), cfg, float("inf"), Outputs(stats_every_s=1e9), max_seconds=0.5,
                     log=lambda s: None).run()
    assert stats.events == np.count_nonzero(ev.t < ev.t[0] + 500_000)
    assert stats.windows == stats.frames == 20  # 0.5 s of 25 ms windows, the last one too


def test_stats_before_the_first_frame_are_strict_json():
    """A slow network's first stats message comes before its first frame: no latency yet is
    null, not NaN, which JSON does not have (JavaScript's JSON.parse and serde refuse it)."""
    def no_constants(name):
        raise AssertionError(f"{name} in a stats header")

    stats = RunStats(clock_rate=1.0)
    header = json.loads(encode_stats(stats.snapshot())[1], parse_constant=no_constants)
    assert header["latency_p50_ms"] is None and header["latency_p99_ms"] is None
    assert "latency -" in RunStats.line(header) and "latency -" in stats.summary()
    stats.frame_out(0.012)
    header = json.loads(encode_stats(stats.snapshot())[1], parse_constant=no_constants)
    assert header["latency_p50_ms"] == pytest.approx(12.0)


def test_recorder_as_a_separate_subscriber(tmp_path):
    """It records every frame, ends when the pipeline does, and describes the run as --record does."""
    write_moving_edge(tmp_path / "r.h5", seconds=0.6)  # 600 ms: 30 windows of 20 ms
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rec = subprocess.Popen([sys.executable, "-m", "streaming.recorder", tmp_path / "o.h5", "--connect", address],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window-ms", "20", "--publish", address,
                    "--wait-subscribers", "1", "--record", tmp_path / "in_process.h5")
        assert r.returncode == 0, r.stderr
        assert "recorded 30 frames" in rec.communicate(timeout=30)[0]
    finally:
        rec.kill()
    with h5py.File(tmp_path / "o.h5", "r") as f, h5py.File(tmp_path / "in_process.h5", "r") as g:
        assert f["frames"].shape == (30, 48, 64) and f["seq"][:].tolist() == list(range(30))
        for name in ("frames", "t_start_us", "t_end_us"):
            np.testing.assert_array_equal(f[name][:], g[name][:])
        assert dict(f.attrs) == dict(g.attrs) and set(f.attrs) == {"model", "device", "window", "bins", "source"}
        assert "highpass" in f.attrs["model"] and f.attrs["window"] == "20 ms" and "r.h5" in f.attrs["source"]


def test_a_recorder_that_fell_behind_ends_with_the_pipeline(tmp_path):
    """Paused while the pipeline sends 6000 frames, far more than ZeroMQ queues for it: the
    pipeline drops the rest, its final stats among them. The recorder still ends once it has
    written what was queued, and says that frames may be missing."""
    write_moving_edge(tmp_path / "r.h5", seconds=6.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rec = subprocess.Popen([sys.executable, "-m", "streaming.recorder", tmp_path / "o.h5", "--connect", address],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    replay = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "1x",
                               "--window-ms", "1", "--publish", address, "--wait-subscribers", "1", "--stats-every", "0.5"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in replay.stdout:
            if "Mev/s" in line:  # a stats line: the recorder has joined, frames flow
                break
        rec.send_signal(signal.SIGSTOP)
        out, err = replay.communicate(timeout=120)
        assert replay.returncode == 0, err
        rec.send_signal(signal.SIGCONT)
        out, err = rec.communicate(timeout=60)
    finally:
        rec.kill()
        replay.kill()
    assert rec.returncode == 1 and err.count("\n") == 1 and "went away without its final message" in err, err
    n = int(re.search(r"recorded (\d+) frames", out).group(1))
    assert 0 < n < 6000
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert len(f["seq"]) == n and f["seq"][0] == 0


@pytest.mark.parametrize("args,message", [
    (["o.h5", "--connect", "foo"], "cannot connect to foo"), (["o.h5", "--connect", "tcp://127.0.0.1:0"], "port is 1-65535"),
    (["o.h5", "--max-frames", "-1"], "--max-frames must be 0 or more"), (["o.mp4"], "this writes HDF5"),
    (["no/such/folder/o.h5"], "there is no folder no/such/folder"),
])
def test_recorder_bad_flags_give_one_clear_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "streaming.recorder", *args], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_killed_recorder_leaves_a_readable_file(tmp_path):
    code = ("import numpy as np, sys; from streaming.recorder import FrameRecorder\n"
            "r = FrameRecorder(sys.argv[1], 8, 8, {'model': 'x'})\n"
            "for i in range(10**7):\n"
            "    r.write(i, i, i + 1, np.full((8, 8), i, np.float32))\n"
            "    if i == 10: print('ready', flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code, tmp_path / "k.h5"], cwd=REPO, stdout=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    with h5py.File(tmp_path / "k.h5", "r", swmr=True) as f:
        n = len(f["seq"])
        assert n > 10
        assert f["frames"][n - 1].mean() == f["seq"][n - 1] == n - 1


def _bad_files(d):
    (d / "notes.h5").write_text("not hdf5")
    (d / "clip.mp4").write_bytes(bytes(16))
    with h5py.File(d / "nodata.h5", "w") as f:
        f["events/xs"] = np.zeros(3, np.int16)
    (d / "image.bag").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (d / "folder").mkdir()

    def events(name, ts, xs=(1, 2, 3), res=(10, 10), ps=None):
        with h5py.File(d / name, "w") as f:
            f["events/ts"], f["events/xs"] = ts, np.array(xs, np.int16)
            f["events/ys"], f["events/ps"] = np.zeros(len(ts), np.int16), np.ones(len(ts), bool) if ps is None else ps
            f.attrs["sensor_resolution"] = res
    t = np.array([0.1, 0.2, 0.3])
    events("unsorted.h5", np.array([0.1, 0.3, 0.2]))
    events("outside.h5", t, [1, 2, 10])
    events("empty.h5", np.zeros(0), [])
    events("nan.h5", np.array([0.1, np.nan, 0.3]))
    events("res3.h5", t, res=(10, 10, 3))
    events("huge.h5", t, res=(100000, 100000))
    events("pol5.h5", t, ps=np.array([1, 5, 0], np.int8))
    events("pol_half.h5", t, ps=np.array([1.0, 0.5, 0.0]))
    events("microseconds.h5", t * 1e7)  # float microseconds: days of "seconds"
    events("event_idx.h5", t)
    with h5py.File(d / "event_idx.h5", "a") as f:
        f["images/image000000000"] = np.zeros((10, 10), np.uint8)
        f["images/image000000000"].attrs.update(timestamp=0.25, event_idx=100)
    events("inf_last.h5", np.array([0.1, 0.2, np.inf]))
    os.mkfifo(d / "fifo.raw")
    (d / "zero.raw").symlink_to("/dev/zero")
    for name, image, stamp in (("rgba.h5", np.zeros((10, 10, 4), np.uint8), 0.25),
                               ("image_1d.h5", np.zeros(10, np.uint8), 0.25),
                               ("image_text.h5", np.array([b"pixels"]), 0.25),
                               ("stamp_nan.h5", np.zeros((10, 10), np.uint8), np.nan),
                               ("stamp_text.h5", np.zeros((10, 10), np.uint8), "soon")):
        events(name, t)
        with h5py.File(d / name, "a") as f:
            f["images/image000000000"] = image
            f["images/image000000000"].attrs["timestamp"] = stamp
    events("image_group.h5", t)
    with h5py.File(d / "image_group.h5", "a") as f:
        f.create_group("images/image000000000")
    for name, key, value in (("xs_text.h5", "xs", np.array([b"a", b"b", b"c"])),
                             ("ts_records.h5", "ts", np.array([(1, 2)] * 3, [("a", "i4"), ("b", "i4")])),
                             ("xs_2d.h5", "xs", np.zeros((3, 1), np.int16)), ("ps_scalar.h5", "ps", np.int8(1)),
                             ("ys_group.h5", "ys", None)):
        events(name, t)
        with h5py.File(d / name, "a") as f:
            del f["events/" + key]
            if value is None:
                f.create_group("events/" + key)
            else:
                f["events/" + key] = value


@pytest.mark.parametrize("name,message", [
    ("missing.h5", "no such file"), ("notes.h5", "not an HDF5 file"), ("nodata.h5", "missing datasets"),
    ("unsorted.h5", "time-sorted"), ("outside.h5", "outside the HxW 10x10 sensor"), ("empty.h5", "no events"),
    ("nan.h5", "events/ts holds nan at event 1"), ("clip.mp4", "unknown recording type"),
    ("res3.h5", "sensor_resolution is [10, 10, 3], not [height, width]"), ("huge.h5", "Each side is 1 to 4096"),
    ("pol5.h5", "events/ps holds 5 at event 1"), ("pol_half.h5", "holds 0.5 at event 1"),
    ("microseconds.h5", "float timestamps are seconds"), ("event_idx.h5", "has event_idx 100; the file holds 3 events"),
    ("image.bag", "not a readable ROS 1 bag"), ("folder", "a folder, not a recording"),
    ("inf_last.h5", "events/ts holds inf at event 2"),  # not "float timestamps are seconds"
    ("rgba.h5", "image000000000 is a 10x10x4 array of uint8; an image is HxW grey or HxWx3"),
    ("stamp_nan.h5", "has timestamp nan; expected a finite number"),  # it became INT64_MIN
    ("fifo.raw", "fifo.raw: not a regular file"), ("zero.raw", "zero.raw: not a regular file"),  # "no such file"
])
def test_bad_input_gives_one_clear_line(tmp_path, name, message):
    _bad_files(tmp_path)
    r = run_cli("run_replay.py", tmp_path / name, "--rate", "max", "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr


@pytest.mark.parametrize("name,message", [
    ("image_1d.h5", "is a 10 array of uint8"), ("image_text.h5", "array of strings"),
    ("image_group.h5", "images/image000000000 is a group"),
    ("stamp_text.h5", "has timestamp 'soon'; expected a finite number"),
    ("xs_text.h5", "events/xs is a 3 array of strings; expected a 1-D array of numbers"),
    ("ts_records.h5", "events/ts is a 3 array of records"), ("xs_2d.h5", "events/xs is a 3x1 array of int16"),
    ("ps_scalar.h5", "events/ps is a scalar of int8"), ("ys_group.h5", "events/ys is a group"),
])
def test_unusual_datasets_and_images_are_input_errors(tmp_path, name, message):
    """They crashed (a TypeError, a matmul's ValueError) or gave garbage. An InputError is one line
    in every front (the cases above show it for run_replay.py)."""
    _bad_files(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        source = open_recording(str(tmp_path / name))
        for _ in source:
            pass


def test_polarities_mixing_0_and_minus_1_across_chunks_are_refused(tmp_path):
    """Each chunk alone is a valid convention (0/1, then -1/+1): only the file as a whole is not."""
    with h5py.File(tmp_path / "mixed.h5", "w") as f:
        f["events/ts"], f["events/xs"], f["events/ys"] = np.arange(8) * 1e-3, np.zeros(8, np.int16), np.zeros(8, np.int16)
        f["events/ps"] = np.array([0, 1, 0, 1, -1, 1, -1, 1], np.int8)
        f.attrs["sensor_resolution"] = (4, 4)
    reader = EventH5Reader(tmp_path / "mixed.h5")
    with pytest.raises(InputError, match="mixes 0 and -1"):
        list(reader.chunks(4))
    reader.close()


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


@pytest.mark.parametrize("ts,chunk,bad", [([0.1, 0.3, 0.2, 0.4], 4, 2),  # in the first chunk
                                           ([0.1, 0.2, 0.15, 0.3], 2, 2),  # across two chunks
                                           ([0.1, 0.2, 0.3, 0.25], 2, 3)])  # in a later chunk
def test_timestamps_that_decrease_are_found_at_their_event_within_and_across_chunks(tmp_path, ts, chunk, bad):
    with h5py.File(tmp_path / "u.h5", "w") as f:
        f["events/ts"], f["events/xs"], f["events/ys"] = np.array(ts), np.zeros(4, np.int16), np.zeros(4, np.int16)
        f["events/ps"] = np.ones(4, bool)
        f.attrs["sensor_resolution"] = (4, 4)
    reader = EventH5Reader(tmp_path / "u.h5")
    with pytest.raises(InputError, match=f"timestamps decrease at event {bad};"):
        list(reader.chunks(chunk))
    reader.close()


@pytest.mark.parametrize("flags,message", [
    (["--rate", "fast"], "bad --rate"), (["--rate", "0x"], "bad --rate"), (["--config", "nope"], "no config"),
    (["--model", "missing.pth"], "no such checkpoint"), (["--window-ms", "-3"], "must be at least"),
    (["--window-ms", "inf"], "and finite"), (["--window-events", "100", "--window-max-ms", "inf"], "and finite"),
    (["--window-events", "100", "--window-max-ms", "0.0001"], "must be at least 0.001 ms"),
    (["--sensor-size", "100000x100000"], "Each side is 1 to 4096"), (["--video", "TMP/v.gif"], "name it .mp4"),
    (["--wait-subscribers", "-1"], "must be 0 or more"), (["--publish", "tcp://127.0.0.1:99999"], "port is 1-65535"),
    (["--max-seconds", "0"], "--max-seconds must be a positive"), (["--max-seconds", "inf"], "got inf"),
    (["--stats-every", "-1"], "--stats-every must be a positive"), (["--record", "out.mp4"], "this writes HDF5"),
    (["--video", "no/such/folder/v.mp4"], "there is no folder no/such/folder"),
    (["--config", "eventhdr"], "model eventhdr has no weights"),  # random weights are not a model
    (["--config", "weights/livehdr.pth"], "not valid YAML"),
    (["--rate", "1e-20x"], "a factor from 1e-06x to 1e+06x"),  # it overflowed the replay's timer
    (["--bins", "100000"], "bins must be 2 to 64, got 100000"),  # 32 GiB of voxel grids for the filter
])
def test_bad_flags_give_one_clear_line(edge_h5, flags, message):
    r = run_cli("run_replay.py", edge_h5, *(f.replace("TMP", str(edge_h5.parent)) for f in flags))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (edge_h5.parent / "v.gif").exists()


def test_record_onto_the_recording_is_refused_by_any_name(edge_h5):
    """The same path, or a hard link to it: h5py would truncate the recording as it opens."""
    before = edge_h5.read_bytes()
    os.link(edge_h5, edge_h5.parent / "alias.h5")
    for out in (edge_h5, edge_h5.parent / "alias.h5"):
        r = run_cli("run_replay.py", edge_h5, "--record", out, "--rate", "max")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "being replayed" in r.stderr, r.stderr
    assert edge_h5.read_bytes() == before


def test_demo_answers_help_and_bad_flags_before_generating_its_scene(tmp_path):
    """`make demo ARGS=...` passes ARGS to run_replay.py; a typo there should not cost the
    scene's generation first."""
    demo = tmp_path / "demo.h5"
    code = ("import pathlib, sys, streaming.demo as d; d.DEMO_H5 = pathlib.Path(sys.argv.pop(1)); "
            "d.run_main(d.main)")
    r = run_cli("-c", code, demo, "--help")
    assert r.returncode == 0 and "--rate" in r.stdout and "generating" not in r.stdout, r.stdout
    r = run_cli("-c", code, demo, "--rates", "2x")
    assert r.returncode == 2 and "unrecognized arguments: --rates" in r.stderr, r.stderr
    assert not demo.exists() and not list(tmp_path.iterdir())


def test_port_in_use_gives_one_clear_line(edge_h5):
    import zmq
    port = free_port()
    s = zmq.Context.instance().socket(zmq.PUB)
    s.bind(f"tcp://127.0.0.1:{port}")
    try:
        r = run_cli("run_replay.py", edge_h5, "--publish", f"tcp://127.0.0.1:{port}")
    finally:
        s.close(0)
    assert r.returncode == 2 and "pass another --publish address" in r.stderr and r.stderr.count("\n") == 1


def replay_1x(tmp_path, images: bool = True, *flags):
    """A 4 s replay at 1x in a process of its own, started (its first line read). Without
    images the file is a single chunk of events, with no reference frames between them."""
    ev = write_moving_edge(tmp_path / "r.h5", seconds=4.0, rate=20000)
    if not images:
        with EventH5Writer(tmp_path / "r.h5", 48, 64) as w:
            w.add_events(ev)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "1x", "--publish",
                          f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5", "--stats-every", "0.5", *flags],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("replaying")
    return p


@pytest.mark.parametrize("images", [True, False])
def test_ctrl_c_stops_cleanly(tmp_path, images):
    p = replay_1x(tmp_path, images)
    assert p.stdout.readline().startswith("[")  # the first stats line: the replay is under way
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err  # as shells report a process Ctrl-C ended
    assert "done:" in out and "Traceback" not in err
    with h5py.File(tmp_path / "o.h5", "r") as f:  # closed properly: opens without swmr
        n = len(f["seq"])
    assert 10 < n < 120  # stopped at once, about 1.5 s in: 4 s of 25 ms windows would be 160


def test_sigterm_stops_as_ctrl_c_does_and_consumers_hear_the_end(tmp_path):
    """kill, systemd and docker stop send SIGTERM: the files are closed (the video too) and the
    final stats go out, so a subscriber waiting for them ends."""
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sub = subprocess.Popen([sys.executable, "examples/subscribe.py", address], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        p = replay_1x(tmp_path, True, "--publish", address, "--video", tmp_path / "o.mp4", "--wait-subscribers", "1")
        assert p.stdout.readline().startswith("waiting for 1 subscriber")
        assert p.stdout.readline().startswith("[")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        received = sub.communicate(timeout=30)[0].splitlines()
    finally:
        sub.kill()
    assert p.returncode == 143 and "done:" in out and sub.returncode == 0, err
    with h5py.File(tmp_path / "o.h5", "r") as f:
        n, t_end = len(f["seq"]), f["t_end_us"][:]
    assert video_ticks(tmp_path / "o.mp4") == real_speed_ticks(t_end, fps=40)  # 25 ms windows, closed whole
    assert 10 < n < 120 and len(received) == n  # stopped early; the subscriber got every frame


def write_hour_gap(path):
    """0.1 s of events, an hour of silence, 0.1 s more: in 1 ms windows, 3.6 million empty ones."""
    rng = np.random.default_rng(0)
    t = np.concatenate([np.sort(rng.integers(0, 100_000, 2000)), 3_600_000_000 + np.sort(rng.integers(0, 100_000, 2000))])
    with EventH5Writer(path, 48, 64) as w:
        w.add_events(EventPacket(t.astype(np.int64), rng.integers(0, 64, 4000).astype(np.uint16),
                                 rng.integers(0, 48, 4000).astype(np.uint16), np.ones(4000, np.int8)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_is_obeyed_within_a_second_whatever_the_window_count(tmp_path, sig):
    """The windows of a long gap came as one list, and the stop was heard only between source
    items: SIGTERM went unheard for minutes, and docker stop kills after 10 s."""
    write_hour_gap(tmp_path / "gap.h5")
    p = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "gap.h5", "--model", "highpass", "--rate", "max",
                          "--window-ms", "1", "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5",
                          "--stats-every", "0.5"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("replaying")
        assert p.stdout.readline().startswith("[")  # under way
        t0 = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert time.monotonic() - t0 < 3, out  # about a second, on a busy machine
    assert p.returncode == 128 + sig and "done:" in out and "Traceback" not in err, err
    with h5py.File(tmp_path / "o.h5", "r") as f:  # closed properly: opens without swmr
        assert 0 < len(f["seq"]) < 3_600_000


def test_ctrl_c_during_start_up_ends_without_a_traceback(tmp_path):
    p = replay_1x(tmp_path)
    p.send_signal(signal.SIGINT)  # while the pipeline warms up, or just after: either way, no traceback
    out, err = p.communicate(timeout=30)
    assert p.returncode in (0, 130) and "Traceback" not in err, err


def test_ctrl_c_while_a_front_imports_is_one_line():
    """A Ctrl-C lands during the imports (a second of torch, numba and dv) as a KeyboardInterrupt
    at module level, outside run_main; every front imports streaming.exits first for this."""
    r = run_cli("-c", "import streaming.exits\nimport numpy\nraise KeyboardInterrupt")
    assert r.stderr == "interrupted\n" and r.returncode == -signal.SIGINT
    for front in ("run_replay.py", "run_live.py", "convert.py", "view.py", "train.py", "evaluate.py"):
        first = next(line for line in (REPO / front).read_text().splitlines() if line.startswith(("from ", "import ")))
        assert first.startswith("from streaming.exits import"), front


def test_ctrl_c_inside_compiled_code_is_an_interrupt_too():
    """Numba hands a Ctrl-C that lands inside a compiled function back as a SystemError raised
    from the KeyboardInterrupt (make_dataset's simulator showed it 1 run in 4)."""
    raise_it = "def main():\n    try:\n        raise KeyboardInterrupt\n    except KeyboardInterrupt:\n        raise {}\n"
    run = "from streaming.exits import run_main\n{}run_main(main)"
    r = run_cli("-c", run.format(raise_it.format("SystemError('returned a result with an exception set')")))
    assert r.returncode == 130 and r.stderr == "interrupted\n", r.stderr
    r = run_cli("-c", run.format(raise_it.format("SystemExit(3)")))
    assert r.returncode == 3 and r.stderr == ""  # an exit chosen while handling one is kept
    r = run_cli("-c", run.format("def main():\n    raise SystemError('a bug')\n"))
    assert r.returncode == 1 and "Traceback" in r.stderr and "SystemError: a bug" in r.stderr


@pytest.mark.parametrize("text,message", [
    ("bins: five\n", "bins must be an integer"), ("model: {type: highpass, cutoff: 3}\n", "unknown settings cutoff"),
    ("model: {type: e2vid}\n", "use one of highpass, pienet, pienet-lite, livehdr, eventhdr, checkpoint"),
    ("window: {policy: ms, size: 3}\n", "bad window settings"),
    ("colour: red\n", "unknown settings colour"), ("model: [\n", "not valid YAML"),
    ("device: gpu\n", "use auto, cpu, cuda or cuda:N"),
    ("window: {policy: ms, max_ms: 50}\n", "is for event-count windows"),
    ("model: highpass\n", "model must be a mapping"), ("publish: 5555\n", "publish must be a string"),
    ("window: {policy: events, events: 1000.7}\n", "window events must be an integer"),
    ("window: {policy: ms, ms: true}\n", "window ms must be a number"),
    ("model: {type: highpass, cutoff_hz: -1}\n", "cutoff_hz must be >= 0 and contrast > 0"),
    ("model: {type: highpass, contrast: .inf}\n", "finite numbers"),  # it failed at the first frame's JSON
    ("bins: 5.7\n", "bins must be an integer, got 5.7"), ("bins: true\n", "bins must be an integer, got True"),
])
def test_bad_config_gives_one_clear_line(edge_h5, tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    r = run_cli("run_replay.py", edge_h5, "--config", tmp_path / "bad.yaml", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_flags_change_only_what_they_name(edge_h5, tmp_path):
    """--window-events keeps the config's max_ms, and --model highpass its filter settings."""
    (tmp_path / "c.yaml").write_text("model: {type: highpass, cutoff_hz: 5.0, contrast: 0.1}\n"
                                     "window: {policy: events, events: 5000, max_ms: 50}\n")
    r = run_cli("run_replay.py", edge_h5, "--config", tmp_path / "c.yaml", "--window-events", "1000", "--model",
                "highpass", "--rate", "max", "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5")
    assert r.returncode == 0 and "1000 events or 50 ms windows" in r.stdout, r.stdout + r.stderr
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert json.loads(f.attrs["model"]) == {"type": "highpass", "cutoff_hz": 5.0, "contrast": 0.1}


def test_frame_aligned_windows_stopped_before_the_first_image_are_no_error(tmp_path):
    write_moving_edge(tmp_path / "r.h5", seconds=0.5)  # images every 40 ms, from 40 ms on
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--window", "frames", "--max-seconds", "0.02", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 0 and "0 frames" in r.stdout, r.stdout + r.stderr
