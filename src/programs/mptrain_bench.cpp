// mptrain-bench: measures a training step of the deck's model against the backend's own GEMM
// rate on the step's matrix shapes (DESIGN §6). Run it like mptrain (one process, or under
// mpirun/srun); every deck key can be overridden with --section.key=value, and the benchmark's
// own options are --bench.KEY=VALUE (see usage()).
//
// What it does, in one process and with the thread count training would use:
//  1. builds the run exactly as mptrain does (build_run: layout, grid, backend, model,
//     optimizer, 1F1B schedule) on the deck's [data] train, or on uniformly random tokens
//     (seeded by [train] seed) when [data] train is "random" or absent;
//  2. times Backend::gemm on every matrix shape of the step (all ranks at once, half of the
//     trials before the training steps and half after), giving the FLOP-weighted SGEMM
//     ceiling: sum(calls * flops) / sum(calls * seconds per call);
//  3. runs --bench.warmup steps, then --bench.steps timed steps (the trainer's step: 1F1B
//     batch, loss all-reduce, optimizer step); a step's time is that of the slowest rank;
//  4. rebuilds the run with its backend wrapped in a TimingBackend and runs a profiled pass
//     for the breakdown by kind of work (communication from the grid's wait counters);
//  5. reports memory per rank (peak RSS; parameters, gradients, optimizer state, activations
//     and token buffers, each measured against its analytic count) and one machine-readable
//     line, "BENCH key=value ...".
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "mptrain/train/bench.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"
#include "mptrain/core/log.hpp"
#include "mptrain/train/trainer.hpp"
#include "mptrain/train/run.hpp"
#include "programs/program.hpp"

