// The pieces of the benchmark (mptrain-bench) that are worth a library home: a timing
// decorator around any Backend and the measurement of the backend's own GEMM rate on the
// step's matrix shapes (the ceiling the step is compared with). The analytic counts the
// measurements are checked against (parameters, FLOPs, GEMM shapes, memory) are the model's
// (model/analytic.hpp). doc/DESIGN.md §6: the figure of merit on CPU is the step's achieved FLOP/s as a fraction of
// the SGEMM rate on the model's own shapes, measured in the same process.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/model/analytic.hpp"

namespace mptrain {

// What kind of work a backend op is, for the step's breakdown.
enum class OpKind : int {
  matmul = 0,     // gemm
  attention,      // attention_forward / attention_backward (their inner products included)
  layernorm,      // layernorm_* (and the fused residual + LayerNorm)
  gelu,           // gelu_* (and the fused bias + GELU)
  bias_residual,  // add_bias, bias_backward, add, axpy
  embedding,      // embedding_*, position_*
  cross_entropy,  // ce_*, sum (the loss sum)
  optimizer,      // adamw, sum_squares (gradient norm), scale (clipping)
  memory,         // copy, fill, host <-> backend transfers
};
constexpr int n_op_kinds = 9;
const char* op_kind_name(OpKind kind);

// A Backend decorator: forwards every op to the real backend and accumulates the wall time of
// each op kind (synchronizing the real backend before and after each op, so asynchronous
// backends are charged correctly), the time of each distinct GEMM shape, and the backend
// memory allocated. Meant for a separate profiled pass: the headline timing uses the real
// backend directly.
class TimingBackend final : public Backend {
 public:
  explicit TimingBackend(std::unique_ptr<Backend> inner);

  struct GemmKey {
    bool trans_a, trans_b;
    int m, n, k;
    auto tie() const { return std::tie(trans_a, trans_b, m, n, k); }
    bool operator<(const GemmKey& o) const { return tie() < o.tie(); }
  };
  struct Stat {
    double seconds = 0;
    long calls = 0;
  };
  Backend& inner() { return *inner_; }
  const std::array<Stat, n_op_kinds>& kinds() const { return kinds_; }
  const std::map<GemmKey, Stat>& gemms() const { return gemms_; }
  void reset_times();
  size_t live_bytes() const { return live_bytes_; }
  size_t peak_bytes() const { return peak_bytes_; }
  long allocations() const { return allocations_; }  // alloc() and alloc_int() calls so far

  std::string name() const override { return inner_->name(); }
  int threads() const override { return inner_->threads(); }
  float* alloc(size_t n) override;
  void release(float* p) override;
  int32_t* alloc_int(size_t n) override;
  void release_int(int32_t* p) override;
  void to_host(float* host, const float* dev, size_t n) override;
  void to_device(float* dev, const float* host, size_t n) override;
  void to_device_int(int32_t* dev, const int32_t* host, size_t n) override;
  void copy(float* dst, const float* src, size_t n) override;
  void fill(float* x, float value, size_t n) override;
  void synchronize() override { inner_->synchronize(); }
  bool host_accessible() const override { return inner_->host_accessible(); }
  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) override;
  void add_bias(float* out, const float* bias, int rows, int cols) override;
  void bias_backward(float* dbias, const float* dout, int rows, int cols) override;
  void add_bias_residual(float* out, const float* bias, const float* res, int rows,
                         int cols) override;
  void axpy(float* y, const float* x, float alpha, size_t n) override;
  void add(float* out, const float* a, const float* b, size_t n) override;
  void scale(float* x, float alpha, size_t n) override;
  void gelu_forward(float* out, const float* inp, size_t n) override;
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override;
  void bias_gelu_forward(float* pre, float* out, const float* bias, int rows,
                         int cols) override;
  void gelu_bias_backward(float* dinp, float* dbias, const float* pre, const float* dout,
                          int rows, int cols) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override;
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override;
  void residual_layernorm_forward(float* res, float* out, float* mean, float* rstd,
                                  const float* x, const float* bias_r, const float* weight,
                                  const float* bias, int N, int C) override;
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH,
                         int HS) override;
  void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                          const float* att, int B, int T, int NH, int HS) override;
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int vocab_start,
                         int V, int N, int C) override;
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int vocab_start,
                          int V, int N, int C) override;
  void position_forward(float* out, const float* wpe, int B, int T, int C) override;
  void position_backward(float* dwpe, const float* dout, int B, int T, int C) override;
  void ce_row_max(float* row_max, const float* logits, int N, int V, int ld) override;
  void ce_row_sumexp(float* row_sum, const float* logits, const float* row_max, int N, int V,
                     int ld) override;
  void ce_target_logit(float* target_logit, const float* logits, const int32_t* targets,
                       int vocab_start, int N, int V, int ld) override;
  void ce_losses(float* losses, const float* row_max, const float* row_sum,
                 const float* target_logit, int N) override;
  void ce_backward(float* dlogits, const float* logits, const float* row_max, const float* row_sum,
                   const int32_t* targets, int vocab_start, int N, int V, int ld,
                   float scale) override;
  void adamw(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
             float beta2, float eps, float weight_decay, long t) override;
  void adamw_step(float* param, float* grad, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, long t, float grad_scale,
                  bool zero_grad) override;
  double sum_squares(const float* x, size_t n) override;
  double sum(const float* x, size_t n) override;

 private:
  template <class F>
  void timed(OpKind kind, F&& f);
  void allocated(const void* p, size_t bytes);  // the memory counts of alloc*()
  void releasing(const void* p);                // and of release*()
  std::unique_ptr<Backend> inner_;
  std::array<Stat, n_op_kinds> kinds_{};
  std::map<GemmKey, Stat> gemms_;
  std::unordered_map<const void*, size_t> sizes_;
  size_t live_bytes_ = 0, peak_bytes_ = 0;
  long allocations_ = 0;
};

// Times `call` (work on `backend`, synchronized after each call) and returns the seconds per
// call: one warm-up call, then the median over `trials` trials of at least `min_seconds` (and
// two calls) each. Not collective. (The GEMM ceiling and mptrain-plan --measure time with it.)
double median_seconds_per_call(Backend& backend, const std::function<void()>& call,
                               double min_seconds, int trials);

// Times backend.gemm on each shape (operands allocated with the backend, filled with small
// values; synchronized) and returns the seconds per call, the median over `trials` trials of
// at least `min_seconds` each. Not collective.
std::vector<double> measure_gemm_seconds(Backend& backend, const std::vector<GemmShape>& shapes,
                                         double min_seconds, int trials);

}  // namespace mptrain
