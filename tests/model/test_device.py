"""Where the network runs (--device on every front). The CUDA runs are skipped without a GPU;
their CPU twins run everywhere."""

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import free_port, run_cli

NO_GPU = not torch.cuda.is_available()


def replay(path, out, device):
    return run_cli("run_replay.py", path, "--config", "livehdr", "--device", device, "--rate", "max",
                   "--window", "frames", "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", out)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(NO_GPU, reason="no GPU"))])
def test_replay_runs_the_network_where_asked_and_records_it(edge_h5, tmp_path, device):
    r = replay(edge_h5, tmp_path / "o.h5", device)
    assert r.returncode == 0, r.stderr
    assert f"model livehdr on {device}" in r.stdout
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert f.attrs["device"].startswith(device)
        frames = f["frames"][:]
    assert len(frames) == 25 and np.isfinite(frames).all() and frames.std() > 0  # causal: a frame a window


@pytest.mark.skipif(NO_GPU, reason="no GPU")
def test_the_network_gives_the_same_frames_on_cuda_and_cpu(edge_h5, tmp_path):
    for device in ("cpu", "cuda"):
        assert replay(edge_h5, tmp_path / f"{device}.h5", device).returncode == 0
    with h5py.File(tmp_path / "cpu.h5", "r") as a, h5py.File(tmp_path / "cuda.h5", "r") as b:
        cpu, cuda = a["frames"][:], b["frames"][:]
    # the CPU's bf16 against the GPU's float32 (TF32 convolutions): close in log radiance, not equal
    assert np.abs(np.log(cuda) - np.log(cpu)).mean() < 0.05


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present")
@pytest.mark.parametrize("front", ["run_replay.py", "evaluate.py", "train.py"])
def test_asking_for_a_missing_gpu_gives_one_clear_line(edge_h5, tmp_path, front):
    extra = {"run_replay.py": ["--config", "livehdr", "--rate", "max"], "evaluate.py": ["--config", "livehdr"],
             "train.py": ["--out", tmp_path / "run"]}[front]
    r = run_cli(front, edge_h5, *extra, "--device", "cuda")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no CUDA GPU" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
