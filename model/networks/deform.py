"""The one entry point of the network for modulated deformable convolution (DCNv2).

Offset layout is torchvision's (and the official kernel's): for group g and tap k,
channel g*2*kh*kw + 2k is dy and +1 is dx; mask channel g*kh*kw + k. Stride 1, dilation 1.

`sampled_deform_conv2d` is the differentiable form used for training: all taps of all
groups are gathered by one bilinear `grid_sample` (zero outside the image, as the official
kernel), then one matrix product with the weights. On a CPU its forward and backward are
~2.5x faster than torchvision's deform_conv2d; it equals torchvision's output and gradients
(1e-5 relative) away from the sub-gradient conventions at exact pixel borders.

`deform_conv2d`, what the network calls, runs the compiled kernel (native/, forward only,
~5-10x faster than torchvision's on a CPU) where no gradient is needed and the kernel is
built for the input's device and dtype, and `sampled_deform_conv2d` otherwise. A bf16 network on
a CPU (LiveHDR's fast path) runs the CPU kernel in float32: it is built for float32 only, and at
1/4 resolution the two conversions cost little beside grid-sampling in bf16.
"""
import logging

import torch
import torch.nn.functional as F

import native

if not native.available:
    logging.getLogger(__name__).warning(
        "native deformable convolution unavailable, using the slower grid-sample one: %s",
        native.load_error)


def sampled_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None, mask: torch.Tensor, padding: int = 1) -> torch.Tensor:
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    k = kh * kw
    g = offset.shape[1] // (2 * k)
    off = offset.view(n, g, k, 2, h, w)
    ky, kx = torch.meshgrid(torch.arange(kh, dtype=x.dtype, device=x.device),
                            torch.arange(kw, dtype=x.dtype, device=x.device), indexing="ij")
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, 1, h, 1) + (ky.reshape(1, 1, k, 1, 1) - padding)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, 1, w) + (kx.reshape(1, 1, k, 1, 1) - padding)
    # grid_sample wants (x, y) normalised so that -1 and 1 are the centres of the border pixels
    grid = torch.stack(((cols + off[:, :, :, 1]) * (2 / max(w - 1, 1)) - 1,
                        (rows + off[:, :, :, 0]) * (2 / max(h - 1, 1)) - 1), dim=-1)
    sampled = F.grid_sample(x.reshape(n * g, c // g, h, w), grid.view(n * g, k * h, w, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=True)
    sampled = sampled.view(n, g, c // g, k, h, w) * mask.view(n, g, 1, k, h, w)
    out = torch.matmul(weight.reshape(cout, c * k), sampled.reshape(n, c * k, h * w)).view(n, cout, h, w)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, mask: torch.Tensor, padding: int = 1) -> torch.Tensor:
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, offset, weight, bias, mask))
    # the kernel takes one dtype and device (under autocast, offsets and masks come out in half
    # precision beside a float32 input: the grid-sample path takes such a mix)
    alike = all(t is None or (t.dtype == x.dtype and t.device == x.device) for t in (offset, weight, bias, mask))
    if not needs_grad and alike and native.supports(x):
        return native.deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)
    if not needs_grad and x.dtype == torch.bfloat16 and x.device.type == "cpu" and native.available:
        f_x, f_offset, f_weight, f_bias, f_mask = (None if t is None else t.float() for t in (x, offset, weight, bias, mask))
        return native.deform_conv2d(f_x, f_offset, f_weight, f_bias, padding=padding, mask=f_mask).to(x.dtype)
    return sampled_deform_conv2d(x, offset, weight, bias, mask, padding)
