// Internal to the CPU backend: the single-threaded vector kernels its ops call from their
// OpenMP loops, one row or one contiguous range each (cpu_vector.cpp), compiled for AVX2 and the
// baseline (MPT_SIMD_CLONES, cpu_math.hpp). They live apart from cpu_backend.cpp only to keep
// each file readable; nothing here is part of the public interface.
#pragma once

#include <cstddef>

namespace mptrain::cpu {

// out(n) = gelu(inp)
void gelu_range(float* out, const float* inp, size_t n);

// dinp(n) = gelu'(inp) * dout; dinp may alias dout
void gelu_backward_range(float* dinp, const float* inp, const float* dout, size_t n);

// pre(cols) += bias; out(cols) = gelu(pre)
void bias_gelu_row(float* pre, float* out, const float* bias, int cols);

// g(w) = gelu'(x) * d (g may alias d); acc(w) += g
void gelu_grad_acc_row(float* g, double* acc, const float* x, const float* d, int w);

// One row of LayerNorm: two-pass mean and variance in double (fixed lanes), then the affine
// normalization. With bias_r and res: first x(C) = (x + bias_r) + res, in place.
void layernorm_row(float* o, float* mean, float* rstd, float* x_inout, const float* x_in,
                   const float* bias_r, const float* res, const float* weight, const float* bias,
                   int C);

// dx(C) += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = weight * d, for one row.
void layernorm_backward_row(float* dx, const float* d, const float* x, const float* weight, float m,
                            float r, int C);

// acc_w(w) += d * xhat, acc_b(w) += d for one row's column block.
void layernorm_param_grad_row(double* acc_w, double* acc_b, const float* d, const float* x, float m,
                              float r, int w);

// acc(w) += d(w)
void add_row(double* acc, const float* d, int w);

// sum of exp(l - mx) over one row, in double lanes.
double sumexp_row(const float* l, float mx, int V);

// dl(V) = scale * (softmax - onehot(col)); dl may alias l.
void ce_backward_row(float* dl, const float* l, float mx, float inv_sum, int col, float scale,
                     int V);

// AdamW on n elements: g = grad (times grad_scale when rescale); m, v, param updated with the
// bias corrections bc1, bc2 and decoupled weight decay; grad left as g, or 0 when zero_grad.
void adamw_range(float* param, float* grad, float* m, float* v, size_t n, float lr, float beta1,
                 float beta2, float eps, float weight_decay, float bc1, float bc2, float grad_scale,
                 bool rescale, bool zero_grad);

}  // namespace mptrain::cpu
