"""Named configurations (configs/*.yaml) and the command-line flags that override them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from streaming.datatypes import InputError
from streaming.protocol import DEFAULT_ADDRESS
from streaming.ring import OVERLOAD_POLICIES
from streaming.windows import WindowPolicy

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


@dataclass
class RunConfig:
    model: dict = field(default_factory=lambda: {"type": "highpass"})
    window: WindowPolicy = field(default_factory=WindowPolicy)
    bins: int = 5
    overload: str = "merge"
    publish: str = DEFAULT_ADDRESS
    source: str = ""  # filled in by the pipeline, for the recorder's attributes


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
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    unknown = set(raw) - {"model", "window", "bins", "overload", "publish"}
    if unknown:
        raise InputError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    cfg = RunConfig()
    if "model" in raw:
        cfg.model = dict(raw["model"])
        if cfg.model.get("weights"):  # weights paths are relative to the repository
            w = Path(cfg.model["weights"])
            cfg.model["weights"] = str(w if w.is_absolute() else CONFIG_DIR.parent / w)
    try:
        cfg.window = WindowPolicy(**raw.get("window", {}))
    except TypeError as e:
        raise InputError(f"{path}: bad window settings ({e})") from None
    try:
        cfg.bins = int(raw.get("bins", cfg.bins))
    except (TypeError, ValueError):
        raise InputError(f"{path}: bins must be an integer, got {raw.get('bins')!r}") from None
    cfg.overload = raw.get("overload", cfg.overload)
    cfg.publish = raw.get("publish", cfg.publish)
    validate(cfg)
    return cfg


def model_from_flag(value: str) -> dict:
    """--model: 'highpass', or a checkpoint path (official EventHDR or ours)."""
    if value in ("highpass", "hf"):
        return {"type": "highpass"}
    if not Path(value).is_file():
        raise InputError(f"--model {value}: no such checkpoint file (or use --model highpass)")
    return {"type": "eventhdr", "weights": value}


def validate(cfg: RunConfig) -> None:
    if cfg.bins < 2:
        raise InputError(f"bins must be at least 2, got {cfg.bins}")
    if cfg.overload not in OVERLOAD_POLICIES:
        raise InputError(f"overload policy {cfg.overload!r}: use one of {', '.join(OVERLOAD_POLICIES)}")
    if cfg.model.get("type") not in ("highpass", "eventhdr"):
        raise InputError(f"model type {cfg.model.get('type')!r}: use highpass or eventhdr")
