"""Our networks as streaming Reconstructors: one window in, a frame out.

LiveHDR (model.networks.livehdr) is causal: window j gives frame j (lookahead 0). On a CPU with native
bf16 (AMX or AVX-512 BF16, where oneDNN runs bf16 convolutions several times faster than float32)
it runs in bf16, and its log-radiance state stays float32; elsewhere in float32. Its tensors stay
in torch's default layout: channels-last measured 13% slower here (16.1 against 14.3 ms a frame
at 346x260), its conversions costing more than the convolutions gain.

EventHDR: output j needs windows j-1, j, j+1 (the official evaluation), so it leaves when window j+1 arrives
(lookahead 1; window 0 is never a centre). Each window's feature pyramid is computed once, on
arrival, and kept for its three roles (next, centre, previous): the official sliding window
computes it three times. The ConvLSTM state carries across outputs until reset().
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from model.networks.checkpoint import load_checkpoint
from model.networks.eventhdr import EventHDR
from model.networks.livehdr import SCALE, LiveHDR
from model.networks.registry import build_network, checked_arch
from streaming.datatypes import VoxelWindow
from streaming.errors import InputError, WindowRefused


def checked_grid(window: VoxelWindow, shape: tuple[int, int, int]) -> np.ndarray:
    """The window's grid, refused before the model keeps anything of it (the state stays clean)."""
    if window.grid.shape != shape:
        raise InputError(f"voxel grid of shape {window.grid.shape}, but the model takes {shape} "
                         f"(channels = 2 x bins, then the sensor's height and width)")
    if not np.isfinite(window.grid).all():
        raise WindowRefused(f"window {window.seq}: voxel grid holds NaN or inf")
    return window.grid


class CentredPad:
    """Zero-pads (..., H, W) to multiples of `multiple`, centred (the odd row/column goes on top/left),
    and crops outputs back. 16 as in the official evaluation; the network itself needs 4."""

    def __init__(self, height: int, width: int, multiple: int = 16):
        dh, dw = -height % multiple, -width % multiple
        self.top, self.left = (dh + 1) // 2, (dw + 1) // 2
        self.pads = (self.left, dw - self.left, self.top, dh - self.top)  # F.pad's order
        self.height, self.width = height, width

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)

    def crop(self, y: torch.Tensor) -> torch.Tensor:
        return y[..., self.top:self.top + self.height, self.left:self.left + self.width]


class EventHDRStream:
    """push(window) -> linear float32 (H, W) of the window pushed `lookahead` calls earlier
    (num_frame // 2: the centre of its num_frame windows), or None while there is none."""

    def __init__(self, net: EventHDR, height: int, width: int):
        self.net = net.eval()
        self.lookahead = net.num_frame // 2
        self.uses_grid = True
        self.shape = (net.arch["num_in_ch"], height, width)
        self.bins = net.arch["num_in_ch"] // 2  # channels: each bin's positive and negative events
        self._pad = CentredPad(height, width)
        param = next(net.parameters())
        self._device, self._dtype = param.device, param.dtype
        self.reset()

    def reset(self) -> None:
        """Starts a new sequence: no windows, zero recurrent state."""
        self._pyramids = deque(maxlen=self.net.num_frame)
        self._state = None

    def push(self, window: VoxelWindow) -> np.ndarray | None:
        out = self.push_tensor(torch.from_numpy(checked_grid(window, self.shape)))
        return None if out is None else out[0, 0].to("cpu", torch.float32).contiguous().numpy()

    @torch.inference_mode()
    def push_tensor(self, grid: torch.Tensor) -> torch.Tensor | None:
        """push() without the checks, in the network's own dtype: (C, H, W) -> (1, num_out_ch, H, W)."""
        x = self._pad.pad(grid.to(self._device, self._dtype)[None])
        self._pyramids.append(self.net.extract(x))
        if len(self._pyramids) < self.net.num_frame:
            return None
        out, self._state = self.net.predict(list(self._pyramids), self._state)
        return self._pad.crop(out)


class LiveHDRStream:
    """push(window) -> linear float32 (H, W) radiance of that window (lookahead 0), positive."""

    lookahead = 0
    uses_grid = True

    def __init__(self, net: LiveHDR, height: int, width: int):
        self.net = net.eval()
        self.bins = net.bins
        self.shape = (2 * net.bins, height, width)
        self._pad = CentredPad(height, width, SCALE)
        param = next(net.parameters())
        self._device, self._dtype = param.device, param.dtype
        self.reset()

    def reset(self) -> None:
        """Starts a new sequence: zero state (a flat log radiance, an empty memory)."""
        self._state = None

    def push(self, window: VoxelWindow) -> np.ndarray:
        log_out = self.push_tensor(torch.from_numpy(checked_grid(window, self.shape)))
        return log_out[0, 0].to("cpu", torch.float32).exp().numpy()

    @torch.inference_mode()
    def push_tensor(self, grid: torch.Tensor) -> torch.Tensor:
        """push() without the checks: (C, H, W) -> log radiance (1, 1, H, W) float32."""
        x = self._pad.pad(grid.to(self._device, self._dtype)[None])
        log_out, self._state = self.net(x, self._state)
        return self._pad.crop(log_out)


def load_network(weights: str | None, family: str | None, arch: dict | None, height: int, width: int,
                 device: str = "cpu", bf16: bool = False) -> EventHDRStream | LiveHDRStream:
    """The streaming model for a sensor of height x width.

    weights: a checkpoint (official or ours), whose tensors define the network and its
    architecture (a family and `arch` given beside it must agree; family None: the checkpoint's);
    None: random initialisation of `arch` (None: the family's default size), for benchmarks.
    bf16: run LiveHDR in bfloat16."""
    if weights is None:
        net = build_network(family, arch)
    else:
        ckpt_family, ckpt_arch, state_dict = load_checkpoint(weights)
        family = family or ckpt_family
        if ckpt_family != family:
            raise InputError(f"checkpoint {weights} holds a {ckpt_family} network, but the config's model type is "
                             f"{family}; give the matching type (or --model PATH, which reads it from the file)")
        if arch is not None and checked_arch(family, arch) != ckpt_arch:
            raise InputError(f"checkpoint {weights} holds the network {ckpt_arch}, but the config's model arch "
                             f"says {checked_arch(family, arch)}; remove `arch` or fix it")
        net = build_network(family, ckpt_arch)
        net.load_state_dict(state_dict)
    if family == "eventhdr":
        return EventHDRStream(net.model.to(device), height, width)
    net = net.to(device)
    if bf16:
        net = net.to(torch.bfloat16)
    return LiveHDRStream(net, height, width)
