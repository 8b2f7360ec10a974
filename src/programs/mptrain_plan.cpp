// mptrain-plan: which layout to train a deck with on N ranks (doc/PLANNING.md). Planning is
// one ordinary process without MPI; `--measure -o FILE`, run under mpirun/srun on the target
// allocation, measures the machine file it plans with. This file is the command line; the
// planner is include/mptrain/train/plan.hpp, the machine model machine.hpp.
#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "mptrain/core/error.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/train/machine.hpp"
#include "mptrain/train/plan.hpp"
#include "programs/program.hpp"

namespace po = boost::program_options;

namespace mptrain {
namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
      "usage: mptrain-plan DECK --ranks N [--ranks-per-node R] [--mem-per-rank GiB]\n"
      "                    [--machine FILE] [--top K] [--section.key=value ...]\n"
      "       mpirun -np N mptrain-plan --measure -o FILE [--backend cpu|cuda|auto]\n"
      "                    [--threads T] [--name TEXT]\n"
      "  Plans: every valid layout of the deck's model and batch on N ranks (tp, pp, dp,\n"
      "  micro_batch, zero, recompute, stages) with its memory per rank (the analytic counts\n"
      "  mptrain-bench checks) and predicted step time on the machine (--machine FILE, else\n"
      "  the built-in 2-core development box); a table fastest first (--top K rows, 30 by\n"
      "  default), one PLAN line per layout, and a RECOMMEND line. --ranks-per-node: ranks\n"
      "  on one node (default: all); --mem-per-rank: the limit for fits=yes (default: the\n"
      "  machine's memory per rank).\n"
      "  --measure: measures this allocation (GEMM, attention and streaming rates per rank,\n"
      "  ping-pong within and across nodes) and writes the machine file FILE.\n");
}

// A whole number >= 1 (the planner's counts), named in the error.
int positive_int(const std::string& option, const std::string& text) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || v < 1)
    throw InputError("command line: --" + option + " = \"" + text + "\": must be a whole number >= 1");
  return v;
}

double positive_number(const std::string& option, const std::string& text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !(v > 0) ||
      !std::isfinite(v))
    throw InputError("command line: --" + option + " = \"" + text + "\": must be a number > 0");
  return v;
}

struct Arguments {
  po::variables_map values;
  std::vector<std::string> positional, deck_overrides;
};

// The planner's own options; what looks like --section.key=value goes to the deck, anything
// else is refused.
Arguments parse_arguments(const std::vector<std::string>& args) {
  po::options_description d("mptrain-plan options");
  d.add_options()("ranks", po::value<std::string>())("ranks-per-node", po::value<std::string>())(
      "mem-per-rank", po::value<std::string>())("machine", po::value<std::string>())(
      "top", po::value<std::string>())("measure", "")("output,o", po::value<std::string>())(
      "backend", po::value<std::string>())("threads", po::value<std::string>())(
      "name", po::value<std::string>())("deck", po::value<std::vector<std::string>>());
  po::positional_options_description deck;
  deck.add("deck", -1);
  Arguments a;
  try {
    const po::parsed_options parsed = po::command_line_parser(args)
        .options(d)
        .positional(deck)
        .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
        .allow_unregistered()
        .run();
    po::store(parsed, a.values);
    for (const po::option& o : parsed.options) {
      if (!o.unregistered) continue;
      const std::string token = o.original_tokens.empty() ? "" : o.original_tokens[0];
      if (token.rfind("--", 0) == 0 && token.find('.') != std::string::npos &&
                 token.find('.') < token.find('=')) {
        for (const std::string& t : o.original_tokens) a.deck_overrides.push_back(t);
      } else {
        throw InputError("command line: unknown option '" + token + "' (mptrain-plan --help "
                         "lists them; deck keys look like --section.key=value)");
      }
    }
  } catch (const po::error& e) {
    throw InputError(std::string("command line: ") + e.what() + " (mptrain-plan --help)");
  }
  if (a.values.count("deck")) a.positional = a.values["deck"].as<std::vector<std::string>>();
  return a;
}

