// DP gradient reduction (bucketed and overlapped, or ZeRO-1 reduce-scatter), the global
// gradient norm, clipping and AdamW. AdamW is element-wise, so updating a DP shard (zero = 1)
// gives exactly the values the full update (zero = 0) would.
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
  const size_t bucket_elems = std::max<size_t>(1, size_t(bucket_mb * 1024 * 1024 / sizeof(float)));
  std::vector<size_t> offsets;
  for (const ParamInfo& p : params.infos()) offsets.push_back(p.offset);
  for (const FlatRange& r : dp_buckets(offsets, params.padded(), bucket_elems))
    buckets_.push_back(Bucket{r.lo, r.hi, Request(), false});
}

void Optimizer::grads_ready(size_t offset) {
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

void Optimizer::finish_reduction() {
  overlap_ = false;
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
                     /*zero_grad=*/!config_.zero);
    }
    if (config_.zero) {
      be_.synchronize();
      std::vector<float> shard(shard_size_), full(params_.padded());
      be_.to_host(shard.data(), params_.params().data() + shard_lo_, shard_size_);
      grid_.dp().allgather(shard, full);  // collective over DP
      be_.to_device(params_.params().data(), full.data(), full.size());
    }
  }
  // The gradients start the next step at zero. With zero = 0 an applied step has zeroed every
  // tensor already (the alignment gaps between tensors and the padding are never written).
  if (!report.applied || config_.zero) be_.fill(params_.grads().data(), 0.0f, params_.padded());
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
