// Pipeline stages of unequal size ([parallel] stage_layers): which blocks each stage holds, the
// analytic counts under a split, the cost model and balance_stages(), and (on 2 and 4 ranks,
// run by test/stages.sh) the model each stage of a split builds. The end-to-end runs (losses,
// resume across splits, refused values) are in test/stages.sh.
#define BOOST_TEST_MODULE stages
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "backend_test_support.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/model/layers.hpp"
#include "mptrain/model/model.hpp"
#include "mptrain/model/stage_balance.hpp"
#include "mptrain/parallel/grid.hpp"

using namespace mptrain;

namespace {

ModelConfig make_config(int n_layer, int n_head, int C, int T, int V) {
  ModelConfig m;
  m.n_layer = n_layer, m.n_head = n_head, m.n_embd = C, m.seq_len = T, m.vocab_size = V;
  return m;
}

LayoutRequirements requirements(int world, int n_layer) {
  LayoutRequirements req;
  req.world_size = world, req.n_head = 2, req.n_layer = n_layer, req.global_batch = 8;
  return req;
}

StepOptions split_options(std::vector<int> split) {
  StepOptions o;
  o.stage_layers = std::move(split);
  return o;
}

// Every split of n blocks into pp stages of at least one, in lexicographic order.
void each_split(int n, int pp, const std::function<void(const std::vector<int>&)>& f,
                std::vector<int> prefix = {}) {
  if (int(prefix.size()) == pp - 1) {
    prefix.push_back(n);
    f(prefix);
    return;
  }
  for (int k = 1; k <= n - (pp - 1 - int(prefix.size())); ++k) {
    std::vector<int> next = prefix;
    next.push_back(k);
    each_split(n - k, pp, f, next);
  }
}

double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double squares(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0, [](double s, double x) { return s + x * x; });
}

// The names of the blocks' tensors in stage_tensors(), by block.
std::map<int, int> tensors_per_block(const std::vector<TensorDesc>& tensors) {
  std::map<int, int> blocks;
  for (const TensorDesc& t : tensors)
    if (t.part == Part::block) ++blocks[t.layer];
  return blocks;
}

}  // namespace

// ---------------------------------------------------------------- which blocks a stage holds

BOOST_AUTO_TEST_CASE(a_split_gives_each_stage_its_contiguous_blocks) {
  const ModelConfig m = make_config(6, 2, 8, 4, 11);
  const std::vector<int> split{1, 3, 2};
  const int first[] = {0, 1, 4};
  const int per_block = int(tensors_per_block(gpt2_tensors(m)).at(0));
  for (int s = 0; s < 3; ++s) {
    const StageLayers layers = stage_layers(m, 3, s, split);
    BOOST_TEST(layers.first == first[s]);
    BOOST_TEST(layers.count == split[size_t(s)]);
    const std::vector<TensorDesc> held = stage_tensors(m, 3, s, split);
    std::map<int, int> blocks = tensors_per_block(held);
    BOOST_TEST(int(blocks.size()) == split[size_t(s)], "stage " << s);
    for (int l = first[s]; l < first[s] + split[size_t(s)]; ++l)
      BOOST_TEST(blocks[l] == per_block, "stage " << s << " block " << l);
    const bool has_wpe = std::any_of(held.begin(), held.end(),
                                     [](const TensorDesc& t) { return t.name == "wpe"; });
    const bool has_lnf = std::any_of(held.begin(), held.end(),
                                     [](const TensorDesc& t) { return t.name == "ln_f.weight"; });
    BOOST_TEST(has_wpe == (s == 0));
    BOOST_TEST(has_lnf == (s == 2));
  }
  // No split: n_layer / pp each, as before.
  BOOST_TEST(stage_block_counts(m, 3) == (std::vector<int>{2, 2, 2}));
  BOOST_TEST(stage_layers(m, 3, 2).first == 4);
}

