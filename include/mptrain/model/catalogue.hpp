// The model catalogue: the one description of GPT-2's parameter tensors. For every tensor it
// gives the checkpoint name, the global shape (nn.Linear orientation [out, in]), how tensor
// parallelism splits it, its initialisation, whether AdamW decays it, the layer that owns it
// and whether another layer shares it (the LM head reads the token embedding: tied). The table
// itself is in catalogue.cpp, shape-annotated; everything else derives from it:
//   * registration (ParamSet::add, Model): each stage registers its tensors in catalogue order,
//     which fixes the flat buffer's layout (DP buckets, ZeRO shards and checkpoints rely on it);
//   * the layers find their tensors by module and role (ParamSet::find), never by name;
//   * checkpoints: names and shapes (mptrain-ckpt verify, the Hugging Face / llm.c converters);
//   * the tied embedding's gradient sum (optimizer) finds the tensor by its `tied` flag;
//   * the analytic counts (analytic.hpp): parameters, FLOPs, GEMM shapes, memory, traffic.
// Adding a tensor is a row in the table (and a find() in the layer that uses it); adding a layer
// is a Module value, its rows, and its struct in layers.hpp.
//
// Shapes per rank (LayerShape): B = micro-batch, T = sequence, C = n_embd, tp = TP size,
// Cl = C/tp, NHl = n_head/tp, HS = C/n_head, Hl = 4C/tp, Vl = ceil(V/tp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mptrain/core/shard.hpp"
#include "mptrain/model/config.hpp"

namespace mptrain {

// Where a tensor is used: the embedding (first pipeline stage), a transformer block (the stage
// holding that block) or the head (last stage).
enum class Part { embedding, block, head };

// The modules of GPT-2 that own parameters; each has a weight and, except the embeddings, a
// bias. The layers bind their tensors by module (and layer), so the names stay in the table.
enum class Module {
  token_embedding,     // also the LM head's weight (tied)
  position_embedding,
  attn_norm,           // LayerNorm before attention
  attn_qkv,            // column-parallel q|k|v projection
  attn_proj,           // row-parallel output projection of attention
  mlp_norm,            // LayerNorm before the MLP
  mlp_fc,              // column-parallel expansion to 4C
  mlp_proj,            // row-parallel projection back to C
  final_norm,          // LayerNorm before the LM head
};
enum class Role { weight, bias };

// How tensor parallelism splits a tensor over the TP ranks (Megatron-style).
enum class Split {
  replicated,  // every TP rank holds it whole (LayerNorms, wpe, row-parallel biases)
  rows,        // column-parallel: each of `parts` equal row groups split in tp equal slices
  columns,     // row-parallel: the columns split in tp equal slices
  vocab,       // vocab-parallel: ceil(V/tp) rows per rank, the tail of the last ranks padding
};

enum class InitKind { zeros, ones, normal };

// One tensor of the model, in global terms (no layout in it).
struct TensorDesc {
  std::string name;            // checkpoint name: "wte", "h.3.attn.c_attn.weight", "ln_f.bias"
  std::vector<int64_t> shape;  // global: [out, in] for matrices, [n] for vectors
  Part part = Part::embedding;
  int layer = -1;              // the block (Part::block), else -1
  Module module = Module::token_embedding;
  Role role = Role::weight;
  Split split = Split::replicated;
  int parts = 1;               // Split::rows: row groups split separately (q|k|v: 3)
  InitKind init = InitKind::zeros;
  float init_std = 0.0f;       // InitKind::normal
  bool decay = false;          // AdamW's decoupled weight decay applies
  bool tied = false;           // the head uses it too: the last stage holds a copy (pp > 1)
  // The weight of a linear layer y = x W^T: the product's label ("qkv", "lm_head"), as the
  // benchmark reports it; nullptr for tensors that are not multiplied.
  const char* product = nullptr;

  int64_t rows() const { return shape[0]; }
  int64_t cols() const { return shape.size() > 1 ? shape[1] : 1; }
  int64_t elements() const { return rows() * cols(); }
};

// Every tensor of the GPT-2 `config` describes, in model order: the embeddings, the blocks
// (layer 0 first), the final LayerNorm. This order is the registration order.
std::vector<TensorDesc> gpt2_tensors(const ModelConfig& config);

// The checkpoint's tensor list (/model, /optim/m, /optim/v): gpt2_tensors' names and shapes.
std::vector<std::pair<std::string, std::vector<int64_t>>> gpt2_tensor_shapes(int n_layer,
                                                                             int n_embd,
                                                                             int seq_len,
                                                                             int vocab_size);

// The vocab-parallel split of V rows over tp ranks: ceil(V/tp) rows each; rank r's start and
// the rows it really holds (the rest of its ceil(V/tp) are padding).
inline int vocab_rows_per_rank(int V, int tp) { return (V + tp - 1) / tp; }
int vocab_rows_owned(int V, int tp, int tp_rank);

// TP rank `tp_rank`'s part of the tensor: its local storage (row-major, padding included) and
// the blocks of the global tensor it holds. `writer` is left true (ParamSet::add decides it).
ShardSpec shard_of(const TensorDesc& tensor, int tp, int tp_rank);
// Elements of every TP rank's local storage of the tensor (the same on every rank).
int64_t local_elements(const TensorDesc& tensor, int tp);

// The blocks pipeline stage `pp_rank` of `pp` holds: [first, first + count). `split` gives the
// blocks of each stage in order ([parallel] stage_layers: pp positive counts summing to
// n_layer); empty means the equal split, n_layer / pp each (then pp must divide n_layer).
// Stages always hold contiguous blocks in model order, whatever the split.
struct StageLayers {
  int first = 0, count = 0;
};
StageLayers stage_layers(const ModelConfig& config, int pp, int pp_rank,
                         const std::vector<int>& split = {});
// The split itself: `split` when given, else n_layer / pp for every stage.
std::vector<int> stage_block_counts(const ModelConfig& config, int pp,
                                    const std::vector<int>& split = {});
// The tensors the stage holds, in registration order: the embedding's on the first stage (the
// tied one on the last stage too), its blocks', the head's on the last stage.
std::vector<TensorDesc> stage_tensors(const ModelConfig& config, int pp, int pp_rank,
                                      const std::vector<int>& split = {});
// True for a tensor the stage holds as a copy of another stage's (the last stage's tied wte
// when pp > 1): the same global tensor, written and counted for the norm by its owner.
bool held_as_copy(const TensorDesc& tensor, int pp_rank);

// The dimensions one rank's layers compute with (see the top of this file).
struct LayerShape {
  int B = 1, T = 1, C = 1, n_head = 1, vocab = 1, tp = 1, tp_rank = 0;
  int HS() const { return C / n_head; }
  int NHl() const { return n_head / tp; }
  int Cl() const { return C / tp; }
  int Hl() const { return 4 * C / tp; }
  int Vl() const { return vocab_rows_per_rank(vocab, tp); }
  int vocab_start() const { return tp_rank * Vl(); }
  int vocab_owned() const { return vocab_rows_owned(vocab, tp, tp_rank); }
  int N() const { return B * T; }
};
// The shape of TP rank `tp_rank` of `tp` computing micro-batches of `micro_batch` sequences.
LayerShape layer_shape(const ModelConfig& config, int micro_batch, int tp, int tp_rank);

}  // namespace mptrain
