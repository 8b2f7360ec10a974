// 1F1B pipeline schedule over point-to-point MPI. Sends are non-blocking and receives
// blocking, so no stage can deadlock; a send buffer is reused only after its request
// completed (forward outputs per slot, the backward gradient before the next backward).
#include "mptrain/parallel/pipeline.hpp"

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
}

void PipelineSchedule::load_tokens(int micro, const TokenDataset& data,
                                   const SequentialSampler& sampler) {
  // This DP rank's rows of the global batch, micro-batch `micro` of them.
  const long rows_per_dp = global_batch_ / grid_.layout().dp;
  const long first_row = grid_.dp_rank() * rows_per_dp + long(micro) * micro_batch_;
  sampler.rows(data, first_row, micro_batch_, inputs_, targets_);
  model_.set_tokens(micro % model_.slots(), inputs_.data(), targets_.data());
}

void PipelineSchedule::forward(int micro, const TokenDataset& data,
                               const SequentialSampler& sampler) {
  const int slot = micro % model_.slots();
  forward_sends_[slot].wait();  // the slot's output buffer is about to be overwritten
  load_tokens(micro, data, sampler);
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
  model_.backward(slot, [&](size_t offset) { optimizer.grads_ready(offset); });  // TP
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

double PipelineSchedule::train_batch(const TokenDataset& data, const SequentialSampler& sampler,
                                     Optimizer& optimizer) {
  double loss = 0;
  for (const PipelineOp& op : one_f_one_b_order(grid_.layout().pp, grid_.pp_rank(), micro_batches_))
    if (op.kind == PipelineOp::forward)
      forward(op.micro, data, sampler);
    else
      loss += backward(op.micro, optimizer);
  wait_sends();
  optimizer.finish_reduction();  // collective over DP (and the embedding pair)
  return grid_.tp_rank() == 0 ? loss : 0.0;
}

double PipelineSchedule::eval_batch(const TokenDataset& data, const SequentialSampler& sampler) {
  double loss = 0;
  for (int i = 0; i < micro_batches_; ++i) {
    forward(i, data, sampler);
    if (grid_.last_stage()) loss += model_.loss(i % model_.slots(), 0.0f, false);  // TP
  }
  wait_sends();
  return grid_.last_stage() && grid_.tp_rank() == 0 ? loss : 0.0;
}

}  // namespace mptrain
