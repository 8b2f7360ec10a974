// Gradient reduction and the AdamW update. Gradients are summed over DP in buckets with
// non-blocking all-reduces launched during the last micro-batch's backward (zero = 0), or
// reduce-scattered so each DP rank updates only its shard of the AdamW state and then
// all-gathers the parameters (zero = 1, ZeRO-1). The tied embedding's gradient is summed
// between the first and last pipeline stages. The global gradient norm counts every
// replicated parameter once; clipping, the learning-rate schedule and the non-finite check
// happen here too.
#pragma once

#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"
#include "mptrain/model/config.hpp"
#include "mptrain/model/params.hpp"
#include "mptrain/parallel/device_collectives.hpp"
#include "mptrain/parallel/grid.hpp"

namespace mptrain {

// Warm-up (linear from lr/warmup to lr), then constant, cosine or linear decay to min_lr at
// `total_steps`. `step` is 0-based.
double learning_rate(const OptimConfig& config, long step, long total_steps);

// A range [lo, hi) of the flat parameter / gradient buffers (elements).
struct FlatRange {
  size_t lo = 0, hi = 0;
  size_t size() const { return hi - lo; }
  bool operator==(const FlatRange&) const = default;
};

// The DP all-reduce buckets (zero = 0): whole tensors, walking down from the top of the flat
// buffer (the order in which backward finishes the gradients). `tensor_offsets` are the
// tensors' start offsets in ascending order; `padded` the buffer's size. A bucket closes once
// it holds at least `bucket_elems` elements; the last one reaches down to 0. Returned highest
// first; together they cover [0, padded) exactly. Pure.
std::vector<FlatRange> dp_buckets(const std::vector<size_t>& tensor_offsets, size_t padded,
                                  size_t bucket_elems);

// DP rank `dp_rank`'s ZeRO shard of a flat buffer of `padded` elements (a multiple of dp):
// equal contiguous slices in rank order. Pure.
FlatRange zero_shard(size_t padded, int dp, int dp_rank);

struct StepReport {
  double grad_norm = 0;  // before clipping
  double lr = 0;
  bool applied = true;   // false when the gradient norm was not finite (step skipped)
};

class Optimizer {
 public:
  Optimizer(Backend& backend, const Grid& grid, ParamSet& params, const OptimConfig& config,
            double bucket_mb);

  // Call before the backward of the last micro-batch of a step: from then on, buckets whose
  // gradients are final are all-reduced while backward goes on.
  void begin_last_backward() { overlap_ = true; }
  // Called by Model::backward: every gradient at flat offset >= `offset` is final.
  void grads_ready(size_t offset);
  // Completes every reduction of this step (collective over DP and the embedding pair).
  void finish_reduction();
  // Norm, clipping and the AdamW update; zeroes the gradients. Collective over the world.
  StepReport step(long step_index, long total_steps);

  // Test hook: puts a NaN into the first gradient element this rank counts for the norm
  // (after finish_reduction), to exercise the non-finite path from one rank only.
  void inject_nonfinite_gradient();

  // Backend memory of this rank, in elements: AdamW's m and v (full, or the DP shard under
  // ZeRO-1), and the reduce-scattered gradient shard (ZeRO-1; else 0).
  size_t moment_elements() const { return m_.size() + v_.size(); }
  size_t gradient_shard_elements() const { return grad_shard_.size(); }

  long adam_step() const { return adam_step_; }
  void set_adam_step(long t) { adam_step_ = t; }
  // Host copies of the full (unsharded over DP) first and second moments in ParamSet layout.
  // Collective over DP when zero = 1.
  void gather_state(std::vector<float>& m, std::vector<float>& v);
  // Loads the moments from host arrays in ParamSet layout (each rank keeps its shard).
  void scatter_state(const std::vector<float>& m, const std::vector<float>& v);

 private:
  struct Bucket {
    size_t lo = 0, hi = 0;
    Request request;
    bool launched = false;
  };
  void reduce_tied_embedding();
  float* reduced_grads() { return config_.zero ? grad_shard_.data() : params_.grads().data(); }
  size_t reduced_base() const { return config_.zero ? shard_lo_ : 0; }
  double local_norm_squares(const float* grads, size_t base) const;

  Backend& be_;
  const Grid& grid_;
  ParamSet& params_;
  OptimConfig config_;
  DeviceCollectives collectives_;
  std::vector<Bucket> buckets_;  // highest offsets first
  bool overlap_ = false;
  size_t shard_lo_ = 0, shard_size_ = 0;  // this rank's DP shard of the flat buffers
  Buffer m_, v_;                          // full (zero = 0) or this rank's shard (zero = 1)
  Buffer grad_shard_;                     // zero = 1: reduce-scattered gradients
  long adam_step_ = 0;
};

}  // namespace mptrain
