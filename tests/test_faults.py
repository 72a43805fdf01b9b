"""Faults a user meets: full disks, damaged files, hostile wire messages. Real files, real
processes, a real (small) filesystem."""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import av
import h5py
import numpy as np
import pytest
import zmq

from tests.conftest import REPO, default_sigint, fill, free_port, run_cli, write_moving_edge

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def one_error_line(r, *words):
    lines = [line for line in r.stderr.strip().splitlines() if "%|" not in line]  # not tqdm's progress
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert all(w in lines[0] for w in words), r.stderr


def test_recording_onto_a_full_disk_is_one_line_and_keeps_the_frames_and_the_video(tmp_path, small_disk):
    """It was a 45-line traceback, then a segfault, and an unplayable video."""
    write_moving_edge(tmp_path / "r.h5", seconds=0.5)  # 500 frames of 12 KiB: 6 MiB on a 4 MiB disk
    out = small_disk / "o.h5"
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window-ms", "1",
                "--record", out, "--video", tmp_path / "o.mp4", "--publish", f"tcp://127.0.0.1:{free_port()}")
    one_error_line(r, str(out), "no space left")
    with h5py.File(out, "r") as f:  # closed properly: opens without swmr
        n = len(f["seq"])
        assert 100 < n < 500 and f["seq"][:].tolist() == list(range(n)) and f["frames"].shape[0] == n
    with av.open(str(tmp_path / "o.mp4")) as video:  # finalised: it plays to its end
        assert sum(1 for _ in video.decode(video=0)) >= n - 1


def test_a_video_onto_a_full_disk_is_one_line(tmp_path, small_disk):
    write_moving_edge(tmp_path / "r.h5", seconds=0.2)
    fill(small_disk, 512)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--video",
                small_disk / "o.mp4", "--publish", f"tcp://127.0.0.1:{free_port()}")
    one_error_line(r, str(small_disk / "o.mp4"), "no space left")


def test_converting_onto_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, small_disk):
    write_moving_edge(tmp_path / "r.h5", seconds=1.0)  # 60,000 events: 780 KB to write
    fill(small_disk, 1500)
    r = run_cli("convert.py", tmp_path / "r.h5", small_disk / "c.h5")
    one_error_line(r, str(small_disk / "c.h5"), "no space left")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_the_recorder_onto_a_full_disk_is_one_line_and_keeps_the_frames(tmp_path, small_disk):
    write_moving_edge(tmp_path / "r.h5", seconds=0.5)
    address = f"tcp://127.0.0.1:{free_port()}"
    out = small_disk / "o.h5"
    rec = subprocess.Popen([sys.executable, "-m", "streaming.outputs.recorder", out, "--connect", address], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "1x", "--window-ms", "1",
                "--publish", address, "--wait-subscribers", "1")
        _, err = rec.communicate(timeout=30)
    finally:
        rec.kill()
    one_error_line(subprocess.CompletedProcess([], rec.returncode, "", err), str(out), "no space left")
    with h5py.File(out, "r") as f:
        n = len(f["seq"])
        assert n > 100 and f["frames"].shape[0] == n and (np.diff(f["seq"][:]) > 0).all()


def image_message(topic, n, h=4, w=4, payload=None, **fields):
    """The n-th message: seq n, every pixel n; fields: what to change in its header."""
    dtype = np.float32 if topic.startswith("frame") else np.uint8
    header = {"v": 1, "seq": n, "t_start_us": 1000 * n, "t_end_us": 1000 * n + 1000, "height": h, "width": w,
              "dtype": np.dtype(dtype).name, "latency_ms": 1.0, **fields}
    data = np.full((h, w), n, dtype).tobytes() if payload is None else payload
    return [topic.encode(), json.dumps(header).encode(), data]


def stats_message(**fields):
    return [b"stats", json.dumps({"v": 1, "frames_per_s": 10.0, **fields}).encode()]


