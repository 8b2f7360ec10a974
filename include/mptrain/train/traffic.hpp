// What one training step must communicate, per rank and per axis of the grid, derived from the
// model configuration and the layout alone (n_layer, n_embd, seq_len, the vocabulary padded to
// tp, the flat parameter buffer padded to 16-float tensors and to a multiple of dp, which
// stage owns the embedding and the head), never from the sizes of the buffers the code sends.
// The run summary and mptrain-bench compare what each rank measured (Comm's counters, payload
// bytes handed to MPI) with these counts.
//
// Two figures per axis: the payload (what the rank hands to MPI, the quantity Comm counts) and
// the bytes the collective algorithm puts on the wire from that rank, under this model: ring
// all-reduce sends 2(p-1)/p of the payload, ring reduce-scatter (p-1)/p of its input, ring
// all-gather (p-1) times its input, point-to-point exactly the payload; a communicator of one
// rank sends nothing. (MPI may choose other algorithms for small messages, e.g. recursive
// doubling, which moves log2(p) times the payload; the wire figure is the bandwidth model.)
#pragma once

#include <array>
#include <cstdint>

#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/grid.hpp"

namespace mptrain {

// Elements of pipeline stage `pp_rank`'s flat parameter buffer (the same for every TP and DP
// rank of the stage): each tensor it holds rounded up to 16 floats -- the first stage's
// vocabulary shard of wte (ceil(V/tp) rows) and wpe, or the last stage's own copy of wte when
// pp > 1; each of its n_layer/pp blocks; the last stage's ln_f -- and the sum rounded up to a
// multiple of dp (equal ZeRO shards).
int64_t stage_parameter_elements(const ModelConfig& model, const Layout& layout, int pp_rank);

struct StepTraffic {
  std::array<uint64_t, n_axes> payload{};  // bytes this rank hands to MPI, per axis
  std::array<double, n_axes> wire{};       // bytes it puts on the wire (the model above)
};

// One training step of the trainer (1F1B batch, DP / ZeRO reduction, tied-embedding sum, loss
// and norm all-reduces, the preemption flag) from stage `pp_rank`. Validation and checkpoints
// are not part of a step.
StepTraffic step_traffic(const ModelConfig& model, const Layout& layout, int pp_rank,
                         int micro_batch, long global_batch, int zero);

}  // namespace mptrain
