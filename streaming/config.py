"""Named configurations (configs/*.yaml) and the command-line flags that override them."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from streaming.errors import InputError
from streaming.outputs.protocol import DEFAULT_ADDRESS
from streaming.ring import OVERLOAD_POLICIES
from streaming.windows import WindowPolicy

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "livehdr.yaml"  # our trained network (weights/README.md)
MAX_BINS = 64  # EventHDR and LiveHDR take 5; 100,000 bins of voxel grids asked for 32 GiB


@dataclass
class RunConfig:
    model: dict = field(default_factory=lambda: {"type": "highpass"})
    window: WindowPolicy = field(default_factory=WindowPolicy)
    bins: int = 5
    overload: str = "merge"
    publish: str = DEFAULT_ADDRESS
    device: str = "auto"  # the network's; the filter always runs on the CPU


def _find(name: str) -> Path:
    """A config by path or by name in configs/."""
    for p in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if p.is_file():
            return p
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise InputError(f"no config {name!r}; give a YAML path or one of: {names}")


def load_config(name: str | None = None) -> RunConfig:
    path = _find(name) if name else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    unknown = set(raw) - {"model", "window", "bins", "overload", "publish", "device"}
    if unknown:
        raise InputError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    for key, kind in (("model", dict), ("window", dict), ("publish", str), ("overload", str)):
        if key in raw and not isinstance(raw[key], kind):
            raise InputError(f"{path}: {key} must be {'a mapping' if kind is dict else 'a string'}, got {raw[key]!r}")
    cfg = RunConfig()
    if "model" in raw:
        cfg.model = dict(raw["model"])
        if cfg.model.get("weights"):  # weights paths are relative to the repository
            w = Path(cfg.model["weights"])
            cfg.model["weights"] = str(w if w.is_absolute() else CONFIG_DIR.parent / w)
    elif path != DEFAULT_CONFIG:
        cfg.model = load_config().model  # a config that names no model gets the default's, as no --config does
    try:
        cfg.window = WindowPolicy(**raw.get("window", {}))
    except TypeError as e:
        raise InputError(f"{path}: bad window settings ({e})") from None
    cfg.bins = raw.get("bins", cfg.bins)
    if not isinstance(cfg.bins, int) or isinstance(cfg.bins, bool):  # 5.7 is no count of bins
        raise InputError(f"{path}: bins must be an integer, got {cfg.bins!r}")
    cfg.overload = raw.get("overload", cfg.overload)
    cfg.publish = raw.get("publish", cfg.publish)
    cfg.device = str(raw.get("device", cfg.device))
    validate(cfg)
    return cfg


NAMED_MODELS = ("highpass", "pienet", "pienet-lite")  # models that --model takes by name, needing no file
# a config's model types; "checkpoint": whichever of our networks its weights file holds
MODEL_TYPES = (*NAMED_MODELS, "livehdr", "eventhdr", "checkpoint")


def model_from_flag(value: str) -> dict:
    """--model: a named model (the filter, PIE-Net), or a checkpoint path (ours or the official EventHDR)."""
    if value in NAMED_MODELS:
        return {"type": value}
    if not Path(value).is_file():
        raise InputError(f"--model {value}: no such checkpoint file (or name a model: {', '.join(NAMED_MODELS)})")
    return {"type": "checkpoint", "weights": value}


def validate(cfg: RunConfig) -> None:
    if not 2 <= cfg.bins <= MAX_BINS:
        raise InputError(f"bins must be 2 to {MAX_BINS}, got {cfg.bins}")
    if cfg.overload not in OVERLOAD_POLICIES:
        raise InputError(f"overload policy {cfg.overload!r}: use one of {', '.join(OVERLOAD_POLICIES)}")
    if cfg.model.get("type") not in MODEL_TYPES:
        raise InputError(f"model type {cfg.model.get('type')!r}: use one of {', '.join(MODEL_TYPES)}")
    check_device(cfg.device)


def check_device(name: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise InputError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
