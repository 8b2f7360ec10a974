// The CPU backend: every op of the Backend interface on host memory, with OpenBLAS for the
// matrix products and OpenMP for everything else. Causal attention lives in cpu_attention.cpp.
//
// Threading, one model per call site:
//  - gemm() calls OpenBLAS from the serial part of the program; the OpenMP build of OpenBLAS
//    runs it on the shared OpenMP pool with the thread count set in the constructor (a
//    process-wide setting, which gemm() puts back if anything changed it since).
//  - every other op is an OpenMP loop with num_threads(threads_) and a static schedule, and
//    calls no BLAS (attention excepted, see cpu_attention.cpp).
// Determinism: no op uses atomics or dynamic schedules, and every reduction adds its terms in
// an order that depends only on the sizes, never on the thread count: reductions over rows
// (bias, LayerNorm weight/bias, embedding and position gradients) give each thread whole
// columns and walk the rows in order; sum() and sum_squares() add fixed chunks in chunk order.
// So runs are bit-identical with the same thread count, and every op but gemm (and attention
// with a pthreads OpenBLAS) even across thread counts.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "cpu_kernels.hpp"
#include "mptrain/backend.hpp"
#include "mptrain/error.hpp"

namespace mptrain {
namespace cpu {

namespace {

// Element-wise loops shorter than this run on one thread: the fork/join would cost more.
constexpr size_t kMinParallel = size_t{1} << 14;
// Reductions over rows work on blocks of this many columns, one block per task.
constexpr int kColBlock = 32;
// sum() and sum_squares() split the input into this many chunks, whatever the thread count.
constexpr int kReduceChunks = 256;
constexpr float kLayerNormEps = 1e-5f;

constexpr size_t idx(int row, int ld) { return static_cast<size_t>(row) * ld; }

}  // namespace

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  const int a_cols = trans_a ? m : k;  // A is stored (k, m) when transposed, else (m, k)
  const int b_cols = trans_b ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, a_cols) || ldb < std::max(1, b_cols) ||
      ldc < std::max(1, n))
    MPT_FATAL("gemm: bad shape m=" + std::to_string(m) + " n=" + std::to_string(n) +
              " k=" + std::to_string(k) + " lda=" + std::to_string(lda) +
              " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc) +
              (trans_a ? " A^T" : " A") + (trans_b ? " B^T" : " B"));
  if (m == 0 || n == 0) return;
  MPT_CHECK(c != nullptr && (k == 0 || (a != nullptr && b != nullptr)), "gemm: null operand");
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool blas_nests_in_openmp() {
  const int parallel = openblas_get_parallel();  // 0 sequential, 1 pthreads, 2 OpenMP
  return parallel == 0 || parallel == 2;
}

