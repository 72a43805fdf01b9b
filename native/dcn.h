// Modulated deformable convolution (DCNv2), inference only: the sampling arithmetic shared by
// the CPU kernel (dcn_cpu.cpp) and the CUDA kernel (dcn_cuda.cu), so the numbers the CPU tests
// check are the numbers the GPU computes.
//
// Both kernels work the same way:
//   1. the input is copied once to a zero-padded channels-last image xp (N, H+2, W+2, C): every
//      bilinear corner of a sample inside (-1, H) x (-1, W) then lies in xp, the corners that fall
//      outside the image read the zero border, and the channels of one offset group sit next to
//      each other (one tap's coefficients serve a contiguous, vectorisable run of channels);
//   2. for a chunk of output pixels, each (pixel, tap, channel) is sampled into a column buffer
//      col[pixel][tap * C + channel];
//   3. one GEMM per chunk: out[:, chunk] = weight (Cout, taps * C) @ col^T.
// Semantics are exactly torchvision.ops.deform_conv2d's: tap (i, j) of output pixel (oy, ox)
// in offset group g samples at
//   y = (oy * stride_h - pad_h + i * dil_h) + offset[2 * (g * K + k)],   k = i * kw + j
//   x = (ox * stride_w - pad_w + j * dil_w) + offset[2 * (g * K + k) + 1]
// scaled by mask[g * K + k]; a sample outside (-1, H) x (-1, W) is 0.
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

// One sample: the padded-pixel index of its top-left corner and the four corner weights, the
// mask folded in. `inside` is false for samples outside (-1, H) x (-1, W).
template <typename acc_t>
struct BilinearTap {
  int64_t base;
  acc_t w00, w01, w10, w11;
  bool inside;
};

// floor() for |v| < 2^31 without a libm call (the CPU build targets baseline x86-64, which has
// no rounding instruction): truncate, then step down for negative non-integers.
template <typename acc_t>
DCN_HOST_DEVICE int64_t floor_to_int(acc_t v) {
  const int64_t t = static_cast<int64_t>(v);
  return t - (v < static_cast<acc_t>(t));
}

// Where tap k of output pixel (oy, ox) in offset group g samples, read from this image's offset
// (2 * G * K, OH, OW) and mask (G * K, OH, OW; nullptr = all ones).
template <typename acc_t, typename scalar_t>
DCN_HOST_DEVICE BilinearTap<acc_t> sample_tap(const DcnGeometry& geo, const scalar_t* offset,
                                              const scalar_t* mask, int64_t g, int64_t k,
                                              int64_t oy, int64_t ox) {
  const int64_t plane = geo.OH * geo.OW;
  const int64_t p = oy * geo.OW + ox;
  const int64_t ch = g * geo.K + k;
  const int64_t i = k / geo.kw, j = k % geo.kw;
  // Integer part first, then the offset: the same rounding as torchvision.
  const acc_t y = static_cast<acc_t>(oy * geo.stride_h - geo.pad_h + i * geo.dil_h) +
                  static_cast<acc_t>(offset[2 * ch * plane + p]);
  const acc_t x = static_cast<acc_t>(ox * geo.stride_w - geo.pad_w + j * geo.dil_w) +
                  static_cast<acc_t>(offset[(2 * ch + 1) * plane + p]);
  BilinearTap<acc_t> t;
  t.inside = y > acc_t(-1) && y < acc_t(geo.H) && x > acc_t(-1) && x < acc_t(geo.W);
  if (!t.inside) {  // also catches NaN offsets
    t.base = 0;
    t.w00 = t.w01 = t.w10 = t.w11 = acc_t(0);
    return t;
  }
  const int64_t y0 = floor_to_int(y), x0 = floor_to_int(x);
  const acc_t ly = y - static_cast<acc_t>(y0), lx = x - static_cast<acc_t>(x0);
  const acc_t hy = acc_t(1) - ly, hx = acc_t(1) - lx;
  const acc_t m = mask ? static_cast<acc_t>(mask[ch * plane + p]) : acc_t(1);
  t.base = (y0 + 1) * (geo.W + 2) + (x0 + 1);  // +1: the zero border of xp
  t.w00 = hy * hx * m;
  t.w01 = hy * lx * m;
  t.w10 = ly * hx * m;
  t.w11 = ly * lx * m;
  return t;
}

// The sample of one channel: px points at that channel of the tap's top-left corner in xp;
// dx / dy are the strides of one padded pixel / one padded row (C and (W + 2) * C).
template <typename acc_t, typename scalar_t>
DCN_HOST_DEVICE acc_t bilinear_gather(const scalar_t* px, int64_t dx, int64_t dy,
                                      const BilinearTap<acc_t>& t) {
  if (!t.inside) return acc_t(0);  // outside: 0 even where the input holds inf or NaN
  return t.w00 * static_cast<acc_t>(px[0]) + t.w01 * static_cast<acc_t>(px[dx]) +
         t.w10 * static_cast<acc_t>(px[dy]) + t.w11 * static_cast<acc_t>(px[dy + dx]);
}

// Device-independent host side (dcn_cpu.cpp): checks the arguments and returns the geometry.
DcnGeometry dcn_geometry(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& offset, const c10::optional<at::Tensor>& mask,
                         const c10::optional<at::Tensor>& bias, int64_t stride_h,
                         int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                         int64_t dil_w);

// The zero-padded channels-last copy of the input, (N, H + 2, W + 2, C).
at::Tensor dcn_padded_channels_last(const at::Tensor& input);

// The weight as the GEMM's left operand, (Cout, K * C) with columns in tap-major order.
at::Tensor dcn_weight_matrix(const at::Tensor& weight);

}  // namespace eventhdr_native
