"""The registry of our networks: a family name (a config's `model: type:`) -> how to build one."""
from __future__ import annotations

from torch import nn

from model.networks.eventhdr import EventHDRWrapper, make_arch
from model.networks.livehdr import LiveHDR, make_live_arch

# family -> (the trainable module, the check that completes and validates an `arch:`)
NETWORKS = {"eventhdr": (EventHDRWrapper, make_arch), "livehdr": (LiveHDR, make_live_arch)}


def checked_arch(family: str, arch: dict | None = None) -> dict:
    """A config's `arch:` settings (None: the default size) completed and checked, for the family."""
    return NETWORKS[family][1](arch)


def build_network(family: str, arch: dict | None = None) -> nn.Module:
    """A network of the family with random weights; arch: as checked_arch takes it."""
    return NETWORKS[family][0](**checked_arch(family, arch))
