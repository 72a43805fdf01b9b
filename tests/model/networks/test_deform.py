"""The differentiable deformable convolution (training path) against torchvision's."""
import pytest
import torch
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from model.networks.deform import sampled_deform_conv2d


def _inputs(n, c, h, w, groups, offset_scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    offset = torch.randn(n, 18 * groups, h, w, generator=g, dtype=torch.float64) * offset_scale
    mask = torch.rand(n, 9 * groups, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(c + 1, c, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(c + 1, generator=g, dtype=torch.float64)
    return x, offset, weight, bias, mask


@pytest.mark.parametrize("n,c,h,w,groups,offset_scale", [
    (1, 4, 9, 11, 1, 0.0), (2, 8, 16, 12, 2, 1.5), (1, 8, 7, 20, 4, 6.0),  # offsets far outside the image
])
def test_forward_equals_torchvision(n, c, h, w, groups, offset_scale):
    x, offset, weight, bias, mask = _inputs(n, c, h, w, groups, offset_scale)
    want = tv_deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    got = sampled_deform_conv2d(x, offset, weight, bias, mask)
    assert (got - want).abs().max() <= 1e-9 * want.abs().max()
    zero = sampled_deform_conv2d(x, offset, weight, None, torch.zeros_like(mask))
    assert zero.abs().max() == 0  # a zero mask switches every tap off


def test_gradients_equal_torchvision_inside_the_image():
    x, _, weight, bias, mask = _inputs(2, 8, 12, 14, 2, 0.0)
    # fractional offsets that keep every sample strictly inside: away from the borders and
    # integer positions, where the two implementations pick different sub-gradients
    offset = torch.rand(2, 36, 12, 14, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.8 + 0.1
    grads = []
    for fn in (lambda *a: tv_deform_conv2d(*a[:4], padding=1, mask=a[4]), sampled_deform_conv2d):
        leaves = [t.clone().requires_grad_() for t in (x, offset, weight, bias, mask)]
        fn(*leaves)[:, :, 2:-2, 2:-2].square().sum().backward()
        grads.append([t.grad for t in leaves])
    for want, got in zip(*grads):
        assert (got - want).abs().max() <= 1e-9 * want.abs().max()
