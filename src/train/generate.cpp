// Autoregressive sampling from a checkpoint on one process: the model is rebuilt on a 1x1x1
// grid over MPI_COMM_SELF, its parameters read from the file, and each new token is drawn
// from softmax(logits / temperature) of the last position of a sliding context window.
#include "mptrain/train/generate.hpp"

#include <algorithm>
#include <cmath>

#include "mptrain/io/checkpoint.hpp"
#include "mptrain/io/deck.hpp"
#include "mptrain/core/error.hpp"
#include "mptrain/parallel/grid.hpp"
#include "mptrain/core/rng.hpp"
#include "mptrain/model/model.hpp"

namespace mptrain {

std::vector<int32_t> generate_tokens(const std::string& checkpoint, const SampleOptions& options) {
  const Grid grid(Comm::self(), Layout{1, 1, 1});
  const CheckpointMeta meta = read_checkpoint_meta(grid.world(), checkpoint);
  Deck deck;
  try {
    deck = parse_deck_text(meta.deck_text, checkpoint + " (stored deck)");
  } catch (const InputError& e) {
    throw CheckpointError(checkpoint + ": the stored deck cannot be read: " + e.what());
  }
  auto backend = select_backend("cpu", options.threads, 0, 1);
  Model model(*backend, grid, deck.model, /*micro_batch=*/1, /*slots=*/1, deck.train.seed);
  ParamSet& ps = model.params();
  std::vector<float> host(ps.padded(), 0.0f);
  std::vector<TensorIO> views;
  for (const ParamInfo& p : ps.infos()) views.push_back({p.spec, host.data() + p.offset});
  read_checkpoint_tensors(grid.world(), checkpoint, {views, {}, {}});
  backend->to_device(ps.params().data(), host.data(), host.size());

  const int T = deck.model.seq_len;
  std::vector<int32_t> context = options.prompt_tokens;
  if (context.empty()) {
    for (char c : options.prompt) context.push_back(static_cast<unsigned char>(c));
  }
  if (context.empty()) context.push_back(options.start_token);
  for (int32_t t : context) {
    if (t < 0 || t >= deck.model.vocab_size)
      throw InputError("prompt token " + std::to_string(t) +
                       " is outside the vocabulary of the model in " + checkpoint + " (" +
                       std::to_string(deck.model.vocab_size) + " tokens)");
  }
  std::vector<int32_t> out, window(T), targets(T, 0);
  const uint64_t stream = name_stream("sample");
  for (int i = 0; i < options.tokens; ++i) {
    // The last T tokens; positions after the context are padding the causal mask ignores.
    const int n = std::min<int>(T, static_cast<int>(context.size()));
    std::fill(window.begin(), window.end(), 0);
    std::copy(context.end() - n, context.end(), window.begin());
    model.set_tokens(0, window.data(), targets.data());
    model.forward(0);
    model.loss(0, 0.0f, false);
    std::vector<float> logits = model.logits_row(n - 1);
    const float top = *std::max_element(logits.begin(), logits.end());
    double total = 0;
    std::vector<double> p(logits.size());
    for (size_t v = 0; v < p.size(); ++v)
      total += p[v] = std::exp((logits[v] - top) / options.temperature);
    double u = uniform_at(options.seed, stream, uint64_t(i)) * total;
    int32_t next = static_cast<int32_t>(p.size()) - 1;
    for (size_t v = 0; v < p.size(); ++v)
      if ((u -= p[v]) <= 0) {
        next = static_cast<int32_t>(v);
        break;
      }
    context.push_back(next);
    out.push_back(next);
  }
  return out;
}

}  // namespace mptrain
