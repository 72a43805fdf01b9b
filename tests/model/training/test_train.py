"""Training on simulated recordings: the loss falls, checkpoints load, runs resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.evaluation.metrics import percentile_normalise, ssim
from model.networks.eventhdr import make_arch
from model.networks.registry import build_network
from model.networks.stream import load_network
from model.simulation.scenes import render_sequence
from model.training.losses import protocol_normalise, ssim_loss
from model.training.train import ClipDataset, clip_loss
from model.training.train import main as train_main
from tests.conftest import REPO, TINY, default_sigint, run_cli, start_cli

TINY_LIVE = {"feat": 8, "groups": 1, "blocks": 1}
# Every training run here takes one torch thread: on a machine whose other core is busy, two
# threads wait on each other (an iteration of the tiny network took 7 s instead of 0.2 s).
ONE_THREAD = ["--threads", "1"]


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """A simulated recording for the training fronts, alone in its folder: 16 frames of 48x64."""
    path = tmp_path_factory.mktemp("train") / "s.h5"
    render_sequence(path, seed=6, height=48, width=64, seconds=0.6)
    return path


# EventHDR's training path (the grid-sample deformable convolution) is 10x LiveHDR's cost: its
# clips are cropped smaller and trained for fewer steps (its loss falls to 0.75-0.78 of the start
# there, against 0.82-0.87 after 30 steps on 48x48 crops)
@pytest.mark.parametrize("family, arch, bf16, crop, steps", [("livehdr", TINY_LIVE, False, 48, 30),
                                                             ("livehdr", TINY_LIVE, True, 48, 30),
                                                             ("eventhdr", TINY, False, 32, 15)])
def test_a_short_training_run_lowers_the_loss(tmp_path, family, arch, bf16, crop, steps, one_torch_thread):
    render_sequence(tmp_path / "s.h5", seed=5, height=64, width=80, seconds=0.8)
    data = ClipDataset([tmp_path / "s.h5"])
    torch.manual_seed(0)
    net = build_network(family, arch)
    grids, truth = data.sample(np.random.default_rng(0), batch=2, clip=8, crop=crop, lookahead=net.lookahead)
    optimiser = torch.optim.Adam(net.parameters(), 3e-3)
    with torch.no_grad():
        before = clip_loss(net, grids, truth, tbptt=4, burn_in=2, bf16=bf16)
    for _ in range(steps):
        clip_loss(net, grids, truth, tbptt=4, optimiser=optimiser, burn_in=2, bf16=bf16)
    with torch.no_grad():
        after = clip_loss(net, grids, truth, tbptt=4, burn_in=2, bf16=bf16)
    assert after < 0.9 * before


def test_a_recording_listed_twice_is_drawn_twice_as_often_and_held_once(tmp_path, short_clip):
    (tmp_path / "again.h5").symlink_to(short_clip)
    other = tmp_path / "other.h5"
    render_sequence(other, seed=7, height=48, width=64, seconds=0.6)
    data = ClipDataset([short_clip, tmp_path / "again.h5", other])
    assert len(data.grids) == 3  # sample() draws an entry: the twice-listed file 2 times in 3
    assert data.grids[0] is data.grids[1] and data.truth[0] is data.truth[1]
    assert not np.array_equal(data.truth[0][:1], data.truth[2][:1])


def test_the_protocol_term_maps_each_crop_as_the_evaluation_maps_a_sequence():
    rng = torch.Generator().manual_seed(0)
    ranges = torch.tensor([1.0, 30.0, 0.01]).view(3, 1, 1, 1)
    crops = torch.rand(3, 1, 20, 20, dtype=torch.float64, generator=rng) ** 4 * ranges
    mapped = protocol_normalise(crops)
    for crop, m in zip(crops, mapped):
        assert np.allclose(m.numpy(), percentile_normalise(crop.numpy()), atol=1e-6)
    # blind to scale and offset, up to the 1e-5 that the metric too adds to a range (0.01 in the third crop)
    assert torch.allclose(protocol_normalise(crops * 7 + 2), mapped, atol=2e-3)
    crops.requires_grad_(True)
    protocol_normalise(crops).sum().backward()
    assert crops.grad.abs().sum() > 0


def test_the_ssim_term_is_the_evaluations_ssim():
    """Training works on the metric itself: 1 - the term, on mapped crops, is what
    model.metrics.ssim gives the same images (up to the window's border and its sample variance)."""
    rng = torch.Generator().manual_seed(0)
    for noise in (0.3, 3.0, 12.0):
        a = torch.rand(1, 1, 64, 64, dtype=torch.float64, generator=rng) ** 4 * 10
        b = F.avg_pool2d(a + noise * torch.rand(a.shape, dtype=torch.float64, generator=rng), 3, 1, 1)
        term = 1 - ssim_loss(protocol_normalise(a), protocol_normalise(b)).item()
        metric = ssim(percentile_normalise(a[0, 0].numpy()), percentile_normalise(b[0, 0].numpy()))
        assert abs(term - metric) < 0.01 and metric < 0.9, (term, metric)
    assert ssim_loss(protocol_normalise(a), protocol_normalise(a * 3)).item() < 1e-6  # blind to scale, as the metric


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_train_cli_writes_a_loadable_model_and_resumes(short_clip, tmp_path, device):
    (tmp_path / "tiny.yaml").write_text("model:\n  type: eventhdr\n  arch: " + json.dumps(TINY) + "\n")
    args = ["train.py", short_clip.parent, "--config", tmp_path / "tiny.yaml", "--out", tmp_path / "run",  # a folder
            "--batch", "1", "--clip", "4", "--crop", "32", "--burn-in", "1", "--device", device, *ONE_THREAD]
    r = run_cli(*args, "--iters", "2", "--snapshots")
    assert r.returncode == 0, r.stderr
    assert f"weights: {tmp_path / 'run' / 'model.pth'} (iteration 2)" in r.stdout
    snapshot = tmp_path / "run" / "model_000002.pth"
    assert snapshot.read_bytes() == (tmp_path / "run" / "model.pth").read_bytes()
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert [e["iter"] for e in log] == [1, 2]
    schedule = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 1e-3,
                                                   total_steps=2, pct_start=0.05)
    steps = [schedule.get_last_lr()[0]]
    schedule.optimizer.step()
    schedule.step()
    assert [e["lr"] for e in log] == pytest.approx(steps + schedule.get_last_lr())  # each step's own rate
    model = load_network(str(tmp_path / "run" / "model.pth"), "eventhdr", None, 48, 64, "cpu")  # trained anywhere
    assert model.net.arch == make_arch(TINY)
    assert all(p.device.type == "cpu" for p in model.net.parameters())
    r = run_cli(*args, "--iters", "3")  # picks up at iteration 2
    assert r.returncode == 0, r.stderr
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert [e["iter"] for e in log] == [1, 2, 3]


