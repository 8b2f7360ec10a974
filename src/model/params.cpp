// The flat parameter set and the builder that describes each shard in global coordinates.
// Initial values are computed element by element from global indices (init.hpp), so every
// layout holds exactly its slice of the same global tensors.
#include <algorithm>

#include "mptrain/core/error.hpp"
#include "mptrain/core/rng.hpp"
#include "mptrain/model/layers.hpp"

namespace mptrain {

size_t ParamSet::add(ParamInfo info) {
  MPT_CHECK(!backend_, "ParamSet::add after allocate");
  info.offset = used_;
  // Keep every tensor 16-float aligned for vector loads.
  used_ += (info.size() + 15) / 16 * 16;
  infos_.push_back(std::move(info));
  return infos_.size() - 1;
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
    if (p.init == InitKind::ones) {
      // Only the rows that hold real data; padding stays zero.
      for (const ShardBlock& b : p.spec.blocks)
        for (int64_t r = 0; r < b.rows; ++r)
          for (int64_t c = 0; c < b.cols; ++c)
            dst[(b.local_row + r) * p.spec.local_cols + b.local_col + c] = 1.0f;
    } else if (p.init == InitKind::normal) {
      const uint64_t stream = name_stream(p.spec.name);
      const int64_t global_cols = p.spec.global_shape.size() > 1 ? p.spec.global_shape[1] : 1;
      for (const ShardBlock& b : p.spec.blocks)
        for (int64_t r = 0; r < b.rows; ++r)
          for (int64_t c = 0; c < b.cols; ++c) {
            const uint64_t index = (b.global_row + r) * global_cols + b.global_col + c;
            dst[(b.local_row + r) * p.spec.local_cols + b.local_col + c] =
                p.init_std * normal_at(seed, stream, index);
          }
    }
  }
  backend_->to_device(params_.data(), host.data(), host.size());
  backend_->fill(grads_.data(), 0.0f, grads_.size());
}

int LayerShape::vocab_owned() const {
  return std::clamp(vocab - vocab_start(), 0, Vl());
}

namespace {
ParamInfo make_info(const std::string& name, std::vector<int64_t> global_shape, InitKind init,
                    float std, bool decay) {
  ParamInfo p;
  p.spec.name = name;
  p.spec.global_shape = std::move(global_shape);
  p.init = init;
  p.init_std = std;
  p.weight_decay = decay;
  return p;
}
}  // namespace

size_t ParamBuilder::replicated(const std::string& name, std::vector<int64_t> shape,
                                InitKind init, float std, bool decay, Replication rep) {
  ParamInfo p = make_info(name, shape, init, std, decay);
  p.spec.local_rows = shape[0];
  p.spec.local_cols = shape.size() > 1 ? shape[1] : 1;
  p.spec.blocks.push_back({0, 0, 0, 0, p.spec.local_rows, p.spec.local_cols});
  p.norm_owner = rep.writer_stage && (!rep.over_tp || shape_.tp_rank == 0);
  p.spec.writer = writer_base_ && p.norm_owner;
  return set_.add(std::move(p));
}

size_t ParamBuilder::row_sharded(const std::string& name, int64_t global_rows, int64_t cols,
                                 int parts, InitKind init, float std, bool decay) {
  std::vector<int64_t> shape = cols > 1 ? std::vector<int64_t>{global_rows, cols}
                                        : std::vector<int64_t>{global_rows};
  ParamInfo p = make_info(name, shape, init, std, decay);
  const int64_t part_rows = global_rows / parts;        // e.g. C for each of q, k, v
  const int64_t local_part = part_rows / shape_.tp;     // this rank's rows of each part
  p.spec.local_rows = local_part * parts;
  p.spec.local_cols = cols;
  for (int j = 0; j < parts; ++j)
    p.spec.blocks.push_back({j * part_rows + shape_.tp_rank * local_part, 0, j * local_part, 0,
                             local_part, cols});
  p.spec.writer = writer_base_;
  return set_.add(std::move(p));
}

size_t ParamBuilder::col_sharded(const std::string& name, int64_t rows, int64_t global_cols,
                                 InitKind init, float std, bool decay) {
  ParamInfo p = make_info(name, {rows, global_cols}, init, std, decay);
  const int64_t local_cols = global_cols / shape_.tp;
  p.spec.local_rows = rows;
  p.spec.local_cols = local_cols;
  p.spec.blocks.push_back({0, shape_.tp_rank * local_cols, 0, 0, rows, local_cols});
  p.spec.writer = writer_base_;
  return set_.add(std::move(p));
}

size_t ParamBuilder::vocab_sharded(const std::string& name, int64_t cols, float std, bool decay,
                                   bool writer_stage) {
  ParamInfo p = make_info(name, {shape_.vocab, cols}, InitKind::normal, std, decay);
  p.spec.local_rows = shape_.Vl();
  p.spec.local_cols = cols;
  if (shape_.vocab_owned() > 0)
    p.spec.blocks.push_back({shape_.vocab_start(), 0, 0, 0, shape_.vocab_owned(), cols});
  p.norm_owner = writer_stage;
  p.spec.writer = writer_base_ && writer_stage;
  return set_.add(std::move(p));
}

}  // namespace mptrain
