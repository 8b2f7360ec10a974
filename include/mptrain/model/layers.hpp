// The GPT-2 layers with Megatron-style tensor parallelism, forward and backward side by side:
// the vocab-parallel token embedding, the transformer block (column-parallel QKV and c_fc,
// row-parallel c_proj's ending in one TP all-reduce each), and the head (final LayerNorm, the
// tied vocab-parallel LM head and a cross-entropy that never gathers the logits).
// Shapes are written per rank: B = micro-batch, T = sequence, C = n_embd, tp = TP size,
// Cl = C/tp, NHl = n_head/tp, HS = C/n_head, Hl = 4C/tp, Vl = ceil(V/tp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/backend/tensor.hpp"

namespace mptrain {

enum class InitKind { zeros, ones, normal };

// One parameter tensor of this rank, placed in the flat parameter and gradient buffers.
struct ParamInfo {
  ShardSpec spec;
  size_t offset = 0;           // element offset into ParamSet's flat buffers
  bool weight_decay = false;   // decoupled weight decay applies
  // True on exactly one rank of each TP group / tied-embedding pair for this tensor, so the
  // global gradient norm counts every replicated parameter once (DP replicas are handled by
  // sharding the norm over DP).
  bool norm_owner = true;
  InitKind init = InitKind::zeros;
  float init_std = 0.0f;
  size_t size() const { return static_cast<size_t>(spec.local_size()); }
};

// Every parameter of this rank in one flat buffer (and its gradient in another of the same
// layout), so the optimizer, the DP reduction and checkpoints see one contiguous range.
class ParamSet {
 public:
  size_t add(ParamInfo info);  // registration, before allocate(); returns the index
  // Allocates the flat buffers, padded to a multiple of `pad_multiple` elements (ZeRO shards).
  void allocate(Backend& backend, size_t pad_multiple);
  // Fills every parameter with its layout-independent initial values (host, then copied).
  void initialize(uint64_t seed);

  float* param(size_t i) { return params_.data() + infos_[i].offset; }
  float* grad(size_t i) { return grads_.data() + infos_[i].offset; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  Buffer& params() { return params_; }
  Buffer& grads() { return grads_; }
  size_t used() const { return used_; }    // elements holding parameters
  size_t padded() const { return params_.size(); }

 private:
  Backend* backend_ = nullptr;
  std::vector<ParamInfo> infos_;
  size_t used_ = 0;
  Buffer params_, grads_;
};

// Collectives on backend memory: synchronises the backend, then hands MPI the pointers
// directly when the backend's memory is host-accessible, otherwise stages through the host.
// Blocking operations share one staging buffer. Each non-blocking send stages into a buffer
// of its own, which its Request holds until the send completed; finished buffers are reused
// by later sends, so the pool grows only to the number of sends in flight at once.
class DeviceCollectives {
 public:
  explicit DeviceCollectives(Backend& backend) : backend_(backend) {}
  void allreduce_sum(const Comm& comm, float* data, size_t n);  // collective over comm
  void allreduce_max(const Comm& comm, float* data, size_t n);  // collective over comm
  // Not collective. `data` may be overwritten as soon as this returns (it is staged, or, with
  // host-accessible memory, must stay untouched until the request completes: the caller's
  // duty, as for Comm::isend).
  Request isend(const Comm& comm, const float* data, size_t n, int dest, int tag);
  void recv(const Comm& comm, float* data, size_t n, int source, int tag);  // not collective

  // The send staging pool, for tests: buffers allocated, and those held by unfinished sends.
  size_t send_staging_buffers() const { return send_staging_.size(); }
  size_t send_staging_in_use() const;

 private:
  Backend& backend_;
  std::vector<float> staging_;
  std::vector<std::shared_ptr<std::vector<float>>> send_staging_;
};

struct LayerShape {
  int B = 1, T = 1, C = 1, n_head = 1, vocab = 1, tp = 1, tp_rank = 0;
  int HS() const { return C / n_head; }
  int NHl() const { return n_head / tp; }
  int Cl() const { return C / tp; }
  int Hl() const { return 4 * C / tp; }
  int Vl() const { return (vocab + tp - 1) / tp; }
  int vocab_start() const { return tp_rank * Vl(); }
  int vocab_owned() const;  // rows of wte this rank really holds (the rest is padding)
  int N() const { return B * T; }
};

// How a parameter is shared between ranks, for ShardSpec::writer.
struct Replication {
  bool over_tp = false;        // identical on every TP rank
  bool writer_stage = true;    // false on the last stage's copy of the tied embedding
};

// Registers ParamInfos with global-coordinate shard specs. `writer_base` is true on the ranks
// that write DP-replicated tensors (dp_rank == 0).
class ParamBuilder {
 public:
  ParamBuilder(ParamSet& set, const LayerShape& shape, bool writer_base)
      : set_(set), shape_(shape), writer_base_(writer_base) {}
  // A 1-D or 2-D tensor held whole (replicated over TP).
  size_t replicated(const std::string& name, std::vector<int64_t> shape, InitKind init, float std,
                    bool decay, Replication rep = {true, true});
  // Rows [r*rows_per_part .. ) of each of `parts` equal row-groups (q|k|v: parts = 3).
  size_t row_sharded(const std::string& name, int64_t global_rows, int64_t cols, int parts,
                     InitKind init, float std, bool decay);
  // Columns [r*cols/tp, (r+1)*cols/tp) of a [rows, cols] tensor.
  size_t col_sharded(const std::string& name, int64_t rows, int64_t global_cols, InitKind init,
                     float std, bool decay);
  // The vocab-parallel embedding [V, C]: Vl local rows, the owned ones written.
  size_t vocab_sharded(const std::string& name, int64_t cols, float std, bool decay,
                       bool writer_stage);

