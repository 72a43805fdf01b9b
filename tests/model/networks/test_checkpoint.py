"""Checkpoints: the official format loads unchanged and gives the same numbers; a checkpoint that
would run code is refused before it can; ours round-trip; bad files are one clear line."""
import builtins
import io
import json
import os
import sys
import zipfile
from collections import OrderedDict
from pathlib import PosixPath

import numpy as np
import pytest
import torch

from model.networks.checkpoint import arch_from_state_dict, load_checkpoint, save_checkpoint
from model.networks.eventhdr import OFFICIAL_ARCH, EventHDRWrapper, make_arch
from model.networks.stream import EventHDRStream, load_network
from streaming.errors import InputError
from tests.conftest import REPO, SMALL, free_port, push_all, random_grids, run_cli, write_moving_edge

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors on a shared machine: one thread

# The official training code's config class, as far as pickling sees it.
PARSE_CONFIG = '''
class ConfigParser:
    def __init__(self, config, resume, save_dir):
        self._config = config
        self.resume = resume
        self._save_dir = save_dir
        self._log_dir = save_dir / "log"
'''


def small_wrapper(seed=0) -> EventHDRWrapper:
    torch.manual_seed(seed)
    return EventHDRWrapper(**make_arch(SMALL)).eval()


def save_official(path, state_dict: dict, tmp_path) -> None:
    """torch.save in the official layout, with a real parse_config.ConfigParser that is importable
    only while saving (a user's machine has no parse_config module)."""
    module_dir = tmp_path / "official_code"
    module_dir.mkdir(exist_ok=True)
    (module_dir / "parse_config.py").write_text(PARSE_CONFIG)
    sys.path.insert(0, str(module_dir))
    try:
        import parse_config
        kwargs = OrderedDict(make_arch(SMALL))
        config = parse_config.ConfigParser(
            OrderedDict(name="EventHDR", n_gpu=1,
                        arch=OrderedDict(type="EventHDR", args=OrderedDict(kwargs=kwargs))),
            PosixPath("/data/saved/models/EventHDR/model_best.pth"), PosixPath("/data/saved/models/EventHDR"))
        torch.save({"arch": "EventHDR", "epoch": 40, "state_dict": state_dict, "config": config,
                    "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
                    "monitor_best": np.float64(0.0123)}, path)
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("parse_config", None)


@pytest.mark.parametrize("prefix", ["model.", "model.module.", "module.model."])
def test_official_checkpoint_loads_and_gives_the_same_outputs(tmp_path, prefix):
    net = small_wrapper()
    path = tmp_path / "EventHDR_model.pth"
    save_official(path, {prefix + k[len("model."):]: v for k, v in net.state_dict().items()}, tmp_path)

    family, arch, sd = load_checkpoint(path)
    assert family == "eventhdr" and arch == make_arch(SMALL)
    assert sd.keys() == net.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())

    grids = random_grids(5, 24, 40)
    loaded = push_all(load_network(str(path), "eventhdr", None, 24, 40), grids)
    original = push_all(EventHDRStream(net.model, 24, 40), grids)
    for got, want in zip(loaded[2:], original[2:]):
        np.testing.assert_array_equal(got, want)


class RunsCode:
    """A pickle that calls `func(arg)` when loaded, as a malicious checkpoint would."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("func, name", [(os.system, "system"), (builtins.exec, "exec")])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, func, name, zip_format):
    marker = tmp_path / "marker"
    arg = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').close()"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": small_wrapper().state_dict(), "config": RunsCode(func, arg)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(InputError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert str(path) in message and name in message and "\n" not in message
    if zip_format:
        expected = "os.system" if func is os.system else "builtins.exec"
        assert f"asks to load {expected}; refusing to execute code from a checkpoint" in message
    assert not marker.exists()


def test_our_checkpoint_round_trips_and_loads_weights_only(tmp_path):
    net = small_wrapper()
    path = tmp_path / "ours.pth"
    save_checkpoint(path, net, {"epoch": 3, "data": "sim-v1"})
    raw = torch.load(path, weights_only=True)  # no allow-list needed
    assert json.loads(raw["config"]) == {"arch": make_arch(SMALL), "network": "eventhdr", "epoch": 3, "data": "sim-v1"}
    _, arch, sd = load_checkpoint(path)
    assert arch == make_arch(SMALL)
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())
    save_checkpoint(tmp_path / "bare.pth", net.model)  # the bare network saves the same keys
    assert load_checkpoint(tmp_path / "bare.pth")[2].keys() == sd.keys()
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_of_nan_weights_is_refused_at_load(tmp_path, one_torch_thread):
    """A diverged training's weights gave all-NaN frames, silently."""
    net = small_wrapper()
    with torch.no_grad():
        net.model.conv_last.weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pth", net)
    write_moving_edge(tmp_path / "r.h5", seconds=0.1)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", tmp_path / "nan.pth", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "1 tensors hold NaN or inf (model.conv_last.weight)" in r.stderr and "nan.pth" in r.stderr


