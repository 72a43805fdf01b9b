"""Checkpoints: the official EventHDR file as it is on users' disks, and ours (either network).

Official: torch.save({"state_dict": {"model.…": tensor}, "config": parse_config.ConfigParser, "arch",
"epoch", "optimizer", "monitor_best"}), maybe saved from DataParallel (a `module.` in the keys), maybe
on a GPU. Its config is a pickled object, so plain `weights_only=True` refuses the file; unpickling
it fully would run whatever code the file names. We load it with torch's weights-only unpickler and
a short allow-list: the config class becomes a plain local stand-in that only receives its
attributes, nothing outside the list is ever resolved or called.

Ours: {"state_dict": same keys, "config": a JSON string {"arch": ..., **extra}}; weights_only as is.
Of our LiveHDR network (model.networks.livehdr), the keys are `model.` and the network's own names.

All kinds: the network and its architecture are read from the tensors' names and shapes, never
from the config.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import nn

from model.networks.registry import build_network, checked_arch
from streaming.errors import InputError


class OfficialConfig:
    """Stand-in for parse_config.ConfigParser: unpickling only fills its __dict__ (`_config`, paths)."""


_numpy_scalar = np.float64(0).__reduce__()[0]  # numpy's scalar reconstructor, wherever it lives

_SAFE_GLOBALS = [
    (OfficialConfig, "parse_config.ConfigParser"),
    # PurePosixPath: a PosixPath cannot even be created on Windows, and nothing here touches the disk.
    (PurePosixPath, "pathlib.PosixPath"),
    (PurePosixPath, "pathlib.PurePosixPath"),
    # The official trainer's metric tracker (pandas) makes monitor_best a numpy float64: its pickle
    # is scalar(dtype, raw bytes), under numpy 1's module name or numpy 2's.
    (_numpy_scalar, "numpy.core.multiarray.scalar"),
    (_numpy_scalar, "numpy._core.multiarray.scalar"),
    np.dtype,
    # what np.dtype("f8") returns, which the unpickler then BUILDs; a float32 or int64 scalar
    # elsewhere in a trainer's checkpoint is as harmless
    *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)),
]


def _readable(name: str) -> str:
    """os.system pickles as posix.system (nt.system on Windows); name it as users know it."""
    module, _, attr = name.rpartition(".")
    return f"os.{attr}" if module in ("posix", "nt") else name


def load_error(e: Exception) -> str:
    """One line from torch.load's error. Weights-only refusals bury the cause (the line naming the
    GLOBAL or the operand) under advice to turn the check off, which must not be passed on, and
    end it with advice to allow-list the global."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
    cause = next((line for line in lines if "GLOBAL" in line or line.startswith(("Unsupported operand", "Can only build"))),
                 lines[0])
    cause = cause.split(" Please use")[0].split(" In PyTorch 2.6")[0]
    return f"{type(e).__name__}: {cause}" if cause else f"{type(e).__name__}, a damaged file"


def _unpickle(path: Path) -> object:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch.save: a zip archive, or (before 1.6) a pickle
        raise InputError(f"checkpoint {path}: not a PyTorch checkpoint (torch.save writes a zip archive or a pickle)")
    with torch.serialization.safe_globals(_SAFE_GLOBALS):
        try:
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        # Not torch.save's zip format, or damaged anywhere (the archive, the pickle inside): the
        # guarded torch.load below fails too, and says why.
        except Exception:  # noqa: BLE001
            refused = []
        if refused:
            names = ", ".join(sorted(_readable(g) for g in refused))
            raise InputError(f"checkpoint {path} asks to load {names}; refusing to execute code from a checkpoint")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  whatever the cause, the file cannot be used: say why
            raise InputError(f"checkpoint {path}: cannot be read as a safe PyTorch checkpoint "
                             f"({load_error(e)})") from None


def _strip_module(key: str) -> str:
    """DataParallel adds a `module.` level (before or after `model.`); no EventHDR name has one."""
    return ".".join(part for part in key.split(".") if part != "module")


def family_of(sd: dict) -> str:
    """Which of our networks the tensors (keys `model.*`) are for."""
    return "livehdr" if "model.encode1.weight" in sd else "eventhdr"


