// Unit tests of the training loop's arithmetic, part 1: the learning-rate schedule against its
// closed form, the DP buckets and ZeRO shards of the flat gradient buffer, the 1F1B order (and
// a simulation of all stages running it with the schedule's MPI semantics), the model
// catalogue against doc/DESIGN.md §4's checkpoint schema and its shards against their tensors, and the
// analytic counts against a derivation by hand. Part 2 (test_units_io.cpp): the shuffle
// sampler and the metrics CSV on resume. Everything here is a pure function that the
// production code calls; a failure names the property, not "losses differ".
#define BOOST_TEST_MODULE units
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <string>
#include <vector>

#include "mpi_fixture.hpp"
#include "mptrain/backend/backend.hpp"
#include "mptrain/model/model.hpp"
#include "mptrain/model/optimizer.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/model/pipeline.hpp"
#include "mptrain/model/gradient_window.hpp"

using namespace mptrain;

// ---------------------------------------------------------------- learning-rate schedule

namespace {
OptimConfig schedule(const std::string& kind, double lr, double min_lr, long warmup) {
  OptimConfig c;
  c.schedule = kind;
  c.lr = lr;
  c.min_lr = min_lr;
  c.warmup_steps = warmup;
  return c;
}
bool close(double a, double b) { return std::abs(a - b) <= 1e-15 * std::max(1.0, std::abs(b)); }
}  // namespace

BOOST_AUTO_TEST_CASE(warmup_is_linear_from_lr_over_warmup_to_lr) {
  // Step s (0-based) of 4 warm-up steps: lr (s + 1) / 4.
  for (const char* kind : {"cosine", "linear", "constant"}) {
    const OptimConfig c = schedule(kind, 0.01, 0.001, 4);
    BOOST_TEST(close(learning_rate(c, 0, 14), 0.0025), kind);
    BOOST_TEST(close(learning_rate(c, 1, 14), 0.005), kind);
    BOOST_TEST(close(learning_rate(c, 2, 14), 0.0075), kind);
    BOOST_TEST(close(learning_rate(c, 3, 14), 0.01), kind);
  }
}

BOOST_AUTO_TEST_CASE(decay_follows_the_closed_form) {
  // 14 steps, 4 of warm-up: the decay runs over steps 4..14 (progress (s - 4) / 10).
  const OptimConfig cos = schedule("cosine", 0.01, 0.001, 4);
  BOOST_TEST(close(learning_rate(cos, 4, 14), 0.01));                   // progress 0
  BOOST_TEST(close(learning_rate(cos, 9, 14), 0.0055));                 // 1/2: the midpoint
  BOOST_TEST(close(learning_rate(cos, 6, 14),                           // 1/5
                   0.001 + 0.5 * 0.009 * (1 + std::cos(std::numbers::pi / 5))));
  BOOST_TEST(close(learning_rate(cos, 14, 14), 0.001));                 // the end: min_lr
  BOOST_TEST(close(learning_rate(cos, 20, 14), 0.001));                 // beyond: stays there
  const OptimConfig lin = schedule("linear", 0.01, 0.001, 4);
  BOOST_TEST(close(learning_rate(lin, 4, 14), 0.01));
  BOOST_TEST(close(learning_rate(lin, 6, 14), 0.01 - 0.009 * 0.2));
  BOOST_TEST(close(learning_rate(lin, 14, 14), 0.001));
  const OptimConfig con = schedule("constant", 0.01, 0.001, 4);
  for (long s : {4L, 9L, 14L, 20L}) BOOST_TEST(close(learning_rate(con, s, 14), 0.01));
  // No warm-up: step 0 is the peak; more warm-up than steps: no division by zero.
  BOOST_TEST(close(learning_rate(schedule("cosine", 0.01, 0.0, 0), 0, 10), 0.01));
  BOOST_TEST(close(learning_rate(schedule("cosine", 0.01, 0.0, 0), 5, 10), 0.005));
  BOOST_TEST(std::isfinite(learning_rate(schedule("cosine", 0.01, 0.0, 8), 9, 5)));
}

// ---------------------------------------------------------------- DP buckets and ZeRO shards

