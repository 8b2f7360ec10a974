// The CUDA backend's element-wise, embedding, cross-entropy, optimizer and whole-vector kernels,
// each with its host-side launcher (declared in cuda_common.cuh); LayerNorm and the bias
// gradient are in cuda_layernorm.cu, attention in cuda_attention.cu. The arithmetic of every
// kernel follows the CPU backend (src/backend/cpu/) term for term: the same float/double split (double
// accumulators for sums, float element math), the same formulas, the same order of additions
// where an order is part of the result (embedding and position gradients add positions in
// increasing order, like the CPU loops).
//
// Reductions without atomics, so that reruns are bit-identical:
//  - over the columns of one row (cross-entropy): one block per row, fixed-shape trees;
//  - over a whole vector (sum, sum of squares): a fixed grid of blocks, then one block adding
//    the block results;
//  - the token-embedding gradient: a stable radix sort of (token, position) pairs (CUB), then
//    one thread per (token, column) adding that token's positions in increasing order.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "cuda_common.cuh"
#include "cuda_reduce.cuh"

namespace mptrain::cuda {

namespace {

constexpr int kThreads = 256;            // block size of the element-wise kernels
constexpr size_t kMaxBlocks = 8192;      // grid-stride loops cover the rest
constexpr int kReduceBlocks = 256;       // sum / sum_squares: fixed grid
constexpr int kEmbedThreads = 128;       // embedding gradient: columns per block
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)

unsigned blocks_for(size_t n, int threads = kThreads) {
  return static_cast<unsigned>(std::min((n + threads - 1) / threads, kMaxBlocks));
}

#define MPT_GRID_STRIDE(i, n)                                                        \
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<size_t>(gridDim.x) * blockDim.x)

__device__ uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// ---- element-wise ----

