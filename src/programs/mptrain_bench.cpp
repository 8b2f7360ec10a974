// mptrain-bench: measures a training step of the deck's model against the backend's own GEMM
// rate on the step's matrix shapes (doc/DESIGN.md §6). Run it like mptrain (one process, or under
// mpirun/srun); every deck key can be overridden with --section.key=value, and the benchmark's
// own options are --bench.KEY=VALUE (see usage()). This file is the command line; what is
// measured and how it is reported are in the library (include/mptrain/train/benchmark.hpp):
// measure_benchmark() on every rank, then print_benchmark() on rank 0.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mptrain/core/error.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/train/benchmark.hpp"
#include "programs/program.hpp"

namespace mptrain {
namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
      "usage: mptrain-bench DECK [--section.key=value ...] [--bench.KEY=VALUE ...]\n"
      "  Times training steps of the deck's model and compares them with the backend's GEMM\n"
      "  rate on the step's own matrix shapes (the SGEMM ceiling). Run under mpirun/srun for\n"
      "  several ranks. [data] train = random (or no [data] train) uses random tokens.\n"
      "  --bench.warmup=N          untimed steps first (default 3)\n"
      "  --bench.steps=N           timed steps (default 10)\n"
      "  --bench.profile_steps=N   steps of the profiled pass for the breakdown (default 5;\n"
      "                            0 = no breakdown)\n"
      "  --bench.gemm_trials=N     trials per GEMM shape for the ceiling, interleaved with\n"
      "                            the timed steps (default 6)\n"
      "  --bench.gemm_seconds=S    minimum seconds per trial (default 0.02)\n"
      "  Pin threads for stable numbers: OMP_PROC_BIND=close OMP_PLACES=cores, and with mpirun\n"
      "  give each rank its cores (--bind-to none, or --map-by slot:PE=THREADS).\n");
}

// Takes the --bench.* arguments out of args.
BenchOptions parse_options(std::vector<std::string>& args) {
  BenchOptions o;
  std::vector<std::string> rest;
  for (const std::string& a : args) {
    if (a.rfind("--bench.", 0) != 0) {
      rest.push_back(a);
      continue;
    }
    const size_t eq = a.find('=');
    const std::string key = a.substr(8, eq == std::string::npos ? std::string::npos : eq - 8);
    const std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(v >= 0))
      throw InputError("command line: " + a + ": needs a number >= 0 (--bench." + key + "=N)");
    if (key == "warmup") o.warmup = long(v);
    else if (key == "steps") o.steps = std::max(1L, long(v));
    else if (key == "profile_steps") o.profile_steps = long(v);
    else if (key == "gemm_trials") o.gemm_trials = std::max(1, int(v));
    else if (key == "gemm_seconds") o.gemm_seconds = v;
    else
      throw InputError("command line: unknown option --bench." + key +
                       " (allowed: warmup, steps, profile_steps, gemm_trials, gemm_seconds)");
  }
  args = rest;
  return o;
}

// Collective over the world: the deck, with [data] train = random when the deck names no
// training data.
Deck read_bench_deck(const std::string& path, std::vector<std::string> overrides) {
  try {
    return read_deck_everywhere(path, overrides);  // collective
  } catch (const InputError& e) {
    if (std::string(e.what()).find("[data] train is required") == std::string::npos) throw;
  }
  overrides.push_back(std::string("--data.train=") + bench_random_data);
  return read_deck_everywhere(path, overrides);  // collective
}

}  // namespace
}  // namespace mptrain

int main(int argc, char** argv) {
  using namespace mptrain;
  const Program program{"mptrain-bench", Program::Mpi::spmd, usage};
  return run_program(program, argc, argv, [](const std::vector<std::string>& args) {
    if (args.empty() || args[0].rfind("--", 0) == 0)
      throw InputError("no deck file given (usage: mptrain-bench DECK [--section.key=value "
                       "...] [--bench.KEY=VALUE ...])");
    const std::string path = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    const BenchOptions options = parse_options(rest);
    const Deck deck = read_bench_deck(path, rest);                  // collective
    const BenchResult result = measure_benchmark(deck, options);    // collective
    if (Comm::world().rank() == 0) print_benchmark(result, path);  // not collective
    return int(exit_ok);
  });
}