def test_numpy_scalars_of_a_trainers_bookkeeping_load(tmp_path):
    path = tmp_path / "trainer.pth"
    torch.save({"state_dict": small_wrapper().state_dict(), "monitor_best": np.float32(0.5), "epoch": np.int64(40)},
               path)
    assert load_checkpoint(path)[1] == make_arch(SMALL)


def test_arch_is_read_from_the_tensors():
    assert arch_from_state_dict(EventHDRWrapper().state_dict()) == OFFICIAL_ARCH
    assert arch_from_state_dict(small_wrapper().state_dict()) == make_arch(SMALL)


def test_weights_whose_arch_disagrees_with_the_config_are_refused(tmp_path):
    path = tmp_path / "ours.pth"
    save_checkpoint(path, small_wrapper())
    with pytest.raises(InputError, match="remove `arch` or fix it"):
        load_network(str(path), "eventhdr", {**SMALL, "num_feat": 16}, 24, 40)


def _without(key):
    sd = small_wrapper().state_dict()
    del sd[key]
    return {"state_dict": sd}


def _reshaped(key, shape=(3,), dtype=torch.float32):
    sd = small_wrapper().state_dict()
    sd[key] = torch.zeros(shape, dtype=dtype)
    return {"state_dict": sd}


def _damaged_pickle() -> bytes:
    """torch.save's zip archive, intact, around a cut pickle: the damage only the unpickler sees."""
    buf = io.BytesIO()
    torch.save({"state_dict": dict(small_wrapper().state_dict())}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item.filename, data[:20] if item.filename.endswith("data.pkl") else data)
    return out.getvalue()


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"not a checkpoint at all", "not a PyTorch checkpoint"),
    (b"PK\x03\x04 a damaged zip archive", "cannot be read as a safe PyTorch checkpoint"),
    ((REPO / "weights" / "livehdr.pth").read_bytes()[:50000], "cannot be read as a safe PyTorch checkpoint"),
    (b"\x80\x02K\x07.", "cannot be read as a safe PyTorch checkpoint"),  # a pickle of 7, not torch.save's
    (_damaged_pickle(), "cannot be read as a safe PyTorch checkpoint (EOFError, a damaged file)"),
    ([1, 2, 3], "no state_dict of named floating-point"),
    ({"state_dict": {"model.conv_first.weight": "text"}}, "no state_dict of named floating-point"),
    ({"state_dict": {}}, "no tensor model.conv_first.weight"),
    (_without("model.fusion.spatial_attn3.bias"), "missing 1 (model.fusion.spatial_attn3.bias)"),
    ({"state_dict": {**small_wrapper().state_dict(), "model.extra.weight": torch.zeros(1)}}, "unexpected 1"),
    (_reshaped("model.pcd_align.feat_conv.l1.bias"), "wrong shape 1 (model.pcd_align.feat_conv.l1.bias)"),
    (_reshaped("model.conv_first.weight"), "tensor model.conv_first.weight has shape (3,), not a convolution's"),
    (_reshaped("model.conv_last.weight", (0, 32, 3, 3)), "has shape (0, 32, 3, 3), not a convolution's"),
    (_reshaped("model.conv_first.weight", (32, 10, 3, 3), torch.int64), "no state_dict of named floating-point"),
    ({"state_dict": {**small_wrapper().state_dict(), 5: torch.zeros(1)}}, "no state_dict of named floating-point"),
], ids=["missing-file", "garbage", "damaged-zip", "truncated", "plain-pickle", "damaged-pickle", "not-a-dict",
        "not-tensors", "empty", "missing-key", "extra-key", "shape", "not-a-conv", "empty-conv", "integers",
        "unnamed"])
def test_bad_checkpoint_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(InputError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)
    assert "weights_only" not in str(e.value)  # torch's advice to turn the safety check off is not passed on
