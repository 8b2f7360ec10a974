// The CPU backend's vector kernels (cpu_vector.hpp): one row or one contiguous range each,
// called from the OpenMP loops of cpu_backend.cpp; compiled for AVX2 and the baseline
// (MPT_SIMD_CLONES, cpu_math.hpp). Sums inside a row run in fixed lanes (cpu_math.hpp), so a
// kernel's result does not depend on the thread that runs it.
#include "cpu_vector.hpp"

#include <cmath>

#include "cpu_math.hpp"

namespace mptrain::cpu {

constexpr float kLayerNormEps = 1e-5f;  // GPT-2's

MPT_SIMD_CLONES void gelu_range(float* out, const float* inp, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) out[i] = gelu(inp[i]);
}

MPT_SIMD_CLONES void gelu_backward_range(float* dinp, const float* inp, const float* dout,
                                         size_t n) {
  // dout[i] is read before dinp[i] is written: dinp may alias dout.
#pragma omp simd
  for (size_t i = 0; i < n; i++) dinp[i] = gelu_grad(inp[i]) * dout[i];
}

// pre(cols) += bias; out(cols) = gelu(pre)
MPT_SIMD_CLONES void bias_gelu_row(float* pre, float* out, const float* bias, int cols) {
#pragma omp simd
  for (int c = 0; c < cols; c++) {
    const float x = pre[c] + bias[c];
    pre[c] = x;
    out[c] = gelu(x);
  }
}

// g(w) = gelu'(x) * d (g may alias d); acc(w) += g
MPT_SIMD_CLONES void gelu_grad_acc_row(float* g, double* acc, const float* x, const float* d,
                                       int w) {
#pragma omp simd
  for (int j = 0; j < w; j++) {
    const float v = gelu_grad(x[j]) * d[j];
    g[j] = v;
    acc[j] += v;
  }
}

// One row of LayerNorm: two-pass mean and variance in double (fixed lanes), then the affine
// normalization. With bias_r and res: first x(C) = (x + bias_r) + res, in place.
MPT_SIMD_CLONES void layernorm_row(float* o, float* mean, float* rstd, float* x_inout,
                                   const float* x_in, const float* bias_r, const float* res,
                                   const float* weight, const float* bias, int C) {
  const float* x = x_in;
  if (res) {
#pragma omp simd
    for (int c = 0; c < C; c++) x_inout[c] = (x_inout[c] + bias_r[c]) + res[c];
    x = x_inout;
  }
  const float m = static_cast<float>(lane_sum(x, C, [](float a) { return double(a); }) / C);
  // two-pass variance: no cancellation for rows with a large mean
  const double var = lane_sum(x, C, [m](float a) { const double d = a - m; return d * d; }) / C;
  const float r = static_cast<float>(1.0 / std::sqrt(var + kLayerNormEps));
#pragma omp simd
  for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  *mean = m;
  *rstd = r;
}

// dx(C) += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = weight * d, for one row.
MPT_SIMD_CLONES void layernorm_backward_row(float* dx, const float* d, const float* x,
                                            const float* weight, float m, float r, int C) {
  // sum of g and of g * xhat in fixed lanes (see cpu_math.hpp)
  double lane_g[kLanes] = {}, lane_gx[kLanes] = {};
  int c = 0;
  for (; c + kLanes <= C; c += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; j++) {
      const float g = weight[c + j] * d[c + j];
      lane_g[j] += g;
      lane_gx[j] += static_cast<double>(g) * ((x[c + j] - m) * r);
    }
  }
  for (int j = 0; c < C; c++, j++) {
    const float g = weight[c] * d[c];
    lane_g[j] += g;
    lane_gx[j] += static_cast<double>(g) * ((x[c] - m) * r);
  }
  const float gm = static_cast<float>(sum_lanes(lane_g) / C);
  const float gxm = static_cast<float>(sum_lanes(lane_gx) / C);
#pragma omp simd
  for (int c = 0; c < C; c++) {
    const float xhat = (x[c] - m) * r;
    dx[c] += r * (weight[c] * d[c] - gm - xhat * gxm);
  }
}

// acc_w(w) += d * xhat, acc_b(w) += d for one row's column block.
MPT_SIMD_CLONES void layernorm_param_grad_row(double* acc_w, double* acc_b, const float* d,
                                              const float* x, float m, float r, int w) {
#pragma omp simd
  for (int j = 0; j < w; j++) {
    acc_w[j] += d[j] * ((x[j] - m) * r);
    acc_b[j] += d[j];
  }
}

// acc(w) += d(w)
MPT_SIMD_CLONES void add_row(double* acc, const float* d, int w) {
#pragma omp simd
  for (int j = 0; j < w; j++) acc[j] += d[j];
}

// sum of exp(l - mx) over one row, in double lanes.
MPT_SIMD_CLONES double sumexp_row(const float* l, float mx, int V) {
  return lane_sum(l, size_t(V), [mx](float a) { return double(exp_approx(a - mx)); });
}

// dl(V) = scale * (softmax - onehot(col)); dl may alias l.
MPT_SIMD_CLONES void ce_backward_row(float* dl, const float* l, float mx, float inv_sum, int col,
                                     float scale, int V) {
#pragma omp simd
  for (int j = 0; j < V; j++) {
    const float p = exp_approx(l[j] - mx) * inv_sum;
    dl[j] = scale * (p - (j == col ? 1.0f : 0.0f));
  }
}

MPT_SIMD_CLONES void adamw_range(float* param, float* grad, float* m, float* v, size_t n,
                                 float lr, float beta1, float beta2, float eps,
                                 float weight_decay, float bc1, float bc2, float grad_scale,
                                 bool rescale, bool zero_grad) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) {
    const float g = rescale ? grad[i] * grad_scale : grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * param[i]);
    grad[i] = zero_grad ? 0.0f : g;
  }
}

}  // namespace mptrain::cpu
