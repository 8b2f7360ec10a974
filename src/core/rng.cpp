// Counter-based random numbers for layout-independent initialisation: no generator state is
// carried between elements, so any rank can compute any element directly.
#include "mptrain/core/rng.hpp"

#include <cmath>

namespace mptrain {

namespace {
// SplitMix64's finaliser: a bijective avalanche mix of 64 bits.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t bits_at(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix64(mix64(mix64(seed) ^ stream) ^ index);
}
// 53 random bits to a double in [0, 1).
double unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }
}  // namespace

uint64_t name_stream(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

double uniform_at(uint64_t seed, uint64_t stream, uint64_t index) {
  return unit(bits_at(seed, stream, index));
}

float normal_at(uint64_t seed, uint64_t stream, uint64_t index) {
  // Two uniforms per element from the even/odd counters; u1 in (0, 1] keeps log finite.
  const double u1 = 1.0 - unit(bits_at(seed, stream, 2 * index));
  const double u2 = unit(bits_at(seed, stream, 2 * index + 1));
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace mptrain
