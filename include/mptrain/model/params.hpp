// This rank's parameters: every tensor of its stage (catalogue.hpp), its TP shard, in one flat
// buffer (and the gradients in another of the same layout), so the optimizer, the DP reduction
// and checkpoints see one contiguous range. Tensors sit in registration order, each 16-float
// aligned; the total is padded to a multiple of dp (equal ZeRO shards).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"
#include "mptrain/core/shard.hpp"
#include "mptrain/model/catalogue.hpp"

namespace mptrain {

// Each tensor's start in the flat buffers is a multiple of this many floats (vector loads).
inline constexpr size_t param_alignment = 16;
inline constexpr size_t aligned_elements(size_t n) {
  return (n + param_alignment - 1) / param_alignment * param_alignment;
}

// Where this rank sits, as registration needs it.
struct RankPlace {
  int tp = 1, tp_rank = 0;
  bool dp_writer = true;  // dp_rank == 0: writes the tensors DP replicates
  int pp_rank = 0;        // its pipeline stage (a tied tensor off its owner's stage is a copy)
};

// One parameter tensor of this rank, placed in the flat parameter and gradient buffers.
struct ParamInfo {
  TensorDesc tensor;  // the catalogue's description
  ShardSpec spec;     // this rank's part, in global coordinates
  size_t offset = 0;  // element offset into ParamSet's flat buffers
  // Element offset of its gradient in the gradient buffer: `offset`, except under ZeRO-2,
  // where the gradient buffer is a window the DP buckets share (use_gradient_window).
  size_t grad_offset = 0;
  // True on exactly one rank of each TP group / tied-embedding pair for this tensor, so the
  // global gradient norm counts every replicated parameter once (DP replicas are handled by
  // sharding the norm over DP).
  bool norm_owner = true;
  size_t size() const { return static_cast<size_t>(spec.local_size()); }
};

class ParamSet {
 public:
  // Registration, before allocate(): this rank's shard of `tensor`; returns its index.
  size_t add(const TensorDesc& tensor, const RankPlace& place);
  // The index of a registered tensor (layer -1 outside the blocks); fatal when absent.
  size_t find(Module module, Role role, int layer = -1) const;
  bool holds(Module module, Role role, int layer = -1) const;
  // Allocates the flat buffers, padded to a multiple of `pad_multiple` elements (ZeRO shards).
  void allocate(Backend& backend, size_t pad_multiple);
  // Fills every parameter with its layout-independent initial values (host, then copied).
  void initialize(uint64_t seed);

  float* param(size_t i) { return params_.data() + infos_[i].offset; }
  // ZeRO-2 (gradient_window.hpp): replaces the flat gradient buffer by a zeroed window of
  // `window` elements, tensor i's gradient at grad_offsets[i].
  void use_gradient_window(const std::vector<size_t>& grad_offsets, size_t window);

  float* grad(size_t i) { return grads_.data() + infos_[i].grad_offset; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  Buffer& params() { return params_; }
  Buffer& grads() { return grads_; }  // flat layout, or ZeRO-2's window
  size_t used() const { return used_; }    // elements holding parameters
  size_t padded() const { return params_.size(); }

 private:
  Backend* backend_ = nullptr;
  std::vector<ParamInfo> infos_;
  size_t used_ = 0;
  Buffer params_, grads_;
};

}  // namespace mptrain