def test_a_network_of_three_bins_trains_and_evaluates(short_clip, tmp_path):
    """The voxel grids follow the network's input channels (2 x bins), not the official 5 bins."""
    (tmp_path / "bins3.yaml").write_text("model:\n  type: eventhdr\n  arch: " + json.dumps({**TINY, "num_in_ch": 6})
                                         + "\nbins: 3\n")
    r = run_cli("train.py", short_clip, "--config", tmp_path / "bins3.yaml", "--out", tmp_path / "run",
                "--iters", "1", "--batch", "1", "--clip", "4", "--crop", "32", "--burn-in", "1", *ONE_THREAD)
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate.py", short_clip, "--model", tmp_path / "run" / "model.pth", *ONE_THREAD)
    assert r.returncode == 0 and "| model.pth |" in r.stdout, r.stderr


def test_the_seed_fixes_the_initial_weights(short_clip, tmp_path):
    """--seed is documented as the initial weights' and the clips': it used to be applied after
    the network was built, so two seeds gave the same start."""
    (tmp_path / "tiny.yaml").write_text("model:\n  type: eventhdr\n  arch: " + json.dumps(TINY) + "\n")
    runs = {run: start_cli("train.py", short_clip, "--config", tmp_path / "tiny.yaml", "--out", tmp_path / run,
                           "--iters", "1", "--batch", "1", "--clip", "4", "--crop", "32", "--burn-in", "1", "--seed",
                           seed, "--lr", "1e-9", *ONE_THREAD)  # a step that moves nothing visible: the start's weights
            for run, seed in (("a", "1"), ("b", "1"), ("c", "2"))}  # all at once, each into its own folder
    weights = {}
    for run, p in runs.items():
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 0, err
        weights[run] = load_network(str(tmp_path / run / "model.pth"), "eventhdr", None, 48, 64).net.conv_first.weight
    assert torch.equal(weights["a"], weights["b"]) and not torch.allclose(weights["a"], weights["c"])


@pytest.mark.parametrize("flags,message", [
    (["--lr", "0"], "--lr must be positive"), (["--burn-in", "4"], "less than --clip (4)"),
    (["--clip", "17"], "16 frames, too few for a clip of 17 windows"),
    (["--crop", "64"], "frames of 48x64, too small for --crop 64"),
    (["--init", "weights/livehdr.pth", "--config", "eventhdr"], "fine-tuning keeps the checkpoint's"),
    (["--config", "highpass"], "which has nothing to train"),
    (["--seed", "-1"], "--seed -1: give a whole number"),
])
def test_train_cli_bad_settings_give_one_line(short_clip, tmp_path, flags, message):
    r = run_cli("train.py", short_clip, "--out", tmp_path / "run", "--clip", "4", "--iters", "1", *flags)
    last = r.stderr.strip().splitlines()[-1]  # after the loading bar, where the data were read
    assert r.returncode == 2 and last.startswith("error:") and message in last, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run" / "model.pth").exists()


def test_train_out_in_the_way_is_one_line_before_the_data_load(short_clip, tmp_path):
    for out, blocker in ((short_clip, short_clip), (short_clip / "run", short_clip)):  # a file, and under one
        r = run_cli("train.py", short_clip, "--out", out, "--clip", "4", "--iters", "1")
        assert r.returncode == 2 and r.stderr == f"error: --out {out}: {blocker} is a file, not a folder\n", r.stderr