__global__ void fill_kernel(float* x, float value, size_t n) {
  MPT_GRID_STRIDE(i, n) x[i] = value;
}
__global__ void axpy_kernel(float* y, const float* x, float alpha, size_t n) {
  MPT_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ void add_kernel(float* out, const float* a, const float* b, size_t n) {
  MPT_GRID_STRIDE(i, n) out[i] = a[i] + b[i];  // reads before the write: out may alias a or b
}
__global__ void scale_kernel(float* x, float alpha, size_t n) {
  MPT_GRID_STRIDE(i, n) x[i] *= alpha;
}
__global__ void scale_matrix_kernel(float* c, float beta, int rows, int cols, int ld) {
  const size_t total = static_cast<size_t>(rows) * cols;
  MPT_GRID_STRIDE(i, total) {
    float& e = c[(i / cols) * ld + i % cols];
    e = beta == 0.0f ? 0.0f : beta * e;
  }
}
__global__ void to_bf16_kernel(__nv_bfloat16* dst, const float* src, size_t n) {
  MPT_GRID_STRIDE(i, n) dst[i] = __float2bfloat16(src[i]);  // round to nearest even
}
__global__ void random_kernel(float* x, size_t n, uint32_t seed) {
  MPT_GRID_STRIDE(i, n) {
    const uint32_t h = hash32(static_cast<uint32_t>(i) * 2654435761u ^ hash32(seed));
    x[i] = static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}
__global__ void random_bf16_kernel(__nv_bfloat16* x, size_t n, uint32_t seed) {
  MPT_GRID_STRIDE(i, n) {
    const uint32_t h = hash32(static_cast<uint32_t>(i) * 2654435761u ^ hash32(seed));
    x[i] = __float2bfloat16(static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
__global__ void gelu_forward_kernel(float* out, const float* inp, size_t n) {
  MPT_GRID_STRIDE(i, n) {
    const float x = inp[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    out[i] = 0.5f * x * (1.0f + tanhf(u));
  }
}
// gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx
__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, size_t n) {
  MPT_GRID_STRIDE(i, n) {
    const float x = inp[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    const float th = tanhf(u);
    const float du_dx = kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
    const float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du_dx;
    dinp[i] = grad * dout[i];  // dout[i] read first: dinp may alias dout
  }
}

// Fused add_bias + gelu_forward: pre += bias, out = gelu(pre), the same roundings.
__global__ void bias_gelu_forward_kernel(float* pre, float* out, const float* bias, int rows,
                                         int cols) {
  const size_t total = static_cast<size_t>(rows) * cols;
  MPT_GRID_STRIDE(i, total) {
    const float x = pre[i] + bias[i % cols];
    pre[i] = x;
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    out[i] = 0.5f * x * (1.0f + tanhf(u));
  }
}

__global__ void add_bias_kernel(float* out, const float* bias, int rows, int cols) {
  const size_t total = static_cast<size_t>(rows) * cols;
  MPT_GRID_STRIDE(i, total) out[i] += bias[i % cols];
}

// ---- embeddings ----

__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte,
                                         int vocab_start, int V, int N, int C) {
  const size_t total = static_cast<size_t>(N) * C;
  MPT_GRID_STRIDE(i, total) {
    const int row = tokens[i / C] - vocab_start;
    out[i] = (row >= 0 && row < V) ? wte[static_cast<size_t>(row) * C + i % C] : 0.0f;
  }
}

// Sort keys: the owned row of each position, or V for tokens another rank owns.
__global__ void embedding_keys_kernel(uint32_t* keys, int32_t* positions, const int32_t* tokens,
                                      int vocab_start, int V, int N) {
  MPT_GRID_STRIDE(i, static_cast<size_t>(N)) {
    const long long row = static_cast<long long>(tokens[i]) - vocab_start;
    keys[i] = (row >= 0 && row < V) ? static_cast<uint32_t>(row) : static_cast<uint32_t>(V);
    positions[i] = static_cast<int32_t>(i);
  }
}

// Block (s, column tile): when sorted entry s starts the run of an owned row, adds that row's
// positions (increasing, the sort is stable) to dwte one after the other, as the CPU does.
__global__ void embedding_accumulate_kernel(float* dwte, const float* dout, const uint32_t* keys,
                                            const int32_t* positions, int V, int N, int C) {
  const int s = blockIdx.x;
  const uint32_t key = keys[s];
  if (key >= static_cast<uint32_t>(V) || (s > 0 && keys[s - 1] == key)) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float* dw = dwte + static_cast<size_t>(key) * C + c;
  float acc = *dw;
  for (int t = s; t < N && keys[t] == key; t++)
    acc += dout[static_cast<size_t>(positions[t]) * C + c];
  *dw = acc;
}

__global__ void position_forward_kernel(float* out, const float* wpe, size_t total, size_t TC) {
  MPT_GRID_STRIDE(i, total) out[i] += wpe[i % TC];
}

// dwpe(T,C) += the B rows of each position, added in order of b.
__global__ void position_backward_kernel(float* dwpe, const float* dout, int B, size_t TC) {
  MPT_GRID_STRIDE(e, TC) {
    float acc = dwpe[e];
    for (int b = 0; b < B; b++) acc += dout[b * TC + e];
    dwpe[e] = acc;
  }
}

// ---- cross-entropy: one block per row ----

__global__ void ce_row_max_kernel(float* row_max, const float* logits, int V, int ld) {
  const float* l = logits + static_cast<size_t>(blockIdx.x) * ld;  // (V), padding ignored
  float mx = -FLT_MAX;  // the identity of the MAX all-reduce
  for (int j = threadIdx.x; j < V; j += blockDim.x) mx = l[j] > mx ? l[j] : mx;
  mx = block_max(mx);
  if (threadIdx.x == 0) row_max[blockIdx.x] = mx;
}

__global__ void ce_row_sumexp_kernel(float* row_sum, const float* logits, const float* row_max,
                                     int V, int ld) {
  const float* l = logits + static_cast<size_t>(blockIdx.x) * ld;
  const float mx = row_max[blockIdx.x];
  double s = 0.0;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += expf(l[j] - mx);
  s = block_sum(s);
  if (threadIdx.x == 0) row_sum[blockIdx.x] = static_cast<float>(s);
}

__global__ void ce_target_logit_kernel(float* target_logit, const float* logits,
                                       const int32_t* targets, int vocab_start, int N, int V,
                                       int ld) {
  MPT_GRID_STRIDE(i, static_cast<size_t>(N)) {
    const long long col = static_cast<long long>(targets[i]) - vocab_start;
    target_logit[i] = (col >= 0 && col < V) ? logits[i * ld + col] : 0.0f;
  }
}

__global__ void ce_losses_kernel(float* losses, const float* row_max, const float* row_sum,
                                 const float* target_logit, int N) {
  MPT_GRID_STRIDE(i, static_cast<size_t>(N))
  losses[i] = static_cast<float>(log(static_cast<double>(row_sum[i])) +
                                 static_cast<double>(row_max[i]) - target_logit[i]);
}

// Each element is read, then written by the same thread: dlogits may alias logits.
__global__ void ce_backward_kernel(float* dlogits, const float* logits, const float* row_max,
                                   const float* row_sum, const int32_t* targets, int vocab_start,
                                   int V, int ld, float scale) {
  const size_t i = blockIdx.x;
  const float* l = logits + i * ld;
  float* dl = dlogits + i * ld;
  const float mx = row_max[i];
  const float inv_sum = 1.0f / row_sum[i];
  const long long col = static_cast<long long>(targets[i]) - vocab_start;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float p = expf(l[j] - mx) * inv_sum;
    dl[j] = scale * (p - (j == col ? 1.0f : 0.0f));
  }
  for (int j = V + threadIdx.x; j < ld; j += blockDim.x) dl[j] = 0.0f;
}

// ---- optimizer and whole-vector reductions ----

// AdamW as the CPU backend. The fused form (adamw_step) first scales the gradient (as scale())
// when kScale, and afterwards zeroes it (as fill()) when zero_grad.
template <bool kScale>
__global__ void adamw_kernel(float* param, float* grad, float* m, float* v, size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float bc1,
                             float bc2, float grad_scale, bool zero_grad) {
  MPT_GRID_STRIDE(i, n) {
    float g = grad[i];
    if constexpr (kScale) g *= grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    if (zero_grad)
      grad[i] = 0.0f;
    else if (kScale)
      grad[i] = g;
  }
}

__global__ void reduce_partial_kernel(double* partial, const float* x, size_t n, bool squares) {
  double s = 0.0;
  MPT_GRID_STRIDE(i, n) {
    const double v = x[i];
    s += squares ? v * v : v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void reduce_final_kernel(double* result, const double* partial, int count) {
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *result = s;
}

}  // namespace

// ---------------------------------------------------------------- launchers

void fill(cudaStream_t s, float* x, float value, size_t n) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, value, n);
  MPT_CUDA_LAUNCHED(s);
}

void axpy(cudaStream_t s, float* y, const float* x, float alpha, size_t n) {
  if (n == 0) return;
  axpy_kernel<<<blocks_for(n), kThreads, 0, s>>>(y, x, alpha, n);
  MPT_CUDA_LAUNCHED(s);
}

void add(cudaStream_t s, float* out, const float* a, const float* b, size_t n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(out, a, b, n);
  MPT_CUDA_LAUNCHED(s);
}

void scale(cudaStream_t s, float* x, float alpha, size_t n) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, alpha, n);
  MPT_CUDA_LAUNCHED(s);
}

void scale_matrix(cudaStream_t s, float* c, float beta, int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0 || beta == 1.0f) return;
  scale_matrix_kernel<<<blocks_for(static_cast<size_t>(rows) * cols), kThreads, 0, s>>>(
      c, beta, rows, cols, ld);
  MPT_CUDA_LAUNCHED(s);
}

