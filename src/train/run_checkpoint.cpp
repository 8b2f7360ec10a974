// Checkpoint glue of a training run: maps the flat parameter and AdamW buffers to the global
// tensors of the checkpoint schema (each rank its own shard), and applies the restart policy
// and [checkpoint] init (fine-tuning from the model of any checkpoint).
#include <cstdio>
#include <sstream>

#include "mptrain/core/error.hpp"
#include "mptrain/parallel/watchdog.hpp"
#include "mptrain/train/run.hpp"

namespace mptrain {

namespace {

std::vector<TensorIO> tensor_views(const ParamSet& params, std::vector<float>& host) {
  std::vector<TensorIO> views;
  for (const ParamInfo& p : params.infos()) views.push_back({p.spec, host.data() + p.offset});
  return views;
}

// [checkpoint] init: the stored [model] must equal ours except seq_len, which may be shorter
// than the stored positions. Returns the stored seq_len (rows of the stored wpe).
int check_init_model(const std::string& where, const CheckpointMeta& meta, const Deck& deck) {
  Deck stored;
  try {
    stored = parse_deck_text(meta.model_text + "\n[data]\ntrain = (stored)\n",
                             where + " (stored [model] section)");
  } catch (const InputError& e) {
    throw CheckpointError(where + ": the stored [model] section cannot be read: " + e.what());
  }
  const ModelConfig &a = stored.model, &b = deck.model;
  const std::pair<const char*, std::pair<int, int>> keys[] = {
      {"n_layer", {a.n_layer, b.n_layer}}, {"n_head", {a.n_head, b.n_head}},
      {"n_embd", {a.n_embd, b.n_embd}}, {"vocab_size", {a.vocab_size, b.vocab_size}}};
  for (const auto& [key, values] : keys)
    if (values.first != values.second)
      throw CheckpointError(where + ": written for a different model: [model] " + key + " = " +
                            std::to_string(values.first) + " in the checkpoint, " +
                            std::to_string(values.second) + " in the deck" +
                            (std::string(key) == "vocab_size"
                                 ? " (set [model] vocab_size to the checkpoint's)" : ""));
  if (b.seq_len > a.seq_len)
    throw CheckpointError(where + ": [model] seq_len = " + std::to_string(b.seq_len) +
                          " exceeds the " + std::to_string(a.seq_len) +
                          " positions the checkpoint holds (rows of wpe)");
  return a.seq_len;
}

}  // namespace

void Run::save_checkpoint() {
  if (deck.checkpoint.dir.empty()) return;
  exit_if_launcher_gone();  // never start a save for a job whose launcher has died
  std::vector<float> params = model->params().params().to_host();
  std::vector<float> m, v;
  optimizer->gather_state(m, v);  // collective over DP under ZeRO-1
  const auto model_views = tensor_views(model->params(), params);
  const auto m_views = tensor_views(model->params(), m);
  const auto v_views = tensor_views(model->params(), v);
  CheckpointMeta meta;
  meta.step = step;
  meta.tokens_seen = tokens_seen;
  meta.deck_text = deck.text();
  meta.model_text = deck.model_text();
  meta.layout = layout_text();
  meta.sampler_position = sampler->position();
  meta.rng_seed = deck.train.seed;
  meta.rng_offset = sampler->draws();
  meta.adam_step = optimizer->adam_step();
  meta.tokenizer = train_data.tokenizer().name;
  meta.tokenizer_vocab = train_data.tokenizer().vocab;
  CheckpointDir dir(deck.checkpoint.dir, deck.checkpoint.keep);
  dir.set_test_kill_in_save(hooks.kill_in_save);
  double seconds = 0;
  uint64_t bytes = 0;
  const std::string path =
      dir.save(grid.world(), meta, {model_views, m_views, v_views}, &seconds, &bytes);  // collective
  last_saved_step = step;
  if (is_root())
    std::printf("checkpoint %s: %.1f MB in %.3f s (%.1f MB/s)\n", path.c_str(), bytes / 1e6,
                seconds, seconds > 0 ? bytes / 1e6 / seconds : 0.0);
  std::fflush(stdout);
}

void Run::restore_checkpoint(const std::string& path) {
  const CheckpointMeta meta = read_checkpoint_meta(grid.world(), path);  // collective
  check_checkpoint_model(path, meta, deck.model);
  ParamSet& ps = model->params();
  std::vector<float> params(ps.padded(), 0.0f), m(ps.padded(), 0.0f), v(ps.padded(), 0.0f);
  const auto model_views = tensor_views(ps, params);
  const auto m_views = tensor_views(ps, m);
  const auto v_views = tensor_views(ps, v);
  read_checkpoint_tensors(grid.world(), path, {model_views, m_views, v_views});  // collective
  backend->to_device(ps.params().data(), params.data(), params.size());
  optimizer->scatter_state(m, v);
  optimizer->set_adam_step(meta.adam_step);
  step = meta.step;
  tokens_seen = meta.tokens_seen;
  sampler->restore(meta.rng_offset, meta.sampler_position);
  last_saved_step = step;
  if (is_root())
    std::printf("restarted from %s (step %ld, written with %s)\n", path.c_str(), step,
                meta.layout.c_str());
}

bool Run::resume() {
  const CheckpointConfig& c = deck.checkpoint;
  if (c.restart == "none") return false;
  if (c.restart != "auto") {
    restore_checkpoint(c.restart);  // an explicit file must work
    return true;
  }
  if (c.dir.empty()) return false;
  // Rank 0 lists the directory and tells everyone, so all ranks try the same files in order.
  std::string listing;
  if (is_root())
    for (const std::string& p : CheckpointDir(c.dir).candidates()) listing += p + "\n";
  listing = grid.world().bcast_string(listing, 0);  // collective
  std::istringstream in(listing);
  int refused = 0;
  for (std::string path; std::getline(in, path);) {
    try {
      restore_checkpoint(path);  // collective
      if (refused && is_root())
        std::printf("fell back to %s after refusing %d newer checkpoint(s)\n", path.c_str(),
                    refused);
      return true;
    } catch (const CheckpointError& e) {
      ++refused;
      if (is_root()) std::fprintf(stderr, "mptrain: refusing checkpoint: %s\n", e.what());
    }
  }
  if (refused)
    throw InputError("no usable checkpoint in '" + c.dir + "' (" + std::to_string(refused) +
                     " refused, see above); move them away or set [checkpoint] restart = none");
  return false;
}

// A run resumes its own checkpoints if it has any (restart); only a run that restored nothing
// starts from [checkpoint] init, so a fine-tuning job that is requeued continues where it was.
void Run::restart() {
  const std::string& init = deck.checkpoint.init;
  if (!resume()) {
    if (!init.empty()) init_model(init);
  } else if (!init.empty() && is_root()) {
    std::printf("[checkpoint] init = %s not used: the run resumed from a checkpoint\n",
                init.c_str());
  }
}

void Run::init_model(const std::string& path) {
  const std::string where = "[checkpoint] init = " + path;
  CheckpointMeta meta;
  try {
    meta = read_checkpoint_meta(grid.world(), path);  // collective
  } catch (const CheckpointError& e) {
    throw CheckpointError(where + ": " + e.what());
  }
  const int stored_positions = check_init_model(where, meta, deck);
  ParamSet& ps = model->params();
  std::vector<float> params(ps.padded(), 0.0f);
  std::vector<TensorIO> views = tensor_views(ps, params);
  // Blocks are global coordinates: with the stored row count, the same blocks select the
  // first seq_len rows of the stored wpe.
  for (size_t i = 0; i < views.size(); ++i)
    if (ps.infos()[i].tensor.module == Module::position_embedding)
      views[i].spec.global_shape[0] = stored_positions;
  try {
    read_checkpoint_tensors(grid.world(), path, {views, {}, {}});  // collective
  } catch (const CheckpointError& e) {
    throw CheckpointError(where + ": " + e.what());
  }
  backend->to_device(ps.params().data(), params.data(), params.size());
  if (is_root())
    std::printf("initialised the model from %s (step %ld, written with %s); starting at step 0 "
                "with a fresh optimizer\n",
                path.c_str(), meta.step, meta.layout.c_str());
}

}  // namespace mptrain