def arch_from_state_dict(sd: dict) -> dict:
    """The hyper-parameters, from the shapes and names of the tensors (keys `model.*`)."""
    def shape(name: str) -> torch.Size:
        key = f"model.{name}"
        if sd[key].dim() != 4 or 0 in sd[key].shape:  # the sizes are read from a convolution's weight
            raise InputError(f"tensor {key} has shape {tuple(sd[key].shape)}, not a convolution's")
        return sd[key].shape

    def count(prefix: str) -> int:
        return len({k.split(".")[2] for k in sd if k.startswith(f"model.{prefix}.")})

    if family_of(sd) == "livehdr":
        feat, cin = shape("encode1.weight")[:2]
        return {"bins": (cin - 1) // 2, "feat": feat, "groups": shape("align.conv_offset.weight")[0] // 27,
                "blocks": count("decode")}
    nf, nin = shape("conv_first.weight")[:2]
    return {"num_in_ch": nin, "num_feat": nf,
            "num_frame": shape("fusion.feat_fusion.weight")[1] // nf,
            "deformable_groups": shape("pcd_align.dcn_pack.l1.conv_offset.weight")[0] // 27,
            "num_extract_block": count("feature_extraction"),
            "num_reconstruct_block": count("reconstruction"),
            "num_out_ch": shape("conv_last.weight")[0]}


def _check_fits(sd: dict, family: str, arch: dict, path: Path) -> None:
    with torch.device("meta"):  # the names and shapes only: nothing allocated
        expected = {k: v.shape for k, v in _model_keys(build_network(family, arch).state_dict()).items()}
    got = {k: v.shape for k, v in sd.items()}
    if got == expected:
        return
    problems = {"missing": sorted(expected.keys() - got.keys()),
                "unexpected": sorted(got.keys() - expected.keys()),
                "wrong shape": sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])}
    detail = "; ".join(f"{what} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                       for what, keys in problems.items() if keys)
    name = "EventHDR" if family == "eventhdr" else "LiveHDR"
    raise InputError(f"checkpoint {path}: tensors do not fit the {name} network {arch}: {detail}")


def _model_keys(sd: dict) -> dict:
    """A network's state_dict with every key under `model.`, as checkpoints hold them."""
    return {k if k.startswith("model.") else f"model.{k}": v for k, v in sd.items()}


def load_checkpoint(path: str | os.PathLike) -> tuple[str, dict, dict]:
    """(family, arch, the state_dict of build_network(family, arch)) of an official checkpoint or one of ours."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path}: no such file")
    ckpt = _unpickle(path)
    sd = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           and v.is_floating_point() for k, v in sd.items()):
        raise InputError(f"checkpoint {path}: no state_dict of named floating-point tensors; not an EventHDR "
                         "checkpoint")
    sd = {_strip_module(k): v for k, v in sd.items()}
    family = family_of(sd)
    try:
        arch = checked_arch(family, arch_from_state_dict(sd))
    except KeyError as e:
        raise InputError(f"checkpoint {path}: no tensor {e.args[0]}; not an EventHDR checkpoint") from None
    except InputError as e:
        raise InputError(f"checkpoint {path}: {e}") from None
    _check_fits(sd, family, arch, path)
    broken = sorted(k for k, v in sd.items() if not torch.isfinite(v).all())
    if broken:  # a diverged training's weights: every frame would be NaN
        raise InputError(f"checkpoint {path}: {len(broken)} tensors hold NaN or inf ({', '.join(broken[:3])}"
                         f"{', ...' if len(broken) > 3 else ''}); the training that saved it diverged")
    if family == "livehdr":  # the module's own names
        sd = {k.removeprefix("model."): v for k, v in sd.items()}
    return family, arch, sd


def save_checkpoint(path: str | os.PathLike, net: nn.Module, extra: dict | None = None) -> None:
    """Writes {"state_dict", "config": JSON {"arch", **extra}}, loadable with weights_only=True.

    net: a network of model.networks.registry; extra: JSON-serialisable (epoch, data, losses, ...)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in _model_keys(net.state_dict()).items()},
                "config": json.dumps({"arch": net.arch, "network": net.family, **(extra or {})})}, tmp)
    os.replace(tmp, path)  # a crash while saving never leaves a truncated checkpoint behind
