"""LiveHDR, our default network: causal, stateful, positive radiance, bf16 agreeing with float32."""
import numpy as np
import pytest
import torch

from model.networks.checkpoint import load_checkpoint, save_checkpoint
from model.networks.livehdr import LiveHDR, make_live_arch
from model.networks.stream import LiveHDRStream, load_network
from streaming.config import load_config
from streaming.datatypes import EventPacket, VoxelWindow
from streaming.errors import InputError, WindowRefused

SHIPPED = load_config().model["weights"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors on a shared machine: one thread
# bf16 and float32 on the real street recording: the mean |log radiance| difference of a frame
# (measured up to 0.19 over the first 20 windows: where a still camera gives few events, the
# memory's rounding decides the shade), and the log SSIM of the whole sequence (measured 0.0008 apart)
BF16_LOG_TOLERANCE = 0.25
BF16_LOG_SSIM_TOLERANCE = 0.01


def windows(n, height=30, width=41, seed=0, rate=0.3):
    rng = np.random.default_rng(seed)
    return [VoxelWindow(j, j * 25000, (j + 1) * 25000, rng.poisson(rate, (10, height, width)).astype(np.float32),
                        EventPacket.empty()) for j in range(n)]


def shipped(height=30, width=41, bf16=False):
    return load_network(SHIPPED, "livehdr", None, height, width, "cpu", bf16=bf16)


def test_an_output_never_changes_when_a_later_window_changes():
    a, b = windows(6, seed=1), windows(6, seed=1)
    b[4] = windows(1, seed=2)[0]
    model = shipped()
    first = [model.push(w) for w in a]
    model.reset()
    second = [model.push(w) for w in b]
    assert model.lookahead == 0
    for j in range(4):
        assert np.array_equal(first[j], second[j])
    assert not np.array_equal(first[4], second[4])


def test_the_state_carries_across_windows_and_reset_clears_it():
    ws = windows(5)
    model = shipped()
    once = [model.push(w) for w in ws]
    again = model.push(ws[0])
    assert not np.allclose(again, once[0])  # the same window, another history
    model.reset()
    assert np.array_equal(model.push(ws[0]), once[0])


@pytest.mark.parametrize("rate", [0.0, 0.3, 50.0])
def test_outputs_are_finite_positive_radiance_whatever_the_events(rate):
    model = shipped()
    for w in windows(4, rate=rate):
        out = model.push(w)
        assert out.shape == (30, 41) and out.dtype == np.float32
        assert np.isfinite(out).all() and (out > 0).all()


def test_a_hot_pixel_cannot_run_the_state_away():
    model = shipped()
    w = windows(1, rate=0.0)[0]
    w.grid[:5, 3, 4] = 1e5  # a hundred thousand ON events a window, for 200 windows
    for _ in range(200):
        out = model.push(w)
    assert np.isfinite(out).all() and (out > 0).all()


def test_bf16_and_float32_agree_on_a_real_recording():
    from tests.conftest import STREET_AEDAT4
    if not STREET_AEDAT4.exists():
        pytest.skip(f"{STREET_AEDAT4} is missing")
    from model.evaluation.evaluate import evaluate_file, frame_windows
    ws, _, (h, w) = frame_windows(STREET_AEDAT4)
    f32, b16 = shipped(h, w), shipped(h, w, bf16=True)
    diffs = [np.abs(np.log(f32.push(x)) - np.log(b16.push(x))).mean() for x in ws[:20]]
    assert max(diffs) < BF16_LOG_TOLERANCE, diffs
    scores = evaluate_file(STREET_AEDAT4, {p: {"type": "checkpoint", "weights": str(SHIPPED), "precision": p}
                                           for p in ("bf16", "fp32")})
    assert abs(scores["bf16"]["log_ssim"] - scores["fp32"]["log_ssim"]) < BF16_LOG_SSIM_TOLERANCE, scores


def test_a_grid_that_is_not_the_models_is_refused_before_it_touches_the_state():
    model = shipped()
    good = windows(1)[0]
    reference = model.push(good)
    model.reset()
    with pytest.raises(InputError, match="voxel grid of shape"):
        model.push(VoxelWindow(0, 0, 1, np.zeros((6, 30, 41), np.float32), EventPacket.empty()))
    bad = windows(1)[0]
    bad.grid[0, 0, 0] = np.nan
    with pytest.raises(WindowRefused, match="NaN"):
        model.push(bad)
    assert np.array_equal(model.push(good), reference)


def test_our_checkpoint_round_trips_with_its_architecture(tmp_path):
    torch.manual_seed(0)
    net = LiveHDR(**make_live_arch({"feat": 16, "blocks": 1, "groups": 1}))
    save_checkpoint(tmp_path / "n.pth", net)
    family, arch, sd = load_checkpoint(tmp_path / "n.pth")
    assert family == "livehdr" and arch == net.arch
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())
    assert isinstance(load_network(str(tmp_path / "n.pth"), "livehdr", None, 20, 20), LiveHDRStream)
    with pytest.raises(InputError, match="holds a livehdr network"):
        load_network(str(tmp_path / "n.pth"), "eventhdr", None, 20, 20)


def test_a_checkpoint_of_nan_weights_is_refused_at_load(tmp_path):
    net = LiveHDR()
    with torch.no_grad():
        net.encode2.weight.fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pth", net)
    with pytest.raises(InputError, match=r"1 tensors hold NaN or inf \(model.encode2.weight\)"):
        load_checkpoint(tmp_path / "nan.pth")


@pytest.mark.parametrize("bad, message", [({"feat": 30, "groups": 4}, "multiple of groups"),
                                          ({"depth": 3}, "unknown settings depth"),
                                          ({"feat": 0}, "positive integer")])
def test_a_bad_arch_is_one_clear_error(bad, message):
    with pytest.raises(InputError, match=message):
        make_live_arch(bad)