namespace mptrain {
namespace {

constexpr const char* kRandom = "random";  // [data] train value for synthetic tokens

void usage(std::FILE* out) {
  std::fprintf(out,
      "usage: mptrain-bench DECK [--section.key=value ...] [--bench.KEY=VALUE ...]\n"
      "  Times training steps of the deck's model and compares them with the backend's GEMM\n"
      "  rate on the step's own matrix shapes (the SGEMM ceiling). Run under mpirun/srun for\n"
      "  several ranks. [data] train = random (or no [data] train) uses random tokens.\n"
      "  --bench.warmup=N          untimed steps first (default 3)\n"
      "  --bench.steps=N           timed steps (default 10)\n"
      "  --bench.profile_steps=N   steps of the profiled pass for the breakdown (default 5;\n"
      "                            0 = no breakdown)\n"
      "  --bench.gemm_trials=N     trials per GEMM shape for the ceiling, interleaved with\n"
      "                            the timed steps (default 6)\n"
      "  --bench.gemm_seconds=S    minimum seconds per trial (default 0.02)\n"
      "  Pin threads for stable numbers: OMP_PROC_BIND=close OMP_PLACES=cores, and with mpirun\n"
      "  give each rank its cores (--bind-to none, or --map-by slot:PE=THREADS).\n");
}

struct Options {
  long warmup = 3;
  long steps = 10;
  long profile_steps = 5;
  int gemm_trials = 6;
  double gemm_seconds = 0.02;
};

// Takes the --bench.* arguments out of args.
Options parse_options(std::vector<std::string>& args) {
  Options o;
  std::vector<std::string> rest;
  for (const std::string& a : args) {
    if (a.rfind("--bench.", 0) != 0) {
      rest.push_back(a);
      continue;
    }
    const size_t eq = a.find('=');
    const std::string key = a.substr(8, eq == std::string::npos ? std::string::npos : eq - 8);
    const std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(v >= 0))
      throw InputError("command line: " + a + ": needs a number >= 0 (--bench." + key + "=N)");
    if (key == "warmup") o.warmup = long(v);
    else if (key == "steps") o.steps = std::max(1L, long(v));
    else if (key == "profile_steps") o.profile_steps = long(v);
    else if (key == "gemm_trials") o.gemm_trials = std::max(1, int(v));
    else if (key == "gemm_seconds") o.gemm_seconds = v;
    else
      throw InputError("command line: unknown option --bench." + key +
                       " (allowed: warmup, steps, profile_steps, gemm_trials, gemm_seconds)");
  }
  args = rest;
  return o;
}

// Collective over the world: the deck, with [data] train = random when the deck names no
// training data.
Deck read_bench_deck(const std::string& path, std::vector<std::string> overrides) {
  try {
    return read_deck_everywhere(path, overrides);  // collective
  } catch (const InputError& e) {
    if (std::string(e.what()).find("[data] train is required") == std::string::npos) throw;
  }
  overrides.push_back(std::string("--data.train=") + kRandom);
  return read_deck_everywhere(path, overrides);  // collective
}

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

struct Stats {
  double median = 0, min = 0, max = 0, p25 = 0, p75 = 0;
};
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

// Collective over world: per-rank values -> a vector indexed by rank (on every rank).
std::vector<double> gather(const Comm& world, double value) {
  std::vector<double> all(size_t(world.size()), 0.0);
  all[size_t(world.rank())] = value;
  world.allreduce_sum(std::span<double>(all));
  return all;
}

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
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

constexpr double MiB = 1024.0 * 1024.0;

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

// Collective over world: the memory table (rank 0 prints it). `backend_bytes` is everything
// the profiled run's backend held once built (< 0: not profiled). Returns true when every
// rank's measured figures equal the analytic ones and the backend holds nothing else.
bool print_memory(const Comm& world, const std::vector<double>& rss, const MemoryCount& measured,
                  const MemoryCount& analytic, double backend_bytes) {
  const double other = backend_bytes < 0 ? 0 : backend_bytes - measured.total();
  const std::vector<double> mine = {measured.params, analytic.params, measured.grads,
                                    analytic.grads, measured.optimizer, analytic.optimizer,
                                    measured.activations, analytic.activations, measured.buffers,
                                    analytic.buffers, backend_bytes, other};
  const size_t k = mine.size();
  std::vector<double> all(k * size_t(world.size()), 0.0);
  std::copy(mine.begin(), mine.end(), all.begin() + std::ptrdiff_t(k * size_t(world.rank())));
  world.allreduce_sum(std::span<double>(all));  // collective over the world
  bool ok = true;
  for (size_t r = 0; r < size_t(world.size()); ++r) {
    for (size_t c = 0; c < 10; c += 2) ok = ok && all[r * k + c] == all[r * k + c + 1];
    ok = ok && all[r * k + 11] == 0;
  }
  if (world.rank() != 0) return ok;
  double largest = 0;
  for (double v : all) largest = std::max(largest, v);
  const bool kib = largest < 64 * MiB;  // small models in KiB, so that no figure reads 0.000
  const double unit = kib ? 1024.0 : MiB;
  std::printf("\nmemory per rank, %s: measured (the sizes of the buffers the run allocated) / "
              "analytic (from the model, layout and batch shapes):\n", kib ? "KiB" : "MiB");
  std::printf("  %4s %9s %17s %17s %17s %17s %17s %12s\n", "rank", "peak RSS", "parameters",
              "gradients", "optimizer state", "activations", "buffers", "backend");
  for (size_t r = 0; r < size_t(world.size()); ++r) {
    const double* v = &all[r * k];
    std::printf("  %4zu %9.1f", r, rss[r] * MiB / unit);  // rss is in MiB
    for (size_t c = 0; c < 10; c += 2) std::printf(" %8.3f / %6.3f", v[c] / unit, v[c + 1] / unit);
    if (v[10] < 0) std::printf(" %12s\n", "-");
    else std::printf(" %12.3f%s\n", v[10] / unit, v[11] != 0 ? " (!)" : "");
  }
  std::printf("  parameters, gradients: the flat buffers (each tensor padded to 16 floats, the total "
              "to a multiple of dp;\n    gradients with ZeRO-1's reduced shard); optimizer state: "
              "AdamW's m and v (a 1/dp shard under ZeRO-1);\n    activations: saved per "
              "micro-batch in flight, stage inputs, backward scratch, the head's work;\n    "
              "buffers: token ids and targets; backend: all the profiled run's backend holds "
              "((!): more than the columns)\n");
  std::printf("mem-check: %s\n", ok ? "ok (every figure equals its analytic count)"
                                     : "MISMATCH (a measured figure differs from its analytic count)");
  return ok;
}

int bench(const Deck& deck_in, const Options& opt, const std::string& deck_path) {
  const Comm world = Comm::world();
  const int rank = world.rank(), ranks = world.size();
  const bool root = rank == 0;
  const bool synthetic = deck_in.data.train == kRandom;
  Deck deck = deck_in;
  deck.checkpoint.dir.clear();  // the benchmark never writes checkpoints
  deck.data.val.clear();        // nor validates
  std::optional<TokenDataset> tokens;
  if (synthetic) tokens = random_tokens(deck);
  RunOptions run_options;
  if (tokens) run_options.train_data = &*tokens;

  std::unique_ptr<Run> run = build_run(deck, Comm::world(), run_options);  // collective
  // Copies: the run is released before the profiled pass, and these outlive it.
  const Deck d = run->deck;
  const Layout L = run->grid.layout();
  const LayerShape shape = run->model->shape();
  const int micro_batches = run->schedule->micro_batches();
  const int local_layers = run->model->local_layers();
  const bool last = run->grid.last_stage();
  const int pp_rank = run->grid.pp_rank();
  const int threads = run->backend->threads();
  const long G = d.train.global_batch, T = d.model.seq_len;
  const double tokens_per_step = double(G) * T;
  const int64_t n_params = model_parameters(d.model);
  const double flops = step_flops(d.model, G);
  const long total_steps = opt.warmup + opt.steps;

  // ---- threads and placement
  const std::vector<double> allowed = gather(world, cores_allowed());
  if (root) {
    std::printf("mptrain-bench: %s, %d rank(s), layout %s, backend %s, %d threads/rank\n",
                deck_path.c_str(), ranks, run->layout_text().c_str(), run->backend->name().c_str(),
                threads);
    std::printf("  OMP_NUM_THREADS=%s OMP_PROC_BIND=%s OMP_PLACES=%s; cores allowed per rank:",
                env_or("OMP_NUM_THREADS", "(unset)"), env_or("OMP_PROC_BIND", "(unset)"),
                env_or("OMP_PLACES", "(unset)"));
    for (double a : allowed) std::printf(" %d", int(a));
    std::printf("\n");
    for (int r = 0; r < ranks; ++r)
      if (allowed[r] > 0 && allowed[r] < threads)
        std::printf("  WARNING: rank %d may run on %d core(s) but uses %d threads: the launcher "
                    "bound it too tightly (mpirun --bind-to none, or --map-by slot:PE=%d)\n",
                    r, int(allowed[r]), threads, threads);
    std::printf("model: n_layer %d n_head %d n_embd %d seq_len %d vocab %d: %.3fM parameters\n",
                d.model.n_layer, d.model.n_head, d.model.n_embd, d.model.seq_len,
                d.model.vocab_size, double(n_params) / 1e6);
    std::printf("batch: micro_batch %d, global_batch %ld (%d micro-batch(es) per rank and "
                "step), %.0f tokens/step; %.3f GFLOP/step = tokens * (6 N + 6 n_layer n_embd "
                "seq_len)\n",
                d.parallel.micro_batch, G, micro_batches, tokens_per_step, flops / 1e9);
    std::printf("data: %s\n", synthetic ? "random tokens (uniform, seeded by [train] seed)"
                                        : d.data.train.c_str());
    std::fflush(stdout);
  }

  // ---- the headline timing, interleaved with the SGEMM ceiling: `rounds` rounds of (one
  // ceiling trial on every shape, then steps/rounds training steps), so that both see the same
  // machine (on a shared node the load drifts); the ceiling is the median trial per shape.
  const std::vector<GemmShape> shapes = step_gemm_shapes(shape, local_layers, last, micro_batches);
  const int rounds = int(std::min<long>(opt.gemm_trials, opt.steps));
  std::vector<std::vector<double>> trials(shapes.size());
  for (long i = 0; i < opt.warmup; ++i) train_step(*run, total_steps);
  world.barrier();
  const CommCounters before = run->grid.counters();
  std::vector<float> step_ms(size_t(opt.steps));
  for (int round = 0; round < rounds; ++round) {
    world.barrier();
    const std::vector<double> t = measure_gemm_seconds(*run->backend, shapes, opt.gemm_seconds, 1);
    for (size_t i = 0; i < shapes.size(); ++i) trials[i].push_back(t[i]);
    world.barrier();
    for (long i = opt.steps * round / rounds; i < opt.steps * (round + 1) / rounds; ++i) {
      const Stopwatch clock;
      train_step(*run, total_steps);
      step_ms[size_t(i)] = float(clock.seconds() * 1e3);
    }
  }
  const CommCounters after = run->grid.counters();
  world.allreduce_max(std::span<float>(step_ms));  // the slowest rank's time, step by step
  const double rss_after_headline = peak_rss_mib();

  std::vector<double> gemm_s(shapes.size());
  for (size_t i = 0; i < shapes.size(); ++i) gemm_s[i] = stats_of(trials[i]).median;
  double ceil_flops = 0, ceil_seconds = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    ceil_flops += shapes[i].count * shapes[i].flops();
    ceil_seconds += shapes[i].count * gemm_s[i];
  }
  const double rank_ceiling = ceil_seconds > 0 ? ceil_flops / ceil_seconds / 1e9 : 0;  // GFLOP/s
  const std::vector<double> ceilings = gather(world, rank_ceiling);
  double job_ceiling = 0;
  for (double c : ceilings) job_ceiling += c;

