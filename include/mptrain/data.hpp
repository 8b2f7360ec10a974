// Token datasets and the batch sampler. A dataset is an HDF5 file with a 1-D integer dataset
// /tokens and an attribute vocab_size (DESIGN §4). The sequential sampler walks the tokens in
// global batches exactly as DESIGN §4 specifies; each DP rank takes its rows.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mptrain/comm.hpp"

namespace mptrain {

class TokenDataset {
 public:
  // Collective over comm: every rank opens the file through MPI-IO and reads all tokens.
  // Throws InputError (naming the file and the problem) for a missing or non-HDF5 file, no
  // /tokens, a non-integer or non-1-D dataset, a missing or bad vocab_size, or a token outside
  // [0, vocab_size).
  static TokenDataset load(const Comm& comm, const std::string& path);
  // Not collective: a dataset held in memory (the benchmark's synthetic tokens). `name` stands
  // in for the path in messages. Throws InputError for vocab_size <= 0 or a token outside
  // [0, vocab_size).
  static TokenDataset from_tokens(std::string name, int vocab_size, std::vector<int32_t> tokens);

  const std::string& path() const { return path_; }
  int vocab_size() const { return vocab_size_; }
  size_t size() const { return tokens_.size(); }
  const int32_t* data() const { return tokens_.data(); }

 private:
  std::string path_;
  int vocab_size_ = 0;
  std::vector<int32_t> tokens_;
};

// Not collective (one process writes): creates/overwrites path with /tokens (stored as uint16
// when vocab_size <= 65536, else int32) and the vocab_size attribute.
void write_token_dataset(const std::string& path, std::span<const int32_t> tokens, int vocab_size);

// DESIGN §4 sequential sampler. Batch k reads the span [p, p + G*T + 1); then p += G*T, and
// p = 0 when p + G*T + 1 > N.
class SequentialSampler {
 public:
  SequentialSampler(size_t n_tokens, long global_batch, int seq_len);
  virtual ~SequentialSampler() = default;
  // Start of the current batch's span.
  size_t position() const { return position_; }
  void set_position(size_t p) { position_ = p; }
  // Inputs and targets for rows [row_begin, row_begin + rows) of the current batch, each
  // (rows, T) row-major.
  void rows(const TokenDataset& data, long row_begin, long rows, std::vector<int32_t>& inputs,
            std::vector<int32_t>& targets) const;
  virtual void advance();
  // Batches drawn so far (the shuffle sampler's state; informative for the sequential one).
  uint64_t draws() const { return draws_; }
  // Restores the state after `draws` batches (position included).
  virtual void restore(uint64_t draws, size_t position);
  // True when the dataset holds at least one global batch (G*T + 1 tokens).
  static bool fits(size_t n_tokens, long global_batch, int seq_len);

 private:
  size_t n_tokens_;
  long global_batch_;
  int seq_len_;
  size_t position_ = 0;
  uint64_t draws_ = 0;

 protected:
  size_t batch_tokens() const { return size_t(global_batch_) * size_t(seq_len_); }
  size_t n_tokens() const { return n_tokens_; }
};

// [data] sampler = shuffle: the same G*T-token batch spans as the sequential sampler (those
// starting at multiples of G*T that fit), visited in a seeded random order that changes every
// epoch. The order is a pure function of (seed, epoch), so the state is the draw count alone
// and resuming is exact.
class ShuffleSampler : public SequentialSampler {
 public:
  ShuffleSampler(size_t n_tokens, long global_batch, int seq_len, uint64_t seed);
  void advance() override;
  void restore(uint64_t draws, size_t position) override;

 private:
  void seek();  // position for the current draw count
  uint64_t seed_;
  uint64_t batches_per_epoch_;
  uint64_t cached_epoch_ = ~uint64_t(0);
  std::vector<uint64_t> order_;  // batch indices of cached_epoch_, in visiting order
};

}  // namespace mptrain