void to_bf16(cudaStream_t s, __nv_bfloat16* dst, const float* src, size_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<blocks_for(n), kThreads, 0, s>>>(dst, src, n);
  MPT_CUDA_LAUNCHED(s);
}

void fill_pseudo_random(cudaStream_t s, float* x, size_t n, uint32_t seed) {
  if (n == 0) return;
  random_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, n, seed);
  MPT_CUDA_LAUNCHED(s);
}

void fill_pseudo_random_bf16(cudaStream_t s, __nv_bfloat16* x, size_t n, uint32_t seed) {
  if (n == 0) return;
  random_bf16_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, n, seed);
  MPT_CUDA_LAUNCHED(s);
}

void gelu_forward(cudaStream_t s, float* out, const float* inp, size_t n) {
  if (n == 0) return;
  gelu_forward_kernel<<<blocks_for(n), kThreads, 0, s>>>(out, inp, n);
  MPT_CUDA_LAUNCHED(s);
}

void gelu_backward(cudaStream_t s, float* dinp, const float* inp, const float* dout, size_t n) {
  if (n == 0) return;
  gelu_backward_kernel<<<blocks_for(n), kThreads, 0, s>>>(dinp, inp, dout, n);
  MPT_CUDA_LAUNCHED(s);
}

void bias_gelu_forward(cudaStream_t s, float* pre, float* out, const float* bias, int rows,
                       int cols) {
  if (rows <= 0 || cols <= 0) return;
  bias_gelu_forward_kernel<<<blocks_for(static_cast<size_t>(rows) * cols), kThreads, 0, s>>>(
      pre, out, bias, rows, cols);
  MPT_CUDA_LAUNCHED(s);
}

