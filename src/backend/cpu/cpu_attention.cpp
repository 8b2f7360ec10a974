// Causal multi-head self-attention on the CPU: the part of the attention layer between the QKV
// projection and the output projection, forward and backward side by side.
//
// For each (batch b, head h) the queries, keys and values are (T, HS) strided views into qkv
// (leading dimension 3*NH*HS), so every product is one sgemm on those views with no copies:
//   forward:  S = q k^T / sqrt(HS);  att = softmax_causal(S);  out = att v
//   backward: datt = dout v^T;  dS = att * (datt - rowsum(att * datt)) / sqrt(HS);
//             dq = dS k;  dk = dS^T q;  dv = att^T dout
// Rows are processed in blocks of kRowBlock so that a block of query rows only multiplies the
// keys it can see (columns [0, end of block)): that skips almost all of the masked upper half
// at the price of a few sgemm calls per head.
//
// Threading: the (b, h) pairs are independent, so they are shared among the OpenMP threads with
// a static schedule and every sgemm inside runs single-threaded (OpenBLAS's OpenMP build does
// that by itself inside an active parallel region). For GPT-sized heads (T up to ~1k, HS 64)
// one head's products are too small for a multi-threaded sgemm to scale, while B*NH is usually
// at least the thread count. Each (b, h) is computed by one thread in a fixed order, so the
// result does not depend on the thread count either. With a pthreads OpenBLAS (which cannot be
// nested) the (b, h) loop runs serially instead, sgemm uses its own threads and the softmax rows
// are split among OpenMP threads.
#include <cmath>
#include <cstddef>

#include "cpu_kernels.hpp"
#include "cpu_math.hpp"

namespace mptrain::cpu {

namespace {

constexpr int kRowBlock = 64;

// Row i of the attention matrix: softmax over the visible columns [0, i] of the scores
// already stored there, and explicit zeros in [i+1, T) (the contract, and the following
// products read part of that range).
// The exponentials are exp_approx (vectorized) and the sum runs in fixed lanes (cpu_math.hpp).
MPT_SIMD_CLONES void causal_softmax_row(float* row, int i, int T) {
  float row_max = row[0];
  for (int j = 1; j <= i; j++) row_max = row[j] > row_max ? row[j] : row_max;
#pragma omp simd
  for (int j = 0; j <= i; j++) row[j] = exp_approx(row[j] - row_max);
  // up to T terms in [0, 1]; double keeps the sum exact enough for long rows
  const double sum = lane_sum(row, size_t(i) + 1, [](float e) { return double(e); });
  const float inv_sum = static_cast<float>(1.0 / sum);  // sum >= 1: the max term is exp(0)
#pragma omp simd
  for (int j = 0; j <= i; j++) row[j] *= inv_sum;
  for (int j = i + 1; j < T; j++) row[j] = 0.0f;
}

// Softmax backward for row i, in place on datt: dS = scale * att * (datt - <att, datt>),
// zeros above the diagonal.
MPT_SIMD_CLONES void causal_softmax_backward_row(float* drow, const float* arow, int i, int T,
                                                 float scale) {
  // <att, datt> over the visible columns, in fixed lanes (cpu_math.hpp)
  double lane[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= i + 1; j += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; l++) lane[l] += static_cast<double>(arow[j + l]) * drow[j + l];
  }
  for (int l = 0; j <= i; j++, l++) lane[l] += static_cast<double>(arow[j]) * drow[j];
  const float fdot = static_cast<float>(sum_lanes(lane));
#pragma omp simd
  for (int j = 0; j <= i; j++) drow[j] = scale * arow[j] * (drow[j] - fdot);
  for (int j = i + 1; j < T; j++) drow[j] = 0.0f;
}

// One (b, h) pair. q, k, v point at row 0 of this head in qkv (leading dimension ld = 3*NH*HS);
// o at row 0 of this head in out (leading dimension ldo = NH*HS); a at this head's (T, T) block.
void head_forward(float* o, int ldo, float* a, const float* q, const float* k, const float* v,
                  int ld, int T, int HS, int inner_threads) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  for (int i0 = 0; i0 < T; i0 += kRowBlock) {
    const int i1 = i0 + kRowBlock < T ? i0 + kRowBlock : T;
    // a[i0:i1, 0:i1] = scale * q[i0:i1] k[0:i1]^T        // (i1-i0, i1)
    sgemm(false, true, i1 - i0, i1, HS, scale, q + static_cast<size_t>(i0) * ld, ld, k, ld, 0.0f,
          a + static_cast<size_t>(i0) * T, T);
#pragma omp parallel for schedule(static) num_threads(inner_threads) if (inner_threads > 1)
    for (int i = i0; i < i1; i++) causal_softmax_row(a + static_cast<size_t>(i) * T, i, T);
    // o[i0:i1] = a[i0:i1, 0:i1] v[0:i1]                   // (i1-i0, HS)
    sgemm(false, false, i1 - i0, HS, i1, 1.0f, a + static_cast<size_t>(i0) * T, T, v, ld, 0.0f,
          o + static_cast<size_t>(i0) * ldo, ldo);
  }
}

