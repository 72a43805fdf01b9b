// eventhdr_native::deform_conv2d: the operator's schema, the device-independent host side, and
// the CPU kernel. See dcn.h for the algorithm and the semantics.
#include "dcn.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

// The hot loops are compiled twice, for baseline x86-64 and for AVX2 + FMA (x86-64-v3), and the
// loader picks the one the CPU runs: 8-float vectors hold one offset group of the network.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DCN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DCN_CPU_CLONES
#endif

// MKL's C interface, where torch links MKL; weak, so null where it does not (other BLAS
// libraries run single-threaded inside an OpenMP region anyway).
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

namespace eventhdr_native {

DcnGeometry dcn_geometry(const at::Tensor& input, const at::Tensor& weight,
                         const at::Tensor& offset, const c10::optional<at::Tensor>& mask,
                         const c10::optional<at::Tensor>& bias, int64_t stride_h,
                         int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                         int64_t dil_w) {
  TORCH_CHECK(input.dim() == 4, "deform_conv2d: input must be (N, C, H, W), got ", input.sizes());
  TORCH_CHECK(weight.dim() == 4, "deform_conv2d: weight must be (Cout, C, kh, kw), got ",
              weight.sizes());
  TORCH_CHECK(offset.dim() == 4, "deform_conv2d: offset must be (N, 2 * groups * kh * kw, OH, OW), got ",
              offset.sizes());
  TORCH_CHECK(stride_h >= 1 && stride_w >= 1 && dil_h >= 1 && dil_w >= 1 && pad_h >= 0 && pad_w >= 0,
              "deform_conv2d: stride and dilation must be >= 1, padding >= 0");
  std::vector<at::Tensor> all{input, weight, offset};
  if (mask) all.push_back(*mask);
  if (bias) all.push_back(*bias);
  for (const auto& t : all) {
    TORCH_CHECK(t.device() == input.device() && t.scalar_type() == input.scalar_type(),
                "deform_conv2d: all tensors must have the input's device and dtype (",
                input.device(), ", ", input.scalar_type(), "), got ", t.device(), ", ",
                t.scalar_type());
  }

  DcnGeometry geo;
  geo.N = input.size(0);
  geo.C = input.size(1);
  geo.H = input.size(2);
  geo.W = input.size(3);
  geo.Cout = weight.size(0);
  geo.kh = weight.size(2);
  geo.kw = weight.size(3);
  geo.K = geo.kh * geo.kw;
  geo.stride_h = stride_h;
  geo.stride_w = stride_w;
  geo.pad_h = pad_h;
  geo.pad_w = pad_w;
  geo.dil_h = dil_h;
  geo.dil_w = dil_w;
  geo.OH = (geo.H + 2 * pad_h - (dil_h * (geo.kh - 1) + 1)) / stride_h + 1;
  geo.OW = (geo.W + 2 * pad_w - (dil_w * (geo.kw - 1) + 1)) / stride_w + 1;
  // a zero-size kernel or no channels would divide by zero below (and in the CUDA host code)
  TORCH_CHECK(geo.kh > 0 && geo.kw > 0 && geo.C > 0, "deform_conv2d: an empty kernel (", geo.kh, "x", geo.kw,
              ") or no input channels (", geo.C, ")");
  TORCH_CHECK(weight.size(1) == geo.C, "deform_conv2d: weight has ", weight.size(1),
              " input channels, input has ", geo.C, " (grouped weights are not supported)");
  // Sample indices into the padded image are int (see BilinearTap).
  TORCH_CHECK(geo.H > 0 && geo.W > 0 && (geo.H + 2) * (geo.W + 2) < (int64_t(1) << 31),
              "deform_conv2d: image size ", geo.H, "x", geo.W, " out of range");
  TORCH_CHECK(geo.OH > 0 && geo.OW > 0, "deform_conv2d: the output would be empty");
  TORCH_CHECK(offset.size(1) > 0 && offset.size(1) % (2 * geo.K) == 0,
              "deform_conv2d: offset must have a multiple of 2 * kh * kw = ", 2 * geo.K,
              " channels, got ", offset.size(1));
  geo.G = offset.size(1) / (2 * geo.K);
  TORCH_CHECK(geo.C % geo.G == 0, "deform_conv2d: ", geo.G,
              " offset groups do not divide the ", geo.C, " input channels");
  geo.Cg = geo.C / geo.G;
  TORCH_CHECK(offset.size(0) == geo.N && offset.size(2) == geo.OH && offset.size(3) == geo.OW,
              "deform_conv2d: offset must be (", geo.N, ", ", offset.size(1), ", ", geo.OH, ", ",
              geo.OW, "), got ", offset.sizes());
  if (mask) {
    TORCH_CHECK(mask->dim() == 4 && mask->size(0) == geo.N && mask->size(1) == geo.G * geo.K &&
                    mask->size(2) == geo.OH && mask->size(3) == geo.OW,
                "deform_conv2d: mask must be (", geo.N, ", ", geo.G * geo.K, ", ", geo.OH, ", ",
                geo.OW, "), got ", mask->sizes());
  }
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == geo.Cout, "deform_conv2d: bias must be (",
                geo.Cout, "), got ", bias->sizes());
  }
  return geo;
}

