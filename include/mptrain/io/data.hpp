// Token datasets and the batch samplers. A dataset is an HDF5 file with a 1-D integer dataset
// /tokens and an attribute vocab_size (doc/DESIGN.md §4), plus attributes naming the tokenizer that
// made it. The tokens are stored in the file or, for token files made elsewhere, left where
// they are (HDF5 external storage); a run reads them a batch at a time. The sequential sampler
// walks the tokens in global batches exactly as doc/DESIGN.md §4 specifies; each DP rank takes its
// rows.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mptrain/parallel/comm.hpp"

namespace mptrain {

// Which tokenizer made a dataset: what turning its ids back into text needs. Stored as string
// attributes of /tokens: `tokenizer` (name) and, when known, `tokenizer_vocab` (fingerprint).
struct TokenizerInfo {
  // "bytes" (ids are bytes), "gpt2" (GPT-2 byte-level BPE: decode with an encoder.json whose
  // fingerprint is `vocab`), or "unknown" (imported tokens, or a file written by other tools).
  std::string name = "unknown";
  // For "gpt2": Gpt2Vocab::fingerprint() of the vocabulary ("fnv1a64:..."); else empty.
  std::string vocab;
};

// A token dataset open for reading: its size, vocabulary and tokenizer, and the tokens read on
// demand, a range at a time (a rank reads only what its rows of each batch need, so memory does
// not grow with the corpus). Copies share the open file.
class TokenDataset {
 public:
  // Collective over comm: every rank opens the file through MPI-IO (collective metadata reads:
  // one rank reads, all receive) and checks it; no token is read. Throws InputError (naming
  // the file and the problem) for a missing or non-HDF5 file, no /tokens, a non-integer or
  // non-1-D dataset, a missing or bad vocab_size, stored bytes fewer than the declared tokens
  // need, or external token files missing or too short. The file stays open while a copy of
  // the dataset exists: every rank of comm must let go of its last copy at the same point (the
  // close is collective).
  static TokenDataset open(const Comm& comm, const std::string& path);
  // Not collective: a dataset held in memory (the benchmark's synthetic tokens). `name` stands
  // in for the path in messages. Throws InputError for vocab_size <= 0 or a token outside
  // [0, vocab_size).
  static TokenDataset from_tokens(std::string name, int vocab_size, std::vector<int32_t> tokens);

  const std::string& path() const { return path_; }
  int vocab_size() const { return vocab_size_; }
  // From the file's attributes; name "unknown" when it has none.
  const TokenizerInfo& tokenizer() const { return tokenizer_; }
  uint64_t size() const { return size_; }
  // Not collective (an independent read of the range; the chunks it touches are read whole and
  // their checksums verified): tokens [begin, begin + out.size()) into out, which must lie
  // within size(). Throws InputError naming the file for a token outside [0, vocab_size) (its
  // index and value), or a failed read (a damaged chunk, an external token file gone).
  void read(uint64_t begin, std::span<int32_t> out) const;