// One (b, h) pair backward. dq, dk, dv point at this head in dqkv (leading dimension ld), d at
// this head's (T, T) block of datt (scratch), dout_h at this head in dout (leading dimension ldo).
void head_backward(float* dq, float* dk, float* dv, float* d, const float* dout_h, int ldo,
                   const float* q, const float* k, const float* v, const float* a, int ld, int T,
                   int HS, int inner_threads) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  // Query-row blocks: datt, the softmax backward, then dq, which only needs rows < i1.
  for (int i0 = 0; i0 < T; i0 += kRowBlock) {
    const int i1 = i0 + kRowBlock < T ? i0 + kRowBlock : T;
    float* d_blk = d + static_cast<size_t>(i0) * T;
    // d[i0:i1, 0:i1] = dout[i0:i1] v[0:i1]^T              // (i1-i0, i1)
    sgemm(false, true, i1 - i0, i1, HS, 1.0f, dout_h + static_cast<size_t>(i0) * ldo, ldo, v, ld,
          0.0f, d_blk, T);
#pragma omp parallel for schedule(static) num_threads(inner_threads) if (inner_threads > 1)
    for (int i = i0; i < i1; i++)
      causal_softmax_backward_row(d + static_cast<size_t>(i) * T, a + static_cast<size_t>(i) * T, i,
                                  T, scale);
    // dq[i0:i1] = dS[i0:i1, 0:i1] k[0:i1]                 // (i1-i0, HS)
    sgemm(false, false, i1 - i0, HS, i1, 1.0f, d_blk, T, k, ld, 0.0f,
          dq + static_cast<size_t>(i0) * ld, ld);
  }
  // Key-row blocks: key j is seen by queries j..T-1 only, so dk and dv of keys [j0, j1) need
  // rows [j0, T) of dS and att (whose entries above the diagonal are zero).
  for (int j0 = 0; j0 < T; j0 += kRowBlock) {
    const int j1 = j0 + kRowBlock < T ? j0 + kRowBlock : T;
    const size_t corner = static_cast<size_t>(j0) * T + j0;
    // dk[j0:j1] = dS[j0:T, j0:j1]^T q[j0:T]              // (j1-j0, HS)
    sgemm(true, false, j1 - j0, HS, T - j0, 1.0f, d + corner, T, q + static_cast<size_t>(j0) * ld,
          ld, 0.0f, dk + static_cast<size_t>(j0) * ld, ld);
    // dv[j0:j1] = att[j0:T, j0:j1]^T dout[j0:T]          // (j1-j0, HS)
    sgemm(true, false, j1 - j0, HS, T - j0, 1.0f, a + corner, T,
          dout_h + static_cast<size_t>(j0) * ldo, ldo, 0.0f, dv + static_cast<size_t>(j0) * ld, ld);
  }
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int HS,
                       int threads, bool nested) {
  const int C = NH * HS;
  const int ld = 3 * C;
  const int outer_threads = nested ? threads : 1;
  const int inner_threads = nested ? 1 : threads;
#pragma omp parallel for schedule(static) num_threads(outer_threads) if (outer_threads > 1)
  for (int bh = 0; bh < B * NH; bh++) {
    const int b = bh / NH, h = bh % NH;
    const float* q =
        qkv + static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * HS;        // (T, HS)
    float* o = out + static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * HS;  // (T, HS)
    float* a = att + static_cast<size_t>(bh) * T * T;                               // (T, T)
    head_forward(o, C, a, q, q + C, q + 2 * C, ld, T, HS, inner_threads);
  }
}

void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                        const float* att, int B, int T, int NH, int HS, int threads, bool nested) {
  const int C = NH * HS;
  const int ld = 3 * C;
  const int outer_threads = nested ? threads : 1;
  const int inner_threads = nested ? 1 : threads;
#pragma omp parallel for schedule(static) num_threads(outer_threads) if (outer_threads > 1)
  for (int bh = 0; bh < B * NH; bh++) {
    const int b = bh / NH, h = bh % NH;
    const size_t qkv_off = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * HS;
    const size_t out_off = static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * HS;
    const size_t att_off = static_cast<size_t>(bh) * T * T;
    const float* q = qkv + qkv_off;  // (T, HS), ld
    float* dq = dqkv + qkv_off;      // (T, HS), ld
    head_backward(dq, dq + C, dq + 2 * C, datt + att_off, dout + out_off, C, q, q + C, q + 2 * C,
                  att + att_off, ld, T, HS, inner_threads);
  }
}

}  // namespace mptrain::cpu
