// mptrain-bench's report (benchmark.hpp): rank 0 prints a BenchResult. Nothing here
// communicates; everything printed was measured (and gathered) by measure_benchmark().
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mptrain/train/benchmark.hpp"

namespace mptrain {

namespace {

constexpr double MiB = 1024.0 * 1024.0;

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

void print_header(const BenchResult& r, const std::string& deck_path) {
  const Deck& d = r.deck;
  std::printf("mptrain-bench: %s, %d rank(s), layout %s, backend %s, %d threads/rank\n",
              deck_path.c_str(), r.ranks, r.layout_text.c_str(), r.backend.c_str(), r.threads);
  std::printf("  OMP_NUM_THREADS=%s OMP_PROC_BIND=%s OMP_PLACES=%s; cores allowed per rank:",
              env_or("OMP_NUM_THREADS", "(unset)"), env_or("OMP_PROC_BIND", "(unset)"),
              env_or("OMP_PLACES", "(unset)"));
  for (int a : r.cores_allowed) std::printf(" %d", a);
  std::printf("\n");
  for (int rank = 0; rank < r.ranks; ++rank) {
    const int allowed = r.cores_allowed[size_t(rank)];
    if (allowed > 0 && allowed < r.threads)
      std::printf("  WARNING: rank %d may run on %d core(s) but uses %d threads: the launcher "
                  "bound it too tightly (mpirun --bind-to none, or --map-by slot:PE=%d)\n",
                  rank, allowed, r.threads, r.threads);
  }
  std::printf("model: n_layer %d n_head %d n_embd %d seq_len %d vocab %d: %.3fM parameters\n",
              d.model.n_layer, d.model.n_head, d.model.n_embd, d.model.seq_len,
              d.model.vocab_size, double(r.params) / 1e6);
  std::printf("batch: micro_batch %d, global_batch %ld (%d micro-batch(es) per rank and "
              "step), %.0f tokens/step; %.3f GFLOP/step = tokens * (6 N + 6 n_layer n_embd "
              "seq_len)\n",
              d.parallel.micro_batch, d.train.global_batch, r.micro_batches, r.tokens_per_step,
              r.flops_per_step / 1e9);
  std::printf("data: %s\n", r.synthetic ? "random tokens (uniform, seeded by [train] seed)"
                                        : d.data.train.c_str());
}

void print_timing(const BenchResult& r) {
  std::printf("\nSGEMM ceiling: backend gemm on this step's shapes, %d thread(s)/rank, all ranks "
              "at once (rank 0's shapes):\n", r.threads);
  std::printf("  %-26s %2s %6s %6s %6s %10s %10s %9s\n", "product", "op", "m", "n", "k",
              "calls/step", "ms/call", "GFLOP/s");
  for (size_t i = 0; i < r.shapes.size(); ++i) {
    const GemmShape& g = r.shapes[i];
    std::printf("  %-26s %c%c %6d %6d %6d %10ld %10.4f %9.1f\n", g.label.c_str(),
                g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, g.count,
                r.gemm_seconds[i] * 1e3, g.flops() / r.gemm_seconds[i] / 1e9);
  }
  std::printf("  FLOP-weighted: %.1f GFLOP/s on rank 0, %.1f GFLOP/s for the job (sum over "
              "ranks)\n", r.rank_ceiling, r.job_ceiling);
  const Stats& st = r.step_ms;
  std::printf("\ntraining step: %ld warm-up + %ld timed steps (each step's time is the slowest "
              "rank's)\n", r.options.warmup, r.options.steps);
  std::printf("  ms/step    median %8.2f   min %8.2f   max %8.2f   IQR %.2f-%.2f\n", st.median,
              st.min, st.max, st.p25, st.p75);
  std::printf("  tokens/s   %10.0f (median step)\n", r.tokens_per_s);
  std::printf("  GFLOP/s    %10.1f = %.1f%% of the SGEMM ceiling (%.1f GFLOP/s)\n", r.gflops,
              r.pct_sgemm, r.job_ceiling);
}

// One line of the breakdown: what, ms per step, its share of the profiled step, and a note.
void breakdown_line(const BenchResult& r, const std::string& what, double ms,
                    const std::string& extra) {
  std::printf("  %-22s %9.3f ms %6.1f%%%s\n", what.c_str(), ms,
              r.profiled_ms > 0 ? 100.0 * ms / r.profiled_ms : 0.0, extra.c_str());
}

void print_breakdown(const BenchResult& r) {
  std::printf("\nbreakdown: profiled pass of %ld steps on a timing decorator (each op "
              "synchronized; mean over ranks), ms/step:\n", r.options.profile_steps);
  double gemm_flops = 0;
  for (const GemmShape& g : r.shapes) gemm_flops += g.count * g.flops();
  for (int k = 0; k < n_op_kinds; ++k) {
    std::string extra;
    if (OpKind(k) == OpKind::matmul && r.kind_ms[k] > 0) {
      char buf[96];
      const double seconds = r.kind_ms[k] / 1e3;
      std::snprintf(buf, sizeof buf, "   (%.1f GFLOP/s, %.1f%% of rank 0's ceiling)",
                    gemm_flops / seconds / 1e9, 100.0 * gemm_flops / seconds / 1e9 / r.rank_ceiling);
      extra = buf;
    }
    breakdown_line(r, op_kind_name(OpKind(k)), r.kind_ms[k], extra);
  }
  for (int a = 0; a < n_axes; ++a)
    if (r.comm_wait_ms[a] > 0 || r.comm_bytes[a] > 0) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "   (rank 0 hands MPI %.0f B/step; analytic %llu, wire %.0f)",
                    r.comm_bytes[a], (unsigned long long)r.analytic.payload[a], r.analytic.wire[a]);
      breakdown_line(r, std::string("comm wait ") + axis_name(Axis(a)), r.comm_wait_ms[a], buf);
    }
  breakdown_line(r, "other (host, unaccounted)", r.other_ms, "");
  breakdown_line(r, "profiled step", r.profiled_ms, "");
  std::printf("  backend allocations inside the profiled steps: %ld\n", r.allocations);
  std::printf("\nmatrix products in the profiled step, rank 0:\n");
  std::printf("  %-26s %6s %10s %9s %11s\n", "product", "calls", "ms/step", "GFLOP/s",
              "% of ceiling");
  const long steps = r.options.profile_steps;
  for (size_t i = 0; i < r.shapes.size(); ++i) {
    const GemmShape& g = r.shapes[i];
    auto it = r.gemm_profile.find({g.trans_a, g.trans_b, g.m, g.n, g.k});
    if (it == r.gemm_profile.end() || it->second.calls == 0) continue;
    const double per_call = it->second.seconds / double(it->second.calls);
    std::printf("  %-26s %6ld %10.3f %9.1f %10.1f%%\n", g.label.c_str(), it->second.calls / steps,
                it->second.seconds * 1e3 / steps, g.flops() / per_call / 1e9,
                100.0 * r.gemm_seconds[i] / per_call);
  }
}

