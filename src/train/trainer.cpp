// The training driver: deck -> layout check -> grid -> data -> backend -> model -> restart ->
// steps -> summary. Preemption signals are noticed at step boundaries by an all-reduce of a
// flag, so every rank stops at the same step even when only some of them got the signal.
#include "mptrain/train/trainer.hpp"

#include <csignal>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <span>
#include <thread>

#include <unistd.h>

#include "mptrain/core/error.hpp"
#include "mptrain/core/log.hpp"
#include "mptrain/parallel/watchdog.hpp"
#include "mptrain/train/run.hpp"

namespace mptrain {

namespace {

// The one piece of process-wide state a signal handler is allowed to touch.
volatile std::sig_atomic_t preemption_signal = 0;
extern "C" void on_preemption_signal(int sig) { preemption_signal = sig; }

// The pause:S[:R] test hook: tells the test that this rank has stopped (its PID in
// mptrain-paused.R, written under a temporary name and renamed, so never read half-written)
// and waits for the preemption signal the test then sends. It polls the flag rather than
// blocking in sigsuspend(): a signal sent to the process may be handled by any of its threads
// (OpenMP workers, MPI's progress thread), and then sigsuspend() here would never return.
void pause_for_signal(long step, int rank) {
  const std::string file = paused_marker_file(rank), temp = file + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << long(::getpid()) << '\n';
    out.close();
    MPT_CHECK(out.good(), "test hook pause: cannot write " + temp);
  }
  MPT_CHECK(std::rename(temp.c_str(), file.c_str()) == 0, "test hook pause: cannot rename " + temp);
  std::printf("test hook: rank %d (pid %ld) paused after step %ld; waiting for SIGUSR1 or SIGTERM\n",
              rank, long(::getpid()), step);
  std::fflush(stdout);
  while (preemption_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace

namespace {

void add_delta(CommCounters& total, const CommCounters& after, const CommCounters& before) {
  for (int a = 0; a < n_axes; ++a) {
    total.bytes_sent[a] += after.bytes_sent[a] - before.bytes_sent[a];
    total.wait_seconds[a] += after.wait_seconds[a] - before.wait_seconds[a];
  }
}

double validation_loss(Run& run) {
  const TokenDataset& data = *run.val_data;
  SequentialSampler sampler(data.size(), run.deck.train.global_batch, run.deck.model.seq_len);
  double sum = 0;
  for (long b = 0; b < run.deck.data.val_batches; ++b) {
    sum += run.schedule->eval_batch(data, sampler);  // collective over TP and PP
    sampler.advance();
  }
  run.grid.world().allreduce_sum(std::span<double>(&sum, 1));  // collective over the world
  return sum / (double(run.deck.data.val_batches) * run.deck.train.global_batch *
                run.deck.model.seq_len);
}

// Collective over the world: true when any rank got a preemption signal (`local`: this one).
bool preemption_requested(const Grid& grid, bool local) {
  int flag = local;
  grid.world().allreduce_max(std::span<int>(&flag, 1));
  return flag != 0;
}

// Collective over the world, once, when the run stops on a signal: rank 0 says at which step,
// and how many ranks (and which one first) had the signal themselves; the others stopped
// because the flag all-reduce told them to.
void report_preemption(const Run& run, bool local) {
  int64_t reached = local ? 1 : 0;
  int lowest = local ? run.grid.world().rank() : std::numeric_limits<int>::max();
  run.grid.world().allreduce_sum(std::span<int64_t>(&reached, 1));  // collective over the world
  run.grid.world().allreduce_min(std::span<int>(&lowest, 1));       // collective over the world
  if (run.is_root())
    std::printf("preemption signal received: checkpointing at step %ld and exiting (code %d); "
                "the signal reached %lld of %d rank(s), the lowest being rank %d\n",
                run.step, int(exit_preempted), (long long)reached, run.grid.world().size(), lowest);
}

// Not collective; before each step: the test hooks of the boundary (only of one this run
// reached by training a step), then the launcher check (an orphaned rank must not go on).
void at_step_boundary(const Run& run, bool trained) {
  const int rank = run.grid.world().rank();
  if (trained && TestHooks::fires(run.hooks.signal, run.step, rank)) std::raise(SIGUSR1);
  if (trained && TestHooks::fires(run.hooks.pause, run.step, rank)) pause_for_signal(run.step, rank);
  exit_if_launcher_gone();
}

// Collective over the world: when any rank got a preemption signal, reports it, checkpoints
// this step (unless just saved) and returns true.
bool stop_on_signal(Run& run) {
  const bool signalled = preemption_signal != 0;
  if (!preemption_requested(run.grid, signalled)) return false;  // collective over the world
  report_preemption(run, signalled);                              // collective over the world
  if (run.last_saved_step != run.step) run.save_checkpoint();    // collective
  return true;
}

// Collective over the world: TokenDataset::load, with a failure on any rank (a file that only
// some nodes see, an I/O error) made every rank's.
TokenDataset load_dataset(const Comm& world, const std::string& path) {
  TokenDataset data;
  agree_on<InputError>(world, [&] { data = TokenDataset::load(world, path); });
  return data;
}

void print_summary(Run& run, const CommCounters& measured, long steps_run, double seconds) {
  if (run.is_root())
    std::printf("run summary: %ld steps in %s on %s\n", steps_run,
                format_duration(seconds).c_str(), run.layout_text().c_str());
  report_communication(run, measured, steps_run);  // collective
}

}  // namespace

std::unique_ptr<Run> build_run(const Deck& deck, Comm world, const RunOptions& options) {
  const Layout layout = resolve_layout(deck, world.size());  // pure: throws before collectives
  Deck resolved = deck;
  resolved.parallel.dp = layout.dp;
  auto run = std::make_unique<Run>(resolved, std::move(world), layout);  // collective
  Run& r = *run;
  r.hooks = options.hooks;
  if (options.train_data)
    r.train_data = *options.train_data;
  else
    r.train_data = load_dataset(r.grid.world(), deck.data.train);  // collective
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
  if (!deck.data.val.empty()) {
    r.val_data = load_dataset(r.grid.world(), deck.data.val);  // collective
    if (r.val_data->vocab_size() > mc.vocab_size)
      throw InputError(deck.data.val + ": vocab_size " + std::to_string(r.val_data->vocab_size()) +
                       " exceeds the model's " + std::to_string(mc.vocab_size));
    if (!SequentialSampler::fits(r.val_data->size(), G, mc.seq_len))
      throw InputError(deck.data.val + ": fewer tokens than one global batch needs");
  }
  const Comm node = r.grid.world().split_node();  // collective
  CudaOptions cuda;
  cuda.tf32 = deck.device.precision == "tf32";
  cuda.bf16 = deck.device.precision == "bf16";
  r.backend = select_backend(deck.device.backend, deck.device.threads, node.rank(), node.size(), cuda);
  if (options.wrap_backend) r.backend = options.wrap_backend(std::move(r.backend));
  const int micro_batches = int(G / (long(layout.dp) * deck.parallel.micro_batch));
  const int slots = std::min(micro_batches, layout.pp);
  r.model = std::make_unique<Model>(*r.backend, r.grid, mc, deck.parallel.micro_batch, slots,
                                    deck.train.seed);
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
  const std::string problem = check_layout(layout, req);
  if (!problem.empty()) throw InputError(problem);
  return layout;
}

void install_preemption_handlers() {
  std::signal(SIGUSR1, on_preemption_signal);
  std::signal(SIGTERM, on_preemption_signal);
}

int train(const Deck& deck, Comm world, const TestHooks& hooks) {
  hooks.check(world.size(), deck.train.steps);  // pure: the same verdict on every rank
  RunOptions options;
  options.hooks = hooks;
  std::unique_ptr<Run> run_ptr = build_run(deck, std::move(world), options);
  Run& run = *run_ptr;
  const Deck& d = run.deck;
  if (run.is_root()) {
    std::printf("mptrain: %d ranks, layout %s, backend %s (%d threads/rank)\n",
                run.grid.world().size(), run.layout_text().c_str(), run.backend->name().c_str(),
                run.backend->threads());
    std::printf("---- resolved deck ----\n%s-----------------------\n", d.text().c_str());
    std::fflush(stdout);
  }
  run.restart();  // collective
  const long G = d.train.global_batch, T = d.model.seq_len;
  std::unique_ptr<MetricsCsv> csv;
  // Only rank 0 writes the CSV, but every rank must learn if it cannot.
  agree_on<InputError>(run.grid.world(), [&] {  // collective over the world
    if (run.is_root() && !d.log.metrics.empty())
      csv = std::make_unique<MetricsCsv>(d.log.metrics, run.step);
  });
  if (d.checkpoint.save_initial && run.step == 0) run.save_checkpoint();  // collective

  const int rank = run.grid.world().rank();
  CommCounters traffic;
  long steps_run = 0, bad_steps = 0;
  double last_loss = 0;
  const Stopwatch run_clock;
  // From here on a signal means "checkpoint at the next step boundary"; before, it still
  // ends the process at once (nothing to save yet, and nothing may hang on it).
  install_preemption_handlers();
  while (run.step < d.train.steps) {
    at_step_boundary(run, steps_run > 0);
    const CommCounters before = run.grid.counters();
    if (stop_on_signal(run)) return exit_preempted;  // collective over the world
    const Stopwatch step_clock;
    double loss = run.schedule->train_batch(run.train_data, *run.sampler, *run.optimizer);
    if (TestHooks::fires(run.hooks.nan, run.step + 1, rank)) run.optimizer->inject_nonfinite_gradient();
    run.grid.world().allreduce_sum(std::span<double>(&loss, 1));  // collective over the world
    loss /= double(G * T);
    const StepReport report = run.optimizer->step(run.step, d.train.steps);  // collective
    add_delta(traffic, run.grid.counters(), before);
    ++steps_run;
    run.sampler->advance();
    ++run.step;
    run.tokens_seen += G * T;
    const double seconds = step_clock.seconds();
    if (!report.applied || !std::isfinite(loss)) {
      ++bad_steps;
      if (run.is_root())
        std::fprintf(stderr, "mptrain: step %ld: non-finite %s; update skipped (%ld in a row, "
                     "limit %ld)\n", run.step, report.applied ? "loss" : "gradient norm",
                     bad_steps, d.train.max_bad_steps);
      if (bad_steps >= d.train.max_bad_steps) {
        if (run.is_root())
          std::fprintf(stderr, "mptrain: stopping after %ld consecutive non-finite steps; the last "
                       "good checkpoint (%s) is kept\n", bad_steps,
                       run.last_saved_step >= 0 ? ("step " + std::to_string(run.last_saved_step)).c_str()
                                                : "none written");
        return exit_numerical;
      }
    } else {
      bad_steps = 0;
    }
    last_loss = loss;
    StepMetrics m{run.step, loss, report.lr, report.grad_norm, double(G * T) / seconds,
                  seconds * 1e3, std::nullopt};
    if (run.val_data && d.data.val_every > 0 &&
        (run.step % d.data.val_every == 0 || run.step == d.train.steps))
      m.val_loss = validation_loss(run);  // collective
    if (run.is_root() && (run.step % d.log.every == 0 || run.step == d.train.steps)) {
      const double eta = run_clock.seconds() / steps_run * double(d.train.steps - run.step);
      std::printf("%s\n", format_step_line(m, d.train.steps, eta).c_str());
      std::fflush(stdout);
    }
    if (csv) csv->write(m);
    // No periodic save while steps are being skipped: the last good checkpoint must survive
    // pruning if the run ends in a numerical failure.
    if (d.checkpoint.every > 0 && run.step % d.checkpoint.every == 0 && bad_steps == 0)
      run.save_checkpoint();  // collective
  }
  if (run.last_saved_step != run.step) run.save_checkpoint();  // collective
  print_summary(run, traffic, steps_run, run_clock.seconds());  // collective
  if (run.is_root()) {
    if (steps_run > 0)
      std::printf("final loss %.6f\n", last_loss);
    else
      std::printf("nothing to train: the run is already at step %ld of %ld\n", run.step,
                  d.train.steps);
  }
  return exit_ok;
}

}  // namespace mptrain