TINY_RUN = ["--batch", "1", "--clip", "4", "--crop", "32", "--burn-in", "1", "--device", "cpu", *ONE_THREAD]


def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("model:\n  type: eventhdr\n  arch: " + json.dumps(TINY) + "\n")
    return path


def test_a_resume_that_cannot_continue_the_run_is_one_line(short_clip, tmp_path, one_torch_thread):
    """The run's network, --init and --lr are its own: a resume given others would load
    mismatched tensors (a traceback) or silently train on with the first ones."""
    tiny = tiny_config(tmp_path)
    run = ["train.py", short_clip, "--out", tmp_path / "run", *TINY_RUN, "--iters", "2"]
    # the run to resume, trained in this process (a process of its own costs 4 s of imports here)
    assert train_main([*map(str, run[1:]), "--config", str(tiny), "--iters", "1"]) == 0
    cases = [
        ([], f"was started with --config {tiny}, whose network differs"),
        (["--config", tiny, "--lr", "0.01"], "was started with --lr 0.001;"),
        (["--init", "weights/livehdr.pth"], "was started with no --init;"),
    ]
    refused = [start_cli(*run, *flags) for flags, _ in cases]  # all at once: a refused resume writes nothing
    for (flags, message), p in zip(cases, refused):
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 2 and err.startswith(f"error: {tmp_path / 'run'} {message}"), (flags, err)
        assert err.count("\n") == 1
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    r = run_cli(*run, "--config", tiny)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {last}: cannot be resumed"), r.stderr
    assert r.stderr.count("\n") == 1


def test_ctrl_c_saves_the_run_and_a_resume_goes_on_from_there(short_clip, tmp_path):
    log = tmp_path / "run" / "train.log"
    run = [sys.executable, "train.py", short_clip, "--out", tmp_path / "run", "--config", tiny_config(tmp_path),
           *TINY_RUN]
    p = start_and_signal([*run, "--iters", "1000"], log, signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and err.endswith("interrupted\n") and "Traceback" not in err, err
    done = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iter"]
    assert 2 <= done < 100  # before the first periodic save
    assert load_network(str(tmp_path / "run" / "model.pth"), "eventhdr", None, 48, 64).net.arch == make_arch(TINY)
    r = run_cli(*run[1:], "--iters", str(done + 1))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["iter"] for line in log.read_text().splitlines()] == list(range(1, done + 2))


def test_a_killed_run_starts_again_with_a_log_of_its_own_iterations(short_clip, tmp_path):
    log = tmp_path / "run" / "train.log"
    run = [sys.executable, "train.py", short_clip, "--out", tmp_path / "run", "--config", tiny_config(tmp_path),
           *TINY_RUN]
    p = start_and_signal([*run, "--iters", "1000"], log, signal.SIGKILL)
    p.communicate(timeout=120)
    assert len(log.read_text().splitlines()) >= 2 and not (tmp_path / "run" / "last.pt").exists()
    r = run_cli(*run[1:], "--iters", "1")  # nothing was saved: the run starts afresh
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["iter"] for line in log.read_text().splitlines()] == [1]


def start_and_signal(command, log, sig):
    """Start a training run and send it SIG once it has logged two iterations."""
    p = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE,
                         text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 180  # generous: on a loaded machine the imports alone take long
    while not (log.exists() and len(log.read_text().splitlines()) >= 2) and p.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    if p.poll() is not None or len(log.read_text().splitlines()) < 2:
        p.kill()
        pytest.fail(f"no two iterations logged while it ran: {p.communicate()[1]}")
    p.send_signal(sig)
    return p


LIVE_ONLY = ("zmq", "av", "dv_processing", "cv2", "aiohttp", "rosbags")  # absent from a GPU machine's own Python


def run_without_live_packages(*args):
    """Run a script as run_cli does, with the live fronts' packages made unimportable."""
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({LIVE_ONLY!r})); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return run_cli("-c", code, *args)


def test_training_and_evaluation_need_no_live_packages(short_clip, tmp_path):
    (tmp_path / "tiny.yaml").write_text("model:\n  type: eventhdr\n  arch: " + json.dumps(TINY) + "\n")
    r = run_without_live_packages("run_replay.py", "--help")
    assert r.returncode != 0 and "import of zmq halted" in r.stderr  # the blocking works
    r = run_without_live_packages("train.py", short_clip.parent, "--config", tmp_path / "tiny.yaml", "--out",
                                  tmp_path / "run", "--batch", "1", "--clip", "4", "--crop", "32", "--burn-in", "1",
                                  "--iters", "1", "--device", "cpu", *ONE_THREAD)
    assert r.returncode == 0, r.stderr
    r = run_without_live_packages("evaluate.py", short_clip.parent, "--model", tmp_path / "run" / "model.pth",
                                  "--device", "cpu", *ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert "| model.pth |" in r.stdout
