// GPT-2 weights to and from mptrain checkpoints (gpt2_formats.hpp), on one process: the whole
// model is one shard covering every tensor, written and read with the library's collective
// checkpoint code over MPI_COMM_SELF, so an imported file is exactly like a trained one.
#include <algorithm>
#include <filesystem>

#include "mptrain/io/gpt2_formats.hpp"
#include "mptrain/io/checkpoint.hpp"
#include "mptrain/parallel/comm.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain::gpt2io {

namespace {

// The whole tensor as this process's one block.
ShardSpec whole(const NamedTensor& t) {
  ShardSpec spec;
  spec.name = t.name;
  spec.global_shape = t.shape;
  spec.local_rows = t.shape[0];
  spec.local_cols = t.shape.size() > 1 ? t.shape[1] : 1;
  spec.blocks = {{0, 0, 0, 0, spec.local_rows, spec.local_cols}};
  return spec;
}

}  // namespace

void write_initial_checkpoint(const Gpt2Model& model, const std::string& path,
                              const std::string& source) {
  const Gpt2Config& c = model.config;
  Deck deck;
  deck.model = {c.n_layer, c.n_head, c.n_embd, c.n_positions, c.vocab_size};
  deck.data.train = "(none: imported weights)";  // a complete deck needs one
  CheckpointMeta meta;
  meta.deck_text = deck.text();
  meta.model_text = deck.model_text();
  meta.layout = "tp=1 pp=1 dp=1 zero=0 (imported from " + source + ")";
  meta.rng_seed = deck.train.seed;

  // The writer only reads the host arrays; the moments of a fresh AdamW are all zero, so one
  // zero array as large as the largest tensor serves every /optim tensor.
  size_t largest = 0;
  for (const NamedTensor& t : model.tensors) largest = std::max(largest, t.values.size());
  std::vector<float> zeros(largest, 0.0f);
  std::vector<TensorIO> weights, moments;
  for (const NamedTensor& t : model.tensors) {
    weights.push_back({whole(t), const_cast<float*>(t.values.data())});
    moments.push_back({whole(t), zeros.data()});
  }
  // Written under a temporary name and renamed, so a failed import leaves no half file.
  const std::string temporary = path + ".tmp";
  write_checkpoint_file(Comm::self(), temporary, meta, {weights, moments, moments});
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) throw CheckpointError(path + ": cannot rename " + temporary + " to it: " + ec.message());
}

Gpt2Model read_checkpoint_model(const std::string& path) {
  const CheckpointMeta meta = read_checkpoint_meta(Comm::self(), path);
  ModelConfig m;
  try {
    // Only [model] matters; the override completes the deck (its [data] train is required).
    m = parse_deck_text(meta.model_text.empty() ? meta.deck_text : meta.model_text,
                        path + " (stored [model] section)", {"--data.train=unused"})
            .model;
  } catch (const InputError& e) {
    throw CheckpointError(path + ": the stored [model] section cannot be read: " + e.what());
  }
  if (m.vocab_size < 1)
    throw CheckpointError(path + ": the stored [model] section has no resolved vocab_size");
  Gpt2Model model = zero_model({m.n_layer, m.n_head, m.n_embd, m.seq_len, m.vocab_size}, path);
  std::vector<TensorIO> views;
  for (NamedTensor& t : model.tensors) views.push_back({whole(t), t.values.data()});
  read_checkpoint_tensors(Comm::self(), path, {views, {}, {}});
  return model;
}

}  // namespace mptrain::gpt2io