at::Tensor dcn_padded_group_image(const at::Tensor& input, int64_t groups) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  at::Tensor xp = at::empty({N, groups, H + 2, W + 2, C / groups}, input.options());
  // Zero only the border: one pass over memory instead of two.
  for (const int64_t dim : {2, 3}) {
    xp.narrow(dim, 0, 1).zero_();
    xp.narrow(dim, xp.size(dim) - 1, 1).zero_();
  }
  xp.narrow(2, 1, H).narrow(3, 1, W).copy_(
      input.reshape({N, groups, C / groups, H, W}).permute({0, 1, 3, 4, 2}));
  return xp;
}

at::Tensor dcn_weight_matrix(const at::Tensor& weight) {
  return weight.permute({0, 2, 3, 1}).reshape({weight.size(0), -1}).contiguous();
}

namespace {

// Column buffer per tile, about one L2 (measured on 512 KiB-L2 cores: tiles of 128 to 1024
// pixels are within noise of each other; much larger spill the buffer to L3 before the GEMM).
constexpr int64_t kTileBytes = 512 * 1024;

// Fills the column buffer col (np, K * C) for output pixels [p0, p0 + np) of image n, np <= tile.
// Per (group, tap): first the coefficients of all the tile's pixels (vectorised across pixels),
// then the gather (vectorised across the group's channels).
template <typename scalar_t>
class ColumnSampler {
 public:
  using acc_t = at::opmath_type<scalar_t>;

  ColumnSampler(const DcnGeometry& geo, const scalar_t* xp, const scalar_t* offset,
                const scalar_t* mask, int64_t tile)
      : geo_(geo), xp_(xp), offset_(offset), mask_(mask), tile_(tile), base_(tile), w_(4 * tile) {}

  void fill(scalar_t* col, int64_t n, int64_t p0, int64_t np) {
    const int64_t plane = geo_.OH * geo_.OW;
    const int64_t group_image = (geo_.H + 2) * (geo_.W + 2) * geo_.Cg;
    for (int64_t g = 0; g < geo_.G; ++g) {
      for (int64_t k = 0; k < geo_.K; ++k) {
        const scalar_t* off_y = offset_ + (n * 2 * geo_.G * geo_.K + offset_channel(g, k, geo_.K)) * plane;
        const scalar_t* mask =
            mask_ ? mask_ + (n * geo_.G * geo_.K + mask_channel(g, k, geo_.K)) * plane : nullptr;
        taps(k, p0, np, off_y, off_y + plane, mask);
        gather(np, geo_.Cg, (geo_.W + 2) * geo_.Cg, xp_ + (n * geo_.G + g) * group_image,
               base_.data(), w(0), w(1), w(2), w(3), col + k * geo_.C + g * geo_.Cg, geo_.K * geo_.C);
      }
    }
  }

 private:
  acc_t* w(int corner) { return w_.data() + corner * tile_; }

  // Coefficients of tap k for pixels [p0, p0 + np), one output row at a time.
  void taps(int64_t k, int64_t p0, int64_t np, const scalar_t* off_y, const scalar_t* off_x,
            const scalar_t* mask) {
    const int i = static_cast<int>(k / geo_.kw), j = static_cast<int>(k % geo_.kw);
    const auto row = mask ? &tap_row<true> : &tap_row<false>;
    for (int64_t p = p0, q = 0; p < p0 + np;) {
      const int64_t oy = p / geo_.OW, ox = p % geo_.OW;
      const int64_t count = std::min(geo_.OW - ox, p0 + np - p);
      row(static_cast<int>(count), tap_origin(oy, geo_.stride_h, geo_.pad_h, i, geo_.dil_h),
          tap_origin(ox, geo_.stride_w, geo_.pad_w, j, geo_.dil_w), geo_.stride_w, geo_.H, geo_.W,
          off_y + p, off_x + p, mask ? mask + p : nullptr, base_.data() + q, w(0) + q, w(1) + q,
          w(2) + q, w(3) + q);
      p += count;
      q += count;
    }
  }

  // One row of taps. Branch-free (hence kMasked rather than a test in the loop) and restrict
  // pointers: the loop vectorises across pixels.
  template <bool kMasked>
  DCN_CPU_CLONES static void tap_row(int count, int y_origin, int x_origin, int stride_w, int H,
                                     int W, const scalar_t* __restrict off_y,
                                     const scalar_t* __restrict off_x,
                                     const scalar_t* __restrict mask, int* __restrict base,
                                     acc_t* __restrict w00, acc_t* __restrict w01,
                                     acc_t* __restrict w10, acc_t* __restrict w11) {
    for (int r = 0; r < count; ++r) {
      const acc_t m = kMasked ? static_cast<acc_t>(mask[r]) : acc_t(1);
      const BilinearTap<acc_t> t =
          bilinear_tap<acc_t>(y_origin, x_origin + r * stride_w, static_cast<acc_t>(off_y[r]),
                              static_cast<acc_t>(off_x[r]), m, H, W);
      base[r] = t.base;
      w00[r] = t.w00;
      w01[r] = t.w01;
      w10[r] = t.w10;
      w11[r] = t.w11;
    }
  }

