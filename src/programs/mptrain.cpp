// mptrain: train a GPT-2 model from an input deck. Run with mpirun/srun on any number of
// ranks, or as one process. Errors every rank sees (deck, data, layout, checkpoints) are
// printed once by rank 0 and every rank exits with the same code (program.hpp, README: exit
// codes).
#include <algorithm>
#include <cstdio>
#include <stdexcept>
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

// What the command line asks for: mptrain's own options, and the rest as deck overrides.
struct Command {
  std::string deck;                    // DECK
  std::vector<std::string> overrides;  // --section.key=value (read_deck checks them)
  TestHooks hooks;                     // --test-hook=SPEC
  bool print_deck = false;             // --print-deck[=KEYS]: print, do not train
  std::optional<std::string> print_keys;  // KEYS; none: the whole deck
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
    if (auto spec = option_value(args, i, "--test-hook", test_hook_usage)) {
      command.hooks.add(*spec);
    } else if (args[i] == "--print-deck" || args[i].rfind("--print-deck=", 0) == 0) {
      command.print_deck = true;
      command.print_keys.reset();
      if (args[i] != "--print-deck") command.print_keys = args[i].substr(13);
    } else {
      command.overrides.push_back(args[i]);
    }
  }
  return command;
}

// mptrain DECK [overrides] --print-deck[=KEYS]: the resolved deck for job scripts, before MPI
// starts (no launcher, no collectives, no dataset); --test-hook options are checked only.
int print_deck(const Command& command) {
  const Deck deck = read_deck(command.deck, command.overrides);
  if (!command.print_keys) {
    std::fputs(deck.text().c_str(), stdout);
  } else {
    const std::string& keys = *command.print_keys;
    std::string out;
    for (size_t begin = 0; begin <= keys.size();) {
      const size_t end = std::min(keys.find(',', begin), keys.size());
      const std::string key = keys.substr(begin, end - begin);
      if (key.empty())
        throw InputError("--print-deck=" + keys + ": an empty key name (the form is "
                         "--print-deck=section.key[,section.key...])");
      try {
        out += key + "=" + deck.value(key) + "\n";
      } catch (const InputError& e) {
        throw InputError(std::string("--print-deck: ") + e.what());
      }
      begin = end + 1;
    }
    std::fputs(out.c_str(), stdout);
  }
  if (std::fflush(stdout) != 0)
    throw std::runtime_error("--print-deck: cannot write to standard output");
  return exit_ok;
}

bool wants_print_deck(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string a = argv[i]; a == "--print-deck" || a.rfind("--print-deck=", 0) == 0)
      return true;
  return false;
}

}  // namespace
}  // namespace mptrain

int main(int argc, char** argv) {
  using namespace mptrain;
  if (wants_print_deck(argc, argv))  // serial: job scripts ask before they launch
    return run_program({"mptrain", Program::Mpi::none, usage}, argc, argv,
                       [](const std::vector<std::string>& args) {
                         return print_deck(parse_command_line(args));
                       });
  const Program program{"mptrain", Program::Mpi::spmd_watched, usage};
  return run_program(program, argc, argv, [](const std::vector<std::string>& args) {
    const Command command = parse_command_line(args);
    const Deck deck = read_deck_everywhere(command.deck, command.overrides);  // collective
    return train(deck, Comm::world(), command.hooks);                         // collective
  });
}

