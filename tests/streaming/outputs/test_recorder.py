"""The recorder: --record in the pipeline, and python -m streaming.outputs.recorder as a subscriber
of its own."""
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tests.conftest import REPO, free_port, run_cli, write_moving_edge


def test_recorder_as_a_separate_subscriber(tmp_path):
    """It records every frame, ends when the pipeline does, and describes the run as --record does."""
    write_moving_edge(tmp_path / "r.h5", seconds=0.6)  # 600 ms: 30 windows of 20 ms
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rec = subprocess.Popen([sys.executable, "-m", "streaming.outputs.recorder", tmp_path / "o.h5", "--connect", address],
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
    rec = subprocess.Popen([sys.executable, "-m", "streaming.outputs.recorder", tmp_path / "o.h5", "--connect", address],
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
    r = subprocess.run([sys.executable, "-m", "streaming.outputs.recorder", *args], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_killed_recorder_leaves_a_readable_file(tmp_path):
    code = ("import numpy as np, sys; from streaming.outputs.recorder import FrameRecorder\n"
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
