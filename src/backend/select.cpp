// Chooses the backend for a rank, and stands in for the CUDA entry points when the project is
// built without CUDA (so the rest of the code never needs a preprocessor branch).
#ifdef HAVE_CONFIG_H
#include <config.h>  // MPTRAIN_HAVE_CUDA, also when it is not on the command line
#endif

#include <sched.h>

#include <algorithm>
#include <string>
#include <thread>

#include "mptrain/backend/backend.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain {

#ifndef MPTRAIN_HAVE_CUDA
// Without CUDA: src/backend/cuda/*.cu are not built, and these stand in for them.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions&) {
  throw InputError("[device] backend = cuda: this build of mptrain has no CUDA backend "
                   "(configure --with-cuda)");
}
std::unique_ptr<Backend> make_cuda_backend(int device) {
  CudaOptions options;
  options.device = device;
  return make_cuda_backend(options);
}
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
double cuda_measure_sgemm_tflops(int, int, int, int, bool, bool) { return 0.0; }
#endif

std::unique_ptr<Backend> select_backend(const std::string& kind, int threads, int node_rank,
                                        int node_size, const CudaOptions& cuda) {
  const bool use_cuda = kind == "cuda" || (kind == "auto" && cuda_available());
  if (use_cuda) {
    const int devices = cuda_device_count();
    if (devices <= 0)
      throw InputError("[device] backend = cuda, but no CUDA device is visible to this rank");
    // Ranks on one node share its devices round-robin (node_rank from the shared-memory
    // communicator), so one rank per GPU when ranks per node = GPUs per node.
    CudaOptions options = cuda;
    options.device = std::max(0, node_rank) % devices;
    return make_cuda_backend(options);
  }
  if (cuda.tf32 || cuda.bf16) {
    // Thrown alike by every rank that resolves to the CPU (with backend = auto, every rank
    // of a job whose nodes have no visible GPU, or of a build without CUDA).
    throw InputError(std::string("[device] precision = ") + (cuda.bf16 ? "bf16" : "tf32") +
                     " needs the CUDA backend, but [device] backend = " + kind +
                     (kind == "auto" ? " found no CUDA device on this rank" : "") +
                     " and the CPU backend computes in fp32 only; use precision = fp32, or "
                     "backend = cuda where a GPU is visible");
  }
  if (threads <= 0) {
    // A rank the launcher bound to some cores (srun --cpus-per-task, mpirun --map-by
    // slot:PE=n) uses exactly those; an unbound rank shares the node's cores with the other
    // ranks on the node.
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    const int bound = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
    threads = bound > 0 && bound < cores ? bound : std::max(1, cores / std::max(1, node_size));
  }
  return make_cpu_backend(threads);
}

std::unique_ptr<Backend> select_backend(const std::string& kind, int threads, int node_rank,
                                        int node_size) {
  return select_backend(kind, threads, node_rank, node_size, CudaOptions{});
}

}  // namespace mptrain
