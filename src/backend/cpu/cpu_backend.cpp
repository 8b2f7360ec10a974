// The CPU backend: every op of the Backend interface on host memory, with OpenBLAS for the
// matrix products and OpenMP for everything else. Causal attention lives in cpu_attention.cpp.
//
// Threading, one model per call site:
//  - gemm() calls OpenBLAS from the serial part of the program; the OpenMP build of OpenBLAS
//    runs it on the shared OpenMP pool with the thread count set in the constructor (a
//    process-wide setting, which gemm() puts back if anything changed it since).
//  - every other op is an OpenMP loop with num_threads(threads_) and a static schedule, and
//    calls no BLAS (attention excepted, see cpu_attention.cpp). Regions never nest: the loop
//    bodies call the single-threaded vector kernels below (one row or one contiguous chunk
//    each), compiled for AVX2 and the baseline (MPT_SIMD_CLONES, cpu_math.hpp).
// The fused ops (bias + GELU, GELU backward + bias gradient, residual + LayerNorm, bias +
// residual, AdamW + clipping + zeroing) make one pass over memory where the basic ops make two
// or three, and give the same bits as the basic ops in sequence (test_backend_fused.cpp).
// Determinism: no op uses atomics or dynamic schedules, and every reduction adds its terms in
// an order that depends only on the sizes, never on the thread count: reductions over rows
// (bias, LayerNorm weight/bias) add fixed chunks of rows into per-chunk partial sums and those
// in chunk order (column_sums); embedding and position gradients give each thread whole
// columns and walk the rows in order; sum() and sum_squares() add fixed chunks in chunk order;
// sums inside a row run in fixed lanes (cpu_math.hpp). So runs are bit-identical with the same
// thread count, and every op but gemm (and attention with a pthreads OpenBLAS) even across
// thread counts.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu_kernels.hpp"
#include "cpu_math.hpp"
#include "cpu_vector.hpp"
#include "mptrain/backend/backend.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain {
namespace cpu {

namespace {

// Element-wise loops shorter than this run on one thread: the fork/join would cost more.
constexpr size_t kMinParallel = size_t{1} << 14;
// Reductions over rows work on blocks of this many columns, one block per task.
constexpr int kColBlock = 32;
// sum() and sum_squares() split the input into this many chunks, whatever the thread count.
constexpr int kReduceChunks = 256;

constexpr size_t idx(int row, int ld) { return static_cast<size_t>(row) * ld; }

}  // namespace

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  if (!check_gemm_call(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool blas_nests_in_openmp() {
  const int parallel = openblas_get_parallel();  // 0 sequential, 1 pthreads, 2 OpenMP
  return parallel == 0 || parallel == 2;
}

namespace {

// Element-wise work on n elements is cut into chunks of this many, shared statically.
constexpr size_t kChunk = 4096;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads), nested_blas_(blas_nests_in_openmp()) {
    MPT_CHECK(threads > 0, "CPU backend: threads must be > 0, got " + std::to_string(threads));
    // Process-wide OpenBLAS setting (the OpenMP build also calls omp_set_num_threads for the
    // calling thread). OpenBLAS may clamp it to the cores it sees; remember what it took.
    openblas_set_num_threads(threads);
    blas_threads_ = openblas_get_num_threads();
  }

  std::string name() const override { return "cpu"; }
  int threads() const override { return threads_; }

  // ---- memory ----
  float* alloc(size_t n) override { return static_cast<float*>(aligned_zeroed(n, sizeof(float))); }
  void release(float* p) override { std::free(p); }
  int32_t* alloc_int(size_t n) override {
    return static_cast<int32_t*>(aligned_zeroed(n, sizeof(int32_t)));
  }
  void release_int(int32_t* p) override { std::free(p); }
  void to_host(float* host, const float* dev, size_t n) override {
    copy_bytes(host, dev, n * sizeof(float));
  }
  void to_device(float* dev, const float* host, size_t n) override {
    copy_bytes(dev, host, n * sizeof(float));
  }
  void to_device_int(int32_t* dev, const int32_t* host, size_t n) override {
    copy_bytes(dev, host, n * sizeof(int32_t));
  }
  void copy(float* dst, const float* src, size_t n) override {
    copy_bytes(dst, src, n * sizeof(float));
  }
  void fill(float* x, float value, size_t n) override {
#pragma omp parallel for simd schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) x[i] = value;
  }
  void synchronize() override {}  // every op has finished when it returns
  bool host_accessible() const override { return true; }

  // ---- dense linear algebra ----
  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) override {
    // The OpenMP build of OpenBLAS sizes its team from omp_get_max_threads() of the caller;
    // put our setting back if another backend object (or anyone) has changed either.
    if (openblas_get_num_threads() != blas_threads_ || omp_get_max_threads() != blas_threads_)
      openblas_set_num_threads(threads_);
    sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  void add_bias(float* out, const float* bias, int rows, int cols) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(rows, cols))
    for (int r = 0; r < rows; r++) {
      float* o = out + idx(r, cols);  // (cols)
#pragma omp simd
      for (int c = 0; c < cols; c++) o[c] += bias[c];
    }
  }

