// The GPT-2 layers with Megatron-style tensor parallelism, forward and backward side by side:
// the vocab-parallel token embedding, the transformer block (column-parallel QKV and c_fc,
// row-parallel c_proj's ending in one TP all-reduce each), and the head (final LayerNorm, the
// tied vocab-parallel LM head and a cross-entropy that never gathers the logits).
// Each layer binds its tensors in the ParamSet by module (catalogue.hpp). Shapes are written
// per rank: B = micro-batch, T = sequence, C = n_embd, tp = TP size, Cl = C/tp,
// NHl = n_head/tp, HS = C/n_head, Hl = 4C/tp, Vl = ceil(V/tp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/model/params.hpp"
#include "mptrain/parallel/device_collectives.hpp"
#include "mptrain/parallel/grid.hpp"

namespace mptrain {

// Token + position embedding (first pipeline stage).
struct Embedding {
  size_t wte = 0, wpe = 0;  // ParamSet indices
  void bind(const ParamSet& ps);
  // x(B,T,C) = wte[tokens] (TP all-reduce of the vocab shards) + wpe. Collective over TP.
  void forward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
               const LayerShape& s, const int32_t* tokens, float* x);
  // dwte(Vl,C) +=, dwpe(T,C) += from dx(B,T,C). No communication.
  void backward(Backend& be, ParamSet& ps, const LayerShape& s, const int32_t* tokens,
                const float* dx);
};

// The layers' work buffers below each list their buffers and sizes once, in each(s, f), which
// calls f(&Struct::buffer, elements) for every buffer: the constructor allocates from it, and
// elements(s) sums it for the analytic memory count (analytic.hpp) without allocating.

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
  template <class F>
  static void each(const LayerShape& s, F&& f);
  static size_t elements(const LayerShape& s);  // floats it holds for shape s
  size_t elements() const;  // floats held (the benchmark's measured memory)
  LayerShape shape;
};

// Scratch for backward, shared by all blocks of the stage.
struct BlockScratch {
  Buffer dqkv;   // (B,T,3Cl)
  Buffer datt;   // (B,NHl,T,T)
  Buffer datty;  // (B,T,Cl)
  Buffer dfch;   // (B,T,Hl)
  Buffer dln;    // (B,T,C)
  BlockScratch(Backend& be, const LayerShape& s);
  template <class F>
  static void each(const LayerShape& s, F&& f);
  static size_t elements(const LayerShape& s);
  size_t elements() const;
  LayerShape shape;
};

struct Block {
  size_t ln1_w = 0, ln1_b = 0, qkv_w = 0, qkv_b = 0, proj_w = 0, proj_b = 0;
  size_t ln2_w = 0, ln2_b = 0, fc_w = 0, fc_b = 0, fcproj_w = 0, fcproj_b = 0;
  void bind(const ParamSet& ps, int layer);
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
  size_t lnf_w = 0, lnf_b = 0, wte = 0;  // wte: the tied token embedding
  void bind(const ParamSet& ps);
  struct Work {
    Buffer lnf, lnf_mean, lnf_rstd;  // (B,T,C) (B,T) (B,T)
    Buffer logits;                   // (B,T,Vl), becomes dlogits in backward
    Buffer row_max, stats, losses;   // (N) (2N: sumexp | target logit) (N)
    Work(Backend& be, const LayerShape& s);
    template <class F>
    static void each(const LayerShape& s, F&& f);
    static size_t elements(const LayerShape& s);
    size_t elements() const;
    LayerShape shape;
  };
  // Returns the sum of the B*T token losses. With backward: dx(B,T,C) = the gradient of
  // loss_scale * sum(losses) with respect to x, and dwte, dlnf +=. Collective over TP.
  double forward_backward(Backend& be, DeviceCollectives& dc, const Grid& grid, ParamSet& ps,
                          const LayerShape& s, const float* x, const int32_t* targets,
                          float loss_scale, bool backward, Work& w, float* dx);
};

}  // namespace mptrain
