// mptrain-bench's measurement (benchmark.hpp): every collective call of the benchmark is
// here, on every rank; the report is printed from the result (benchmark_report.cpp).
#include "mptrain/train/benchmark.hpp"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>

#include "mptrain/core/error.hpp"
#include "mptrain/core/log.hpp"
#include "mptrain/train/run.hpp"

namespace mptrain {

namespace {

// Uniformly random tokens (splitmix64 of the seed), the same on every rank: 8 global batches.
TokenDataset random_tokens(const Deck& deck) {
  if (deck.model.vocab_size <= 0)
    throw InputError("[data] train = random needs [model] vocab_size > 0 (there is no dataset "
                     "to take it from)");
  const size_t n = size_t(deck.train.global_batch) * deck.model.seq_len * 8 + 1;
  std::vector<int32_t> tokens(n);
  uint64_t x = deck.train.seed;
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    tokens[i] = int32_t(z % uint64_t(deck.model.vocab_size));
  }
  return TokenDataset::from_tokens("random tokens", deck.model.vocab_size, std::move(tokens));
}

// Collective over world: per-rank values -> a vector indexed by rank (on every rank).
std::vector<double> gather(const Comm& world, double value) {
  std::vector<double> all(size_t(world.size()), 0.0);
  all[size_t(world.rank())] = value;
  world.allreduce_sum(std::span<double>(all));
  return all;
}

int cores_allowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
  return CPU_COUNT(&set);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

// What the run allocated, by category: the sizes of the buffers themselves.
MemoryCount measured_memory(const Run& run) {
  const double f = sizeof(float);
  MemoryCount m;
  m.params = double(run.model->params().params().size()) * f;
  m.grads = double(run.model->params().grads().size() + run.optimizer->gradient_shard_elements()) * f;
  m.optimizer = double(run.optimizer->moment_elements()) * f;
  m.activations = double(run.model->activation_elements()) * f;
  m.buffers = double(run.model->token_elements()) * sizeof(int32_t);
  return m;
}

// Collective over world: the run's description (copies: the run is released before the
// profiled pass) and the cores each rank may run on.
void describe(const Comm& world, const Run& run, BenchResult& r) {
  r.deck = run.deck;
  r.layout = run.grid.layout();
  r.layout_text = run.layout_text();
  r.backend = run.backend->name();
  r.ranks = world.size();
  r.threads = run.backend->threads();
  r.micro_batches = run.schedule->micro_batches();
  r.tokens_per_step = double(r.deck.train.global_batch) * r.deck.model.seq_len;
  r.params = model_parameters(r.deck.model);
  r.flops_per_step = step_flops(r.deck.model, r.deck.train.global_batch);
  for (double a : gather(world, cores_allowed())) r.cores_allowed.push_back(int(a));
}

// Collective over world: the headline timing, interleaved with the SGEMM ceiling: `rounds`
// rounds of (one ceiling trial on every shape, then steps/rounds training steps), so that both
// see the same machine (on a shared node the load drifts); the ceiling is the median trial per
// shape. Returns this rank's communication over the timed steps.
CommCounters time_steps(const Comm& world, Run& run, BenchResult& r) {
  const BenchOptions& opt = r.options;
  const long total_steps = opt.warmup + opt.steps;
  r.shapes = step_gemm_shapes(run.deck.model, run.grid.layout(), run.grid.pp_rank(),
                              run.deck.parallel.micro_batch, run.deck.train.global_batch);
  const int rounds = int(std::min<long>(opt.gemm_trials, opt.steps));
  std::vector<std::vector<double>> trials(r.shapes.size());
  for (long i = 0; i < opt.warmup; ++i) train_step(run, total_steps);
  world.barrier();
  const CommCounters before = run.grid.counters();
  std::vector<float> step_ms(size_t(opt.steps));
  for (int round = 0; round < rounds; ++round) {
    world.barrier();
    const std::vector<double> t = measure_gemm_seconds(*run.backend, r.shapes, opt.gemm_seconds, 1);
    for (size_t i = 0; i < r.shapes.size(); ++i) trials[i].push_back(t[i]);
    world.barrier();
    for (long i = opt.steps * round / rounds; i < opt.steps * (round + 1) / rounds; ++i) {
      const Stopwatch clock;
      train_step(run, total_steps);
      step_ms[size_t(i)] = float(clock.seconds() * 1e3);
    }
  }
  CommCounters sent = run.grid.counters();
  world.allreduce_max(std::span<float>(step_ms));  // the slowest rank's time, step by step
  for (int a = 0; a < n_axes; ++a) sent.bytes_sent[a] -= before.bytes_sent[a];

  double ceil_flops = 0, ceil_seconds = 0;
  for (size_t i = 0; i < r.shapes.size(); ++i) {
    r.gemm_seconds.push_back(stats_of(trials[i]).median);
    ceil_flops += r.shapes[i].count * r.shapes[i].flops();
    ceil_seconds += r.shapes[i].count * r.gemm_seconds[i];
  }
  r.rank_ceiling = ceil_seconds > 0 ? ceil_flops / ceil_seconds / 1e9 : 0;  // GFLOP/s
  r.job_ceiling = 0;
  for (double c : gather(world, r.rank_ceiling)) r.job_ceiling += c;
  r.step_ms = stats_of(std::vector<double>(step_ms.begin(), step_ms.end()));
  r.tokens_per_s = r.tokens_per_step / (r.step_ms.median / 1e3);
  r.gflops = r.flops_per_step / (r.step_ms.median / 1e3) / 1e9;
  r.pct_sgemm = r.job_ceiling > 0 ? 100.0 * r.gflops / r.job_ceiling : 0;
  return sent;
}

// Collective over world: this rank's payload per step against the analytic count, and
// whether every rank's matched. The world axis is left out of the check: the benchmark skips
// the trainer's preemption-flag all-reduce (4 bytes per step).
void check_communication(const Comm& world, const Run& run, const CommCounters& sent,
                         BenchResult& r) {
  for (int a = 0; a < n_axes; ++a)
    r.comm_bytes[a] = double(sent.bytes_sent[a]) / double(r.options.steps);
  r.analytic = analytic_traffic(run);
  int mismatch = 0;
  for (int a = 0; a < n_axes; ++a)
    if (Axis(a) != Axis::world && std::llround(r.comm_bytes[a]) != int64_t(r.analytic.payload[a]))
      mismatch = 1;
  world.allreduce_max(std::span<int>(&mismatch, 1));  // any rank
  r.comm_ok = mismatch == 0;
}

// Collective over world: the profiled pass on a fresh run whose backend is wrapped in a
// TimingBackend: the breakdown by kind of work (mean over ranks), the allocations inside the
// steps (the most of any rank), this rank's GEMMs. Returns all the backend holds once built.
double profile(const Comm& world, const Deck& deck, RunOptions options, BenchResult& r) {
  const long steps = r.options.profile_steps;
  TimingBackend* timing = nullptr;
  options.wrap_backend = [&](std::unique_ptr<Backend> inner) {
    auto t = std::make_unique<TimingBackend>(std::move(inner));
    timing = t.get();
    return std::unique_ptr<Backend>(std::move(t));
  };
  std::unique_ptr<Run> run = build_run(deck, Comm::world(), options);  // collective
  const double backend_bytes = double(timing->live_bytes());
  train_step(*run, 1 + steps);  // warm-up
  world.barrier();
  timing->reset_times();
  const long allocs0 = timing->allocations();
  const CommCounters c0 = run->grid.counters();
  const Stopwatch clock;
  for (long i = 0; i < steps; ++i) train_step(*run, 1 + steps);
  const double wall = clock.seconds();
  const CommCounters c1 = run->grid.counters();
  const double per = 1e3 / double(steps);
  // Mean over ranks of: the kinds, the waits per axis, the step, what is not accounted for.
  std::vector<double> v;
  double accounted = 0;
  for (int k = 0; k < n_op_kinds; ++k) v.push_back(timing->kinds()[k].seconds * per);
  for (int a = 0; a < n_axes; ++a) v.push_back((c1.wait_seconds[a] - c0.wait_seconds[a]) * per);
  for (double x : v) accounted += x;
  v.push_back(wall * per);
  v.push_back(wall * per - accounted);
  world.allreduce_sum(std::span<double>(v));
  for (double& x : v) x /= r.ranks;
  std::copy_n(v.begin(), n_op_kinds, r.kind_ms.begin());
  std::copy_n(v.begin() + n_op_kinds, n_axes, r.comm_wait_ms.begin());
  r.profiled_ms = v[n_op_kinds + n_axes];
  r.other_ms = v[n_op_kinds + n_axes + 1];
  int allocs = int(timing->allocations() - allocs0);
  world.allreduce_max(std::span<int>(&allocs, 1));
  r.allocations = allocs;
  r.gemm_profile = timing->gemms();
  return backend_bytes;
}

// Collective over world: every rank's memory row, and whether each rank's measured figures
// equal the analytic ones with nothing else in its backend.
void gather_memory(const Comm& world, const MemoryRow& mine, BenchResult& r) {
  const std::vector<double> row = {mine.rss_mib,
                                   mine.measured.params, mine.analytic.params,
                                   mine.measured.grads, mine.analytic.grads,
                                   mine.measured.optimizer, mine.analytic.optimizer,
                                   mine.measured.activations, mine.analytic.activations,
                                   mine.measured.buffers, mine.analytic.buffers,
                                   mine.backend_bytes, mine.other_bytes};
  const size_t k = row.size();
  std::vector<double> all(k * size_t(world.size()), 0.0);
  std::copy(row.begin(), row.end(), all.begin() + std::ptrdiff_t(k * size_t(world.rank())));
  world.allreduce_sum(std::span<double>(all));  // collective over the world
  r.memory_ok = true;
  for (size_t rank = 0; rank < size_t(world.size()); ++rank) {
    const double* v = &all[rank * k];
    MemoryRow m;
    m.rss_mib = v[0];
    m.measured = {v[1], v[3], v[5], v[7], v[9]};
    m.analytic = {v[2], v[4], v[6], v[8], v[10]};
    m.backend_bytes = v[11];
    m.other_bytes = v[12];
    for (size_t c = 1; c < 11; c += 2) r.memory_ok = r.memory_ok && v[c] == v[c + 1];
    r.memory_ok = r.memory_ok && m.other_bytes == 0;
    r.rss_mib_max = std::max(r.rss_mib_max, m.rss_mib);
    r.memory.push_back(m);
  }
}

}  // namespace

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto q = [&](double f) {
    const double pos = f * double(v.size() - 1);
    const size_t i = size_t(pos);
    const double frac = pos - double(i);
    return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
  };
  s.median = q(0.5);
  s.p25 = q(0.25);
  s.p75 = q(0.75);
  s.min = v.front();
  s.max = v.back();
  return s;
}

