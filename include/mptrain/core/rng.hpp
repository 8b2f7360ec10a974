// Layout-independent initialisation (doc/DESIGN.md §2): every element of every parameter is a pure
// function of the seed, the tensor's name and the element's global index, computed with a
// counter-based generator, so a shard computes exactly its slice of the same global tensor
// whatever the layout.
#pragma once

#include <cstdint>
#include <string_view>

namespace mptrain {

// 64-bit FNV-1a of a tensor name: the generator's stream id.
uint64_t name_stream(std::string_view name);

// A standard normal deviate for (seed, stream, index): Box-Muller on two uniforms drawn from
// a SplitMix64-style mix of the three counters. Pure and identical on every rank.
float normal_at(uint64_t seed, uint64_t stream, uint64_t index);

// A uniform deviate in [0, 1) for (seed, stream, index) (used by the shuffle sampler and
// by text sampling).
double uniform_at(uint64_t seed, uint64_t stream, uint64_t index);

}  // namespace mptrain
