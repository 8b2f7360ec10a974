// The machine model of the layout planner (mptrain-plan, plan.hpp): what one rank computes per
// second and what a message between two ranks costs, as a handful of measured numbers.
//   - matrix products: the backend's GEMM rate per shape class (the smallest of m, n, k),
//     interpolated log-log between the measured classes;
//   - the rest of the step: a streaming rate (bytes/s) for the element-wise ops and the
//     optimizer, a rate for attention's own work (FLOP/s, attention FLOPs as step_flops
//     counts them) and one for the loss (logits/s: its exponentials, not its bytes, limit it);
//   - links: alpha (seconds per message) and beta (bytes/s) for two ranks on the same node and
//     on different nodes; the inter-node beta is the node's, shared by its ranks.
// Rates are per rank, measured with `measured_threads` threads; on a CPU machine a rank with c
// cores runs at c / measured_threads of them (linear scaling: an assumption), on a GPU machine
// each rank is one device and runs at them as measured.
//
// A machine file is `key = value` lines with `#` comments (read with Boost.Program_options'
// config-file parser); every key is described in machine_keys() and doc/PLANNING.md; it is
// what `mptrain-plan --measure -o FILE` writes. builtin_machine() is the 2-core development
// box the project is measured on (doc/PERFORMANCE.md), used when no file is given.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "mptrain/parallel/comm.hpp"

namespace mptrain {

struct GemmShape;  // model/analytic.hpp

struct Link {
  double alpha_s = 0;     // seconds per message (half a ping-pong round trip of a tiny message)
  double beta_bytes_s = 0;  // bytes per second of a large message
  // Seconds for `messages` messages carrying `bytes` in all, one after another.
  double seconds(double bytes, double messages) const {
    return messages * alpha_s + (beta_bytes_s > 0 ? bytes / beta_bytes_s : 0);
  }
};

struct Machine {
  std::string name;          // what it describes (printed in the plan's header)
  std::string origin;        // "built-in" or the file it was read from
  std::string backend = "cpu";   // cpu: rates scale with a rank's cores; cuda: one device per rank
  int cores_per_node = 1;
  double measured_threads = 1;   // threads per rank the rates were measured with
  double node_memory_gib = 0;    // 0: unknown (a CPU rank gets node memory / ranks per node)
  double device_memory_gib = 0;  // a GPU rank's memory (0: unknown or CPU)
  double overhead_mib = 0;       // per rank beyond the model's buffers (libraries, MPI, context)
  std::vector<std::pair<int, double>> gemm_gflops;  // (smallest dimension, GFLOP/s), ascending
  double attention_gflops = 0;   // attention forward + backward, step_flops' attention FLOPs
  double stream_gbs = 0;         // element-wise ops and the optimizer, GB/s of bytes moved
  double loss_glogits = 0;       // the loss forward + backward, billions of logits per second
  double dp_overlap = 0;         // fraction of a micro-batch's backward the DP reduction hides in
  double collective_efficiency = 1;  // a ring collective's speed against the alpha-beta model
                                     // of the ping-pong links (MPI's own algorithm, progress)
  Link intra, inter;

  // Speed of a rank with `cores` cores relative to the measured one (1 on a GPU machine).
  double speed(double cores) const;
  // Seconds of one product of this shape on a rank of speed 1.
  double gemm_seconds(const GemmShape& shape) const;
  // The memory one rank may use with `ranks_per_node` ranks on a node, GiB (0: unknown).
  double memory_per_rank_gib(int ranks_per_node) const;
};

// The 2-core development machine (AMD EPYC Zen 3 under KVM, OpenBLAS, Open MPI shared memory),
// from `mptrain-plan --measure` with 2 ranks x 1 thread there; see doc/PLANNING.md.
Machine builtin_machine();

// Reads a machine file. Throws InputError naming the file, the line and the key for an unknown
// key, a key set twice, a malformed value, and a missing key.
Machine read_machine_file(const std::string& path);
// The machine as a file that read_machine_file() reads back to the same values (%.6g), with a
// comment on each key; `comment` (lines without '#') opens the file.
std::string machine_file_text(const Machine& machine, const std::string& comment);

// mptrain-plan --measure: what to measure with.
struct MeasureOptions {
  std::string backend = "cpu";  // as [device] backend: cpu, cuda, auto
  int threads = 0;              // as [device] threads (0: cores / ranks on the node)
  std::string name;             // the machine's name ("" : the host and the rank layout)
  double min_seconds = 0.05;    // per timing trial
  int trials = 3;
};
// Collective over `world`: every rank measures, at the same time (as ranks train), its
// backend's GEMM rate on the shape classes (the benchmark's timing, bench.hpp), attention and
// the streaming rate; then rank 0 ping-pongs with the nearest rank on its node and the nearest
// on another node (Comm's point-to-point calls; nodes from Comm::split_node). Returns, on every
// rank, the machine with the median rate over ranks; `report` gets a description of what was
// measured (for rank 0 to print). A link that could not be measured (one rank, one node) gets
// the other link's numbers and says so in `report`.
Machine measure_machine(const Comm& world, const MeasureOptions& options, std::string& report);

}  // namespace mptrain
