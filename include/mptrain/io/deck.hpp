// The input deck: INI sections [model] [parallel] [train] [optim] [data] [checkpoint] [log]
// [device], read with Boost.Program_options, every key overridable on the command line as
// --section.key=value. Every value is validated; unknown keys, bad values and unreadable files
// throw InputError naming the file, the key and what is allowed. The resolved deck (every key,
// defaults included) is printed at start and stored in every checkpoint. The configs of the
// model and the optimizer live with them (model/config.hpp); the deck fills them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mptrain/model/config.hpp"

namespace mptrain {

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int dp = 0;           // 0 = world / (tp * pp)
  int micro_batch = 1;  // sequences per micro-batch per DP rank
  double bucket_mb = 4.0;  // DP gradient all-reduce bucket size, MiB
  // Blocks per pipeline stage, in stage order (pp positive counts summing to n_layer); empty =
  // n_layer / pp each. With stage_layers_auto the split is balanced by the cost model
  // (model/stage_balance.hpp) once the layout is known, and the list stays empty.
  std::vector<int> stage_layers;
  bool stage_layers_auto = false;
};

struct TrainConfig {
  long global_batch = 8;  // sequences per optimizer step
  long steps = 100;
  uint64_t seed = 1234;
  long max_bad_steps = 5;  // consecutive non-finite steps tolerated before stopping
  // Activation recomputation: none, selective, full (model/layers.hpp: Recompute).
  std::string recompute = "none";
};

struct DataConfig {
  std::string train;
  std::string val;  // optional
  std::string sampler = "sequential";  // sequential, shuffle
  long val_every = 0;    // 0 = never
  long val_batches = 1;
};

struct CheckpointConfig {
  std::string dir;         // empty = no checkpoints
  long every = 0;          // 0 = only at the end
  long keep = 0;           // 0 = keep all
  bool save_initial = false;
  std::string restart = "auto";  // auto, none, or a file
  // A checkpoint whose model starts the run (step 0, fresh optimizer; fine-tuning) when no
  // restart happens; empty = none.
  std::string init;
};

struct LogConfig {
  long every = 1;
  std::string metrics;  // CSV path; empty = none
};

struct DeviceConfig {
  std::string backend = "cpu";  // cpu, cuda, auto
  int threads = 0;              // 0 = the rank's bound cores, else cores / ranks on the node
  // Matrix products on the GPU: fp32, tf32 (TF32 tensor cores) or bf16 (bf16 operands, fp32
  // accumulation; master weights and optimizer state stay fp32). The CPU computes in fp32.
  std::string precision = "fp32";
};

struct Deck {
  std::string path;  // the file it was read from ("" when built in code)
  ModelConfig model;
  ParallelConfig parallel;
  TrainConfig train;
  OptimConfig optim;
  DataConfig data;
  CheckpointConfig checkpoint;
  LogConfig log;
  DeviceConfig device;

  // The fully resolved deck as INI text (every key, defaults included), parseable by
  // parse_deck_text().
  std::string text() const;
  // Only the [model] section as INI text; a checkpoint must match it to be restarted from.
  std::string model_text() const;
  // One resolved key, "section.key", exactly as text() prints it ("" for an unset path).
  // Throws InputError for a name that is not a key, suggesting the nearest one.
  std::string value(const std::string& key) const;
};

// Reads the deck file, then applies the overrides ("--section.key=value" strings, e.g. the
// program's remaining argv). Throws InputError on any problem. Relative data and checkpoint
// paths stay as written (relative to the working directory).
Deck read_deck(const std::string& path, const std::vector<std::string>& overrides = {});
// Same, from text already in memory; `origin` names it in error messages.
Deck parse_deck_text(const std::string& text, const std::string& origin,
                     const std::vector<std::string>& overrides = {});

}  // namespace mptrain
