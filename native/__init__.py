"""Compiled kernels: modulated deformable convolution (DCNv2) for inference, CPU and CUDA.

`available` says whether the extension (native/_C, built by setup.py) loaded; `load_error` says
why not. EVENTHDR_NO_NATIVE=1 skips loading it, so the fallback (model.networks.deform's grid-sample convolution)
can be exercised.
"""
import importlib.util
import os

import torch
from torch.nn.modules.utils import _pair

available = False
load_error = None
if os.environ.get("EVENTHDR_NO_NATIVE") == "1":
    load_error = "disabled by EVENTHDR_NO_NATIVE=1"
else:
    try:
        from . import _C  # noqa: F401  (loading it registers torch.ops.eventhdr_native)
        available = True
    except ImportError as e:
        # a library that is not there reads as "a circular import": say what it is
        built = importlib.util.find_spec(f"{__name__}._C") is not None
        load_error = (f"{e} (rebuild it" if built else "native/_C is not built (build it") + \
            " with `make native` or `python setup.py build_ext --inplace`)"
# setup.py compiles the CUDA kernel only where asked to or where a GPU is present.
has_cuda_kernel = available and torch._C._dispatch_has_kernel_for_dispatch_key(
    "eventhdr_native::deform_conv2d", "CUDA")


def supports(input: torch.Tensor) -> bool:
    """Whether native.deform_conv2d has a kernel for this input's device and dtype."""
    if not available:
        return False
    if input.device.type == "cpu":
        return input.dtype in (torch.float32, torch.float64)
    return (input.device.type == "cuda" and has_cuda_kernel
            and input.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16))


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride=1, padding=0, dilation=1,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision.ops.deform_conv2d, same arguments and numbers, forward only.

    input (N, C, H, W); offset (N, 2*G*kh*kw, OH, OW), per group and tap (dy, dx);
    weight (Cout, C, kh, kw) (no grouped weights); mask (N, G*kh*kw, OH, OW) or None for ones.
    There is no backward: where gradients are needed, model.networks.deform runs its grid-sample convolution.
    """
    if not available:
        raise RuntimeError(f"native extension not loaded: {load_error}")
    if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (input, offset, weight, bias, mask)):
        raise RuntimeError("native.deform_conv2d has no backward; train through model.deform.deform_conv2d")
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dil_h, dil_w = _pair(dilation)
    return torch.ops.eventhdr_native.deform_conv2d(
        input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
