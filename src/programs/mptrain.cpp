// mptrain: train a GPT-2 model from an input deck. Run with mpirun/srun on any number of
// ranks, or as one process. Errors every rank sees (deck, data, layout, checkpoints) are
// printed once by rank 0 and every rank exits with the same code (program.hpp, README: exit
// codes).
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "mptrain/core/error.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/train/test_hooks.hpp"
#include "mptrain/train/trainer.hpp"
#include "programs/program.hpp"

namespace mptrain {
namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: mptrain DECK [--section.key=value ...] [--test-hook=SPEC ...]\n"
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
               "    kill-in-save:S  rank 0 dies (SIGKILL) half way through the step-S save\n");
}

// What the command line asks for: mptrain's own options, and the rest as deck overrides.
struct Command {
  std::string deck;                    // DECK
  std::vector<std::string> overrides;  // --section.key=value (read_deck checks them)
  TestHooks hooks;                     // --test-hook=SPEC
};

// The value of option `name` at args[i] ("--name=V", or "--name V", which consumes args[i+1]);
// nothing when args[i] is another argument. Throws InputError when the value is missing.
std::optional<std::string> option_value(const std::vector<std::string>& args, size_t& i,
                                        const std::string& name, const char* what) {
  const std::string& a = args[i];
  if (a.rfind(name + "=", 0) == 0) return a.substr(name.size() + 1);
  if (a != name) return std::nullopt;
  if (i + 1 == args.size()) throw InputError(name + " needs a value: " + what);
  return args[++i];
}

Command parse_command_line(const std::vector<std::string>& args) {
  if (args.empty() || args[0].rfind("--", 0) == 0)
    throw InputError("no deck file given (usage: mptrain DECK [--section.key=value ...])");
  Command command;
  command.deck = args[0];
  for (size_t i = 1; i < args.size(); ++i) {
    if (auto spec = option_value(args, i, "--test-hook", test_hook_usage))
      command.hooks.add(*spec);
    else
      command.overrides.push_back(args[i]);
  }
  return command;
}

}  // namespace
}  // namespace mptrain

int main(int argc, char** argv) {
  using namespace mptrain;
  const Program program{"mptrain", Program::Mpi::spmd_watched, usage};
  return run_program(program, argc, argv, [](const std::vector<std::string>& args) {
    const Command command = parse_command_line(args);
    const Deck deck = read_deck_everywhere(command.deck, command.overrides);  // collective
    return train(deck, Comm::world(), command.hooks);                         // collective
  });
}