namespace {

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
    const int blocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(rows, cols))
    for (int blk = 0; blk < blocks; blk++) {
      const int c0 = blk * kColBlock, width = std::min(kColBlock, cols - c0);
      double acc[kColBlock] = {};  // this block's column sums, rows added in order
      for (int r = 0; r < rows; r++) {
        const float* d = dout + idx(r, cols) + c0;
        for (int j = 0; j < width; j++) acc[j] += d[j];
      }
      for (int j = 0; j < width; j++) dbias[c0 + j] += static_cast<float>(acc[j]);
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

  // gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
  void gelu_forward(float* out, const float* inp, size_t n) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) {
      const float x = inp[i];
      const float u = kGeluScale * (x + 0.044715f * x * x * x);
      out[i] = 0.5f * x * (1.0f + std::tanh(u));
    }
  }
  // gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (n >= kMinParallel)
    for (size_t i = 0; i < n; i++) {
      const float x = inp[i];
      const float u = kGeluScale * (x + 0.044715f * x * x * x);
      const float th = std::tanh(u);
      const float du_dx = kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
      const float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du_dx;
      dinp[i] = grad * dout[i];  // dout[i] is read first: dinp may alias dout
    }
  }

  // ---- LayerNorm ----
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override {
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int i = 0; i < N; i++) {
      const float* x = inp + idx(i, C);  // (C)
      float* o = out + idx(i, C);        // (C)
      double s = 0.0;
      for (int c = 0; c < C; c++) s += x[c];
      const float m = static_cast<float>(s / C);
      double v = 0.0;  // two-pass variance: no cancellation for rows with a large mean
      for (int c = 0; c < C; c++) {
        const double d = x[c] - m;
        v += d * d;
      }
      const float r = static_cast<float>(1.0 / std::sqrt(v / C + kLayerNormEps));
      for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
      mean[i] = m;
      rstd[i] = r;
    }
  }

  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    // dweight(C) += sum_i dout * xhat, dbias(C) += sum_i dout: a reduction over rows, done per
    // column block. It runs first so that the row pass below may overwrite dout in place.
    const int blocks = (C + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int blk = 0; blk < blocks; blk++) {
      const int c0 = blk * kColBlock, width = std::min(kColBlock, C - c0);
      double acc_w[kColBlock] = {}, acc_b[kColBlock] = {};
      for (int i = 0; i < N; i++) {
        const float* x = inp + idx(i, C) + c0;
        const float* d = dout + idx(i, C) + c0;
        const float m = mean[i], r = rstd[i];
        for (int j = 0; j < width; j++) {
          acc_w[j] += d[j] * ((x[j] - m) * r);
          acc_b[j] += d[j];
        }
      }
      for (int j = 0; j < width; j++) {
        dweight[c0 + j] += static_cast<float>(acc_w[j]);
        dbias[c0 + j] += static_cast<float>(acc_b[j]);
      }
    }
    // dinp(N,C) += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = weight * dout, per row.
#pragma omp parallel for schedule(static) num_threads(threads_) if (big(N, C))
    for (int i = 0; i < N; i++) {
      const float* x = inp + idx(i, C);
      const float* d = dout + idx(i, C);
      float* dx = dinp + idx(i, C);
      const float m = mean[i], r = rstd[i];
      double g_mean = 0.0, gx_mean = 0.0;
      for (int c = 0; c < C; c++) {
        const float g = weight[c] * d[c];
        g_mean += g;
        gx_mean += static_cast<double>(g) * ((x[c] - m) * r);
      }
      const float gm = static_cast<float>(g_mean / C), gxm = static_cast<float>(gx_mean / C);
      for (int c = 0; c < C; c++) {
        const float xhat = (x[c] - m) * r;
        dx[c] += r * (weight[c] * d[c] - gm - xhat * gxm);
      }
    }
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
      double s = 0.0;  // V can be ~50k terms
      for (int j = 0; j < V; j++) s += std::exp(l[j] - mx);
      row_sum[i] = static_cast<float>(s);
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
      for (int j = 0; j < V; j++) {
        const float p = std::exp(l[j] - mx) * inv_sum;
        dl[j] = scale * (p - (j == col ? 1.0f : 0.0f));
      }
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

  double sum_squares(const float* x, size_t n) override {
    return chunked_sum(x, n, [](float a) { return static_cast<double>(a) * a; });
  }
  double sum(const float* x, size_t n) override {
    return chunked_sum(x, n, [](float a) { return static_cast<double>(a); });
  }

 private:
  static constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)

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
      double s = 0.0;
      for (size_t i = begin; i < end; i++) s += f(x[i]);
      partial[c] = s;
    }
    double total = 0.0;
    for (int c = 0; c < kReduceChunks; c++) total += partial[c];
    return total;
  }

  const int threads_;
  const bool nested_blas_;  // blas_nests_in_openmp(), read once
  int blas_threads_ = 1;    // OpenBLAS's thread count after our openblas_set_num_threads()
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<cpu::CpuBackend>(threads);
}

}  // namespace mptrain
