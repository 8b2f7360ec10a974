// mptrain: train a GPT-2 model from an input deck. Run with mpirun/srun on any number of
// ranks, or as one process. Errors every rank sees (deck, data, layout, checkpoints) are
// printed once by rank 0 and every rank exits with the same code (README: exit codes).
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "mptrain/io/checkpoint.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"
#include "mptrain/train/test_hooks.hpp"
#include "mptrain/train/trainer.hpp"
#include "mptrain/parallel/watchdog.hpp"

namespace {
void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: mptrain DECK [--section.key=value ...] [--test-hook=SPEC ...]\n"
               "       mptrain DECK [--section.key=value ...] --print-deck[=KEYS]\n"
               "  Trains the model the deck describes; every deck key can be overridden on the\n"
               "  command line, e.g. --train.steps=10 --parallel.tp=2.\n"
               "  Exit codes: 0 done, 1 internal error, 2 bad input, 3 preempted (checkpoint\n"
               "  written), 4 numerical failure.\n"
               "  --test-hook=SPEC (for tests; repeatable) acts at a chosen step, on the rank R\n"
               "  given (default: every rank), so that tests need no timing:\n"
               "    signal:S[:R]    after step S, R raises SIGUSR1 on itself (preemption)\n"
               "    pause:S[:R]     after step S, R writes its PID to ./mptrain-paused.R and\n"
               "                    waits for SIGUSR1 or SIGTERM, which then stops the run\n"
               "    nan:S[:R]       a NaN in R's gradient of step S\n"
               "    kill-in-save:S  rank 0 dies (SIGKILL) half way through the step-S save\n"
               "  --print-deck[=KEYS] checks the deck and the overrides, prints the result and\n"
               "  exits (0, or 2 with the error) without starting MPI or reading any dataset or\n"
               "  checkpoint; run it without a launcher. Alone it prints the resolved deck as\n"
               "  INI text; with KEYS (section.key[,section.key...]) one line section.key=value\n"
               "  per key, in that order: split each line at its first '='; values never hold\n"
               "  a newline or '#'. Example:\n"
               "    mptrain run.deck --train.steps=9 --print-deck=checkpoint.dir,train.steps\n");
}

// mptrain DECK [overrides] --print-deck[=KEYS]: the resolved deck for job scripts, before MPI
// starts (no launcher, no collectives, no dataset). Returns the exit code, or -1 when the
// option is absent. --test-hook options are checked and otherwise ignored.
int print_deck_mode(const std::vector<std::string>& args) {
  std::optional<std::string> keys;  // empty optional: the whole deck
  bool wanted = false;
  std::vector<std::string> overrides, hook_specs;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--print-deck" || args[i].rfind("--print-deck=", 0) == 0) {
      wanted = true;
      keys.reset();
      if (args[i].size() > 12) keys = args[i].substr(13);
    } else if (i == 0) {
      continue;  // the deck
    } else if (args[i].rfind("--test-hook=", 0) == 0) {
      hook_specs.push_back(args[i].substr(12));
    } else if (args[i] == "--test-hook" && i + 1 < args.size()) {
      hook_specs.push_back(args[++i]);
    } else {
      overrides.push_back(args[i]);
    }
  }
  if (!wanted || args[0] == "-h" || args[0] == "--help") return -1;
  try {
    if (args.empty() || args[0].rfind("--", 0) == 0)
      throw mptrain::InputError("no deck file given (usage: mptrain DECK [--section.key=value ...] "
                                "--print-deck[=KEYS])");
    mptrain::TestHooks hooks;
    for (const std::string& spec : hook_specs) hooks.add(spec);
    const mptrain::Deck deck = mptrain::read_deck(args[0], overrides);
    std::string out = keys ? "" : deck.text();
    for (size_t begin = 0; keys && begin <= keys->size();) {
      const size_t end = std::min(keys->find(',', begin), keys->size());
      const std::string key = keys->substr(begin, end - begin);
      if (key.empty())
        throw mptrain::InputError("--print-deck=" + *keys + ": an empty key name (the form is "
                                  "--print-deck=section.key[,section.key...])");
      try {
        out += key + "=" + deck.value(key) + "\n";
      } catch (const mptrain::InputError& e) {
        throw mptrain::InputError(std::string("--print-deck: ") + e.what());
      }
      begin = end + 1;
    }
    std::fputs(out.c_str(), stdout);
  } catch (const mptrain::InputError& e) {
    std::fprintf(stderr, "mptrain: error: %s\n", e.what());
    return e.code();
  }
  if (std::fflush(stdout) != 0) {
    std::perror("mptrain: error: --print-deck: cannot write to standard output");
    return mptrain::exit_internal;
  }
  return mptrain::exit_ok;
}
}  // namespace

int main(int argc, char** argv) {
  if (const int code = print_deck_mode({argv + 1, argv + argc}); code >= 0) return code;
  const bool under_launcher = mptrain::started_by_launcher();  // before MPI_Init
  mptrain::MpiSession mpi(&argc, &argv);
  const int rank = mptrain::Comm::world().rank();
  if (under_launcher) mptrain::start_launcher_watchdog(rank);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "-h" || args[0] == "--help")) {
    if (rank == 0) usage(stdout);
    return mptrain::exit_ok;
  }
  int code = mptrain::exit_ok;
  try {
    if (args.empty() || args[0].rfind("--", 0) == 0)
      throw mptrain::InputError("no deck file given (usage: mptrain DECK [--section.key=value ...])");
    std::vector<std::string> overrides;
    mptrain::TestHooks hooks;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i].rfind("--test-hook=", 0) == 0) {
        hooks.add(args[i].substr(12));
      } else if (args[i] == "--test-hook") {
        if (i + 1 == args.size())
          throw mptrain::InputError(std::string("--test-hook needs a value: ") +
                                    mptrain::test_hook_usage);
        hooks.add(args[++i]);
      } else {
        overrides.push_back(args[i]);
      }
    }
    const mptrain::Deck deck = mptrain::read_deck(args[0], overrides);
    code = mptrain::train(deck, mptrain::Comm::world(), hooks);  // collective
  } catch (const mptrain::CheckpointWriteError& e) {
    // Every rank got this error (the save agrees on failures). HDF5 may still hold the broken
    // file and crash when MPI_Finalize makes it close it, so end here with the right code.
    if (rank == 0) std::fprintf(stderr, "mptrain: error: %s\n", e.what());
    std::fflush(stdout);
    std::fflush(stderr);
    mptrain::Comm::world().barrier();  // collective: nobody leaves before all have reported
    std::_Exit(e.code());
  } catch (const mptrain::InputError& e) {
    if (rank == 0) std::fprintf(stderr, "mptrain: error: %s\n", e.what());
    code = e.code();
  } catch (const std::exception& e) {
    // Not known to be seen by every rank: take the whole job down rather than risk a hang.
    mptrain::fatal(__FILE__, __LINE__, std::string("unexpected error: ") + e.what());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  return code;
}
