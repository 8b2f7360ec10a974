// The flat parameter set: registration of each tensor's shard (its geometry from the catalogue,
// who writes it and who counts it for the norm from the rank's place) and the initial values,
// computed element by element from global indices (core/rng.hpp), so every layout holds exactly
// its slice of the same global tensors.
#include "mptrain/model/params.hpp"

#include <algorithm>

#include "mptrain/core/error.hpp"
#include "mptrain/core/rng.hpp"

namespace mptrain {

size_t ParamSet::add(const TensorDesc& tensor, const RankPlace& place) {
  MPT_CHECK(!backend_, "ParamSet::add after allocate");
  ParamInfo info;
  info.tensor = tensor;
  info.spec = shard_of(tensor, place.tp, place.tp_rank);
  // One rank counts each tensor for the norm and writes it: not a stage's copy of another
  // stage's tensor, and of a tensor every TP rank holds whole, TP rank 0; of the DP replicas,
  // dp_rank 0.
  info.norm_owner = !held_as_copy(tensor, place.pp_rank) &&
                    (tensor.split != Split::replicated || place.tp_rank == 0);
  info.spec.writer = place.dp_writer && info.norm_owner;
  info.offset = used_;
  info.grad_offset = used_;
  used_ += aligned_elements(info.size());
  infos_.push_back(std::move(info));
  return infos_.size() - 1;
}

void ParamSet::use_gradient_window(const std::vector<size_t>& grad_offsets, size_t window) {
  MPT_CHECK(backend_ && grad_offsets.size() == infos_.size(), "use_gradient_window before allocate");
  for (size_t i = 0; i < infos_.size(); ++i) {
    MPT_CHECK(grad_offsets[i] + infos_[i].size() <= window, "gradient window too small");
    infos_[i].grad_offset = grad_offsets[i];
  }
  grads_ = Buffer(*backend_, window);  // zero-filled
}

namespace {
bool is(const TensorDesc& t, Module module, Role role, int layer) {
  return t.module == module && t.role == role && t.layer == layer;
}
}  // namespace

bool ParamSet::holds(Module module, Role role, int layer) const {
  return std::any_of(infos_.begin(), infos_.end(),
                     [&](const ParamInfo& p) { return is(p.tensor, module, role, layer); });
}

size_t ParamSet::find(Module module, Role role, int layer) const {
  for (size_t i = 0; i < infos_.size(); ++i)
    if (is(infos_[i].tensor, module, role, layer)) return i;
  MPT_FATAL("ParamSet::find: module " + std::to_string(int(module)) + " role " +
            std::to_string(int(role)) + " layer " + std::to_string(layer) +
            " is not registered on this rank");
}

void ParamSet::allocate(Backend& backend, size_t pad_multiple) {
  backend_ = &backend;
  const size_t m = std::max<size_t>(1, pad_multiple);
  const size_t total = (used_ + m - 1) / m * m;
  params_ = Buffer(backend, total);
  grads_ = Buffer(backend, total);
}

void ParamSet::initialize(uint64_t seed) {
  std::vector<float> host(params_.size(), 0.0f);
  for (const ParamInfo& p : infos_) {
    float* dst = host.data() + p.offset;
    if (p.tensor.init == InitKind::ones) {
      // Only the rows that hold real data; padding stays zero.
      for (const ShardBlock& b : p.spec.blocks)
        for (int64_t r = 0; r < b.rows; ++r)
          for (int64_t c = 0; c < b.cols; ++c)
            dst[(b.local_row + r) * p.spec.local_cols + b.local_col + c] = 1.0f;
    } else if (p.tensor.init == InitKind::normal) {
      const uint64_t stream = name_stream(p.spec.name);
      const int64_t global_cols = p.spec.global_shape.size() > 1 ? p.spec.global_shape[1] : 1;
      for (const ShardBlock& b : p.spec.blocks)
        for (int64_t r = 0; r < b.rows; ++r)
          for (int64_t c = 0; c < b.cols; ++c) {
            const uint64_t index = (b.global_row + r) * global_cols + b.global_col + c;
            dst[(b.local_row + r) * p.spec.local_cols + b.local_col + c] =
                p.tensor.init_std * normal_at(seed, stream, index);
          }
    }
  }
  backend_->to_device(params_.data(), host.data(), host.size());
  backend_->fill(grads_.data(), 0.0f, grads_.size());
}

}  // namespace mptrain
