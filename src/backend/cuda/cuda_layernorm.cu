// LayerNorm (forward, the fused residual + LayerNorm forward, backward) and the bias gradient on
// the GPU, with their host-side launchers (declared in cuda_common.cuh). The arithmetic follows
// the CPU backend term for term: double accumulators, a two-pass variance, float element math.
//
// Reductions without atomics, so that reruns are bit-identical:
//  - over the columns of one row (mean, variance, the dinp terms): one warp per row, fixed
//    butterfly shuffles;
//  - over the rows of a matrix (bias gradient, LayerNorm weight / bias gradients): two passes,
//    partial column sums in double over fixed chunks of rows (blocks of 32 columns x 8 row
//    lanes, combined in a fixed order in shared memory), then one thread per column adding the
//    chunks in chunk order.
#include <cmath>

#include "cuda_common.cuh"
#include "cuda_reduce.cuh"

namespace mptrain::cuda {

namespace {

constexpr int kThreads = 256;       // block size of the per-column finalisation
constexpr int kWarpsPerBlock = 8;   // row kernels: one warp per row
constexpr int kColTile = 32;        // column reductions: columns per block (one warp)
constexpr int kRowLanes = 8;        // column reductions: rows walked in parallel per block
constexpr int kChunkRows = 256;     // column reductions: rows per partial sum
constexpr float kLayerNormEps = 1e-5f;

// ---- reductions over rows: partial column sums per chunk of rows, then the chunks in order --

// Block (kColTile, kRowLanes) handles columns [blockIdx.x * kColTile, +kColTile) of rows
// [blockIdx.y * chunk_rows, +chunk_rows). Plain: partial_a = sum of dout. LayerNorm:
// partial_a = sum of dout * xhat, partial_b = sum of dout (as the CPU: float terms, double sum).
template <bool kLayerNorm>
__global__ void column_partials_kernel(double* partial_a, double* partial_b, const float* dout,
                                       const float* inp, const float* mean, const float* rstd,
                                       int rows, int cols, int chunk_rows) {
  const int c = blockIdx.x * kColTile + threadIdx.x;
  const int r0 = blockIdx.y * chunk_rows;
  const int r1 = min(rows, r0 + chunk_rows);
  double acc_a = 0.0, acc_b = 0.0;
  if (c < cols) {
    for (int r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const size_t at = static_cast<size_t>(r) * cols + c;
      const float d = dout[at];
      if constexpr (kLayerNorm) {
        const float xhat = (inp[at] - mean[r]) * rstd[r];
        const float dx = d * xhat;
        acc_a += dx;
        acc_b += d;
      } else {
        acc_a += d;
      }
    }
  }
  __shared__ double sa[kRowLanes][kColTile + 1];
  __shared__ double sb[kRowLanes][kColTile + 1];
  sa[threadIdx.y][threadIdx.x] = acc_a;
  sb[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double a = 0.0, b = 0.0;
    for (int y = 0; y < kRowLanes; y++) {
      a += sa[y][threadIdx.x];
      b += sb[y][threadIdx.x];
    }
    const size_t at = static_cast<size_t>(blockIdx.y) * cols + c;
    partial_a[at] = a;
    if constexpr (kLayerNorm) partial_b[at] = b;
  }
}

// out_a(cols) += sum over chunks of partial_a; the same for b when out_b is given.
__global__ void column_finalize_kernel(float* out_a, float* out_b, const double* partial_a,
                                       const double* partial_b, int chunks, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  double a = 0.0, b = 0.0;
  for (int ch = 0; ch < chunks; ch++) {
    a += partial_a[static_cast<size_t>(ch) * cols + c];
    if (out_b) b += partial_b[static_cast<size_t>(ch) * cols + c];
  }
  out_a[c] += static_cast<float>(a);
  if (out_b) out_b[c] += static_cast<float>(b);
}

struct ColumnPlan {
  int chunk_rows, chunks;
};
ColumnPlan column_plan(int rows) {
  // Chunks of kChunkRows rows, fewer and longer if grid.y (at most 65535) would overflow.
  int chunk_rows = kChunkRows;
  const int max_chunks = 65535;
  if ((rows + chunk_rows - 1) / chunk_rows > max_chunks)
    chunk_rows = (rows + max_chunks - 1) / max_chunks;
  return {chunk_rows, (rows + chunk_rows - 1) / chunk_rows};
}

// ---- LayerNorm: one warp per row ----

// out, mean, rstd = LayerNorm(inp). kResidual: first res = (res + bias_r) + x, in place, and
// normalise that (each lane rereads only the columns it wrote itself).
template <bool kResidual>
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, float* res,
                                         const float* x_add, const float* bias_r,
                                         const float* weight, const float* bias, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;  // the whole warp leaves together
  float* x = res + static_cast<size_t>(row) * C;  // (C): the input (read-only unless kResidual)
  float* o = out + static_cast<size_t>(row) * C;  // (C)
  double s = 0.0;
  if constexpr (kResidual) {
    const float* xa = x_add + static_cast<size_t>(row) * C;
    for (int c = lane; c < C; c += 32) {
      const float v = (x[c] + bias_r[c]) + xa[c];  // add_bias, then add
      x[c] = v;
      s += v;
    }
  } else {
    for (int c = lane; c < C; c += 32) s += x[c];
  }
  s = warp_sum(s);
  const float m = static_cast<float>(s / C);
  double v = 0.0;  // two-pass variance, as the CPU
  for (int c = lane; c < C; c += 32) {
    const float d = x[c] - m;
    v += static_cast<double>(d) * d;
  }
  v = warp_sum(v);
  const float r = static_cast<float>(1.0 / sqrt(v / C + kLayerNormEps));
  for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// dinp(N,C) += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = weight * dout. Each lane reads
// its own columns of dout before the warp reductions and writes the same columns of dinp
// after them, so dinp may alias dout.
__global__ void layernorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp,
                                               const float* weight, const float* mean,
                                               const float* rstd, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  const float* x = inp + static_cast<size_t>(row) * C;
  const float* d = dout + static_cast<size_t>(row) * C;
  float* dx = dinp + static_cast<size_t>(row) * C;
  const float m = mean[row], r = rstd[row];
  double g_mean = 0.0, gx_mean = 0.0;
  for (int c = lane; c < C; c += 32) {
    const float g = weight[c] * d[c];
    g_mean += g;
    gx_mean += static_cast<double>(g) * ((x[c] - m) * r);
  }
  g_mean = warp_sum(g_mean);
  gx_mean = warp_sum(gx_mean);
  const float gm = static_cast<float>(g_mean / C), gxm = static_cast<float>(gx_mean / C);
  for (int c = lane; c < C; c += 32) {
    const float xhat = (x[c] - m) * r;
    dx[c] += r * (weight[c] * d[c] - gm - xhat * gxm);
  }
}


}  // namespace

