// Checkpoints (doc/DESIGN.md §4): one HDF5 file per save, DIR/step_NNNNNNNN.h5, written collectively
// with parallel HDF5 (each rank writes its hyperslabs of each global, unsharded tensor; replicas
// write nothing), first to a temporary name, then renamed, then DIR/latest updated. Every
// dataset carries the Fletcher32 checksum filter, so corruption is detected on read. Because
// tensors are stored in global coordinates, any layout reads back exactly its own slice.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"
#include "mptrain/core/shard.hpp"

namespace mptrain {

inline constexpr const char* checkpoint_format = "mptrain-checkpoint";
inline constexpr int checkpoint_format_version = 1;

// The tensor groups of a checkpoint, in the order they are written and read (doc/DESIGN.md §4).
inline constexpr std::array<const char*, 3> checkpoint_groups = {"/model", "/optim/m",
                                                                 "/optim/v"};

// A shape as messages write it: "[3,4]".
std::string shape_text(const std::vector<int64_t>& shape);

// A checkpoint that cannot be used (missing, truncated, corrupted, wrong format or version,
// missing tensor, shape mismatch). what() names the file and the problem.
class CheckpointError : public InputError {
 public:
  using InputError::InputError;
};

// A save that failed part-way through (disk full, I/O error). The previous checkpoints are
// intact, but HDF5 may still hold the half-written file, and closing it again at MPI_Finalize
// can crash: the program should end without finalising (src/programs/program.hpp does).
class CheckpointWriteError : public CheckpointError {
 public:
  using CheckpointError::CheckpointError;
};

// Scalars stored as root attributes (attribute names in brackets): step [step], tokens_seen
// [tokens_seen], deck_text [deck], model_text [model_deck], layout [layout], sampler_position
// [sampler_position], rng_seed [rng_seed], rng_offset [rng_offset], tokenizer [tokenizer],
// tokenizer_vocab [tokenizer_vocab]; next to them format and format_version. adam_step is the
// attribute [step] of the group /optim. The tokenizer attributes are optional on reading
// (older checkpoints lack them: "unknown" and "").
struct CheckpointMeta {
  long step = 0;                  // optimizer steps completed
  int64_t tokens_seen = 0;
  std::string deck_text;          // the resolved deck
  std::string model_text;         // its [model] section, compared on restart
  std::string layout;             // e.g. "tp=2 pp=1 dp=2 zero=0", informative
  uint64_t sampler_position = 0;  // start of the next batch's span
  uint64_t rng_seed = 0;          // training seed
  uint64_t rng_offset = 0;        // counter-based generator position (shuffle sampler)
  long adam_step = 0;             // AdamW's step count (bias correction), stored on /optim
  // The tokenizer of the training data (TokenizerInfo of io/data.hpp): what turns the model's
  // ids back into text. "bytes", "gpt2" (with the vocabulary's fingerprint) or "unknown".
  std::string tokenizer = "unknown";
  std::string tokenizer_vocab;
};

// One tensor of this rank: its global-coordinate description and a host array of
// spec.local_size() floats (read into or written from).
struct TensorIO {
  ShardSpec spec;
  float* host = nullptr;
};

// The three groups a training checkpoint holds. Each is a list of this rank's tensors; the
// same global tensor may appear on several ranks (only writers write it). A GPT-2 checkpoint
// holds the model catalogue's tensors in each (model/catalogue.hpp: gpt2_tensors).
struct CheckpointTensors {
  std::span<const TensorIO> model;   // /model/<name>
  std::span<const TensorIO> adam_m;  // /optim/m/<name>
  std::span<const TensorIO> adam_v;  // /optim/v/<name>
};

// Collective over comm: writes `path` (not via a temporary name; see CheckpointDir::save).
// Throws CheckpointError (with the HDF5 reason) when the file cannot be written.
void write_checkpoint_file(const Comm& comm, const std::string& path, const CheckpointMeta& meta,
                           const CheckpointTensors& tensors);

// Collective over comm: reads and checks the root attributes. Throws CheckpointError.
CheckpointMeta read_checkpoint_meta(const Comm& comm, const std::string& path);

// Collective over comm: reads every listed tensor's blocks into its host array, checking the
// stored global shape and the checksum. Throws CheckpointError naming the tensor.
void read_checkpoint_tensors(const Comm& comm, const std::string& path,
                             const CheckpointTensors& tensors);

// Not collective: the restart's model check. Throws CheckpointError (naming `path`) unless the
// [model] section stored in `meta` parses and gives the same n_layer, n_head, n_embd, seq_len
// and vocab_size as `model`. (Other sections may differ: they may gain or lose keys between
// versions.)
void check_checkpoint_model(const std::string& path, const CheckpointMeta& meta,
                            const ModelConfig& model);

// The checkpoint directory: naming, atomic saves, `latest`, pruning, and the restart search.
class CheckpointDir {
 public:
  explicit CheckpointDir(std::string dir, long keep = 0);
  const std::string& dir() const { return dir_; }
  std::string path_for_step(long step) const;  // DIR/step_NNNNNNNN.h5

  // Collective over comm: creates DIR if needed, writes DIR/.step_NNNNNNNN.h5.tmp, renames it
  // to its final name (rank 0), writes DIR/latest (temp + rename), then removes checkpoints
  // beyond `keep`, oldest first. Returns the final path. Prints nothing; returns bytes written
  // and seconds taken through the out-parameters when given.
  // Any failure (directory not creatable, file not writable, disk full) throws CheckpointError
  // on every rank and leaves the previous checkpoint and `latest` untouched. Pruning only
  // removes checkpoints older than the one just written (counting it among the `keep`), plus
  // leftover .tmp files of older steps; a file that cannot be removed is left (not an error).
  // With set_test_kill_in_save(meta.step), rank 0 kills itself with SIGKILL after half of
  // the tensors are written (a crash mid-file).
  std::string save(const Comm& comm, const CheckpointMeta& meta, const CheckpointTensors& tensors,
                   double* seconds = nullptr, uint64_t* bytes = nullptr) const;

  // Not collective: complete checkpoints in DIR, newest first (the one `latest` names first).
  std::vector<std::string> candidates() const;

  // Test hook (--test-hook=kill-in-save:STEP): the save of `step` dies half way (see save()).
  void set_test_kill_in_save(long step) { kill_in_save_ = step; }

 private:
  std::string dir_;
  long keep_;
  long kill_in_save_ = -1;
};

}  // namespace mptrain
