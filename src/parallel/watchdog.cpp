// The launcher watchdog (include/mptrain/parallel/watchdog.hpp).
#include "mptrain/parallel/watchdog.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "mptrain/core/error.hpp"

namespace mptrain {

namespace {

// The only process-wide state of this module, set once by start_launcher_watchdog().
std::atomic<pid_t> watched_parent{0};
std::atomic<int> watched_rank{-1};

// Ends the process at once: no stdio, no malloc, no destructors (other threads may hold their
// locks, and an HDF5 file left open must not be flushed under a final name).
[[noreturn]] void exit_orphaned(pid_t parent) {
  char line[160];
  const int n = std::snprintf(line, sizeof line,
                              "mptrain: rank %d: the launcher (parent pid %ld) has gone; exiting "
                              "without writing anything more\n",
                              watched_rank.load(), long(parent));
  if (n > 0 && ::write(STDERR_FILENO, line, size_t(n)) < 0) {
    // nobody left to tell
  }
  ::_exit(exit_internal);
}

}  // namespace

bool started_by_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_STEP_ID"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

void start_launcher_watchdog(int rank) {
  const pid_t parent = ::getppid();
  if (parent <= 1 || watched_parent.load() != 0) return;  // already an orphan, or started
  watched_rank = rank;
  watched_parent = parent;
  std::thread([parent] {
    // Signals are for the training thread (preemption) and must not be spent here.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    while (::getppid() == parent) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    exit_orphaned(parent);
  }).detach();
}

void exit_if_launcher_gone() {
  const pid_t parent = watched_parent.load();
  if (parent != 0 && ::getppid() != parent) exit_orphaned(parent);
}

}  // namespace mptrain
