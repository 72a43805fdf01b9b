"""PIE-Net and PIE-Net-Lite (`event-pienet`, MIT, weights inside the wheel) as Reconstructors:
the yardstick our network is measured against, run in our pipeline as its own demo runs it.

Its input is a signed voxel grid of 5 bins (ON minus OFF per bin, events weighted bilinearly
in time as our binner weighs them); its output is an image in [0, 1] made for display, not
radiance: `output` says so to the fronts' start lines.
"""
from __future__ import annotations

import numpy as np
import torch

from streaming.datatypes import VoxelWindow
from streaming.errors import InputError, WindowRefused

BINS = 5  # what its weights were trained on
VARIANTS = {"pienet": "pie-net", "pienet-lite": "pie-net-lite"}


class PIENetStream:
    lookahead = 0
    uses_grid = True
    bins = BINS
    output = "a display image in [0, 1], not radiance"

    def __init__(self, name: str, device: str = "cpu"):
        try:
            from pie_net import load_model
        except ImportError:
            raise InputError(f"--model {name} needs the event-pienet package (pinned in requirements.txt: "
                             "`make setup` installs it)") from None
        self.device = device
        self.net = load_model(pretrained=True, device=device, variant=VARIANTS[name]).eval()

    def reset(self) -> None:
        self.net.reset_states()

    @torch.inference_mode()
    def push(self, window: VoxelWindow) -> np.ndarray:
        grid = window.grid
        if grid.shape[0] != 2 * BINS:
            raise InputError(f"PIE-Net takes {BINS} bins, but the windows have {grid.shape[0] // 2}: give --bins {BINS}")
        if not np.isfinite(grid).all():  # the model keeps its state inside: refuse before it sees them
            raise WindowRefused(f"window {window.seq}: voxel grid holds NaN or inf")
        voxel = torch.from_numpy(grid[:BINS] - grid[BINS:]).to(self.device)[None]
        image = self.net(voxel)["image"]
        return image[0, 0].clamp(min=0).to("cpu", torch.float32).numpy()