namespace {
// Tensors of these sizes, placed as ParamSet places them (16-float aligned), and the padded end.
std::vector<size_t> offsets_of(const std::vector<size_t>& sizes, size_t& padded, size_t dp) {
  std::vector<size_t> offsets;
  size_t used = 0;
  for (size_t n : sizes) {
    offsets.push_back(used);
    used += (n + 15) / 16 * 16;
  }
  padded = (used + dp - 1) / dp * dp;
  return offsets;
}

void expect_valid_buckets(const std::vector<FlatRange>& buckets, const std::vector<size_t>& offsets,
                          size_t padded, size_t bucket_elems) {
  BOOST_TEST_REQUIRE(!buckets.empty());
  BOOST_TEST(buckets.front().hi == padded);  // the top first (backward's order)
  BOOST_TEST(buckets.back().lo == 0u);
  for (size_t b = 0; b < buckets.size(); ++b) {
    const FlatRange& r = buckets[b];
    BOOST_TEST(r.lo < r.hi);
    if (b + 1 < buckets.size()) BOOST_TEST(buckets[b + 1].hi == r.lo);  // contiguous, descending
    // Whole tensors: every boundary is a tensor's start.
    BOOST_TEST((r.lo == 0 || std::count(offsets.begin(), offsets.end(), r.lo) == 1));
    if (b + 1 == buckets.size()) continue;  // the lowest bucket takes what is left
    BOOST_TEST(r.size() >= bucket_elems);
    // It closed as soon as it was large enough: without its lowest tensor it was not.
    const auto next = std::upper_bound(offsets.begin(), offsets.end(), r.lo);
    if (next != offsets.end() && *next < r.hi) BOOST_TEST(r.hi - *next < bucket_elems);
  }
}
}  // namespace

BOOST_AUTO_TEST_CASE(dp_buckets_cover_the_buffer_in_whole_tensors_top_down) {
  const std::vector<size_t> sizes = {2048, 128, 16, 16, 1536, 48, 512, 16, 2048, 64, 16, 16, 2};
  for (size_t dp : {1u, 3u, 8u}) {
    size_t padded = 0;
    const std::vector<size_t> offsets = offsets_of(sizes, padded, dp);
    for (size_t elems : {size_t(1), size_t(100), size_t(600), size_t(2100), size_t(1) << 30})
      expect_valid_buckets(dp_buckets(offsets, padded, elems), offsets, padded, elems);
    BOOST_TEST(dp_buckets(offsets, padded, 1).size() == sizes.size());  // one per tensor
    BOOST_TEST(dp_buckets(offsets, padded, size_t(1) << 30).size() == 1u);
    BOOST_TEST((dp_buckets(offsets, padded, size_t(1) << 30)[0] == FlatRange{0, padded}));
  }
}

BOOST_AUTO_TEST_CASE(zero_shards_partition_the_padded_buffer) {
  for (int dp = 1; dp <= 8; ++dp) {
    size_t padded = 0;
    offsets_of({67 * 16, 128, 16, 16, 1000}, padded, size_t(dp));
    BOOST_TEST(padded % size_t(dp) == 0u);
    size_t next = 0;
    for (int r = 0; r < dp; ++r) {
      const FlatRange s = zero_shard(padded, dp, r);
      BOOST_TEST(s.lo == next);  // in rank order, no gap, no overlap
      BOOST_TEST(s.size() == padded / size_t(dp));
      next = s.hi;
    }
    BOOST_TEST(next == padded);
  }
}

// ---------------------------------------------------------------- 1F1B

namespace {
using Order = std::vector<PipelineOp>;

// Runs every stage's order with the schedule's MPI semantics, taking receives and waits to
// need the peer (rendezvous), and returns whether all stages finish:
//  - F(i) on a stage after the first receives stage s-1's output of F(i);
//  - B(i) on a stage before the last receives stage s+1's input gradient of B(i);
//  - F(i) first waits for the send of F(i - slots), which shared its output slot, to have been
//    received (stage s+1 did F(i - slots)); B(i) waits for the send of B(i - 1) (stage s-1).
bool pipeline_completes(int stages, int m) {
  const int slots = std::min(m, stages);
  std::vector<Order> order;
  for (int s = 0; s < stages; ++s) order.push_back(one_f_one_b_order(stages, s, m));
  std::vector<std::vector<bool>> fwd(stages, std::vector<bool>(m)), bwd = fwd;
  std::vector<size_t> next(stages, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < stages; ++s) {
      if (next[s] == order[s].size()) continue;
      const PipelineOp op = order[s][next[s]];
      const int i = op.micro;
      bool ready;
      if (op.kind == PipelineOp::forward)
        ready = (s == 0 || fwd[s - 1][i]) && (s == stages - 1 || i < slots || fwd[s + 1][i - slots]);
      else
        ready = (s == stages - 1 ? fwd[s][i] : bwd[s + 1][i]) && (s == 0 || i == 0 || bwd[s - 1][i - 1]);
      if (!ready) continue;
      (op.kind == PipelineOp::forward ? fwd : bwd)[s][i] = true;
      ++next[s];
      progress = true;
    }
  }
  for (int s = 0; s < stages; ++s)
    if (next[s] != order[s].size()) return false;
  return true;
}
}  // namespace

