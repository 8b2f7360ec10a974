// Causal multi-head self-attention on the GPU: the part of the attention layer between the QKV
// projection and the output projection, forward and backward side by side (contracts: see
// Backend::attention_forward / attention_backward).
//
// For each (batch b, head h) the queries, keys and values are (T, HS) strided views into qkv
// (row-major, leading dimension 3*NH*HS), so every product is a cuBLAS strided-batched GEMM over
// those views with no copies (batched over heads, looping over the batch, or the other way round,
// whichever issues fewer calls):
//   forward:  att = softmax_causal(q k^T / sqrt(HS));  out = att v
//   backward: datt = dout v^T;  dS = att * (datt - rowsum(att * datt)) / sqrt(HS);
//             dq = dS k;  dk = dS^T q;  dv = att^T dout
// The products cover the whole (T, T) square; the softmax kernels write exact zeros above the
// diagonal, so the masked half contributes nothing. One warp per attention row does the softmax
// with a double row sum (as the CPU backend), in a fixed order.
//
// cuBLAS is column-major: a row-major (r, c) matrix with leading dimension ld is, to cuBLAS, its
// (c, r) transpose with the same ld, so the row-major C = A B is issued as C^T = B^T A^T. Each
// call below names the row-major product it computes.
#include <cfloat>
#include <cmath>

#include "cuda_common.cuh"
#include "cuda_reduce.cuh"

namespace mptrain::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

// Row r of the (B*NH*T, T) attention matrix is query i = r % T of its head: softmax over the
// visible columns [0, i] of the scores stored there, zeros in [i+1, T).
__global__ void causal_softmax_kernel(float* att, size_t rows, int T) {
  const int lane = threadIdx.x & 31;
  const size_t r = static_cast<size_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;  // the whole warp leaves together
  const int i = static_cast<int>(r % T);
  float* row = att + r * T;
  float mx = -INFINITY;
  for (int j = lane; j <= i; j += 32) mx = row[j] > mx ? row[j] : mx;
  mx = warp_max(mx);
  double sum = 0.0;  // up to T terms in [0, 1]
  for (int j = lane; j <= i; j += 32) {
    const float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  const float inv_sum = static_cast<float>(1.0 / sum);  // sum >= 1: the max term is exp(0)
  for (int j = lane; j <= i; j += 32) row[j] *= inv_sum;
  for (int j = i + 1 + lane; j < T; j += 32) row[j] = 0.0f;
}

// In place on datt: dS = scale * att * (datt - <att, datt>) on [0, i], zeros above.
__global__ void causal_softmax_backward_kernel(float* datt, const float* att, size_t rows, int T,
                                               float scale) {
  const int lane = threadIdx.x & 31;
  const size_t r = static_cast<size_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int i = static_cast<int>(r % T);
  float* d = datt + r * T;
  const float* a = att + r * T;
  double dot = 0.0;
  for (int j = lane; j <= i; j += 32) dot += static_cast<double>(a[j]) * d[j];
  dot = warp_sum(dot);
  const float fdot = static_cast<float>(dot);
  for (int j = lane; j <= i; j += 32) d[j] = scale * a[j] * (d[j] - fdot);
  for (int j = i + 1 + lane; j < T; j += 32) d[j] = 0.0f;
}

// A column-major cuBLAS operand for every (b, h): base pointer, leading dimension, and the
// element strides from one batch row to the next (sb) and from one head to the next (sh).
struct Operand {
  const float* p;
  int ld;
  long long sb, sh;
};

// Column-major C(m, n) = alpha op(A) op(B) + beta C for every (b, h), as strided-batched calls:
// batched over heads with a loop over b when B <= NH, else batched over b with a loop over h.
void batched_gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m,
                  int n, int k, float alpha, Operand a, Operand b, float beta, float* c, int ldc,
                  long long c_sb, long long c_sh, int B, int NH) {
  const bool over_heads = B <= NH;
  const int outer = over_heads ? B : NH, count = over_heads ? NH : B;
  const long long a_out = over_heads ? a.sb : a.sh, a_in = over_heads ? a.sh : a.sb;
  const long long b_out = over_heads ? b.sb : b.sh, b_in = over_heads ? b.sh : b.sb;
  const long long c_out = over_heads ? c_sb : c_sh, c_in = over_heads ? c_sh : c_sb;
  for (int o = 0; o < outer; o++)
    MPT_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, op_a, op_b, m, n, k, &alpha,
                                               a.p + o * a_out, a.ld, a_in, b.p + o * b_out,
                                               b.ld, b_in, &beta, c + o * c_out, ldc, c_in,
                                               count));
}

