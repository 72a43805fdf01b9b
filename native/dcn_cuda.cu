// The CUDA kernel of eventhdr_native::deform_conv2d (schema and host side in dcn_cpu.cpp,
// algorithm and sampling arithmetic in dcn.h).
#include "dcn.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

namespace eventhdr_native {
namespace {

// Columns sampled per GEMM (elements): bounds the buffer (128 MiB in float32) however large
// the image, while keeping each GEMM large enough to fill the GPU.
constexpr int64_t kColumnBudget = int64_t(1) << 25;
constexpr int kThreads = 128;  // consecutive output pixels of one (offset group, tap)

// One thread per (output pixel p0 + q, offset group g, tap k): it computes the tap's bilinear
// coefficients once and samples the group's Cg channels into column rows k * C + g * Cg + c
// of col (K * C rows, ld columns, one per pixel). Neighbouring threads are neighbouring pixels,
// so the offset and mask reads and the column writes are coalesced; a thread's Cg channels
// of a corner are contiguous in xp, so its later channels come from the cache.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    dcn_columns_kernel(const DcnGeometry geo, const scalar_t* __restrict__ xp,
                       const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                       scalar_t* __restrict__ col, int64_t ld, int p0, int np) {
  using acc_t = at::opmath_type<scalar_t>;
  const int q = blockIdx.x * kThreads + threadIdx.x;
  if (q >= np) return;
  const int K = static_cast<int>(geo.K), Cg = static_cast<int>(geo.Cg);
  const int g = blockIdx.y / K, k = blockIdx.y - g * K;
  const int p = p0 + q;
  const int OW = static_cast<int>(geo.OW);
  const int oy = p / OW, ox = p - oy * OW;
  const int kw = static_cast<int>(geo.kw);
  const int i = k / kw, j = k - i * kw;
  const int64_t plane = geo.OH * geo.OW;
  const scalar_t* off = offset + offset_channel(g, k, K) * plane + p;
  const acc_t m = mask ? static_cast<acc_t>(mask[mask_channel(g, k, K) * plane + p]) : acc_t(1);
  const BilinearTap<acc_t> t = bilinear_tap<acc_t>(
      tap_origin(oy, geo.stride_h, geo.pad_h, i, geo.dil_h),
      tap_origin(ox, geo.stride_w, geo.pad_w, j, geo.dil_w), static_cast<acc_t>(off[0]),
      static_cast<acc_t>(off[plane]), m, geo.H, geo.W);
  const int64_t dx = Cg, dy = (geo.W + 2) * Cg;
  const scalar_t* px = xp + g * (geo.H + 2) * dy + static_cast<int64_t>(t.base) * dx;
  scalar_t* out = col + (static_cast<int64_t>(k) * geo.C + static_cast<int64_t>(g) * Cg) * ld + q;
  for (int c = 0; c < Cg; ++c) {
    out[c * ld] = static_cast<scalar_t>(bilinear_gather(px + c, dx, dy, t));
  }
}

at::Tensor deform_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& offset, const c10::optional<at::Tensor>& mask,
                              const c10::optional<at::Tensor>& bias, int64_t stride_h,
                              int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                              int64_t dil_w) {
  const DcnGeometry geo =
      dcn_geometry(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w);
  TORCH_CHECK(geo.G * geo.K <= 65535, "deform_conv2d (CUDA): at most 65535 offset groups x taps, got ",
              geo.G * geo.K);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor xp = dcn_padded_group_image(input, geo.G);
  const at::Tensor wmat = dcn_weight_matrix(weight);
  const at::Tensor off = offset.contiguous();
  const at::Tensor msk = mask ? mask->contiguous() : at::Tensor();
  const at::Tensor bias_col = bias ? bias->view({geo.Cout, 1}) : at::Tensor();
  at::Tensor out = at::empty({geo.N, geo.Cout, geo.OH, geo.OW}, input.options());

  const int64_t plane = geo.OH * geo.OW, KC = geo.K * geo.C;
  // the kernel indexes output pixels with int (p0 + q)
  TORCH_CHECK(plane < (int64_t(1) << 31), "deform_conv2d (CUDA): output of ", geo.OH, "x", geo.OW, " out of range");
  const int64_t chunk = std::min(plane, std::max<int64_t>(1, kColumnBudget / KC));
  at::Tensor col = at::empty({KC, chunk}, input.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_cuda", [&] {
    for (int64_t n = 0; n < geo.N; ++n) {
      const scalar_t* xp_n = xp.const_data_ptr<scalar_t>() + n * xp.stride(0);
      const scalar_t* off_n = off.const_data_ptr<scalar_t>() + n * off.stride(0);
      const scalar_t* msk_n = msk.defined() ? msk.const_data_ptr<scalar_t>() + n * msk.stride(0) : nullptr;
      for (int64_t p0 = 0; p0 < plane; p0 += chunk) {
        const int np = static_cast<int>(std::min(chunk, plane - p0));
        const dim3 blocks((np + kThreads - 1) / kThreads, static_cast<unsigned>(geo.G * geo.K));
        dcn_columns_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            geo, xp_n, off_n, msk_n, col.mutable_data_ptr<scalar_t>(), chunk, static_cast<int>(p0), np);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        const at::Tensor cols = col.narrow(1, 0, np);
        at::Tensor out_tile = out.select(0, n).view({geo.Cout, plane}).narrow(1, p0, np);
        if (bias) {
          at::addmm_out(out_tile, bias_col, wmat, cols);
        } else {
          at::mm_out(out_tile, wmat, cols);
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(eventhdr_native, CUDA, m) {
  m.impl("deform_conv2d", &deform_conv2d_cuda);
}

}  // namespace eventhdr_native