void print_memory(const BenchResult& r) {
  double largest = 0;
  for (const MemoryRow& m : r.memory)
    for (double v : {m.measured.params, m.analytic.params, m.measured.grads,
                     m.analytic.grads, m.measured.optimizer, m.analytic.optimizer,
                     m.measured.activations, m.analytic.activations, m.measured.buffers,
                     m.analytic.buffers, m.backend_bytes, m.other_bytes})
      largest = std::max(largest, v);
  const bool kib = largest < 64 * MiB;  // small models in KiB, so that no figure reads 0.000
  const double unit = kib ? 1024.0 : MiB;
  std::printf("\nmemory per rank, %s: measured (the sizes of the buffers the run allocated) / "
              "analytic (from the model, layout and batch shapes):\n", kib ? "KiB" : "MiB");
  std::printf("  %4s %9s %17s %17s %17s %17s %17s %12s\n", "rank", "peak RSS", "parameters",
              "gradients", "optimizer state", "activations", "buffers", "backend");
  for (size_t rank = 0; rank < r.memory.size(); ++rank) {
    const MemoryRow& m = r.memory[rank];
    std::printf("  %4zu %9.1f", rank, m.rss_mib * MiB / unit);
    const std::pair<double, double> columns[] = {
        {m.measured.params, m.analytic.params}, {m.measured.grads, m.analytic.grads},
        {m.measured.optimizer, m.analytic.optimizer},
        {m.measured.activations, m.analytic.activations},
        {m.measured.buffers, m.analytic.buffers}};
    for (const auto& [measured, analytic] : columns)
      std::printf(" %8.3f / %6.3f", measured / unit, analytic / unit);
    if (m.backend_bytes < 0) std::printf(" %12s\n", "-");
    else std::printf(" %12.3f%s\n", m.backend_bytes / unit, m.other_bytes != 0 ? " (!)" : "");
  }
  std::printf("  parameters, gradients: the flat buffers (each tensor padded to 16 floats, the total "
              "to a multiple of dp;\n    gradients: the buffer the layers write, under ZeRO-2 "
              "the bucket window, plus ZeRO-1/2's reduced\n    1/dp shard); optimizer state: "
              "AdamW's m and v (a 1/dp shard under ZeRO-1 and 2);\n    activations (recompute = %s): "
              "saved per micro-batch in flight, stage inputs, backward and recomputation scratch, "
              "the head's work;\n    "
              "buffers: token ids and targets; backend: all the profiled run's backend holds "
              "((!): more than the columns)\n", r.deck.train.recompute.c_str());
  std::printf("mem-check: %s\n", r.memory_ok
                                     ? "ok (every figure equals its analytic count)"
                                     : "MISMATCH (a measured figure differs from its analytic count)");
}

