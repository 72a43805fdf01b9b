"""The compiled deformable convolution (native/) against torchvision.ops.deform_conv2d, its
use by model/networks/deform.py (and the path taken without it), and the CUDA build."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch
from torchvision.ops import deform_conv2d as tv_deform_conv2d

import native
from tests.conftest import REPO

needs_native = pytest.mark.skipif(not native.available, reason=f"native not built: {native.load_error}")


def test_extension_is_built():
    assert native.available, native.load_error


def _case(n, c, h, w, cout, groups, k=(3, 3), stride=1, pad=1, dil=1, reach=4.0, mask="rand",
          bias=True, dtype=torch.float32, device="cpu", seed=0):
    """Random inputs; offsets ~ N(0, reach) pixels, so many samples fall outside the image."""
    g = torch.Generator().manual_seed(seed)
    kh, kw = k
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    weight = torch.randn(cout, c, kh, kw, generator=g, dtype=dtype)
    b = torch.randn(cout, generator=g, dtype=dtype) if bias else None
    offset = torch.randn(n, 2 * groups * kh * kw, oh, ow, generator=g, dtype=dtype) * reach
    m = {"rand": lambda: torch.rand(n, groups * kh * kw, oh, ow, generator=g, dtype=dtype),
         "zero": lambda: torch.zeros(n, groups * kh * kw, oh, ow, dtype=dtype),
         "none": lambda: None}[mask]()
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return dict(input=to(x), offset=to(offset), weight=to(weight), bias=to(b), mask=to(m),
                stride=stride, padding=pad, dilation=dil)


def _assert_close(got, ref, rel):
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = ref.abs().max().item()
    diff = (got - ref).abs().max().item()
    assert diff <= rel * scale, f"max|diff| {diff:.3g} > {rel:g} * max|ref| {scale:.3g}"


CASES = {
    "network layer, 8 groups": dict(n=1, c=64, h=23, w=37, cout=64, groups=8),
    "batch 3, 2 groups": dict(n=3, c=16, h=13, w=17, cout=8, groups=2),
    "one group, no bias": dict(n=2, c=6, h=9, w=11, cout=5, groups=1, bias=False),
    "one channel per group": dict(n=1, c=8, h=10, w=12, cout=4, groups=8),
    "offsets far outside": dict(n=2, c=8, h=7, w=9, cout=3, groups=4, reach=12.0),
    "mask None": dict(n=2, c=8, h=12, w=10, cout=6, groups=2, mask="none"),
    "padding 0": dict(n=1, c=4, h=9, w=8, cout=3, groups=2, pad=0),
    "padding 2": dict(n=2, c=4, h=8, w=8, cout=3, groups=1, pad=2),
    "5x5": dict(n=1, c=8, h=11, w=13, cout=4, groups=2, k=(5, 5), pad=2),
    "1x3, stride 2, dilation 2": dict(n=2, c=6, h=12, w=15, cout=5, groups=3, k=(1, 3), stride=2,
                                      dil=2, pad=1),
    "1x1 image": dict(n=1, c=4, h=1, w=1, cout=2, groups=1, reach=0.5),
}


@needs_native
@pytest.mark.parametrize("name", CASES)
def test_matches_torchvision(name):
    case = _case(**CASES[name])
    _assert_close(native.deform_conv2d(**case), tv_deform_conv2d(**case), 1e-5)


@needs_native
def test_matches_torchvision_float64():
    case = _case(n=2, c=16, h=15, w=14, cout=8, groups=4, reach=6.0, dtype=torch.float64)
    _assert_close(native.deform_conv2d(**case), tv_deform_conv2d(**case), 1e-12)


@needs_native
def test_samples_on_the_image_border():
    """Positions exactly at -1, 0, H-1 and H (and just inside): the edges of (-1, H) x (-1, W)."""
    h, w = 6, 5
    case = _case(n=1, c=4, h=h, w=w, cout=3, groups=2, pad=1)
    _, channels, oh, ow = case["offset"].shape
    # Channel 2k is dy of tap k = 3i + j, which sits at (oy - 1 + i, ox - 1 + j) before its offset.
    k = (torch.arange(channels) // 2 % 9).view(1, -1, 1, 1)
    is_dx = (torch.arange(channels) % 2 == 1).view(1, -1, 1, 1)
    origin = torch.where(is_dx, torch.arange(ow).view(1, 1, 1, -1) - 1 + k % 3,
                         torch.arange(oh).view(1, 1, -1, 1) - 1 + k // 3)
    edges = lambda n: torch.tensor([-1.0, -0.999, -0.5, 0.0, n - 1, n - 0.5, n - 0.001, n, n + 1])  # noqa: E731
    pick = torch.randint(9, case["offset"].shape, generator=torch.Generator().manual_seed(1))
    target = torch.where(is_dx, edges(w)[pick], edges(h)[pick])
    case["offset"] = target - origin.to(torch.float32)
    _assert_close(native.deform_conv2d(**case), tv_deform_conv2d(**case), 1e-5)


@needs_native
def test_zero_mask_gives_bias():
    case = _case(n=2, c=8, h=9, w=9, cout=4, groups=2, mask="zero")
    expected = case["bias"].view(1, -1, 1, 1).expand(2, 4, 9, 9)
    assert torch.equal(native.deform_conv2d(**case), expected)


@needs_native
def test_samples_outside_are_zero_whatever_the_image_holds():
    case = _case(n=1, c=4, h=6, w=7, cout=3, groups=2)
    case["input"] = torch.full_like(case["input"], float("inf"))
    case["offset"] = torch.full_like(case["offset"], 100.0)
    expected = tv_deform_conv2d(**case)
    assert torch.equal(expected, case["bias"].view(1, -1, 1, 1).expand_as(expected))
    assert torch.equal(native.deform_conv2d(**case), expected)


@needs_native
def test_non_contiguous_inputs():
    case = _case(n=2, c=16, h=11, w=13, cout=8, groups=4)
    ref = tv_deform_conv2d(**case)
    case["input"] = case["input"].contiguous(memory_format=torch.channels_last)
    case["offset"] = case["offset"].transpose(2, 3).contiguous().transpose(2, 3)
    case["weight"] = case["weight"].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    _assert_close(native.deform_conv2d(**case), ref, 1e-5)


@needs_native
def test_independent_of_thread_count():
    case = _case(n=2, c=64, h=20, w=30, cout=64, groups=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = native.deform_conv2d(**case)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(native.deform_conv2d(**case), single)


@needs_native
@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(offset=c["offset"][:, :17]), "multiple of 2 \\* kh \\* kw"),
    (lambda c: c.update(offset=c["offset"][:, :, :-1]), "offset must be"),
    (lambda c: c.update(mask=c["mask"][:, :8]), "mask must be"),
    (lambda c: c.update(weight=c["weight"][:, :4]), "grouped weights are not supported"),
    (lambda c: c.update(input=c["input"].double()), "dtype"),
    (lambda c: c.update(input=c["input"][:, :0], weight=c["weight"][:, :0]), "no input channels"),  # was SIGFPE
    (lambda c: c.update(weight=c["weight"][:, :, :0]), "an empty kernel"),
])
def test_rejects_bad_arguments(change, message):
    case = _case(n=1, c=6, h=5, w=5, cout=2, groups=2)
    change(case)
    with pytest.raises(RuntimeError, match=message):
        native.deform_conv2d(**case)


@needs_native
def test_build_check_passes_on_this_build():
    """`make` runs native.check after building and drops a library that fails it: in a child
    process, since the failure it looks for (a C++ runtime linked into the library, seen on an
    H100 machine's g++) is a segmentation fault, not an exception."""
    r = subprocess.run([sys.executable, "-m", "native.check"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr)


@needs_native
def test_rejects_offset_groups_not_dividing_channels():
    case = _case(n=1, c=6, h=5, w=5, cout=2, groups=4)
    with pytest.raises(RuntimeError, match="do not divide"):
        native.deform_conv2d(**case)


@needs_native
def test_no_backward():
    case = _case(n=1, c=4, h=5, w=5, cout=2, groups=1)
    case["weight"].requires_grad_(True)
    with pytest.raises(RuntimeError, match="no backward"):
        native.deform_conv2d(**case)


# --- model/networks/deform.py: the network's entry point -------------------------------------------

def _network_args(seed=0):
    case = _case(n=1, c=16, h=12, w=14, cout=16, groups=8, seed=seed)
    return case["input"], case["offset"], case["weight"], case["bias"], case["mask"]


@needs_native
def test_network_entry_uses_native_for_inference(monkeypatch):
    from model.networks import deform
    calls = []
    monkeypatch.setattr(native, "deform_conv2d", lambda *a, **k: calls.append(1) or tv_deform_conv2d(*a, **k))
    with torch.inference_mode():
        deform.deform_conv2d(*_network_args())
        assert calls == [1]
        # A bfloat16 network (LiveHDR's fast path) runs the float32 kernel, its result in bfloat16
        want = deform.deform_conv2d(*_network_args())
        got = deform.deform_conv2d(*(t.bfloat16() for t in _network_args()))
        assert calls == [1, 1, 1] and got.dtype == torch.bfloat16
        assert torch.allclose(got.float(), want, atol=0.05 * want.abs().max())
        # Not a mix (autocast's half-precision offsets beside a float32 input): the grid-sample path, no error
        x, offset, weight, bias, mask = _network_args()
        deform.deform_conv2d(x, offset.bfloat16(), weight, bias, mask.bfloat16())
    assert calls == [1, 1, 1]


def test_network_entry_trains_without_native():
    """With gradients on, model.networks.deform takes its differentiable path: the weight gradient
    (which depends only on the sampled values) equals torchvision's."""
    from model.networks import deform
    x, offset, weight, bias, mask = _network_args()
    weight.requires_grad_(True)
    deform.deform_conv2d(x, offset, weight, bias, mask).square().sum().backward()
    w2 = weight.detach().clone().requires_grad_(True)
    tv_deform_conv2d(x, offset, w2, bias, padding=1, mask=mask).square().sum().backward()
    _assert_close(weight.grad, w2.grad, 1e-5)


def test_fallback_without_extension(tmp_path):
    """With the extension disabled, model.networks.deform warns once and computes torchvision's numbers."""
    script = f"""
import sys, torch
sys.path.insert(0, {str(REPO)!r})
import native
from model.networks import deform
from tests.native.test_native import _network_args
assert not native.available
with torch.inference_mode():
    torch.save([deform.deform_conv2d(*_network_args(seed=s)) for s in range(2)], {str(tmp_path / 'out.pt')!r})
"""
    env = dict(os.environ, EVENTHDR_NO_NATIVE="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("native deformable convolution unavailable") == 1, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for seed, got in enumerate(torch.load(tmp_path / "out.pt")):
        x, offset, weight, bias, mask = _network_args(seed=seed)
        _assert_close(got, tv_deform_conv2d(x, offset, weight, bias, padding=1, mask=mask), 1e-5)
        if native.available:
            _assert_close(got, native.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask), 1e-5)


# --- CUDA ------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
def test_cuda_extension_compiles(tmp_path):
    """Builds the extension with its CUDA kernel (one architecture) outside the tree, and checks
    that it loads and registers the CUDA kernel. Without debug information (-g0 after Python's
    -g; it changes no generated code): the C++ part compiles in 10 s instead of 19 s. nvcc's
    own 31 s (cudafe++ 11 s, cicc 8 s, the host compile 9 s, measured on a 2-core machine) is
    the floor of this test: setuptools compiles the two sources one after the other."""
    # setuptools takes the C++ file's flags from CXXFLAGS (recent versions) or CFLAGS, in place of Python's own
    no_debug_info = f"{sysconfig.get_config_var('CFLAGS') or ''} -g0"
    env = dict(os.environ, EVENTHDR_BUILD_CUDA="1", CFLAGS=no_debug_info, CXXFLAGS=no_debug_info,
               TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"))
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-temp", str(tmp_path / "tmp"),
         "--build-lib", str(tmp_path / "lib")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (library,) = (tmp_path / "lib" / "native").glob("_C*.so")
    check = ("import sys, torch; torch.ops.load_library(sys.argv[1]); "
             "has = torch._C._dispatch_has_kernel_for_dispatch_key; "
             "assert has('eventhdr_native::deform_conv2d', 'CUDA'), 'no CUDA kernel'")
    load = subprocess.run([sys.executable, "-c", check, str(library)], capture_output=True,
                          text=True, timeout=300)
    assert load.returncode == 0, load.stderr


@needs_native
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("name", ["network layer, 8 groups", "batch 3, 2 groups", "mask None",
                                  "1x3, stride 2, dilation 2", "offsets far outside"])
def test_cuda_matches_torchvision(name):
    assert native.has_cuda_kernel, "extension built without CUDA: rebuild it on this machine"
    case = _case(**CASES[name], device="cuda")
    got = native.deform_conv2d(**case)
    assert got.is_cuda
    _assert_close(got, tv_deform_conv2d(**case), 1e-5)
    cpu = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    _assert_close(got.cpu(), native.deform_conv2d(**cpu), 1e-5)


@needs_native
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision(dtype):
    case = _case(**CASES["network layer, 8 groups"], reach=2.0, device="cuda")
    ref = native.deform_conv2d(**case)
    half = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    _assert_close(native.deform_conv2d(**half).float(), ref, 2e-2)