  void bias_backward(float* dbias, const float* dout, int rows, int cols) override {
    column_sums(rows, cols, [&](int r, double* acc) { add_row(acc, dout + idx(r, cols), cols); },
                [&](int j, double sum) { dbias[j] += static_cast<float>(sum); });
  }

  void add_bias_residual(float* out, const float* bias, const float* res, int rows,
                         int cols) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(rows, cols))
    for (int r = 0; r < rows; r++) {
      float* o = out + idx(r, cols);        // (cols)
      const float* x = res + idx(r, cols);  // (cols)
#pragma omp simd
      for (int c = 0; c < cols; c++) o[c] = (o[c] + bias[c]) + x[c];
    }
  }

  // ---- element-wise ----
  void axpy(float* y, const float* x, float alpha, size_t n) override {
#pragma omp parallel for simd schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
  }
  void add(float* out, const float* a, const float* b, size_t n) override {
    // Element i reads a[i] and b[i] before writing out[i], so out may alias a or b.
#pragma omp parallel for simd schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
  }
  void scale(float* x, float alpha, size_t n) override {
#pragma omp parallel for simd schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
  }

  // GELU (tanh approximation) through the vectorizable tanh of cpu_math.hpp.
  void gelu_forward(float* out, const float* inp, size_t n) override {
    const long chunks = long((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (long c = 0; c < chunks; c++) {
      const size_t b = size_t(c) * kChunk;
      gelu_range(out + b, inp + b, std::min(kChunk, n - b));
    }
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    const long chunks = long((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (long c = 0; c < chunks; c++) {
      const size_t b = size_t(c) * kChunk;
      gelu_backward_range(dinp + b, inp + b, dout + b, std::min(kChunk, n - b));
    }
  }
  void bias_gelu_forward(float* pre, float* out, const float* bias, int rows, int cols) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(rows, cols))
    for (int r = 0; r < rows; r++)
      bias_gelu_row(pre + idx(r, cols), out + idx(r, cols), bias, cols);  // (cols)
  }
  void gelu_bias_backward(float* dinp, float* dbias, const float* pre, const float* dout,
                          int rows, int cols) override {
    // One pass: each row's gradient is computed and added to its chunk's column sums (dout is
    // read before dinp is written, so they may alias).
    column_sums(
        rows, cols,
        [&](int r, double* acc) {
          gelu_grad_acc_row(dinp + idx(r, cols), acc, pre + idx(r, cols), dout + idx(r, cols),
                            cols);
        },
        [&](int j, double sum) { dbias[j] += static_cast<float>(sum); });
  }


  // ---- LayerNorm ----
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int i = 0; i < N; i++)
      layernorm_row(out + idx(i, C), mean + i, rstd + i, nullptr, inp + idx(i, C), nullptr,
                    nullptr, weight, bias, C);
  }

  void residual_layernorm_forward(float* res, float* out, float* mean, float* rstd,
                                  const float* x, const float* bias_r, const float* weight,
                                  const float* bias, int N, int C) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int i = 0; i < N; i++)  // res(C) = (res + bias_r) + x, then LayerNorm of it
      layernorm_row(out + idx(i, C), mean + i, rstd + i, res + idx(i, C), nullptr, bias_r,
                    x + idx(i, C), weight, bias, C);
  }

  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    // One pass over the rows: dweight(C) += sum_i dout * xhat and dbias(C) += sum_i dout (the
    // chunk's partial sums, acc = [w | b]), then dinp(C) += rstd * (g - mean(g) - xhat *
    // mean(g * xhat)), g = weight * dout. A row's dout is read before its dinp is written, so
    // dinp may alias dout.
    column_sums(
        N, 2 * C,
        [&](int i, double* acc) {
          const float* d = dout + idx(i, C);
          const float* x = inp + idx(i, C);
          layernorm_param_grad_row(acc, acc + C, d, x, mean[i], rstd[i], C);
          layernorm_backward_row(dinp + idx(i, C), d, x, weight, mean[i], rstd[i], C);
        },
        [&](int j, double sum) {
          if (j < C) dweight[j] += static_cast<float>(sum);
          else dbias[j - C] += static_cast<float>(sum);
        });
  }

  // ---- attention (cpu_attention.cpp) ----
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH,
                         int HS) override {
    cpu::attention_forward(out, att, qkv, B, T, NH, HS, threads_, nested_blas_);
  }
  void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                          const float* att, int B, int T, int NH, int HS) override {
    cpu::attention_backward(dqkv, datt, dout, qkv, att, B, T, NH, HS, threads_, nested_blas_);
  }

  // ---- embeddings ----
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int vocab_start,
                         int V, int N, int C) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int i = 0; i < N; i++) {
      const int row = tokens[i] - vocab_start;
      float* o = out + idx(i, C);  // (C)
      if (row >= 0 && row < V)
        std::memcpy(o, wte + idx(row, C), sizeof(float) * C);
      else
        std::fill_n(o, C, 0.0f);  // another TP rank owns this token
    }
  }

  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int vocab_start,
                          int V, int N, int C) override {
    // Several positions may hold the same token, so rows of dwte collide. Each thread takes
    // whole column blocks and walks the positions in order: no races, a fixed order.
    const int blocks = (C + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int blk = 0; blk < blocks; blk++) {
      const int c0 = blk * kColBlock, width = std::min(kColBlock, C - c0);
      for (int i = 0; i < N; i++) {
        const int row = tokens[i] - vocab_start;
        if (row < 0 || row >= V) continue;
        float* dw = dwte + idx(row, C) + c0;
        const float* d = dout + idx(i, C) + c0;
        for (int j = 0; j < width; j++) dw[j] += d[j];
      }
    }
  }

  void position_forward(float* out, const float* wpe, int B, int T, int C) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(B * T, C))
    for (int bt = 0; bt < B * T; bt++) {
      float* o = out + idx(bt, C);            // (C)
      const float* p = wpe + idx(bt % T, C);  // (C)
#pragma omp simd
      for (int c = 0; c < C; c++) o[c] += p[c];
    }
  }

  void position_backward(float* dwpe, const float* dout, int B, int T, int C) override {
    // Each position t is one task that adds the B rows in order.
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(B * T, C))
    for (int t = 0; t < T; t++) {
      float* dp = dwpe + idx(t, C);  // (C)
      for (int b = 0; b < B; b++) {
        const float* d = dout + idx(b * T + t, C);
#pragma omp simd
        for (int c = 0; c < C; c++) dp[c] += d[c];
      }
    }
  }

  // ---- vocab-parallel cross-entropy ----
  void ce_row_max(float* row_max, const float* logits, int N, int V, int ld) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, V))
    for (int i = 0; i < N; i++) {
      const float* l = logits + idx(i, ld);  // (V), padding ignored
      float mx = -FLT_MAX;                   // the identity of the MAX all-reduce
      for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
      row_max[i] = mx;
    }
  }

  void ce_row_sumexp(float* row_sum, const float* logits, const float* row_max, int N, int V,
                     int ld) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, V))
    for (int i = 0; i < N; i++) {
      const float* l = logits + idx(i, ld);
      const float mx = row_max[i];
      // V can be ~50k terms: double, in fixed lanes; exp_approx as in ce_backward
      row_sum[i] = static_cast<float>(sumexp_row(l, mx, V));
    }
  }

  void ce_target_logit(float* target_logit, const float* logits, const int32_t* targets,
                       int vocab_start, int N, int V, int ld) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (N >= 4096)
    for (int i = 0; i < N; i++) {
      const int col = targets[i] - vocab_start;
      target_logit[i] = (col >= 0 && col < V) ? logits[idx(i, ld) + col] : 0.0f;
    }
  }

  void ce_losses(float* losses, const float* row_max, const float* row_sum,
                 const float* target_logit, int N) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (N >= 4096)
    for (int i = 0; i < N; i++)
      losses[i] = static_cast<float>(std::log(static_cast<double>(row_sum[i])) +
                                     static_cast<double>(row_max[i]) - target_logit[i]);
  }

  void ce_backward(float* dlogits, const float* logits, const float* row_max, const float* row_sum,
                   const int32_t* targets, int vocab_start, int N, int V, int ld,
                   float scale) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, ld))
    for (int i = 0; i < N; i++) {
      const float* l = logits + idx(i, ld);
      float* dl = dlogits + idx(i, ld);  // may be l itself: each element is read, then written
      const float mx = row_max[i];
      const float inv_sum = 1.0f / row_sum[i];
      const int col = targets[i] - vocab_start;
      ce_backward_row(dl, l, mx, inv_sum, col, scale, V);
      for (int j = V; j < ld; j++) dl[j] = 0.0f;
    }
  }

  // ---- optimizer and reductions ----
  void adamw(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
             float beta2, float eps, float weight_decay, long t) override {
    MPT_CHECK(t >= 1, "adamw: step t is 1-based, got " + std::to_string(t));
    // Bias corrections in double: beta2^t stays away from 1 - 1 = 0 for small t.
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t));
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) {
      const float g = grad[i];
      const float mi = beta1 * m[i] + (1.0f - beta1) * g;
      const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      const float mhat = mi / bc1, vhat = vi / bc2;
      param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * param[i]);
    }
  }

  void adamw_step(float* param, float* grad, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, long t, float grad_scale,
                  bool zero_grad) override {
    MPT_CHECK(t >= 1, "adamw: step t is 1-based, got " + std::to_string(t));
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t));
    const bool rescale = grad_scale != 1.0f;
    // One pass over the four arrays instead of three (scale, adamw, fill); the same float
    // operations in the same order, so the same bits.
    const long chunks = long((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (long c = 0; c < chunks; c++) {
      const size_t b = size_t(c) * kChunk;
      adamw_range(param + b, grad + b, m + b, v + b, std::min(kChunk, n - b), lr, beta1, beta2,
                  eps, weight_decay, bc1, bc2, grad_scale, rescale, zero_grad);
    }
  }

  double sum_squares(const float* x, size_t n) override {
    return chunked_sum(x, n, [](float a) { return static_cast<double>(a) * a; });
  }
  double sum(const float* x, size_t n) override {
    return chunked_sum(x, n, [](float a) { return static_cast<double>(a); });
  }

 private:
  // Reductions over rows (bias, LayerNorm weight and bias gradients), fused with the
  // element-wise work on those rows: rows are cut into fixed chunks of kRowChunk; each chunk,
  // one task, adds its rows in order into its own partial sums (row_fn(r, acc) adds row r into
  // acc(width)), walking memory row after row; then the chunk sums are added in chunk order and
  // handed to out(j, sum). The order depends on the sizes only, never on the thread count.
  // The partial sums live in a buffer kept between calls (no allocation in steady state).
  static constexpr int kRowChunk = 64;
  template <class RowFn, class Out>
  void column_sums(int rows, int width, RowFn row_fn, Out out) {
    const int chunks = std::max(1, (rows + kRowChunk - 1) / kRowChunk);
    const size_t need = size_t(chunks) * size_t(width);
    if (partials_.size() < need) partials_.resize(need);
    double* part = partials_.data();
#pragma omp parallel num_threads(threads_) if (big(rows, width))
    {
#pragma omp for schedule(static)
      for (int k = 0; k < chunks; k++) {
        double* acc = part + size_t(k) * width;
        std::fill_n(acc, width, 0.0);
        const int r1 = std::min(rows, (k + 1) * kRowChunk);
        for (int r = k * kRowChunk; r < r1; r++) row_fn(r, acc);
      }
      // (the implicit barrier of the loop above: every chunk is done)
      const int blocks = (width + kColBlock - 1) / kColBlock;
#pragma omp for schedule(static)
      for (int blk = 0; blk < blocks; blk++) {
        const int c0 = blk * kColBlock, w = std::min(kColBlock, width - c0);
        double sum[kColBlock] = {};
        for (int k = 0; k < chunks; k++) {
          const double* p = part + size_t(k) * width + c0;
          for (int j = 0; j < w; j++) sum[j] += p[j];
        }
        for (int j = 0; j < w; j++) out(c0 + j, sum[j]);
      }
    }
  }

  // Worth a parallel region: rows * cols above the element-wise threshold.
  static bool big(int rows, int cols) {
    return static_cast<size_t>(rows) * static_cast<size_t>(cols) >= kMinParallel;
  }

  void* aligned_zeroed(size_t n, size_t elem) {
    // 64 bytes: a cache line and an AVX-512 vector. Zero elements still get a valid pointer.
    const size_t count = std::max<size_t>(n, 1);
    if (count > std::numeric_limits<size_t>::max() / elem)
      MPT_FATAL("CPU backend: allocation of " + std::to_string(n) + " elements overflows");
    const size_t bytes = count * elem;
    void* p = nullptr;
    if (posix_memalign(&p, 64, bytes) != 0)
      mptrain::fatal(__FILE__, __LINE__,
                     "CPU backend: out of memory allocating " + std::to_string(bytes) + " bytes",
                     "use a smaller micro_batch, more tensor/pipeline parallelism or more nodes");
    // Zeroed by the same static split of threads as the ops use: on a multi-socket node the
    // first touch places each page near the threads that will work on it.
    unsigned char* z = static_cast<unsigned char*>(p);
#pragma omp parallel for schedule(static) num_threads(threads_) if (bytes >= 4 * kMinParallel)
    for (size_t i = 0; i < bytes; i++) z[i] = 0;
    return p;
  }

  static void copy_bytes(void* dst, const void* src, size_t bytes) {
    if (bytes && dst != src) std::memcpy(dst, src, bytes);
  }

  // Sum of f(x[i]) in double: kReduceChunks fixed chunks, each summed in order by one thread,
  // then the chunk sums in chunk order, so the result is the same for any thread count.
  template <class F>
  double chunked_sum(const float* x, size_t n, F f) {
    const size_t chunk = (n + kReduceChunks - 1) / kReduceChunks;
    double partial[kReduceChunks] = {};
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (int c = 0; c < kReduceChunks; c++) {
      const size_t begin = std::min(n, c * chunk), end = std::min(n, begin + chunk);
      partial[c] = lane_sum(x + begin, end - begin, f);
    }
    double total = 0.0;
    for (int c = 0; c < kReduceChunks; c++) total += partial[c];
    return total;
  }

  const int threads_;
  std::vector<double> partials_;  // column_sums() scratch, grown on demand
  const bool nested_blas_;  // blas_nests_in_openmp(), read once
  int blas_threads_ = 1;    // OpenBLAS's thread count after our openblas_set_num_threads()
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<cpu::CpuBackend>(threads);
}

}  // namespace mptrain