BOOST_AUTO_TEST_CASE(one_f_one_b_order_properties) {
  for (int stages = 1; stages <= 5; ++stages)
    for (int m = 1; m <= 9; ++m)
      for (int stage = 0; stage < stages; ++stage) {
        const Order order = one_f_one_b_order(stages, stage, m);
        BOOST_TEST_CONTEXT("stages " << stages << " stage " << stage << " micro-batches " << m) {
          BOOST_TEST(order.size() == size_t(2 * m));
          std::vector<int> forwards, backwards;
          int in_flight = 0, most = 0;
          bool slot_reused_in_flight = false;
          for (const PipelineOp& op : order) {
            if (op.kind == PipelineOp::forward) {
              // The activations of micro % slots must be free again.
              if (in_flight >= std::min(m, stages)) slot_reused_in_flight = true;
              forwards.push_back(op.micro);
              most = std::max(most, ++in_flight);
            } else {
              // Every backward after its own forward.
              BOOST_TEST(std::count(forwards.begin(), forwards.end(), op.micro) == 1);
              backwards.push_back(op.micro);
              --in_flight;
            }
          }
          // Each micro-batch once each way, both in micro-batch order: neighbouring stages send
          // and receive activations (and gradients) in the same order.
          std::vector<int> all(static_cast<size_t>(m));
          for (int i = 0; i < m; ++i) all[size_t(i)] = i;
          BOOST_TEST(forwards == all, boost::test_tools::per_element());
          BOOST_TEST(backwards == all, boost::test_tools::per_element());
          BOOST_TEST(most <= stages - stage);  // 1F1B: at most pp - stage in flight
          BOOST_TEST(most == std::min(m, stages - stage));  // and it does fill the pipeline
          BOOST_TEST(!slot_reused_in_flight);
          if (stage == stages - 1)  // the last stage alternates strictly
            for (size_t k = 0; k < order.size(); ++k)
              BOOST_TEST((order[k].kind == PipelineOp::forward) == (k % 2 == 0));
        }
      }
}

BOOST_AUTO_TEST_CASE(all_stages_together_never_deadlock) {
  for (int stages = 1; stages <= 6; ++stages)
    for (int m = 1; m <= 12; ++m)
      BOOST_TEST(pipeline_completes(stages, m), "stages " << stages << " micro-batches " << m);
}

// ---------------------------------------------------------------- the model catalogue

BOOST_AUTO_TEST_CASE(catalogue_is_the_checkpoint_schema_of_design_4) {
  // doc/DESIGN.md §4, written out for n_layer 2, C 8, T 16, V 50: the names, [out, in] shapes and
  // order the checkpoint holds.
  ModelConfig m;
  m.n_layer = 2, m.n_head = 2, m.n_embd = 8, m.seq_len = 16, m.vocab_size = 50;
  std::vector<std::pair<std::string, std::vector<int64_t>>> want = {{"wte", {50, 8}},
                                                                    {"wpe", {16, 8}}};
  for (int i = 0; i < 2; ++i) {
    const std::string h = "h." + std::to_string(i) + ".";
    for (const char* ln : {"ln_1", "attn", "ln_2", "mlp"}) {
      const std::string p = h + ln;
      if (p == h + "attn")
        want.insert(want.end(), {{p + ".c_attn.weight", {24, 8}}, {p + ".c_attn.bias", {24}},
                                 {p + ".c_proj.weight", {8, 8}}, {p + ".c_proj.bias", {8}}});
      else if (p == h + "mlp")
        want.insert(want.end(), {{p + ".c_fc.weight", {32, 8}}, {p + ".c_fc.bias", {32}},
                                 {p + ".c_proj.weight", {8, 32}}, {p + ".c_proj.bias", {8}}});
      else
        want.insert(want.end(), {{p + ".weight", {8}}, {p + ".bias", {8}}});
    }
  }
  want.insert(want.end(), {{"ln_f.weight", {8}}, {"ln_f.bias", {8}}});
  BOOST_TEST((gpt2_tensor_shapes(2, 8, 16, 50) == want));
  // Weight decay on the four matrices of each block only (GPT-2's recipe); the LM head is the
  // token embedding.
  for (const TensorDesc& t : gpt2_tensors(m)) {
    BOOST_TEST(t.decay == (t.part == Part::block && t.shape.size() == 2), t.name);
    BOOST_TEST(t.tied == (t.name == "wte"), t.name);
  }
}

