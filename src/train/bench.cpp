// The benchmark's library half: the timing decorator and the GEMM rate measurement. See
// include/mptrain/train/bench.hpp.
#include "mptrain/train/bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "mptrain/core/error.hpp"

namespace mptrain {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::matmul: return "matmul";
    case OpKind::attention: return "attention";
    case OpKind::layernorm: return "layernorm";
    case OpKind::gelu: return "gelu";
    case OpKind::bias_residual: return "bias+residual";
    case OpKind::embedding: return "embedding";
    case OpKind::cross_entropy: return "cross-entropy";
    case OpKind::optimizer: return "optimizer";
    case OpKind::memory: return "copy/fill";
  }
  return "?";
}

// ------------------------------------------------------------------ timing decorator

TimingBackend::TimingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {
  MPT_CHECK(inner_ != nullptr, "TimingBackend needs a backend");
}

template <class F>
void TimingBackend::timed(OpKind kind, F&& f) {
  inner_->synchronize();
  const double t0 = now();
  f();
  inner_->synchronize();
  Stat& s = kinds_[static_cast<int>(kind)];
  s.seconds += now() - t0;
  ++s.calls;
}

void TimingBackend::reset_times() {
  kinds_ = {};
  for (auto& [key, stat] : gemms_) stat = Stat{};
}

void TimingBackend::allocated(const void* p, size_t bytes) {
  sizes_[p] = bytes;
  live_bytes_ += bytes;
  peak_bytes_ = std::max(peak_bytes_, live_bytes_);
  ++allocations_;
}
void TimingBackend::releasing(const void* p) {
  auto it = sizes_.find(p);
  if (it == sizes_.end()) return;
  live_bytes_ -= it->second;
  sizes_.erase(it);
}

float* TimingBackend::alloc(size_t n) {
  float* p = inner_->alloc(n);
  allocated(p, n * sizeof(float));
  return p;
}
void TimingBackend::release(float* p) {
  releasing(p);
  inner_->release(p);
}
int32_t* TimingBackend::alloc_int(size_t n) {
  int32_t* p = inner_->alloc_int(n);
  allocated(p, n * sizeof(int32_t));
  return p;
}
void TimingBackend::release_int(int32_t* p) {
  releasing(p);
  inner_->release_int(p);
}

void TimingBackend::to_host(float* host, const float* dev, size_t n) {
  timed(OpKind::memory, [&] { inner_->to_host(host, dev, n); });
}
void TimingBackend::to_device(float* dev, const float* host, size_t n) {
  timed(OpKind::memory, [&] { inner_->to_device(dev, host, n); });
}
void TimingBackend::to_device_int(int32_t* dev, const int32_t* host, size_t n) {
  timed(OpKind::memory, [&] { inner_->to_device_int(dev, host, n); });
}
void TimingBackend::copy(float* dst, const float* src, size_t n) {
  timed(OpKind::memory, [&] { inner_->copy(dst, src, n); });
}
void TimingBackend::fill(float* x, float value, size_t n) {
  timed(OpKind::memory, [&] { inner_->fill(x, value, n); });
}

