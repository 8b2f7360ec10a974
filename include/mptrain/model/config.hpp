// The settings of the model module: the shape of the GPT-2 (ModelConfig) and the optimizer's
// (OptimConfig). They live with what they configure; the input deck (io/deck.hpp) fills them
// from its [model] and [optim] sections, and tools that build a model without a deck (weight
// import, the planner, tests) fill them directly.
#pragma once

#include <string>

namespace mptrain {

struct ModelConfig {
  int n_layer = 2;
  int n_head = 4;
  int n_embd = 128;
  int seq_len = 64;
  int vocab_size = 0;  // 0 = from the training dataset
};

struct OptimConfig {
  double lr = 3e-4;
  double min_lr = 0.0;
  long warmup_steps = 0;
  std::string schedule = "cosine";  // constant, cosine, linear
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_all = false;  // also decay biases, LayerNorm parameters and embeddings
  double grad_clip = 1.0;  // 0 = off
  int zero = 0;            // 0, 1 (AdamW state sharded over DP), 2 (and the gradients)
};

}  // namespace mptrain
