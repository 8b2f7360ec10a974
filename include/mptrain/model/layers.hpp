// The GPT-2 layers with Megatron-style tensor parallelism, forward and backward side by side:
// the vocab-parallel token embedding, the transformer block (column-parallel QKV and MLP
// expansion, row-parallel output projections) and the head (final LayerNorm, the tied
// vocab-parallel LM head and a cross-entropy that never gathers the logits).
//
// The API reads like the math: every call gets one LayerContext (backend, parameters, the TP
// communicator, the per-rank shape); each linear layer is a Linear bound to its tensors in the
// catalogue, run by linear_forward / linear_backward; the tensor-parallel all-reduces are
// Megatron's conjugate pair, named (reduce_from_tp, copy_to_tp_backward). Shapes are written
// per rank: B = micro-batch, T = sequence, C = n_embd, tp = TP size, Cl = C/tp,
// NHl = n_head/tp, HS = C/n_head, Hl = 4C/tp, Vl = ceil(V/tp), N = B*T.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mptrain/backend/backend.hpp"
#include "mptrain/backend/tensor.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/model/params.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/parallel/device_collectives.hpp"

namespace mptrain {

// What every layer call of this rank needs. The layers talk to other ranks only through `tp`.
struct LayerContext {
  Backend& be;
  ParamSet& params;
  DeviceCollectives& dc;  // collectives on backend memory
  const Comm& tp;         // this rank's tensor-parallel group
  LayerShape shape;
  float* param(size_t i) const { return params.param(i); }
  float* grad(size_t i) const { return params.grad(i); }
};

// ---- tensor parallelism: Megatron's conjugate pair (f and g of the Megatron-LM paper)
// copy_to_tp marks where a tensor every TP rank holds whole enters a column-parallel layer:
//   forward the identity; backward, each rank's partial input gradient is summed over TP.
// reduce_from_tp marks where the partial outputs of a row-parallel layer (or of the
// vocab-parallel embedding) leave it: forward summed over TP; backward the identity.
// The identity halves have no code; the layers name them where they apply.
void reduce_from_tp(const LayerContext& cx, float* y, size_t n);        // collective over TP
void copy_to_tp_backward(const LayerContext& cx, float* dx, size_t n);  // collective over TP

// ---- a linear layer y = x W^T + b, W this rank's (out, in) shard (nn.Linear orientation)
struct Linear {
  static constexpr size_t no_bias = size_t(-1);
  size_t weight = 0, bias = no_bias;  // ParamSet indices (the LM head has no bias)
  int out = 0, in = 0;                // the local shape of W
  // The module's tensors among this rank's parameters (layer -1 outside the blocks).
  static Linear bind(const ParamSet& ps, Module module, int layer = -1);
};
// y(N,out) = x(N,in) W^T. The bias is added by the caller's next (fused) op.
void linear_forward(const LayerContext& cx, const Linear& l, const float* x, float* y);
// dW(out,in) += dy^T x, then dx(N,in) = dy W. The bias gradient is the caller's. dx may be
// x (the scratch of recomputation relies on it): x is last read before dx is written.
void linear_backward(const LayerContext& cx, const Linear& l, const float* x, const float* dy,
                     float* dx);

// ---- LayerNorm over C with a weight and a bias (every TP rank whole)
struct Norm {
  size_t weight = 0, bias = 0;  // ParamSet indices
  static Norm bind(const ParamSet& ps, Module module, int layer = -1);
};
// y(N,C) = LayerNorm(x); mean, rstd (N) kept for backward.
void layernorm_forward(const LayerContext& cx, const Norm& n, const float* x, float* y,
                       float* mean, float* rstd);
// dx(N,C) += the gradient through the norm of dy; dweight, dbias +=.
void layernorm_backward(const LayerContext& cx, const Norm& n, const float* dy, const float* x,
                        const float* mean, const float* rstd, float* dx);

// ---- the layers

// Token + position embedding (first pipeline stage).
struct Embedding {
  size_t wte = 0, wpe = 0;  // (Vl,C) vocab-parallel; (T,C) whole
  explicit Embedding(const ParamSet& ps);
  // x(B,T,C) = wte[tokens] + wpe. Collective over TP.
  void forward(const LayerContext& cx, const int32_t* tokens, float* x) const;
  // dwte(Vl,C) +=, dwpe(T,C) += from dx(B,T,C). No communication.
  void backward(const LayerContext& cx, const int32_t* tokens, const float* dx) const;
};

// Activation recomputation ([train] recompute): what a block keeps, per micro-batch in flight,
// for its backward, and what that backward recomputes first from what was kept, with the same
// ops on the same inputs as forward (so the same bits):
//  - none: every tensor backward reads;
//  - selective: not the attention probabilities att (B,NHl,T,T) and output atty, the GELU's
//    output fch_gelu (its input fch is kept: GELU cannot be inverted) nor the two LayerNorms'
//    outputs; recomputed from qkv, fch, x and res2 without a weight product or communication;
//  - full: only the block's output (the next block's input, kept anyway); backward reruns the
//    block's forward up to the GELU first (three of its four products, one TP all-reduce),
//    and ln1 once more before its product's backward.
// What is recomputed lives in the stage's BlockScratch: one block's worth for all blocks.
enum class Recompute { none, selective, full };
// "none", "selective", "full" (the deck's spelling); recompute_from_name throws InputError on
// anything else.
const char* recompute_name(Recompute mode);
Recompute recompute_from_name(const std::string& name);

// The layers' work buffers below each list their buffers and sizes once, in each(), which
// calls f(&Struct::buffer, elements) for every buffer held: the constructor allocates from it,
// and elements() sums it for the analytic memory count (analytic.hpp) without allocating.

// Activations of one block for one micro-batch, kept from forward for backward; the buffers
// the mode recomputes stay empty.
struct BlockActivations {
  Buffer ln1, ln1_mean, ln1_rstd;  // (B,T,C) (B,T) (B,T)
  Buffer qkv;                      // (B,T,3Cl)
  Buffer att;                      // (B,NHl,T,T)
  Buffer atty;                     // (B,T,Cl)
  Buffer res2;                     // (B,T,C) residual after attention
  Buffer ln2, ln2_mean, ln2_rstd;  // (B,T,C) (B,T) (B,T)
  Buffer fch, fch_gelu;            // (B,T,Hl) the GELU's input (bias added) and output
  Buffer out;                      // (B,T,C) residual after the MLP: the block's output
  BlockActivations(Backend& be, const LayerShape& s, Recompute mode = Recompute::none);
  template <class F>
  static void each(const LayerShape& s, Recompute mode, F&& f);
  static size_t elements(const LayerShape& s, Recompute mode);  // floats it holds for shape s
  size_t elements() const;  // floats held (the benchmark's measured memory)
  LayerShape shape;
  Recompute mode;
};

// Scratch shared by all blocks of the stage: the gradients of backward and, unless the mode is
// none, the block tensors it recomputes (those BlockActivations does not keep, except ln1 and
// ln2, which live in dln, atty in datty and fch_gelu in dfch: each is last read by the product
// that overwrites it with its own gradient; ln1 is recomputed once more, after dln2).
struct BlockScratch {
  Buffer dqkv;   // (B,T,3Cl)
  Buffer datt;   // (B,NHl,T,T)
  Buffer datty;  // (B,T,Cl)
  Buffer dfch;   // (B,T,Hl)
  Buffer dln;    // (B,T,C)
  // Recomputed (shapes as in BlockActivations).
  Buffer ln1_mean, ln1_rstd, qkv, att, res2, ln2_mean, ln2_rstd, fch;
  BlockScratch(Backend& be, const LayerShape& s, Recompute mode = Recompute::none);
  template <class F>
  static void each(const LayerShape& s, Recompute mode, F&& f);
  static size_t elements(const LayerShape& s, Recompute mode);
  size_t elements() const;
  LayerShape shape;
  Recompute mode;
};

// Where one block's forward tensors are for one micro-batch: in its BlockActivations where
// the mode keeps them, else in the shared BlockScratch. Shapes as in BlockActivations.
struct BlockTensors {
  float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res2, *ln2, *ln2_mean, *ln2_rstd;
  float *fch, *fch_gelu, *out;
  BlockTensors(BlockActivations& a, BlockScratch& sc);
};

// One transformer block: out = x + attn(ln1(x)); out += mlp(ln2(out)).
struct Block {
  Norm ln1, ln2;          // before attention, before the MLP
  Linear qkv;             // (3Cl,C) column-parallel: q|k|v of this rank's heads
  Linear attn_proj;       // (C,Cl) row-parallel
  Linear fc;              // (Hl,C) column-parallel
  Linear fc_proj;         // (C,Hl) row-parallel
  Block(const ParamSet& ps, int layer);
  // a.out(B,T,C) from x(B,T,C); keeps what backward needs in `a` (what the mode recomputes
  // goes to the scratch). Collective over TP.
  void forward(const LayerContext& cx, const float* x, BlockActivations& a,
               BlockScratch& sc) const;
  // dres(B,T,C): in, the gradient of the block's output; out, the gradient of its input.
  // First recomputes what `a` does not keep, into `sc` (a is not written). Parameter
  // gradients +=. Collective over TP.
  void backward(const LayerContext& cx, const float* x, BlockActivations& a, BlockScratch& sc,
                float* dres) const;

