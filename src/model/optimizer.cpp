// DP gradient reduction (bucketed and overlapped all-reduce, ZeRO-1's reduce-scatter, or
// ZeRO-2's per-bucket reduce-scatter from the gradient window), the global gradient norm,
// clipping and AdamW. AdamW is element-wise, so updating a DP shard (zero = 1, 2) gives
// exactly the values the full update (zero = 0) would, given the same reduced gradients.
#include "mptrain/model/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <span>

#include "mptrain/core/error.hpp"

namespace mptrain {

double learning_rate(const OptimConfig& c, long step, long total_steps) {
  if (step < c.warmup_steps) return c.lr * double(step + 1) / double(c.warmup_steps);
  if (c.schedule == "constant") return c.lr;
  const long decay_steps = std::max<long>(1, total_steps - c.warmup_steps);
  const double progress = std::clamp(double(step - c.warmup_steps) / double(decay_steps), 0.0, 1.0);
  if (c.schedule == "linear") return c.lr - (c.lr - c.min_lr) * progress;
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
}

FlatRange zero_shard(size_t padded, int dp, int dp_rank) {
  MPT_CHECK(dp >= 1 && dp_rank >= 0 && dp_rank < dp && padded % size_t(dp) == 0,
            "zero_shard: " + std::to_string(padded) + " elements over dp = " + std::to_string(dp) +
                ", rank " + std::to_string(dp_rank));
  const size_t size = padded / size_t(dp);
  return FlatRange{size * size_t(dp_rank), size * size_t(dp_rank) + size};
}

Optimizer::Optimizer(Backend& backend, const Grid& grid, ParamSet& params,
                     const OptimConfig& config, double bucket_mb)
    : be_(backend), grid_(grid), params_(params), config_(config), collectives_(backend) {
  const FlatRange shard = zero_shard(params.padded(), grid.layout().dp, grid.dp_rank());
  shard_size_ = shard.size();
  shard_lo_ = shard.lo;
  if (config.zero) {
    m_ = Buffer(be_, shard_size_);
    v_ = Buffer(be_, shard_size_);
    grad_shard_ = Buffer(be_, shard_size_);
  } else {
    m_ = Buffer(be_, params.padded());
    v_ = Buffer(be_, params.padded());
  }
  const size_t bucket_elems = bucket_elements(bucket_mb);
  if (window()) {
    std::vector<FlatTensor> flat;
    for (size_t i = 0; i < params.infos().size(); ++i) {
      const ParamInfo& p = params.infos()[i];
      const TensorDesc* prev = i ? &params.infos()[i - 1].tensor : nullptr;
      const bool new_group = !prev || prev->part != p.tensor.part || prev->layer != p.tensor.layer;
      flat.push_back({p.offset, flat.empty() ? 0 : flat.back().group + (new_group ? 1 : 0)});
    }
    plan_ = plan_gradient_window(flat, params.padded(), bucket_elems);
    setup_window();
    return;
  }
  std::vector<size_t> offsets;
  for (const ParamInfo& p : params.infos()) offsets.push_back(p.offset);
  for (const FlatRange& r : dp_buckets(offsets, params.padded(), bucket_elems))
    buckets_.push_back(Bucket{r.lo, r.hi, Request(), false});
}

void Optimizer::setup_window() {
  // Every tensor's gradient moves into its bucket's window region.
  std::vector<size_t> grad_offsets;
  for (const ParamInfo& p : params_.infos()) {
    size_t b = 0;
    while (plan_.buckets[b].lo > p.offset) ++b;
    grad_offsets.push_back(plan_.to_window(b, p.offset));
  }
  params_.use_gradient_window(grad_offsets, plan_.window);
  const int dp = grid_.layout().dp;
  window_.resize(plan_.buckets.size());
  for (size_t b = 0; b < window_.size(); ++b) {
    const FlatRange& r = plan_.buckets[b];
    WindowBucket& w = window_[b];
    w.region = params_.grads().data() + plan_.window_offset[b];
    w.size = r.size();
    w.last_phase = plan_.last_phase[b];
    for (int d = 0; d < dp; ++d) {
      const FlatRange shard = zero_shard(params_.padded(), dp, d);
      const size_t lo = std::max(shard.lo, r.lo), hi = std::min(shard.hi, r.hi);
      w.counts.push_back(lo < hi ? int(hi - lo) : 0);
      if (d == grid_.dp_rank()) w.mine = lo < hi ? FlatRange{lo, hi} : FlatRange{};
    }
  }
}

void Optimizer::launch_window_bucket(WindowBucket& b) {
  // Reduce-scatter in place: this rank's summed part lands at the start of the region.
  b.launched = true;
  if (grid_.layout().dp == 1) return;  // the region is this rank's part already
  be_.synchronize();                   // the gradients must be computed before MPI reads them
  if (be_.host_accessible()) {
    b.request = grid_.dp().ireduce_scatter_sum(std::span<float>(b.region, b.size),
                                               b.counts);  // collective over DP
    return;
  }
  std::vector<float> host(b.size);  // staged through the host, without overlap
  be_.to_host(host.data(), b.region, b.size);
  grid_.dp().ireduce_scatter_sum(host, b.counts).wait();  // collective over DP
  be_.to_device(b.region, host.data(), b.mine.size());
}

void Optimizer::release_window_bucket(WindowBucket& b) {
  b.request.wait();
  b.launched = false;
  if (b.mine.size()) {
    float* acc = grad_shard_.data() + (b.mine.lo - shard_lo_);
    be_.add(acc, acc, b.region, b.mine.size());
  }
  be_.fill(b.region, 0.0f, b.size);
}

void Optimizer::release_launched() {
  for (WindowBucket& b : window_)
    if (b.launched) release_window_bucket(b);
}

void Optimizer::grads_ready(size_t offset) {
  if (window()) {
    // The phase that just ended must be the next one of the plan: the window's reuse of
    // regions relies on the order in which backward finishes the gradients.
    MPT_CHECK(next_phase_ < plan_.boundaries.size() && plan_.boundaries[next_phase_] == offset,
              "ZeRO-2: backward reported offset " + std::to_string(offset) +
                  " where the gradient window plan expects the end of phase " +
                  std::to_string(next_phase_));
    release_launched();  // launched at the previous phase's end
    const size_t bottom = window_.size() - 1;
    for (size_t b = 0; b < bottom; ++b)
      if (window_[b].last_phase == int(next_phase_)) launch_window_bucket(window_[b]);
    ++next_phase_;
    return;
  }
  if (!overlap_ || config_.zero || grid_.layout().dp == 1 || !be_.host_accessible()) return;
  be_.synchronize();  // the gradients must be computed before MPI reads them
  for (Bucket& b : buckets_) {
    if (b.launched || b.lo < offset) continue;
    b.request = grid_.dp().iallreduce_sum(
        std::span<float>(params_.grads().data() + b.lo, b.hi - b.lo));  // collective over DP
    b.launched = true;
  }
}

void Optimizer::reduce_tied_embedding() {
  const Comm& embed = grid_.embed();
  if (embed.null() || embed.size() == 1) return;
  for (size_t i = 0; i < params_.infos().size(); ++i)
    if (params_.infos()[i].tensor.tied)
      collectives_.allreduce_sum(embed, params_.grad(i), params_.infos()[i].size());  // collective
}

void Optimizer::backward_done() {
  if (!window()) return;
  // A stage without the embedding ends its last phase here (no report of offset 0).
  const size_t bottom = window_.size() - 1;
  for (size_t b = 0; b < bottom; ++b)
    if (!window_[b].launched && window_[b].last_phase >= int(next_phase_))
      launch_window_bucket(window_[b]);
  release_launched();
  next_phase_ = 0;
}

void Optimizer::finish_reduction() {
  overlap_ = false;
  if (window()) {  // the bottom bucket, accumulated over the step
    reduce_tied_embedding();
    WindowBucket& bottom = window_.back();
    launch_window_bucket(bottom);
    release_window_bucket(bottom);
    return;
  }
  if (config_.zero) {
    reduce_tied_embedding();
    be_.synchronize();
    std::vector<float> full(params_.padded()), shard(shard_size_);
    be_.to_host(full.data(), params_.grads().data(), full.size());
    grid_.dp().reduce_scatter_sum(full, shard);  // collective over DP
    be_.to_device(grad_shard_.data(), shard.data(), shard.size());
    return;
  }
  for (Bucket& b : buckets_) {
    if (!b.launched)
      collectives_.allreduce_sum(grid_.dp(), params_.grads().data() + b.lo, b.hi - b.lo);  // DP
    b.request.wait();
    b.launched = false;
  }
  reduce_tied_embedding();
}

double Optimizer::local_norm_squares(const float* grads, size_t base) const {
  // Sum g^2 over this rank's DP shard of the tensors this rank owns for the norm.
  double sum = 0;
  const size_t lo = shard_lo_, hi = shard_lo_ + shard_size_;
  for (const ParamInfo& p : params_.infos()) {
    if (!p.norm_owner) continue;
    const size_t a = std::max(lo, p.offset), b = std::min(hi, p.offset + p.size());
    if (a < b) sum += be_.sum_squares(grads + (a - base), b - a);
  }
  return sum;
}

StepReport Optimizer::step(long step_index, long total_steps) {
  StepReport report;
  report.lr = learning_rate(config_, step_index, total_steps);
  float* grads = reduced_grads();
  const size_t base = reduced_base();
  double squares = local_norm_squares(grads, base);
  grid_.world().allreduce_sum(std::span<double>(&squares, 1));  // collective over the world
  report.grad_norm = std::sqrt(squares);
  report.applied = std::isfinite(report.grad_norm);
  if (report.applied) {
    // Clipping, the update and (zero = 0) the zeroing of the gradients for the next step are
    // one fused pass per tensor (Backend::adamw_step).
    float clip_scale = 1.0f;
    if (config_.grad_clip > 0 && report.grad_norm > config_.grad_clip)
      clip_scale = float(config_.grad_clip / report.grad_norm);
    ++adam_step_;
    // AdamW per tensor (weight decay differs), restricted to the shard under ZeRO-1.
    const size_t lo = config_.zero ? shard_lo_ : 0;
    const size_t hi = config_.zero ? shard_lo_ + shard_size_ : params_.padded();
    for (const ParamInfo& p : params_.infos()) {
      const size_t a = std::max(lo, p.offset), b = std::min(hi, p.offset + p.size());
      if (a >= b) continue;
      const float wd = (p.tensor.decay || config_.decay_all) ? float(config_.weight_decay) : 0.0f;
      be_.adamw_step(params_.params().data() + a, grads + (a - base), m_.data() + (a - lo),
                     v_.data() + (a - lo), b - a, float(report.lr), float(config_.beta1),
                     float(config_.beta2), float(config_.eps), wd, adam_step_, clip_scale,
                     /*zero_grad=*/config_.zero != 1);  // zero = 2: the accumulator
    }
    if (window() && grid_.layout().dp == 1) {
      // One DP rank: its shard is the whole buffer; nothing to gather.
    } else if (window() && be_.host_accessible()) {
      be_.synchronize();
      grid_.dp().allgather_in_place(
          std::span<float>(params_.params().data(), params_.padded()));  // collective over DP
    } else if (config_.zero) {
      be_.synchronize();
      std::vector<float> shard(shard_size_), full(params_.padded());
      be_.to_host(shard.data(), params_.params().data() + shard_lo_, shard_size_);
      grid_.dp().allgather(shard, full);  // collective over DP
      be_.to_device(params_.params().data(), full.data(), full.size());
    }
  }
  // The gradients start the next step at zero. With zero = 0 an applied step has zeroed every
  // tensor already (the alignment gaps between tensors and the padding are never written);
  // with zero = 2, the accumulator (the window was zeroed bucket by bucket).
  if (!report.applied || config_.zero == 1)
    be_.fill(params_.grads().data(), 0.0f, params_.grads().size());
  if (!report.applied && window()) be_.fill(grad_shard_.data(), 0.0f, grad_shard_.size());
  return report;
}

void Optimizer::inject_nonfinite_gradient() {
  for (const ParamInfo& p : params_.infos()) {
    const size_t a = std::max(shard_lo_, p.offset);
    if (!p.norm_owner || a >= std::min(shard_lo_ + shard_size_, p.offset + p.size())) continue;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    be_.to_device(reduced_grads() + (a - reduced_base()), &nan, 1);
    return;
  }
}

void Optimizer::gather_state(std::vector<float>& m, std::vector<float>& v) {
  m.assign(params_.padded(), 0.0f);
  v.assign(params_.padded(), 0.0f);
  if (!config_.zero) {
    be_.to_host(m.data(), m_.data(), m.size());
    be_.to_host(v.data(), v_.data(), v.size());
    return;
  }
  std::vector<float> shard(shard_size_);
  be_.to_host(shard.data(), m_.data(), shard_size_);
  grid_.dp().allgather(shard, m);  // collective over DP
  be_.to_host(shard.data(), v_.data(), shard_size_);
  grid_.dp().allgather(shard, v);  // collective over DP
}

void Optimizer::scatter_state(const std::vector<float>& m, const std::vector<float>& v) {
  const size_t lo = config_.zero ? shard_lo_ : 0;
  be_.to_device(m_.data(), m.data() + lo, m_.size());
  be_.to_device(v_.data(), v.data() + lo, v_.size());
}

}  // namespace mptrain