  // Samples one tap of np pixels into their column rows (dst, row stride KC) from the group's
  // image (row stride dy): each pixel's coefficients serve the group's Cg adjacent channels.
  DCN_CPU_CLONES static void gather(int64_t np, int64_t Cg, int64_t dy,
                                    const scalar_t* __restrict image, const int* __restrict base,
                                    const acc_t* __restrict w00, const acc_t* __restrict w01,
                                    const acc_t* __restrict w10, const acc_t* __restrict w11,
                                    scalar_t* __restrict dst, int64_t KC) {
    for (int64_t q = 0; q < np; ++q, dst += KC) {
      const BilinearTap<acc_t> t{base[q], w00[q], w01[q], w10[q], w11[q]};
      const scalar_t* px = image + static_cast<int64_t>(t.base) * Cg;
      for (int64_t c = 0; c < Cg; ++c) {
        dst[c] = static_cast<scalar_t>(bilinear_gather(px + c, Cg, dy, t));
      }
    }
  }

  const DcnGeometry& geo_;
  const scalar_t *xp_, *offset_, *mask_;
  const int64_t tile_;
  std::vector<int> base_;  // per pixel of the tile: the tap being sampled
  std::vector<acc_t> w_;   // its corner weights w00, w01, w10, w11, one plane of tile_ each
};

// Each thread samples a tile and multiplies it while it is still in cache: one parallel region
// per call, which matters on a busy machine, where every barrier can wait for a descheduled
// thread. The GEMMs run one per thread, so MKL must not thread them: torch turns MKL's dynamic
// threading off, and MKL would nest a spin-waiting team inside each of our threads (5-10x
// slower under load).
template <typename scalar_t>
void dcn_cpu_kernel(const DcnGeometry& geo, const at::Tensor& xp, const at::Tensor& offset,
                    const at::Tensor& mask, const at::Tensor& wmat, const at::Tensor& bias,
                    at::Tensor& out) {
  const int64_t plane = geo.OH * geo.OW, KC = geo.K * geo.C;
  const int64_t tile = std::min<int64_t>(
      plane, std::max<int64_t>(16, kTileBytes / (KC * int64_t(sizeof(scalar_t)))));
  const int64_t ntiles = (plane + tile - 1) / tile;
  const at::Tensor bias_col = bias.defined() ? bias.view({geo.Cout, 1}) : at::Tensor();

  at::parallel_for(0, geo.N * ntiles, 1, [&](int64_t begin, int64_t end) {
    const int mkl_threads = MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0;
    ColumnSampler<scalar_t> sampler(geo, xp.const_data_ptr<scalar_t>(),
                                    offset.const_data_ptr<scalar_t>(),
                                    mask.defined() ? mask.const_data_ptr<scalar_t>() : nullptr, tile);
    at::Tensor col = at::empty({tile, KC}, xp.options());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / ntiles;
      const int64_t p0 = (task % ntiles) * tile;
      const int64_t np = std::min(tile, plane - p0);
      sampler.fill(col.mutable_data_ptr<scalar_t>(), n, p0, np);
      const at::Tensor cols = col.narrow(0, 0, np).t();
      at::Tensor out_tile = out.select(0, n).view({geo.Cout, plane}).narrow(1, p0, np);
      if (bias.defined()) {
        at::addmm_out(out_tile, bias_col, wmat, cols);
      } else {
        at::mm_out(out_tile, wmat, cols);
      }
    }
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(mkl_threads);
  });
}

at::Tensor deform_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& offset, const c10::optional<at::Tensor>& mask,
                             const c10::optional<at::Tensor>& bias, int64_t stride_h,
                             int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                             int64_t dil_w) {
  const DcnGeometry geo =
      dcn_geometry(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w);
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
              "deform_conv2d (CPU): float32 or float64 only, got ", input.scalar_type());
  const at::Tensor xp = dcn_padded_group_image(input, geo.G);
  const at::Tensor wmat = dcn_weight_matrix(weight);
  const at::Tensor off = offset.contiguous();
  const at::Tensor msk = mask ? mask->contiguous() : at::Tensor();
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({geo.N, geo.Cout, geo.OH, geo.OW}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "deform_conv2d_cpu", [&] {
    dcn_cpu_kernel<scalar_t>(geo, xp, off, msk, wmat, b, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(eventhdr_native, m) {
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor? mask, Tensor? bias, "
      "int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w) -> Tensor");
}

TORCH_LIBRARY_IMPL(eventhdr_native, CPU, m) {
  m.impl("deform_conv2d", &deform_conv2d_cpu);
}

}  // namespace eventhdr_native

// `import native._C` loads this library, whose static initialisers above register the operator.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
