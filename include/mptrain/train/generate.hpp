// Text generation from a checkpoint: loads the model on one process (any checkpoint, since
// tensors are stored in global coordinates) and samples tokens autoregressively.
// Used by `mptrain-ckpt sample` and the demo.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mptrain {

struct SampleOptions {
  std::string prompt;       // bytes fed before sampling ("" = start from start_token)
  // The prompt as token ids (e.g. GPT-2 BPE); when empty, the bytes of `prompt` are the ids.
  std::vector<int32_t> prompt_tokens;
  int32_t start_token = '\n'; // the context without a prompt (GPT-2: <|endoftext|>)
  int tokens = 200;         // how many tokens to generate
  double temperature = 0.8; // > 0; lower is more conservative
  uint64_t seed = 1;
  int threads = 0;          // OpenMP threads (0 = all cores)
};

// Not collective (runs on MPI_COMM_SELF). Returns the generated token ids (prompt excluded).
// Throws CheckpointError for an unusable checkpoint, InputError for a prompt token outside the
// model's vocabulary.
std::vector<int32_t> generate_tokens(const std::string& checkpoint, const SampleOptions& options);

}  // namespace mptrain
