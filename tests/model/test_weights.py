"""The shipped weights (configs/livehdr.yaml, the default): they load safely and reconstruct
held-out simulated scenes and the real recordings (ECD's moving camera, the still DAVIS346 street)
better than the high-pass filter."""
import json

import h5py
import pytest
import torch

from model.evaluation.evaluate import evaluate_file
from model.factory import make_reconstructor
from model.simulation.make_dataset import random_sim_config, sequence_seed
from model.simulation.scenes import photo_paths, render_sequence
from streaming.config import load_config
from tests.conftest import SHARED_DATA, STREET_AEDAT4, free_port, needs_street, run_cli

ECD = SHARED_DATA / "ecd_slider_depth_1.7-3.4s.h5"
DEFAULT = load_config().model  # what run_replay.py, run_live.py and make demo run


def test_the_default_is_our_network_with_these_weights():
    assert DEFAULT == load_config("livehdr").model and DEFAULT["weights"].endswith("weights/livehdr.pth")


NEEDS_PHOTOS = pytest.mark.skipif(not photo_paths(),
                                  reason="the scene is drawn with the photographs that `make photos` installs")


def held_out_scene(path, index: int, height: int, width: int, style: str = "hdr"):
    """A test-split scene of 2 s (its seeds are never trained on), written to `path`."""
    seed = sequence_seed("test", index)
    render_sequence(path, seed, height=height, width=width, seconds=2.0, sim_config=random_sim_config(seed),
                    style=style)
    return path


def beside_the_filter(path) -> tuple[dict, dict]:
    """(our default's scores, the high-pass filter's) on a recording."""
    s = evaluate_file(path, {"highpass": {"type": "highpass"}, "ours": DEFAULT})
    return s["ours"], s["highpass"]


@NEEDS_PHOTOS
def test_shipped_weights_beat_the_high_pass_filter_on_a_held_out_scene(tmp_path, one_torch_thread):
    ours, hp = beside_the_filter(held_out_scene(tmp_path / "s.h5", 100, 96, 128))
    # measured: 11.43 dB / 0.531 log SSIM against the filter's 9.24 / 0.271 (a dark HDR scene; over
    # the 8 scenes of the held-out test set the margins are 3.4 dB and 0.25: weights/README.md)
    assert ours["psnr"] > hp["psnr"] + 2
    assert ours["log_ssim"] > hp["log_ssim"] + 0.15


@NEEDS_PHOTOS
def test_shipped_weights_on_a_still_camera_scene_at_a_davis346s_size(tmp_path, one_torch_thread):
    """Trained on crops of 128, a network can grow shapes in a larger frame where little moves
    (weights/README.md: a stage that did, 0.326 log SSIM on this scene): the live product's sensor size."""
    ours, hp = beside_the_filter(held_out_scene(tmp_path / "s.h5", 0, 260, 346, style="still"))
    # measured: 0.464 log SSIM against the filter's 0.235
    assert ours["log_ssim"] > hp["log_ssim"] + 0.15


@pytest.mark.skipif(not ECD.exists(), reason=f"{ECD} is missing")
def test_shipped_weights_on_the_real_moving_camera_recording(one_torch_thread):
    ours, hp = beside_the_filter(ECD)
    # measured: 0.530 log SSIM / 0.318 linear SSIM, against the filter's 0.410 / 0.343 (weights/README.md);
    # asserted: ahead of the filter in log SSIM, and no worse than measured less another CPU's arithmetic
    assert ours["log_ssim"] > hp["log_ssim"] + 0.1 and ours["ssim"] > 0.29


@needs_street
def test_shipped_weights_on_the_real_still_camera_recording(one_torch_thread):
    """A parked camera sees events only where something moves: a network that grows shapes out of
    the still background's few events scores below the filter here (a stage that did is in
    weights/README.md: 0.185 log SSIM)."""
    ours, hp = beside_the_filter(STREET_AEDAT4)
    # measured: 0.362 log SSIM against the filter's 0.302
    assert ours["log_ssim"] > hp["log_ssim"] + 0.03


def test_a_config_that_names_no_model_gets_them(tmp_path):
    (tmp_path / "c.yaml").write_text("window: {policy: ms, ms: 40}\n")
    cfg = load_config(str(tmp_path / "c.yaml"))
    assert cfg.model == DEFAULT and cfg.window.ms == 40


def test_a_replay_given_no_model_runs_them(tmp_path):
    render_sequence(tmp_path / "s.h5", seed=7, height=48, width=64, seconds=0.3)
    r = run_cli("run_replay.py", tmp_path / "s.h5", "--rate", "max", "--record", tmp_path / "out.h5",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 0 and "model livehdr on " in r.stdout, r.stdout + r.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert json.loads(f.attrs["model"])["weights"].endswith("weights/livehdr.pth") and len(f["frames"]) > 0


def test_a_live_network_on_the_cpu_leaves_a_core_to_reading():
    """And only once: a reconnecting run builds its model again (torch's count is global)."""
    before = torch.get_num_threads()
    try:
        for _ in range(2):
            make_reconstructor(DEFAULT, 24, 32, "cpu", live=True)
            assert torch.get_num_threads() == max(1, before - 1)
    finally:
        torch.set_num_threads(before)
