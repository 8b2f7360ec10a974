// The process grid: world = pp x dp x tp, ranks numbered with TP fastest, then DP, then PP
// (rank = tp_rank + tp*(dp_rank + dp*pp_rank)), so a TP group is a block of neighbouring ranks.
// One Grid object owns every communicator of the run and is passed explicitly to whatever
// needs it; there is no global parallel state.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mptrain/parallel/comm.hpp"

namespace mptrain {

struct Layout {
  int tp = 1;
  int pp = 1;
  int dp = 1;
  int world() const { return tp * pp * dp; }
  std::string str() const;  // "tp=2 pp=1 dp=2"
};

// What a layout must satisfy for a given model and batch; returns an empty string when valid,
// otherwise one message that says what to change. Pure: every rank computes the same answer
// before any collective.
struct LayoutRequirements {
  int world_size = 1;
  int n_head = 1;
  int n_layer = 1;
  long global_batch = 1;
  int micro_batch = 1;
  // [parallel] stage_layers: blocks per pipeline stage (pp counts summing to n_layer), or
  // empty: n_layer / pp each (pp must divide n_layer), or balanced (`stage_layers_auto`: at
  // least one block per stage).
  std::vector<int> stage_layers;
  bool stage_layers_auto = false;
};
std::string check_layout(const Layout& layout, const LayoutRequirements& req);

class Grid {
 public:
  // Collective over world: builds the Cartesian topology and its TP, DP, PP and embedding
  // sub-communicators. The layout must already have passed check_layout().
  Grid(Comm world, Layout layout);

  const Layout& layout() const { return layout_; }
  const Comm& world() const { return world_; }
  const Comm& tp() const { return tp_; }
  const Comm& dp() const { return dp_; }
  const Comm& pp() const { return pp_; }
  // The first and last pipeline stage of the same (dp, tp) coordinates (size 1 when pp == 1):
  // they share the tied token embedding.
  const Comm& embed() const { return embed_; }

  int tp_rank() const { return tp_.rank(); }
  int dp_rank() const { return dp_.rank(); }
  int pp_rank() const { return pp_.rank(); }
  bool first_stage() const { return pp_rank() == 0; }
  bool last_stage() const { return pp_rank() == layout_.pp - 1; }

  // Byte and wait counters of every axis, summed over all communicators of this grid.
  CommCounters& counters() const { return *counters_; }

 private:
  Layout layout_;
  std::shared_ptr<CommCounters> counters_;
  Comm world_, tp_, dp_, pp_, embed_;
};

}  // namespace mptrain
