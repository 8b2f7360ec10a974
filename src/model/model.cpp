// One pipeline stage of GPT-2: registers this rank's parameter shards in the catalogue's order
// (embeddings, blocks, final LayerNorm — so gradients become final from the top of the flat
// buffer down during backward, which the DP buckets rely on), allocates the activations of
// the micro-batches in flight, and runs forward, loss and backward over its layers.
#include "mptrain/model/model.hpp"

#include "mptrain/core/error.hpp"

namespace mptrain {

Model::Model(Backend& backend, const Grid& grid, const ModelConfig& config, int micro_batch,
             int slots, uint64_t seed, const std::vector<int>& stage_split,
             Recompute recompute)
    : be_(backend), grid_(grid), collectives_(backend) {
  MPT_CHECK(config.vocab_size > 0, "Model needs a resolved vocab_size");
  const Layout& layout = grid.layout();
  shape_ = layer_shape(config, micro_batch, layout.tp, grid.tp_rank());
  const StageLayers layers = stage_layers(config, layout.pp, grid.pp_rank(), stage_split);
  first_layer_ = layers.first;

  // This stage's tensors, in catalogue order (the flat buffer's layout), then the layers bound
  // to them.
  const RankPlace place{layout.tp, grid.tp_rank(), grid.dp_rank() == 0, grid.pp_rank()};
  for (const TensorDesc& t : stage_tensors(config, layout.pp, grid.pp_rank(), stage_split))
    params_.add(t, place);
  if (grid.first_stage()) embedding_ = std::make_unique<Embedding>(params_);
  blocks_.reserve(layers.count);
  for (int l = 0; l < layers.count; ++l) blocks_.emplace_back(params_, first_layer_ + l);
  if (grid.last_stage()) head_ = std::make_unique<Head>(params_);
  params_.allocate(be_, static_cast<size_t>(grid.layout().dp));
  params_.initialize(seed);

  acts_.resize(slots);
  for (int s = 0; s < slots; ++s) {
    acts_[s].reserve(layers.count);
    for (int l = 0; l < layers.count; ++l) acts_[s].emplace_back(be_, shape_, recompute);
    input_.emplace_back(be_, activation_size());
    tokens_.emplace_back(be_, size_t(shape_.N()));
    targets_.emplace_back(be_, size_t(shape_.N()));
  }
  scratch_ = std::make_unique<BlockScratch>(be_, shape_, recompute);
  if (head_) head_work_ = std::make_unique<Head::Work>(be_, shape_);
  dres_ = Buffer(be_, activation_size());
}

size_t Model::activation_elements() const {
  size_t n = dres_.size() + scratch_->elements() + (head_work_ ? head_work_->elements() : 0);
  for (const auto& slot : acts_)
    for (const BlockActivations& a : slot) n += a.elements();
  for (const Buffer& b : input_) n += b.size();
  return n;
}

size_t Model::token_elements() const {
  size_t n = 0;
  for (const IntBuffer& b : tokens_) n += b.size();
  for (const IntBuffer& b : targets_) n += b.size();
  return n;
}

void Model::set_tokens(int slot, const int32_t* inputs, const int32_t* targets) {
  be_.to_device_int(tokens_[slot].data(), inputs, size_t(shape_.N()));
  be_.to_device_int(targets_[slot].data(), targets, size_t(shape_.N()));
}

const float* Model::stage_output(int slot) const {
  return blocks_.empty() ? input_[slot].data() : acts_[slot].back().out.data();
}

LayerContext Model::context() {
  return LayerContext{be_, params_, collectives_, grid_.tp(), shape_};
}

void Model::forward(int slot) {
  const LayerContext cx = context();
  if (embedding_) embedding_->forward(cx, tokens_[slot].data(), input_[slot].data());  // TP
  const float* x = input_[slot].data();
  for (size_t l = 0; l < blocks_.size(); ++l) {
    blocks_[l].forward(cx, x, acts_[slot][l], *scratch_);  // collective over TP
    x = acts_[slot][l].out.data();
  }
}

double Model::loss(int slot, float loss_scale, bool backward) {
  MPT_CHECK(head_ != nullptr, "loss() on a stage without the head");
  const LayerContext cx = context();
  const float* x = stage_output(slot);
  const double sum = head_->forward(cx, x, targets_[slot].data(), *head_work_);  // TP
  if (backward)
    head_->backward(cx, x, targets_[slot].data(), loss_scale, *head_work_, dres_.data());  // TP
  return sum;
}

std::vector<float> Model::logits_row(int position) const {
  MPT_CHECK(head_work_ != nullptr, "logits_row() on a stage without the head");
  std::vector<float> row(size_t(shape_.vocab_owned()));
  be_.to_host(row.data(), head_work_->logits.data() + size_t(position) * shape_.Vl(), row.size());
  return row;
}

void Model::backward(int slot, const std::function<void(size_t)>& grads_ready) {
  const LayerContext cx = context();
  if (head_) grads_ready(params_.infos()[head_->ln_f.weight].offset);
  for (int l = static_cast<int>(blocks_.size()) - 1; l >= 0; --l) {
    const float* x = l == 0 ? input_[slot].data() : acts_[slot][l - 1].out.data();
    blocks_[l].backward(cx, x, acts_[slot][l], *scratch_, dres_.data());  // collective over TP
    grads_ready(params_.infos()[blocks_[l].ln1.weight].offset);
  }
  if (embedding_) {
    embedding_->backward(cx, tokens_[slot].data(), dres_.data());
    grads_ready(0);
  }
}

}  // namespace mptrain