 private:
  struct Stored;  // the open file and its /tokens
  std::string path_;
  int vocab_size_ = 0;
  TokenizerInfo tokenizer_;
  uint64_t size_ = 0;
  std::shared_ptr<const Stored> stored_;                // tokens in an HDF5 file, or
  std::shared_ptr<const std::vector<int32_t>> memory_;  // tokens in memory (from_tokens)
};

// Not collective (one process writes): creates/overwrites path with /tokens (stored as uint16
// when vocab_size <= 65536, else int32) and the vocab_size and tokenizer attributes.
void write_token_dataset(const std::string& path, std::span<const int32_t> tokens, int vocab_size,
                         const TokenizerInfo& tokenizer = {});

// Not collective. Writes a dataset of any size in bounded memory: tokens are appended in
// pieces of any length and written a chunk at a time. The file is complete only after
// finish(); a writer destroyed before that removes its file, so a failed run leaves no
// dataset that looks whole. Storage as write_token_dataset's.
class TokenDatasetWriter {
 public:
  // Creates/overwrites `path`. Throws InputError naming the file (e.g. a missing directory).
  TokenDatasetWriter(std::string path, int vocab_size, TokenizerInfo tokenizer);
  TokenDatasetWriter(TokenDatasetWriter&&) noexcept;
  ~TokenDatasetWriter();
  // Throws InputError for a token outside [0, vocab_size), naming its index.
  void append(std::span<const int32_t> tokens);
  // Tokens appended so far (less any split off).
  uint64_t size() const;
  // Moves the last `count` tokens (count <= size()) into a new, finished dataset at
  // `other_path` with the same vocabulary and tokenizer (the validation split).
  void split_tail(const std::string& other_path, uint64_t count);
  // Writes what is buffered and the attributes, and closes the file, reporting a failed final
  // flush (a full disk) as InputError.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where the tokens of a file made elsewhere lie: `count` little-endian uint16 tokens starting
// `offset` bytes into `file`.
struct TokenSegment {
  std::string file;
  uint64_t offset = 0;
  uint64_t count = 0;
};

// Not collective. Creates/overwrites path with a /tokens that is not copied: HDF5 external
// storage over the segments, in order (the files named by absolute path, so the dataset works
// from any directory but its token files must stay where they are). Without a copy there is no
// checksum; TokenDataset::open checks that each file still holds its segment, and read()
// range-checks every token it reads. Throws InputError naming the file.
void write_external_token_dataset(const std::string& path, std::span<const TokenSegment> segments,
                                  int vocab_size, const TokenizerInfo& tokenizer);

// A run of consecutive tokens of a dataset: [begin, begin + count).
struct TokenRange {
  uint64_t begin = 0;
  uint64_t count = 0;
};

// doc/DESIGN.md §4 sequential sampler. Batch k reads the span [p, p + G*T + 1); then p += G*T, and
// p = 0 when p + G*T + 1 > N. Row i of a batch is span[i*T, i*T + T) and its targets the next
// token of each; DP rank d takes rows [d*G/dp, (d+1)*G/dp).
class SequentialSampler {
 public:
  SequentialSampler(uint64_t n_tokens, long global_batch, int seq_len);
  virtual ~SequentialSampler() = default;
  long global_batch() const { return global_batch_; }
  int seq_len() const { return seq_len_; }
  // Start of the current batch's span.
  uint64_t position() const { return position_; }
  void set_position(uint64_t p) { position_ = p; }
  // The tokens rows [row_begin, row_begin + rows) of the current batch cover: rows*T + 1 of
  // them, the first rows*T being the rows' inputs, (rows, T) row-major, and the last rows*T
  // their targets (the rows of a batch are consecutive in its span).
  TokenRange row_tokens(long row_begin, long rows) const;
  // Inputs and targets for rows [row_begin, row_begin + rows) of the current batch, each
  // (rows, T) row-major, read from `data` (not collective; throws what data.read() throws).
  void rows(const TokenDataset& data, long row_begin, long rows, std::vector<int32_t>& inputs,
            std::vector<int32_t>& targets) const;
  virtual void advance();
  // Batches drawn so far (the shuffle sampler's state; informative for the sequential one).
  uint64_t draws() const { return draws_; }
  // Restores the state after `draws` batches (position included).
  virtual void restore(uint64_t draws, uint64_t position);
  // True when the dataset holds at least one global batch (G*T + 1 tokens).
  static bool fits(uint64_t n_tokens, long global_batch, int seq_len);

 private:
  uint64_t n_tokens_;
  long global_batch_;
  int seq_len_;
  uint64_t position_ = 0;
  uint64_t draws_ = 0;

 protected:
  uint64_t batch_tokens() const { return uint64_t(global_batch_) * uint64_t(seq_len_); }
  uint64_t n_tokens() const { return n_tokens_; }
};

// [data] sampler = shuffle: the same G*T-token batch spans as the sequential sampler (those
// starting at multiples of G*T that fit), visited in a seeded random order that changes every
// epoch. The order is a pure function of (seed, epoch), so the state is the draw count alone
// and resuming is exact.
class ShuffleSampler : public SequentialSampler {
 public:
  ShuffleSampler(uint64_t n_tokens, long global_batch, int seq_len, uint64_t seed);
  void advance() override;
  void restore(uint64_t draws, uint64_t position) override;

 private:
  void seek();  // position for the current draw count
  uint64_t seed_;
  uint64_t batches_per_epoch_;
  uint64_t cached_epoch_ = ~uint64_t(0);
  std::vector<uint64_t> order_;  // batch indices of cached_epoch_, in visiting order
};

}  // namespace mptrain
