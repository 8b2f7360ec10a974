// The one fatal-error path: print rank, file:line, the message and a hint, then abort every
// rank through the communication module (which falls back to std::abort before MPI is up).
#include "mptrain/core/error.hpp"

#include <cstdio>

namespace mptrain {

namespace {
// The only process-wide state of this module: which rank we are, for messages. Written once by
// the communication module when MPI starts.
int error_rank = -1;
}  // namespace

void set_error_rank(int rank) { error_rank = rank; }

void fatal(const char* file, int line, const std::string& message, const std::string& hint) {
  std::fprintf(stderr, "mptrain: rank %d: %s:%d: %s\n", error_rank, file, line, message.c_str());
  if (!hint.empty()) std::fprintf(stderr, "mptrain:   hint: %s\n", hint.c_str());
  std::fflush(stderr);
  abort_job(exit_internal);
}

}  // namespace mptrain
