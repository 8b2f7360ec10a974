// Checkpoint glue of a training run: maps the flat parameter and AdamW buffers to the global
// tensors of the checkpoint schema (each rank its own shard), and applies the restart policy.
#include <cstdio>
#include <sstream>

#include "mptrain/error.hpp"
#include "run.hpp"

namespace mptrain {

std::string Run::layout_text() const {
  return grid.layout().str() + " zero=" + std::to_string(deck.optim.zero);
}

namespace {

std::vector<TensorIO> tensor_views(const ParamSet& params, std::vector<float>& host) {
  std::vector<TensorIO> views;
  for (const ParamInfo& p : params.infos()) views.push_back({p.spec, host.data() + p.offset});
  return views;
}

}  // namespace

void Run::save_checkpoint() {
  if (deck.checkpoint.dir.empty()) return;
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
  CheckpointDir dir(deck.checkpoint.dir, deck.checkpoint.keep);
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

void Run::restart() {
  const CheckpointConfig& c = deck.checkpoint;
  if (c.restart == "none") return;
  if (c.restart != "auto") {
    restore_checkpoint(c.restart);  // an explicit file must work
    return;
  }
  if (c.dir.empty()) return;
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
      return;
    } catch (const CheckpointError& e) {
      ++refused;
      if (is_root()) std::fprintf(stderr, "mptrain: refusing checkpoint: %s\n", e.what());
    }
  }
  if (refused)
    throw InputError("no usable checkpoint in '" + c.dir + "' (" + std::to_string(refused) +
                     " refused, see above); move them away or set [checkpoint] restart = none");
}

}  // namespace mptrain
