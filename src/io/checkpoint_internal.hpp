// Private to the checkpoint code (src/io/checkpoint.cpp writes and reads files,
// src/io/checkpoint_dir.cpp runs the directory protocol on top): how the ranks agree on a failure,
// and the file writer with the save() test hook.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

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

// Collective: write_checkpoint_file, returning the bytes of tensor data written (the same on
// every rank). With `kill_midway`, rank 0 raises SIGKILL after half of the tensors (the
// kill-in-save test hook of CheckpointDir::save).
uint64_t write_checkpoint(const Comm& comm, const std::string& path, const CheckpointMeta& meta,
                          const CheckpointTensors& tensors, bool kill_midway);

}  // namespace mptrain::checkpoint_detail
