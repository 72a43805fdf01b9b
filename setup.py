"""Builds native/_C: the deformable-convolution kernels (see native/dcn.h).

    python setup.py build_ext --inplace        # what `make` runs

The CPU kernel is always built. The CUDA kernel is built when this machine can run it
(torch sees a GPU, and nvcc is found) or when EVENTHDR_BUILD_CUDA=1 asks for it: compiling
CUDA takes minutes on a small machine, so a CPU-only box does not pay for it on every `make`.
TORCH_CUDA_ARCH_LIST picks the GPU architectures as usual; without a GPU to ask, it defaults
to every architecture CUDA 13 compiles for (set it, e.g. "8.6;9.0", to save time).
"""
import os
import shutil
import sys

from setuptools import setup


def _cuda_home() -> str | None:
    """CUDA_HOME, else the toolkit around the nvcc on PATH, else /usr/local/cuda.

    torch guesses the toolkit as nvcc's grandparent directory, which is wrong when nvcc is a
    wrapper script (/usr/local/bin/nvcc gives /usr/local), hence the check for include/cuda.h.
    """
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.isfile(os.path.join(home, "include", "cuda.h")) and \
                os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return home
    return None


CUDA_HOME = _cuda_home()
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME  # read by torch.utils.cpp_extension at import

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


ALL_ARCHS = "7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"  # CUDA 13's, from Turing on


def _build_cuda() -> bool:
    if os.environ.get("EVENTHDR_BUILD_CUDA") == "1":
        if CUDA_HOME is None or torch.version.cuda is None:
            sys.exit("EVENTHDR_BUILD_CUDA=1 needs a CUDA toolkit (nvcc on PATH, or CUDA_HOME) "
                     "and a CUDA build of torch")
        if not torch.cuda.is_available():  # torch would ask the GPU, and fail with an IndexError
            os.environ.setdefault("TORCH_CUDA_ARCH_LIST", ALL_ARCHS)
        return True
    return torch.cuda.is_available() and torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    sources = ["native/dcn_cpu.cpp"]
    # -fno-trapping-math (as torch itself is built) lets the branch-free sampling loops, whose
    # float comparisons could otherwise trap, vectorise; it changes no result.
    cxx = ["-O3", "-fno-trapping-math"]
    if not _build_cuda():
        return CppExtension("native._C", sources, extra_compile_args={"cxx": cxx})
    # Link against the toolkit's runtime, which lives in lib/ or lib64/ depending on the install.
    lib_dirs = [d for d in (os.path.join(CUDA_HOME, "lib64"), os.path.join(CUDA_HOME, "lib"))
                if os.path.isfile(os.path.join(d, "libcudart.so"))]
    return CUDAExtension("native._C", sources + ["native/dcn_cuda.cu"],
                         library_dirs=lib_dirs,
                         extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]})


setup(
    name="eventhdr-native",
    version="0.1",
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=False)},
)
