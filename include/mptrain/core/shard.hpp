// Which part of a global tensor a rank holds, in global coordinates (Megatron-style): plain data
// that the model fills (its catalogue's TP split) and io reads and writes (checkpoints store
// every tensor unsharded, and any layout reads back exactly its own slice).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mptrain {

// A rectangle of a 2-D global tensor (1-D tensors use cols == 1 and col offsets 0) and where
// it sits in the rank's local row-major array.
struct ShardBlock {
  int64_t global_row = 0, global_col = 0;  // top-left corner in the global tensor
  int64_t local_row = 0, local_col = 0;    // top-left corner in the local array
  int64_t rows = 0, cols = 0;              // extent
};

// Which elements of one global tensor this rank holds.
struct ShardSpec {
  std::string name;                    // the tensor's name (in a checkpoint: /model/<name>)
  std::vector<int64_t> global_shape;   // 1 or 2 dims, PyTorch nn.Linear orientation [out, in]
  int64_t local_rows = 0, local_cols = 1;  // local row-major storage (may include padding)
  std::vector<ShardBlock> blocks;      // the rank's parts of the global tensor
  bool writer = true;  // false on replicas that hold the same blocks as a writer elsewhere

  int64_t local_size() const { return local_rows * local_cols; }
  int64_t global_size() const {
    int64_t n = 1;
    for (auto d : global_shape) n *= d;
    return n;
  }
};

}  // namespace mptrain
