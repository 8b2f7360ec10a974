// The layout planner (plan.hpp): which layouts are valid, and what each holds and costs. The
// report is in plan_report.cpp.
#include "mptrain/train/plan.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "mptrain/core/error.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/model/stage_balance.hpp"

namespace mptrain {

namespace {

constexpr double MiB = 1024.0 * 1024.0;
constexpr double f32 = sizeof(float);

std::vector<int> divisors(long n) {
  std::vector<int> out;
  for (long d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(int(d));
  return out;
}

// The link a group of ranks talks over: intra-node when every group of the axis lies on one
// node (ranks placed ranks_per_node to a node, in rank order); else a ring through the
// nodes: the slower of the two links, the node's inter-node bandwidth shared by the groups
// that cross it from that node. `member(g, i)` is the world rank of member i of group g.
template <class Member>
Link group_link(const Machine& machine, int groups, int size, int R, Member member) {
  bool crosses = false;
  int fewest_on_a_node = size;
  for (int g = 0; g < groups && size > 1; ++g) {
    const int node = member(g, 0) / R;
    int on_node = 0;
    for (int i = 0; i < size; ++i) on_node += member(g, i) / R == node;
    if (on_node < size) crosses = true;
    fewest_on_a_node = std::min(fewest_on_a_node, on_node);
  }
  if (!crosses) return machine.intra;
  const double sharing = std::max(1.0, double(R) / std::max(1, fewest_on_a_node));
  return {std::max(machine.intra.alpha_s, machine.inter.alpha_s),
          std::min(machine.intra.beta_bytes_s, machine.inter.beta_bytes_s / sharing)};
}

struct Links {
  Link tp, dp, pp, embed, world;
};

Links layout_links(const Machine& machine, const Layout& L, int R) {
  const int tp = L.tp, dp = L.dp, pp = L.pp;
  Links k;
  k.tp = group_link(machine, dp * pp, tp, R, [&](int g, int i) { return g * tp + i; });
  k.dp = group_link(machine, tp * pp, dp, R, [&](int g, int i) {
    return g % tp + tp * (i + dp * (g / tp));
  });
  k.pp = group_link(machine, tp * dp, pp, R, [&](int g, int i) { return g + tp * dp * i; });
  k.embed = group_link(machine, tp * dp, pp > 1 ? 2 : 1, R,
                       [&](int g, int i) { return g + tp * dp * (i ? pp - 1 : 0); });
  k.world = group_link(machine, 1, L.world(), R, [](int, int i) { return i; });
  // Collectives run at the machine's measured fraction of the links' alpha-beta speed.
  for (Link* collective : {&k.tp, &k.dp, &k.embed, &k.world}) {
    collective->alpha_s /= machine.collective_efficiency;
    collective->beta_bytes_s *= machine.collective_efficiency;
  }
  return k;
}

// Blocks on stage s: the split's, or n_layer / pp each when it is equal (empty).
double blocks_on_stage(const ModelConfig& m, const Layout& L, const StepOptions& o, int s) {
  return o.stage_layers.empty() ? stage_layers(m, L.pp, s).count : o.stage_layers[size_t(s)];
}

long micro_batches(const Layout& L, int micro_batch, long global_batch) {
  return global_batch / (long(L.dp) * micro_batch);
}

double gemm_seconds(const Machine& machine, const std::vector<GemmShape>& shapes) {
  double s = 0;
  for (const GemmShape& g : shapes) s += double(g.count) * machine.gemm_seconds(g);
  return s;
}

double total_flops(const std::vector<GemmShape>& shapes) {
  double f = 0;
  for (const GemmShape& g : shapes) f += double(g.count) * g.flops();
  return f;
}

// What the analytic counts do not (yet) count of recomputation, added only when they do not:
// full recomputation repeats the blocks' forward products and their forward TP all-reduces
// (two row-parallel sums of (N, C) per block). When step_gemm_shapes / step_traffic grow with
// StepOptions::recompute, the comparison with recompute = none sees it and adds nothing.
struct RecomputeExtra {
  double gemm_s = 0, tp_wire = 0, tp_messages = 0;
};
RecomputeExtra recompute_extra(const Machine& machine, const ModelConfig& m, const Layout& L,
                               int s, int mb, long G, const StepOptions& o,
                               const std::vector<GemmShape>& shapes, const StepTraffic& traffic) {
  RecomputeExtra x;
  if (o.recompute != "full") return x;
  StepOptions plain = o;
  plain.recompute = "none";
  const long micro = micro_batches(L, mb, G);
  if (total_flops(step_gemm_shapes(m, L, s, mb, G, plain)) == total_flops(shapes)) {
    for (GemmShape g : shapes) {
      if (g.label.find(".fwd") == std::string::npos) continue;
      if (g.label.find("lm_head") != std::string::npos) g.count -= micro;  // not recomputed
      x.gemm_s += double(std::max(0L, g.count)) * machine.gemm_seconds(g);
    }
  }
  const int axis = int(Axis::tp);
  if (L.tp > 1 && step_traffic(m, L, s, mb, G, plain).wire[axis] == traffic.wire[axis]) {
    const double layers = blocks_on_stage(m, L, o, s);
    const double payload = micro * layers * 2 * double(mb) * m.seq_len * m.n_embd * f32;
    x.tp_wire = 2.0 * (L.tp - 1) / L.tp * payload;
    x.tp_messages = micro * layers * 2 * 2.0 * (L.tp - 1);
  }
  return x;
}

// Seconds on stage s of everything but the matrix products and the optimizer, at speed 1:
// bytes the element-wise ops move (per token and block: ~30 C floats of replicated work --
// LayerNorms, residuals, output biases -- and ~40 C/tp of sharded work -- QKV bias, GELU and
// its backward -- forward and backward together; the embedding 3 N C) at the streaming rate,
// attention at its own rate, and the loss over the (N, V/tp) logits at the loss rate.
double other_seconds(const Machine& machine, const ModelConfig& m, const Layout& L, int s,
                     int mb, long G, const StepOptions& o) {
  const double micro = double(micro_batches(L, mb, G));
  const double N = double(mb) * m.seq_len, C = m.n_embd;
  const double layers = blocks_on_stage(m, L, o, s);
  const double fwd_again = 4.0 / 3.0;  // forward is ~1/3 of forward + backward
  double block_bytes = layers * N * (30 * C + 40 * C / L.tp) * f32;
  double attention = layers * N * 6.0 * m.seq_len * C / L.tp;
  if (o.recompute == "full") block_bytes *= fwd_again;
  if (o.recompute == "full" || o.recompute == "selective") attention *= fwd_again;
  double bytes = block_bytes;
  if (s == 0) bytes += 3 * N * C * f32;
  double logits = 0;
  if (s == L.pp - 1) {
    bytes += 6 * N * C * f32;  // the final LayerNorm
    logits = N * std::ceil(double(m.vocab_size) / L.tp);
  }
  return micro * (bytes / (machine.stream_gbs * 1e9) + attention / (machine.attention_gflops * 1e9) +
                  logits / (machine.loss_glogits * 1e9));
}

// All-reduces over TP per micro-batch on stage s: two forward and two backward per block, the
// embedding's on the first stage, the head's gradient and the loss's on the last.
double tp_allreduces(const ModelConfig& m, const Layout& L, const StepOptions& o, int s) {
  return 4.0 * blocks_on_stage(m, L, o, s) + (s == 0) + 3.0 * (s == L.pp - 1);
}

// One stage's share of the step.
struct StageTime {
  double gemm = 0, other = 0, tp = 0, dp_overlappable = 0, dp_exposed = 0, optimizer = 0;
};

StageTime stage_time(const ModelConfig& m, long G, const PlanLayout& p, int s,
                     const Machine& machine, const Links& links, double speed) {
  const Layout& L = p.layout;
  const StepOptions& o = p.options;
  const std::vector<GemmShape> shapes = step_gemm_shapes(m, L, s, p.micro_batch, G, o);
  const StepTraffic traffic = step_traffic(m, L, s, p.micro_batch, G, o);
  const RecomputeExtra extra = recompute_extra(machine, m, L, s, p.micro_batch, G, o, shapes, traffic);
  const double micro = double(micro_batches(L, p.micro_batch, G));
  StageTime t;
  t.gemm = (gemm_seconds(machine, shapes) + extra.gemm_s) / speed;
  t.other = other_seconds(machine, m, L, s, p.micro_batch, G, o) / speed;
  t.tp = links.tp.seconds(traffic.wire[int(Axis::tp)] + extra.tp_wire,
                          micro * tp_allreduces(m, L, o, s) * 2.0 * (L.tp - 1) + extra.tp_messages);
  // DP: bucketed ring all-reduces (or ZeRO's reduce-scatter, then the all-gather of the
  // updated shard after the optimizer, which nothing hides).
  const double params = double(stage_parameter_elements(m, L, s, o)) * f32;
  if (L.dp > 1) {
    const double buckets = std::max(1.0, std::ceil(params / (4.0 * MiB)));
    const double wire = traffic.wire[int(Axis::dp)];
    const double steps = 2.0 * (L.dp - 1) * buckets;  // ring steps: messages
    // ZeRO's ring all-gather of the updated 1/dp shards: (dp - 1) P / dp on the wire.
    const double gather = o.zero ? (L.dp - 1) * params / L.dp : 0.0;
    const double gather_steps = o.zero ? L.dp - 1.0 : 0.0;
    t.dp_overlappable = links.dp.seconds(wire - gather, steps - gather_steps);
    t.dp_exposed = links.dp.seconds(gather, gather_steps);
  }
  // The optimizer: gradient norm and AdamW over the parameters this rank updates (p, g, m, v
  // read, p, m, v, g written: 36 bytes per element with the norm's read).
  const double updated = o.zero ? params / L.dp : params;
  t.optimizer = updated / f32 * 36.0 / (machine.stream_gbs * 1e9) / speed;
  if (L.pp > 1) t.optimizer += links.embed.seconds(traffic.wire[int(Axis::embed)], 2);
  t.optimizer += links.world.seconds(traffic.wire[int(Axis::world)],
                                     2.0 * std::ceil(std::log2(std::max(2, L.world()))));
  return t;
}

// How a layout ranks against another with the same time: less memory, less model
// parallelism, lower ZeRO stage, less recomputation, then a fixed order.
auto sort_key(const LayoutPrediction& p) {
  const PlanLayout& l = p.plan;
  const int recompute = l.options.recompute == "none" ? 0 : l.options.recompute == "selective" ? 1 : 2;
  return std::make_tuple(p.time.total(), p.memory.total(), l.layout.tp * l.layout.pp,
                         l.options.zero, recompute, l.layout.tp, l.layout.pp, -l.micro_batch);
}

}  // namespace

std::string PlanLayout::stages_text(const ModelConfig& model) const {
  std::string s;
  for (int i = 0; i < layout.pp; ++i) {
    const int n = int(blocks_on_stage(model, layout, options, i));
    if (i > 0) s += ",";
    s += std::to_string(n);
  }
  return s;
}

std::vector<std::vector<int>> stage_splits(const ModelConfig& model, const Layout& layout,
                                           int micro_batch) {
  std::vector<std::vector<int>> splits;
  const int pp = layout.pp;
  if (model.n_layer % pp == 0) splits.push_back({});  // equal: n_layer / pp each
  if (pp == 1 || model.n_layer < pp) return splits;
  // [parallel] stage_layers = auto: what balance_stages would choose (at its default rates,
  // whose ratio is what moves a split), listed when it is not the equal split.
  const std::vector<int> balanced = balance_stages(model, layout, micro_batch);
  if (!std::all_of(balanced.begin(), balanced.end(),
                   [&](int n) { return n * pp == model.n_layer; }))
    splits.push_back(balanced);
  return splits;
}

std::vector<PlanLayout> enumerate_layouts(const ModelConfig& model, long G, int deck_mb,
                                          int ranks) {
  std::vector<PlanLayout> out;
  for (int tp : divisors(ranks)) {
    if (model.n_head % tp != 0) continue;
    for (int pp : divisors(ranks / tp)) {
      const int dp = ranks / (tp * pp);
      if (G % dp != 0) continue;
      const long rows = G / dp;  // sequences per DP rank and step
      std::vector<int> mbs;
      for (long mb = 1; mb <= rows; mb *= 2)
        if (rows % mb == 0) mbs.push_back(int(mb));
      if (rows % deck_mb == 0 && !std::count(mbs.begin(), mbs.end(), deck_mb)) mbs.push_back(deck_mb);
      std::sort(mbs.begin(), mbs.end());
      for (int mb : mbs)
        for (const std::vector<int>& split : stage_splits(model, {tp, pp, dp}, mb))
          for (int zero = 0; zero <= (dp > 1 ? 2 : 0); ++zero)
            for (const char* recompute : {"none", "selective", "full"})
              out.push_back({{tp, pp, dp}, mb, {zero, recompute, split}});
    }
  }
  if (out.empty())
    throw InputError("no valid layout for " + std::to_string(ranks) + " ranks: tp must divide "
                     "[model] n_head = " + std::to_string(model.n_head) + ", pp at most [model] n_layer = " +
                     std::to_string(model.n_layer) + ", dp = ranks / (tp pp) [train] global_batch = " +
                     std::to_string(G) + "; try another --ranks");
  return out;
}

LayoutPrediction predict_layout(const ModelConfig& m, long G, const PlanLayout& p,
                                const Machine& machine, int R, double mem_limit_mib) {
  LayoutPrediction out;
  out.plan = p;
  const Layout& L = p.layout;
  for (int s = 0; s < L.pp; ++s) {
    const MemoryCount mem = analytic_memory(m, L, s, p.micro_batch, G, p.options);
    if (s == 0 || mem.total() > out.memory.total()) out.memory = mem, out.memory_stage = s;
  }
  out.rss_mib = out.memory.total() / MiB + machine.overhead_mib;
  out.fits = mem_limit_mib <= 0 || out.rss_mib <= mem_limit_mib;
  const Links links = layout_links(machine, L, R);
  const double micro = double(micro_batches(L, p.micro_batch, G));
  // A rank's cores: its threads (cores / ranks on the node, at least 1), or its share of the
  // node's cores when the node is oversubscribed. (Ranks idle in a pipeline bubble on an
  // oversubscribed node give some of theirs to the busy ones: not modelled, doc/PLANNING.md.)
  const double on_node = std::min(R, L.world());
  const double threads = std::max(1.0, std::floor(machine.cores_per_node / on_node));
  const double speed = machine.speed(std::min(threads, machine.cores_per_node / on_node));
  // 1F1B: m micro-batches through the slowest stage, and the pipeline's fill and drain
  // through each other stage once: (m - 1) c_max + sum_s c_s, with c_s a micro-batch's time
  // on stage s ((m + pp - 1) c for equal stages; the bubble is sum_s c_s - c_max).
  StageTime slowest;
  double slowest_per_micro = -1, sum_per_micro = 0, dp_exposed = 0, optimizer = 0;
  for (int s = 0; s < L.pp; ++s) {
    const StageTime t = stage_time(m, G, p, s, machine, links, speed);
    const double per_micro = (t.gemm + t.other + t.tp) / micro;
    if (per_micro > slowest_per_micro) slowest = t, slowest_per_micro = per_micro;
    sum_per_micro += per_micro;
    // The DP reduction overlaps the last micro-batch's backward (~2/3 of its time) to the
    // machine's dp_overlap fraction.
    const double hidden = machine.dp_overlap * per_micro * 2.0 / 3.0;
    const double exposed = std::max(t.dp_overlappable - hidden, 0.0) + t.dp_exposed;
    dp_exposed = std::max(dp_exposed, exposed);
    optimizer = std::max(optimizer, t.optimizer);
  }
  out.time.gemm = slowest.gemm;
  out.time.other = slowest.other;
  out.time.tp = slowest.tp;
  out.time.bubble = sum_per_micro - slowest_per_micro;
  if (L.pp > 1) {
    const double activation_bytes = double(p.micro_batch) * m.seq_len * m.n_embd * f32;
    out.time.pp = (micro + L.pp - 1) * 2 * links.pp.seconds(activation_bytes, 1);
  }
  out.time.dp = dp_exposed;
  out.time.optimizer = optimizer;
  out.tokens_per_s = double(G) * m.seq_len / out.time.total();
  return out;
}

Plan make_plan(const PlanRequest& request, const Machine& machine) {
  const ModelConfig& m = request.deck.model;
  if (request.ranks < 1) throw InputError("--ranks must be a whole number >= 1");
  if (m.vocab_size <= 0)
    throw InputError("[model] vocab_size = 0 (from the dataset): the planner reads no data; "
                     "give the vocabulary with --model.vocab_size=V");
  Plan plan;
  plan.request = request;
  plan.machine = machine;
  plan.ranks_per_node = request.ranks_per_node > 0 ? request.ranks_per_node : request.ranks;
  plan.mem_limit_mib = (request.mem_per_rank_gib > 0
                            ? request.mem_per_rank_gib
                            : machine.memory_per_rank_gib(std::min(plan.ranks_per_node, request.ranks))) * 1024;
  const long G = request.deck.train.global_batch;
  const ParallelConfig& deck_layout = request.deck.parallel;
  for (const PlanLayout& l : enumerate_layouts(m, G, deck_layout.micro_batch, request.ranks)) {
    LayoutPrediction p = predict_layout(m, G, l, machine, plan.ranks_per_node, plan.mem_limit_mib);
    p.deck_layout = l.layout.tp == deck_layout.tp && l.layout.pp == deck_layout.pp &&
                    (deck_layout.dp == 0 || l.layout.dp == deck_layout.dp) &&
                    l.micro_batch == deck_layout.micro_batch &&
                    l.options.zero == request.deck.optim.zero && l.options.recompute == "none" &&
                    l.options.stage_layers.empty();
    plan.layouts.push_back(p);
  }
  std::stable_sort(plan.layouts.begin(), plan.layouts.end(),
                   [](const LayoutPrediction& a, const LayoutPrediction& b) {
                     return sort_key(a) < sort_key(b);
                   });
  for (size_t i = 0; i < plan.layouts.size() && plan.recommended < 0; ++i)
    if (plan.layouts[i].fits) plan.recommended = int(i);
  return plan;
}

}  // namespace mptrain
