// The process grid: a Cartesian topology over (pp, dp, tp), last dimension fastest, so that
// rank = tp_rank + tp * (dp_rank + dp * pp_rank) and each TP group is a block of neighbours.
#include "mptrain/parallel/grid.hpp"

#include <numeric>
#include <sstream>

namespace mptrain {

std::string Layout::str() const {
  std::ostringstream os;
  os << "tp=" << tp << " pp=" << pp << " dp=" << dp;
  return os.str();
}

namespace {

// What is wrong with the pipeline's split of the blocks into stages, or "".
std::string stage_split_problem(const Layout& layout, const LayoutRequirements& req) {
  std::ostringstream os;
  const std::vector<int>& split = req.stage_layers;
  if (!split.empty()) {
    os << "[parallel] stage_layers = ";
    for (size_t s = 0; s < split.size(); ++s) os << (s ? "," : "") << split[s];
    const int blocks = std::accumulate(split.begin(), split.end(), 0);
    if (int(split.size()) != layout.pp)
      os << ": " << split.size() << " stages, but [parallel] pp = " << layout.pp
         << "; give one block count per stage, or auto";
    else if (blocks != req.n_layer)
      os << ": the counts sum to " << blocks << " blocks, but [model] n_layer = " << req.n_layer;
    else
      return "";
  } else if (req.stage_layers_auto) {
    if (req.n_layer >= layout.pp) return "";
    os << "[parallel] stage_layers = auto: [model] n_layer = " << req.n_layer << " blocks cannot "
       << "fill [parallel] pp = " << layout.pp << " stages of at least one block each";
  } else if (req.n_layer % layout.pp != 0) {
    os << "[parallel] pp = " << layout.pp << " does not divide [model] n_layer = " << req.n_layer
       << "; choose pp among the divisors of n_layer, or split the blocks unequally with "
          "[parallel] stage_layers (auto, or one count per stage)";
  }
  return os.str();
}

}  // namespace

std::string check_layout(const Layout& layout, const LayoutRequirements& req) {
  std::ostringstream os;
  if (layout.tp < 1 || layout.pp < 1 || layout.dp < 1) {
    os << "layout " << layout.str() << ": every factor must be at least 1";
  } else if (layout.world() != req.world_size) {
    os << "layout " << layout.str() << " needs " << layout.world() << " ranks but the job has "
       << req.world_size << "; set [parallel] dp = 0 to derive dp, or launch with -np "
       << layout.world();
  } else if (req.n_head % layout.tp != 0) {
    os << "[parallel] tp = " << layout.tp << " does not divide [model] n_head = " << req.n_head
       << "; choose tp among the divisors of n_head";
  } else if (std::string split = stage_split_problem(layout, req); !split.empty()) {
    os << split;
  } else if (req.global_batch % (static_cast<long>(layout.dp) * req.micro_batch) != 0) {
    os << "[train] global_batch = " << req.global_batch << " is not divisible by dp * micro_batch = "
       << layout.dp << " * " << req.micro_batch << "; make global_batch a multiple of "
       << static_cast<long>(layout.dp) * req.micro_batch;
  }
  return os.str();
}

Grid::Grid(Comm world, Layout layout)
    : layout_(layout), counters_(std::make_shared<CommCounters>()), world_(std::move(world)) {
  world_.share_counters(counters_);
  const int dims[3] = {layout.pp, layout.dp, layout.tp};
  const int keep_tp[3] = {0, 0, 1}, keep_dp[3] = {0, 1, 0}, keep_pp[3] = {1, 0, 0};
  tp_ = world_.cart_sub(dims, keep_tp, Axis::tp);  // collective
  dp_ = world_.cart_sub(dims, keep_dp, Axis::dp);  // collective
  pp_ = world_.cart_sub(dims, keep_pp, Axis::pp);  // collective
  // The tied embedding lives on the first and last stages of each (dp, tp) column.
  const bool holds_embedding = first_stage() || last_stage();
  const int column = dp_rank() * layout.tp + tp_rank();
  embed_ = world_.split(holds_embedding ? column : -1, pp_rank(), Axis::embed);  // collective
}

}  // namespace mptrain