  std::vector<double> ms(step_ms.begin(), step_ms.end());
  const Stats st = stats_of(ms);
  const double tok_s = tokens_per_step / (st.median / 1e3);
  const double gflops = flops / (st.median / 1e3) / 1e9;
  const double pct = job_ceiling > 0 ? 100.0 * gflops / job_ceiling : 0;

  // Communication of the headline pass (this rank), per step.
  std::array<double, n_axes> comm_bytes{};
  for (int a = 0; a < n_axes; ++a)
    comm_bytes[a] = double(after.bytes_sent[a] - before.bytes_sent[a]) / double(opt.steps);

  if (root) {
    std::printf("\nSGEMM ceiling: backend gemm on this step's shapes, %d thread(s)/rank, all ranks "
                "at once (rank 0's shapes):\n", threads);
    std::printf("  %-26s %2s %6s %6s %6s %10s %10s %9s\n", "product", "op", "m", "n", "k",
                "calls/step", "ms/call", "GFLOP/s");
    for (size_t i = 0; i < shapes.size(); ++i) {
      const GemmShape& g = shapes[i];
      std::printf("  %-26s %c%c %6d %6d %6d %10ld %10.4f %9.1f\n", g.label.c_str(),
                  g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, g.count,
                  gemm_s[i] * 1e3, g.flops() / gemm_s[i] / 1e9);
    }
    std::printf("  FLOP-weighted: %.1f GFLOP/s on rank 0, %.1f GFLOP/s for the job (sum over "
                "ranks)\n", rank_ceiling, job_ceiling);
    std::printf("\ntraining step: %ld warm-up + %ld timed steps (each step's time is the slowest "
                "rank's)\n", opt.warmup, opt.steps);
    std::printf("  ms/step    median %8.2f   min %8.2f   max %8.2f   IQR %.2f-%.2f\n", st.median,
                st.min, st.max, st.p25, st.p75);
    std::printf("  tokens/s   %10.0f (median step)\n", tok_s);
    std::printf("  GFLOP/s    %10.1f = %.1f%% of the SGEMM ceiling (%.1f GFLOP/s)\n", gflops, pct,
                job_ceiling);
    std::fflush(stdout);
  }

