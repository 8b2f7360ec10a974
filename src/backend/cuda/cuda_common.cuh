// Internal to the CUDA backend: error-checking macros, the growable device workspace, and the
// host-side launchers of the kernels, which live in cuda_kernels.cu (element-wise ops,
// embeddings, cross-entropy, AdamW, whole-vector reductions), cuda_layernorm.cu (LayerNorm and
// the bias gradient) and cuda_attention.cu (causal self-attention). cuda_backend.cu holds the
// Backend object, memory, GEMM and the public factory functions.
// Nothing here is part of the public interface.
//
// Every launcher enqueues its work on the stream it is given and returns at once; the semantics
// (shapes, "=" versus "+=", aliasing) are those of the matching op in mptrain/backend.hpp.
// Determinism: no launcher uses floating-point atomics, and every reduction adds its terms in an
// order fixed by the sizes alone (fixed block shapes, fixed chunking, tree reductions in
// shared memory), so two runs on the same GPU are bit-identical.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "mptrain/core/error.hpp"

namespace mptrain::cuda {

// ---- error checks: every CUDA / cuBLAS call goes through one of these ----
[[noreturn]] void cuda_failure(const char* file, int line, const char* call, cudaError_t err);
[[noreturn]] void cublas_failure(const char* file, int line, const char* call,
                                 cublasStatus_t status);
// After a kernel launch: reports launch errors (bad configuration, no kernel image for this
// GPU) at the launch site. With MPTRAIN_CUDA_SYNC=1 in the environment (or a debug build) it
// also waits for the kernel, so asynchronous faults are reported at the right line too.
void check_launch(const char* file, int line, cudaStream_t stream);

}  // namespace mptrain::cuda

