"""The EventHDR network (Zou et al., CVPR 2021), layer for layer as the released weights expect.

The forward is split in two so that a stream can compute each window's features once:
  extract(window)             conv_first, feature_extraction, pyramid  -> that window's (l1, l2, l3)
  predict(pyramids, state)    pcd_align of every frame to the centre, fusion, convlstm,
                              reconstruction, conv_last                 -> (image, new state)
`forward` is the official sliding-window form (all frames' features recomputed), the reference.
"""
from __future__ import annotations

import torch
from torch import nn

from model.networks.layers import (
    PCDAlignment,
    Pyramid,
    RecurrentConvLayer,
    ResidualBlock,
    State,
    TSAFusion,
    conv3x3,
    lrelu,
)
from streaming.errors import InputError

OFFICIAL_ARCH = {"num_in_ch": 10, "num_feat": 64, "num_frame": 3, "deformable_groups": 8,
                 "num_extract_block": 5, "num_reconstruct_block": 10, "num_out_ch": 1}


def make_arch(overrides: dict | None = None) -> dict:
    """The official architecture with a config's `arch:` settings applied, checked."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(OFFICIAL_ARCH)
    if unknown:
        raise InputError(f"model arch: unknown settings {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(OFFICIAL_ARCH)}")
    arch = {**OFFICIAL_ARCH, **overrides}
    if not all(isinstance(v, int) and v > 0 for v in arch.values()):
        raise InputError(f"model arch: every setting must be a positive integer, got {arch}")
    if arch["num_feat"] % arch["deformable_groups"]:
        raise InputError(f"model arch: num_feat ({arch['num_feat']}) must be a multiple of "
                         f"deformable_groups ({arch['deformable_groups']})")
    if arch["num_in_ch"] % 2:
        raise InputError(f"model arch: num_in_ch must be even (2 x bins: each bin's positive and negative "
                         f"events), got {arch['num_in_ch']}")
    if arch["num_frame"] % 2 == 0:
        raise InputError(f"model arch: num_frame must be odd (a centre frame), got {arch['num_frame']}")
    return arch


class EventHDR(nn.Module):
    family = "eventhdr"

    def __init__(self, num_in_ch=10, num_feat=64, num_frame=3, deformable_groups=8,
                 num_extract_block=5, num_reconstruct_block=10, num_out_ch=1):
        super().__init__()
        self.arch = {"num_in_ch": num_in_ch, "num_feat": num_feat, "num_frame": num_frame,
                     "deformable_groups": deformable_groups, "num_extract_block": num_extract_block,
                     "num_reconstruct_block": num_reconstruct_block, "num_out_ch": num_out_ch}
        self.num_frame = num_frame
        self.center = num_frame // 2
        nf = num_feat
        # Registration order = the checkpoint's state_dict order (reconstruction before convlstm).
        self.conv_first = conv3x3(num_in_ch, nf)
        self.feature_extraction = nn.Sequential(*(ResidualBlock(nf) for _ in range(num_extract_block)))
        self.conv_l2_1 = conv3x3(nf, nf, stride=2)
        self.conv_l2_2 = conv3x3(nf, nf)
        self.conv_l3_1 = conv3x3(nf, nf, stride=2)
        self.conv_l3_2 = conv3x3(nf, nf)
        self.pcd_align = PCDAlignment(nf, deformable_groups)
        self.fusion = TSAFusion(nf, num_frame)
        self.reconstruction = nn.Sequential(*(ResidualBlock(nf) for _ in range(num_reconstruct_block)))
        self.convlstm = RecurrentConvLayer(nf)
        self.conv_last = conv3x3(nf, num_out_ch)

    def extract(self, x: torch.Tensor) -> Pyramid:
        """Features of one window: (N, num_in_ch, H, W) -> (l1, l2, l3) at H, H/2, H/4."""
        l1 = self.feature_extraction(lrelu(self.conv_first(x)))
        l2 = lrelu(self.conv_l2_2(lrelu(self.conv_l2_1(l1))))
        l3 = lrelu(self.conv_l3_2(lrelu(self.conv_l3_1(l2))))
        return l1, l2, l3

    def predict(self, pyramids: list[Pyramid], state: State | None) -> tuple[torch.Tensor, State]:
        """One output from the num_frame windows' pyramids, in time order; state None = zeros."""
        ref = pyramids[self.center]
        feat = self.fusion([self.pcd_align(p, ref) for p in pyramids])
        state = self.convlstm(feat, state)
        return self.conv_last(self.reconstruction(state[0])), state

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x: (N, num_frame, num_in_ch, H, W), H and W multiples of 4 -> ((N, num_out_ch, H, W), state)."""
        n, t = x.shape[:2]
        if t != self.num_frame:
            raise ValueError(f"expected {self.num_frame} frames, got {t}")
        levels = [lvl.unflatten(0, (n, t)) for lvl in self.extract(x.flatten(0, 1))]
        return self.predict([tuple(lvl[:, i] for lvl in levels) for i in range(t)], state)


class EventHDRWrapper(nn.Module):
    """Holds the network as `.model`, as the official code does: the checkpoint's keys are `model.*`."""

    log_output = False  # it outputs linear values, which may be negative
    family = "eventhdr"

    def __init__(self, **arch):
        super().__init__()
        self.model = EventHDR(**arch)
        self.arch = self.model.arch
        self.bins = self.arch["num_in_ch"] // 2  # channels: each bin's positive and negative events
        self.lookahead = self.model.num_frame // 2

    def clip(self, grids: torch.Tensor, state: State | None) -> tuple[list[torch.Tensor], State]:
        """grids (N, T + 2 * lookahead, C, H, W) -> T outputs (N, 1, H, W) and the state, each
        window's features computed once, as the streaming wrapper does (for training)."""
        nf = self.model.num_frame
        pyramids = [lvl.unflatten(0, grids.shape[:2]) for lvl in self.model.extract(grids.flatten(0, 1))]
        outputs = []
        for k in range(grids.shape[1] - nf + 1):
            out, state = self.model.predict([tuple(lvl[:, k + i] for lvl in pyramids) for i in range(nf)], state)
            outputs.append(out)
        return outputs, state

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self.model(x, state)
