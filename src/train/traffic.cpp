// The analytic communication of a training step (traffic.hpp) and the run summary's
// comparison of it with what every rank measured.
#include "mptrain/train/traffic.hpp"

#include <cstdio>
#include <span>

#include "mptrain/core/log.hpp"
#include "mptrain/train/run.hpp"

namespace mptrain {

namespace {

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Bytes a rank sends on the wire for a ring collective over p ranks.
double ring_allreduce(double payload, int p) { return p > 1 ? 2.0 * (p - 1) / p * payload : 0; }
double ring_reduce_scatter(double input, int p) { return p > 1 ? double(p - 1) / p * input : 0; }
double ring_allgather(double input, int p) { return p > 1 ? double(p - 1) * input : 0; }

}  // namespace

int64_t stage_parameter_elements(const ModelConfig& m, const Layout& L, int pp_rank) {
  auto tensor = [](int64_t n) { return round_up(n, 16); };  // ParamSet aligns each tensor
  const int64_t C = m.n_embd, T = m.seq_len, Vl = (m.vocab_size + L.tp - 1) / L.tp;
  const int64_t Cl = C / L.tp, Hl = 4 * C / L.tp;
  const bool first = pp_rank == 0, last = pp_rank == L.pp - 1;
  int64_t n = 0;
  if (first) n += tensor(Vl * C) + tensor(T * C);  // wte shard, wpe
  else if (last) n += tensor(Vl * C);              // the head's copy of the tied wte
  const int64_t block = 4 * tensor(C)                        // ln_1, ln_2: weight and bias
                        + tensor(3 * Cl * C) + tensor(3 * Cl)  // c_attn: q|k|v rows of my heads
                        + tensor(C * Cl) + tensor(C)           // attn.c_proj: my columns, bias
                        + tensor(Hl * C) + tensor(Hl)          // c_fc: my rows
                        + tensor(C * Hl) + tensor(C);          // mlp.c_proj: my columns, bias
  n += int64_t(m.n_layer / L.pp) * block;
  if (last) n += 2 * tensor(C);  // ln_f
  return round_up(n, L.dp);
}

StepTraffic step_traffic(const ModelConfig& m, const Layout& L, int pp_rank, int micro_batch,
                         long global_batch, int zero) {
  StepTraffic t;
  const double f = sizeof(float);
  const double N = double(micro_batch) * m.seq_len, C = m.n_embd;  // tokens per micro-batch
  const double micro = double(global_batch / (long(L.dp) * micro_batch));
  const bool first = pp_rank == 0, last = pp_rank == L.pp - 1;
  auto set = [&](Axis a, double payload, double wire) {
    t.payload[int(a)] = uint64_t(payload);
    t.wire[int(a)] = wire;
  };
  if (L.tp > 1) {
    // Per micro-batch: each block all-reduces (N,C) twice forward (the two row-parallel
    // projections) and twice backward (the inputs of the two column-parallel products); the
    // embedding sums its vocabulary shards; the head all-reduces the row maxima (N), the sum
    // of exponentials with the target logit (2N) and the gradient of its input (N,C).
    double elements = 4.0 * (m.n_layer / L.pp) * N * C;
    if (first) elements += N * C;
    if (last) elements += N + 2 * N + N * C;
    const double payload = elements * micro * f;
    set(Axis::tp, payload, ring_allreduce(payload, L.tp));
  }
  const double params = double(stage_parameter_elements(m, L, pp_rank)) * f;
  if (L.dp > 1) {
    if (zero) {  // reduce-scatter of the gradients, all-gather of this rank's updated shard
      set(Axis::dp, params + params / L.dp,
          ring_reduce_scatter(params, L.dp) + ring_allgather(params / L.dp, L.dp));
    } else {     // all-reduce of every gradient (in buckets)
      set(Axis::dp, params, ring_allreduce(params, L.dp));
    }
  }
  if (L.pp > 1) {
    // (N,C) activations to the next stage, their gradients to the previous one.
    const double payload = ((last ? 0 : 1) + (first ? 0 : 1)) * N * C * micro * f;
    set(Axis::pp, payload, payload);
    if (first || last) {  // the tied embedding's gradient, summed by the first and last stage
      const double wte = double((m.vocab_size + L.tp - 1) / L.tp) * C * f;
      set(Axis::embed, wte, ring_allreduce(wte, 2));
    }
  }
  // The loss and the squared gradient norm (doubles), the preemption flag and the batch-read
  // check (ints).
  const double world = 2 * sizeof(double) + 2 * sizeof(int);
  set(Axis::world, world, ring_allreduce(world, L.world()));
  return t;
}

StepTraffic analytic_traffic(const Run& run) {
  return step_traffic(run.deck.model, run.grid.layout(), run.grid.pp_rank(),
                      run.deck.parallel.micro_batch, run.deck.train.global_batch,
                      run.deck.optim.zero);
}

void report_communication(const Run& run, const CommCounters& measured, long steps_run) {
  const StepTraffic analytic = analytic_traffic(run);
  // Every rank compares its own traffic with its own analytic count; rank 0 reports.
  int mismatch = 0;
  for (int a = 0; a < n_axes; ++a)
    if (steps_run > 0 && measured.bytes_sent[a] != analytic.payload[a] * uint64_t(steps_run))
      mismatch = 1;
  run.grid.world().allreduce_max(std::span<int>(&mismatch, 1));  // collective over the world
  if (!run.is_root()) return;
  std::printf("communication per step, rank 0 (payload: bytes handed to MPI, measured and "
              "analytic; wire: what ring algorithms send from this rank):\n");
  for (int a = 0; a < n_axes; ++a) {
    const double per_step = steps_run ? double(measured.bytes_sent[a]) / steps_run : 0.0;
    const double wait = steps_run ? measured.wait_seconds[a] / steps_run : 0.0;
    std::printf("  %-6s payload measured %12.0f B  analytic %12llu B  wire %14.1f B  waiting "
                "%8.3f ms\n", axis_name(Axis(a)), per_step,
                (unsigned long long)analytic.payload[a], analytic.wire[a], wait * 1e3);
  }
  std::printf("comm-check: %s\n", mismatch ? "MISMATCH (some rank sent other than the analytic "
                                             "count)" : "ok (every rank sent exactly the analytic count)");
}

}  // namespace mptrain
