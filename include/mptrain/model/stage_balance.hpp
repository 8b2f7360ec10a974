// Placing the transformer blocks on pipeline stages ([parallel] stage_layers = auto): a cost
// model of one micro-batch's forward and backward on each part of the model, derived from the
// same catalogue as the analytic counts (analytic.hpp), and the split of the blocks into
// contiguous stages that makes the slowest stage as fast as it can be. The first stage also
// runs the embedding and the last the head (final LayerNorm, the tied LM head's products
// (N,C)x(C,Vl) forward and backward, and the cross-entropy), so with a large vocabulary the last
// stage should hold fewer blocks. Everything here is pure and deterministic: every rank of a
// run computes the same split, and the planner (mptrain-plan) can call it for any layout.
//
// The cost of a part is the time of its matrix products at a GEMM rate plus the time of its
// element-wise work (LayerNorms, softmaxes, GELU, biases, residuals, embedding rows, the
// cross-entropy) at a memory bandwidth, counted as the floats each op reads and writes
// (stage_balance.cpp lists them). Tensor-parallel and pipeline communication, attention's
// exponentials and the optimizer step (once per step, not per micro-batch) are not counted.
#pragma once

#include <vector>

#include "mptrain/model/config.hpp"
#include "mptrain/parallel/grid.hpp"

namespace mptrain {

// The rates the work is costed at. Only their ratio moves the split (the balance of the
// machine: GEMM FLOPs per byte of element-wise traffic); the absolute values make the costs
// seconds. The defaults are one core of the development machine as mptrain-bench's profile
// measured it (doc/PERFORMANCE.md, "Where the time goes now": SGEMM 55-60 GFLOP/s per thread
// in the step, the fused element-wise kernels 6-8 GB/s per thread), about 10 FLOPs per byte;
// an H200 in fp32 has about the same balance (~50 TFLOP/s, 4.8 TB/s), in tf32 or bf16 ten
// times more FLOPs per byte. A planner with measured rates passes its own.
struct StageCostRates {
  double gemm_flops_per_s = 5e10;   // matrix products (OpenBLAS SGEMM, or cuBLAS)
  double memory_bytes_per_s = 5e9;  // element-wise ops (bytes read plus bytes written)
};

// Forward plus backward of one micro-batch of `micro_batch` sequences on one rank (its TP
// shard), in seconds at the rates, for each part that a stage can hold.
struct StagePartCosts {
  double embedding = 0;  // token rows and positions (the first stage)
  double block = 0;      // one transformer block (all blocks cost the same)
  double head = 0;       // final LayerNorm, LM head and cross-entropy (the last stage)
  // The matrix-product FLOPs in those figures (step_gemm_shapes' products, plus attention's
  // q k^T and att v over the causal half, as step_flops counts them).
  double block_gemm_flops = 0, head_gemm_flops = 0;
};
StagePartCosts stage_part_costs(const ModelConfig& model, const Layout& layout, int micro_batch,
                                const StageCostRates& rates = {});

// The cost of one micro-batch on each stage under `split` (blocks per stage; empty = equal).
std::vector<double> stage_costs(const ModelConfig& model, const Layout& layout, int micro_batch,
                                const std::vector<int>& split,
                                const StageCostRates& rates = {});

// The blocks of each of layout.pp stages, every stage at least one, summing to n_layer
// (n_layer >= pp), that minimise the largest stage cost: a 1F1B step of M micro-batches takes
// about (M - 1) * max + sum of the stage costs, and the sum does not depend on the split. Of
// the splits with that maximum, the one whose costs are the most even (least sum of squares),
// ties giving blocks to later stages (early stages keep more micro-batches in flight in 1F1B).
std::vector<int> balance_stages(const ModelConfig& model, const Layout& layout, int micro_batch,
                                const StageCostRates& rates = {});

}  // namespace mptrain