BOOST_AUTO_TEST_CASE(shards_cover_every_tensor_once_or_every_rank_whole) {
  // V = 13 is not a multiple of tp: the last vocabulary shards are partly padding.
  ModelConfig m;
  m.n_layer = 1, m.n_head = 4, m.n_embd = 16, m.seq_len = 5, m.vocab_size = 13;
  for (int tp : {1, 2, 4})
    for (const TensorDesc& t : gpt2_tensors(m)) {
      std::vector<int> covered(size_t(t.elements()), 0);
      for (int r = 0; r < tp; ++r) {
        const ShardSpec s = shard_of(t, tp, r);
        BOOST_TEST(s.local_size() == local_elements(t, tp), t.name);
        for (const ShardBlock& b : s.blocks) {
          BOOST_TEST((b.local_row + b.rows <= s.local_rows && b.local_col + b.cols <= s.local_cols),
                     t.name << " rank " << r);
          for (int64_t i = 0; i < b.rows; ++i)
            for (int64_t j = 0; j < b.cols; ++j)
              ++covered[size_t((b.global_row + i) * t.cols() + b.global_col + j)];
        }
      }
      // Split tensors: every element on exactly one rank; replicated ones: on every rank.
      const int copies = t.split == Split::replicated ? tp : 1;
      BOOST_TEST(std::count(covered.begin(), covered.end(), copies) == t.elements(),
                 t.name << " over tp " << tp);
    }
}

BOOST_AUTO_TEST_CASE(stages_hold_each_tensor_once_and_the_tied_one_at_both_ends) {
  ModelConfig m;
  m.n_layer = 4, m.n_head = 2, m.n_embd = 8, m.seq_len = 4, m.vocab_size = 11;
  for (int pp : {1, 2, 4}) {
    std::map<std::string, int> held;
    for (int r = 0; r < pp; ++r)
      for (const TensorDesc& t : stage_tensors(m, pp, r)) {
        ++held[t.name];
        BOOST_TEST(held_as_copy(t, r) == (t.name == "wte" && r > 0));
      }
    BOOST_TEST(held.size() == gpt2_tensors(m).size());
    for (const auto& [name, count] : held)
      BOOST_TEST(count == (name == "wte" && pp > 1 ? 2 : 1), name << " with pp " << pp);
  }
}

BOOST_AUTO_TEST_CASE(gpt2_small_has_its_published_parameter_count) {
  // GPT-2 124M (Hugging Face "gpt2"): 124,439,808 parameters, the LM head tied to wte.
  ModelConfig m;
  m.n_layer = 12, m.n_head = 12, m.n_embd = 768, m.seq_len = 1024, m.vocab_size = 50257;
  BOOST_TEST(model_parameters(m) == 124439808);
}

BOOST_AUTO_TEST_CASE(gemm_shapes_make_six_flops_per_weight_and_token) {
  // Forward and the two backward products of every linear layer: 2 + 4 flops per weight
  // element and token. On one rank: the four block matrices (12 C^2 per layer) and the LM head
  // (V C), over global_batch * seq_len tokens.
  ModelConfig m;
  m.n_layer = 3, m.n_head = 2, m.n_embd = 8, m.seq_len = 6, m.vocab_size = 11;
  const long G = 4;
  double flops = 0;
  for (const GemmShape& g : step_gemm_shapes(m, Layout{1, 1, 1}, 0, 2, G))
    flops += g.flops() * double(g.count);
  const double C = m.n_embd, weights = m.n_layer * 12 * C * C + m.vocab_size * C;
  BOOST_TEST(flops == 6.0 * weights * double(G * m.seq_len));
}

