// Internal to the CPU backend: branch-free float math that the compiler can vectorize inside
// `#pragma omp simd` loops (libm's tanhf/expf are scalar calls: GELU through std::tanh cost
// a quarter of a small model's training step, see doc/PERFORMANCE.md), and fixed-order sums.
//
// Accuracy: exp_approx has a relative error below 3e-7 (about 2 ulp) on [-87, 88] and clamps
// outside; tanh_approx an absolute error below 2e-7. Every function is a fixed sequence of
// IEEE operations, so results do not depend on the thread count or on vector width.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

// The hot element-wise kernels are compiled twice, for AVX2 and for the baseline (SSE2 on
// x86-64), and the dynamic loader picks one for the machine (target_clones: GCC, Clang >= 14,
// ELF). Both clones perform the same IEEE operations in the same order (the "avx2" target has
// no FMA, and ISO C++ mode does not contract), so they give the same bits; AVX2 runs GELU 2.6x
// faster on the development machine. Define MPTRAIN_NO_CLONES to build the baseline only.
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(MPTRAIN_NO_CLONES)
#define MPT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MPT_SIMD_CLONES
#endif

namespace mptrain::cpu {

// x clamped to [lo, hi] with integer compares on an order-preserving integer image of the
// bits: float compares would keep a loop scalar (under GCC's default -ftrapping-math it does
// not if-convert them). NaN clamps to hi.
inline float clamp_bits(float x, float lo, float hi) {
  auto key = [](float f) {
    const int32_t b = std::bit_cast<int32_t>(f);
    return b ^ ((b >> 31) & 0x7FFFFFFF);  // its own inverse
  };
  int32_t k = key(x);
  const int32_t k_lo = key(lo), k_hi = key(hi);
  k = k < k_lo ? k_lo : k;
  k = k > k_hi ? k_hi : k;
  return std::bit_cast<float>(key(std::bit_cast<float>(k)));
}

// e^x: x = n ln2 + r with |r| <= ln2/2 (n rounded with the 1.5 * 2^23 trick, ln2 split in a
// part exact in float and a correction), e^r by its Taylor polynomial to degree 6 (Horner),
// and 2^n put straight into the exponent bits.
inline float exp_approx(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  x = clamp_bits(x, -87.0f, 88.0f);
  const float shifted = x * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  float r = x - n * 0.693145751953125f;  // ln2, high part (exact product for |n| < 2^8)
  r = r - n * 1.42860682030941723e-6f;   // ln2, low part
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((ni + 127) << 23);
}

// tanh(u) = sign(u) (1 - 2 / (e^{2|u|} + 1)); saturates to +-1 exactly for |u| >= ~9.
inline float tanh_approx(float u) {
  const float e = exp_approx(2.0f * std::fabs(u));
  return std::copysign(1.0f - 2.0f / (e + 1.0f), u);
}

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
inline float gelu(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + tanh_approx(u));
}

// gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx
inline float gelu_grad(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float th = tanh_approx(u);
  const float du_dx = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du_dx;
}

// Sums in double over kLanes interleaved lanes (element i goes to lane i % kLanes), the lanes
// then added pairwise: a fixed order that the compiler can vectorize, unlike one running sum.
constexpr int kLanes = 8;
inline double sum_lanes(const double* lane) {
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// sum of f(x[i]) for i in [0, n), in lanes.
template <class F>
inline double lane_sum(const float* x, size_t n, F f) {
  double lane[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; j++) lane[j] += f(x[i + j]);
  }
  for (int j = 0; i < n; i++, j++) lane[j] += f(x[i]);
  return sum_lanes(lane);
}

}  // namespace mptrain::cpu
