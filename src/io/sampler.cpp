// The batch samplers (data.hpp, doc/DESIGN.md §4): which span of the dataset each batch uses, in
// which order, and which tokens of it a range of rows covers. Pure arithmetic on positions;
// the tokens themselves are read by TokenDataset::read.
#include <algorithm>
#include <string>

#include "mptrain/core/error.hpp"
#include "mptrain/core/rng.hpp"
#include "mptrain/io/data.hpp"

namespace mptrain {

SequentialSampler::SequentialSampler(uint64_t n_tokens, long global_batch, int seq_len)
    : n_tokens_(n_tokens), global_batch_(global_batch), seq_len_(seq_len) {
  if (!fits(n_tokens, global_batch, seq_len)) {
    throw InputError("the dataset's " + std::to_string(n_tokens) +
                     " tokens do not hold one global batch: [train] global_batch (" +
                     std::to_string(global_batch) + ") x [model] seq_len (" +
                     std::to_string(seq_len) + ") + 1 tokens are needed");
  }
}

bool SequentialSampler::fits(uint64_t n_tokens, long global_batch, int seq_len) {
  if (global_batch < 1 || seq_len < 1) return false;
  // G*T + 1 <= N, written to avoid overflow for absurd G and T.
  const uint64_t g = static_cast<uint64_t>(global_batch);
  const uint64_t t = static_cast<uint64_t>(seq_len);
  return n_tokens >= 1 && g <= (n_tokens - 1) / t && g * t + 1 <= n_tokens;
}

TokenRange SequentialSampler::row_tokens(long row_begin, long rows) const {
  const uint64_t T = static_cast<uint64_t>(seq_len_);
  MPT_CHECK(row_begin >= 0 && rows >= 0 && row_begin + rows <= global_batch_,
            "sampler rows [" + std::to_string(row_begin) + ", " + std::to_string(row_begin + rows) +
                ") outside the global batch of " + std::to_string(global_batch_));
  MPT_CHECK(position_ + batch_tokens() + 1 <= n_tokens_,
            "sampler position " + std::to_string(position_) + " leaves no room for a batch");
  // Row i of the batch is span[i*T, i*T + T); its targets are the next token of each.
  return {position_ + static_cast<uint64_t>(row_begin) * T, static_cast<uint64_t>(rows) * T + 1};
}

void SequentialSampler::rows(const TokenDataset& data, long row_begin, long rows,
                             std::vector<int32_t>& inputs, std::vector<int32_t>& targets) const {
  MPT_CHECK(data.size() == n_tokens_, "sampler used with a dataset of another size");
  const TokenRange range = row_tokens(row_begin, rows);
  std::vector<int32_t> span(range.count);
  data.read(range.begin, span);
  inputs.assign(span.begin(), span.end() - 1);
  targets.assign(span.begin() + 1, span.end());
}

void SequentialSampler::advance() {
  position_ += batch_tokens();
  if (position_ + batch_tokens() + 1 > n_tokens_) position_ = 0;  // wrap: the next span won't fit
  ++draws_;
}

void SequentialSampler::restore(uint64_t draws, uint64_t position) {
  draws_ = draws;
  position_ = position;
}

ShuffleSampler::ShuffleSampler(uint64_t n_tokens, long global_batch, int seq_len, uint64_t seed)
    : SequentialSampler(n_tokens, global_batch, seq_len), seed_(seed) {
  // Spans [k*G*T, k*G*T + G*T + 1) that fit: k <= (N - 1 - G*T) / (G*T).
  batches_per_epoch_ = (n_tokens - 1 - batch_tokens()) / batch_tokens() + 1;
  seek();
}

void ShuffleSampler::seek() {
  const uint64_t epoch = draws() / batches_per_epoch_;
  if (epoch != cached_epoch_) {
    // A seeded permutation: sort the batch indices by counter-based random keys.
    std::vector<std::pair<double, uint64_t>> keyed(batches_per_epoch_);
    const uint64_t stream = name_stream("shuffle-sampler") ^ epoch;
    for (uint64_t k = 0; k < batches_per_epoch_; ++k) keyed[k] = {uniform_at(seed_, stream, k), k};
    std::sort(keyed.begin(), keyed.end());
    order_.resize(batches_per_epoch_);
    for (uint64_t k = 0; k < batches_per_epoch_; ++k) order_[k] = keyed[k].second;
    cached_epoch_ = epoch;
  }
  set_position(order_[draws() % batches_per_epoch_] * batch_tokens());
}

void ShuffleSampler::advance() {
  SequentialSampler::advance();
  seek();
}

void ShuffleSampler::restore(uint64_t draws, uint64_t position) {
  SequentialSampler::restore(draws, position);
  seek();
}

}  // namespace mptrain
