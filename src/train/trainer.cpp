// The training driver: the run built (build_run, src/train/run.cpp) -> restart -> steps
// (train_step, then the bad-step count, validation, logging and checkpoints) -> summary.
// Preemption signals are noticed at step boundaries by an all-reduce of a flag, so every rank
// stops at the same step even when only some of them got the signal.
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
    sum += run.eval_batch(data, sampler);  // collective over TP and PP
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

// Where the steps of train() stand.
struct Progress {
  CommCounters traffic;  // what this rank sent during the steps trained, summed
  long steps_run = 0;    // steps trained by this process (not restored)
  long bad_steps = 0;    // consecutive non-finite steps
  double last_loss = 0;
  Stopwatch clock;       // since the first step
};

// Not collective: counts a step whose loss or gradient norm is not finite (rank 0 reports it)
// and returns true when that makes [train] max_bad_steps in a row (rank 0 says the run stops).
bool too_many_bad_steps(const Run& run, const StepResult& step, Progress& progress) {
  if (step.report.applied && std::isfinite(step.loss)) {
    progress.bad_steps = 0;
    return false;
  }
  const long bad = ++progress.bad_steps, limit = run.deck.train.max_bad_steps;
  if (run.is_root())
    std::fprintf(stderr, "mptrain: step %ld: non-finite %s; update skipped (%ld in a row, "
                 "limit %ld)\n", run.step, step.report.applied ? "loss" : "gradient norm", bad,
                 limit);
  if (bad < limit) return false;
  if (run.is_root())
    std::fprintf(stderr, "mptrain: stopping after %ld consecutive non-finite steps; the last "
                 "good checkpoint (%s) is kept\n", bad,
                 run.last_saved_step >= 0 ? ("step " + std::to_string(run.last_saved_step)).c_str()
                                          : "none written");
  return true;
}

// Collective over the world: the step's validation loss (when due), its console line (rank 0,
// when due) and its CSV row (rank 0, when there is a CSV).
void log_step(Run& run, const StepResult& step, double seconds, const Progress& progress,
              MetricsCsv* csv) {
  const Deck& d = run.deck;
  const double tokens = double(d.train.global_batch * long(d.model.seq_len));
  StepMetrics m{run.step, step.loss, step.report.lr, step.report.grad_norm, tokens / seconds,
                seconds * 1e3, std::nullopt};
  if (run.val_data && d.data.val_every > 0 &&
      (run.step % d.data.val_every == 0 || run.step == d.train.steps))
    m.val_loss = validation_loss(run);  // collective
  if (run.is_root() && (run.step % d.log.every == 0 || run.step == d.train.steps)) {
    const double eta =
        progress.clock.seconds() / progress.steps_run * double(d.train.steps - run.step);
    std::printf("%s\n", format_step_line(m, d.train.steps, eta).c_str());
    std::fflush(stdout);
  }
  if (csv) csv->write(m);
}

// Collective over the world: the run's header (rank 0), the restart, the metrics CSV (opened
// on rank 0, its failure every rank's) and the step-0 checkpoint when asked for.
std::unique_ptr<MetricsCsv> start(Run& run) {
  const Deck& d = run.deck;
  if (run.is_root()) {
    std::printf("mptrain: %d ranks, layout %s, backend %s (%d threads/rank)\n",
                run.grid.world().size(), run.layout_text().c_str(), run.backend->name().c_str(),
                run.backend->threads());
    std::printf("%s", run.stages_text().c_str());
    std::printf("---- resolved deck ----\n%s-----------------------\n", d.text().c_str());
    std::fflush(stdout);
  }
  run.restart();  // collective
  std::unique_ptr<MetricsCsv> csv;
  agree_on<InputError>(run.grid.world(), [&] {  // collective over the world
    if (run.is_root() && !d.log.metrics.empty())
      csv = std::make_unique<MetricsCsv>(d.log.metrics, run.step);
  });
  if (d.checkpoint.save_initial && run.step == 0) run.save_checkpoint();  // collective
  return csv;
}

// Collective over the world, at the end of a run that trained to the last step: the final
// checkpoint (unless just saved), the run summary with the communication check, the final loss.
void finish(Run& run, const Progress& progress) {
  if (run.last_saved_step != run.step) run.save_checkpoint();  // collective
  if (run.is_root())
    std::printf("run summary: %ld steps in %s on %s\n", progress.steps_run,
                format_duration(progress.clock.seconds()).c_str(), run.layout_text().c_str());
  report_communication(run, progress.traffic, progress.steps_run);  // collective
  if (!run.is_root()) return;
  if (progress.steps_run > 0)
    std::printf("final loss %.6f\n", progress.last_loss);
  else
    std::printf("nothing to train: the run is already at step %ld of %ld\n", run.step,
                run.deck.train.steps);
}

}  // namespace

void install_preemption_handlers() {
  std::signal(SIGUSR1, on_preemption_signal);
  std::signal(SIGTERM, on_preemption_signal);
}

int train(const Deck& deck, Comm world, const TestHooks& hooks) {
  hooks.check(world.size(), deck.train.steps);  // pure: the same verdict on every rank
  RunOptions options;
  options.hooks = hooks;
  std::unique_ptr<Run> run_ptr = build_run(deck, std::move(world), options);  // collective
  Run& run = *run_ptr;
  const Deck& d = run.deck;
  const std::unique_ptr<MetricsCsv> csv = start(run);  // collective
  Progress progress;
  // From here on a signal means "checkpoint at the next step boundary"; before, it still
  // ends the process at once (nothing to save yet, and nothing may hang on it).
  install_preemption_handlers();
  while (run.step < d.train.steps) {
    at_step_boundary(run, progress.steps_run > 0);
    const CommCounters before = run.grid.counters();
    if (stop_on_signal(run)) return exit_preempted;  // collective over the world
    const Stopwatch step_clock;
    const StepResult step = train_step(run, d.train.steps);  // collective
    add_delta(progress.traffic, run.grid.counters(), before);
    ++progress.steps_run;
    const double seconds = step_clock.seconds();
    if (too_many_bad_steps(run, step, progress)) return exit_numerical;
    progress.last_loss = step.loss;
    log_step(run, step, seconds, progress, csv.get());  // collective
    // No periodic save while steps are being skipped: the last good checkpoint must survive
    // pruning if the run ends in a numerical failure.
    if (d.checkpoint.every > 0 && run.step % d.checkpoint.every == 0 && progress.bad_steps == 0)
      run.save_checkpoint();  // collective
  }
  finish(run, progress);  // collective
  return exit_ok;
}

}  // namespace mptrain
