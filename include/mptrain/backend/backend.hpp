// The compute backend: one abstract interface over the op set the model needs (GEMM,
// LayerNorm, attention, GELU, embedding, cross-entropy, AdamW, reductions, copies, sync).
// The CPU backend (OpenBLAS + OpenMP) and the CUDA backend (cuBLAS + kernels) implement it;
// the model code only calls this interface and never branches on the device.
//
// Conventions for every op:
//  - pointers are in the backend's memory (alloc()); counts are element counts, never bytes;
//  - matrices are row-major; shapes are written as (rows, cols) in the comments;
//  - "+=" means the op accumulates into its output (gradients accumulate over micro-batches),
//    "=" means it overwrites;
//  - an op may run asynchronously; synchronize() waits, and to_host() implies it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mptrain {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int threads() const = 0;

  // ---- memory (element counts) ----
  virtual float* alloc(size_t n) = 0;              // zero-filled
  virtual void release(float* p) = 0;
  virtual int32_t* alloc_int(size_t n) = 0;        // zero-filled
  virtual void release_int(int32_t* p) = 0;
  virtual void to_host(float* host, const float* dev, size_t n) = 0;
  virtual void to_device(float* dev, const float* host, size_t n) = 0;
  virtual void to_device_int(int32_t* dev, const int32_t* host, size_t n) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  virtual void fill(float* x, float value, size_t n) = 0;
  virtual void synchronize() = 0;
  // True when MPI may be handed this backend's pointers directly (host memory, or
  // device memory with a CUDA-aware MPI); otherwise the caller stages through the host.
  virtual bool host_accessible() const = 0;

  // ---- dense linear algebra ----
  // C(m,n) = alpha * op(A)(m,k) * op(B)(k,n) + beta * C; op(X) = X or X^T; row-major with
  // leading dimensions lda, ldb, ldc.
  virtual void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                    int lda, const float* b, int ldb, float beta, float* c, int ldc) = 0;
  // out(rows, cols) += bias(cols) broadcast over rows.
  virtual void add_bias(float* out, const float* bias, int rows, int cols) = 0;
  // dbias(cols) += sum over rows of dout(rows, cols).
  virtual void bias_backward(float* dbias, const float* dout, int rows, int cols) = 0;
  // Fused: out(rows, cols) = (out + bias(cols)) + res(rows, cols), the same rounding as
  // add_bias then add (a row-parallel projection's bias and the residual). (Default: those.)
  virtual void add_bias_residual(float* out, const float* bias, const float* res, int rows,
                                 int cols);

  // ---- element-wise ----
  // y(n) += alpha * x(n)
  virtual void axpy(float* y, const float* x, float alpha, size_t n) = 0;
  // out(n) = a(n) + b(n); out may alias a or b.
  virtual void add(float* out, const float* a, const float* b, size_t n) = 0;
  // x(n) *= alpha
  virtual void scale(float* x, float alpha, size_t n) = 0;
  // out(n) = gelu(inp(n)), tanh approximation.
  virtual void gelu_forward(float* out, const float* inp, size_t n) = 0;
  // dinp(n) = gelu'(inp) * dout (=); dinp may alias dout.
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) = 0;
  // Fused: pre(rows, cols) += bias(cols); out(rows, cols) = gelu(pre). Same results as
  // add_bias then gelu_forward. (Default: those two ops.)
  virtual void bias_gelu_forward(float* pre, float* out, const float* bias, int rows, int cols);
  // Fused: dinp(rows, cols) = gelu'(pre) * dout (=), dinp may alias dout; dbias(cols) += the
  // column sums of dinp. Same results as gelu_backward then bias_backward. (Default: those.)
  virtual void gelu_bias_backward(float* dinp, float* dbias, const float* pre, const float* dout,
                                  int rows, int cols);

  // ---- LayerNorm over the last dimension, eps 1e-5 ----
  // out(N,C) = (inp - mean) * rstd * weight + bias; mean(N), rstd(N) saved for backward.
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* weight, const float* bias, int N, int C) = 0;
  // dinp(N,C) +=, dweight(C) +=, dbias(C) +=.
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;
  // Fused residual + LayerNorm: res(N,C) = (res + bias_r(C)) + x(N,C) (res holds a projection
  // output; the same rounding as add_bias then add), then out, mean, rstd = LayerNorm(res) as
  // layernorm_forward. (Default: those three ops.)
  virtual void residual_layernorm_forward(float* res, float* out, float* mean, float* rstd,
                                          const float* x, const float* bias_r,
                                          const float* weight, const float* bias, int N, int C);

  // ---- causal multi-head self-attention (the part between the QKV and output projections) --
  // qkv(B,T,3*NH*HS) laid out q|k|v along the last dim, each (NH,HS) head-major;
  // out(B,T,NH*HS) =; att(B,NH,T,T) = softmax(q k^T / sqrt(HS), causal) saved for backward
  // (entries above the diagonal are written as 0).
  virtual void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH,
                                 int HS) = 0;
  // dqkv(B,T,3*NH*HS) =; datt(B,NH,T,T) is scratch.
  virtual void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                                  const float* att, int B, int T, int NH, int HS) = 0;

  // ---- embeddings (vocab-parallel: this rank owns rows [vocab_start, vocab_start+V) of wte) --
  // out(N,C) = wte[tok - vocab_start] for owned tokens, 0 otherwise.
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* wte,
                                 int vocab_start, int V, int N, int C) = 0;
  // dwte(V,C) += dout rows of owned tokens.
  virtual void embedding_backward(float* dwte, const float* dout, const int32_t* tokens,
                                  int vocab_start, int V, int N, int C) = 0;
  // out(B,T,C) += wpe(T,C) broadcast over B.
  virtual void position_forward(float* out, const float* wpe, int B, int T, int C) = 0;
  // dwpe(T,C) += sum over B of dout(B,T,C).
  virtual void position_backward(float* dwpe, const float* dout, int B, int T, int C) = 0;

  // ---- vocab-parallel cross-entropy (logits(N, ld) hold this rank's V columns; columns
  // [V, ld) are padding and ignored). The caller all-reduces the partial results over TP. ----
  // row_max(N) = max over owned columns (-inf-safe: -FLT_MAX when V == 0).
  virtual void ce_row_max(float* row_max, const float* logits, int N, int V, int ld) = 0;
  // row_sum(N) = sum over owned columns of exp(logit - row_max).
  virtual void ce_row_sumexp(float* row_sum, const float* logits, const float* row_max, int N,
                             int V, int ld) = 0;
  // target_logit(N) = logits[i, target[i] - vocab_start] if owned, else 0.
  virtual void ce_target_logit(float* target_logit, const float* logits, const int32_t* targets,
                               int vocab_start, int N, int V, int ld) = 0;
  // losses(N) = log(row_sum) + row_max - target_logit.
  virtual void ce_losses(float* losses, const float* row_max, const float* row_sum,
                         const float* target_logit, int N) = 0;
  // dlogits(N, ld) = scale * (softmax - onehot(target)) on owned columns, 0 on padding.
  // dlogits may alias logits.
  virtual void ce_backward(float* dlogits, const float* logits, const float* row_max,
                           const float* row_sum, const int32_t* targets, int vocab_start, int N,
                           int V, int ld, float scale) = 0;

  // ---- optimizer and reductions ----
  // AdamW on n elements with bias correction for 1-based step t and decoupled weight decay:
  // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (mhat / (sqrt(vhat) + eps) + wd p).
  virtual void adamw(float* param, const float* grad, float* m, float* v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, long t) = 0;
  // Fused optimizer pass: grad *= grad_scale (clipping; skipped when 1), adamw as above, then
  // grad = 0 when zero_grad (ready for the next step's accumulation). Same results as scale,
  // adamw and fill. (Default: those three ops.)
  virtual void adamw_step(float* param, float* grad, float* m, float* v, size_t n, float lr,
                          float beta1, float beta2, float eps, float weight_decay, long t,
                          float grad_scale, bool zero_grad);
  // Returns sum of x^2 (accumulated in double) / sum of x over n elements. Synchronous.
  virtual double sum_squares(const float* x, size_t n) = 0;
  virtual double sum(const float* x, size_t n) = 0;
};

