"""LiveHDR, our default network: recurrent, deformably aligned, causal, shaped for a laptop CPU.

Each window of events updates two states and gives its own frame (lookahead 0):
  - a full-resolution log-radiance estimate, the network's previous output, to which the
    window's events are added (each ON event raises its pixel by a learned contrast, each OFF
    lowers it) and which the network then corrects by a residual. It leaks towards the frame's
    mean by a learned fraction a window, as the high-pass filter does: fed back, an estimate
    without a leak drifts away on a real camera's noise over more windows than training saw. Events measure changes of
    log radiance at their pixel whatever the motion, so this state needs no alignment, and it
    keeps every pixel's detail, which a quarter-resolution state cannot;
  - a hidden feature state at a quarter of the resolution, the network's memory of the scene:
    aligned to the new window by a deformable convolution steered by both (motion moves what it
    remembers), then updated as a ConvGRU.
All the work runs at 1/4 resolution: the window's voxel grid and the log state enter by
pixel-unshuffle, the correction leaves by pixel-shuffle, from the updated memory and the window's
own features (which carry each pixel's detail). No convolution runs at full resolution: on a
CPU one costs as much as the whole recurrent core, and bf16 convolutions of 32 channels and more
at 1/4 resolution run at the CPU's matrix units' speed.
Output: the log radiance less its mean over the frame (the events fix log radiance only up to an
offset; this keeps the state's level from drifting), so exp() of it is linear radiance, positive,
with a geometric mean of 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.networks.layers import DCNPack, ResidualBlock, conv1x1, conv3x3, lrelu
from streaming.errors import InputError

SCALE = 4  # the resolution of the recurrent work: 1/SCALE of the sensor's
LOG_LIMIT = 20.0  # log radiance clipped to +-20 (17 decades each way): a hot pixel cannot run it away
ARCH = {"bins": 5, "feat": 32, "groups": 2, "blocks": 2}

# (log-radiance estimate (N, 1, H, W) float32, hidden features (N, feat, H/4, W/4))
LiveState = tuple[torch.Tensor, torch.Tensor]


def make_live_arch(overrides: dict | None = None) -> dict:
    """ARCH with a config's `arch:` settings applied, checked."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(ARCH)
    if unknown:
        raise InputError(f"model arch: unknown settings {', '.join(sorted(unknown))}; known: {', '.join(ARCH)}")
    arch = {**ARCH, **overrides}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in arch.values()):
        raise InputError(f"model arch: every setting must be a positive integer, got {arch}")
    if arch["feat"] % arch["groups"]:
        raise InputError(f"model arch: feat ({arch['feat']}) must be a multiple of groups ({arch['groups']})")
    return arch


class LiveHDR(nn.Module):
    log_output = True
    family = "livehdr"
    lookahead = 0

    def __init__(self, bins=5, feat=32, groups=2, blocks=2):
        super().__init__()
        self.arch = {"bins": bins, "feat": feat, "groups": groups, "blocks": blocks}
        self.bins = bins
        # learned event contrast (log units per event) and its starting value, a typical sensor's
        self.log_contrast = nn.Parameter(torch.tensor(-1.4))
        self.leak_logit = nn.Parameter(torch.tensor(-4.0))  # sigmoid: 1.8% a window to start
        # pixel-unshuffle and a 1x1 convolution in one: a 4x4 convolution of stride 4
        self.encode1 = nn.Conv2d(2 * bins + 1, feat, SCALE, SCALE)
        self.encode2 = conv3x3(feat, feat)
        self.offset_feat = conv3x3(2 * feat, feat)
        self.align = DCNPack(feat, groups)
        self.gates = conv3x3(2 * feat, 2 * feat)  # update and reset
        self.candidate = conv3x3(2 * feat, feat)
        self.decode = nn.Sequential(*(ResidualBlock(feat) for _ in range(blocks)))
        self.up = conv1x1(2 * feat, SCALE * SCALE)  # then pixel-shuffle: one channel at full resolution
        nn.init.zeros_(self.up.weight)  # starts as the plain integrator; training learns the correction
        nn.init.zeros_(self.up.bias)

    def initial_state(self, like: torch.Tensor) -> LiveState:
        """Zeros for a grid like `like` (N, 2*bins, H, W), H and W multiples of 4."""
        n, _, h, w = like.shape
        return (torch.zeros(n, 1, h, w, device=like.device),
                torch.zeros(n, self.arch["feat"], h // SCALE, w // SCALE, device=like.device, dtype=like.dtype))

    def forward(self, grid: torch.Tensor, state: LiveState | None = None) -> tuple[torch.Tensor, LiveState]:
        """grid (N, 2*bins, H, W), H and W multiples of 4 -> (log radiance (N, 1, H, W) float32, state).

        The log state stays float32 whatever the network's dtype: it sums thousands of windows."""
        log_prev, hidden = self.initial_state(grid) if state is None else state
        on, off = grid[:, :self.bins].sum(1, keepdim=True), grid[:, self.bins:].sum(1, keepdim=True)
        keep = 1 - torch.sigmoid(self.leak_logit).float()  # the mean is 0: the leak pulls towards it
        log_in = keep * log_prev + self.log_contrast.exp().float() * (on - off).float()
        log_in_net = log_in.to(grid.dtype)

        feat = lrelu(self.encode2(lrelu(self.encode1(torch.cat([grid, log_in_net], 1)))))
        aligned = self.align(hidden, lrelu(self.offset_feat(torch.cat([feat, hidden], 1))))
        both = torch.cat([feat, aligned], 1)
        update, reset = torch.sigmoid(self.gates(both)).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([feat, reset * aligned], 1)))
        hidden = aligned + update * (candidate - aligned)

        y = F.pixel_shuffle(self.up(torch.cat([self.decode(hidden), feat], 1)), SCALE)
        log_out = (log_in + y.float()).clamp(-LOG_LIMIT, LOG_LIMIT)
        log_out = log_out - log_out.mean((2, 3), keepdim=True)
        return log_out, (log_out, hidden)

    def clip(self, grids: torch.Tensor, state: LiveState | None) -> tuple[list[torch.Tensor], LiveState]:
        """grids (N, T, C, H, W) -> T log outputs (N, 1, H, W) and the state (for training)."""
        outputs = []
        for k in range(grids.shape[1]):
            out, state = self(grids[:, k], state)
            outputs.append(out)
        return outputs, state