 private:
  ParamSet& set_;
  LayerShape shape_;
  bool writer_base_;
};

// Token + position embedding (first pipeline stage).
struct Embedding {
  size_t wte = 0, wpe = 0;  // ParamSet indices
  void register_params(ParamBuilder& pb, const LayerShape& s);
  // x(B,T,C) = wte[tokens] (TP all-reduce of the vocab shards) + wpe. Collective over TP.
  void forward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
               const LayerShape& s, const int32_t* tokens, float* x);
  // dwte(Vl,C) +=, dwpe(T,C) += from dx(B,T,C). No communication.
  void backward(Backend& be, ParamSet& ps, const LayerShape& s, const int32_t* tokens,
                const float* dx);
};

// Activations of one block for one micro-batch, kept from forward for backward.
struct BlockActivations {
  Buffer ln1, ln1_mean, ln1_rstd;  // (B,T,C) (B,T) (B,T)
  Buffer qkv;                      // (B,T,3Cl)
  Buffer att;                      // (B,NHl,T,T)
  Buffer atty;                     // (B,T,Cl)
  Buffer res2;                     // (B,T,C) residual after attention
  Buffer ln2, ln2_mean, ln2_rstd;  // (B,T,C) (B,T) (B,T)
  Buffer fch, fch_gelu;            // (B,T,Hl)
  Buffer out;                      // (B,T,C) residual after the MLP: the block's output
  BlockActivations(Backend& be, const LayerShape& s);
  size_t elements() const;  // floats held (the benchmark's memory report)
};

// Scratch for backward, shared by all blocks of the stage.
struct BlockScratch {
  Buffer dqkv;   // (B,T,3Cl)
  Buffer datt;   // (B,NHl,T,T)
  Buffer datty;  // (B,T,Cl)
  Buffer dfch;   // (B,T,Hl)
  Buffer dln;    // (B,T,C)
  BlockScratch(Backend& be, const LayerShape& s);
  size_t elements() const;  // floats held
};

struct Block {
  size_t ln1_w = 0, ln1_b = 0, qkv_w = 0, qkv_b = 0, proj_w = 0, proj_b = 0;
  size_t ln2_w = 0, ln2_b = 0, fc_w = 0, fc_b = 0, fcproj_w = 0, fcproj_b = 0;
  void register_params(ParamBuilder& pb, const LayerShape& s, int layer, int n_layer);
  // out = x + attn(ln1(x)); out += mlp(ln2(out)). Two TP all-reduces (collective over TP).
  void forward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
               const LayerShape& s, const float* x, BlockActivations& a);
  // dres(B,T,C): in, the gradient of the block's output; out, the gradient of its input.
  // Parameter gradients +=. Two TP all-reduces (collective over TP).
  void backward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                const LayerShape& s, const float* x, const BlockActivations& a,
                BlockScratch& sc, float* dres);
};

// Final LayerNorm, tied LM head and vocab-parallel cross-entropy (last pipeline stage).
struct Head {
  size_t lnf_w = 0, lnf_b = 0, wte = 0;
  void register_params(ParamBuilder& pb, const LayerShape& s, size_t shared_wte);
  struct Work {
    Buffer lnf, lnf_mean, lnf_rstd;  // (B,T,C) (B,T) (B,T)
    Buffer logits;                   // (B,T,Vl), becomes dlogits in backward
    Buffer row_max, stats, losses;   // (N) (2N: sumexp | target logit) (N)
    Work(Backend& be, const LayerShape& s);
    size_t elements() const;  // floats held
  };
  // Returns the sum of the B*T token losses. With backward: dx(B,T,C) = the gradient of
  // loss_scale * sum(losses) with respect to x, and dwte, dlnf +=. Collective over TP.
  double forward_backward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                          const LayerShape& s, const float* x, const int32_t* targets,
                          float loss_scale, bool backward, Work& w, float* dx);
};

}  // namespace mptrain
