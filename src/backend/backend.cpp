// Default implementations of the fused Backend ops in terms of the basic ones, so a backend
// only has to implement the basic op set; a backend that can do better (the CPU backend: one
// pass over memory instead of two or three) overrides them.
#include "mptrain/backend/backend.hpp"

#include <algorithm>
#include <string>

#include "mptrain/core/error.hpp"

namespace mptrain {

void Backend::add_bias_residual(float* out, const float* bias, const float* res, int rows,
                                int cols) {
  add_bias(out, bias, rows, cols);
  add(out, out, res, size_t(rows) * cols);
}

void Backend::bias_gelu_forward(float* pre, float* out, const float* bias, int rows, int cols) {
  add_bias(pre, bias, rows, cols);
  gelu_forward(out, pre, size_t(rows) * cols);
}

void Backend::gelu_bias_backward(float* dinp, float* dbias, const float* pre, const float* dout,
                                 int rows, int cols) {
  gelu_backward(dinp, pre, dout, size_t(rows) * cols);
  bias_backward(dbias, dinp, rows, cols);
}

void Backend::residual_layernorm_forward(float* res, float* out, float* mean, float* rstd,
                                         const float* x, const float* bias_r, const float* weight,
                                         const float* bias, int N, int C) {
  add_bias(res, bias_r, N, C);
  add(res, res, x, size_t(N) * C);
  layernorm_forward(out, mean, rstd, res, weight, bias, N, C);
}

void Backend::adamw_step(float* param, float* grad, float* m, float* v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, long t,
                         float grad_scale, bool zero_grad) {
  if (grad_scale != 1.0f) scale(grad, grad_scale, n);
  adamw(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
  if (zero_grad) fill(grad, 0.0f, n);
}

bool check_gemm_call(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                     const float* b, int ldb, const float* c, int ldc) {
  const int a_cols = trans_a ? m : k;  // A is stored (k, m) when transposed, else (m, k)
  const int b_cols = trans_b ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, a_cols) || ldb < std::max(1, b_cols) ||
      ldc < std::max(1, n))
    MPT_FATAL("gemm: bad shape m=" + std::to_string(m) + " n=" + std::to_string(n) +
              " k=" + std::to_string(k) + " lda=" + std::to_string(lda) +
              " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc) +
              (trans_a ? " A^T" : " A") + (trans_b ? " B^T" : " B"));
  if (m == 0 || n == 0) return false;
  MPT_CHECK(c != nullptr && (k == 0 || (a != nullptr && b != nullptr)), "gemm: null operand");
  return true;
}

}  // namespace mptrain
