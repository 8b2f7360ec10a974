// The one main() of every mptrain program and its exit policy (program.hpp).
#include "programs/program.hpp"

#include <cstdlib>
#include <exception>
#include <memory>

#include "mptrain/core/error.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/parallel/watchdog.hpp"

namespace mptrain {

namespace {

void flush_output() {
  std::fflush(stdout);
  std::fflush(stderr);
}

// The exit policy of program.hpp for the exception being handled; returns the exit code (or
// does not return). `rank` and `ranks` are those of the world for the SPMD kinds; a process
// that is not one rank of many (no MPI, or MPI on MPI_COMM_SELF) has -1 and 1.
int exit_for_exception(const Program& program, int rank, int ranks) {
  const bool root = rank <= 0;
  std::fflush(stdout);  // what the program printed comes before its error
  try {
    throw;
  } catch (const CheckpointWriteError& e) {
    if (root) std::fprintf(stderr, "%s: error: %s\n", program.name, e.what());
    flush_output();
    if (program.mpi != Program::Mpi::none)
      Comm::world().barrier();  // collective: nobody leaves before all have reported
    std::_Exit(e.code());
  } catch (const InputError& e) {
    if (root) std::fprintf(stderr, "%s: error: %s\n", program.name, e.what());
    return e.code();
  } catch (const std::exception& e) {
    if (ranks > 1) fatal(__FILE__, __LINE__, std::string("unexpected error: ") + e.what());
    std::fprintf(stderr, "%s: internal error: %s\n", program.name, e.what());
    return exit_internal;
  }
}

}  // namespace

int run_program(const Program& program, int argc, char** argv,
                const std::function<int(const std::vector<std::string>& args)>& body) {
  const bool watched = program.mpi == Program::Mpi::spmd_watched && started_by_launcher();
  std::unique_ptr<MpiSession> mpi;  // after the launcher check, which must precede MPI_Init
  if (program.mpi != Program::Mpi::none) mpi = std::make_unique<MpiSession>(&argc, &argv);
  const bool spmd = program.mpi == Program::Mpi::spmd || program.mpi == Program::Mpi::spmd_watched;
  const int rank = spmd ? Comm::world().rank() : -1, ranks = spmd ? Comm::world().size() : 1;
  if (watched) start_launcher_watchdog(rank);
  const std::vector<std::string> args(argv + 1, argv + argc);
  int code = exit_ok;
  if (program.usage && !args.empty() && (args[0] == "-h" || args[0] == "--help")) {
    if (rank <= 0) program.usage(stdout);
  } else {
    try {
      code = body(args);
    } catch (const std::exception&) {
      code = exit_for_exception(program, rank, ranks);
    }
  }
  flush_output();
  return code;
}

Deck read_deck_everywhere(const std::string& path, const std::vector<std::string>& overrides) {
  Deck deck;
  agree_on<InputError>(Comm::world(), [&] { deck = read_deck(path, overrides); });
  return deck;
}

}  // namespace mptrain
