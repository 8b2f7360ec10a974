// The GPT-2 model as one pipeline stage sees it: the parameters of this rank (its layers,
// its TP shards), the activations of the micro-batches in flight, and stage-level forward,
// loss and backward. The pipeline schedule (trainer) decides the order; the model never
// branches on the device and talks to other ranks only through the layers' TP collectives.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/model/config.hpp"
#include "mptrain/model/layers.hpp"

namespace mptrain {

class Model {
 public:
  // `config.vocab_size` must be resolved (> 0). `slots` = micro-batches kept in flight.
  // The parameter buffers are padded to a multiple of dp (ZeRO shards). `stage_split`: the
  // blocks of each pipeline stage ([parallel] stage_layers, resolved); empty = n_layer / pp.
  // `recompute` = what each block keeps of its micro-batches for backward (layers.hpp).
  Model(Backend& backend, const Grid& grid, const ModelConfig& config, int micro_batch, int slots,
        uint64_t seed, const std::vector<int>& stage_split = {},
        Recompute recompute = Recompute::none);

  const LayerShape& shape() const { return shape_; }
  ParamSet& params() { return params_; }
  int first_layer() const { return first_layer_; }
  int local_layers() const { return static_cast<int>(blocks_.size()); }
  int slots() const { return static_cast<int>(acts_.size()); }
  size_t activation_size() const { return size_t(shape_.N()) * shape_.C; }  // (B,T,C)
  // Backend memory held besides the parameters, for the benchmark's memory report: floats of
  // the blocks' saved activations per slot, the stage inputs, the blocks' shared scratch
  // (backward and recomputation), the head's work and the stage gradient; int32 elements of
  // the token ids and targets.
  size_t activation_elements() const;
  size_t token_elements() const;

  // Copies a micro-batch's token ids (B*T each) into the slot (host to backend memory).
  void set_tokens(int slot, const int32_t* inputs, const int32_t* targets);
  // (B,T,C): where a non-first stage receives its input activation.
  float* stage_input(int slot) { return input_[slot].data(); }
  // (B,T,C): the stage's output (the last block's residual stream).
  const float* stage_output(int slot) const;
  // (B,T,C): the gradient of the stage output before backward(), of its input after.
  float* stage_grad() { return dres_.data(); }

  // Embedding (first stage) and this stage's blocks. Collective over TP.
  void forward(int slot);
  // Last stage: final LayerNorm, LM head and loss on the stage output; returns the sum of the
  // B*T token losses; with backward, leaves d(loss_scale * sum)/d(output) in stage_grad().
  // Collective over TP.
  double loss(int slot, float loss_scale, bool backward);
  // Last stage, after loss(): the logits of token `position` of sequence 0 of the
  // micro-batch (this rank's vocabulary shard, padding dropped).
  std::vector<float> logits_row(int position) const;
  // Blocks (last to first) and the embedding (first stage), starting from stage_grad().
  // After each layer, grads_ready(offset) says every gradient at or above that flat offset is
  // final for this micro-batch. Collective over TP.
  void backward(int slot, const std::function<void(size_t)>& grads_ready);

 private:
  LayerContext context();  // what the layers' calls need
  Backend& be_;
  const Grid& grid_;
  LayerShape shape_;
  int first_layer_ = 0;
  ParamSet params_;
  DeviceCollectives collectives_;
  std::unique_ptr<Embedding> embedding_;  // first stage only
  std::vector<Block> blocks_;
  std::unique_ptr<Head> head_;            // last stage only
  std::vector<std::vector<BlockActivations>> acts_;  // [slot][local layer]
  std::vector<Buffer> input_;                        // [slot] (B,T,C)
  std::vector<IntBuffer> tokens_, targets_;          // [slot] (B,T)
  std::unique_ptr<BlockScratch> scratch_;
  std::unique_ptr<Head::Work> head_work_;
  Buffer dres_;
};

}  // namespace mptrain
