// ZeRO-2's gradient window: under [optim] zero = 2 a rank keeps no full-size gradient buffer.
// The layers still write each tensor's gradient whole (GEMMs accumulate into it), but into a
// smaller "window" where the DP buckets (dp_buckets, whole tensors) take turns: a bucket holds
// a region of the window from the backward phase that first writes it until its
// reduce-scatter into the DP owners' shards has completed, then the region is zeroed and a
// later bucket of the same micro-batch, or the next micro-batch, reuses it. The plan (where
// each bucket sits, in which phases it is live) is a pure function of the flat layout, so the
// optimizer allocates exactly what the analytic memory count predicts (analytic.cpp).
//
// Backward phases: Model::backward finishes gradients top-down, group by group (the head's
// LayerNorm, each block, the embeddings: catalogue.hpp's parts and layers), reporting each
// group's lowest flat offset when the group is done (Optimizer::grads_ready). Phase j writes
// the tensors of group j (counted from the top); its end is reported with boundary j. The
// bucket holding offset 0 (the embeddings, and on the last stage the LM head's tied weight,
// whose gradient the head writes before any block) is live during the whole backward and is
// not released per micro-batch: it accumulates over the step and is reduced once, at the end
// (after the tied embedding's sum between the first and last stage).
#pragma once

#include <cstddef>
#include <vector>

#include "mptrain/model/catalogue.hpp"

namespace mptrain {

// A range [lo, hi) of the flat parameter / gradient layout (elements).
struct FlatRange {
  size_t lo = 0, hi = 0;
  size_t size() const { return hi - lo; }
  bool operator==(const FlatRange&) const = default;
};

// The bucket size in elements for [parallel] bucket_mb (at least one element).
size_t bucket_elements(double bucket_mb);

// The DP buckets (zero = 0 all-reduces them, zero = 2 reduce-scatters them): whole tensors,
// walking down from the top of the flat buffer (the order in which backward finishes the
// gradients). `tensor_offsets` are the tensors' start offsets in ascending order; `padded` the
// buffer's size. A bucket closes once it holds at least `bucket_elems` elements; the last one
// reaches down to 0. Returned highest first; together they cover [0, padded) exactly. Pure.
std::vector<FlatRange> dp_buckets(const std::vector<size_t>& tensor_offsets, size_t padded,
                                  size_t bucket_elems);

// One tensor of a stage's flat layout, as the window plan needs it.
struct FlatTensor {
  size_t offset = 0;  // start in the flat layout (ascending, from 0)
  int group = 0;      // backward group: tensors finished together (same part and layer)
};
// The flat layout of stage `pp_rank` as ParamSet lays it out (catalogue order, each tensor
// 16-float aligned), with its groups, and the padded size (a multiple of dp); `stage_split`
// as for stage_tensors (empty: equal). Pure.
std::vector<FlatTensor> stage_flat_layout(const ModelConfig& model, int tp, int pp,
                                          int pp_rank, int dp, size_t* padded,
                                          const std::vector<int>& stage_split = {});

struct GradientWindowPlan {
  std::vector<FlatRange> buckets;    // dp_buckets, highest first; the last one holds offset 0
  std::vector<size_t> window_offset; // per bucket: where its [lo, hi) starts in the window
  std::vector<int> last_phase;       // per bucket: the phase that finishes its gradients
  std::vector<size_t> boundaries;    // the offset reported at the end of each phase, descending
  size_t window = 0;                 // elements of the window
  size_t bottom() const { return buckets.back().size(); }  // the step-long bucket, elements
  // Where flat offset `flat` (inside bucket `b`) lives in the window.
  size_t to_window(size_t b, size_t flat) const { return window_offset[b] + flat - buckets[b].lo; }
};
// Places the buckets in the window, first fit, so that buckets live at the same time never
// overlap. A bucket other than the bottom one is live from the phase that writes its highest
// tensor through the phase after the one that finishes it (its reduce-scatter overlaps that
// phase and is waited for at its end); the bottom bucket is live throughout. Pure.
GradientWindowPlan plan_gradient_window(const std::vector<FlatTensor>& tensors, size_t padded,
                                        size_t bucket_elems);

}  // namespace mptrain