void add_bias(cudaStream_t s, float* out, const float* bias, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return;
  add_bias_kernel<<<blocks_for(static_cast<size_t>(rows) * cols), kThreads, 0, s>>>(out, bias,
                                                                                    rows, cols);
  MPT_CUDA_LAUNCHED(s);
}

void embedding_forward(cudaStream_t s, float* out, const int32_t* tokens, const float* wte,
                       int vocab_start, int V, int N, int C) {
  if (N <= 0 || C <= 0) return;
  embedding_forward_kernel<<<blocks_for(static_cast<size_t>(N) * C), kThreads, 0, s>>>(
      out, tokens, wte, vocab_start, V, N, C);
  MPT_CUDA_LAUNCHED(s);
}

void embedding_backward(cudaStream_t s, Workspace& ws, float* dwte, const float* dout,
                        const int32_t* tokens, int vocab_start, int V, int N, int C) {
  if (N <= 0 || C <= 0 || V <= 0) return;
  // Keys take values 0..V (V: not owned): sort on the bits that can be set.
  int end_bit = 1;
  while (end_bit < 32 && (1ull << end_bit) <= static_cast<unsigned long long>(V)) end_bit++;
  size_t temp_bytes = 0;
  MPT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), N, 0, end_bit, s));
  const size_t n = static_cast<size_t>(N);
  Carver measure;
  measure.take<uint32_t>(n);
  measure.take<uint32_t>(n);
  measure.take<int32_t>(n);
  measure.take<int32_t>(n);
  measure.take<char>(temp_bytes);
  Carver carve(ws.get(measure.bytes()));
  uint32_t* keys_in = carve.take<uint32_t>(n);
  uint32_t* keys_out = carve.take<uint32_t>(n);
  int32_t* pos_in = carve.take<int32_t>(n);
  int32_t* pos_out = carve.take<int32_t>(n);
  char* temp = carve.take<char>(temp_bytes);
  embedding_keys_kernel<<<blocks_for(n), kThreads, 0, s>>>(keys_in, pos_in, tokens, vocab_start,
                                                           V, N);
  MPT_CUDA_LAUNCHED(s);
  MPT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, pos_in,
                                                 pos_out, N, 0, end_bit, s));
  MPT_CUDA_LAUNCHED(s);
  const dim3 grid(N, (C + kEmbedThreads - 1) / kEmbedThreads);
  embedding_accumulate_kernel<<<grid, kEmbedThreads, 0, s>>>(dwte, dout, keys_out, pos_out, V, N,
                                                             C);
  MPT_CUDA_LAUNCHED(s);
}

void position_forward(cudaStream_t s, float* out, const float* wpe, int B, int T, int C) {
  if (B <= 0 || T <= 0 || C <= 0) return;
  const size_t TC = static_cast<size_t>(T) * C, total = TC * B;
  position_forward_kernel<<<blocks_for(total), kThreads, 0, s>>>(out, wpe, total, TC);
  MPT_CUDA_LAUNCHED(s);
}