def feed(consumer: list, messages, env=ENV) -> subprocess.CompletedProcess:
    """Run a consumer against a publisher that sends `messages` once it has subscribed."""
    address = f"tcp://127.0.0.1:{free_port()}"
    with zmq.Context() as ctx, ctx.socket(zmq.XPUB) as pub:
        pub.bind(address)
        p = subprocess.Popen([sys.executable, *consumer, address], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            assert pub.poll(30_000), "the consumer did not subscribe"
            time.sleep(0.3)  # its other subscriptions
            for m in messages:
                pub.send_multipart(m)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
    return subprocess.CompletedProcess(consumer, p.returncode, out, err)


def test_the_recorder_skips_bad_messages_with_a_count_and_records_the_rest(tmp_path):
    """It crashed on a frame whose size changed, a seq that is no integer, a null t_start_us, and
    recorded a topic frames_x as a frame."""
    r = feed(["-m", "streaming.outputs.recorder", tmp_path / "o.h5", "--connect"], [
        image_message("frame", 0), image_message("frame", 1, h=8, w=8), image_message("frame", 2, seq="x"),
        image_message("frame", 3, t_start_us=None), image_message("frames_x", 4),
        image_message("frame", 5, payload=b"short"), stats_message(frames_per_s="fast"), image_message("frame", 6),
        stats_message(final=True, frames=2)])
    assert r.returncode == 0 and "recorded 2 frames" in r.stdout and "skipped 6 bad messages" in r.stdout, r.stderr
    assert r.stderr.count("warning: skipped a bad message") == 1 and "Traceback" not in r.stderr, r.stderr
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert f["seq"][:].tolist() == [0, 6] and f["frames"][1].mean() == 6


def test_the_viewer_skips_bad_messages_with_a_count_and_shows_the_rest(x_display):
    """It crashed on a frame whose payload did not match its header, a 0x0 frame, a null or
    string field."""
    r = feed(["view.py"], [
        image_message("frame", 0, payload=b"123"), image_message("frame", 1, h=0, w=0, payload=b""),
        image_message("frame", 2, latency_ms=None), image_message("frame", 3, t_end_us="soon"),
        stats_message(frames_per_s="fast"), image_message("frame", 4), stats_message(final=True)], x_display.env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "warning: skipped a bad message" in r.stderr and "shown 1 of 1 frames; the pipeline ended" in r.stdout, r.stdout


def test_a_viewer_scale_beyond_any_screen_is_one_line():
    r = subprocess.run([sys.executable, "view.py", "--scale", "100000"], cwd=REPO, env=ENV, capture_output=True,
                       text=True, timeout=30)
    one_error_line(r, "--scale 100000", "1 to 16")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_recorder_stopped_by_a_signal_sums_up_and_closes_its_file_whole(tmp_path, sig):
    """SIGTERM killed it: no summary, the last frame torn (30 frames, 29 seq), the file not closed."""
    write_moving_edge(tmp_path / "r.h5", seconds=3.0, rate=20000)
    address = f"tcp://127.0.0.1:{free_port()}"
    rec = subprocess.Popen([sys.executable, "-m", "streaming.outputs.recorder", tmp_path / "o.h5", "--connect", address],
                           cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=default_sigint)
    replay = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--window-ms",
                               "5", "--publish", address, "--wait-subscribers", "1"], cwd=REPO, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "o.h5").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # frames flow
        rec.send_signal(sig)
        out, err = rec.communicate(timeout=10)
    finally:
        rec.kill()
        replay.kill()
        replay.communicate()
    assert rec.returncode == 128 + sig and "recorded" in out and "Traceback" not in err, out + err
    with h5py.File(tmp_path / "o.h5", "r") as f:  # closed: opens without swmr
        n = len(f["seq"])
        assert f"recorded {n} frames" in out and n > 10
        assert [len(f[k]) for k in ("frames", "t_start_us", "t_end_us")] == [n] * 3


def write_needing_a_missing_filter(path):
    """A recording whose events/xs is compressed with a filter this h5py lacks (32001, Blosc):
    written with LZF (32000), the filter's id then changed in the file."""
    write_moving_edge(path, seconds=0.3)
    with h5py.File(path, "a") as f:
        xs = f["events/xs"][:]
        del f["events/xs"]
        f.create_dataset("events/xs", data=xs, compression="lzf")
    data = path.read_bytes()
    lzf = struct.pack("<H", 32000) + b"\x08\x00\x01\x00\x03\x00lzf"  # id, name length, flags, values, name
    assert data.count(lzf) == 1
    path.write_bytes(data.replace(lzf, struct.pack("<H", 32001) + lzf[2:]))


@pytest.mark.parametrize("front", ["run_replay.py", "convert.py", "evaluate.py", "train.py"])
def test_a_compression_filter_that_is_not_installed_is_one_line_in_every_front(tmp_path, front):
    write_needing_a_missing_filter(tmp_path / "r.h5")
    extra = {"run_replay.py": ["--model", "highpass", "--rate", "max", "--publish", f"tcp://127.0.0.1:{free_port()}"],
             "convert.py": [tmp_path / "c.h5"], "evaluate.py": [], "train.py": ["--out", tmp_path / "run", "--iters", "1"]}
    r = run_cli(front, tmp_path / "r.h5", *extra[front])
    one_error_line(r, str(tmp_path / "r.h5"), "filter that is not installed")


def test_a_closed_stdout_does_not_stop_the_recording(tmp_path):
    """`| head -1` closed it, and the next stats line ended the run after 8 of 95 frames."""
    write_moving_edge(tmp_path / "r.h5", seconds=1.0)
    replay = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "2x",
                               "--record", tmp_path / "o.h5", "--stats-every", "0.1", "--publish",
                               f"tcp://127.0.0.1:{free_port()}"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert replay.stdout.readline().startswith(b"replaying")
        replay.stdout.close()  # as head -1 does
        err = replay.communicate(timeout=60)[1].decode()
    finally:
        replay.kill()
    assert replay.returncode == 0 and err == "", err
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert len(f["seq"]) == 40  # 1 s in 25 ms windows: every one


def test_publishing_on_any_free_port_says_which(tmp_path):
    write_moving_edge(tmp_path / "r.h5", seconds=0.1)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max",
                "--publish", "tcp://127.0.0.1:*")
    port = re.search(r"^publishing on tcp://127\.0\.0\.1:(\d+)$", r.stdout, re.M)
    assert r.returncode == 0 and port and 0 < int(port.group(1)) < 65536, r.stdout + r.stderr
