// Modulated deformable convolution (DCNv2), inference only: the sampling arithmetic shared by
// the CPU kernel (dcn_cpu.cpp) and the CUDA kernel (dcn_cuda.cu), so the sampling the CPU tests
// check is the sampling the GPU runs.
//
// Both kernels work the same way:
//   1. the input is copied once to a zero-padded image xp (N, G, H+2, W+2, Cg), channels last
//      within each offset group: every bilinear corner of a sample inside (-1, H) x (-1, W) then
//      lies in xp, corners outside the image read the zero border; one tap's coefficients serve
//      a contiguous, vectorisable run of Cg channels; and a group's image is compact, so the
//      two horizontal corners of a sample share a cache line or two;
//   2. for a chunk of output pixels (CPU: a cache-sized tile per thread; CUDA: as many as a
//      bounded buffer holds), each (pixel, tap, channel) is sampled into a column buffer,
//      col[pixel][tap * C + channel] on the CPU (one thread's pixels stay in its cache),
//      col[tap * C + channel][pixel] on the GPU (neighbouring threads write neighbouring pixels);
//   3. one GEMM per chunk: out[:, chunk] = weight (Cout, taps * C) @ col^T (GPU: @ col).
// Semantics are exactly torchvision.ops.deform_conv2d's: tap (i, j) of output pixel (oy, ox)
// in offset group g samples at
//   y = (oy * stride_h - pad_h + i * dil_h) + offset[2 * (g * K + k)],   k = i * kw + j
//   x = (ox * stride_w - pad_w + j * dil_w) + offset[2 * (g * K + k) + 1]
// scaled by mask[g * K + k]; a sample outside (-1, H) x (-1, W) is 0, bilinear corners outside
// the image count as 0.
#pragma once

#include <ATen/ATen.h>
#include <cstdint>

#if defined(__CUDACC__)
#define DCN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DCN_HOST_DEVICE inline
#endif

namespace eventhdr_native {

// Shapes and hyper-parameters of one call.
struct DcnGeometry {
  int64_t N, C, H, W;     // input
  int64_t Cout, OH, OW;   // output
  int64_t kh, kw, K;      // kernel, K = kh * kw taps
  int64_t G, Cg;          // offset groups, channels per offset group
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

// Offset channel of (group g, tap k) holding dy (dx is the next one), and its mask channel.
DCN_HOST_DEVICE int64_t offset_channel(int64_t g, int64_t k, int64_t K) { return 2 * (g * K + k); }
DCN_HOST_DEVICE int64_t mask_channel(int64_t g, int64_t k, int64_t K) { return g * K + k; }

// Integer part of a tap's position along one axis: o * stride - pad + i * dil.
DCN_HOST_DEVICE int tap_origin(int o, int stride, int pad, int i, int dil) {
  return o * stride - pad + i * dil;
}

// floor() without a libm call (the CPU build targets baseline x86-64, which has no rounding
// instruction, and a call would stop the loop from vectorising): truncate, then step down for
// negative non-integers. Exact for |v| < 2^31.
template <typename acc_t>
DCN_HOST_DEVICE int floor_to_int(acc_t v) {
  const int t = static_cast<int>(v);
  return t - (v < static_cast<acc_t>(t));
}

// One sample: the padded-pixel index of its top-left corner in its group's image, and the
// four corner weights with the mask folded in.
template <typename acc_t>
struct BilinearTap {
  int base;
  acc_t w00, w01, w10, w11;
};

// The sample at (y_origin + dy, x_origin + dx) with mask m, in an H x W image. Branch-free, so
// the CPU kernel vectorises it across pixels.
template <typename acc_t>
DCN_HOST_DEVICE BilinearTap<acc_t> bilinear_tap(int y_origin, int x_origin, acc_t dy, acc_t dx,
                                                acc_t m, int H, int W) {
  // Integer part first, then the offset: the same rounding as torchvision.
  const acc_t y = static_cast<acc_t>(y_origin) + dy;
  const acc_t x = static_cast<acc_t>(x_origin) + dx;
  // False for NaN too. Bitwise &: no branches.
  const bool inside = (y > acc_t(-1)) & (y < acc_t(H)) & (x > acc_t(-1)) & (x < acc_t(W));
  const acc_t ys = inside ? y : acc_t(0), xs = inside ? x : acc_t(0);
  const int y0 = floor_to_int(ys), x0 = floor_to_int(xs);
  const acc_t ly = ys - static_cast<acc_t>(y0), lx = xs - static_cast<acc_t>(x0);
  const acc_t hy = acc_t(1) - ly, hx = acc_t(1) - lx;
  const acc_t mi = inside ? m : acc_t(0);
  BilinearTap<acc_t> t;
  // +1: the zero border. A sample outside is 0: it points at the top-right border pixel
  // (0, W + 1), whose right and lower-right "corners" wrap around to the left border of rows 1
  // and 2, so all four corners read zeros, whatever the image holds (inf, NaN).
  t.base = inside ? (y0 + 1) * (W + 2) + (x0 + 1) : W + 1;
  t.w00 = hy * hx * mi;
  t.w01 = hy * lx * mi;
  t.w10 = ly * hx * mi;
  t.w11 = ly * lx * mi;
  return t;
}

// The sample of one channel: px points at that channel of the tap's top-left corner in its
// group's image; dx / dy are the strides of one padded pixel / one padded row (Cg, (W + 2) * Cg).
template <typename acc_t, typename scalar_t>
DCN_HOST_DEVICE acc_t bilinear_gather(const scalar_t* px, int64_t dx, int64_t dy,
                                      const BilinearTap<acc_t>& t) {
  return t.w00 * static_cast<acc_t>(px[0]) + t.w01 * static_cast<acc_t>(px[dx]) +
         t.w10 * static_cast<acc_t>(px[dy]) + t.w11 * static_cast<acc_t>(px[dy + dx]);
}

// Device-independent host side (dcn_cpu.cpp): checks the arguments and returns the geometry.
DcnGeometry dcn_geometry(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& offset, const c10::optional<at::Tensor>& mask,
                         const c10::optional<at::Tensor>& bias, int64_t stride_h,
                         int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                         int64_t dil_w);

// The zero-padded, group-wise channels-last copy of the input, (N, G, H + 2, W + 2, C / G).
at::Tensor dcn_padded_group_image(const at::Tensor& input, int64_t groups);

// The weight as the GEMM's left operand, (Cout, K * C) with columns in tap-major order.
at::Tensor dcn_weight_matrix(const at::Tensor& weight);

}  // namespace eventhdr_native
