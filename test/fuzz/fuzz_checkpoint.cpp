// libFuzzer harness for the checkpoint reader (test/fuzz_run.sh builds and runs it).
// Each input is written to a file and read on MPI_COMM_SELF along the whole path a restart
// takes (Run::restore_checkpoint): the root attributes and the /optim step
// (read_checkpoint_meta), the model check of the stored [model] section
// (check_checkpoint_model), then every tensor of /model, /optim/m and /optim/v of the tiny
// model the seed corpus was written for (test/bad_files tiny-checkpoint: 1 layer, n_head 2,
// n_embd 4, seq_len 4, vocab 16). The whole stored deck is parsed too, as mptrain-ckpt info
// does. The contract under test (checkpoint.hpp): an unusable file throws CheckpointError (an
// InputError); anything else (another exception, a crash, a sanitizer report, fatal()) is a
// finding. With FUZZ_SHOW_REFUSAL set, the refusal's message is printed (stderr, "refused: ").
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mptrain/io/checkpoint.hpp"
#include "mptrain/model/catalogue.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"

namespace {

std::string path;

// The tiny model's tensors for one group, each held whole by this rank.
struct Tensors {
  std::vector<std::vector<float>> host;
  std::vector<mptrain::TensorIO> views;
  Tensors() {
    const auto shapes = mptrain::gpt2_tensor_shapes(1, 4, 4, 16);
    host.reserve(shapes.size());
    for (const auto& [name, shape] : shapes) {
      mptrain::ShardSpec spec;
      spec.name = name;
      spec.global_shape = shape;
      spec.local_rows = shape[0];
      spec.local_cols = shape.size() == 2 ? shape[1] : 1;
      spec.blocks = {{0, 0, 0, 0, spec.local_rows, spec.local_cols}};
      host.emplace_back(static_cast<size_t>(spec.local_size()));
      views.push_back({spec, host.back().data()});
    }
  }
};

mptrain::ModelConfig tiny_model() {
  mptrain::ModelConfig model;
  model.n_layer = 1;
  model.n_head = 2;
  model.n_embd = 4;
  model.seq_len = 4;
  model.vocab_size = 16;
  return model;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static mptrain::MpiSession mpi(argc, argv);
  path = "fuzz_checkpoint_" + std::to_string(::getpid()) + ".h5";
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
  static Tensors model, adam_m, adam_v;
  static const mptrain::ModelConfig expected = tiny_model();
  const mptrain::Comm self = mptrain::Comm::self();
  try {
    const mptrain::CheckpointMeta meta = mptrain::read_checkpoint_meta(self, path);
    try {
      mptrain::parse_deck_text(meta.deck_text, path + " (stored deck)");
    } catch (const mptrain::InputError&) {
    }
    mptrain::check_checkpoint_model(path, meta, expected);
    mptrain::read_checkpoint_tensors(self, path, {model.views, adam_m.views, adam_v.views});
  } catch (const mptrain::CheckpointError& e) {
    // test/fuzz_run.sh sets this to check a regression is refused for the reason it names.
    if (std::getenv("FUZZ_SHOW_REFUSAL")) std::fprintf(stderr, "refused: %s\n", e.what());
  } catch (const mptrain::InputError& e) {
    std::fprintf(stderr, "fuzz_checkpoint: an InputError that is not a CheckpointError: %s\n",
                 e.what());
    std::abort();
  }
  std::remove(path.c_str());
  return 0;
}
