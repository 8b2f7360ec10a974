// 1F1B pipeline schedule over point-to-point MPI. Sends are non-blocking and receives
// blocking, so no stage can deadlock; a send buffer is reused only after its request
// completed (forward outputs per slot, the backward gradient before the next backward).
#include "mptrain/model/pipeline.hpp"

#include <algorithm>

#include "mptrain/core/error.hpp"

namespace mptrain {

PipelineSchedule::PipelineSchedule(Backend& backend, Model& model, const Grid& grid,
                                   long global_batch, int micro_batch)
    : model_(model), grid_(grid), collectives_(backend), global_batch_(global_batch),
      micro_batch_(micro_batch) {
  micro_batches_ = static_cast<int>(global_batch / (long(grid.layout().dp) * micro_batch));
  loss_scale_ = static_cast<float>(1.0 / (double(global_batch) * model.shape().T));
  forward_sends_.resize(model.slots());
  unused_.assign(size_t(micro_batch) * size_t(model.shape().T), 0);
}

void PipelineSchedule::check_rows(const BatchRows& batch) const {
  const size_t tokens = size_t(global_batch_ / grid_.layout().dp) * size_t(model_.shape().T);
  MPT_CHECK(!grid_.first_stage() || batch.inputs.size() == tokens,
            "the first stage was handed " + std::to_string(batch.inputs.size()) +
                " input tokens, not its rows' " + std::to_string(tokens));
  MPT_CHECK(!grid_.last_stage() || batch.targets.size() == tokens,
            "the last stage was handed " + std::to_string(batch.targets.size()) +
                " target tokens, not its rows' " + std::to_string(tokens));
}

void PipelineSchedule::load_tokens(int micro, const BatchRows& batch) {
  // Micro-batch `micro` of this DP rank's rows; a stage that does not use the inputs (or the
  // targets) gets zeros in their place.
  const size_t offset = size_t(micro) * unused_.size();
  const int32_t* inputs = grid_.first_stage() ? batch.inputs.data() + offset : unused_.data();
  const int32_t* targets = grid_.last_stage() ? batch.targets.data() + offset : unused_.data();
  model_.set_tokens(micro % model_.slots(), inputs, targets);
}

void PipelineSchedule::forward(int micro, const BatchRows& batch) {
  const int slot = micro % model_.slots();
  forward_sends_[slot].wait();  // the slot's output buffer is about to be overwritten
  load_tokens(micro, batch);
  const size_t n = model_.activation_size();
  if (!grid_.first_stage())
    collectives_.recv(grid_.pp(), model_.stage_input(slot), n, grid_.pp_rank() - 1, micro);
  model_.forward(slot);  // collective over TP
  if (!grid_.last_stage())
    forward_sends_[slot] =
        collectives_.isend(grid_.pp(), model_.stage_output(slot), n, grid_.pp_rank() + 1, micro);
}

double PipelineSchedule::backward(int micro, Optimizer& optimizer) {
  const int slot = micro % model_.slots();
  const size_t n = model_.activation_size();
  backward_send_.wait();  // stage_grad() is about to be overwritten
  double loss = 0;
  if (grid_.last_stage())
    loss = model_.loss(slot, loss_scale_, true);  // collective over TP
  else
    collectives_.recv(grid_.pp(), model_.stage_grad(), n, grid_.pp_rank() + 1, micro);
  if (micro == micro_batches_ - 1) optimizer.begin_last_backward();
  model_.backward(slot, [&](size_t offset) { optimizer.grads_ready(offset); });  // TP, DP
  optimizer.backward_done();  // collective over DP (ZeRO-2: this micro-batch's reductions)
  if (!grid_.first_stage())
    backward_send_ =
        collectives_.isend(grid_.pp(), model_.stage_grad(), n, grid_.pp_rank() - 1, micro);
  return loss;
}

void PipelineSchedule::wait_sends() {
  for (Request& r : forward_sends_) r.wait();
  backward_send_.wait();
}

std::vector<PipelineOp> one_f_one_b_order(int stages, int stage, int micro_batches) {
  const int m = micro_batches;
  const int warmup = std::min(stages - stage - 1, m);
  std::vector<PipelineOp> order;
  for (int i = 0; i < warmup; ++i) order.push_back({PipelineOp::forward, i});
  for (int i = 0; i < m - warmup; ++i) {
    order.push_back({PipelineOp::forward, warmup + i});
    order.push_back({PipelineOp::backward, i});
  }
  for (int i = m - warmup; i < m; ++i) order.push_back({PipelineOp::backward, i});
  return order;
}

double PipelineSchedule::train_batch(const BatchRows& batch, Optimizer& optimizer) {
  check_rows(batch);
  double loss = 0;
  for (const PipelineOp& op : one_f_one_b_order(grid_.layout().pp, grid_.pp_rank(), micro_batches_))
    if (op.kind == PipelineOp::forward)
      forward(op.micro, batch);
    else
      loss += backward(op.micro, optimizer);
  wait_sends();
  optimizer.finish_reduction();  // collective over DP (and the embedding pair)
  return grid_.tp_rank() == 0 ? loss : 0.0;
}

double PipelineSchedule::eval_batch(const BatchRows& batch) {
  check_rows(batch);
  double loss = 0;
  for (int i = 0; i < micro_batches_; ++i) {
    forward(i, batch);
    if (grid_.last_stage()) loss += model_.loss(i % model_.slots(), 0.0f, false);  // TP
  }
  wait_sends();
  return grid_.last_stage() && grid_.tp_rank() == 0 ? loss : 0.0;
}

}  // namespace mptrain