// The OpenBLAS + OpenMP backend. threads = OpenMP threads for this rank (> 0).
std::unique_ptr<Backend> make_cpu_backend(int threads);

// The CUDA backend on device `device` (only when built with CUDA; otherwise throws InputError).
std::unique_ptr<Backend> make_cuda_backend(int device);
bool cuda_available();      // built with CUDA and at least one device visible
int cuda_device_count();    // 0 when built without CUDA

// Precision options of the CUDA backend. Master weights, optimizer state and every op other
// than the matrix products stay fp32 in every mode.
//  - tf32: cuBLAS may use TF32 tensor cores for fp32 products (gemm() and attention);
//  - bf16: gemm() rounds its two operands to bfloat16 on the fly and multiplies them on the
//    tensor cores with fp32 accumulation and an fp32 result (attention stays fp32 / tf32).
struct CudaOptions {
  int device = 0;
  bool tf32 = false;
  bool bf16 = false;
};
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options);

// The device's measured matrix rate, for the benchmark's MFU: times cuBLAS C(m,n) = A(m,k) B(k,n)
// on device `device` (fp32, TF32 tensor cores if tf32, bf16 operands with fp32 accumulation if
// bf16) and returns TFLOP/s (2mnk per product). Returns 0 without CUDA or without that device.
double cuda_measure_sgemm_tflops(int device, int m, int n, int k, bool tf32, bool bf16);

// The backend a rank uses: `kind` is cpu, cuda or auto (CUDA when a device is visible); CUDA
// ranks take device node_rank % device_count. `threads` = OpenMP threads for the CPU backend
// (0 = the cores the launcher bound this rank to, or, for an unbound rank, the node's cores /
// node_size). Throws InputError when cuda is asked for but absent, and when the CUDA options
// ask for tf32 or bf16 but the rank resolves to the CPU (which computes in fp32 only).
std::unique_ptr<Backend> select_backend(const std::string& kind, int threads, int node_rank,
                                        int node_size);
// The same with the CUDA precision options ([device] tf32 / precision); cuda.device is ignored
// (the device is node_rank % device_count, as above).
std::unique_ptr<Backend> select_backend(const std::string& kind, int threads, int node_rank,
                                        int node_size, const CudaOptions& cuda);

// For every backend's gemm(): fatal unless the shapes, leading dimensions and operands make a
// valid row-major call (the BLAS libraries would only print a warning and carry on with
// garbage, so a bad call, which is a bug, is stopped here and named). Returns false when there
// is nothing to compute (m or n is 0).
bool check_gemm_call(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda,
                     const float* b, int ldb, const float* c, int ldc);

}  // namespace mptrain
