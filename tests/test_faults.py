"""Faults a user meets: full disks, damaged files, hostile wire messages. Real files, real
processes, a real (small) filesystem."""
import os
import subprocess
import sys

import av
import h5py
import numpy as np

from tests.conftest import REPO, fill, free_port, run_cli, write_moving_edge


def one_error_line(r, *words):
    lines = r.stderr.strip().splitlines()
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
    rec = subprocess.Popen([sys.executable, "-m", "streaming.recorder", out, "--connect", address], cwd=REPO,
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