  // ---- the profiled pass: a fresh run on a TimingBackend
  const double rss_peak = rss_after_headline;
  // Communication: what rank 0 sent per step against what the algorithm must send. The world
  // axis is left out of the check: the benchmark skips the trainer's preemption-flag
  // all-reduce (4 bytes per step).
  const StepTraffic analytic = analytic_traffic(*run);
  int comm_mismatch = 0;
  for (int a = 0; a < n_axes; ++a)
    if (Axis(a) != Axis::world && std::llround(comm_bytes[a]) != int64_t(analytic.payload[a]))
      comm_mismatch = 1;
  {
    std::vector<int> flag{comm_mismatch};
    world.allreduce_max(std::span<int>(flag));  // any rank
    comm_mismatch = flag[0];
  }
  const std::string backend_name = run->backend->name();
  const MemoryCount mem_measured = measured_memory(*run);
  run.reset();
  struct Breakdown {
    std::array<double, n_op_kinds> kind_ms{};
    std::array<double, n_axes> comm_ms{};
    double step_ms = 0, other_ms = 0;
    long allocs = 0;
  } bd;
  std::map<TimingBackend::GemmKey, TimingBackend::Stat> gemm_prof;
  double backend_bytes = -1;  // all the backend holds once the run is built (profiled run)
  if (opt.profile_steps > 0) {
    TimingBackend* timing = nullptr;
    RunOptions popts = run_options;
    popts.wrap_backend = [&](std::unique_ptr<Backend> inner) {
      auto t = std::make_unique<TimingBackend>(std::move(inner));
      timing = t.get();
      return std::unique_ptr<Backend>(std::move(t));
    };
    std::unique_ptr<Run> prun = build_run(deck, Comm::world(), popts);  // collective
    backend_bytes = double(timing->live_bytes());
    const long ptotal = 1 + opt.profile_steps;
    train_step(*prun, ptotal);  // warm-up
    world.barrier();
    timing->reset_times();
    const long allocs0 = timing->allocations();
    const CommCounters c0 = prun->grid.counters();
    const Stopwatch clock;
    for (long i = 0; i < opt.profile_steps; ++i) train_step(*prun, ptotal);
    const double wall = clock.seconds();
    const CommCounters c1 = prun->grid.counters();
    const double per = 1e3 / double(opt.profile_steps);
    double accounted = 0;
    for (int k = 0; k < n_op_kinds; ++k) {
      bd.kind_ms[k] = timing->kinds()[k].seconds * per;
      accounted += bd.kind_ms[k];
    }
    for (int a = 0; a < n_axes; ++a) {
      bd.comm_ms[a] = (c1.wait_seconds[a] - c0.wait_seconds[a]) * per;
      accounted += bd.comm_ms[a];
    }
    bd.step_ms = wall * per;
    bd.other_ms = bd.step_ms - accounted;
    bd.allocs = timing->allocations() - allocs0;
    gemm_prof = timing->gemms();
    // Mean over ranks.
    std::vector<double> v;
    for (double x : bd.kind_ms) v.push_back(x);
    for (double x : bd.comm_ms) v.push_back(x);
    v.push_back(bd.step_ms);
    v.push_back(bd.other_ms);
    world.allreduce_sum(std::span<double>(v));
    for (double& x : v) x /= ranks;
    for (int k = 0; k < n_op_kinds; ++k) bd.kind_ms[k] = v[size_t(k)];
    for (int a = 0; a < n_axes; ++a) bd.comm_ms[a] = v[size_t(n_op_kinds + a)];
    bd.step_ms = v[n_op_kinds + n_axes];
    bd.other_ms = v[n_op_kinds + n_axes + 1];
    std::vector<int> allocs{int(bd.allocs)};
    world.allreduce_max(std::span<int>(allocs));
    bd.allocs = allocs[0];
  }