// ---------------------------------------------------------------- analytic communication

// Step options with ZeRO stage z and every other option at its default.
StepOptions with_zero(int z) {
  StepOptions options;
  options.zero = z;
  return options;
}

BOOST_AUTO_TEST_CASE(traffic_of_the_golden_model_on_tp2_pp2_dp2_by_hand) {
  // n_layer 2, n_embd 16, seq_len 8, vocab 67; tp 2, pp 2, dp 2; micro_batch 1, global batch 4.
  // Per rank: Vl = 34 vocabulary rows, C/tp = 8, 4C/tp = 32; one block per stage; 4 / (2 * 1)
  // = 2 micro-batches of N = 8 tokens.
  ModelConfig m;
  m.n_layer = 2, m.n_head = 4, m.n_embd = 16, m.seq_len = 8, m.vocab_size = 67;
  const Layout L{2, 2, 2};
  // Block, tensors rounded up to 16: ln 4*16, c_attn 24*16 + 32 (24 -> 32), attn.c_proj 16*8
  // + 16, c_fc 32*16 + 32, mlp.c_proj 16*32 + 16 = 1696. Stage 0: wte 34*16 = 544, wpe 8*16
  // = 128, the block: 2368. Stage 1: wte's copy 544, the block, ln_f 32: 2272.
  BOOST_TEST(stage_parameter_elements(m, L, 0) == 2368);
  BOOST_TEST(stage_parameter_elements(m, L, 1) == 2272);
  const StepTraffic s0 = step_traffic(m, L, 0, 1, 4, with_zero(0));
  const StepTraffic s1 = step_traffic(m, L, 1, 1, 4, with_zero(0));
  auto payload = [](const StepTraffic& t, Axis a) { return t.payload[int(a)]; };
  auto wire = [](const StepTraffic& t, Axis a) { return t.wire[int(a)]; };
  // TP, per micro-batch: 4 (N,C) all-reduces per block = 512 floats; stage 0 adds the
  // embedding's 128, stage 1 the head's 8 + 16 + 128. Two micro-batches, 4 bytes each; a ring
  // of 2 sends 2 (2-1)/2 = 1 times the payload.
  BOOST_TEST(payload(s0, Axis::tp) == 2u * 4 * 640);
  BOOST_TEST(payload(s1, Axis::tp) == 2u * 4 * 664);
  BOOST_TEST(wire(s0, Axis::tp) == 5120.0);
  // DP: all-reduce of the whole flat buffer.
  BOOST_TEST(payload(s0, Axis::dp) == 4u * 2368);
  BOOST_TEST(payload(s1, Axis::dp) == 4u * 2272);
  // PP: one (N,C) activation out and nothing in on stage 0, per micro-batch; likewise back.
  BOOST_TEST(payload(s0, Axis::pp) == 2u * 4 * 128);
  BOOST_TEST(payload(s1, Axis::pp) == 2u * 4 * 128);
  BOOST_TEST(wire(s1, Axis::pp) == 1024.0);
  // The tied embedding's gradient between the two stages: 34 * 16 floats.
  BOOST_TEST(payload(s0, Axis::embed) == 4u * 544);
  BOOST_TEST(payload(s1, Axis::embed) == 4u * 544);
  // World: loss and norm (doubles), preemption flag and batch-read check (ints); a ring of 8
  // sends 2 * 7/8 of it.
  BOOST_TEST(payload(s0, Axis::world) == 24u);
  BOOST_TEST(wire(s0, Axis::world) == 42.0);
  // ZeRO-1: reduce-scatter of the buffer and all-gather of the 1/dp shard: 1.5 times the
  // payload, but the same bytes on the wire as the all-reduce.
  const StepTraffic z = step_traffic(m, L, 0, 1, 4, with_zero(1));
  BOOST_TEST(payload(z, Axis::dp) == 4u * (2368 + 1184));
  BOOST_TEST(wire(z, Axis::dp) == wire(s0, Axis::dp));
}

