// libFuzzer harness for the token-dataset reader (test/fuzz_run.sh builds and runs it).
// Each input is written to a file, opened with TokenDataset::open on MPI_COMM_SELF and read
// whole. The contract under test (data.hpp): opening either succeeds or throws InputError, and
// so does the read -- which, when it succeeds, returns only tokens in [0, vocab_size).
// Anything else (another exception, a crash, a sanitizer report, fatal()) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/data.hpp"
#include "mptrain/core/error.hpp"

namespace {
std::string path;
}

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // MPI once per process, finalised at exit.
  static mptrain::MpiSession mpi(argc, argv);
  path = "fuzz_dataset_" + std::to_string(::getpid()) + ".h5";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) {
      std::perror(path.c_str());
      std::abort();
    }
  }
  try {
    const mptrain::TokenDataset d = mptrain::TokenDataset::open(mptrain::Comm::self(), path);
    if (d.size() == 0 || d.vocab_size() < 1) std::abort();
    std::vector<int32_t> tokens(d.size());
    d.read(0, tokens);
    for (int32_t t : tokens)
      if (t < 0 || t >= d.vocab_size()) std::abort();
  } catch (const mptrain::InputError&) {
  }
  std::remove(path.c_str());
  return 0;
}