unsigned row_blocks(size_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

void attention_forward(cudaStream_t s, cublasHandle_t handle, float* out, float* att,
                       const float* qkv, int B, int T, int NH, int HS) {
  if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
  const int C = NH * HS, ld = 3 * C;
  const long long qkv_sb = static_cast<long long>(T) * ld;       // (T, 3C) per batch row
  const long long out_sb = static_cast<long long>(T) * C;        // (T, C) per batch row
  const long long att_sh = static_cast<long long>(T) * T;        // (T, T) per head
  const long long att_sb = att_sh * NH;                          // (NH, T, T) per batch row
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const float *q = qkv, *k = qkv + C, *v = qkv + 2 * C;
  // att(T,T) = scale * q(T,HS) k(T,HS)^T, the whole square (the softmax masks it).
  batched_gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, scale, {k, ld, qkv_sb, HS},
               {q, ld, qkv_sb, HS}, 0.0f, att, T, att_sb, att_sh, B, NH);
  const size_t rows = static_cast<size_t>(B) * NH * T;
  causal_softmax_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, s>>>(att, rows, T);
  MPT_CUDA_LAUNCHED(s);
  // out(T,HS) = att(T,T) v(T,HS), into this head's columns of out (leading dimension C).
  batched_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, {v, ld, qkv_sb, HS},
               {att, T, att_sb, att_sh}, 0.0f, out, C, out_sb, HS, B, NH);
}

void attention_backward(cudaStream_t s, cublasHandle_t handle, float* dqkv, float* datt,
                        const float* dout, const float* qkv, const float* att, int B, int T,
                        int NH, int HS) {
  if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
  const int C = NH * HS, ld = 3 * C;
  const long long qkv_sb = static_cast<long long>(T) * ld;
  const long long out_sb = static_cast<long long>(T) * C;
  const long long att_sh = static_cast<long long>(T) * T;
  const long long att_sb = att_sh * NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const float *q = qkv, *k = qkv + C, *v = qkv + 2 * C;
  float *dq = dqkv, *dk = dqkv + C, *dv = dqkv + 2 * C;
  // datt(T,T) = dout(T,HS) v(T,HS)^T
  batched_gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, {v, ld, qkv_sb, HS},
               {dout, C, out_sb, HS}, 0.0f, datt, T, att_sb, att_sh, B, NH);
  const size_t rows = static_cast<size_t>(B) * NH * T;
  causal_softmax_backward_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, s>>>(datt, att, rows,
                                                                                  T, scale);
  MPT_CUDA_LAUNCHED(s);
  // dq(T,HS) = dS(T,T) k(T,HS)
  batched_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, {k, ld, qkv_sb, HS},
               {datt, T, att_sb, att_sh}, 0.0f, dq, ld, qkv_sb, HS, B, NH);
  // dk(T,HS) = dS(T,T)^T q(T,HS)
  batched_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, {q, ld, qkv_sb, HS},
               {datt, T, att_sb, att_sh}, 0.0f, dk, ld, qkv_sb, HS, B, NH);
  // dv(T,HS) = att(T,T)^T dout(T,HS)
  batched_gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, {dout, C, out_sb, HS},
               {att, T, att_sb, att_sh}, 0.0f, dv, ld, qkv_sb, HS, B, NH);
}

}  // namespace mptrain::cuda
