// The one main() of every mptrain program (mptrain, mptrain-prep, mptrain-ckpt, mptrain-bench,
// and any later one): whether MPI is started, the launcher watchdog, -h/--help, one error
// prefix and one exit policy (README, "Exit codes"). A program is its Program description and
// a body that takes the arguments and returns an exit code:
//
//   int main(int argc, char** argv) {
//     return mptrain::run_program({"mptrain-foo", mptrain::Program::Mpi::one_process, usage},
//                                 argc, argv, [](const std::vector<std::string>& args) {
//                                   ...
//                                   return mptrain::exit_ok;
//                                 });
//   }
//
// The exit policy, for whatever the body throws:
//   InputError (and CheckpointError): a problem every rank sees the same way (checked
//     identically everywhere, or agreed with Comm::agree): rank 0 prints the one line
//     "NAME: error: MESSAGE" and every rank exits with the error's code (2 unless it says);
//   CheckpointWriteError: the same line, then every rank ends without finalising MPI, after
//     a barrier (HDF5 may still hold the half-written file and crash when MPI_Finalize
//     closes it);
//   anything else: a bug or a failed library call on this rank alone. A lone process prints
//     "NAME: internal error: MESSAGE" and exits 1; with more ranks, fatal() aborts the whole
//     job (exit 1), so that no rank waits for this one.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "mptrain/io/deck.hpp"
#include "mptrain/parallel/comm.hpp"

namespace mptrain {

struct Program {
  enum class Mpi {
    none,         // an ordinary serial process that makes no MPI calls (mptrain-prep)
    one_process,  // MPI started, used on MPI_COMM_SELF (mptrain-ckpt)
    spmd,         // every rank of the world runs it (mptrain-bench)
    spmd_watched, // the same, and under a launcher each rank watches it (mptrain: a rank
                  // whose launcher has died stops, parallel/watchdog.hpp)
  };
  const char* name;  // e.g. "mptrain-ckpt": the prefix of every message
  Mpi mpi = Mpi::spmd;
  // Printed to stdout (by rank 0) when the first argument is -h or --help; the body then does
  // not run. Null: the body handles help itself.
  void (*usage)(std::FILE* out) = nullptr;
};

// Runs body(argv[1..]) under `program`'s MPI set-up and exit policy (above) and returns the
// process exit code. Collective over the world for the MPI kinds (MPI_Init, MPI_Finalize).
int run_program(const Program& program, int argc, char** argv,
                const std::function<int(const std::vector<std::string>& args)>& body);

// Collective over the world: read_deck on every rank, a failure on any rank (a deck file that
// only some nodes can read) made every rank's InputError.
Deck read_deck_everywhere(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace mptrain
