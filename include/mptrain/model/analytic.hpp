// The analytic counts of a training step, from the model catalogue (catalogue.hpp), the layout
// and the batch alone -- never from the buffers a run allocated or the bytes it sent: the
// model's parameters and FLOPs, the matrix products each rank makes, the memory it holds and
// what it must communicate. mptrain-bench and the run summary compare their measurements with
// these; a planner can predict a layout with them without building it. All are pure.
//
// Communication has two figures per axis: the payload (what the rank hands to MPI, the quantity
// Comm counts) and the bytes the collective algorithm puts on the wire from that rank, under
// this model: ring all-reduce sends 2(p-1)/p of the payload, ring reduce-scatter (p-1)/p of its
// input, ring all-gather (p-1) times its input, point-to-point exactly the payload; a
// communicator of one rank sends nothing. (MPI may choose other algorithms for small messages,
// e.g. recursive doubling, which moves log2(p) times the payload; the wire figure is the
// bandwidth model.)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "mptrain/model/config.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/parallel/grid.hpp"

namespace mptrain {

// How a step trades memory for time and places its layers, beyond the layout and the batch.
// Each default is the plain step: replicated gradients, every activation kept, n_layer / pp
// blocks per stage. (The counts below take these into account where they matter.)
struct StepOptions {
  int zero = 0;                     // [optim] zero: 0, 1 (optimizer state sharded over DP), 2
                                    // (and the gradients)
  std::string recompute = "none";   // [train] recompute: none, selective, full
  std::vector<int> stage_layers;    // blocks per pipeline stage, in order; empty: equal
  double bucket_mb = 4;             // [parallel] bucket_mb: ZeRO-2's gradient window and its
                                    // per-micro-batch reduce-scatters follow the buckets
};

// Parameters of the whole model (global, unpadded, the tied embedding counted once).
int64_t model_parameters(const ModelConfig& model);
// FLOPs of one step: tokens * (6 N + 6 n_layer n_embd seq_len), tokens = global_batch * seq_len.
double step_flops(const ModelConfig& model, long global_batch);

// Elements of pipeline stage `pp_rank`'s flat parameter buffer (the same for every TP and DP
// rank of the stage): the local shard of each tensor the stage holds (stage_tensors: the first
// stage's embeddings, the last stage's copy of the tied wte when pp > 1, the stage's blocks, the
// last stage's final LayerNorm), each rounded up to 16 floats, and the sum rounded up to a multiple of dp
// (equal ZeRO shards).
int64_t stage_parameter_elements(const ModelConfig& model, const Layout& layout, int pp_rank,
                                 const StepOptions& options = {});

// One kind of matrix product of a training step: C(m,n) = op(A)(m,k) op(B)(k,n), as the
// layers call Backend::gemm, `count` times per step on this rank.
struct GemmShape {
  std::string label;  // e.g. "qkv.fwd", "fc.dW"
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  float beta = 0;
  long count = 0;
  double flops() const { return 2.0 * m * n * k; }
};

// The products of one training step on stage `pp_rank`: for every linear weight of the
// catalogue (a tensor with a product label) the forward and both backward products of its
// local (out, in) shard -- the blocks' per local block and micro-batch, the LM head's (the tied
// embedding) per micro-batch on the last stage -- in the orientation of the layers'
// linear_forward / linear_backward; with recompute = full, the blocks' forward products but
// mlp.c_proj twice. Products of the same shape are one entry (labels joined with "+").
// Attention's own products (q k^T, att v) are not in the list.
std::vector<GemmShape> step_gemm_shapes(const ModelConfig& model, const Layout& layout,
                                        int pp_rank, int micro_batch, long global_batch,
                                        const StepOptions& options = {});

// Backend memory of one rank by what it holds, in bytes.
struct MemoryCount {
  double params = 0;       // the flat parameter buffer (16-float tensors, padded to dp)
  double grads = 0;        // the gradient buffer the layers write (the flat buffer; under
                           // ZeRO-2 the window of gradient_window.hpp) and, under ZeRO-1
                           // and 2, the reduced 1/dp shard
  double optimizer = 0;    // AdamW's m and v (this rank's 1/dp shard under ZeRO-1 and 2)
  double activations = 0;  // the blocks' saved activations of the micro-batches in flight,
                           // the stage inputs, the backward scratch, the head's work and the
                           // stage gradient
  double buffers = 0;      // token ids and targets of the micro-batches in flight
  double total() const { return params + grads + optimizer + activations + buffers; }
};
// What stage `pp_rank` must hold: the parameters from the catalogue, the activations from the
// layers' own buffer lists (layers.hpp, for options.recompute) for the micro-batches the 1F1B
// schedule keeps in flight, the optimizer's state.
MemoryCount analytic_memory(const ModelConfig& model, const Layout& layout, int pp_rank,
                            int micro_batch, long global_batch, const StepOptions& options);

struct StepTraffic {
  std::array<uint64_t, n_axes> payload{};  // bytes this rank hands to MPI, per axis
  std::array<double, n_axes> wire{};       // bytes it puts on the wire (the model above)
};
// One training step of the trainer from stage `pp_rank` (1F1B batch, DP / ZeRO reduction,
// tied-embedding sum, loss and norm all-reduces, the preemption flag; with recompute = full,
// each block's attention all-reduce once more in backward). Validation and checkpoints are
// not part of a step. DP: zero = 0 all-reduces the P elements of the flat buffer once;
// zero = 1 reduce-scatters them once and all-gathers P/dp; zero = 2 reduce-scatters every
// bucket but the bottom one in each of the M micro-batches and the bottom one once,
// M·(P − bottom) + bottom, and all-gathers P/dp.
StepTraffic step_traffic(const ModelConfig& model, const Layout& layout, int pp_rank,
                         int micro_batch, long global_batch, const StepOptions& options);

}  // namespace mptrain
