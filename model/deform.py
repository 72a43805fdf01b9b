"""The one entry point of the network for modulated deformable convolution (DCNv2).

Offset layout is torchvision's (and the official kernel's): for group g and tap k,
channel g*2*kh*kw + 2k is dy and +1 is dx; mask channel g*kh*kw + k.
"""
import torch
from torchvision.ops import deform_conv2d as _tv_deform_conv2d


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, mask: torch.Tensor, padding: int = 1) -> torch.Tensor:
    return _tv_deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)
