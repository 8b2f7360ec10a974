// Internal to the CUDA backend: the warp and block reductions shared by the kernels. Their
// shapes are fixed (butterfly shuffles within a warp, then warp 0 over the per-warp results),
// so a reduction adds its terms in the same order on every run: no atomics anywhere.
// Every lane (thread) gets lane (thread) 0's result.
#pragma once

#include <cuda_runtime.h>

#include <cfloat>

namespace mptrain::cuda {

__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}

// Max that ignores NaN operands (as the CPU's `x > m ? x : m`).
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  return __shfl_sync(0xffffffffu, v, 0);
}

// Block-wide sum; blockDim.x a multiple of 32 (at most 1024), every thread of the block calls
// it. Every thread gets the result.
__device__ inline double block_sum(double v) {
  __shared__ double partial[32];
  __shared__ double result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double t = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0;
    t = warp_sum(t);
    if (lane == 0) result = t;
  }
  __syncthreads();
  return result;
}

__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  __shared__ float result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : -FLT_MAX;
    t = warp_max(t);
    if (lane == 0) result = t;
  }
  __syncthreads();
  return result;
}

}  // namespace mptrain::cuda
