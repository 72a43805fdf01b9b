"""The shipped weights (configs/eventhdr_cpu.yaml, the default): they load safely and reconstruct a
held-out simulated scene better than the high-pass filter, and better than a blank frame does."""
import json

import h5py
import torch

from model.evaluate import evaluate_file
from model.factory import make_reconstructor
from model.make_dataset import random_sim_config, sequence_seed
from model.scenes import render_sequence
from streaming.config import load_config
from tests.conftest import free_port, run_cli


def test_shipped_weights_beat_the_high_pass_filter(tmp_path):
    seed = sequence_seed("test", 100)  # a held-out scene, never trained on
    render_sequence(tmp_path / "s.h5", seed, height=96, width=128, seconds=2.0, sim_config=random_sim_config(seed))
    model = load_config().model  # the default, which run_replay.py, run_live.py and make demo run
    assert model == load_config("eventhdr_cpu").model and model["weights"].endswith("weights/eventhdr_cpu.pth")
    s = evaluate_file(tmp_path / "s.h5", {"highpass": {"type": "highpass"}, "ours": model})
    # measured: 14.1 dB / 0.40 against the filter's 10.2 dB / 0.16 and a blank frame's 11.3 dB / 0.54;
    # asserted: the margins over the filter, which the held-out test set shows (weights/README.md)
    assert s["ours"]["psnr"] > s["highpass"]["psnr"] + 3 and s["ours"]["ssim"] > s["highpass"]["ssim"] + 0.1
    assert s["ours"]["psnr"] > s["blank"]["psnr"] and s["ours"]["mu_psnr"] > s["blank"]["mu_psnr"] + 1


def test_a_config_that_names_no_model_gets_them(tmp_path):
    (tmp_path / "c.yaml").write_text("window: {policy: ms, ms: 40}\n")
    cfg = load_config(str(tmp_path / "c.yaml"))
    assert cfg.model == load_config("eventhdr_cpu").model and cfg.window.ms == 40


def test_a_replay_given_no_model_runs_them(tmp_path):
    render_sequence(tmp_path / "s.h5", seed=7, height=48, width=64, seconds=0.3)
    r = run_cli("run_replay.py", tmp_path / "s.h5", "--rate", "max", "--record", tmp_path / "out.h5",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 0 and "model eventhdr on " in r.stdout, r.stdout + r.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert json.loads(f.attrs["model"])["weights"].endswith("weights/eventhdr_cpu.pth") and len(f["frames"]) > 0


def test_a_live_network_on_the_cpu_leaves_a_core_to_reading():
    """And only once: a reconnecting run builds its model again (torch's count is global)."""
    before = torch.get_num_threads()
    try:
        for _ in range(2):
            make_reconstructor(load_config("eventhdr_cpu").model, 24, 32, "cpu", live=True)
            assert torch.get_num_threads() == max(1, before - 1)
    finally:
        torch.set_num_threads(before)