void position_backward(cudaStream_t s, float* dwpe, const float* dout, int B, int T, int C) {
  if (B <= 0 || T <= 0 || C <= 0) return;
  const size_t TC = static_cast<size_t>(T) * C;
  position_backward_kernel<<<blocks_for(TC), kThreads, 0, s>>>(dwpe, dout, B, TC);
  MPT_CUDA_LAUNCHED(s);
}

void ce_row_max(cudaStream_t s, float* row_max, const float* logits, int N, int V, int ld) {
  if (N <= 0) return;
  ce_row_max_kernel<<<N, kThreads, 0, s>>>(row_max, logits, V, ld);
  MPT_CUDA_LAUNCHED(s);
}

void ce_row_sumexp(cudaStream_t s, float* row_sum, const float* logits, const float* row_max,
                   int N, int V, int ld) {
  if (N <= 0) return;
  ce_row_sumexp_kernel<<<N, kThreads, 0, s>>>(row_sum, logits, row_max, V, ld);
  MPT_CUDA_LAUNCHED(s);
}

void ce_target_logit(cudaStream_t s, float* target_logit, const float* logits,
                     const int32_t* targets, int vocab_start, int N, int V, int ld) {
  if (N <= 0) return;
  ce_target_logit_kernel<<<blocks_for(N), kThreads, 0, s>>>(target_logit, logits, targets,
                                                            vocab_start, N, V, ld);
  MPT_CUDA_LAUNCHED(s);
}

void ce_losses(cudaStream_t s, float* losses, const float* row_max, const float* row_sum,
               const float* target_logit, int N) {
  if (N <= 0) return;
  ce_losses_kernel<<<blocks_for(N), kThreads, 0, s>>>(losses, row_max, row_sum, target_logit, N);
  MPT_CUDA_LAUNCHED(s);
}

void ce_backward(cudaStream_t s, float* dlogits, const float* logits, const float* row_max,
                 const float* row_sum, const int32_t* targets, int vocab_start, int N, int V,
                 int ld, float scale) {
  if (N <= 0 || ld <= 0) return;
  ce_backward_kernel<<<N, kThreads, 0, s>>>(dlogits, logits, row_max, row_sum, targets,
                                            vocab_start, V, ld, scale);
  MPT_CUDA_LAUNCHED(s);
}

void adamw(cudaStream_t s, float* param, const float* grad, float* m, float* v, size_t n,
           float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
           float bc2) {
  if (n == 0) return;
  // Without scaling or zeroing the kernel never writes grad.
  adamw_kernel<false><<<blocks_for(n), kThreads, 0, s>>>(param, const_cast<float*>(grad), m, v,
                                                         n, lr, beta1, beta2, eps, weight_decay,
                                                         bc1, bc2, 1.0f, false);
  MPT_CUDA_LAUNCHED(s);
}

void adamw_step(cudaStream_t s, float* param, float* grad, float* m, float* v, size_t n,
                float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
                float bc2, float grad_scale, bool zero_grad) {
  if (n == 0) return;
  if (grad_scale != 1.0f)
    adamw_kernel<true><<<blocks_for(n), kThreads, 0, s>>>(param, grad, m, v, n, lr, beta1, beta2,
                                                          eps, weight_decay, bc1, bc2, grad_scale,
                                                          zero_grad);
  else
    adamw_kernel<false><<<blocks_for(n), kThreads, 0, s>>>(param, grad, m, v, n, lr, beta1,
                                                           beta2, eps, weight_decay, bc1, bc2,
                                                           1.0f, zero_grad);
  MPT_CUDA_LAUNCHED(s);
}

void reduce_sum(cudaStream_t s, Workspace& ws, double* result, const float* x, size_t n,
                bool squares) {
  double* partial = static_cast<double*>(ws.get(kReduceBlocks * sizeof(double)));
  // The grid is fixed (not sized to n or to the GPU), so the order of additions is too.
  reduce_partial_kernel<<<kReduceBlocks, kThreads, 0, s>>>(partial, x, n, squares);
  MPT_CUDA_LAUNCHED(s);
  reduce_final_kernel<<<1, kThreads, 0, s>>>(result, partial, kReduceBlocks);
  MPT_CUDA_LAUNCHED(s);
}

}  // namespace mptrain::cuda