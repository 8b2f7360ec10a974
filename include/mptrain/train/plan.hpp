// The layout planner behind mptrain-plan (doc/PLANNING.md): for a deck's model and batch on N
// ranks, every valid layout (tp, pp, dp, micro-batch, ZeRO stage, recomputation, stage split),
// each with its memory per rank and a predicted step time, without building anything.
//   - memory: analytic_memory() (model/analytic.hpp), the counts mptrain-bench checks the
//     run's buffers against, for every stage; the largest stage is the layout's figure;
//   - time: the step's matrix products (step_gemm_shapes) at the machine's GEMM rate for their
//     shape class, the element-wise work and attention at the machine's streaming and attention
//     rates, the pipeline's bubble (pp-1)/(m+pp-1), TP and pipeline messages on the critical
//     path, the DP reduction (step_traffic's wire bytes) partly hidden in the last backward,
//     and the optimizer; links from an alpha-beta model (machine.hpp), intra-node when the
//     whole group sits on one node (ranks are placed ranks_per_node to a node, in rank order).
// The analytic counts take StepOptions{zero, recompute, stage_layers}: where they grow with an
// option the plan follows them; what they do not yet count (recomputed products and messages)
// is added here, and only then (see recompute_extra in plan.cpp).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "mptrain/io/deck.hpp"
#include "mptrain/model/analytic.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/train/machine.hpp"

namespace mptrain {

// One layout the planner considers.
struct PlanLayout {
  Layout layout;
  int micro_batch = 1;
  StepOptions options;  // zero, recompute, stage_layers (empty: equal blocks per stage)
  std::string stages_text(const ModelConfig& model) const;  // e.g. "2,2"
};

// Where a layout's predicted step time goes, seconds per step.
struct StepTime {
  double gemm = 0;        // the slowest stage's matrix products, all its micro-batches
  double other = 0;       // its attention, element-wise work, embedding and loss
  double tp = 0;          // its TP all-reduces (on the critical path)
  double bubble = 0;      // the pipeline's idle slots: (pp-1) micro-batch times
  double pp = 0;          // activations and their gradients between stages
  double dp = 0;          // the DP reduction not hidden in the backward (ZeRO's gather too)
  double optimizer = 0;   // norm and AdamW over this rank's share, tied-embedding sum, loss
  double total() const { return gemm + other + tp + bubble + pp + dp + optimizer; }
};

struct LayoutPrediction {
  PlanLayout plan;
  MemoryCount memory;     // the stage that holds the most (bytes)
  int memory_stage = 0;
  double rss_mib = 0;     // memory + the machine's per-rank overhead
  bool fits = true;
  StepTime time;
  double tokens_per_s = 0;
  bool deck_layout = false;  // the deck's own [parallel] tp, pp, dp and micro_batch
};

// What to plan for.
struct PlanRequest {
  Deck deck;                 // model, global batch and the deck's own layout
  int ranks = 1;
  int ranks_per_node = 0;    // 0: all on one node
  double mem_per_rank_gib = 0;  // 0: the machine's memory per rank (none known: no limit)
};

// Every valid layout for the deck's model and batch on `ranks` ranks, in a fixed order: tp
// among the divisors of n_head, pp any divisor of ranks / tp with a stage split (below),
// dp = ranks / (tp pp); micro-batches the powers of two dividing global_batch / dp, and the deck's own when it
// divides; zero 0, 1, 2 when dp > 1 (0 alone when dp = 1: nothing to shard); recompute none,
// selective, full; the stage splits of stage_splits(). Throws InputError when there is none.
std::vector<PlanLayout> enumerate_layouts(const ModelConfig& model, long global_batch,
                                          int deck_micro_batch, int ranks);
// The stage splits considered for layout.pp stages and this micro-batch: equal blocks per
// stage (an empty list) when pp divides n_layer, and balance_stages' split ([parallel]
// stage_layers = auto, model/stage_balance.hpp) when it differs from that and n_layer >= pp.
std::vector<std::vector<int>> stage_splits(const ModelConfig& model, const Layout& layout,
                                           int micro_batch);

// The memory and predicted time of one layout (pure).
LayoutPrediction predict_layout(const ModelConfig& model, long global_batch,
                                const PlanLayout& layout, const Machine& machine,
                                int ranks_per_node, double mem_limit_mib);

struct Plan {
  PlanRequest request;
  Machine machine;
  int ranks_per_node = 1;
  double mem_limit_mib = 0;  // 0: none
  std::vector<LayoutPrediction> layouts;  // fastest first; ties: less memory, less model
                                          // parallelism, lower zero, less recomputation
  int recommended = -1;                   // index of the fastest layout that fits (-1: none)
};
// Every layout of enumerate_layouts() predicted and sorted. Throws InputError for a request
// that cannot be planned (ranks < 1, vocab_size 0, no valid layout).
Plan make_plan(const PlanRequest& request, const Machine& machine);

// The plan as a table (fastest first, at most `top` rows; 0: all), then one PLAN line per
// layout and the RECOMMEND line with why.
void print_plan(const Plan& plan, std::FILE* out, int top);
// One layout's machine-readable line: "PLAN tp=.. pp=.. dp=.. micro_batch=.. zero=..
// recompute=.. mem_mib=.. ms_step=.. fits=yes|no" then more keys (DESIGN §7).
std::string plan_line(const Plan& plan, const LayoutPrediction& p);

}  // namespace mptrain
