// Process-grid tests (run on 1 to 8 ranks by test/grid_mpi.sh): for every layout of the
// world, each rank's coordinates follow rank = tp_rank + tp*(dp_rank + dp*pp_rank), each
// TP/DP/PP group holds exactly the ranks the formula says, the embedding pair joins the
// first and last stage, and check_layout() refuses impossible layouts with a useful message.
// Comm::agree (and agree_or_throw, agree_on) make a failure on any subset of the ranks every
// rank's, with the lowest failing rank's message.
#define BOOST_TEST_MODULE grid
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "mptrain/parallel/comm.hpp"
#include "mpi_fixture.hpp"
#include "mptrain/parallel/grid.hpp"

using namespace mptrain;

namespace {
// World ranks of the members of `comm`, in comm-rank order.
std::vector<int> members(const Comm& comm, int world_rank) {
  std::vector<float> mine{float(world_rank)}, all(comm.size());
  comm.allgather(mine, all);
  return std::vector<int>(all.begin(), all.end());
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_layout_of_the_world) {
  const Comm world = Comm::world();
  const int W = world.size(), me = world.rank();
  int layouts = 0;
  for (int tp = 1; tp <= W; ++tp)
    for (int pp = 1; pp <= W / tp; ++pp) {
      if (W % (tp * pp)) continue;
      const int dp = W / (tp * pp);
      ++layouts;
      Grid grid(Comm::world(), Layout{tp, pp, dp});
      BOOST_TEST_CONTEXT("layout tp=" << tp << " pp=" << pp << " dp=" << dp << " rank " << me) {
        BOOST_TEST(grid.tp().size() == tp);
        BOOST_TEST(grid.dp().size() == dp);
        BOOST_TEST(grid.pp().size() == pp);
        BOOST_TEST(me == grid.tp_rank() + tp * (grid.dp_rank() + dp * grid.pp_rank()));
        const int base_tp = me - grid.tp_rank();
        const std::vector<int> tp_members = members(grid.tp(), me);
        for (int i = 0; i < tp; ++i) BOOST_TEST(tp_members[i] == base_tp + i);  // neighbours
        const std::vector<int> dp_members = members(grid.dp(), me);
        for (int i = 0; i < dp; ++i)
          BOOST_TEST(dp_members[i] == grid.tp_rank() + tp * (i + dp * grid.pp_rank()));
        const std::vector<int> pp_members = members(grid.pp(), me);
        for (int i = 0; i < pp; ++i)
          BOOST_TEST(pp_members[i] == grid.tp_rank() + tp * (grid.dp_rank() + dp * i));
        BOOST_TEST(grid.first_stage() == (grid.pp_rank() == 0));
        BOOST_TEST(grid.last_stage() == (grid.pp_rank() == pp - 1));
        if (grid.first_stage() || grid.last_stage()) {
          BOOST_TEST(!grid.embed().null());
          BOOST_TEST(grid.embed().size() == (pp == 1 ? 1 : 2));
          const std::vector<int> e = members(grid.embed(), me);
          BOOST_TEST(e.front() == grid.tp_rank() + tp * grid.dp_rank());  // stage 0 of my column
          BOOST_TEST(e.back() == grid.tp_rank() + tp * (grid.dp_rank() + dp * (pp - 1)));
        } else {
          BOOST_TEST(grid.embed().null());
        }
      }
    }
  // Ordered factorisations tp x pp x dp of the world size (grid_mpi.sh runs 1, 2, 3, 4, 6, 8).
  const std::map<int, int> factorisations{{1, 1}, {2, 3}, {3, 3}, {4, 6}, {5, 3},
                                          {6, 9}, {7, 3}, {8, 10}};
  BOOST_REQUIRE(factorisations.count(W) == 1);
  BOOST_TEST(layouts == factorisations.at(W));
}

BOOST_AUTO_TEST_CASE(traffic_is_counted_per_axis) {
  const Comm world = Comm::world();
  Grid grid(Comm::world(), Layout{world.size(), 1, 1});
  std::vector<float> data(10, 1.0f);
  grid.tp().allreduce_sum(std::span<float>(data));
  BOOST_TEST(grid.counters().bytes_sent[int(Axis::tp)] == 10 * sizeof(float));
  BOOST_TEST(grid.counters().bytes_sent[int(Axis::dp)] == 0u);
  BOOST_TEST(data[3] == float(world.size()));
}

BOOST_AUTO_TEST_CASE(impossible_layouts_are_refused_with_a_reason) {
  // world, n_head, n_layer, global_batch, micro_batch, stage_layers, stage_layers_auto
  LayoutRequirements req{8, 4, 6, 16, 2, {}, false};
  BOOST_TEST(check_layout(Layout{2, 2, 2}, req).empty());
  BOOST_TEST(check_layout(Layout{2, 2, 1}, req).find("needs 4 ranks but the job has 8") !=
             std::string::npos);
  BOOST_TEST(check_layout(Layout{8, 1, 1}, req).find("does not divide [model] n_head = 4") !=
             std::string::npos);
  BOOST_TEST(check_layout(Layout{1, 4, 2}, req).find("does not divide [model] n_layer = 6") !=
             std::string::npos);
  req.global_batch = 12;
  BOOST_TEST(check_layout(Layout{1, 1, 8}, req).find("global_batch = 12 is not divisible") !=
             std::string::npos);
}

namespace {
struct TestError : std::runtime_error {
  explicit TestError(const std::string& what) : std::runtime_error(what) {}
};
}  // namespace

BOOST_AUTO_TEST_CASE(a_failure_on_some_ranks_becomes_every_ranks) {
  const Comm world = Comm::world();
  const int W = world.size(), me = world.rank();
  BOOST_TEST(world.agree("").empty());  // nobody failed
  // Each single rank failing alone, then every pair: all ranks get the lowest one's message.
  for (int a = 0; a < W; ++a)
    for (int b = a; b < W; ++b) {
      const bool failing = me == a || me == b;
      const std::string got = world.agree(failing ? "rank " + std::to_string(me) + " failed" : "");
      BOOST_TEST(got == "rank " + std::to_string(a) + " failed");
    }
  // The throwing forms: the same exception type and message on every rank.
  const int last = W - 1;
  std::string caught;
  try {
    agree_or_throw<TestError>(world, me == last ? "only the last rank" : "");
  } catch (const TestError& e) {
    caught = e.what();
  }
  BOOST_TEST(caught == "only the last rank");
  caught.clear();
  try {
    agree_on<TestError>(world, [&] {
      if (me == last) throw TestError("thrown on rank " + std::to_string(last));
    });
  } catch (const TestError& e) {
    caught = e.what();
  }
  BOOST_TEST(caught == "thrown on rank " + std::to_string(last));
  bool ran = false;
  agree_on<TestError>(world, [&] { ran = true; });  // nothing thrown: nothing to agree on
  BOOST_TEST(ran);
}