void TimingBackend::gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                         const float* a, int lda, const float* b, int ldb, float beta, float* c,
                         int ldc) {
  inner_->synchronize();
  const double t0 = now();
  inner_->gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  inner_->synchronize();
  const double dt = now() - t0;
  Stat& s = kinds_[static_cast<int>(OpKind::matmul)];
  s.seconds += dt;
  ++s.calls;
  Stat& g = gemms_[GemmKey{trans_a, trans_b, m, n, k}];
  g.seconds += dt;
  ++g.calls;
}
void TimingBackend::add_bias(float* out, const float* bias, int rows, int cols) {
  timed(OpKind::bias_residual, [&] { inner_->add_bias(out, bias, rows, cols); });
}
void TimingBackend::bias_backward(float* dbias, const float* dout, int rows, int cols) {
  timed(OpKind::bias_residual, [&] { inner_->bias_backward(dbias, dout, rows, cols); });
}
void TimingBackend::add_bias_residual(float* out, const float* bias, const float* res, int rows,
                                      int cols) {
  timed(OpKind::bias_residual, [&] { inner_->add_bias_residual(out, bias, res, rows, cols); });
}
void TimingBackend::axpy(float* y, const float* x, float alpha, size_t n) {
  timed(OpKind::bias_residual, [&] { inner_->axpy(y, x, alpha, n); });
}
void TimingBackend::add(float* out, const float* a, const float* b, size_t n) {
  timed(OpKind::bias_residual, [&] { inner_->add(out, a, b, n); });
}
void TimingBackend::scale(float* x, float alpha, size_t n) {
  timed(OpKind::optimizer, [&] { inner_->scale(x, alpha, n); });
}
void TimingBackend::gelu_forward(float* out, const float* inp, size_t n) {
  timed(OpKind::gelu, [&] { inner_->gelu_forward(out, inp, n); });
}
void TimingBackend::gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
  timed(OpKind::gelu, [&] { inner_->gelu_backward(dinp, inp, dout, n); });
}
void TimingBackend::bias_gelu_forward(float* pre, float* out, const float* bias, int rows,
                                      int cols) {
  timed(OpKind::gelu, [&] { inner_->bias_gelu_forward(pre, out, bias, rows, cols); });
}
void TimingBackend::gelu_bias_backward(float* dinp, float* dbias, const float* pre,
                                       const float* dout, int rows, int cols) {
  timed(OpKind::gelu, [&] { inner_->gelu_bias_backward(dinp, dbias, pre, dout, rows, cols); });
}
void TimingBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                      const float* weight, const float* bias, int N, int C) {
  timed(OpKind::layernorm,
        [&] { inner_->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C); });
}
void TimingBackend::layernorm_backward(float* dinp, float* dweight, float* dbias,
                                       const float* dout, const float* inp, const float* weight,
                                       const float* mean, const float* rstd, int N, int C) {
  timed(OpKind::layernorm, [&] {
    inner_->layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  });
}
void TimingBackend::residual_layernorm_forward(float* res, float* out, float* mean, float* rstd,
                                               const float* x, const float* bias_r,
                                               const float* weight, const float* bias, int N,
                                               int C) {
  timed(OpKind::layernorm, [&] {
    inner_->residual_layernorm_forward(res, out, mean, rstd, x, bias_r, weight, bias, N, C);
  });
}
void TimingBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T,
                                      int NH, int HS) {
  timed(OpKind::attention, [&] { inner_->attention_forward(out, att, qkv, B, T, NH, HS); });
}
void TimingBackend::attention_backward(float* dqkv, float* datt, const float* dout,
                                       const float* qkv, const float* att, int B, int T, int NH,
                                       int HS) {
  timed(OpKind::attention,
        [&] { inner_->attention_backward(dqkv, datt, dout, qkv, att, B, T, NH, HS); });
}
void TimingBackend::embedding_forward(float* out, const int32_t* tokens, const float* wte,
                                      int vocab_start, int V, int N, int C) {
  timed(OpKind::embedding,
        [&] { inner_->embedding_forward(out, tokens, wte, vocab_start, V, N, C); });
}
void TimingBackend::embedding_backward(float* dwte, const float* dout, const int32_t* tokens,
                                       int vocab_start, int V, int N, int C) {
  timed(OpKind::embedding,
        [&] { inner_->embedding_backward(dwte, dout, tokens, vocab_start, V, N, C); });
}
void TimingBackend::position_forward(float* out, const float* wpe, int B, int T, int C) {
  timed(OpKind::embedding, [&] { inner_->position_forward(out, wpe, B, T, C); });
}
void TimingBackend::position_backward(float* dwpe, const float* dout, int B, int T, int C) {
  timed(OpKind::embedding, [&] { inner_->position_backward(dwpe, dout, B, T, C); });
}
void TimingBackend::ce_row_max(float* row_max, const float* logits, int N, int V, int ld) {
  timed(OpKind::cross_entropy, [&] { inner_->ce_row_max(row_max, logits, N, V, ld); });
}
void TimingBackend::ce_row_sumexp(float* row_sum, const float* logits, const float* row_max,
                                  int N, int V, int ld) {
  timed(OpKind::cross_entropy, [&] { inner_->ce_row_sumexp(row_sum, logits, row_max, N, V, ld); });
}
void TimingBackend::ce_target_logit(float* target_logit, const float* logits,
                                    const int32_t* targets, int vocab_start, int N, int V,
                                    int ld) {
  timed(OpKind::cross_entropy, [&] {
    inner_->ce_target_logit(target_logit, logits, targets, vocab_start, N, V, ld);
  });
}
void TimingBackend::ce_losses(float* losses, const float* row_max, const float* row_sum,
                              const float* target_logit, int N) {
  timed(OpKind::cross_entropy,
        [&] { inner_->ce_losses(losses, row_max, row_sum, target_logit, N); });
}
void TimingBackend::ce_backward(float* dlogits, const float* logits, const float* row_max,
                                const float* row_sum, const int32_t* targets, int vocab_start,
                                int N, int V, int ld, float scale) {
  timed(OpKind::cross_entropy, [&] {
    inner_->ce_backward(dlogits, logits, row_max, row_sum, targets, vocab_start, N, V, ld, scale);
  });
}
void TimingBackend::adamw(float* param, const float* grad, float* m, float* v, size_t n, float lr,
                          float beta1, float beta2, float eps, float weight_decay, long t) {
  timed(OpKind::optimizer, [&] {
    inner_->adamw(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
  });
}
void TimingBackend::adamw_step(float* param, float* grad, float* m, float* v, size_t n, float lr,
                               float beta1, float beta2, float eps, float weight_decay, long t,
                               float grad_scale, bool zero_grad) {
  timed(OpKind::optimizer, [&] {
    inner_->adamw_step(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, t, grad_scale,
                       zero_grad);
  });
}
double TimingBackend::sum_squares(const float* x, size_t n) {
  double r = 0;
  timed(OpKind::optimizer, [&] { r = inner_->sum_squares(x, n); });
  return r;
}
double TimingBackend::sum(const float* x, size_t n) {
  double r = 0;
  timed(OpKind::cross_entropy, [&] { r = inner_->sum(x, n); });
  return r;
}

// ------------------------------------------------------------------ the GEMM ceiling

double median_seconds_per_call(Backend& be, const std::function<void()>& call, double min_seconds,
                               int trials) {
  call();  // warm-up: OpenBLAS buffers, caches, thread pool
  be.synchronize();
  std::vector<double> per_call;
  for (int t = 0; t < std::max(1, trials); ++t) {
    long reps = 0;
    const double t0 = now();
    double elapsed = 0;
    do {
      call();
      ++reps;
      be.synchronize();
      elapsed = now() - t0;
    } while (elapsed < min_seconds || reps < 2);
    per_call.push_back(elapsed / double(reps));
  }
  std::sort(per_call.begin(), per_call.end());
  return per_call[per_call.size() / 2];
}

std::vector<double> measure_gemm_seconds(Backend& be, const std::vector<GemmShape>& shapes,
                                         double min_seconds, int trials) {
  size_t a_max = 1, b_max = 1, c_max = 1;
  for (const GemmShape& g : shapes) {
    a_max = std::max(a_max, size_t(g.m) * g.k);
    b_max = std::max(b_max, size_t(g.k) * g.n);
    c_max = std::max(c_max, size_t(g.m) * g.n);
  }
  float* a = be.alloc(a_max);
  float* b = be.alloc(b_max);
  float* c = be.alloc(c_max);
  {
    // Small values of both signs, so that nothing overflows however often beta = 1 adds up.
    std::vector<float> host(std::max(a_max, b_max));
    for (size_t i = 0; i < host.size(); ++i) host[i] = float(int(i * 2654435761u % 17) - 8) * 1e-3f;
    be.to_device(a, host.data(), a_max);
    be.to_device(b, host.data(), b_max);
  }
  std::vector<double> seconds;
  for (const GemmShape& g : shapes) {
    const int lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n, ldc = g.n;
    auto call = [&] {
      be.gemm(g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0f, a, lda, b, ldb, g.beta, c, ldc);
    };
    seconds.push_back(median_seconds_per_call(be, call, min_seconds, trials));
  }
  be.release(a);
  be.release(b);
  be.release(c);
  return seconds;
}

}  // namespace mptrain
