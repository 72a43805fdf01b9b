"""EventHDR as a streaming Reconstructor: one window in, the previous window's frame out.

Output j needs windows j-1, j, j+1 (the official evaluation), so it leaves when window j+1 arrives
(lookahead 1; window 0 is never a centre). Each window's feature pyramid is computed once, on
arrival, and kept for its three roles (next, centre, previous): the official sliding window
computes it three times. The ConvLSTM state carries across outputs until reset().
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from model.checkpoint import load_checkpoint
from model.eventhdr import EventHDR, EventHDRWrapper, make_arch
from streaming.datatypes import InputError, VoxelWindow


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
        grid = window.grid
        if grid.shape != self.shape:
            raise InputError(f"voxel grid of shape {grid.shape}, but the model takes {self.shape} "
                             f"(channels = 2 x bins, then the sensor's height and width)")
        if not np.isfinite(grid).all():  # checked before anything is kept: the state stays clean
            raise ValueError(f"window {window.seq}: voxel grid holds NaN or inf")
        out = self.push_tensor(torch.from_numpy(grid))
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


def load_eventhdr(weights: str | None, arch: dict | None, height: int, width: int,
                  device: str = "cpu") -> EventHDRStream:
    """The streaming model for a sensor of height x width.

    weights: a checkpoint (official or ours), whose tensors define the architecture (an `arch`
    given beside it must agree); None: random initialisation of `arch` (None: the official size),
    for benchmarks."""
    if weights is None:
        wrapper = EventHDRWrapper(**make_arch(arch))
    else:
        ckpt_arch, state_dict = load_checkpoint(weights)
        if arch is not None and make_arch(arch) != ckpt_arch:
            raise InputError(f"checkpoint {weights} holds the network {ckpt_arch}, but the config's "
                             f"model arch says {make_arch(arch)}; remove `arch` or fix it")
        wrapper = EventHDRWrapper(**ckpt_arch)
        wrapper.load_state_dict(state_dict)
    return EventHDRStream(wrapper.model.to(device), height, width)
