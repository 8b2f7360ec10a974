// The DP buckets and ZeRO-2's gradient window plan (gradient_window.hpp): pure functions of a
// stage's flat layout, shared by the optimizer (what it allocates) and the analytic memory and
// traffic counts (what they predict).
#include "mptrain/model/gradient_window.hpp"

#include <algorithm>
#include <climits>

#include "mptrain/core/error.hpp"
#include "mptrain/model/params.hpp"

namespace mptrain {

size_t bucket_elements(double bucket_mb) {
  return std::max<size_t>(1, size_t(bucket_mb * 1024 * 1024 / sizeof(float)));
}

std::vector<FlatRange> dp_buckets(const std::vector<size_t>& tensor_offsets, size_t padded,
                                  size_t bucket_elems) {
  std::vector<FlatRange> buckets;
  size_t hi = padded;
  for (size_t i = tensor_offsets.size(); i-- > 0;) {
    if (hi - tensor_offsets[i] >= bucket_elems || i == 0) {
      const size_t lo = i == 0 ? 0 : tensor_offsets[i];
      buckets.push_back(FlatRange{lo, hi});
      hi = lo;
    }
  }
  return buckets;
}

std::vector<FlatTensor> stage_flat_layout(const ModelConfig& model, int tp, int pp,
                                          int pp_rank, int dp, size_t* padded,
                                          const std::vector<int>& stage_split) {
  std::vector<FlatTensor> flat;
  size_t used = 0;
  const TensorDesc* previous = nullptr;
  const std::vector<TensorDesc> tensors = stage_tensors(model, pp, pp_rank, stage_split);
  for (const TensorDesc& t : tensors) {
    const bool new_group = !previous || previous->part != t.part || previous->layer != t.layer;
    flat.push_back({used, flat.empty() ? 0 : flat.back().group + (new_group ? 1 : 0)});
    used += aligned_elements(size_t(local_elements(t, tp)));
    previous = &t;
  }
  *padded = (used + size_t(dp) - 1) / size_t(dp) * size_t(dp);
  return flat;
}

namespace {

// The phase that writes flat offset `x`: the first boundary at or below it.
int phase_of(const std::vector<size_t>& boundaries, size_t x) {
  int j = 0;
  while (x < boundaries[size_t(j)]) ++j;
  return j;
}

size_t align_up(size_t n) { return aligned_elements(n); }

}  // namespace

GradientWindowPlan plan_gradient_window(const std::vector<FlatTensor>& tensors, size_t padded,
                                        size_t bucket_elems) {
  MPT_CHECK(!tensors.empty() && tensors.front().offset == 0,
            "plan_gradient_window: the flat layout must start at 0");
  GradientWindowPlan plan;
  std::vector<size_t> offsets;
  for (size_t i = 0; i < tensors.size(); ++i) {
    offsets.push_back(tensors[i].offset);
    if (i == 0 || tensors[i].group != tensors[i - 1].group) plan.boundaries.push_back(tensors[i].offset);
  }
  std::reverse(plan.boundaries.begin(), plan.boundaries.end());  // descending; the last is 0
  plan.buckets = dp_buckets(offsets, padded, bucket_elems);

  // Live phases [first, last] of each bucket; the bottom bucket throughout.
  const size_t n = plan.buckets.size();
  std::vector<int> first(n), last(n);
  for (size_t b = 0; b < n; ++b) {
    const FlatRange& r = plan.buckets[b];
    plan.last_phase.push_back(phase_of(plan.boundaries, r.lo));
    const bool bottom = b + 1 == n;
    first[b] = bottom ? 0 : phase_of(plan.boundaries, r.hi - 1);
    last[b] = bottom ? INT_MAX : plan.last_phase.back() + 1;
  }
  // First fit: the lowest aligned offset clear of every placed bucket live at the same time.
  for (size_t b = 0; b < n; ++b) {
    std::vector<FlatRange> taken;
    for (size_t c = 0; c < b; ++c)
      if (first[c] <= last[b] && first[b] <= last[c])
        taken.push_back({plan.window_offset[c], plan.window_offset[c] + plan.buckets[c].size()});
    size_t at = 0;
    for (bool moved = true; moved;) {  // taken ranges may overlap each other: rescan after a move
      moved = false;
      for (const FlatRange& t : taken)
        if (at + plan.buckets[b].size() > t.lo && at < t.hi) at = align_up(t.hi), moved = true;
    }
    plan.window_offset.push_back(at);
    plan.window = std::max(plan.window, at + plan.buckets[b].size());
  }
  return plan;
}

}  // namespace mptrain
