// Gradient reduction and the AdamW update, by [optim] zero:
// - 0: gradients are summed over DP in buckets with non-blocking all-reduces launched during
//   the last micro-batch's backward; every rank holds the full gradients and AdamW state.
// - 1 (ZeRO-1): the full gradient buffer is reduce-scattered after backward, so each DP rank
//   updates only its shard of the AdamW state, then the parameters are all-gathered.
// - 2 (ZeRO-2): the gradients are sharded too. The layers write gradients into a window the DP
//   buckets share (gradient_window.hpp), not a full-size buffer; in every micro-batch's
//   backward each bucket is reduce-scattered (non-blocking, in place) into its owners as soon
//   as it is final, added to this rank's fp32 shard accumulator, and its window region zeroed
//   for reuse. The bottom bucket (the embeddings and the LM head's tied weight) accumulates
//   over the step and is reduced at the end, after the tied sum. Between steps a rank holds
//   1/dp of the gradients (the accumulator) and of the AdamW state, plus the zeroed window.
// The tied embedding's gradient is summed between the first and last pipeline stages. The
// global gradient norm counts every replicated parameter once; clipping, the learning-rate
// schedule and the non-finite check happen here too.
#pragma once

#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"
#include "mptrain/model/config.hpp"
#include "mptrain/model/gradient_window.hpp"
#include "mptrain/model/params.hpp"
#include "mptrain/parallel/device_collectives.hpp"
#include "mptrain/parallel/grid.hpp"

namespace mptrain {

// Warm-up (linear from lr/warmup to lr), then constant, cosine or linear decay to min_lr at
// `total_steps`. `step` is 0-based.
double learning_rate(const OptimConfig& config, long step, long total_steps);

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
  // gradients are final are all-reduced while backward goes on (zero = 0).
  void begin_last_backward() { overlap_ = true; }
  // Called by Model::backward: every gradient at flat offset >= `offset` is final (for this
  // micro-batch). zero = 0: launches the all-reduce of the buckets above it in the last
  // micro-batch; zero = 2: completes the reduce-scatters launched at the previous call, then
  // launches those of the buckets above it. Collective over DP (in the same order everywhere).
  void grads_ready(size_t offset);
  // After each micro-batch's backward (zero = 2): completes its bucket reduce-scatters, so the
  // window is free for the next one. Collective over DP.
  void backward_done();
  // Completes every reduction of this step (collective over DP and the embedding pair).
  void finish_reduction();
  // Norm, clipping and the AdamW update; zeroes the gradients. Collective over the world.
  StepReport step(long step_index, long total_steps);

  // Test hook: puts a NaN into the first gradient element this rank counts for the norm
  // (after finish_reduction), to exercise the non-finite path from one rank only.
  void inject_nonfinite_gradient();

  // Backend memory of this rank, in elements: AdamW's m and v (full, or the DP shard under
  // ZeRO-1 and 2), and the reduced gradient shard (ZeRO-1 and 2; else 0). The layers' gradient
  // buffer (full, or ZeRO-2's window) is ParamSet::grads().
  size_t moment_elements() const { return m_.size() + v_.size(); }
  size_t gradient_shard_elements() const { return grad_shard_.size(); }

  long adam_step() const { return adam_step_; }
  void set_adam_step(long t) { adam_step_ = t; }
  // Host copies of the full (unsharded over DP) first and second moments in ParamSet layout.
  // Collective over DP when zero = 1 or 2.
  void gather_state(std::vector<float>& m, std::vector<float>& v);
  // Loads the moments from host arrays in ParamSet layout (each rank keeps its shard).
  void scatter_state(const std::vector<float>& m, const std::vector<float>& v);

 private:
  struct Bucket {
    size_t lo = 0, hi = 0;
    Request request;
    bool launched = false;
  };
  // A ZeRO-2 bucket: its window region and how its reduce-scatter splits it over DP.
  struct WindowBucket {
    float* region = nullptr;  // its [lo, hi) in the window
    size_t size = 0;
    std::vector<int> counts;  // elements of it each DP rank owns
    FlatRange mine;           // the part this rank owns (flat offsets; may be empty)
    int last_phase = 0;       // the backward phase that finishes it
    Request request;
    bool launched = false;
  };
  void setup_window();
  void launch_window_bucket(WindowBucket& b);
  void release_window_bucket(WindowBucket& b);
  void release_launched();
  void reduce_tied_embedding();
  float* reduced_grads() { return config_.zero ? grad_shard_.data() : params_.grads().data(); }
  bool window() const { return config_.zero == 2; }
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
  Buffer m_, v_;                          // full (zero = 0) or this rank's shard (zero = 1, 2)
  Buffer grad_shard_;                     // zero = 1: reduce-scattered gradients;
                                          // zero = 2: their accumulator over micro-batches
  GradientWindowPlan plan_;               // zero = 2
  std::vector<WindowBucket> window_;      // zero = 2, as plan_.buckets (the last is the bottom)
  size_t next_phase_ = 0;                 // zero = 2: the backward phase that ends next
  long adam_step_ = 0;
};

}  // namespace mptrain
