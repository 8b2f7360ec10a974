// The training driver: turns a deck into a run. It resolves and validates the layout (before
// any collective), builds the grid, loads the data, picks the backend, restores the newest
// usable checkpoint, runs the steps (pipeline schedule, optimizer, validation, logging,
// checkpoints), reacts to preemption signals at step boundaries, and prints the run summary.
#pragma once

#include <memory>
#include <string>

#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/train/test_hooks.hpp"

namespace mptrain {

// Installs the SIGUSR1/SIGTERM handlers that request a checkpoint-and-exit at the next step
// boundary (what Slurm sends before a time limit or preemption).
void install_preemption_handlers();

// Runs the deck on `world` (with the --test-hook options `hooks`, for tests). Collective over
// world. Returns the process exit code (ExitCode); throws InputError for problems every rank
// sees (caught by main), including a hook that names a rank or step the run does not have.
int train(const Deck& deck, Comm world, const TestHooks& hooks = {});

}  // namespace mptrain
