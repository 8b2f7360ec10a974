// Private to the checkpoint code (src/io/checkpoint.cpp writes and reads files,
// src/io/checkpoint_shards.cpp checks the ranks' shards and agrees on the tensor list,
// src/io/checkpoint_dir.cpp runs the directory protocol on top): how the ranks agree on a
// failure, the global tensor list, and the file writer with the save() test hook.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "mptrain/io/checkpoint.hpp"

namespace mptrain::checkpoint_detail {

// Runs `step`; returns "" on success, else the message of what it threw. A CheckpointError is
// taken as complete; anything else (h5::Error, bad_alloc, ...) gets `context` in front.
template <class Step>
std::string attempt(const std::string& context, Step&& step) {
  try {
    step();
    return {};
  } catch (const CheckpointError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return context + ": " + e.what();
  }
}

// Collective: Comm::agree for the checkpoint code: when any rank's `error` is non-empty,
// every rank throws CheckpointError with the lowest failing rank's message.
inline void agree(const Comm& comm, const std::string& error) {
  agree_or_throw<CheckpointError>(comm, error);
}

// One tensor some rank holds: where it lives in the file and, on this rank, its shard.
struct GlobalTensor {
  int group = 0;
  std::string name;
  std::vector<int64_t> shape;
  const TensorIO* local = nullptr;  // null when this rank does not hold it

  std::string path() const { return std::string(checkpoint_groups[group]) + "/" + name; }
  uint64_t bytes() const {
    uint64_t n = sizeof(float);
    for (auto d : shape) n *= static_cast<uint64_t>(d);
    return n;
  }
};

// The blocks of `spec` that hold at least one element.
std::vector<ShardBlock> nonempty_blocks(const ShardSpec& spec);

// Not collective: "" when this rank's tensors are usable (each block inside its global shape
// and its local array, no tensor listed twice in a group), else what is wrong (naming `path`).
std::string check_local_tensors(const CheckpointTensors& tensors, const std::string& path);

// Collective: the union over all ranks of the listed tensors, sorted by group then name (the
// same order everywhere), each with this rank's shard if it holds one. Throws CheckpointError
// on every rank for a shape conflict and, with `check_writers`, for writer blocks that miss or
// repeat elements.
std::vector<GlobalTensor> agree_on_tensor_list(const Comm& comm, const CheckpointTensors& tensors,
                                               const std::string& path, bool check_writers);

// Collective: write_checkpoint_file, returning the bytes of tensor data written (the same on
// every rank). With `kill_midway`, rank 0 raises SIGKILL after half of the tensors (the
// kill-in-save test hook of CheckpointDir::save).
uint64_t write_checkpoint(const Comm& comm, const std::string& path, const CheckpointMeta& meta,
                          const CheckpointTensors& tensors, bool kill_midway);

}  // namespace mptrain::checkpoint_detail