// ---------------------------------------------------------------- launchers

void bias_backward(cudaStream_t s, Workspace& ws, float* dbias, const float* dout, int rows,
                   int cols) {
  if (rows <= 0 || cols <= 0) return;
  const ColumnPlan plan = column_plan(rows);
  const size_t count = static_cast<size_t>(plan.chunks) * cols;
  double* partial = static_cast<double*>(ws.get(count * sizeof(double)));
  const dim3 grid((cols + kColTile - 1) / kColTile, plan.chunks), block(kColTile, kRowLanes);
  column_partials_kernel<false><<<grid, block, 0, s>>>(partial, nullptr, dout, nullptr, nullptr,
                                                       nullptr, rows, cols, plan.chunk_rows);
  MPT_CUDA_LAUNCHED(s);
  column_finalize_kernel<<<(cols + kThreads - 1) / kThreads, kThreads, 0, s>>>(
      dbias, nullptr, partial, nullptr, plan.chunks, cols);
  MPT_CUDA_LAUNCHED(s);
}

void layernorm_forward(cudaStream_t s, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = (N + kWarpsPerBlock - 1) / kWarpsPerBlock;
  // kResidual = false: the kernel only reads inp.
  layernorm_forward_kernel<false><<<grid, kWarpsPerBlock * 32, 0, s>>>(
      out, mean, rstd, const_cast<float*>(inp), nullptr, nullptr, weight, bias, N, C);
  MPT_CUDA_LAUNCHED(s);
}

void residual_layernorm_forward(cudaStream_t s, float* res, float* out, float* mean, float* rstd,
                                const float* x, const float* bias_r, const float* weight,
                                const float* bias, int N, int C) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = (N + kWarpsPerBlock - 1) / kWarpsPerBlock;
  layernorm_forward_kernel<true><<<grid, kWarpsPerBlock * 32, 0, s>>>(out, mean, rstd, res, x,
                                                                      bias_r, weight, bias, N, C);
  MPT_CUDA_LAUNCHED(s);
}

void layernorm_backward(cudaStream_t s, Workspace& ws, float* dinp, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C) {
  if (N <= 0 || C <= 0) return;
  // dweight, dbias first: the dinp pass may overwrite dout in place.
  const ColumnPlan plan = column_plan(N);
  const size_t count = static_cast<size_t>(plan.chunks) * C;
  Carver measure;
  measure.take<double>(count);
  measure.take<double>(count);
  Carver carve(ws.get(measure.bytes()));
  double* partial_w = carve.take<double>(count);
  double* partial_b = carve.take<double>(count);
  const dim3 grid((C + kColTile - 1) / kColTile, plan.chunks), block(kColTile, kRowLanes);
  column_partials_kernel<true><<<grid, block, 0, s>>>(partial_w, partial_b, dout, inp, mean, rstd,
                                                      N, C, plan.chunk_rows);
  MPT_CUDA_LAUNCHED(s);
  column_finalize_kernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, s>>>(
      dweight, dbias, partial_w, partial_b, plan.chunks, C);
  MPT_CUDA_LAUNCHED(s);
  const unsigned rows_grid = (N + kWarpsPerBlock - 1) / kWarpsPerBlock;
  layernorm_backward_dinp_kernel<<<rows_grid, kWarpsPerBlock * 32, 0, s>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  MPT_CUDA_LAUNCHED(s);
}


}  // namespace mptrain::cuda
