"""PIE-Net, the yardstick, in our pipeline: --model pienet-lite replays a file as its own demo runs it."""
import h5py
import numpy as np
import pytest

from model.pienet import PIENetStream
from streaming.datatypes import EventPacket, VoxelWindow
from streaming.errors import InputError
from tests.conftest import free_port, run_cli


def test_pienet_lite_replays_a_file_and_says_its_frames_are_not_radiance(edge_h5, tmp_path):
    r = run_cli("run_replay.py", edge_h5, "--model", "pienet-lite", "--rate", "max", "--window-ms", "25",
                "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5")
    assert r.returncode == 0, r.stderr
    assert "model pienet-lite (its frames are display images in [0, 1], not radiance) on cpu" in r.stdout
    with h5py.File(tmp_path / "o.h5", "r") as f:
        frames = f["frames"][:]
    assert len(frames) == 40 and np.isfinite(frames).all() and frames.min() >= 0 and frames.std() > 0


def test_pienet_takes_five_bins_and_says_so():
    model = PIENetStream("pienet-lite")
    with pytest.raises(InputError, match="give --bins 5"):
        model.push(VoxelWindow(0, 0, 1, np.zeros((6, 16, 16), np.float32), EventPacket.empty()))