BenchResult measure_benchmark(const Deck& deck_in, const BenchOptions& options) {
  const Comm world = Comm::world();  // its own counters: the run's count only the steps
  BenchResult r;
  r.options = options;
  r.synthetic = deck_in.data.train == bench_random_data;
  Deck deck = deck_in;
  deck.checkpoint.dir.clear();  // the benchmark never writes checkpoints
  deck.data.val.clear();        // nor validates
  std::optional<TokenDataset> tokens;
  if (r.synthetic) tokens = random_tokens(deck);
  RunOptions run_options;
  if (tokens) run_options.train_data = &*tokens;

  MemoryRow mine;
  {
    std::unique_ptr<Run> run = build_run(deck, Comm::world(), run_options);  // collective
    describe(world, *run, r);                                                // collective
    const CommCounters sent = time_steps(world, *run, r);                    // collective
    mine.rss_mib = peak_rss_mib();
    check_communication(world, *run, sent, r);  // collective
    mine.measured = measured_memory(*run);
    StepOptions step_options;
    step_options.zero = r.deck.optim.zero;
    step_options.bucket_mb = r.deck.parallel.bucket_mb;
    mine.analytic = analytic_memory(r.deck.model, r.layout, run->grid.pp_rank(),
                                    r.deck.parallel.micro_batch, r.deck.train.global_batch,
                                    step_options);
  }  // released before the profiled pass
  if (options.profile_steps > 0) {
    mine.backend_bytes = profile(world, deck, run_options, r);  // collective
    mine.other_bytes = mine.backend_bytes - mine.measured.total();
  }
  gather_memory(world, mine, r);  // collective
  return r;
}

}  // namespace mptrain
