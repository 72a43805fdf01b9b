"""The building blocks of the EventHDR network: EDVR's PCD alignment and TSA fusion, E2VID's
recurrent ConvLSTM layer, and plain residual blocks.

Attribute names are the official checkpoint's state_dict names (`offset_conv1.l3`, `Gates`, ...):
renaming one breaks loading the published weights. LeakyReLU has slope 0.1 throughout.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.networks.deform import deform_conv2d

# Pyramid levels, coarse to fine: the order the alignment runs them and the order of their entries
# in the state_dict. A pyramid itself is the tuple (l1, l2, l3), full resolution first.
LEVELS = ("l3", "l2", "l1")
Pyramid = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


class ResidualBlock(nn.Module):
    """conv, ReLU, conv, plus identity; no activation after the sum."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = conv3x3(nf, nf)
        self.conv2 = conv3x3(nf, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class DCNPack(nn.Module):
    """Modulated deformable 3x3 convolution (DCNv2) of x, steered by a second feature map.

    conv_offset(offset_feat) gives, per deformable group, 2*9 offset channels (dy, dx per tap, in
    deform_conv2d's layout) followed, after all groups' offsets, by 9 mask logits per group."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        bound = 1 / math.sqrt(nf * 9)  # nn.Conv2d's default initialisation
        self.weight = nn.Parameter(torch.empty(nf, nf, 3, 3).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(nf).uniform_(-bound, bound))
        self.conv_offset = conv3x3(nf, groups * 27)
        self.n_offsets = groups * 18

    def forward(self, x: torch.Tensor, offset_feat: torch.Tensor) -> torch.Tensor:
        out = self.conv_offset(offset_feat)
        mask = torch.sigmoid(out[:, self.n_offsets:])
        return deform_conv2d(x, out[:, :self.n_offsets], self.weight, self.bias, mask, padding=1)


class PCDAlignment(nn.Module):
    """Aligns a neighbour's feature pyramid to the reference's, coarse to fine, then refines the
    full-resolution result with one more (cascading) deformable convolution."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        finer = LEVELS[1:]  # levels that also receive the coarser level's upsampled offsets and features
        self.offset_conv1 = nn.ModuleDict({lv: conv3x3(2 * nf, nf) for lv in LEVELS})
        self.offset_conv2 = nn.ModuleDict({lv: conv3x3(nf if lv == "l3" else 2 * nf, nf) for lv in LEVELS})
        self.offset_conv3 = nn.ModuleDict({lv: conv3x3(nf, nf) for lv in finer})
        self.dcn_pack = nn.ModuleDict({lv: DCNPack(nf, groups) for lv in LEVELS})
        self.feat_conv = nn.ModuleDict({lv: conv3x3(2 * nf, nf) for lv in finer})
        self.cas_offset_conv1 = conv3x3(2 * nf, nf)
        self.cas_offset_conv2 = conv3x3(nf, nf)
        self.cas_dcnpack = DCNPack(nf, groups)

    def forward(self, nbr: Pyramid, ref: Pyramid) -> torch.Tensor:
        up_offset = up_feat = None
        for lv, n, r in zip(LEVELS, reversed(nbr), reversed(ref)):
            offset = lrelu(self.offset_conv1[lv](torch.cat([n, r], 1)))
            if up_offset is None:
                offset = lrelu(self.offset_conv2[lv](offset))
            else:
                offset = lrelu(self.offset_conv2[lv](torch.cat([offset, up_offset], 1)))
                offset = lrelu(self.offset_conv3[lv](offset))
            feat = self.dcn_pack[lv](n, offset)
            if up_feat is not None:
                feat = self.feat_conv[lv](torch.cat([feat, up_feat], 1))
            if lv != "l1":
                feat = lrelu(feat)
                # offsets are in pixels of their level: twice as many at the next finer one
                up_offset, up_feat = upsample2x(offset) * 2, upsample2x(feat)
        offset = lrelu(self.cas_offset_conv1(torch.cat([feat, ref[0]], 1)))
        offset = lrelu(self.cas_offset_conv2(offset))
        return lrelu(self.cas_dcnpack(feat, offset))


def _max_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Halves the resolution; the average counts the zero padding (count_include_pad)."""
    return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)], 1)


class TSAFusion(nn.Module):
    """Temporal attention (each aligned frame weighted per pixel by its correlation with the
    centre frame), then a spatial attention pyramid that modulates the fused features."""

    def __init__(self, nf: int, num_frame: int):
        super().__init__()
        self.center = num_frame // 2
        self.temporal_attn1 = conv3x3(nf, nf)
        self.temporal_attn2 = conv3x3(nf, nf)
        self.feat_fusion = conv1x1(num_frame * nf, nf)
        self.spatial_attn1 = conv1x1(num_frame * nf, nf)
        self.spatial_attn2 = conv1x1(2 * nf, nf)
        self.spatial_attn3 = conv3x3(nf, nf)
        self.spatial_attn4 = conv1x1(nf, nf)
        self.spatial_attn5 = conv3x3(nf, nf)
        self.spatial_attn_l1 = conv1x1(nf, nf)
        self.spatial_attn_l2 = conv3x3(2 * nf, nf)
        self.spatial_attn_l3 = conv3x3(nf, nf)
        self.spatial_attn_add1 = conv1x1(nf, nf)
        self.spatial_attn_add2 = conv1x1(nf, nf)

    def forward(self, aligned: list[torch.Tensor]) -> torch.Tensor:
        emb_ref = self.temporal_attn1(aligned[self.center])
        x = torch.cat([a * torch.sigmoid((self.temporal_attn2(a) * emb_ref).sum(1, keepdim=True))
                       for a in aligned], 1)
        feat = lrelu(self.feat_fusion(x))

        attn = lrelu(self.spatial_attn1(x))
        attn = lrelu(self.spatial_attn2(_max_avg_pool(attn)))                 # H/2
        lvl = lrelu(self.spatial_attn_l1(attn))
        lvl = lrelu(self.spatial_attn_l2(_max_avg_pool(lvl)))                 # H/4
        lvl = upsample2x(lrelu(self.spatial_attn_l3(lvl)))                    # H/2
        attn = lrelu(self.spatial_attn3(attn)) + lvl
        attn = self.spatial_attn5(upsample2x(lrelu(self.spatial_attn4(attn))))  # H
        attn_add = self.spatial_attn_add2(lrelu(self.spatial_attn_add1(attn)))
        return feat * torch.sigmoid(attn) * 2 + attn_add


class ConvLayer(nn.Module):
    """conv then ReLU (its own module only because the checkpoint names the conv `conv2d`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv2d = conv3x3(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2d(x))


State = tuple[torch.Tensor, torch.Tensor]  # ConvLSTM (hidden, cell)


class ConvLSTM(nn.Module):
    """One conv over cat[input, hidden] gives the gates in the order input, forget, output, candidate."""

    def __init__(self, nf: int):
        super().__init__()
        self.Gates = conv3x3(2 * nf, 4 * nf)

    def forward(self, x: torch.Tensor, state: State | None) -> State:
        hidden, cell = state if state is not None else (torch.zeros_like(x), torch.zeros_like(x))
        i, f, o, g = self.Gates(torch.cat([x, hidden], 1)).chunk(4, 1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(cell), cell


class RecurrentConvLayer(nn.Module):
    """ConvLayer, then ConvLSTM; the new hidden state is the layer's output."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv = ConvLayer(nf, nf)
        self.recurrent_block = ConvLSTM(nf)

    def forward(self, x: torch.Tensor, state: State | None) -> State:
        return self.recurrent_block(self.conv(x), state)
