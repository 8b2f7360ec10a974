// Errors and exit codes. Two kinds of failure exist in an SPMD program: errors that every rank
// sees identically (a bad deck, a bad dataset, an impossible layout) are thrown as InputError,
// caught in main, reported once by rank 0, and turned into the same non-zero exit on every
// rank; errors that only one rank sees (a failed library call, a broken invariant) go through
// fatal(), which prints rank, file:line and a hint and then aborts the whole job, so nothing
// ever waits forever for a rank that has died.
#pragma once

#include <stdexcept>
#include <string>

namespace mptrain {

// Documented in the README; the job scripts and tests rely on these numbers.
enum ExitCode : int {
  exit_ok = 0,
  exit_internal = 1,     // a bug or a failed library call (fatal())
  exit_bad_input = 2,    // deck, dataset, layout or checkpoint refused
  exit_preempted = 3,    // a signal asked us to stop; a checkpoint was written
  exit_numerical = 4,    // too many consecutive non-finite steps
};

// An error that every rank detects identically (same inputs, same checks). Thrown, never
// printed where it is raised.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& what, int code = exit_bad_input)
      : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// Prints "mptrain: rank R: FILE:LINE: MESSAGE" (and the hint) to stderr, then aborts every
// rank of the job with exit_internal. Safe to call before MPI is initialised.
[[noreturn]] void fatal(const char* file, int line, const std::string& message,
                        const std::string& hint = "");

// The rank printed by fatal(); set once by the communication module.
void set_error_rank(int rank);
// Not collective: ends every rank of the job with `code` (MPI_Abort), or this process when MPI
// is not running. Defined by the communication module (parallel/comm.cpp), which alone calls MPI.
[[noreturn]] void abort_job(int code);

}  // namespace mptrain

#define MPT_FATAL(msg) ::mptrain::fatal(__FILE__, __LINE__, (msg))

// Debug-only invariant check (configure --enable-debug defines MPTRAIN_DEBUG).
#ifdef MPTRAIN_DEBUG
#define MPT_ASSERT(cond)                                                   \
  do {                                                                     \
    if (!(cond)) ::mptrain::fatal(__FILE__, __LINE__, "assertion failed: " #cond); \
  } while (0)
#else
#define MPT_ASSERT(cond) ((void)0)
#endif

// Always-on check with a message.
#define MPT_CHECK(cond, msg)                                   \
  do {                                                         \
    if (!(cond)) ::mptrain::fatal(__FILE__, __LINE__, (msg));  \
  } while (0)