BOOST_AUTO_TEST_CASE(traffic_scales_with_the_layout) {
  ModelConfig m;
  m.n_layer = 4, m.n_head = 4, m.n_embd = 32, m.seq_len = 16, m.vocab_size = 256;
  // One rank: only the world all-reduces, which a ring of one does not send.
  const StepTraffic one = step_traffic(m, Layout{1, 1, 1}, 0, 1, 8, with_zero(0));
  for (int a = 0; a < n_axes; ++a) {
    BOOST_TEST(one.payload[a] == (Axis(a) == Axis::world ? 24u : 0u));
    BOOST_TEST(one.wire[a] == 0.0);
  }
  // ZeRO's wire bytes equal the all-reduce's for every dp; ring all-reduce wire -> 2x payload.
  for (int dp : {2, 4, 8}) {
    const StepTraffic z0 = step_traffic(m, Layout{1, 1, dp}, 0, 1, 8, with_zero(0));
    const StepTraffic z1 = step_traffic(m, Layout{1, 1, dp}, 0, 1, 8, with_zero(1));
    BOOST_TEST(std::abs(z1.wire[int(Axis::dp)] - z0.wire[int(Axis::dp)]) <= 1e-9 * z0.wire[int(Axis::dp)]);
    BOOST_TEST(z0.wire[int(Axis::dp)] == 2.0 * (dp - 1) / dp * double(z0.payload[int(Axis::dp)]));
  }
  // Micro-batches: tp and pp traffic are per micro-batch, dp traffic per step.
  const StepTraffic a = step_traffic(m, Layout{2, 2, 1}, 1, 1, 8, with_zero(0));
  const StepTraffic b = step_traffic(m, Layout{2, 2, 1}, 1, 2, 8, with_zero(0));
  BOOST_TEST(a.payload[int(Axis::tp)] == b.payload[int(Axis::tp)]);  // 8 x 1 rows = 4 x 2 rows
  BOOST_TEST(a.payload[int(Axis::pp)] == b.payload[int(Axis::pp)]);
  const StepTraffic c = step_traffic(m, Layout{2, 2, 1}, 1, 1, 16, with_zero(0));
  BOOST_TEST(c.payload[int(Axis::tp)] == 2 * a.payload[int(Axis::tp)]);
  // A middle stage of pp = 4 sends activations and gradients, and holds no embedding.
  const StepTraffic mid = step_traffic(m, Layout{1, 4, 1}, 1, 1, 8, with_zero(0));
  BOOST_TEST(mid.payload[int(Axis::pp)] == 2u * 8 * 16 * 32 * 4);
  BOOST_TEST(mid.payload[int(Axis::embed)] == 0u);
}

BOOST_AUTO_TEST_CASE(parameter_count_formula_matches_the_model_on_one_rank) {
  // The formula against the buffer Model really allocates (other layouts: test_golden and the
  // comm-check of every multi-rank run).
  ModelConfig m;
  m.n_layer = 3, m.n_head = 2, m.n_embd = 24, m.seq_len = 5, m.vocab_size = 71;
  const Grid grid(Comm::self(), Layout{1, 1, 1});
  auto be = make_cpu_backend(1);
  Model model(*be, grid, m, 1, 1, 1);
  BOOST_TEST(int64_t(model.params().padded()) == stage_parameter_elements(m, Layout{1, 1, 1}, 0));
}

// ---------------------------------------------------------------- activation recomputation

namespace {
StepOptions recomputing(const std::string& mode) {
  StepOptions o;
  o.recompute = mode;
  return o;
}
}  // namespace

BOOST_AUTO_TEST_CASE(activation_memory_follows_the_recompute_mode) {
  // The analytic activation count against the buffers Model really allocates, per mode, and
  // each mode holding less than the one before. Layout 1x1x1: slots = min(micro-batches, pp).
  ModelConfig m;
  m.n_layer = 3, m.n_head = 2, m.n_embd = 24, m.seq_len = 5, m.vocab_size = 71;
  const Layout L{1, 1, 1};
  const Grid grid(Comm::self(), L);
  auto be = make_cpu_backend(1);
  double previous = 0;
  for (const std::string mode : {"none", "selective", "full"}) {
    Model model(*be, grid, m, 2, 1, 1, {}, recompute_from_name(mode));
    const MemoryCount analytic = analytic_memory(m, L, 0, 2, 4, recomputing(mode));
    BOOST_TEST(analytic.activations == double(model.activation_elements()) * sizeof(float),
               mode << ": analytic " << analytic.activations << " B, the model holds "
                    << model.activation_elements() << " floats");
    if (mode != "none") BOOST_TEST(analytic.activations < previous, mode);
    previous = analytic.activations;
  }
}

