// A training run (run.hpp): the deck's layout resolved and checked, the run built from it
// (grid, data, backend, model, optimizer, schedule, sampler), and the one training step that
// mptrain trains with and mptrain-bench times.
#include "mptrain/train/run.hpp"

#include <algorithm>
#include <cstdio>
#include <span>

#include "mptrain/core/error.hpp"
#include "mptrain/model/stage_balance.hpp"

namespace mptrain {

namespace {

// Collective over the world: TokenDataset::open, with a failure on any rank (a file that only
// some nodes see, an I/O error) made every rank's.
TokenDataset load_dataset(const Comm& world, const std::string& path) {
  TokenDataset data;
  agree_on<InputError>(world, [&] { data = TokenDataset::open(world, path); });
  return data;
}

// Collective over the world: [data] train (unless `given`) and [data] val, checked against the
// model and the batch; fills in [model] vocab_size = 0 from the training data.
void load_data(Run& r, const TokenDataset* given) {
  const Deck& deck = r.deck;
  r.train_data = given ? *given : load_dataset(r.grid.world(), deck.data.train);  // collective
  ModelConfig& mc = r.deck.model;
  if (mc.vocab_size == 0) mc.vocab_size = r.train_data.vocab_size();
  if (mc.vocab_size < r.train_data.vocab_size())
    throw InputError("[model] vocab_size = " + std::to_string(mc.vocab_size) + " is smaller than "
                     "the dataset's vocab_size " + std::to_string(r.train_data.vocab_size()) +
                     " (" + deck.data.train + "); use 0 to take it from the dataset");
  const long G = deck.train.global_batch;
  if (!SequentialSampler::fits(r.train_data.size(), G, mc.seq_len))
    throw InputError(deck.data.train + ": " + std::to_string(r.train_data.size()) +
                     " tokens, fewer than one global batch needs (global_batch * seq_len + 1 = " +
                     std::to_string(G * mc.seq_len + 1) + ")");
  if (deck.data.val.empty()) return;
  r.val_data = load_dataset(r.grid.world(), deck.data.val);  // collective
  if (r.val_data->vocab_size() > mc.vocab_size)
    throw InputError(deck.data.val + ": vocab_size " + std::to_string(r.val_data->vocab_size()) +
                     " exceeds the model's " + std::to_string(mc.vocab_size));
  if (!SequentialSampler::fits(r.val_data->size(), G, mc.seq_len))
    throw InputError(deck.data.val + ": fewer tokens than one global batch needs");
}

// "3,5": the blocks of each stage.
std::string counts_text(const std::vector<int>& counts) {
  std::string text;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (s > 0) text += ',';
    text += std::to_string(counts[s]);
  }
  return text;
}

}  // namespace

std::string Run::layout_text() const {
  std::string text = grid.layout().str() + " zero=" + std::to_string(deck.optim.zero);
  const int pp = grid.layout().pp;
  if (std::any_of(stage_split.begin(), stage_split.end(),
                  [&](int blocks) { return blocks * pp != deck.model.n_layer; }))
    text += " stages=" + counts_text(stage_split);
  return text;
}

StepOptions Run::step_options() const {
  StepOptions options = mptrain::step_options(deck);
  options.stage_layers = stage_split;  // resolved ([parallel] stage_layers = auto)
  return options;
}

std::string Run::stages_text() const {
  const Layout& L = grid.layout();
  if (L.pp == 1) return "";
  const int B = deck.parallel.micro_batch;
  const std::vector<double> costs = stage_costs(deck.model, L, B, stage_split);
  const ParallelConfig& p = deck.parallel;
  const char* how = p.stage_layers_auto ? "auto" : p.stage_layers.empty() ? "empty: equal" : "given";
  std::string text = "pipeline: " + std::to_string(L.pp) + " stages of " +
                     counts_text(stage_split) + " blocks ([parallel] stage_layers " + how + ")\n";
  char line[256];
  for (int s = 0; s < L.pp; ++s) {
    const StageLayers layers = stage_layers(deck.model, L.pp, s, stage_split);
    std::snprintf(line, sizeof line,
                  "  stage %d: blocks %d-%d%s, %lld parameter elements per rank, modelled "
                  "%.3f ms per micro-batch\n",
                  s, layers.first, layers.first + layers.count - 1,
                  s == 0 ? " + embedding" : s == L.pp - 1 ? " + head" : "",
                  (long long)stage_parameter_elements(deck.model, L, s, step_options()),
                  costs[size_t(s)] * 1e3);
    text += line;
  }
  return text;
}