// The machine-readable line: "BENCH key=value ...".
std::string bench_line(const BenchResult& r, const std::string& deck_path) {
  std::string line = "BENCH";
  auto kv = [&](const std::string& k, const std::string& v) { line += " " + k + "=" + v; };
  auto kd = [&](const std::string& k, double v, const char* fmt = "%.4g") {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    kv(k, buf);
  };
  const Deck& d = r.deck;
  kv("deck", deck_path.substr(deck_path.find_last_of('/') + 1));
  kd("ranks", r.ranks, "%.0f");
  kd("tp", r.layout.tp, "%.0f");
  kd("pp", r.layout.pp, "%.0f");
  kd("dp", r.layout.dp, "%.0f");
  kd("threads", r.threads, "%.0f");
  kv("backend", r.backend);
  kv("data", r.synthetic ? "random" : "dataset");
  kd("micro_batch", d.parallel.micro_batch, "%.0f");
  kd("global_batch", double(d.train.global_batch), "%.0f");
  kv("recompute", d.train.recompute);
  kd("tokens_per_step", r.tokens_per_step, "%.0f");
  kd("params", double(r.params), "%.0f");
  kd("gflop_per_step", r.flops_per_step / 1e9);
  kd("warmup", double(r.options.warmup), "%.0f");
  kd("steps", double(r.options.steps), "%.0f");
  kd("ms_median", r.step_ms.median);
  kd("ms_min", r.step_ms.min);
  kd("ms_max", r.step_ms.max);
  kd("ms_p25", r.step_ms.p25);
  kd("ms_p75", r.step_ms.p75);
  kd("tokens_per_s", r.tokens_per_s, "%.1f");
  kd("gflops", r.gflops);
  kd("sgemm_gflops", r.job_ceiling);
  kd("pct_sgemm", r.pct_sgemm);
  kd("rss_mib_max", r.rss_mib_max);
  // The rank whose buffers are largest, in the units and rounding of mptrain-plan's PLAN line
  // (mem_mib and its kinds), so that the two can be compared as text.
  if (!r.memory.empty()) {
    const MemoryRow& most = *std::max_element(
        r.memory.begin(), r.memory.end(),
        [](const MemoryRow& a, const MemoryRow& b) { return a.measured.total() < b.measured.total(); });
    const MemoryCount& m = most.measured;
    kd("mem_mib", m.total() / MiB, "%.3f");
    kd("mem_bytes", m.total(), "%.0f");
    kd("mem_params_mib", m.params / MiB, "%.3f");
    kd("mem_grads_mib", m.grads / MiB, "%.3f");
    kd("mem_optimizer_mib", m.optimizer / MiB, "%.3f");
    kd("mem_activations_mib", m.activations / MiB, "%.3f");
    kd("mem_buffers_mib", m.buffers / MiB, "%.3f");
  }
  kv("comm_check", r.comm_ok ? "ok" : "mismatch");
  kv("mem_check", r.memory_ok ? "ok" : "mismatch");
  if (r.options.profile_steps <= 0) return line;
  for (int k = 0; k < n_op_kinds; ++k) {
    std::string n = op_kind_name(OpKind(k));
    std::replace_if(n.begin(), n.end(), [](char c) { return c == '+' || c == '-' || c == '/'; },
                    '_');
    kd("ms_" + n, r.kind_ms[k]);
  }
  for (int a = 0; a < n_axes; ++a) kd(std::string("ms_comm_") + axis_name(Axis(a)), r.comm_wait_ms[a]);
  kd("ms_other", r.other_ms);
  kd("ms_profiled", r.profiled_ms);
  kd("allocs_in_step", double(r.allocations), "%.0f");
  return line;
}

}  // namespace

void print_benchmark(const BenchResult& r, const std::string& deck_path) {
  print_header(r, deck_path);
  print_timing(r);
  if (r.options.profile_steps > 0) print_breakdown(r);
  print_memory(r);
  std::printf("\n%s\n", bench_line(r, deck_path).c_str());
  std::fflush(stdout);
}

}  // namespace mptrain