 private:
  // The forward in three parts: ln1 to res2 and ln2 (one all-reduce over TP); fch and
  // fch_gelu; out (one all-reduce over TP).
  void attention_part(const LayerContext& cx, const float* x, const BlockTensors& t) const;
  void mlp_hidden_part(const LayerContext& cx, const BlockTensors& t) const;
  void mlp_output_part(const LayerContext& cx, const BlockTensors& t) const;
  // What backward reads and `mode` did not keep. Collective over TP (full only).
  void recompute(const LayerContext& cx, const float* x, const BlockTensors& t,
                 Recompute mode) const;
};

// Final LayerNorm, tied LM head and vocab-parallel cross-entropy (last pipeline stage).
struct Head {
  Norm ln_f;
  Linear lm_head;  // the tied token embedding (Vl,C): column-parallel over the vocabulary
  explicit Head(const ParamSet& ps);
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
  // Returns the sum of the B*T token losses of x(B,T,C); keeps what backward needs in `w`.
  // Collective over TP.
  double forward(const LayerContext& cx, const float* x, const int32_t* targets, Work& w) const;
  // After forward(): dx(B,T,C) = the gradient of loss_scale * sum(losses) with respect to x;
  // dwte, dln_f +=. Collective over TP.
  void backward(const LayerContext& cx, const float* x, const int32_t* targets, float loss_scale,
                Work& w, float* dx) const;
};

}  // namespace mptrain
