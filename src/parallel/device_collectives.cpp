// Collectives on backend memory (device_collectives.hpp): synchronise, then hand MPI the
// backend's pointers or stage through host buffers.
#include "mptrain/parallel/device_collectives.hpp"

#include <algorithm>
#include <span>

namespace mptrain {

void DeviceCollectives::allreduce_sum(const Comm& comm, float* data, size_t n) {
  if (comm.size() == 1 || n == 0) return;
  backend_.synchronize();  // kernels producing `data` must have finished before MPI reads it
  if (backend_.host_accessible()) {
    comm.allreduce_sum(std::span<float>(data, n));  // collective
    return;
  }
  staging_.resize(n);
  backend_.to_host(staging_.data(), data, n);
  comm.allreduce_sum(std::span<float>(staging_.data(), n));  // collective
  backend_.to_device(data, staging_.data(), n);
}

void DeviceCollectives::allreduce_max(const Comm& comm, float* data, size_t n) {
  if (comm.size() == 1 || n == 0) return;
  backend_.synchronize();
  if (backend_.host_accessible()) {
    comm.allreduce_max(std::span<float>(data, n));  // collective
    return;
  }
  staging_.resize(n);
  backend_.to_host(staging_.data(), data, n);
  comm.allreduce_max(std::span<float>(staging_.data(), n));  // collective
  backend_.to_device(data, staging_.data(), n);
}

Request DeviceCollectives::isend(const Comm& comm, const float* data, size_t n, int dest, int tag) {
  backend_.synchronize();
  if (backend_.host_accessible()) return comm.isend(std::span<const float>(data, n), dest, tag);
  // The staged copy must outlive the send, and no other send may write it meanwhile (the
  // pipeline's forward and backward sends of one micro-batch are in flight together): take a
  // buffer no request holds any more, or a new one. The request keeps it until it completed.
  std::shared_ptr<std::vector<float>> host;
  for (const auto& buffer : send_staging_)
    if (buffer.use_count() == 1) {
      host = buffer;
      break;
    }
  if (!host) host = send_staging_.emplace_back(std::make_shared<std::vector<float>>());
  host->resize(n);
  backend_.to_host(host->data(), data, n);
  return comm.isend(std::shared_ptr<const std::vector<float>>(host), dest, tag);
}

size_t DeviceCollectives::send_staging_in_use() const {
  return static_cast<size_t>(std::count_if(send_staging_.begin(), send_staging_.end(),
                                           [](const auto& b) { return b.use_count() > 1; }));
}

void DeviceCollectives::recv(const Comm& comm, float* data, size_t n, int source, int tag) {
  if (backend_.host_accessible()) {
    backend_.synchronize();
    comm.recv(std::span<float>(data, n), source, tag);
    return;
  }
  staging_.resize(n);
  comm.recv(std::span<float>(staging_.data(), n), source, tag);
  backend_.to_device(data, staging_.data(), n);
}

}  // namespace mptrain
