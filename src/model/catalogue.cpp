// The GPT-2 tensor table (catalogue.hpp) and what derives from it directly: the expansion over
// the layers, the TP shard of each tensor, and which stage holds which tensors.
#include "mptrain/model/catalogue.hpp"

#include <algorithm>
#include <cmath>

#include "mptrain/core/error.hpp"

namespace mptrain {

namespace {

// The extents the table is written in, resolved against a ModelConfig.
enum class Dim { none, C, C3, C4, V, T };

// How a tensor starts (GPT-2's initialisation): N(0, 0.02) for the weights and embeddings, the
// two projections into the residual stream N(0, 0.02/sqrt(2 n_layer)); biases zero,
// LayerNorm gains one.
enum class Init { zeros, ones, normal, normal_residual };

struct Row {
  Module module;
  Role role;
  const char* name;  // in a block: after "h.{i}."
  Dim rows, cols;    // global shape; cols = Dim::none for a vector
  Split split;
  int parts;
  Init init;
  bool decay;
  const char* product = nullptr;  // the linear layer it is the weight of
  bool tied = false;
};

using enum Module;
using enum Role;
using enum Dim;
using enum Split;
using enum Init;
constexpr bool decay = true, no_decay = false;

// The first stage: the token and position embeddings.
constexpr Row embedding_rows[] = {
    // (V, C) vocab-parallel over tp: ceil(V/tp) rows each; tied: the LM head's weight too
    {token_embedding, weight, "wte", V, C, vocab, 1, normal, no_decay, "lm_head", true},
    // (T, C) every TP rank whole
    {position_embedding, weight, "wpe", T, C, replicated, 1, normal, no_decay},
};

// One transformer block, h.{i}.*, in the order the flat buffer holds them.
constexpr Row block_rows[] = {
    // (C) (C) LayerNorm before attention, every TP rank whole
    {attn_norm, weight, "ln_1.weight", C, none, replicated, 1, ones, no_decay},
    {attn_norm, bias, "ln_1.bias", C, none, replicated, 1, zeros, no_decay},
    // (3C, C) (3C) rows q|k|v, column parallel over tp: each rank the rows of its heads
    {attn_qkv, weight, "attn.c_attn.weight", C3, C, rows, 3, normal, decay, "qkv"},
    {attn_qkv, bias, "attn.c_attn.bias", C3, none, rows, 3, zeros, no_decay},
    // (C, C) row parallel over tp: each rank the columns of its heads; (C) bias whole
    {attn_proj, weight, "attn.c_proj.weight", C, C, columns, 1, normal_residual, decay,
     "attn.proj"},
    {attn_proj, bias, "attn.c_proj.bias", C, none, replicated, 1, zeros, no_decay},
    // (C) (C) LayerNorm before the MLP, every TP rank whole
    {mlp_norm, weight, "ln_2.weight", C, none, replicated, 1, ones, no_decay},
    {mlp_norm, bias, "ln_2.bias", C, none, replicated, 1, zeros, no_decay},
    // (4C, C) (4C) column parallel over tp: each rank 4C/tp rows
    {mlp_fc, weight, "mlp.c_fc.weight", C4, C, rows, 1, normal, decay, "fc"},
    {mlp_fc, bias, "mlp.c_fc.bias", C4, none, rows, 1, zeros, no_decay},
    // (C, 4C) row parallel over tp: each rank 4C/tp columns; (C) bias whole
    {mlp_proj, weight, "mlp.c_proj.weight", C, C4, columns, 1, normal_residual, decay,
     "fc.proj"},
    {mlp_proj, bias, "mlp.c_proj.bias", C, none, replicated, 1, zeros, no_decay},
};

// The last stage: the final LayerNorm (the LM head is the tied wte).
constexpr Row head_rows[] = {
    // (C) (C) every TP rank whole
    {final_norm, weight, "ln_f.weight", C, none, replicated, 1, ones, no_decay},
    {final_norm, bias, "ln_f.bias", C, none, replicated, 1, zeros, no_decay},
};

int64_t extent(Dim d, const ModelConfig& m) {
  switch (d) {
    case Dim::none: return 1;
    case Dim::C: return m.n_embd;
    case Dim::C3: return 3 * int64_t(m.n_embd);
    case Dim::C4: return 4 * int64_t(m.n_embd);
    case Dim::V: return m.vocab_size;
    case Dim::T: return m.seq_len;
  }
  return 0;
}

TensorDesc describe(const Row& row, Part part, int layer, const ModelConfig& m) {
  TensorDesc t;
  t.name = (part == Part::block ? "h." + std::to_string(layer) + "." : std::string()) + row.name;
  t.shape = {extent(row.rows, m)};
  if (row.cols != Dim::none) t.shape.push_back(extent(row.cols, m));
  t.part = part;
  t.layer = layer;
  t.module = row.module;
  t.role = row.role;
  t.split = row.split;
  t.parts = row.parts;
  t.init = row.init == Init::zeros ? InitKind::zeros
           : row.init == Init::ones ? InitKind::ones
                                    : InitKind::normal;
  if (row.init == Init::normal) t.init_std = 0.02f;
  if (row.init == Init::normal_residual) t.init_std = 0.02f / std::sqrt(2.0f * m.n_layer);
  t.decay = row.decay;
  t.tied = row.tied;
  t.product = row.product;
  return t;
}

}  // namespace

std::vector<TensorDesc> gpt2_tensors(const ModelConfig& m) {
  std::vector<TensorDesc> list;
  for (const Row& row : embedding_rows) list.push_back(describe(row, Part::embedding, -1, m));
  for (int layer = 0; layer < m.n_layer; ++layer)
    for (const Row& row : block_rows) list.push_back(describe(row, Part::block, layer, m));
  for (const Row& row : head_rows) list.push_back(describe(row, Part::head, -1, m));
  return list;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> gpt2_tensor_shapes(int n_layer,
                                                                             int n_embd,
                                                                             int seq_len,
                                                                             int vocab_size) {
  ModelConfig m;
  m.n_layer = n_layer, m.n_embd = n_embd, m.seq_len = seq_len, m.vocab_size = vocab_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> list;
  for (TensorDesc& t : gpt2_tensors(m)) list.emplace_back(std::move(t.name), std::move(t.shape));
  return list;
}

int vocab_rows_owned(int V, int tp, int tp_rank) {
  const int per_rank = vocab_rows_per_rank(V, tp);
  return std::clamp(V - tp_rank * per_rank, 0, per_rank);
}

ShardSpec shard_of(const TensorDesc& t, int tp, int tp_rank) {
  ShardSpec s;
  s.name = t.name;
  s.global_shape = t.shape;
  const int64_t rows = t.rows(), cols = t.cols();
  switch (t.split) {
    case Split::replicated:
      s.local_rows = rows, s.local_cols = cols;
      s.blocks.push_back({0, 0, 0, 0, rows, cols});
      break;
    case Split::rows: {
      const int64_t part_rows = rows / t.parts;     // e.g. C for each of q, k, v
      const int64_t local_part = part_rows / tp;    // this rank's rows of each part
      s.local_rows = local_part * t.parts, s.local_cols = cols;
      for (int j = 0; j < t.parts; ++j)
        s.blocks.push_back({j * part_rows + tp_rank * local_part, 0, j * local_part, 0,
                            local_part, cols});
      break;
    }
    case Split::columns:
      s.local_rows = rows, s.local_cols = cols / tp;
      s.blocks.push_back({0, tp_rank * s.local_cols, 0, 0, rows, s.local_cols});
      break;
    case Split::vocab: {
      const int V = int(rows), owned = vocab_rows_owned(V, tp, tp_rank);
      s.local_rows = vocab_rows_per_rank(V, tp), s.local_cols = cols;
      if (owned > 0) s.blocks.push_back({tp_rank * s.local_rows, 0, 0, 0, owned, cols});
      break;
    }
  }
  return s;
}

int64_t local_elements(const TensorDesc& t, int tp) { return shard_of(t, tp, 0).local_size(); }

std::vector<int> stage_block_counts(const ModelConfig& m, int pp,
                                    const std::vector<int>& split) {
  if (split.empty()) {
    MPT_CHECK(pp >= 1 && m.n_layer % pp == 0, "stage_block_counts: n_layer " +
                  std::to_string(m.n_layer) + " over pp " + std::to_string(pp) + " unequally");
    return std::vector<int>(size_t(pp), m.n_layer / pp);
  }
  int total = 0;
  for (int count : split) total += count;
  MPT_CHECK(int(split.size()) == pp && total == m.n_layer &&
                *std::min_element(split.begin(), split.end()) >= 1,
            "stage_block_counts: a split of " + std::to_string(total) + " blocks over " +
                std::to_string(split.size()) + " stages for n_layer " +
                std::to_string(m.n_layer) + ", pp " + std::to_string(pp));
  return split;
}

StageLayers stage_layers(const ModelConfig& m, int pp, int pp_rank,
                         const std::vector<int>& split) {
  MPT_CHECK(pp_rank >= 0 && pp_rank < pp,
            "stage_layers: stage " + std::to_string(pp_rank) + " of pp " + std::to_string(pp));
  const std::vector<int> counts = stage_block_counts(m, pp, split);
  StageLayers layers;
  for (int s = 0; s < pp_rank; ++s) layers.first += counts[size_t(s)];
  layers.count = counts[size_t(pp_rank)];
  return layers;
}

std::vector<TensorDesc> stage_tensors(const ModelConfig& m, int pp, int pp_rank,
                                      const std::vector<int>& split) {
  const StageLayers layers = stage_layers(m, pp, pp_rank, split);
  const bool first = pp_rank == 0, last = pp_rank == pp - 1;
  auto on_stage = [&](int l) { return l >= layers.first && l < layers.first + layers.count; };
  std::vector<TensorDesc> held;
  for (TensorDesc& t : gpt2_tensors(m)) {
    const bool holds = (t.part == Part::embedding && (first || (last && t.tied))) ||
                       (t.part == Part::block && on_stage(t.layer)) ||
                       (t.part == Part::head && last);
    if (holds) held.push_back(std::move(t));
  }
  return held;
}

bool held_as_copy(const TensorDesc& t, int pp_rank) {
  return t.part == Part::embedding && pp_rank != 0;
}

LayerShape layer_shape(const ModelConfig& m, int micro_batch, int tp, int tp_rank) {
  LayerShape s;
  s.B = micro_batch, s.T = m.seq_len, s.C = m.n_embd, s.n_head = m.n_head;
  s.vocab = m.vocab_size, s.tp = tp, s.tp_rank = tp_rank;
  return s;
}

}  // namespace mptrain