BOOST_AUTO_TEST_CASE(full_recomputation_repeats_the_attention_all_reduce) {
  // The golden model of traffic_of_the_golden_model_on_tp2_pp2_dp2_by_hand: per block and
  // micro-batch, full recomputation sums the attention projection's (N,C) = 8 x 16 floats
  // over TP once more (the MLP's output projection is not rerun); selective communicates
  // nothing more. Only TP changes.
  ModelConfig m;
  m.n_layer = 2, m.n_head = 4, m.n_embd = 16, m.seq_len = 8, m.vocab_size = 67;
  const Layout L{2, 2, 2};
  for (int stage : {0, 1}) {
    const StepTraffic none = step_traffic(m, L, stage, 1, 4, recomputing("none"));
    const StepTraffic sel = step_traffic(m, L, stage, 1, 4, recomputing("selective"));
    const StepTraffic full = step_traffic(m, L, stage, 1, 4, recomputing("full"));
    for (int a = 0; a < n_axes; ++a) {
      BOOST_TEST(sel.payload[a] == none.payload[a]);
      if (Axis(a) != Axis::tp) BOOST_TEST(full.payload[a] == none.payload[a]);
    }
    BOOST_TEST(full.payload[int(Axis::tp)] == none.payload[int(Axis::tp)] + 2u * 4 * 128);
  }
}

BOOST_AUTO_TEST_CASE(full_recomputation_reruns_three_of_four_block_products) {
  // The forward products of qkv (3C x C), attn.c_proj (C x C) and mlp.c_fc (4C x C) once more
  // per layer and token: 2 * 8 C^2 flops; selective reruns no product.
  ModelConfig m;
  m.n_layer = 3, m.n_head = 2, m.n_embd = 8, m.seq_len = 6, m.vocab_size = 11;
  const long G = 4;
  auto flops = [&](const std::string& mode) {
    double f = 0;
    for (const GemmShape& g : step_gemm_shapes(m, Layout{1, 1, 1}, 0, 2, G, recomputing(mode)))
      f += g.flops() * double(g.count);
    return f;
  };
  const double C = m.n_embd, tokens = double(G * m.seq_len);
  BOOST_TEST(flops("selective") == flops("none"));
  BOOST_TEST(flops("full") == flops("none") + 2.0 * 8 * C * C * m.n_layer * tokens);
}

// ---------------------------------------------------------------- ZeRO-2's gradient window

BOOST_AUTO_TEST_CASE(gradient_window_plan_by_hand) {
  // The embedding [0, 64), four one-tensor blocks of 64 from 64, the head's LayerNorm at 320
  // (32): padded 352, buckets of at least 64 elements.
  const std::vector<FlatTensor> flat = {{0, 0}, {64, 1}, {128, 2}, {192, 3}, {256, 4}, {320, 5}};
  const GradientWindowPlan plan = plan_gradient_window(flat, 352, 64);
  // Buckets top-down: [256, 352) (block 3 and the head), then a block each, the embedding.
  const std::vector<FlatRange> buckets = {{256, 352}, {192, 256}, {128, 192}, {64, 128}, {0, 64}};
  BOOST_TEST((plan.buckets == buckets));
  // Backward reports the head, blocks 3..0, the embedding: phases 0..5.
  BOOST_TEST((plan.boundaries == std::vector<size_t>{320, 256, 192, 128, 64, 0}));
  BOOST_TEST((plan.last_phase == std::vector<int>{1, 2, 3, 4, 5}));
  // Live phases: [0,2], [2,3], [3,4], [4,5], the bottom bucket throughout. First fit: 0, then
  // 96 (clear of the first), 0 again (the first is done), 64 (clear of the third), and the
  // bottom above all: 160. A window of 224 elements instead of 352.
  BOOST_TEST((plan.window_offset == std::vector<size_t>{0, 96, 0, 64, 160}));
  BOOST_TEST(plan.window == 224u);
  BOOST_TEST(plan.bottom() == 64u);
  BOOST_TEST(plan.to_window(1, 200) == 104u);
}