Layout resolve_layout(const Deck& deck, int world_size) {
  Layout layout{deck.parallel.tp, deck.parallel.pp, deck.parallel.dp};
  if (layout.dp == 0) {
    const int tp_pp = layout.tp * layout.pp;
    if (world_size % tp_pp != 0)
      throw InputError("[parallel] tp * pp = " + std::to_string(tp_pp) + " does not divide the " +
                       std::to_string(world_size) + " ranks of this job; launch a multiple of " +
                       std::to_string(tp_pp) + " ranks");
    layout.dp = world_size / tp_pp;
  }
  LayoutRequirements req;
  req.world_size = world_size;
  req.n_head = deck.model.n_head;
  req.n_layer = deck.model.n_layer;
  req.global_batch = deck.train.global_batch;
  req.micro_batch = deck.parallel.micro_batch;
  req.stage_layers = deck.parallel.stage_layers;
  req.stage_layers_auto = deck.parallel.stage_layers_auto;
  const std::string problem = check_layout(layout, req);
  if (!problem.empty()) throw InputError(problem);
  return layout;
}

std::vector<int> resolve_stage_split(const Deck& deck, const Layout& layout) {
  if (deck.parallel.stage_layers_auto)
    return balance_stages(deck.model, layout, deck.parallel.micro_batch);
  return stage_block_counts(deck.model, layout.pp, deck.parallel.stage_layers);
}

std::unique_ptr<Run> build_run(const Deck& deck, Comm world, const RunOptions& options) {
  const Layout layout = resolve_layout(deck, world.size());  // pure: throws before collectives
  Deck resolved = deck;
  resolved.parallel.dp = layout.dp;
  auto run = std::make_unique<Run>(resolved, std::move(world), layout);  // collective
  Run& r = *run;
  r.hooks = options.hooks;
  load_data(r, options.train_data);  // collective
  const ModelConfig& mc = r.deck.model;
  const Comm node = r.grid.world().split_node();  // collective
  CudaOptions cuda;
  cuda.tf32 = deck.device.precision == "tf32";
  cuda.bf16 = deck.device.precision == "bf16";
  r.backend = select_backend(deck.device.backend, deck.device.threads, node.rank(), node.size(), cuda);
  if (options.wrap_backend) r.backend = options.wrap_backend(std::move(r.backend));
  const long G = deck.train.global_batch;
  const int micro_batches = int(G / (long(layout.dp) * deck.parallel.micro_batch));
  const int slots = std::min(micro_batches, layout.pp);
  r.stage_split = resolve_stage_split(r.deck, layout);  // pure: the vocabulary is resolved
  r.model = std::make_unique<Model>(*r.backend, r.grid, mc, deck.parallel.micro_batch, slots,
                                    deck.train.seed, r.stage_split,
                                    recompute_from_name(deck.train.recompute));
  r.optimizer = std::make_unique<Optimizer>(*r.backend, r.grid, r.model->params(), deck.optim,
                                            deck.parallel.bucket_mb);
  r.schedule = std::make_unique<PipelineSchedule>(*r.backend, *r.model, r.grid, G,
                                                  deck.parallel.micro_batch);
  if (deck.data.sampler == "shuffle")
    r.sampler = std::make_unique<ShuffleSampler>(r.train_data.size(), G, mc.seq_len, deck.train.seed);
  else
    r.sampler = std::make_unique<SequentialSampler>(r.train_data.size(), G, mc.seq_len);
  return run;
}

StepResult train_step(Run& run, long total_steps) {
  const long tokens = run.deck.train.global_batch * long(run.deck.model.seq_len);
  StepResult result;
  result.loss = run.train_batch();  // collective over TP, PP and DP
  if (TestHooks::fires(run.hooks.nan, run.step + 1, run.grid.world().rank()))
    run.optimizer->inject_nonfinite_gradient();
  run.grid.world().allreduce_sum(std::span<double>(&result.loss, 1));  // collective over the world
  result.loss /= double(tokens);
  result.report = run.optimizer->step(run.step, total_steps);  // collective
  run.sampler->advance();
  ++run.step;
  run.tokens_seen += tokens;
  return result;
}

}  // namespace mptrain