BOOST_AUTO_TEST_CASE(the_layout_check_accepts_only_splits_that_fit) {
  LayoutRequirements req = requirements(2, 4);
  const Layout pp2{1, 2, 1};
  BOOST_TEST(check_layout(pp2, req).empty());
  req.stage_layers = {1, 3};
  BOOST_TEST(check_layout(pp2, req).empty());
  req.stage_layers = {1, 2};
  BOOST_TEST(check_layout(pp2, req).find("[parallel] stage_layers = 1,2: the counts sum to 3 "
                                         "blocks, but [model] n_layer = 4") != std::string::npos);
  req.stage_layers = {1, 1, 2};
  BOOST_TEST(check_layout(pp2, req).find("3 stages, but [parallel] pp = 2") != std::string::npos);
  // An unequal split lifts the divisibility rule: 4 blocks on 3 stages.
  LayoutRequirements three = requirements(3, 4);
  BOOST_TEST(check_layout(Layout{1, 3, 1}, three).find("does not divide [model] n_layer = 4") !=
             std::string::npos);
  three.stage_layers_auto = true;
  BOOST_TEST(check_layout(Layout{1, 3, 1}, three).empty());
  three.stage_layers = {2, 1, 1};
  three.stage_layers_auto = false;
  BOOST_TEST(check_layout(Layout{1, 3, 1}, three).empty());
  LayoutRequirements few = requirements(4, 2);
  few.stage_layers_auto = true;
  BOOST_TEST(check_layout(Layout{1, 4, 1}, few).find("cannot fill [parallel] pp = 4 stages") !=
             std::string::npos);
}

// ---------------------------------------------------------------- analytic counts

BOOST_AUTO_TEST_CASE(parameter_counts_follow_the_split_by_hand) {
  // The golden model of test_units' traffic case with 4 blocks: tp 2, dp 2; per rank a block
  // is 1696 elements, wte's shard 544, wpe 128, ln_f 32 (tensors rounded up to 16 floats).
  const ModelConfig m = make_config(4, 4, 16, 8, 67);
  const Layout L{2, 2, 2};
  BOOST_TEST(stage_parameter_elements(m, L, 0, split_options({1, 3})) == 544 + 128 + 1696);
  BOOST_TEST(stage_parameter_elements(m, L, 1, split_options({1, 3})) == 544 + 3 * 1696 + 32);
  BOOST_TEST(stage_parameter_elements(m, L, 0, split_options({3, 1})) == 544 + 128 + 3 * 1696);
  BOOST_TEST(stage_parameter_elements(m, L, 1, split_options({2, 2})) ==
             stage_parameter_elements(m, L, 1));
}

BOOST_AUTO_TEST_CASE(products_memory_and_traffic_move_with_the_blocks) {
  const ModelConfig m = make_config(4, 4, 16, 8, 67);
  const Layout L{2, 2, 1};
  const int B = 1;
  const long G = 4;  // 4 micro-batches of N = 8 tokens
  const double N = 8, C = 16, micro = 4;
  auto gemm_flops = [&](int stage, const StepOptions& o) {
    double f = 0;
    for (const GemmShape& g : step_gemm_shapes(m, L, stage, B, G, o)) f += g.flops() * g.count;
    return f;
  };
  const StepOptions equal, s13 = split_options({1, 3});
  // One block's linear layers on a TP rank: 6 flops per local weight and token.
  const double block = 6 * N * (12 * C * C / 2) * micro;
  BOOST_TEST(gemm_flops(0, s13) == gemm_flops(0, equal) - block);
  BOOST_TEST(gemm_flops(1, s13) == gemm_flops(1, equal) + block);
  // Memory: one block's saved activations per slot (min(M, pp) = 2 slots).
  const LayerShape shape = layer_shape(m, B, L.tp, 0);
  const double acts = 2 * double(BlockActivations::elements(shape, Recompute::none)) * sizeof(float);
  BOOST_TEST(analytic_memory(m, L, 1, B, G, s13).activations ==
             analytic_memory(m, L, 1, B, G, equal).activations + acts);
  BOOST_TEST(analytic_memory(m, L, 0, B, G, s13).params ==
             double(stage_parameter_elements(m, L, 0, s13)) * sizeof(float));
  // TP traffic: a block all-reduces (N,C) twice forward and twice backward.
  const double tp_block = 4 * N * C * micro * sizeof(float);
  BOOST_TEST(double(step_traffic(m, L, 0, B, G, s13).payload[int(Axis::tp)]) ==
             double(step_traffic(m, L, 0, B, G, equal).payload[int(Axis::tp)]) - tp_block);
  // The pipeline's own traffic does not depend on the split.
  BOOST_TEST(step_traffic(m, L, 1, B, G, s13).payload[int(Axis::pp)] ==
             step_traffic(m, L, 1, B, G, equal).payload[int(Axis::pp)]);
}