std::string option(const Arguments& a, const char* name, const std::string& fallback = "") {
  return a.values.count(name) ? a.values[name].as<std::string>() : fallback;
}

// The deck as mptrain-bench reads it: [data] train = random when it names no data.
Deck read_plan_deck(const std::string& path, std::vector<std::string> overrides) {
  try {
    return read_deck(path, overrides);
  } catch (const InputError& e) {
    if (std::string(e.what()).find("[data] train is required") == std::string::npos) throw;
  }
  overrides.push_back("--data.train=random");
  return read_deck(path, overrides);
}

int plan(const Arguments& a) {
  if (a.positional.size() != 1)
    throw InputError(a.positional.empty() ? "no deck file given (usage: mptrain-plan DECK --ranks N ...)"
                                          : "command line: one deck file expected, got '" +
                                                a.positional[1] + "' too");
  if (!a.values.count("ranks")) throw InputError("command line: --ranks N is required");
  for (const char* measure_only : {"output", "backend", "threads", "name"})
    if (a.values.count(measure_only))
      throw InputError(std::string("command line: --") + measure_only + " belongs to --measure");
  PlanRequest request;
  request.ranks = positive_int("ranks", option(a, "ranks"));
  if (a.values.count("ranks-per-node"))
    request.ranks_per_node = positive_int("ranks-per-node", option(a, "ranks-per-node"));
  if (a.values.count("mem-per-rank"))
    request.mem_per_rank_gib = positive_number("mem-per-rank", option(a, "mem-per-rank"));
  const int top = a.values.count("top") ? positive_int("top", option(a, "top")) : 30;
  const Machine machine = a.values.count("machine") ? read_machine_file(option(a, "machine"))
                                                    : builtin_machine();
  request.deck = read_plan_deck(a.positional[0], a.deck_overrides);
  print_plan(make_plan(request, machine), stdout, top);
  return exit_ok;
}

// Collective over the world: measures and writes the machine file (rank 0).
int measure(const Arguments& a) {
  const Comm world = Comm::world();
  if (!a.positional.empty() || !a.deck_overrides.empty() || a.values.count("ranks") ||
      a.values.count("machine"))
    throw InputError("command line: --measure takes only -o FILE, --backend, --threads, --name");
  const std::string path = option(a, "output");
  if (path.empty()) throw InputError("command line: --measure needs -o FILE");
  MeasureOptions o;
  o.backend = option(a, "backend", "cpu");
  if (o.backend != "cpu" && o.backend != "cuda" && o.backend != "auto")
    throw InputError("command line: --backend = \"" + o.backend + "\": must be cpu, cuda or auto");
  if (a.values.count("threads")) o.threads = positive_int("threads", option(a, "threads"));
  o.name = option(a, "name");
  std::string report;
  const Machine machine = measure_machine(world, o, report);  // collective
  agree_on<InputError>(world, [&] {  // collective: only rank 0 writes
    if (world.rank() != 0) return;
    std::ofstream out(path);
    out << machine_file_text(machine, "measured by mptrain-plan --measure; " + report);
    out.close();
    if (!out) throw InputError("cannot write machine file '" + path + "'");
  });
  if (world.rank() == 0) {
    std::printf("mptrain-plan --measure: %s\n%s\nwrote %s\n", machine.name.c_str(),
                report.c_str(), path.c_str());
  }
  return exit_ok;
}

}  // namespace
}  // namespace mptrain

int main(int argc, char** argv) {
  using namespace mptrain;
  bool measuring = false;
  for (int i = 1; i < argc; ++i) measuring = measuring || std::strcmp(argv[i], "--measure") == 0;
  // Planning is an ordinary process; measuring runs on every rank of the allocation.
  const Program program{"mptrain-plan", measuring ? Program::Mpi::spmd : Program::Mpi::none, usage};
  return run_program(program, argc, argv, [&](const std::vector<std::string>& args) {
    const Arguments a = parse_arguments(args);
    return measuring ? measure(a) : plan(a);
  });
}
