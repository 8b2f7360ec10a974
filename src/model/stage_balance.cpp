// The pipeline stages' cost model and the balanced split (stage_balance.hpp).
#include "mptrain/model/stage_balance.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "mptrain/core/error.hpp"
#include "mptrain/model/catalogue.hpp"

namespace mptrain {

namespace {

// Floats the element-wise ops of one micro-batch read plus write, per rank (layers.cpp, in the
// order they run; N = B*T tokens, A = B*NHl*T*T attention scores):
//
//   block forward   ln1: x -> ln1                                      2 NC
//                   qkv bias, in place                                 6 NCl
//                   causal softmax of the scores, in place             2 A
//                   res2 += bias + x; ln2 = LayerNorm(res2)            4 NC
//                   fch += bias; fch_gelu = gelu(fch)                  3 NHl
//                   out += bias + res2                                 3 NC
//   block backward  bias gradients of the projections (C) and qkv     2 NC + 3 NCl
//                   GELU backward: dfch, fch -> dfch                   3 NHl
//                   softmax backward: att, datt -> dS                  3 A
//                   ln2 and ln1 backward: dln, x, dres -> dres         8 NC
//   head            ln_f forward 2 NC, backward 4 NC; moving dlnf 3 NC 9 NC
//                   row maxima, sums of exponentials (reads), the
//                   gradient softmax - onehot (read, write)            4 NVl
//   embedding       rows of wte -> x, x += wpe (forward)               5 NC
//                   dx -> rows of dwte, dx -> dwpe (backward)          6 NC
struct Traffic {
  double block, head, embedding;
};
Traffic elementwise_floats(const LayerShape& s) {
  const double N = s.N(), C = s.C, Cl = s.Cl(), Hl = s.Hl(), Vl = s.Vl();
  const double A = double(s.B) * s.NHl() * s.T * s.T;
  return {19 * N * C + 9 * N * Cl + 6 * N * Hl + 5 * A, 9 * N * C + 4 * N * Vl, 11 * N * C};
}

}  // namespace

StagePartCosts stage_part_costs(const ModelConfig& m, const Layout& L, int micro_batch,
                                const StageCostRates& rates) {
  MPT_CHECK(rates.gemm_flops_per_s > 0 && rates.memory_bytes_per_s > 0,
            "stage_part_costs: rates must be positive");
  const LayerShape s = layer_shape(m, micro_batch, L.tp, 0);
  StagePartCosts c;
  // Each linear layer's three products with this rank's (out, in) shard -- y = x W^T,
  // dW += dy^T x, dx = dy W -- are 2 N out in FLOPs each (step_gemm_shapes). One block stands
  // for all; the LM head is the tied embedding's product.
  for (const TensorDesc& t : gpt2_tensors(m)) {
    if (!t.product || (t.part == Part::block && t.layer != 0)) continue;
    const ShardSpec local = shard_of(t, L.tp, 0);
    const double flops = 3 * 2.0 * s.N() * double(local.local_rows) * double(local.local_cols);
    (t.part == Part::block ? c.block_gemm_flops : c.head_gemm_flops) += flops;
  }
  // Attention's q k^T and att v over the visible half of the scores: N T Cl FLOPs each
  // forward, twice that backward (step_flops' 6 n_layer n_embd seq_len per token).
  c.block_gemm_flops += 6.0 * s.N() * s.T * s.Cl();
  const Traffic floats = elementwise_floats(s);
  const double byte_time = sizeof(float) / rates.memory_bytes_per_s;
  c.block = c.block_gemm_flops / rates.gemm_flops_per_s + floats.block * byte_time;
  c.head = c.head_gemm_flops / rates.gemm_flops_per_s + floats.head * byte_time;
  c.embedding = floats.embedding * byte_time;
  return c;
}

std::vector<double> stage_costs(const ModelConfig& m, const Layout& L, int micro_batch,
                                const std::vector<int>& split, const StageCostRates& rates) {
  const StagePartCosts c = stage_part_costs(m, L, micro_batch, rates);
  const std::vector<int> counts = stage_block_counts(m, L.pp, split);
  std::vector<double> costs(counts.size());
  for (size_t st = 0; st < counts.size(); ++st)
    costs[st] = counts[st] * c.block + (st == 0 ? c.embedding : 0.0) +
                (st + 1 == counts.size() ? c.head : 0.0);
  return costs;
}

std::vector<int> balance_stages(const ModelConfig& m, const Layout& L, int micro_batch,
                                const StageCostRates& rates) {
  const int pp = L.pp, n = m.n_layer;
  MPT_CHECK(pp >= 1 && n >= pp, "balance_stages: " + std::to_string(n) + " blocks cannot fill " +
                                    std::to_string(pp) + " stages");
  const StagePartCosts c = stage_part_costs(m, L, micro_batch, rates);
  auto fixed = [&](int st) {
    return (st == 0 ? c.embedding : 0.0) + (st == pp - 1 ? c.head : 0.0);
  };
  auto cost = [&](int st, int blocks) { return blocks * c.block + fixed(st); };
  // The most blocks each stage can take with no stage above `bound` (with a relative slack of
  // 1e-12, so that a bound equal to a stage's cost admits it despite rounding); feasible when
  // each takes at least one and together all n.
  std::vector<int> caps(static_cast<size_t>(pp));
  auto fits = [&](double bound) {
    long total = 0;
    for (int st = 0; st < pp; ++st) {
      const double room = std::floor((bound - fixed(st)) / c.block * (1 + 1e-12));
      caps[size_t(st)] = int(std::clamp(room, 0.0, double(n)));
      if (caps[size_t(st)] < 1) return false;
      total += caps[size_t(st)];
    }
    return total >= n;
  };
  // The least maximum is the cost of some stage holding some number of blocks.
  std::vector<double> bounds;
  for (int st = 0; st < pp; ++st)
    for (int k = 1; k <= n; ++k) bounds.push_back(cost(st, k));
  std::sort(bounds.begin(), bounds.end());
  const auto least = std::partition_point(bounds.begin(), bounds.end(),
                                          [&](double b) { return !fits(b); });
  MPT_CHECK(least != bounds.end() && fits(*least), "balance_stages: no feasible split");
  // Within that bound, take blocks back one at a time from the costliest stage (the earliest
  // of equals) until n are placed: with blocks of equal cost this leaves the most even costs.
  long placed = 0;
  for (int k : caps) placed += k;
  for (; placed > n; --placed) {
    int worst = -1;
    for (int st = 0; st < pp; ++st)
      if (caps[size_t(st)] > 1 &&
          (worst < 0 || cost(st, caps[size_t(st)]) > cost(worst, caps[size_t(worst)])))
        worst = st;
    --caps[size_t(worst)];
  }
  return caps;
}

}  // namespace mptrain
