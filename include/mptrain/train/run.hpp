// One training run: its state (the grid, backend, data, model, optimizer and schedule, and
// where the run stands: step, tokens, sampler position), how it is built from a deck, and the
// one training step that both mptrain (src/train/trainer.cpp) and mptrain-bench
// (src/train/benchmark.cpp) run. Built in src/train/run.cpp; its checkpoint glue is in
// src/train/run_checkpoint.cpp.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/model/model.hpp"
#include "mptrain/model/optimizer.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/train/test_hooks.hpp"
#include "mptrain/model/pipeline.hpp"

namespace mptrain {

struct Run {
  Deck deck;  // resolved: dp and vocab_size filled in
  Grid grid;
  std::unique_ptr<Backend> backend;
  TokenDataset train_data;
  std::optional<TokenDataset> val_data;
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<PipelineSchedule> schedule;
  std::unique_ptr<SequentialSampler> sampler;
  // The blocks of each pipeline stage ([parallel] stage_layers resolved: resolve_stage_split).
  std::vector<int> stage_split;
  std::vector<int32_t> batch_tokens;  // this rank's rows of the batch at hand (batches.hpp)
  long step = 0;
  int64_t tokens_seen = 0;
  long last_saved_step = -1;
  TestHooks hooks;  // --test-hook options (none outside tests)

  Run(const Deck& d, Comm world, Layout layout) : deck(d), grid(std::move(world), layout) {}
  bool is_root() const { return grid.world().rank() == 0; }
  // "tp=.. pp=.. dp=.. zero=..", and " stages=a,b,.." when the stages are unequal.
  std::string layout_text() const;
  // What the analytic counts need beyond layout and batch (ZeRO stage, the stage split).
  StepOptions step_options() const;
  // Rank 0's header lines on the pipeline: each stage's blocks, part, parameters and modelled
  // cost (stage_balance.hpp); "" when pp = 1.
  std::string stages_text() const;
  // Collective over the world: one training batch, the one at the sampler's position, read
  // (this rank's rows) and run through the schedule: forward, backward, gradients reduced.
  // Returns this rank's part of the loss sum (PipelineSchedule::train_batch).
  double train_batch();
  // Collective over the world: the forward of the batch of `data` at `batches`' position
  // (validation). Same return value.
  double eval_batch(const TokenDataset& data, const SequentialSampler& batches);
  // Collective: the restart part of restart(); true when a checkpoint was restored.
  bool resume();

  // Collective: writes DIR/step_N.h5 and prints its size, time and bandwidth (rank 0).
  void save_checkpoint();
  // Collective: restores the model, optimizer and sampler from `path`. Throws CheckpointError
  // (on every rank) when the file is unusable or was written for another model.
  void restore_checkpoint(const std::string& path);
  // Collective: applies [checkpoint] restart (auto, none, or a file). Under auto, damaged
  // checkpoints are refused with their reason and the next older one is tried. When nothing
  // was restored and [checkpoint] init names a file, the model starts from it (init_model).
  void restart();
  // Collective: loads only the /model tensors of `path` (any layout wrote it) into this run,
  // which stays at step 0 with a fresh optimizer and the sampler at the start. The stored
  // [model] must match the deck's, except that seq_len may be shorter than the stored wpe
  // rows (the first seq_len positions are read). Throws CheckpointError on every rank.
  void init_model(const std::string& path);
};

// The deck's choices beyond layout and batch that the analytic counts take (zero, recompute).
StepOptions step_options(const Deck& deck);

// What the algorithm must send per training step from this rank, per axis: step_traffic()
// (model/analytic.hpp) for this rank's deck and place in the grid. Not collective.
StepTraffic analytic_traffic(const Run& run);
// Collective over the world: every rank compares `measured` (its counters over `steps_run`
// training steps) with steps_run times its analytic payload; rank 0 prints the per-axis table
// (payload measured and analytic, wire bytes, waiting time) and the line "comm-check: ok ..."
// or "comm-check: MISMATCH ...".
void report_communication(const Run& run, const CommCounters& measured, long steps_run);

// The layout a deck asks for on `world_size` ranks (dp = 0 derived), checked against the
// model and batch. Pure; throws InputError with the message of check_layout().
Layout resolve_layout(const Deck& deck, int world_size);
// The blocks of each of layout.pp stages that [parallel] stage_layers asks for: the list as
// given, n_layer / pp each when empty, or balance_stages() of the cost model under auto (which
// needs the resolved vocab_size). Pure: every rank gets the same split. The layout must have
// passed resolve_layout().
std::vector<int> resolve_stage_split(const Deck& deck, const Layout& layout);

// What build_run() may do differently from training (the benchmark uses both).
struct RunOptions {
  // Used instead of loading [data] train (then [data] train is only a name).
  const TokenDataset* train_data = nullptr;
  // Wraps the backend select_backend() chose (e.g. in a timing decorator) before anything
  // is allocated with it.
  std::function<std::unique_ptr<Backend>(std::unique_ptr<Backend>)> wrap_backend;
  // The --test-hook options of mptrain (include/mptrain/train/test_hooks.hpp).
  TestHooks hooks;
};

// Collective over world: deck -> layout check -> grid -> data -> backend -> model ->
// optimizer -> schedule, exactly as mptrain trains. Throws InputError (on every rank) for
// problems with the deck or the data.
std::unique_ptr<Run> build_run(const Deck& deck, Comm world, const RunOptions& options = {});

// What one training step gave.
struct StepResult {
  double loss = 0;    // the mean cross-entropy over every token of the global batch
  StepReport report;  // the optimizer's: gradient norm, learning rate, whether it applied
};

// Collective over the world: one training step, the only one there is (mptrain trains with
// it, mptrain-bench times it): the 1F1B batch of the schedule (forward, backward, gradient
// reductions), the nan:S test hook, the loss all-reduce, the optimizer step on a schedule of
// `total_steps` steps; then the sampler, run.step and run.tokens_seen advance.
StepResult train_step(Run& run, long total_steps);

}  // namespace mptrain