#define MPT_CUDA_CHECK(call)                                                  \
  do {                                                                        \
    const cudaError_t mpt_cuda_err_ = (call);                                 \
    if (mpt_cuda_err_ != cudaSuccess)                                         \
      ::mptrain::cuda::cuda_failure(__FILE__, __LINE__, #call, mpt_cuda_err_); \
  } while (0)

#define MPT_CUBLAS_CHECK(call)                                                       \
  do {                                                                               \
    const cublasStatus_t mpt_cublas_st_ = (call);                                    \
    if (mpt_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                     \
      ::mptrain::cuda::cublas_failure(__FILE__, __LINE__, #call, mpt_cublas_st_);    \
  } while (0)

#define MPT_CUDA_LAUNCHED(stream) ::mptrain::cuda::check_launch(__FILE__, __LINE__, (stream))

namespace mptrain::cuda {

// Device scratch memory owned by the backend, reused by every op that needs temporaries.
// get() returns at least `bytes` bytes, valid until the next get(); contents are undefined.
// Because all work is ordered on one stream, an op may reuse the memory the previous op used.
// Growing waits for the stream first, so no queued kernel still reads the old block.
class Workspace {
 public:
  explicit Workspace(cudaStream_t stream) : stream_(stream) {}
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace();
  void* get(size_t bytes);

 private:
  cudaStream_t stream_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Carves typed, 256-byte aligned arrays out of one workspace block. Used twice per op: once with
// base == nullptr to measure the total, then on the real block with the same sequence of take().
class Carver {
 public:
  explicit Carver(void* base = nullptr) : base_(static_cast<char*>(base)) {}
  template <class T>
  T* take(size_t n) {
    offset_ = (offset_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += (n ? n : 1) * sizeof(T);
    return p;
  }
  size_t bytes() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

// ---- launchers (cuda_kernels.cu) ----
void fill(cudaStream_t s, float* x, float value, size_t n);
void axpy(cudaStream_t s, float* y, const float* x, float alpha, size_t n);
void add(cudaStream_t s, float* out, const float* a, const float* b, size_t n);
void scale(cudaStream_t s, float* x, float alpha, size_t n);
// C(rows, cols) with leading dimension ld: C = beta * C (beta == 0 writes zeros, even over NaN).
void scale_matrix(cudaStream_t s, float* c, float beta, int rows, int cols, int ld);
void to_bf16(cudaStream_t s, __nv_bfloat16* dst, const float* src, size_t n);
void gelu_forward(cudaStream_t s, float* out, const float* inp, size_t n);
void gelu_backward(cudaStream_t s, float* dinp, const float* inp, const float* dout, size_t n);
void add_bias(cudaStream_t s, float* out, const float* bias, int rows, int cols);
void bias_gelu_forward(cudaStream_t s, float* pre, float* out, const float* bias, int rows,
                       int cols);
void embedding_forward(cudaStream_t s, float* out, const int32_t* tokens, const float* wte,
                       int vocab_start, int V, int N, int C);
void embedding_backward(cudaStream_t s, Workspace& ws, float* dwte, const float* dout,
                        const int32_t* tokens, int vocab_start, int V, int N, int C);
void position_forward(cudaStream_t s, float* out, const float* wpe, int B, int T, int C);
void position_backward(cudaStream_t s, float* dwpe, const float* dout, int B, int T, int C);
void ce_row_max(cudaStream_t s, float* row_max, const float* logits, int N, int V, int ld);
void ce_row_sumexp(cudaStream_t s, float* row_sum, const float* logits, const float* row_max,
                   int N, int V, int ld);
void ce_target_logit(cudaStream_t s, float* target_logit, const float* logits,
                     const int32_t* targets, int vocab_start, int N, int V, int ld);
void ce_losses(cudaStream_t s, float* losses, const float* row_max, const float* row_sum,
               const float* target_logit, int N);
void ce_backward(cudaStream_t s, float* dlogits, const float* logits, const float* row_max,
                 const float* row_sum, const int32_t* targets, int vocab_start, int N, int V,
                 int ld, float scale);
// bc1, bc2: the bias corrections 1 - beta^t (computed by the caller as the CPU backend does).
void adamw(cudaStream_t s, float* param, const float* grad, float* m, float* v, size_t n,
           float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
           float bc2);
// The fused optimizer pass of Backend::adamw_step: grad *= grad_scale (when != 1), adamw, then
// grad = 0 when zero_grad.
void adamw_step(cudaStream_t s, float* param, float* grad, float* m, float* v, size_t n,
                float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
                float bc2, float grad_scale, bool zero_grad);
// Sum of x (squares = false) or of x^2, accumulated in double; the result is left in *result
// (device memory) and the caller copies it back.
void reduce_sum(cudaStream_t s, Workspace& ws, double* result, const float* x, size_t n,
                bool squares);
// Fills x(n) with reproducible pseudo-random values in [-1, 1) (benchmark operands).
void fill_pseudo_random(cudaStream_t s, float* x, size_t n, uint32_t seed);
void fill_pseudo_random_bf16(cudaStream_t s, __nv_bfloat16* x, size_t n, uint32_t seed);

// ---- launchers (cuda_layernorm.cu) ----
void bias_backward(cudaStream_t s, Workspace& ws, float* dbias, const float* dout, int rows,
                   int cols);
void layernorm_forward(cudaStream_t s, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C);
void residual_layernorm_forward(cudaStream_t s, float* res, float* out, float* mean, float* rstd,
                                const float* x, const float* bias_r, const float* weight,
                                const float* bias, int N, int C);
void layernorm_backward(cudaStream_t s, Workspace& ws, float* dinp, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C);

// ---- launchers (cuda_attention.cu); cuBLAS `handle` is bound to stream s ----
void attention_forward(cudaStream_t s, cublasHandle_t handle, float* out, float* att,
                       const float* qkv, int B, int T, int NH, int HS);
void attention_backward(cudaStream_t s, cublasHandle_t handle, float* dqkv, float* datt,
                        const float* dout, const float* qkv, const float* att, int B, int T,
                        int NH, int HS);

}  // namespace mptrain::cuda