// ---------------------------------------------------------------- the cost model

BOOST_AUTO_TEST_CASE(the_cost_models_products_are_the_analytic_ones) {
  // Per micro-batch, the GEMM FLOPs of stage_part_costs over every stage equal those of
  // step_gemm_shapes (which leaves out attention's own products) plus attention's causal half.
  for (int tp : {1, 2}) {
    const ModelConfig m = make_config(4, 4, 16, 8, 67);
    const Layout L{tp, 2, 1};
    const int B = 2;
    const long G = 6;  // 3 micro-batches
    const StagePartCosts c = stage_part_costs(m, L, B);
    const double attention = 6.0 * B * m.seq_len * m.seq_len * (m.n_embd / tp);
    double analytic = 0;
    for (int s = 0; s < 2; ++s)
      for (const GemmShape& g : step_gemm_shapes(m, L, s, B, G, split_options({3, 1})))
        analytic += g.flops() * g.count;
    BOOST_TEST((m.n_layer * (c.block_gemm_flops - attention) + c.head_gemm_flops) * 3 ==
               analytic);
    // Rates scale the costs: twice the rates, half the time.
    StageCostRates twice;
    twice.gemm_flops_per_s *= 2, twice.memory_bytes_per_s *= 2;
    const StagePartCosts fast = stage_part_costs(m, L, B, twice);
    BOOST_TEST(fast.block == c.block / 2, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(fast.head == c.head / 2, boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(balance_finds_the_least_maximum_and_the_most_even_split) {
  // Against every split: balance_stages' largest stage cost is the least there is, and of the
  // splits with that maximum it has the least sum of squares.
  for (int vocab : {11, 257, 4096, 50257})
    for (int n_layer : {3, 5, 8})
      for (int pp : {1, 2, 3, 4})
        for (int tp : {1, 2}) {
          if (pp > n_layer) continue;
          const ModelConfig m = make_config(n_layer, 4, 32, 16, vocab);
          const Layout L{tp, pp, 1};
          const std::vector<int> best = balance_stages(m, L, 2);
          BOOST_REQUIRE(int(best.size()) == pp);
          BOOST_TEST(std::accumulate(best.begin(), best.end(), 0) == n_layer);
          BOOST_TEST(*std::min_element(best.begin(), best.end()) >= 1);
          const std::vector<double> mine = stage_costs(m, L, 2, best);
          double least = 1e300, even = 1e300;
          each_split(n_layer, pp, [&](const std::vector<int>& split) {
            const std::vector<double> costs = stage_costs(m, L, 2, split);
            if (max_of(costs) < least * (1 - 1e-12)) least = max_of(costs), even = 1e300;
            if (max_of(costs) <= least * (1 + 1e-12)) even = std::min(even, squares(costs));
          });
          BOOST_TEST(max_of(mine) <= least * (1 + 1e-9),
                     "V " << vocab << " L " << n_layer << " pp " << pp << " tp " << tp);
          BOOST_TEST(squares(mine) <= even * (1 + 1e-9),
                     "V " << vocab << " L " << n_layer << " pp " << pp << " tp " << tp);
        }
}

BOOST_AUTO_TEST_CASE(a_heavier_head_takes_blocks_off_the_last_stage) {
  int previous = 1 << 30;
  for (int vocab : {64, 512, 4096, 32768, 262144}) {
    const ModelConfig m = make_config(12, 4, 64, 32, vocab);
    const std::vector<int> split = balance_stages(m, Layout{1, 3, 1}, 1);
    BOOST_TEST(split.back() <= previous, "vocab " << vocab);
    previous = split.back();
  }
  BOOST_TEST(previous == 1);  // a head of 262144 x 64 outweighs every block there is
  // One stage holds everything; the same result on every call (a pure function).
  const ModelConfig m = make_config(5, 4, 64, 32, 1000);
  BOOST_TEST(balance_stages(m, Layout{1, 1, 1}, 1) == (std::vector<int>{5}));
  BOOST_TEST(balance_stages(m, Layout{1, 3, 1}, 1) == balance_stages(m, Layout{1, 3, 1}, 1));
  BOOST_TEST(balance_stages(m, Layout{1, 5, 1}, 1) == (std::vector<int>{1, 1, 1, 1, 1}));
}

// ---------------------------------------------------------------- the model of each stage

namespace {

// Builds this rank's stage of `split` on a pp = world grid and checks it against the analytic
// count and against a one-rank model of the whole network (the same global tensors, the same
// initial values).
void check_stage_model(const ModelConfig& m, const std::vector<int>& split) {
  const int pp = Comm::world().size();
  Grid grid(Comm::world(), Layout{1, pp, 1});  // collective
  Grid one(Comm::self(), Layout{1, 1, 1});     // collective over self
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  Model model(*be, grid, m, 1, 1, 7, split);
  Model whole(*be, one, m, 1, 1, 7);
  const int s = grid.pp_rank();
  const StageLayers layers = stage_layers(m, pp, s, split);
  BOOST_TEST(model.first_layer() == layers.first);
  BOOST_TEST(model.local_layers() == split[size_t(s)]);
  BOOST_TEST(model.params().padded() ==
             size_t(stage_parameter_elements(m, grid.layout(), s, split_options(split))));
  // Exactly the blocks first..first+count-1, the embedding on the first stage, the head on
  // the last, each tensor with the values of the whole model's.
  std::map<std::string, const ParamInfo*> reference;
  for (const ParamInfo& p : whole.params().infos()) reference[p.spec.name] = &p;
  const std::vector<float> mine = model.params().params().to_host();
  const std::vector<float> all = whole.params().params().to_host();
  std::map<int, int> blocks;
  for (const ParamInfo& p : model.params().infos()) {
    const std::string& name = p.spec.name;
    if (name.rfind("h.", 0) == 0) ++blocks[std::stoi(name.substr(2))];
    else if (name == "wpe") BOOST_TEST(s == 0);
    else if (name == "wte") BOOST_TEST((s == 0 || s == pp - 1));
    else BOOST_TEST(s == pp - 1, name);
    BOOST_REQUIRE(reference.count(name) == 1);
    const ParamInfo& r = *reference[name];
    BOOST_TEST(std::equal(mine.begin() + long(p.offset), mine.begin() + long(p.offset + p.size()),
                          all.begin() + long(r.offset)), name << " on stage " << s);
  }
  BOOST_TEST(int(blocks.size()) == layers.count);
  if (!blocks.empty()) {
    BOOST_TEST(blocks.begin()->first == layers.first);
    BOOST_TEST(blocks.rbegin()->first == layers.first + layers.count - 1);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_stage_of_a_split_builds_exactly_its_blocks) {
  const int world = Comm::world().size();
  const ModelConfig four = make_config(4, 4, 32, 8, 67), six = make_config(6, 4, 32, 8, 67);
  if (world == 1) {
    check_stage_model(four, {4});
  } else if (world == 2) {
    check_stage_model(four, {1, 3});
    check_stage_model(four, {3, 1});
  } else if (world == 4) {
    check_stage_model(six, {1, 2, 2, 1});
    check_stage_model(six, {3, 1, 1, 1});
  } else {
    BOOST_TEST_MESSAGE("no split for " << world << " ranks: run on 1, 2 or 4");
    BOOST_TEST(false);
  }
}