  // ---- memory per rank
  const std::vector<double> rss = gather(world, rss_peak);
  double rss_max = 0;
  for (double r : rss) rss_max = std::max(rss_max, r);

  if (root) {
    if (opt.profile_steps > 0) {
      std::printf("\nbreakdown: profiled pass of %ld steps on a timing decorator (each op "
                  "synchronized; mean over ranks), ms/step:\n", opt.profile_steps);
      auto line = [&](const std::string& what, double v, const std::string& extra) {
        std::printf("  %-22s %9.3f ms %6.1f%%%s\n", what.c_str(), v,
                    bd.step_ms > 0 ? 100.0 * v / bd.step_ms : 0.0, extra.c_str());
      };
      double gemm_flops = 0;
      for (size_t i = 0; i < shapes.size(); ++i) gemm_flops += shapes[i].count * shapes[i].flops();
      for (int k = 0; k < n_op_kinds; ++k) {
        std::string extra;
        if (OpKind(k) == OpKind::matmul && bd.kind_ms[k] > 0) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "   (%.1f GFLOP/s, %.1f%% of rank 0's ceiling)",
                        gemm_flops / (bd.kind_ms[k] / 1e3) / 1e9,
                        100.0 * gemm_flops / (bd.kind_ms[k] / 1e3) / 1e9 / rank_ceiling);
          extra = buf;
        }
        line(op_kind_name(OpKind(k)), bd.kind_ms[k], extra);
      }
      for (int a = 0; a < n_axes; ++a)
        if (bd.comm_ms[a] > 0 || comm_bytes[a] > 0) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "   (rank 0 hands MPI %.0f B/step; analytic %llu, "
                        "wire %.0f)", comm_bytes[a], (unsigned long long)analytic.payload[a],
                        analytic.wire[a]);
          line(std::string("comm wait ") + axis_name(Axis(a)), bd.comm_ms[a], buf);
        }
      line("other (host, unaccounted)", bd.other_ms, "");
      line("profiled step", bd.step_ms, "");
      std::printf("  backend allocations inside the profiled steps: %ld\n", bd.allocs);
      std::printf("\nmatrix products in the profiled step, rank 0:\n");
      std::printf("  %-26s %6s %10s %9s %11s\n", "product", "calls", "ms/step", "GFLOP/s",
                  "% of ceiling");
      for (size_t i = 0; i < shapes.size(); ++i) {
        const GemmShape& g = shapes[i];
        auto it = gemm_prof.find({g.trans_a, g.trans_b, g.m, g.n, g.k});
        if (it == gemm_prof.end() || it->second.calls == 0) continue;
        const double per_call = it->second.seconds / double(it->second.calls);
        std::printf("  %-26s %6ld %10.3f %9.1f %10.1f%%\n", g.label.c_str(),
                    it->second.calls / opt.profile_steps, it->second.seconds * 1e3 / opt.profile_steps,
                    g.flops() / per_call / 1e9, 100.0 * gemm_s[i] / per_call);
      }
    }
  }
  const bool mem_ok =
      print_memory(world, rss, mem_measured,
                   analytic_memory(d.model, L, pp_rank, d.parallel.micro_batch, G, d.optim.zero),
                   backend_bytes);  // collective
  if (root) {
    // The machine-readable line.
    std::string line = "BENCH";
    auto kv = [&](const std::string& k, const std::string& v) { line += " " + k + "=" + v; };
    auto kd = [&](const std::string& k, double v, const char* fmt = "%.4g") {
      char buf[64];
      std::snprintf(buf, sizeof buf, fmt, v);
      kv(k, buf);
    };
    std::string name = deck_path.substr(deck_path.find_last_of('/') + 1);
    kv("deck", name);
    kd("ranks", ranks, "%.0f");
    kd("tp", L.tp, "%.0f");
    kd("pp", L.pp, "%.0f");
    kd("dp", L.dp, "%.0f");
    kd("threads", threads, "%.0f");
    kv("backend", backend_name);
    kv("data", synthetic ? "random" : "dataset");
    kd("micro_batch", d.parallel.micro_batch, "%.0f");
    kd("global_batch", double(G), "%.0f");
    kd("tokens_per_step", tokens_per_step, "%.0f");
    kd("params", double(n_params), "%.0f");
    kd("gflop_per_step", flops / 1e9);
    kd("warmup", double(opt.warmup), "%.0f");
    kd("steps", double(opt.steps), "%.0f");
    kd("ms_median", st.median);
    kd("ms_min", st.min);
    kd("ms_max", st.max);
    kd("ms_p25", st.p25);
    kd("ms_p75", st.p75);
    kd("tokens_per_s", tok_s, "%.1f");
    kd("gflops", gflops);
    kd("sgemm_gflops", job_ceiling);
    kd("pct_sgemm", pct);
    kd("rss_mib_max", rss_max);
    kv("comm_check", comm_mismatch ? "mismatch" : "ok");
    kv("mem_check", mem_ok ? "ok" : "mismatch");
    if (opt.profile_steps > 0) {
      for (int k = 0; k < n_op_kinds; ++k) {
        std::string n = op_kind_name(OpKind(k));
        std::replace_if(n.begin(), n.end(), [](char c) { return c == '+' || c == '-' || c == '/'; },
                        '_');
        kd("ms_" + n, bd.kind_ms[k]);
      }
      for (int a = 0; a < n_axes; ++a) kd(std::string("ms_comm_") + axis_name(Axis(a)), bd.comm_ms[a]);
      kd("ms_other", bd.other_ms);
      kd("ms_profiled", bd.step_ms);
      kd("allocs_in_step", double(bd.allocs), "%.0f");
    }
    std::printf("\n%s\n", line.c_str());
    std::fflush(stdout);
  }
  return exit_ok;
}

}  // namespace
}  // namespace mptrain

int main(int argc, char** argv) {
  using namespace mptrain;
  const Program program{"mptrain-bench", Program::Mpi::spmd, usage};
  return run_program(program, argc, argv, [](const std::vector<std::string>& args) {
    if (args.empty() || args[0].rfind("--", 0) == 0)
      throw InputError("no deck file given (usage: mptrain-bench DECK [--section.key=value "
                       "...] [--bench.KEY=VALUE ...])");
    const std::string path = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    const Options options = parse_options(rest);
    const Deck deck = read_bench_deck(path, rest);  // collective
    return bench(deck, options, path);              // collective
  });
}
