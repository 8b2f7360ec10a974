// mptrain-bench's two halves (doc/DESIGN.md §6): measure_benchmark() runs on every rank, makes every
// collective call of the benchmark and returns a plain BenchResult; print_benchmark() prints
// that result on rank 0 and makes none. What is measured, in one process and with the thread
// count training would use:
//  1. the run, built exactly as mptrain builds it (build_run: layout, grid, backend, model,
//     optimizer, 1F1B schedule) on the deck's [data] train, or on uniformly random tokens
//     (seeded by [train] seed) when [data] train is "random";
//  2. Backend::gemm on every matrix shape of the step (all ranks at once, the trials
//     interleaved with the timed steps), giving the FLOP-weighted SGEMM ceiling:
//     sum(calls * flops) / sum(calls * seconds per call);
//  3. `warmup` steps, then `steps` timed steps of train_step() (run.hpp), the trainer's own
//     step; a step's time is that of the slowest rank;
//  4. a fresh run with its backend wrapped in a TimingBackend (bench.hpp) for a profiled pass:
//     the breakdown by kind of work (communication from the grid's wait counters);
//  5. memory per rank (peak RSS; parameters, gradients, optimizer state, activations and
//     token buffers, each against its analytic count) and communication per axis against the
//     analytic count (model/analytic.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/train/bench.hpp"
#include "mptrain/model/analytic.hpp"

namespace mptrain {

// [data] train = random: uniformly random tokens instead of a dataset.
inline constexpr const char* bench_random_data = "random";

// The benchmark's own options (mptrain-bench --bench.KEY=VALUE).
struct BenchOptions {
  long warmup = 3;            // untimed steps first
  long steps = 10;            // timed steps
  long profile_steps = 5;     // steps of the profiled pass (0: no breakdown)
  int gemm_trials = 6;        // trials per GEMM shape for the ceiling
  double gemm_seconds = 0.02; // minimum seconds per trial
};

// Median, extremes and quartiles of a sample (linear interpolation between order statistics).
struct Stats {
  double median = 0, min = 0, max = 0, p25 = 0, p75 = 0;
};
Stats stats_of(std::vector<double> values);

// One rank's row of the memory table, in bytes (rss in MiB).
struct MemoryRow {
  double rss_mib = 0;            // peak RSS after the timed steps
  MemoryCount measured;          // the sizes of the buffers the run allocated
  MemoryCount analytic;          // analytic_memory() for this rank's stage
  double backend_bytes = -1;     // all the profiled run's backend held once built (< 0: none)
  double other_bytes = 0;        // backend_bytes beyond the measured columns
};

// What the benchmark measured. Job-wide figures (per-rank vectors, ceilings, step times,
// checks) are the same on every rank; those marked "this rank's" are the caller's own, and
// rank 0 prints its own.
struct BenchResult {
  BenchOptions options;
  // The run.
  Deck deck;  // resolved (dp, vocab_size)
  Layout layout;
  std::string layout_text, backend;
  int ranks = 1, threads = 1, micro_batches = 1;
  bool synthetic = false;  // random tokens
  int64_t params = 0;
  double tokens_per_step = 0, flops_per_step = 0;
  std::vector<int> cores_allowed;  // per rank (-1: unknown)
  // The SGEMM ceiling: this rank's shapes and median seconds per call; GFLOP/s.
  std::vector<GemmShape> shapes;
  std::vector<double> gemm_seconds;
  double rank_ceiling = 0, job_ceiling = 0;
  // The timed steps (the slowest rank's time of each step).
  Stats step_ms;
  double tokens_per_s = 0, gflops = 0, pct_sgemm = 0;
  // Communication per step: this rank's payload per axis and its analytic count; whether
  // every rank's matched (the world axis aside: the benchmark has no preemption flag).
  std::array<double, n_axes> comm_bytes{};
  StepTraffic analytic;
  bool comm_ok = true;
  // The profiled pass (when options.profile_steps > 0): ms per step, mean over ranks; the
  // most backend allocations of any rank inside the profiled steps; this rank's GEMMs.
  std::array<double, n_op_kinds> kind_ms{};
  std::array<double, n_axes> comm_wait_ms{};
  double profiled_ms = 0, other_ms = 0;
  long allocations = 0;
  std::map<TimingBackend::GemmKey, TimingBackend::Stat> gemm_profile;
  // Memory, one row per rank; whether every rank's measured figures equal the analytic ones
  // and its backend holds nothing else.
  std::vector<MemoryRow> memory;
  bool memory_ok = true;
  double rss_mib_max = 0;
};

// Collective over the world: the whole measurement (above) of `deck` ([checkpoint] dir and
// [data] val are ignored: the benchmark writes nothing and does not validate). Throws
// InputError (on every rank) for problems with the deck or the data.
BenchResult measure_benchmark(const Deck& deck, const BenchOptions& options);

// Not collective (rank 0 calls it): the report of `result` on stdout, ending with the
// machine-readable line "BENCH key=value ..." (doc/DESIGN.md §7). `deck_path` names the deck.
void print_benchmark(const BenchResult& result, const std::string& deck_path);

}  // namespace mptrain
