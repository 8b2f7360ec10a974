// Collectives on backend memory (DeviceCollectives): MPI needs host-readable pointers, and a
// backend's memory may not be (a GPU without CUDA-aware MPI). Used by the layers' tensor-parallel
// all-reduces, the pipeline's activation sends and the optimizer's reductions.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "mptrain/backend/backend.hpp"
#include "mptrain/parallel/comm.hpp"

namespace mptrain {

// Collectives on backend memory: synchronises the backend, then hands MPI the pointers
// directly when the backend's memory is host-accessible, otherwise stages through the host.
// Blocking operations share one staging buffer. Each non-blocking send stages into a buffer
// of its own, which its Request holds until the send completed; finished buffers are reused
// by later sends, so the pool grows only to the number of sends in flight at once.
class DeviceCollectives {
 public:
  explicit DeviceCollectives(Backend& backend) : backend_(backend) {}
  void allreduce_sum(const Comm& comm, float* data, size_t n);  // collective over comm
  void allreduce_max(const Comm& comm, float* data, size_t n);  // collective over comm
  // Not collective. `data` may be overwritten as soon as this returns (it is staged, or, with
  // host-accessible memory, must stay untouched until the request completes: the caller's
  // duty, as for Comm::isend).
  Request isend(const Comm& comm, const float* data, size_t n, int dest, int tag);
  void recv(const Comm& comm, float* data, size_t n, int source, int tag);  // not collective

  // The send staging pool, for tests: buffers allocated, and those held by unfinished sends.
  size_t send_staging_buffers() const { return send_staging_.size(); }
  size_t send_staging_in_use() const;

 private:
  Backend& backend_;
  std::vector<float> staging_;
  std::vector<std::shared_ptr<std::vector<float>>> send_staging_;
};

}  // namespace mptrain
