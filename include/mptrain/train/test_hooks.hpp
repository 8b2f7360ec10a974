// Test hooks: explicit command-line options (mptrain --test-hook=SPEC, README "Test hooks")
// that make a run signal, pause, fail or die at a chosen step, so that the tests trigger
// preemption, kills and numerical trouble at a known point instead of racing a fast run. They
// are parsed once in main and reach the trainer through RunOptions; nothing reads them from
// the environment. A step boundary "after step S" is reached only by training step S in this
// run: a run resumed from step S or later never fires hooks of step S.
//
//   signal:S[:R]        after step S, rank R (default: every rank) raises SIGUSR1 on itself
//   pause:S[:R]         after step S, rank R (default: every rank) writes its PID to the file
//                       mptrain-paused.R in the working directory and waits for SIGUSR1 or
//                       SIGTERM (sent by the test), which then stops the run as usual
//   nan:S[:R]           step S's gradient on rank R (default: every rank) gets a NaN
//   kill-in-save:S      rank 0 raises SIGKILL half way through writing the step-S checkpoint
#pragma once

#include <string>
#include <vector>

namespace mptrain {

struct TestHooks {
  struct At {
    long step;
    int rank;  // -1: every rank
    bool fires(long s, int r) const { return s == step && (rank < 0 || rank == r); }
  };
  std::vector<At> signal, pause, nan;
  long kill_in_save = -1;  // the step whose save dies half way; -1: none

  // Adds one hook from its SPEC (the text after --test-hook=). Throws InputError naming the
  // spec and the accepted forms.
  void add(const std::string& spec);
  // Throws InputError when a hook names a rank outside [0, world_size) or a step that a run
  // of `steps` steps never reaches (a hook that cannot fire is a broken test).
  void check(int world_size, long steps) const;
  bool any() const { return !signal.empty() || !pause.empty() || !nan.empty() || kill_in_save >= 0; }

  static bool fires(const std::vector<At>& hooks, long step, int rank) {
    for (const At& h : hooks)
      if (h.fires(step, rank)) return true;
    return false;
  }
};

// The accepted forms, for usage messages.
extern const char* const test_hook_usage;

// The file a rank paused by pause:S[:R] writes its PID to (in the working directory).
std::string paused_marker_file(int rank);

}  // namespace mptrain