BOOST_AUTO_TEST_CASE(gradient_window_never_overlaps_buckets_live_together) {
  ModelConfig m;
  m.n_layer = 6, m.n_head = 4, m.n_embd = 32, m.seq_len = 16, m.vocab_size = 67;
  for (int pp : {1, 2, 3})
    for (int pp_rank = 0; pp_rank < pp; ++pp_rank)
      for (size_t elems : {size_t(1), size_t(700), size_t(5000), size_t(1) << 30}) {
        size_t padded = 0;
        const std::vector<FlatTensor> flat = stage_flat_layout(m, 2, pp, pp_rank, 3, &padded);
        BOOST_TEST(int64_t(padded) == stage_parameter_elements(m, Layout{2, pp, 3}, pp_rank));
        const GradientWindowPlan plan = plan_gradient_window(flat, padded, elems);
        const size_t n = plan.buckets.size();
        BOOST_TEST(plan.window <= padded + 16 * n);  // never worse than flat, but alignment
        if (n == 1) BOOST_TEST(plan.window == padded);
        // Live phases as the optimizer uses them: from the phase writing the top element
        // through the one after the phase finishing it; the bottom bucket always.
        auto phase = [&](size_t x) {
          int j = 0;
          while (x < plan.boundaries[size_t(j)]) ++j;
          return j;
        };
        for (size_t a = 0; a < n; ++a) {
          BOOST_TEST(plan.window_offset[a] % 16 == 0u);
          BOOST_TEST(plan.window_offset[a] + plan.buckets[a].size() <= plan.window);
          BOOST_TEST(plan.last_phase[a] == phase(plan.buckets[a].lo));
          for (size_t b = a + 1; b < n; ++b) {
            const bool bottom = b + 1 == n;
            const bool live_together = bottom || phase(plan.buckets[b].hi - 1) <= plan.last_phase[a] + 1;
            const bool apart = plan.window_offset[a] + plan.buckets[a].size() <= plan.window_offset[b] ||
                               plan.window_offset[b] + plan.buckets[b].size() <= plan.window_offset[a];
            BOOST_TEST((apart || !live_together), "buckets " << a << " and " << b << " collide");
          }
        }
      }
}

BOOST_AUTO_TEST_CASE(zero2_memory_and_traffic_follow_the_window) {
  ModelConfig m;
  m.n_layer = 4, m.n_head = 4, m.n_embd = 32, m.seq_len = 16, m.vocab_size = 256;
  const Layout L{1, 1, 2};
  const double P = double(stage_parameter_elements(m, L, 0));
  auto options = [](int zero, double bucket_mb) {
    StepOptions o;
    o.zero = zero;
    o.bucket_mb = bucket_mb;
    return o;
  };
  // One bucket (the bottom one): the window is the flat buffer, reduced once per step, so the
  // memory and the traffic are ZeRO-1's.
  const MemoryCount one = analytic_memory(m, L, 0, 1, 8, options(2, 64));
  const MemoryCount z1 = analytic_memory(m, L, 0, 1, 8, options(1, 64));
  BOOST_TEST(one.grads == z1.grads);
  BOOST_TEST(one.optimizer == z1.optimizer);
  BOOST_TEST(one.grads == 4 * (P + P / 2));
  BOOST_TEST(step_traffic(m, L, 0, 1, 8, options(2, 64)).payload ==
             step_traffic(m, L, 0, 1, 8, options(1, 64)).payload);
  // Small buckets: the window is what the plan says, and all but the bottom bucket are
  // reduce-scattered in each of the 8 / 2 = 4 micro-batches.
  const double mb = 0.001;
  size_t padded = 0;
  const std::vector<FlatTensor> flat = stage_flat_layout(m, 1, 1, 0, 2, &padded);
  const GradientWindowPlan plan = plan_gradient_window(flat, padded, bucket_elements(mb));
  BOOST_TEST(plan.buckets.size() > 10u);
  BOOST_TEST(plan.window < padded);
  const MemoryCount two = analytic_memory(m, L, 0, 1, 8, options(2, mb));
  BOOST_TEST(two.grads == 4 * (double(plan.window) + P / 2));
  BOOST_TEST(two.optimizer == 4 * P);
  const double bottom = double(plan.bottom());
  BOOST_TEST(step_traffic(m, L, 0, 1, 8, options(2, mb)).payload[int(Axis::dp)] ==
             uint64_t(4 * (4 * (P - bottom) + bottom + P / 2)));
}
