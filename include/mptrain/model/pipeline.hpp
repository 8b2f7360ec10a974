// The pipeline schedule: runs the micro-batches of one global batch through this rank's stage
// in 1F1B order (warm-up forwards, then one forward and one backward alternately, then the
// remaining backwards), passing activations forward and their gradients backward with
// point-to-point MPI. With pp = 1 it degenerates to forward/backward per micro-batch, i.e.
// plain gradient accumulation. It is handed the tokens of each batch (BatchRows) by the layer
// that reads the data, and knows nothing of datasets or samplers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "mptrain/parallel/grid.hpp"
#include "mptrain/parallel/device_collectives.hpp"
#include "mptrain/model/model.hpp"
#include "mptrain/model/optimizer.hpp"

namespace mptrain {

// This DP rank's rows of one global batch, as the layer that reads the data hands them to the
// schedule: rows = global_batch / dp sequences of T tokens, (rows, T) row-major, micro-batch i
// being rows [i·micro_batch, (i+1)·micro_batch). A stage is given only what it uses: the
// inputs on the first stage (the embedding), the targets on the last (the loss); the other
// span may be empty. The spans must stay valid during train_batch() or eval_batch().
struct BatchRows {
  std::span<const int32_t> inputs;   // (rows, T): required on the first stage
  std::span<const int32_t> targets;  // (rows, T): required on the last stage
};

// One step of a stage's schedule: the forward or the backward of micro-batch `micro`.
struct PipelineOp {
  enum Kind { forward, backward } kind = forward;
  int micro = 0;
  bool operator==(const PipelineOp&) const = default;
};

// The 1F1B order of stage `stage` of `stages` for `micro_batches` micro-batches: min(stages -
// stage - 1, micro_batches) warm-up forwards, then forward and backward alternately, then the
// remaining backwards. Forwards and backwards each go in micro-batch order, so neighbouring
// stages send and receive in the same order, and a stage never holds more than stages - stage
// micro-batches between their forward and backward. Pure.
std::vector<PipelineOp> one_f_one_b_order(int stages, int stage, int micro_batches);

class PipelineSchedule {
 public:
  PipelineSchedule(Backend& backend, Model& model, const Grid& grid, long global_batch,
                   int micro_batch);
  int micro_batches() const { return micro_batches_; }

  // One training batch: forward and backward of every micro-batch, gradients accumulated and
  // (through the optimizer's hooks) DP-reduced. Returns the sum of token losses this rank
  // contributes to the global loss (non-zero only on the last stage's TP rank 0).
  // Collective over TP and PP (and DP through the optimizer).
  double train_batch(const BatchRows& batch, Optimizer& optimizer);
  // Forward only (validation). Same return value. Collective over TP and PP.
  double eval_batch(const BatchRows& batch);

 private:
  void check_rows(const BatchRows& batch) const;
  void load_tokens(int micro, const BatchRows& batch);
  void forward(int micro, const BatchRows& batch);
  double backward(int micro, Optimizer& optimizer);
  void wait_sends();

  Model& model_;
  const Grid& grid_;
  DeviceCollectives collectives_;
  long global_batch_;
  int micro_batch_;
  int micro_batches_;
  float loss_scale_;
  std::vector<Request> forward_sends_;  // per slot
  Request backward_send_;
  std::vector<int32_t> unused_;  // (micro_batch, T) zeros: the tokens a stage does not use
};

}  // namespace mptrain
