// Text generation from a checkpoint: loads the model on one process (any checkpoint, since
// tensors are stored in global coordinates) and samples byte-level tokens autoregressively.
// Used by `mptrain-ckpt sample` and the demo.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mptrain {

struct SampleOptions {
  std::string prompt;       // bytes fed before sampling ("" = start from a newline)
  int tokens = 200;         // how many tokens to generate
  double temperature = 0.8; // > 0; lower is more conservative
  uint64_t seed = 1;
  int threads = 0;          // OpenMP threads (0 = all cores)
};

// Not collective (runs on MPI_COMM_SELF). Returns the generated token ids (prompt excluded).
// Throws CheckpointError for an unusable checkpoint.
std::vector<int32_t> generate_tokens(const std::string& checkpoint, const SampleOptions& options);

}  // namespace mptrain
