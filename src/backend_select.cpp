// Chooses the backend for a rank, and stands in for the CUDA entry points when the project is
// built without CUDA (so the rest of the code never needs a preprocessor branch).
#include <algorithm>
#include <thread>

#include "mptrain/backend.hpp"
#include "mptrain/error.hpp"

namespace mptrain {

#ifndef MPTRAIN_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) {
  throw InputError("[device] backend = cuda: this build of mptrain has no CUDA backend "
                   "(configure --with-cuda)");
}
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
#endif

std::unique_ptr<Backend> select_backend(const std::string& kind, int threads, int node_rank,
                                        int node_size) {
  const bool use_cuda = kind == "cuda" || (kind == "auto" && cuda_available());
  if (use_cuda) {
    if (!cuda_available())
      throw InputError("[device] backend = cuda, but no CUDA device is visible to this rank");
    return make_cuda_backend(node_rank % cuda_device_count());
  }
  if (threads <= 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, cores / std::max(1, node_size));
  }
  return make_cpu_backend(threads);
}

}  // namespace mptrain
